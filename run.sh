#!/usr/bin/env bash
# Starts the engine on its default patch (installs what is missing first).
# Extra arguments go to `stagebox run`, e.g. ./run.sh --backend jack --duration 60
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec cargo run --release -q -p stagebox -- run --patch patches/default.toml "$@"
