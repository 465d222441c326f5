#!/usr/bin/env bash
# Starts the engine on its default patch (installs what is missing first).
# Extra arguments go to `stagebox run`, e.g. ./run.sh --backend jack --duration 60
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
# The first build takes a few minutes; cargo shows its progress.
cargo build --release -p stagebox
exec target/release/stagebox run --patch patches/default.toml "$@"
