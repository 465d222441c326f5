#!/usr/bin/env bash
# Installs what the transcription evaluation needs (idempotent): FluidSynth and three GM
# SoundFonts (Debian), and a Python venv with music21, mir_eval, pretty_midi and offline Basic
# Pitch (its ONNX path: basic-pitch without TensorFlow, onnxruntime instead).
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
for p in fluidsynth fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-small; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
venv=.cache/eval-venv
if [ ! -x "$venv/bin/python" ] || [ ! -e "$venv/.ok" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "music21==10.5.1" "mir_eval==0.8.2" "pretty_midi==0.2.10" "librosa" "resampy<0.4.3" "scikit-learn" "scipy" "numpy" "onnxruntime==1.32.0"
  "$venv/bin/pip" install -q --no-deps "basic-pitch==0.4.0"
  touch "$venv/.ok"
fi
