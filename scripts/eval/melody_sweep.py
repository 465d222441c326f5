#!/usr/bin/env python3
"""Tunes the `melody` node's parameters on the validation part (never the test part: tuning on
the clips you report on is fitting). For each setting, the line node of patches/melody.toml
with those parameters overridden renders every single line of the set; printed per setting: the
mean onset F1 at 50 ms over the clips for each SoundFont, the lowest family's, and the note-on
latency p90 on fast attacks.

    .cache/eval-venv/bin/python scripts/eval/melody_sweep.py .cache/eval/families-val \
        "" "confirm_hops=2" "net_confidence=0.6,off_hops=6"      # "" is the patch as it is
    STAGEBOX=target/debug/stagebox ...                          # another binary
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
BASE = "patches/melody.toml"


def patch_with(setting, tmp):
    """patches/melody.toml with `name=value` pairs set on its melody node; its path."""
    head, sep, tail = open(BASE).read().partition('type = "melody"\n')
    block, rest = tail.split("\n\n", 1)  # the melody node's other keys, then the rest
    for pair in filter(None, setting.split(",")):
        name, value = pair.split("=")
        block = f"{name} = {value}\n" + re.sub(rf"^{name} = .*(\n|$)", "", block, flags=re.M)
    path = os.path.join(tmp, "melody.toml")
    with open(path, "w") as f:
        f.write(head + sep + block.rstrip("\n") + "\n\n" + rest)
    return path


def run_clip(clip, patch):
    with tempfile.TemporaryDirectory() as tmp:
        est, _, _ = ev.stagebox_notes(clip["wav"], patch, tmp)
    return clip, ev.score([tuple(n) for n in clip["notes"]], est)


def summary(results):
    f1 = collections.defaultdict(list)
    fam = collections.defaultdict(list)
    lat = []
    for clip, s in results:
        f1[clip["soundfont"]].append(s["f50"])
        fam[(clip["family"], clip["soundfont"])].append(s["f50"])
        if clip["attack"] == "fast":
            lat += s["lat"]
    worst = min(fam, key=lambda k: np.mean(fam[k]))
    means = ", ".join(f"{sf} {np.mean(v):.3f}" for sf, v in sorted(f1.items()))
    p90 = 1000 * np.percentile(lat, 90) if lat else float("nan")
    return f"F1 {means}; lowest family {worst[0]} ({worst[1]}) {np.mean(fam[worst]):.3f}; fast p90 {p90:.0f} ms"


def main():
    root = sys.argv[1]
    clips = [c for c in json.load(open(os.path.join(root, "index.json"))) if c["kind"] == "single"]
    for setting in sys.argv[2:] or [""]:
        with tempfile.TemporaryDirectory() as tmp:
            patch = patch_with(setting, tmp)
            with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
                results = list(pool.map(lambda c: run_clip(c, patch), clips))
        print(f"{setting or '(as is)'}: {summary(results)}", flush=True)


if __name__ == "__main__":
    main()
