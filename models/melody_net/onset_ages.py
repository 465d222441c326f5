#!/usr/bin/env python3
"""How long after its note's onset each frame of train_harm.py's `--rise` frames ends (seconds;
-1 where no note sounds), for `train_harm.py --early-weight` (BENCHMARKS.md, sixteenth round).
A training script, never run by the engine, its tests or CI.

It replays train_harm.frames()'s random stream (the same renders, augmentations and frame picks,
without the features) and checks that the labels it derives equal the cached frames' labels, so
the ages line up with frames_rise.npz frame by frame.

    .cache/eval-venv/bin/python models/melody_net/onset_ages.py   # -> .cache/melody_net/harm/ages.npz
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train as base  # noqa: E402
import train_harm  # noqa: E402


def clip_ages(y, notes, rng):
    """The kept frames' labels and onset ages of one clip (dataset()'s rule and its rng draws)."""
    ends = np.arange(512, len(y), base.HOP)
    t = ends / base.R - base.LAG
    lab = np.zeros(len(ends), int)
    age = np.full(len(ends), -1.0)
    for s, e, p, _ in notes:
        sel = (t >= s) & (t < e)
        lab[sel] = np.clip(p, base.LO, base.HI) - base.LO + 1
        age[sel] = t[sel] - s
    rms = np.sqrt(np.convolve(y * y, np.ones(192) / 192, "full")[ends - 1])
    lab[rms < base.GATE] = 0
    age[rms < base.GATE] = -1
    near = np.zeros(len(ends), bool)
    for s, *_ in notes:
        near |= (ends / base.R >= s) & (ends / base.R < s + 0.06)
    keep = near | (rng.uniform(size=len(ends)) < 0.25)
    return lab[keep].astype(np.int8), age[keep].astype(np.float32)


def main():
    rng = np.random.default_rng(20261126)  # train_harm.frames()'s seed
    clips = base.render_all(rng, organs=True, synths=True)
    parts = {False: ([], []), True: ([], [])}
    for wav, notes, program, rep in clips:
        held_out = (program + rep) % 8 == 0
        y = base.load16(wav)
        if not held_out:
            y = base.augment(y, rng)
        lab, age = clip_ages(y, notes, rng)
        parts[held_out][0].append(lab)
        parts[held_out][1].append(age)
    z = np.load(os.path.join(train_harm.OUT, "frames_rise.npz"))
    for held, key in ((False, "Y"), (True, "hY")):
        if not np.array_equal(np.concatenate(parts[held][0]), z[key]):
            sys.exit(f"the replayed labels differ from frames_rise.npz's {key}: remake the frames")
    out = os.path.join(train_harm.OUT, "ages.npz")
    np.savez(out, age=np.concatenate(parts[False][1]), hage=np.concatenate(parts[True][1]))
    print(f"{out}: ages of {sum(map(len, parts[False][1]))} training and {sum(map(len, parts[True][1]))} held-out frames")


if __name__ == "__main__":
    main()
