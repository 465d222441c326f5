#!/usr/bin/env python3
"""What the `melody` node gets wrong, by kind, on a set that scripts/eval/make_families.py built
(use the validation part: tuning on the test part is fitting). For each single line: the node's
notes (stagebox render, patches/melody.toml or EVAL_MELODY_PATCH) against the reference, each
extra note classed as an octave error (12 or 24 semitones from a sounding reference note), a
pitch error (another interval), late (the right pitch, the first note found for a reference
note that started more than 50 ms before it: a slow attack's onset placed too late), a repeat
(the right pitch again inside a held note) or stray (no reference note sounding); each missed
note as missed. Per family and instrument.

    .cache/eval-venv/bin/python scripts/eval/melody_errors.py .cache/eval/families-val [STAGEBOX]
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

SET = sys.argv[1] if len(sys.argv) > 1 else ".cache/eval/families-val"
ev.BIN = sys.argv[2] if len(sys.argv) > 2 else "target/release/stagebox"


def classify(ref, est):
    ri = np.array([[s, e] for s, e, _ in ref])
    rp = ev.hz([p for _, _, p in ref])
    ei = np.array([[s, max(e, s + 1e-3)] for s, e, _, _ in est]) if est else np.zeros((0, 2))
    ep = ev.hz([p for _, _, p, _ in est]) if est else np.zeros(0)
    matched = mir_eval.transcription.match_notes(ri, rp, ei, ep, onset_tolerance=0.05, offset_ratio=None) if est else []
    got_r = {r for r, _ in matched}
    got_e = {e for _, e in matched}
    kinds = collections.Counter(correct=len(matched), missed=len(ref) - len(got_r))
    seen_ref = set()
    for k, (s, _, p, _) in enumerate(est):
        sounding = [(i, rp_) for i, (rs, re_, rp_) in enumerate(ref) if rs - 0.05 <= s < re_]
        first = [i for i, q in sounding if q == p and i not in seen_ref]
        seen_ref.update(i for i, q in sounding if q == p)
        if k in got_e:
            continue
        pitches = [q for _, q in sounding]
        if not sounding:
            kinds["stray"] += 1
        elif first and first[0] not in got_r:
            kinds["late"] += 1
        elif p in pitches:
            kinds["repeat"] += 1
        elif any(abs(p - q) in (12, 24) for q in pitches):
            kinds["octave"] += 1
        else:
            kinds["pitch"] += 1
    return kinds


def main():
    index = [c for c in json.load(open(os.path.join(SET, "index.json"))) if c["kind"] == "single"]
    patch = os.environ.get("EVAL_MELODY_PATCH", "patches/melody.toml")
    by = collections.defaultdict(collections.Counter)
    with tempfile.TemporaryDirectory() as tmp:
        for clip in index:
            ref = [tuple(n) for n in clip["notes"]]
            est, _, _ = ev.stagebox_notes(clip["wav"], patch, tmp)
            k = classify(ref, est)
            sf = clip.get("soundfont", "?")
            for key in (("family", clip.get("family", "?"), sf), ("instrument", clip.get("program", "?"), sf), ("all", "", sf)):
                by[key].update(k)
    cols = ["correct", "missed", "late", "octave", "pitch", "repeat", "stray"]
    print("| group | soundfont | F1 | " + " | ".join(cols) + " |")
    print("|---|---|---|" + "---|" * len(cols))
    for key in sorted(by, key=str):
        c = by[key]
        n_ref = c["correct"] + c["missed"]
        n_est = c["correct"] + sum(c[x] for x in ("late", "octave", "pitch", "repeat", "stray"))
        f1 = 2 * c["correct"] / max(1, n_ref + n_est)
        print(f"| {key[0]} {key[1]} | {key[2]} | {f1:.2f} | " + " | ".join(str(c[x]) for x in cols) + " |")


if __name__ == "__main__":
    main()
