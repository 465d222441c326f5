#!/usr/bin/env python3
"""Which path started each fast-attack note of `melody`, and how late: the pitch network during
an attack (`attack.rs`), or YIN (and then how far the network got: no attack heard, unsure, named
the sounding note, named the note once but not twice in a row, YIN clearly heard another, the
note not a period of the sound, its octave or twelfth periodic instead). Needs a binary built
with `attack_paths.diff` applied (a measuring build, never shipped: it writes that code as each
note's velocity, and reads `SB_EXP_AGREE`, `SB_EXP_HOPS`, `SB_EXP_RISE`, `SB_EXP_HF` for the
hops the network must agree, the hops after an attack it may name a note, the attack's rise in
level, and a rise of the high end that also marks an attack). Single lines of the fast-attack
families only; notes matched to the reference by mir_eval at 50 ms; latency is when the note-on
was emitted minus its true onset.

    git apply scripts/eval/attack_paths.diff && cargo build --release -p stagebox
    .cache/eval-venv/bin/python scripts/eval/attack_paths.py .cache/eval/families-val6
    git checkout engine/ && cargo build --release -p stagebox
"""
import json, os, subprocess, sys, tempfile, collections
import numpy as np, mir_eval
from concurrent.futures import ThreadPoolExecutor
SET = sys.argv[1]
idx = json.load(open(os.path.join(SET, "index.json")))
clips = [c for c in idx if c["attack"] == "fast" and c["kind"] == "single"]
def run(c):
    with tempfile.TemporaryDirectory() as tmp:
        ev = os.path.join(tmp, "e.jsonl")
        subprocess.run(["target/release/stagebox", "render", "--patch", "patches/melody.toml", "--input", c["wav"], "--output", os.path.join(tmp, "o.wav"), "--events-out", ev, "--tail", "1.0"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ons = [json.loads(l) for l in open(ev)]
    ons = [j for j in ons if j["type"] == "note_on"]
    est = np.array([[j["onset_s"], j["onset_s"] + 0.1] for j in ons]).reshape(-1, 2)
    ref = np.array([[s, e] for s, e, _ in c["notes"]])
    rp = np.array([440 * 2 ** ((p - 69) / 12) for _, _, p in c["notes"]])
    ep = np.array([440 * 2 ** ((j["pitch"] - 69) / 12) for j in ons])
    if len(ons) == 0:
        return []
    m = mir_eval.transcription.match_notes(ref, rp, est, ep, onset_tolerance=0.05, offset_ratio=None)
    out = []
    for ri, ei in m:
            s = ref[ri, 0]
        out.append((c["family"], c["program"], c["soundfont"], ons[ei]["velocity"], ons[ei]["time_s"] - s, False))
    return out
with ThreadPoolExecutor(2) as ex:
    rows = [r for rs in ex.map(run, clips) for r in rs]
lat = np.array([r[4] for r in rows])
print("n", len(rows), "median", np.median(lat) * 1000, "p90", np.percentile(lat, 90) * 1000)
slow = np.percentile(lat, 90)
by = collections.defaultdict(list)
for r in rows:
    by[min(r[3], 100)].append(r)
names = {1: "network", 2: "YIN, no attack heard", 3: "YIN, attack heard, too quiet", 4: "YIN, net unsure", 5: "YIN, net names sounding note", 6: "YIN, net agree<2/range", 7: "YIN, YIN hears other", 8: "YIN, not periodic", 9: "YIN, octave/twelfth", 90: "restrike", 100: "?", 0: "YIN why0"}
for k in sorted(by):
    l = np.array([r[4] for r in by[k]])
    print(f"{names.get(k, k):32s} n {len(l):4d} median {np.median(l)*1000:5.0f} p90 {np.percentile(l, 90)*1000:5.0f} in slowest tenth {np.sum(l >= slow):4d}")
fam = collections.defaultdict(list)
for r in rows:
    fam[(r[0], r[2])].append(r)
for k in sorted(fam):
    l = np.array([r[4] for r in fam[k]])
    c = collections.Counter(min(r[3], 100) for r in fam[k])
    print(k, len(l), f"median {np.median(l)*1000:.0f} p90 {np.percentile(l, 90)*1000:.0f}", dict(c))
