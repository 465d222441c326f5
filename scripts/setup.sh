#!/usr/bin/env bash
# Installs what Stagebox needs to build and test, only what is missing (idempotent).
# Debian packages: ALSA and JACK headers, the JACK server (tests run a dummy one), pkg-config,
# liblo-tools (oscsend and oscdump) and puredata-core (pd -nogui): the OSC tests drive the
# engine with them.
set -euo pipefail
need=()
for p in libasound2-dev libjack-jackd2-dev jackd2 pkg-config liblo-tools puredata-core; do
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
