#!/usr/bin/env python3
"""Per-clip errors of the `melody` node on one family of a set's single lines (for finding why a
family scores low; run it on the training or validation part, never to tune on the test part):
each clip's notes in and out, precision, recall and onset F1 at 50 ms, the onsets matched only
within 300 ms (how late or early), and the notes placed in time at the wrong pitch.

    .cache/eval-venv/bin/python scripts/eval/clips.py .cache/eval/families-val6 bowed fluidr3
    STAGEBOX=target/debug/stagebox ...        # another binary
"""
import json
import os
import sys
import tempfile

import mir_eval
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate as ev  # noqa: E402

ev.BIN = os.environ.get("STAGEBOX", "target/release/stagebox")


def intervals_and_hz(notes):
    return np.array([[n[0], max(n[1], n[0] + 1e-3)] for n in notes]), ev.hz([n[2] for n in notes])


def report(clip):
    with tempfile.TemporaryDirectory() as tmp:
        est, _, _ = ev.stagebox_notes(clip["wav"], "patches/melody.toml", tmp)
    ref = [tuple(n) for n in clip["notes"]]
    name = os.path.basename(clip["wav"])
    if not est:
        print(f"{name} {clip['instrument']}: {len(ref)} notes in, none out")
        return
    (ri, rp), (ei, ep) = intervals_and_hz(ref), intervals_and_hz(est)
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep, onset_tolerance=0.05, offset_ratio=None)
    near = mir_eval.transcription.match_notes(ri, rp, ei, ep, onset_tolerance=0.3, offset_ratio=None)
    off = sorted(round(1000 * (est[e][0] - ref[i][0])) for i, e in near if abs(est[e][0] - ref[i][0]) > 0.05)
    any_pitch = mir_eval.transcription.match_notes(ri, rp, ei, ep, onset_tolerance=0.05, pitch_tolerance=1e6, offset_ratio=None)
    wrong = [(ref[i][2], est[e][2]) for i, e in any_pitch if ref[i][2] != est[e][2]]
    print(f"{name} {clip['instrument']}: {len(ref)} in, {len(est)} out, P {p:.2f} R {r:.2f} F {f:.2f}; "
          f"onsets off by more than 50 ms (ms) {off[:12]}; (played, read) at the wrong pitch {wrong[:8]}")


def main():
    folder, family, soundfont = sys.argv[1:4]
    for clip in json.load(open(os.path.join(folder, "index.json"))):
        if clip["kind"] == "single" and clip["family"] == family and clip["soundfont"] == soundfont:
            report(clip)


if __name__ == "__main__":
    main()
