#!/usr/bin/env python3
"""A validation view of tonewheel organs: the lines of a set make_families.py built (use one on
the validation part's pieces, e.g. organs-val6) played again by the training script's additive
drawbar organ (models/melody_net/train.py `organ_line`: random registrations, the 16-foot or the
8-foot bar always out, percussion, key click, vibrato, a rotating speaker's tremolo), several
registrations a line, labelled by the keys. The organ is a training instrument (the network's
organ lines); the pieces are validation's: a view for tuning the octave rules on organs whose
lowest sounding pitch is not the key, like the organs view of the train part's SoundFont organs.
Seeded; 16 kHz files.

    .cache/eval-venv/bin/python scripts/eval/make_synth_organs.py .cache/eval/organs-val6 .cache/eval/synth-organs-val6
"""
import argparse
import json
import os
import sys

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "melody_net"))
import train as organ  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("source", help="a set's folder (its index.json): the lines to play")
    ap.add_argument("out")
    ap.add_argument("--registrations", type=int, default=3, help="organs (random registrations) per line")
    a = ap.parse_args()
    lines = {}
    for clip in json.load(open(os.path.join(a.source, "index.json"))):
        if clip["kind"] == "single":
            lines.setdefault(os.path.basename(clip["wav"]).rsplit("-", 1)[0], clip)
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(20261204)
    index = []
    for name, clip in sorted(lines.items()):
        notes = [(s, e, int(p), 90) for s, e, p in clip["notes"]]
        for r in range(a.registrations):
            y = organ.organ_line(rng, notes)
            wav = os.path.join(a.out, f"{name}-organ{r}.wav")
            sf.write(wav, y, organ.R, subtype="FLOAT")
            index.append({**clip, "wav": wav, "instrument": f"keys:{organ.ORGAN}", "program": organ.ORGAN,
                          "soundfont": "synth_organ", "registration": r})
    json.dump(index, open(os.path.join(a.out, "index.json"), "w"))
    print(f"{len(index)} clips in {a.out}")


if __name__ == "__main__":
    main()
