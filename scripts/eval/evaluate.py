#!/usr/bin/env python3
"""Scores Stagebox's pitch-to-MIDI nodes against the evaluation set, beside offline Basic Pitch.

For each clip: `stagebox render` through patches/transcribe.toml (polyphonic, every clip) and
patches/melody.toml (single-line clips) with --events-out; offline Basic Pitch (the PyPI
package, ONNX Runtime backend, the same nmp.onnx) on the same file. Notes are scored with
mir_eval: onset F1 at 50 and 100 ms, and with offsets (50 ms onsets, offset ratio 0.2).
Note-on latency is when each correctly found note was emitted minus its true onset (engine
timeline). Single lines also get raw pitch accuracy (50 cents) from notes plus pitch bends, and
from the melody node's f0 output (MIREX's raw pitch accuracy: voicing ignored).

    .cache/eval-venv/bin/python scripts/eval/evaluate.py [SET] [STAGEBOX]  > results.md

EVAL_SYSTEMS (comma separated: basic_pitch, offline, melody; default all) picks what runs;
EVAL_PATCH replaces patches/transcribe.toml and EVAL_MELODY_PATCH patches/melody.toml (to
compare settings). Offline Basic Pitch's notes
are cached per clip in SET/offline-bp/ (delete it to recompute).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import mir_eval
import numpy as np

SET = sys.argv[1] if len(sys.argv) > 1 else ".cache/eval/set"
BIN = sys.argv[2] if len(sys.argv) > 2 else "target/release/stagebox"
NMP = "models/basic_pitch/nmp.onnx"


def hz(m):
    return 440.0 * 2 ** ((np.asarray(m, dtype=float) - 69.0) / 12.0)


def mono_input(wav, tmp):
    """The clip the node's patch renders: the file as it is, whose first channel alone the
    patches' one-channel input reads (a live input's first channel: how every number in
    BENCHMARKS.md was measured); with EVAL_CHANNEL=mean, its channels' mean (as offline Basic
    Pitch reads a file), written to `tmp`."""
    if os.environ.get("EVAL_CHANNEL") != "mean":
        return wav
    import soundfile
    info = soundfile.info(wav)
    if info.channels == 1:
        return wav
    audio, rate = soundfile.read(wav, dtype="float32")
    mono = os.path.join(tmp, "mono.wav")
    soundfile.write(mono, audio.mean(axis=1), rate, subtype="FLOAT")
    return mono


def stagebox_notes(wav, patch, tmp, extra=()):
    ev = os.path.join(tmp, "e.jsonl")
    wav = mono_input(wav, tmp)
    t0 = time.time()
    subprocess.run([BIN, "render", "--patch", patch, "--input", wav, "--output", os.path.join(tmp, "o.wav"), "--events-out", ev, "--tail", "1.0", *extra], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - t0
    notes, open_, bends = [], {}, []
    for line in open(ev):
        j = json.loads(line)
        if j["type"] == "note_on":
            key = (j["channel"], j["pitch"])
            if key in open_:
                s = open_.pop(key)
                notes.append((s[0], j["onset_s"], j["pitch"], s[1]))
            open_[key] = (j["onset_s"], j["time_s"])
        elif j["type"] == "note_off":
            key = (j["channel"], j["pitch"])
            if key in open_:
                s = open_.pop(key)
                notes.append((s[0], max(j["onset_s"], s[0] + 0.01), j["pitch"], s[1]))
        elif j["type"] == "pitch_bend":
            b = j["bytes"]
            bends.append((j["time_s"], ((b[2] << 7 | b[1]) - 8192) / 8192.0 * 2.0))
    for (ch, p), (s, emitted) in open_.items():
        notes.append((s, s + 0.5, p, emitted))
    return sorted(notes), bends, wall


def basic_pitch_notes(wav):
    cache = os.path.join(SET, "offline-bp", os.path.basename(wav) + ".json")
    if os.path.exists(cache):
        return [tuple(n) for n in json.load(open(cache))]
    from basic_pitch.inference import predict
    _, _, events = predict(wav, NMP)
    notes = sorted((float(s), float(e), int(p), None) for s, e, p, *_ in events)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    json.dump(notes, open(cache, "w"))
    return notes


def score(ref, est):
    ri = np.array([[s, e] for s, e, _ in ref])
    rp = hz([p for _, _, p in ref])
    if not est:
        return dict(f50=0.0, f100=0.0, foff=0.0, lat=[])
    ei = np.array([[s, max(e, s + 1e-3)] for s, e, _, _ in est])
    ep = hz([p for _, _, p, _ in est])
    f50 = mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep, onset_tolerance=0.05, offset_ratio=None)[2]
    f100 = mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep, onset_tolerance=0.1, offset_ratio=None)[2]
    foff = mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep, onset_tolerance=0.05, offset_ratio=0.2)[2]
    lat = []
    for r, e in mir_eval.transcription.match_notes(ri, rp, ei, ep, onset_tolerance=0.1, offset_ratio=None):
        if est[e][3] is not None:
            lat.append(est[e][3] - ref[r][0])
    return dict(f50=f50, f100=f100, foff=foff, lat=lat)


def own_bend(bends, bend_times, x, sent):
    """The pitch bend (semitones) in effect at time x for a note sent at `sent`: the last one sent
    at or after the note was (bends sent before it bent the note that sounded then: a receiver
    never applies them to this one, whose onset is placed back where its sound began)."""
    k = np.searchsorted(bend_times, x) - 1 if len(bend_times) else -1
    return bends[k][1] if k >= 0 and (sent is None or bend_times[k] >= sent - 1e-9) else 0.0


def raw_pitch_accuracy(ref, est, bends):
    """Share of reference-voiced 10 ms frames where the estimate is within 50 cents: the note
    sounding there plus its own pitch bend (`own_bend`)."""
    t = np.arange(0, max(e for _, e, _ in ref), 0.01)
    ok = tot = 0
    bt = np.array([b[0] for b in bends])
    for x in t:
        r = [p for s, e, p in ref if s <= x < e]
        if not r:
            continue
        tot += 1
        a = [(p, sent) for s, e, p, sent in est if s <= x < e]
        if not a:
            continue
        note, sent = a[-1]
        if abs(note + own_bend(bends, bt, x, sent) - r[0]) <= 0.5:
            ok += 1
    return ok / tot if tot else 0.0


F0_RECORDER = """
[[node]]
id = "f0_take"
type = "recorder"
channels = 1
format = "float32"
path = "f0_take.wav"
[[connect]]
from = "line.f0"
to = "f0_take"
"""


def with_f0_take(melody_patch, tmp):
    """The melody patch with its node's f0 control output recorded (the node's id is `line`)."""
    path = os.path.join(tmp, "melody-f0.toml")
    open(path, "w").write(open(melody_patch).read() + F0_RECORDER)
    return path


def f0_raw_pitch_accuracy(ref, takes):
    """MIREX raw pitch accuracy of the node's f0 curve: the share of reference-voiced 10 ms
    frames where the f0 output (held through unvoiced hops, as the node gives it) is within 50
    cents of the reference, voicing ignored."""
    import soundfile as sf

    f0, sr = sf.read(os.path.join(takes, "f0_take.wav"), dtype="float32")
    ok = tot = 0
    for x in np.arange(0, max(e for _, e, _ in ref), 0.01):
        r = [p for s, e, p in ref if s <= x < e]
        if not r:
            continue
        tot += 1
        k = min(int(x * sr), len(f0) - 1)
        ok += bool(f0[k] > 20.0 and abs(69 + 12 * np.log2(f0[k] / 440.0) - r[0]) <= 0.5)
    return ok / tot if tot else 0.0


def main():
    index = json.load(open(os.path.join(SET, "index.json")))
    rows = []
    systems = os.environ.get("EVAL_SYSTEMS", "basic_pitch,offline,melody").split(",")
    patch = os.environ.get("EVAL_PATCH", "patches/transcribe.toml")
    melody_patch = os.environ.get("EVAL_MELODY_PATCH", "patches/melody.toml")
    with tempfile.TemporaryDirectory() as tmp:
        melody_f0_patch = with_f0_take(melody_patch, tmp)
        takes = os.path.join(tmp, "takes")
        for clip in index:
            ref = [tuple(n) for n in clip["notes"]]
            dur = max(e for _, e, _ in ref)
            if "basic_pitch" in systems:
                est, _, wall = stagebox_notes(clip["wav"], patch, tmp)
                rows.append(dict(clip, system="stagebox basic_pitch", audio_s=dur, wall=wall, **score(ref, est)))
            if "offline" in systems:
                rows.append(dict(clip, system="offline Basic Pitch", audio_s=dur, wall=None, **score(ref, basic_pitch_notes(clip["wav"]))))
            if "melody" in systems and clip["kind"] == "single":
                est, bends, wall = stagebox_notes(clip["wav"], melody_f0_patch, tmp, ["--record-dir", takes])
                r = dict(clip, system="stagebox melody", audio_s=dur, wall=wall, **score(ref, est))
                r["rpa"] = raw_pitch_accuracy(ref, est, bends)
                r["f0_rpa"] = f0_raw_pitch_accuracy(ref, takes)
                rows.append(r)
            print(f"{os.path.basename(clip['wav'])}: " + ", ".join(f"{r['system']} F1@50 {r['f50']:.2f}" for r in rows[-3:] if r["wav"] == clip["wav"]), file=sys.stderr)
    json.dump([{k: v for k, v in r.items() if k != "notes"} for r in rows], open(os.path.join(SET, "results.json"), "w"))
    report(rows)


def soundfonts(rows):
    """The SoundFonts (or `recording`, scripts/eval/make_real.py) the rows were rendered with."""
    order = ["fluidr3", "timgm6mb"]
    return order + sorted({r["soundfont"] for r in rows} - set(order))


def report(rows):
    def agg(sel):
        if not sel:
            return None
        lat = [x for r in sel for x in r["lat"]]
        return dict(
            n=len(sel),
            f50=np.mean([r["f50"] for r in sel]),
            f100=np.mean([r["f100"] for r in sel]),
            foff=np.mean([r["foff"] for r in sel]),
            med=np.median(lat) * 1e3 if lat else float("nan"),
            p90=np.percentile(lat, 90) * 1e3 if lat else float("nan"),
            rpa=np.mean([r["rpa"] for r in sel]) if all("rpa" in r for r in sel) else None,
            f0_rpa=np.mean([r["f0_rpa"] for r in sel]) if all("f0_rpa" in r for r in sel) else None,
        )

    print("| clips | system | soundfont | attack | n | onset F1 @50 ms | onset F1 @100 ms | F1 with offsets | note-on latency median (ms) | p90 (ms) | raw pitch acc. |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind in ("poly", "single"):
        for system in ("stagebox basic_pitch", "offline Basic Pitch", "stagebox melody"):
            for sf in soundfonts(rows):
                for attack in ("fast", "slow", "all"):
                    sel = [r for r in rows if r["kind"] == kind and r["system"] == system and r["soundfont"] == sf and (attack == "all" or r["attack"] == attack)]
                    a = agg(sel)
                    if a is None:
                        continue
                    rpa = f"{a['rpa'] * 100:.1f}%" if a["rpa"] is not None else ""
                    med = "" if system == "offline Basic Pitch" else f"{a['med']:.0f}"
                    p90 = "" if system == "offline Basic Pitch" else f"{a['p90']:.0f}"
                    print(f"| {kind} | {system} | {sf} | {attack} | {a['n']} | {a['f50']:.3f} | {a['f100']:.3f} | {a['foff']:.3f} | {med} | {p90} | {rpa} |")
    if any("family" in r for r in rows):
        report_families(rows, agg)
    sb = [r for r in rows if r["wall"]]
    for system in ("stagebox basic_pitch", "stagebox melody"):
        sel = [r for r in sb if r["system"] == system]
        if sel:
            print(f"\n{system}: offline render speed {sum(r['audio_s'] for r in sel) / sum(r['wall'] for r in sel):.1f}x real time over {len(sel)} clips (the render waits for every model result).")


def report_families(rows, agg):
    """Per family (scripts/eval/make_families.py's sets; polyphonic clips apart), each system, each
    SoundFont."""
    print("\n| family | system | soundfont | clips | onset F1 @50 ms | note-on latency median / p90 (ms) | raw pitch acc. (notes) | (f0 output) |")
    print("|---|---|---|---:|---:|---|---:|---:|")
    group = lambda r: r.get("family", "?") + (" (poly)" if r["kind"] == "poly" else "")  # noqa: E731
    families = sorted({group(r) for r in rows if "family" in r}) + ["all single", "all poly"]
    for family in families:
        for system in ("stagebox melody", "stagebox basic_pitch", "offline Basic Pitch"):
            for sf in soundfonts(rows):
                every = {"all single": "single", "all poly": "poly"}.get(family)
                sel = [r for r in rows if r["system"] == system and r["soundfont"] == sf and (r["kind"] == every if every else group(r) == family)]
                a = agg(sel)
                if a is None:
                    continue
                lat = "" if system == "offline Basic Pitch" else f"{a['med']:.0f} / {a['p90']:.0f}"
                rpa = f"{a['rpa'] * 100:.1f}%" if a["rpa"] is not None else ""
                f0_rpa = f"{a['f0_rpa'] * 100:.1f}%" if a["f0_rpa"] is not None else ""
                print(f"| {family} | {system} | {sf} | {a['n']} | {a['f50']:.3f} | {lat} | {rpa} | {f0_rpa} |")


if __name__ == "__main__":
    main()
