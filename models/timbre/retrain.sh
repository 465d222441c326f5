#!/usr/bin/env bash
# Re-trains the timbre decoder from nothing: the tools, the release binary (its `features` node
# computes the conditioning), the renders, the training, the export (ONNX, instruments.json, the
# test fixture, the manifest's sha256s), then the evaluation on the test split.
#   models/timbre/retrain.sh [LEG_END_MINUTES ...]   (default 100 220 310, as v4 was trained:
#   100 minutes on one cosine decay, then resumed on a second that ends at minute 220 and a
#   third that ends at minute 310; a stopped leg resumes; `retrain.sh 100` trains one leg)
# The shipped v5 is v4's weights (trained before the vibrato input and the frame alignment the
# node reads) plus one 75-minute leg on the current conditioning, its vibrato weights starting
# at zero: `TIMBRE_WORK=.cache/timbre_vib train.py --warm --resume --minutes 75 --threads 1
# --lr 1.5e-4` from v4's timbre.onnx. From nothing, this script trains on the current
# conditioning from the first step.
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
