#!/usr/bin/env bash
# Reproduces models/basic_pitch/nmp.onnx from its source, the PyPI basic-pitch 0.4.0 wheel
# (Apache-2.0, Spotify), and checks it against the manifest's sha256.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache/wheels
python3 -m pip download --no-deps -q "basic-pitch==0.4.0" -d .cache/wheels
python3 - <<'PY'
import hashlib, re, zipfile
z = zipfile.ZipFile(".cache/wheels/basic_pitch-0.4.0-py2.py3-none-any.whl")
data = z.read("basic_pitch/saved_models/icassp_2022/nmp.onnx")
want = re.search(r'sha256 = "([0-9a-f]+)"', open("models/basic_pitch/manifest.toml").read()).group(1)
got = hashlib.sha256(data).hexdigest()
if got != want:
    raise SystemExit(f"nmp.onnx sha256 {got} does not match the manifest's {want}")
open("models/basic_pitch/nmp.onnx", "wb").write(data)
open("models/basic_pitch/LICENSE", "wb").write(z.read("basic_pitch-0.4.0.dist-info/LICENSE"))
print("models/basic_pitch/nmp.onnx: ok", got)
PY
