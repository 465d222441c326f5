#!/usr/bin/env bash
# Re-trains the timbre decoder from nothing: the tools, the release binary (its `features` node
# computes the conditioning), the renders, the training, the export (ONNX, instruments.json, the
# test fixture, the manifest's sha256s), then the evaluation on the test split.
#   models/timbre/retrain.sh [LEG_END_MINUTES ...]   (default 100 220 310, as v4 was trained:
#   100 minutes on one cosine decay, then resumed on a second that ends at minute 220 and a
#   third that ends at minute 310; a stopped leg resumes; `retrain.sh 100` trains one leg)
# v6 is v4's weights (trained before the vibrato input, the frame alignment the node
# reads and the conditioning's lag) plus two legs from the shipped ONNX: v5, 75 minutes on the
# vibrato input and frame alignment (`TIMBRE_WORK=.cache/timbre_vib train.py --warm --resume
# --minutes 75 --threads 1 --lr 1.5e-4`), then v6, 65 minutes against the line delayed by the
# conditioning's own lag (`TIMBRE_WORK=.cache/timbre_lag train.py --warm --minutes 65 --threads 1
# --lr 1.5e-4 --select ratio`). The shipped v7 is v6 plus 65 minutes with the violin's lines drawn
# twice as often, the weights' running average kept (`TIMBRE_WORK=.cache/timbre_D train.py --warm
# --minutes 65 --threads 1 --lr 2e-4 --select ratio --weight violin=2 --ema 0.999`). v8 is v7 with
# the key tables added (the middle layer's columns for them at zero, so it started as v7) and 85
# minutes on two cores (`TIMBRE_WORK=.cache/timbre_P train.py --warm --minutes 70 --threads 2 --lr
# 2e-4 --select ratio --weight violin=2 --ema 0.999`, resumed at minute 38 with `--resume --minutes
# 85`). v9 is v8 trained on the node's frames starting where the `features` hops end (train.py
# `as_the_node_reads`), 92 minutes on two cores (`TIMBRE_WORK=.cache/timbre_R train.py --warm
# --minutes 65 --threads 2 --lr 2e-4 --select ratio --weight violin=2 --ema 0.999`, resumed at
# minute 22 with `--resume --minutes 100`, stopped at minute 92). From nothing, this script trains
# on the current conditioning, framing, key tables and delayed line from the first step.
set -euo pipefail
cd "$(dirname "$0")/../.."
legs=("$@")
[ $# -gt 0 ] || legs=(100 220 310)
scripts/eval/setup.sh
py=.cache/eval-venv/bin/python
$py -c "import torch, onnx" 2>/dev/null || .cache/eval-venv/bin/pip install -q torch onnx "setuptools<80"
cargo build --release -p stagebox
$py models/timbre/make_data.py
for end in "${legs[@]}"; do
    $py models/timbre/train.py --minutes "$end" --resume
done
$py models/timbre/train.py --export
cargo build --release -p stagebox
$py models/timbre/evaluate.py
