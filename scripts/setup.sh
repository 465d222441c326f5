#!/usr/bin/env bash
# Installs what Stagebox needs, only what is missing (idempotent).
#   scripts/setup.sh          to build and run: ALSA and JACK headers, the JACK server, pkg-config,
#                             DejaVu fonts (the piano roll's labels),
#                             ONNX Runtime (scripts/setup_models.sh)
#   scripts/setup.sh --tests  and what the tests use besides: liblo-tools (oscsend, oscdump),
#                             puredata-core (pd -nogui) and python-osc in a venv of its own
set -euo pipefail
tests=false
[ "${1:-}" = "--tests" ] && tests=true
packages=(libasound2-dev libjack-jackd2-dev jackd2 pkg-config fonts-dejavu-core)
$tests && packages+=(liblo-tools puredata-core python3-venv)
need=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: Rust's cargo is required (install it with rustup)" >&2
  exit 1
fi
"$(dirname "$0")/setup_models.sh"
$tests || exit 0
# python-osc (PyPI) for the OSC tests, in a venv of its own.
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.cache/test-venv"
if ! "$venv/bin/python" -c "import pythonosc" >/dev/null 2>&1; then
  echo "setup: python-osc into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "python-osc==1.10.2"
fi
