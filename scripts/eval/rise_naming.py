#!/usr/bin/env python3
"""Could a legato note on a fast attack be named sooner from its new partials alone? On a set's
fast-attack single lines (use the validation part), for every legato change of pitch: the
magnitude spectrum (Hann, 32 ms at 16 kHz, the left channel as the node hears a file) of the
window ending d ms after the reference onset, less the one ending at the onset (what rose:
`--plain` takes the later spectrum as it is, the last key left out of the candidates), summed
over each candidate key's harmonics 1-8 (weights 1/sqrt(h), less half the sum between them, so
that the octave under a note does not win on its even partials); the likeliest key (MIDI 28-96)
against the reference. By program and SoundFont, the share named right at each d, then the
harp's and the calliope's misses (semitones off) at 24 and 32 ms. A hand-made reading beside
the network's first sure naming (`latency_parts.py`, BENCHMARKS.md eighteenth and nineteenth
rounds).

    .cache/eval-venv/bin/python scripts/eval/rise_naming.py .cache/eval/families-val6 [--plain]
"""
import collections
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attack_rise import R, left16, legato_changes  # noqa: E402

WINDOW = 512  # 32 ms
FFT = 4096
HARMONICS = 8
KEYS = np.arange(28, 97)
AFTER_MS = [8, 12, 16, 20, 24, 28, 32, 40]
FREQS = np.fft.rfftfreq(FFT, 1 / R)


def spectrum(y, end):
    """Magnitudes of the Hann window ending at sample `end`."""
    return np.abs(np.fft.rfft(y[end - WINDOW : end] * np.hanning(WINDOW), FFT))


def salience(spec):
    """Each candidate key's weighted harmonic sum, less half the sum at the half-way points."""
    out = np.empty(len(KEYS))
    for i, key in enumerate(KEYS):
        f0 = 440 * 2 ** ((key - 69) / 12)
        h = np.arange(1, HARMONICS + 1)
        h = h[h * f0 < R / 2 - 200]
        w = 1 / np.sqrt(h)
        out[i] = (w * np.interp(h * f0, FREQS, spec)).sum() - 0.5 * (w * np.interp((h - 0.5) * f0, FREQS, spec)).sum()
    return out


def named(y, s, last, plain):
    """The likeliest key at each of AFTER_MS for a change at onset `s` from key `last`."""
    n0 = int(s * R)
    before = spectrum(y, n0)
    keys = []
    for d in AFTER_MS:
        now = spectrum(y, n0 + d * R // 1000)
        sal = salience(now if plain else np.maximum(now - before, 0))
        if plain:
            sal[KEYS == last] = -np.inf
        keys.append(int(KEYS[np.argmax(sal)]))
    return keys


def main():
    plain = "--plain" in sys.argv
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    index = json.load(open(os.path.join(args[0] if args else ".cache/eval/families-val6", "index.json")))
    off = collections.defaultdict(list)  # (program, soundfont) -> [semitones off at each AFTER_MS]
    for c in index:
        if c["kind"] != "single" or c["attack"] != "fast":
            continue
        y = left16(c["wav"])
        for last, s, key in legato_changes(c["notes"]):
            if WINDOW <= int(s * R) and int((s + 0.05) * R) <= len(y):
                off[c["program"], c["soundfont"]].append([k - key for k in named(y, s, last, plain)])
    print("program, soundfont, changes: share named right at", AFTER_MS, "ms")
    for (program, sf), rows in sorted(off.items()):
        print(program, sf, len(rows), " ".join(f"{v:.2f}" for v in (np.array(rows) == 0).mean(0)))
    every = np.array([r for rows in off.values() for r in rows])
    print("all", len(every), " ".join(f"{v:.2f}" for v in (every == 0).mean(0)))
    for (program, sf), rows in sorted(off.items()):
        if program in (46, 82):
            for d in (24, 32):
                j = AFTER_MS.index(d)
                print(program, sf, d, "ms, semitones off:", collections.Counter(r[j] for r in rows).most_common(6))


if __name__ == "__main__":
    main()
