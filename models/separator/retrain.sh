#!/usr/bin/env bash
# Re-trains the separator from nothing: the tools, the renders, the training, the mask powers
# chosen on the validation split (calibrate.py), the export (ONNX, the test fixture, the
# manifest's sha256), then the evaluation on the test split.
#   models/separator/retrain.sh [TRAIN_MINUTES]     (default 40; resumes a stopped run)
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-40}
scripts/eval/setup.sh
py=.cache/eval-venv/bin/python
$py -c "import torch, onnx, museval" 2>/dev/null || .cache/eval-venv/bin/pip install -q torch onnx museval "setuptools<80"
$py models/separator/make_data.py --pieces 300 --variants 3
$py models/separator/train.py --minutes "$minutes" --resume
$py models/separator/calibrate.py
$py models/separator/train.py --export
cargo build --release -p stagebox
$py models/separator/evaluate.py
