#!/usr/bin/env bash
# Runs every test (installs what is missing first). Tests that need a JACK server start their
# own named dummy server and stop it.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --tests
cargo build --workspace --all-targets
cargo test --workspace "$@"
