#!/usr/bin/env bash
# Installs ONNX Runtime for the engine's model nodes into .cache/onnxruntime (idempotent).
# ONNX Runtime has no Debian package; its PyPI wheel carries libonnxruntime.so, which `ort`
# loads at run time (load-dynamic). Basic Pitch's nmp.onnx is in the repository
# (models/basic_pitch); scripts/fetch_basic_pitch.sh re-extracts and checks it from its wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
ORT_VERSION=1.32.0
dest=.cache/onnxruntime
if [ -e "$dest/libonnxruntime.so" ] && [ -e "$dest/VERSION" ] && [ "$(cat "$dest/VERSION")" = "$ORT_VERSION" ]; then
  exit 0
fi
echo "setup: installing ONNX Runtime $ORT_VERSION (from the PyPI wheel) into $dest" >&2
mkdir -p .cache/wheels "$dest"
python3 -m pip download --no-deps -q "onnxruntime==$ORT_VERSION" -d .cache/wheels
wheel=$(ls .cache/wheels/onnxruntime-"$ORT_VERSION"-*.whl | head -n 1)
python3 - "$wheel" "$dest" <<'PY'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("onnxruntime/capi/libonnxruntime") and ".so" in base:
            with open(os.path.join(dest, base), "wb") as f:
                f.write(z.read(name))
lib = [f for f in os.listdir(dest) if f.startswith("libonnxruntime.so.")]
if not lib:
    sys.exit("setup: no libonnxruntime.so in " + wheel)
link = os.path.join(dest, "libonnxruntime.so")
if os.path.lexists(link):
    os.remove(link)
os.symlink(lib[0], link)
PY
echo "$ORT_VERSION" > "$dest/VERSION"
