#!/usr/bin/env python3
"""Renders the `timbre` model's data (reproducible: a seed per piece): single lines from the
music21 corpus (Bach chorales' soprano and bass, string quartets' first violin and cello,
Monteverdi madrigals' voices, fiddle tunes from Ryan's Mammoth Collection) played by five
General MIDI instruments of different families (flute, violin, trumpet, alto sax, cello), each
with both SoundFonts (FluidR3_GM, TimGM6mb): ten instruments for the model.

Each line is moved by octaves into its instrument's range, at a tempo and dynamics drawn per
piece (a velocity per phrase, a jitter per note), rendered dry by FluidSynth at 48 kHz. Its
conditioning (f0, voiced, A-weighted loudness every 4 ms) is computed by the engine itself:
`stagebox render` through a patch with the `features` node, the very code the live node is
played by. The audio is kept at 16 kHz (the model's rate).

The split, by piece: a piece goes to test, validation or train by a hash of its name (1/8,
1/8, 6/8); every instrument plays every split (the instruments are what the model learns;
the lines it is scored on are ones it never heard).

    .cache/eval-venv/bin/python models/timbre/make_data.py [--pieces N]

Writes .cache/timbre/data/{train,val,test}/<piece>-<instrument>.npz (f0_hz, voiced,
loudness_db at 250 frames a second; audio at 16 kHz) and index.json.
"""
import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
from multiprocessing import Pool

import music21
import numpy as np
import pretty_midi
import soundfile as sf
from scipy.signal import resample_poly

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "eval"))
from make_families import corpus_score  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, ".cache", "timbre", "data")
BIN = os.environ.get("STAGEBOX_BIN", os.path.join(ROOT, "target", "release", "stagebox"))
SR, MODEL_SR, FRAME = 48000, 16000, 192  # engine rate, model rate, engine samples a frame
SOUNDFONTS = {"": "/usr/share/sounds/sf2/FluidR3_GM.sf2", "_gm6": "/usr/share/sounds/sf2/TimGM6mb.sf2"}
# name: (GM program, lowest, highest, centre, which part: top or bottom)
INSTRUMENTS = {
    "flute": (73, 60, 96, 79, "top"),
    "violin": (40, 55, 100, 74, "top"),
    "trumpet": (56, 54, 82, 69, "top"),
    "alto_sax": (65, 49, 81, 66, "top"),
    "cello": (42, 36, 76, 52, "bottom"),
}
COMPOSERS = {"bach": 26, "ryansMammoth": 14, "beethoven": 8, "mozart": 8, "haydn": 5, "monteverdi": 10}
EXCERPT_SECS = 20.0
FEATURES_PATCH = """
[[node]]
id = "in"
type = "input"
channels = 1
[[node]]
id = "feat"
type = "features"
min_hz = 50.0
max_hz = 2000.0
[[node]]
id = "out"
type = "output"
channels = 1
[[connect]]
from = "in"
to = "out"
"""
for curve in ("f0", "voiced", "loudness"):
    FEATURES_PATCH += f"""
[[node]]
id = "{curve}"
type = "recorder"
channels = 1
format = "float32"
path = "{curve}.wav"
[[connect]]
from = "feat.{curve}"
to = "{curve}"
"""
FEATURES_PATCH += '[[connect]]\nfrom = "in"\nto = "feat"\n'


def split_of(piece):
    h = int(hashlib.sha1(piece.encode()).hexdigest(), 16) % 8
    return "test" if h == 0 else "val" if h == 1 else "train"


def pieces():
    out = []
    for composer, n in COMPOSERS.items():
        paths = sorted(str(p) for p in music21.corpus.getComposer(composer))
        random.Random(composer).shuffle(paths)
        out += [(composer, p) for p in paths[:n]]
    return out


def line(part, spq):
    """A part as one line: (start s, end s, midi), the top note of chords, no overlaps."""
    notes = []
    for n in part.flatten().notes:
        p = max(n.pitches).midi if n.isChord else n.pitch.midi
        start = float(n.offset) * spq
        notes.append([start, start + float(n.quarterLength) * spq, p])
    notes.sort()
    for a, b in zip(notes, notes[1:]):
        a[1] = min(a[1], b[0])
    return [n for n in notes if n[1] - n[0] > 0.03]


def fit(notes, lo, hi, centre):
    """Moved by octaves so the median sits near the instrument's centre; notes still out of
    range folded in by octaves."""
    shift = 12 * round((centre - np.median([p for _, _, p in notes])) / 12)
    out = []
    for s, e, p in notes:
        p += shift
        while p < lo:
            p += 12
        while p > hi:
            p -= 12
        out.append((s, e, p))
    return out


def render(notes, program, sf2, path, secs, rng):
    pm = pretty_midi.PrettyMIDI()
    ins = pretty_midi.Instrument(program=program)
    phrase_vel = rng.randint(55, 115)
    for k, (s, e, p) in enumerate(notes):
        if k % 8 == 0:
            phrase_vel = rng.randint(55, 115)
        vel = max(1, min(127, phrase_vel + rng.randint(-10, 10)))
        ins.notes.append(pretty_midi.Note(velocity=vel, pitch=int(p), start=s, end=e))
    pm.instruments.append(ins)
    with tempfile.TemporaryDirectory() as d:
        mid, wav = os.path.join(d, "x.mid"), os.path.join(d, "x.wav")
        pm.write(mid)
        subprocess.run(["fluidsynth", "-ni", "-g", "0.6", "-r", str(SR), "-o", "synth.reverb.active=0",
                        "-o", "synth.chorus.active=0", "-F", wav, sf2, mid],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        x, _ = sf.read(wav, dtype="float32")
    x = x.mean(axis=1) if x.ndim == 2 else x
    n = int(secs * SR)
    sf.write(path, np.pad(x[:n], (0, max(0, n - len(x)))), SR, subtype="FLOAT")


def features(wav, work):
    """f0, voiced and loudness every 4 ms, by the engine (the value at each frame's end)."""
    patch = os.path.join(work, "features.toml")
    open(patch, "w").write(FEATURES_PATCH)
    rec = os.path.join(work, "rec")
    subprocess.run([BIN, "render", "--patch", patch, "--input", wav, "--output", os.path.join(work, "o.wav"),
                    "--record-dir", rec], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    curves = {c: sf.read(os.path.join(rec, c + ".wav"), dtype="float32")[0] for c in ("f0", "voiced", "loudness")}
    return {c: v[FRAME - 1::FRAME] for c, v in curves.items()}


def example(job):
    composer, path = job
    piece = composer + "/" + os.path.basename(path)
    rng = random.Random(piece)
    split = split_of(piece)
    ident = hashlib.sha1(piece.encode()).hexdigest()[:10]
    folder = os.path.join(OUT, split)
    done = os.path.join(folder, ident + ".done")
    if os.path.exists(done):
        return json.load(open(done))
    _, parts = corpus_score(path, rng)
    if not parts:
        return None
    bpm = rng.uniform(60, 130) if composer != "ryansMammoth" else rng.uniform(80, 120)
    spq = 60.0 / bpm
    os.makedirs(folder, exist_ok=True)
    meta = {"piece": piece, "split": split, "bpm": bpm, "examples": []}
    for name, (program, lo, hi, centre, which) in INSTRUMENTS.items():
        notes = line(parts[0] if which == "top" else parts[-1], spq)
        if len(notes) < 8:
            continue
        t0 = notes[0][0]
        total = notes[-1][1] - t0
        start = t0 + rng.uniform(0, max(0.0, total - EXCERPT_SECS))
        notes = [(s - start, e - start, p) for s, e, p in notes if s >= start and s < start + EXCERPT_SECS]
        if len(notes) < 4:
            continue
        notes = fit(notes, lo, hi, centre)
        secs = min(EXCERPT_SECS, notes[-1][1] + 0.5)
        for suffix, sf2 in SOUNDFONTS.items():
            with tempfile.TemporaryDirectory() as work:
                wav = os.path.join(work, "line.wav")
                render(notes, program, sf2, wav, secs, rng)
                f = features(wav, work)
                x, _ = sf.read(wav, dtype="float32")
            audio = resample_poly(x, 1, SR // MODEL_SR).astype(np.float32)
            out = os.path.join(folder, f"{ident}-{name}{suffix}.npz")
            np.savez(out, audio=audio, f0_hz=f["f0"], voiced=f["voiced"], loudness_db=f["loudness"],
                     notes=np.array(notes, np.float32))
            meta["examples"].append({"file": os.path.relpath(out, OUT), "instrument": name + suffix, "secs": secs})
    json.dump(meta, open(done, "w"))
    return meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    with Pool(a.jobs) as pool:
        metas = [m for m in pool.imap_unordered(example, pieces()) if m]
    metas.sort(key=lambda m: m["piece"])
    json.dump(metas, open(os.path.join(OUT, "index.json"), "w"), indent=1)
    for split in ("train", "val", "test"):
        ex = [e for m in metas if m["split"] == split for e in m["examples"]]
        print(f"{split}: {sum(m['split'] == split for m in metas)} pieces, {len(ex)} lines, {sum(e['secs'] for e in ex) / 60:.1f} min")


if __name__ == "__main__":
    main()
