#!/usr/bin/env python3
"""What bounds `melody`'s note-on latency on fast attacks: for every legato change of pitch in the
fast-attack families' single lines (the last reference note still sounding within 20 ms of this
one's onset), when, after the reference onset, each part of the attack path first fired, against
when the note-on was sent: the level's rise (attack.rs's ATTACK_RISE over the last ATTACK_LOOK
hops), the spectral flux (at 0.3, and at FLUX_ONSET in a periodic sound), and the pitch network
naming the note at `net_confidence` 0.8 once and twice in a row. Then what the note-on could be
if the window opened at once (the network alone) or by either detector. Needs a binary built with
`latency_parts.diff` applied (a measuring build, never shipped: it runs the network every hop and
prints what each hop read); the network's first naming also by the note's pitch and by the step from
the last note, and by program beside the spectral flux (when the sound changed). Times in ms,
onset to the hop that fired, medians / p90; tubular
bells (program 14, placed late by their slow swell) left out of the bounds.

    git apply scripts/eval/latency_parts.diff && cargo build --release -p stagebox
    .cache/eval-venv/bin/python scripts/eval/latency_parts.py .cache/eval/families-val6
    git checkout engine/ && cargo build --release -p stagebox
"""
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

BIN = os.environ.get("STAGEBOX", "target/release/stagebox")
SURE = 0.8
PARTS = ["sent", "level", "flux 0.3", "flux 0.5 periodic", "network once", "network twice"]


def trace(clip):
    """The clip's note-ons and its per-hop trace (16 kHz sample, level, flux, YIN's strict
    reading or -1, the network's note, its probability, the sounding note, hops left in the
    attack window, the note the attack path started)."""
    with tempfile.TemporaryDirectory() as tmp:
        events = os.path.join(tmp, "e.jsonl")
        run = subprocess.run([BIN, "render", "--patch", "patches/melody.toml", "--input", clip["wav"], "--output",
                              os.path.join(tmp, "o.wav"), "--events-out", events, "--tail", "1.0"],
                             check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ons = [j for j in map(json.loads, open(events)) if j["type"] == "note_on"]
    rows = [[float(v) for v in line.split()[1:]] for line in run.stderr.splitlines() if line.startswith("T ")]
    return clip, ons, np.array(rows)


def changes(clip, ons, T):
    """Per legato change of pitch: ms from the reference onset to each part's first firing."""
    # The note-on goes out at the end of the engine block holding the hop's last sample: measure
    # that offset on the hops where the attack path started a note.
    hop_s = T[:, 0] / 16000
    sent = np.array([o["time_s"] for o in ons])
    started = hop_s[T[:, 8] > 0]
    offset = np.median([sent[np.argmin(np.abs(sent - t))] - t for t in started]) if len(started) and len(sent) else 0.0
    t = hop_s + offset
    rms, flux, strict, net, p = T[:, 1], T[:, 2], T[:, 3], T[:, 4], T[:, 5]
    lowest = np.array([rms[max(0, i - 6) : i].min() if i else np.inf for i in range(len(rms))])
    sure = p >= SURE
    out = []
    for s, _, k in clip["notes"]:
        before = [n for n in clip["notes"] if n[0] < s - 1e-3]
        if not before or max(n[1] for n in before) < s - 0.02 or max(before)[2] == k:
            continue
        near = np.flatnonzero((t >= s - 0.01) & (t <= s + 0.15))
        named = (net == k) & sure

        def first(mask):
            hit = np.flatnonzero(mask[near])
            return 1000 * (t[near[hit[0]]] - s) if len(hit) else np.nan

        note_on = [1000 * (o["time_s"] - s) for o in ons if o["pitch"] == k and abs(o["onset_s"] - s) < 0.05]
        out.append((clip["program"], k, abs(k - max(before)[2]), [note_on[0] if note_on else np.nan, first(rms >= 1.4 * lowest), first(flux >= 0.3),
                                      first((flux >= 0.5) & (strict > 0)), first(named), first(named & np.roll(named, 1))]))
    return out


def spread(v):
    v = np.asarray(v, float)
    v = v[~np.isnan(v)]
    return f"{np.median(v):.0f} / {np.percentile(v, 90):.0f}" if len(v) else "-"


def main():
    index = json.load(open(os.path.join(sys.argv[1], "index.json")))
    clips = [c for c in index if c["attack"] == "fast" and c["kind"] == "single"]
    with ThreadPoolExecutor(2) as pool:
        found = [c for r in pool.map(trace, clips) for c in changes(*r)]
    kept = [f for f in found if f[0] != 14]
    rows = np.array([parts for *_, parts in kept])
    print(f"{len(found)} legato changes, {len(rows)} without tubular bells")
    for i, name in enumerate(PARTS):
        print(f"{name}: {spread(rows[:, i])} ms ({np.mean(~np.isnan(rows[:, i])):.0%} within 150 ms)")
    heard = rows[~np.isnan(rows[:, 0])]
    opened = np.fmin(heard[:, 1], heard[:, 3])
    print(f"notes sent: {spread(heard[:, 0])}; if the window were always open: network once {spread(heard[:, 4])}, "
          f"twice {spread(heard[:, 5])}; window by level or flux, then twice: {spread(np.fmax(opened, heard[:, 5]))}")
    program = np.array([f[0] for f in kept])
    for i in (2, 4):  # when the sound changed, when the network named it
        print(f"{PARTS[i]} by program: " + ", ".join(f"{q} {spread(rows[program == q, i])} ({np.sum(program == q)})" for q in sorted(set(program))))
    pitch, step = np.array([f[1] for f in kept]), np.array([f[2] for f in kept])
    for name, v, edges in (("pitch (MIDI)", pitch, (28, 55, 62, 69, 76, 128)), ("step (semitones)", step, (1, 2, 3, 5, 8, 128))):
        print(f"network once by {name}: " + ", ".join(f"{lo}-{hi - 1} {spread(rows[(v >= lo) & (v < hi), 4])} ({np.sum((v >= lo) & (v < hi))})"
                                                     for lo, hi in zip(edges, edges[1:])))


if __name__ == "__main__":
    main()
