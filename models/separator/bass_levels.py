#!/usr/bin/env python3
"""How a separator's bass SDR on valx goes with the bass's level in the mix and with its program:
each scorable valx mix's bass level (dB, the bass stem's energy over the mix's) beside the bass
SDR in a `calibrate.py --per-mix` file (its last row), their correlation, the mean and median bass
SDR by bass program and SoundFont, and the quietest and the worst mixes. Validation only.

    .cache/eval-venv/bin/python models/separator/bass_levels.py .cache/separator_v12f/permix_valx_ckpt.json
"""
import collections
import json
import os
import sys

import numpy as np
import soundfile as sf

import calibrate

STEMS = ("drums", "bass", "lead", "other")


def main():
    calibrate.SPLIT = "valx"
    rows = np.array(list(json.load(open(sys.argv[1])).values())[-1], dtype=float)
    by_program, found = collections.defaultdict(list), []
    for folder, sdr in zip(calibrate.validation_tracks(len(rows)), rows):  # the per-mix file's order
        if np.isnan(sdr[1]):
            continue
        meta = json.load(open(os.path.join(folder, "meta.json")))
        audio = {s: sf.read(os.path.join(folder, s + ".wav"))[0] for s in STEMS}
        level_db = 10 * np.log10((audio["bass"] ** 2).mean() / (sum(audio.values()) ** 2).mean())
        key = (meta["stems"]["bass"]["program"], meta["soundfont"])
        by_program[key].append(sdr[1])
        found.append((level_db, sdr[1], key, meta["piece"]))
    levels = np.array([f[:2] for f in found])
    print(f"{len(found)} mixes; correlation of bass level (dB) and bass SDR: {np.corrcoef(levels.T)[0, 1]:.2f}")
    for key in sorted(by_program):
        v = by_program[key]
        print(f"program {key[0]:3d} {key[1]:8s} {len(v):3d} mixes: mean {np.mean(v):6.2f}, median {np.median(v):6.2f}")
    for title, order in (("quietest", sorted(found)), ("worst", sorted(found, key=lambda f: f[1]))):
        for level_db, sdr, key, piece in order[:6]:
            print(f"{title}: bass at {level_db:6.1f} dB, SDR {sdr:6.1f}, program {key[0]} {key[1]}, {piece}")


if __name__ == "__main__":
    main()
