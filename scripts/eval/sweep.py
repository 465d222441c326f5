#!/usr/bin/env python3
"""Tunes a pitch-to-MIDI node's parameters on the validation part (never the test part: tuning on
the clips you report on is fitting). For each setting, the node of its patch (`melody`:
patches/melody.toml, single lines; `basic_pitch`: patches/transcribe.toml, every clip) with
those parameters overridden renders the set; printed per setting: the mean onset F1 at 50 ms
over the clips for each SoundFont (and kind of clip), the lowest family's, and the note-on
latency p90 on fast attacks; for `basic_pitch` also offline Basic Pitch's F1 on the same clips
(from scripts/eval/evaluate.py's cache: run it on the set once first).

    .cache/eval-venv/bin/python scripts/eval/sweep.py melody .cache/eval/families-val \
        "" "confirm_hops=2" "net_confidence=0.6,off_hops=6"      # "" is the patch as it is
    .cache/eval-venv/bin/python scripts/eval/sweep.py basic_pitch .cache/eval/families-val "" "onset_threshold=0.4"
    STAGEBOX=target/debug/stagebox ...                          # another binary
    SWEEP_FAMILIES=1 ...                                        # every family's mean too
"""
import collections
import json
import os
import re
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate as ev  # noqa: E402

ev.BIN = os.environ.get("STAGEBOX", "target/release/stagebox")
PATCHES = {"melody": "patches/melody.toml", "basic_pitch": "patches/transcribe.toml"}


def patch_with(node, setting, tmp):
    """The node's patch with `name=value` pairs set on the node; its path."""
    head, sep, tail = open(PATCHES[node]).read().partition(f'type = "{node}"\n')
    block, rest = tail.split("\n\n", 1)  # the melody node's other keys, then the rest
    for pair in filter(None, setting.split(",")):
        name, value = pair.split("=")
        block = f"{name} = {value}\n" + re.sub(rf"^{name} = .*(\n|$)", "", block, flags=re.M)
    path = os.path.join(tmp, "patch.toml")
    with open(path, "w") as f:
        f.write(head + sep + block.rstrip("\n") + "\n\n" + rest)
    return path


def run_clip(clip, patch):
    with tempfile.TemporaryDirectory() as tmp:
        est, _, _ = ev.stagebox_notes(clip["wav"], patch, tmp)
    return clip, ev.score([tuple(n) for n in clip["notes"]], est)


def summary(results, offline):
    f1, ref = collections.defaultdict(list), collections.defaultdict(list)
    fam = collections.defaultdict(list)
    lat = []
    for clip, s in results:
        key = f"{clip['kind']} {clip['soundfont']}"
        f1[key].append(s["f50"])
        if offline:
            ref[key].append(ev.score([tuple(n) for n in clip["notes"]], ev.basic_pitch_notes(clip["wav"]))["f50"])
        fam[(clip["family"] + (" (poly)" if clip["kind"] != "single" else ""), clip["soundfont"])].append(s["f50"])
        if clip["attack"] == "fast":
            lat += s["lat"]
    worst = min(fam, key=lambda k: np.mean(fam[k]))
    means = ", ".join(f"{k} {np.mean(v):.4f}" + (f" (offline {np.mean(ref[k]):.4f})" if offline else "") for k, v in sorted(f1.items()))
    med, p90 = (1000 * np.percentile(lat, q) if lat else float("nan") for q in (50, 90))
    line = f"F1 {means}; lowest family {worst[0]} ({worst[1]}) {np.mean(fam[worst]):.3f}; fast attacks median {med:.0f} ms, p90 {p90:.0f} ms"
    if os.environ.get("SWEEP_FAMILIES"):
        line += "\n  families: " + ", ".join(f"{f} {sf} {np.mean(v):.3f}" for (f, sf), v in sorted(fam.items()))
    return line


def main():
    node, root = sys.argv[1], sys.argv[2]
    ev.SET = root
    clips = [c for c in json.load(open(os.path.join(root, "index.json"))) if node != "melody" or c["kind"] == "single"]
    for setting in sys.argv[3:] or [""]:
        with tempfile.TemporaryDirectory() as tmp:
            patch = patch_with(node, setting, tmp)
            with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
                results = list(pool.map(lambda c: run_clip(c, patch), clips))
        print(f"{setting or '(as is)'}: {summary(results, node == 'basic_pitch')}", flush=True)


if __name__ == "__main__":
    main()
