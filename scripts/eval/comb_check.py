#!/usr/bin/env python3
"""Would the pitch network name a legato note sooner if the last note's period were combed out of
the sound? On a set's fast-attack single lines (use the validation part), for every legato change
of pitch: the first hop (4 ms grid from 4 ms before the reference onset to 60 ms after it) on
which the shipped network (`.cache/melody_net/harm/r48_epoch6.pt`, run in PyTorch on the left
channel at 16 kHz, as the node hears a file) names the new key at 0.8 or surer, on the plain
audio and on y_t - y_{t-L} (L the last note's period, a fractional delay by linear
interpolation); by program, median / p90 ms after the onset (BENCHMARKS.md, eighteenth round).
The network never saw combed audio: this asks whether the last note's sound is what holds the
naming back, not what a network trained on it would do.

    .cache/eval-venv/bin/python scripts/eval/comb_check.py .cache/eval/families-val6
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "melody_net"))
import train as base  # noqa: E402
import train_harm as H  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attack_rise import left16, legato_changes  # noqa: E402

SURE = 0.8
HOP = 64  # 16 kHz samples: the node's hop


def first_sure(net, y, ends, n0, key):
    """ms from sample n0 to the first of `ends` whose window the network names `key` surely."""
    F = torch.from_numpy(H.features_with_rise(y, ends).astype(np.float32))
    with torch.no_grad():
        P = torch.softmax(net(F), 1).numpy()
    hit = np.flatnonzero(P[:, key - base.LO + 1] >= SURE)
    return 1000 * (ends[hit[0]] - n0) / base.R if len(hit) else np.nan


def namings(net, clip):
    """(program, plain ms, combed ms) for each legato change of pitch in the clip."""
    y = left16(clip["wav"])
    t = np.arange(len(y))
    out = []
    for last, s, key in legato_changes(clip["notes"]):
        n0 = int(s * base.R)
        ends = n0 + HOP * np.arange(-1, 16)
        ends = ends[(ends > 1100) & (ends < len(y))]
        if len(ends) < 5:
            continue
        period = base.R / (440 * 2 ** ((last - 69) / 12))
        combed = (y - np.interp(t - period, t, y, left=0)).astype(np.float32)
        out.append((clip["program"], first_sure(net, y, ends, n0, key), first_sure(net, combed, ends, n0, key)))
    return out


def spread(v):
    ok = ~np.isnan(v)
    return f"{np.median(v[ok]):.0f} / {np.percentile(v[ok], 90):.0f} ({ok.mean():.0%} named within 60 ms)"


def main():
    net = H.HarmNet(48, rise=True)
    net.load_state_dict(torch.load(os.path.join(base.WORK, "harm", "r48_epoch6.pt")))
    net.eval()
    index = json.load(open(os.path.join(sys.argv[1] if len(sys.argv) > 1 else ".cache/eval/families-val6", "index.json")))
    clips = [c for c in index if c["kind"] == "single" and c["attack"] == "fast"]
    r = np.array([row for c in clips for row in namings(net, c)], float)
    for name, m in [(str(int(q)), r[:, 0] == q) for q in sorted(set(r[:, 0]))] + [("all but 14", r[:, 0] != 14)]:
        print(f"{name}: plain {spread(r[m, 1])}, combed {spread(r[m, 2])}, the sooner {spread(np.fmin(r[m, 1], r[m, 2]))}")


if __name__ == "__main__":
    main()
