#!/usr/bin/env python3
"""Which path started each fast-attack note of `melody`, and how late: the pitch network during
an attack (`attack.rs`), or YIN (and then how far the network got: no attack heard, unsure, named
the sounding note, named the note once but not twice in a row, YIN clearly heard another, the
note not a period of the sound, its octave or twelfth periodic instead). Needs a binary built
with `attack_paths.diff` applied (a measuring build, never shipped: it writes that code as each
note's velocity). Single lines of the fast-attack families only; notes matched to the
reference by mir_eval at 50 ms; latency is when the note-on was emitted minus its true onset.

    git apply scripts/eval/attack_paths.diff && cargo build --release -p stagebox
    .cache/eval-venv/bin/python scripts/eval/attack_paths.py .cache/eval/families-val6
    git checkout engine/ && cargo build --release -p stagebox
"""
import collections
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import mir_eval
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evaluate import hz  # noqa: E402

BIN = os.environ.get("STAGEBOX", "target/release/stagebox")
PATHS = {1: "the network, during an attack", 2: "YIN; no attack heard", 3: "YIN; attack heard, too quiet",
         4: "YIN; the network unsure", 5: "YIN; the network named the sounding note",
         6: "YIN; the network named it once, not twice (or out of range)", 7: "YIN; YIN clearly heard another",
         8: "YIN; the named note not a period of the sound", 9: "YIN; its octave or twelfth periodic instead",
         90: "a re-strike"}


def found_notes(clip):
    """(family, soundfont, path code, latency in s) of each reference note the node found."""
    with tempfile.TemporaryDirectory() as tmp:
        events = os.path.join(tmp, "e.jsonl")
        subprocess.run([BIN, "render", "--patch", "patches/melody.toml", "--input", clip["wav"], "--output",
                        os.path.join(tmp, "o.wav"), "--events-out", events, "--tail", "1.0"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ons = [j for j in map(json.loads, open(events)) if j["type"] == "note_on"]
    if not ons:
        return []
    ref = np.array([[s, e] for s, e, _ in clip["notes"]])
    est = np.array([[j["onset_s"], j["onset_s"] + 0.1] for j in ons])
    pairs = mir_eval.transcription.match_notes(ref, hz([p for _, _, p in clip["notes"]]), est,
                                               hz([j["pitch"] for j in ons]), onset_tolerance=0.05, offset_ratio=None)
    return [(clip["family"], clip["soundfont"], ons[e]["velocity"], ons[e]["time_s"] - ref[r, 0]) for r, e in pairs]


def main():
    index = json.load(open(os.path.join(sys.argv[1], "index.json")))
    clips = [c for c in index if c["attack"] == "fast" and c["kind"] == "single"]
    with ThreadPoolExecutor(2) as pool:
        rows = [r for found in pool.map(found_notes, clips) for r in found]
    latency = np.array([r[3] for r in rows])
    slow = np.percentile(latency, 90)
    print(f"{len(rows)} notes found: median {1000 * np.median(latency):.0f} ms, p90 {1000 * slow:.0f} ms")
    by_path = collections.defaultdict(list)
    for r in rows:
        by_path[r[2]].append(r[3])
    for code in sorted(by_path):
        v = np.array(by_path[code])
        print(f"{PATHS.get(code, code)}: {len(v)} notes, median {1000 * np.median(v):.0f} ms, "
              f"p90 {1000 * np.percentile(v, 90):.0f} ms, {np.sum(v >= slow)} in the slowest tenth")
    by_family = collections.defaultdict(list)
    for r in rows:
        by_family[r[:2]].append(r)
    for (family, soundfont), found in sorted(by_family.items()):
        v = np.array([r[3] for r in found])
        codes = dict(sorted(collections.Counter(r[2] for r in found).items()))
        print(f"{family} {soundfont}: {len(v)} notes, median {1000 * np.median(v):.0f} ms, "
              f"p90 {1000 * np.percentile(v, 90):.0f} ms, by path {codes}")


if __name__ == "__main__":
    main()
