#!/usr/bin/env python3
"""Where the `melody` node's raw pitch is lost, and how far its onsets sit from the reference, on
a set that scripts/eval/make_families.py built (use the validation part: tuning on the test part
is fitting). For each single line, the node's notes (stagebox render, patches/melody.toml or
EVAL_MELODY_PATCH) as evaluate.py scores raw pitch (each note bent by its own pitch bends), and
every reference-voiced 10 ms frame the notes get wrong classed as: no note (before the right
note's onset, after its end, or none at all), the previous reference note still sounding, the
right note bent more than 50 cents off, an octave, another pitch. Pooled over frames, by family
and SoundFont. Then the matched notes' onset error (estimate minus reference, 150 ms matching),
split into legato notes (the last reference note ends where this one starts) and notes after a
rest, with their note-on latency (when the note-on was sent, against the reference onset: what a
performer waits for, slurred notes included; issue 13's latency target counts fast attacks only).

    .cache/eval-venv/bin/python scripts/eval/melody_frames.py .cache/eval/families-val6 [STAGEBOX]
"""
import collections
import json
import os
import sys
import tempfile

import mir_eval
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate as ev  # noqa: E402

SET = sys.argv[1] if len(sys.argv) > 1 else ".cache/eval/families-val6"
ev.BIN = sys.argv[2] if len(sys.argv) > 2 else "target/release/stagebox"
KINDS = ["right", "none before", "none after", "none", "previous", "bent off", "octave", "other"]


def frame_kind(ref, est, bends, bt, x):
    """What the notes give at time x, against the reference note sounding there (None: none)."""
    r = [(s, e, p) for s, e, p in ref if s <= x < e]
    if not r:
        return None
    s0, e0, p = r[0]
    a = [(q, sent) for s, e, q, sent in est if s <= x < e]
    if not a:
        right = [s for s, e, q, _ in est if q == p and s0 - 0.05 <= s < e0]
        return "none" if not right else "none before" if x < min(right) else "none after"
    q, sent = a[-1]
    m = q + ev.own_bend(bends, bt, x, sent)
    if abs(m - p) <= 0.5:
        return "right"
    if any(abs(m - q0) <= 0.5 for s, e, q0 in ref if s0 - 0.05 < e <= s0 + 1e-6):
        return "previous"
    if q == p:
        return "bent off"
    return "octave" if abs(abs(m - p) - 12) <= 0.5 or abs(abs(m - p) - 24) <= 0.5 else "other"


def onset_errors(ref, est):
    """(legato?, estimate minus reference onset, note-on sent minus reference onset; in s) for each
    note matched within 150 ms."""
    ri = np.array([[s, e] for s, e, _ in ref])
    ei = np.array([[s, max(e, s + 1e-3)] for s, e, _, _ in est])
    pairs = mir_eval.transcription.match_notes(ri, ev.hz([p for *_, p in ref]), ei, ev.hz([p for _, _, p, _ in est]), onset_tolerance=0.15, offset_ratio=None)
    return [(any(abs(e2 - ref[r][0]) < 0.02 for _, e2, _ in ref), est[e][0] - ref[r][0], est[e][3] - ref[r][0]) for r, e in pairs]


def main():
    index = [c for c in json.load(open(os.path.join(SET, "index.json"))) if c["kind"] == "single"]
    patch = os.environ.get("EVAL_MELODY_PATCH", "patches/melody.toml")
    frames = collections.defaultdict(collections.Counter)
    onsets = collections.defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for clip in index:
            ref = [tuple(n) for n in clip["notes"]]
            est, bends, _ = ev.stagebox_notes(clip["wav"], patch, tmp)
            bt = np.array([b[0] for b in bends])
            group = (clip["family"], clip["soundfont"])
            for x in np.arange(0, max(e for _, e, _ in ref), 0.01):
                kind = frame_kind(ref, est, bends, bt, x)
                if kind:
                    frames[group][kind] += 1
                    frames[("all", clip["soundfont"])][kind] += 1
            if est:
                for legato, d, sent in onset_errors(ref, est):
                    onsets[group + ("legato" if legato else "after a rest",)].append((d * 1000, sent * 1000))
    print("| family | soundfont | frames | " + " | ".join(KINDS) + " |")
    print("|---|---|---:|" + "---:|" * len(KINDS))
    for (fam, sf), c in sorted(frames.items()):
        n = sum(c.values())
        print(f"| {fam} | {sf} | {n} | " + " | ".join(f"{100 * c[k] / n:.1f}%" for k in KINDS) + " |")
    print("\n| family | soundfont | notes | onset error median / p10 / p90 (ms) | beyond 50 ms | note-on latency median / p90 (ms) |")
    print("|---|---|---|---|---:|---|")
    for (fam, sf, kind), pairs in sorted(onsets.items()):
        v, sent = np.array(pairs).T
        print(f"| {fam} | {sf} | {len(v)} {kind} | {np.median(v):.0f} / {np.percentile(v, 10):.0f} / {np.percentile(v, 90):.0f} | {100 * np.mean(np.abs(v) > 50):.0f}% | {np.median(sent):.0f} / {np.percentile(sent, 90):.0f} |")


if __name__ == "__main__":
    main()
