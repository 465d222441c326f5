#!/usr/bin/env python3
"""When a legato note's own sound is there: on a set's fast-attack single lines (use the
validation part), for every legato change of pitch, the end of the first 16 ms window (Hann, 16
kHz, the left channel as the node hears a file; 2 ms steps from 4 ms before the reference onset
to 150 ms after it) in which the new key's partials 1-3 (their summed magnitudes) reach half
(-6 dB) of their peak over those 150 ms; by program, median / p90 ms after the onset. A bound
from the sound itself on any detector's note-on latency, beside `latency_parts.py`'s (BENCHMARKS.md,
eighteenth round).

    .cache/eval-venv/bin/python scripts/eval/attack_rise.py .cache/eval/families-val6
"""
import json
import os
import sys
from math import gcd

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

R = 16000
WINDOW = 256  # 16 ms
STEPS_MS = range(-4, 150, 2)


def partials(y, end, f0):
    """Summed magnitudes of partials 1-3 of f0 in the Hann window ending at `end`."""
    t = np.arange(WINDOW) / R
    seg = y[end - WINDOW : end] * np.hanning(WINDOW)
    return sum(abs(np.sum(seg * np.exp(-2j * np.pi * h * f0 * t))) for h in (1, 2, 3))


def left16(wav):
    """A file's first channel (what the node hears) at 16 kHz."""
    x, sr = sf.read(wav, dtype="float32")
    x = x[:, 0] if x.ndim > 1 else x
    g = gcd(sr, R)
    return resample_poly(x, R // g, sr // g).astype(np.float32)


def legato_changes(notes):
    """(last key, onset s, key) for each change of pitch within 20 ms of the last note's end."""
    return [(last, s, key) for (_, last_end, last), (s, _, key) in zip(notes, notes[1:]) if last_end >= s - 0.02 and last != key]


def rises(clip):
    """(program, ms) for each legato change of pitch in the clip."""
    y = left16(clip["wav"])
    out = []
    for _, s, key in legato_changes(clip["notes"]):
        n0, f0 = int(s * R), 440 * 2 ** ((key - 69) / 12)
        steps = [d for d in STEPS_MS if WINDOW <= n0 + d * R // 1000 <= len(y)]
        if len(steps) < 20:
            continue
        a = np.array([partials(y, n0 + d * R // 1000, f0) for d in steps])
        out.append((clip["program"], steps[int(np.argmax(a >= 0.5 * a.max()))]))
    return out


def main():
    index = json.load(open(os.path.join(sys.argv[1] if len(sys.argv) > 1 else ".cache/eval/families-val6", "index.json")))
    by_program = {}
    for c in index:
        if c["kind"] == "single" and c["attack"] == "fast":
            for program, ms in rises(c):
                by_program.setdefault(program, []).append(ms)
    for program, v in sorted(by_program.items()):
        print(f"{program}: the key's partials 1-3 at half their peak {np.median(v):.0f} / {np.percentile(v, 90):.0f} ms (n {len(v)})")


if __name__ == "__main__":
    main()
