#!/usr/bin/env bash
# Re-trains the timbre decoder from nothing: the tools, the release binary (its `features` node
# computes the conditioning), the renders, the training, the export (ONNX, instruments.json, the
# test fixture, the manifest's sha256s), then the evaluation on the test split.
#   models/timbre/retrain.sh [TRAIN_MINUTES] [RESUMED_TO]   (defaults 100 and 220, as the shipped
#   model v3: 100 minutes on one cosine decay, then resumed on a second one that ends at minute 220;
#   a stopped run resumes; RESUMED_TO 0 stops after the first)
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-100}
resumed_to=${2:-220}
scripts/eval/setup.sh
py=.cache/eval-venv/bin/python
$py -c "import torch, onnx" 2>/dev/null || .cache/eval-venv/bin/pip install -q torch onnx "setuptools<80"
cargo build --release -p stagebox
$py models/timbre/make_data.py
$py models/timbre/train.py --minutes "$minutes" --resume
if [ "$resumed_to" -gt "$minutes" ]; then
    $py models/timbre/train.py --minutes "$resumed_to" --resume
fi
$py models/timbre/train.py --export
cargo build --release -p stagebox
$py models/timbre/evaluate.py
