#!/usr/bin/env python3
"""Renders the separator's training, validation and test data (reproducible: a seed per piece).

Each example is one excerpt of a music21 corpus piece (Bach, Palestrina, Monteverdi, the
Trecento, string quartets) split into stems: `lead` (the top part), `other` (the inner parts)
and `bass` (the lowest part, an octave down when it sits high), plus `drums`, a pattern
generated for it (rock, funk, shuffle and triplet feels, half time, waltz, 6/8, bossa,
breakbeat; fills at phrase ends; humanised). Every stem gets a General MIDI program drawn from
its role's pool, a velocity, a transposition and a tempo shared by the piece, and is rendered
alone by FluidSynth with one of two SoundFonts (FluidR3_GM, TimGM6mb; training's later renders
also a third, `THIRD_SOUNDFONT_FROM`), with reverb or not.

The split, by piece and by instrument: a piece goes to test, validation or train by a hash of
its name (1/10, 1/10, 8/10); test examples draw their programs and drum kits from pools that
training never uses, so a test mix shares no piece, no drum pattern and no instrument with
training. Training remixes stems across examples at random levels (train.py).

`--test-variants K`: each test piece rendered K - 1 more times (another excerpt, tempo, key,
SoundFont and draw of programs, from the test pools only) into DIR/testx: a larger test set
for `evaluate.py --split testx`, where 30 mixes' medians cannot tell 0.15 dB apart.
`--val-variants K`: each validation piece rendered K - 1 more times, its programs from
VAL_POOLS (instruments neither training nor test uses), into DIR/valx: the validation split for
choices that must hold on instruments training never heard (calibrate.py --split valx).

    .cache/eval-venv/bin/python models/separator/make_data.py [--pieces N] [--variants K] [--out DIR]

Writes DIR/{train,val,valx,test,testx}/<id>/{drums,bass,lead,other}.wav (48 kHz mono int16) and
DIR/index.json. Default DIR: .cache/separator/data.
"""
import argparse
import hashlib
import json
import os
import random
import subprocess
import tempfile
from multiprocessing import Pool

import music21
import numpy as np
import pretty_midi
import soundfile as sf

SR = 48000
SOUNDFONTS = {
    "fluidr3": "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "timgm6mb": "/usr/share/sounds/sf2/TimGM6mb.sf2",
}
POOLS = {
    "train": {
        "lead": [73, 40, 56, 71, 65, 68, 80, 53, 22, 11],
        "other": [0, 4, 19, 24, 48, 89, 61, 6],
        "bass": [32, 33, 38, 42, 70],
        "kit": [0, 16, 25, 40],
    },
    "test": {
        "lead": [72, 64, 41, 57, 81, 54],
        "other": [1, 16, 25, 49, 52, 90],
        "bass": [34, 39, 43, 58],
        "kit": [8, 24, 32],
    },
}
# Variants after the first (training pieces only, `--variants`) also draw from these, which
# neither the first variant nor the test pools use: more timbres for the same pieces.
MORE_TRAIN = {
    "lead": [74, 69, 60, 66, 82, 84, 13, 75],
    "other": [2, 5, 21, 26, 27, 46, 50, 88],
    "bass": [35, 36, 37],
    "kit": [],
}
# Variants from the fourth on (`--variants 5`) draw from these as well: more basses and
# accompaniments (the test split's basses include a contrabass and a tuba, its harmony a choir
# and a drawbar organ, which no training program resembled closely), none in a test pool.
EXTRA_TRAIN = {
    "lead": [23, 59, 78, 79, 85, 62],
    "other": [3, 7, 17, 28, 51, 53, 91, 92, 94],
    "bass": [44, 45, 62, 67, 87, 20],
    "kit": [],
}
# The validation split's instruments (`--val-variants`: more renders of each validation piece,
# into DIR/valx): timbres no training or test pool has (mallets, plucked strings, overdriven
# guitars, more synth leads and pads; a piano, an organ's pedal and strings on the bass line), so
# that choices made on valx are judged on instruments training never heard, as the test split's
# are. (The nineteenth session trained on these as variants 5 and 6 of the training pieces, and
# scored on validation pieces played by training instruments; those renders were moved off the
# training folder and variants 5 and 6 rendered again as below.) The drum kits are the
# training's: GM has too few.
VAL_POOLS = {
    "lead": [76, 77, 83, 86, 63, 12, 104, 105, 111],
    "other": [18, 29, 30, 14, 15, 93, 95, 10],
    "bass": [0, 19, 48, 63, 71],
    "kit": [0, 16, 25, 40],
}
# Variants from the sixth on (`--variants 7`) draw the lead's and the harmony's programs from one
# pool, both roles' programs together: a piano or a mallet may play the top line and a flute the
# inner parts, so the network must tell the lead by its part (the top line, one note at a time)
# and not by its colour alone. (On valx, v8's lead is 0.2 dB: its unseen mallets, sitar, banjo
# and fifths leads went to the other stem, -2 to -7 dB.)
CROSS_ROLE_FROM = 5
# Variants from the eighth on (`--variants 9`) also draw the bass line's program from the
# harmony's pool (an electric piano's left hand, a guitar, a harp, a pad, an accordion, synth
# strings), so that the bass too is told by its part (the lowest line) and not by its colour
# alone (on valx, v11's basses played by a piano, strings or a clarinet are -0.6 to 0.7 dB on
# one SoundFont or the other). The validation split's bass programs stay out of it, so that valx
# still plays its bass lines on instruments no training bass had.
CROSS_BASS_FROM = 7
# Variants from the tenth on (`--variants 11` and more) are played by a third SoundFont,
# MuseScore_General (Debian's musescore-general-soundfont-small, MIT): the training pools'
# programs and kits (with the cross-role and cross-bass draws above) on other samples, so that a
# stem is learned by more than two recordings of each instrument. The validation and test splits
# stay on the first two SoundFonts. (The pitch network never trains on this SoundFont: issue
# 13's evaluation plays its unseen instruments with it; this is the separator's data only.)
THIRD_SOUNDFONT_FROM = 9
THIRD_SOUNDFONT = ("musescore", "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3")
COMPOSERS = {"bach": 120, "palestrina": 80, "monteverdi": 50, "trecento": 40, "haydn": 9, "mozart": 16, "beethoven": 26}
EXCERPT_SECS = 30.0
# GM drum keys
KICK, SNARE, SIDE, CHH, OHH, PHH, RIDE, CRASH, TOM_L, TOM_M, TOM_H, CLAP, SHAKER, CLAVE = 36, 38, 37, 42, 46, 44, 51, 49, 45, 47, 50, 39, 70, 75


def split_of(piece):
    h = int(hashlib.sha1(piece.encode()).hexdigest(), 16) % 10
    return "test" if h == 0 else "val" if h == 1 else "train"


def key_of(path):
    """A piece's name inside the corpus, without its format: `bach/bwv293` (the same chorale in
    two formats is one piece, in one split)."""
    rel = str(path).split("/corpus/", 1)[-1]
    return os.path.splitext(rel)[0]


def pieces(limit):
    out = []
    for composer, n in COMPOSERS.items():
        by_key = {}
        for p in sorted(str(p) for p in music21.corpus.getComposer(composer)):
            by_key.setdefault(key_of(p), p)
        keys = sorted(by_key)
        random.Random(composer).shuffle(keys)
        out += [(k, by_key[k]) for k in keys[:n]]
    random.Random(1).shuffle(out)
    return out[:limit]


def part_notes(part, spq, t0, secs):
    notes = []
    for n in part.flatten().notes:
        start = float(n.offset) * spq - t0
        end = start + float(n.quarterLength) * spq
        if end <= 0 or start >= secs:
            continue
        for p in (n.pitches if n.isChord else [n.pitch]):
            notes.append((max(start, 0.0), min(end, secs), p.midi))
    return notes


def drum_pattern(rng, secs, bpm):
    """A drum part: a style, varied per bar, with fills before phrase ends."""
    style = rng.choice(["rock", "funk", "shuffle", "halftime", "waltz", "sixeight", "bossa", "breakbeat"])
    beats, sub = {"waltz": (3, 2), "sixeight": (2, 3), "shuffle": (4, 3)}.get(style, (4, 4 if style in ("funk", "breakbeat") else 2))
    beat_s = 60.0 / bpm
    bar_s = beats * beat_s
    hits = []
    bar = 0
    while bar * bar_s < secs:
        fill = bar % 4 == 3 and rng.random() < 0.6
        for b in range(beats):
            for s in range(sub):
                t = bar * bar_s + (b + s / sub) * beat_s
                on_beat = s == 0
                if fill and b >= beats - 1:
                    hits.append((t, rng.choice([TOM_H, TOM_M, TOM_L, SNARE]), rng.randint(80, 120)))
                    continue
                hat = OHH if (style == "rock" and rng.random() < 0.05) else (RIDE if style in ("bossa", "shuffle") and rng.random() < 0.5 else CHH)
                if style != "halftime" or s % 2 == 0:
                    hits.append((t, hat, rng.randint(50, 90) if on_beat else rng.randint(30, 70)))
                if style in ("rock", "funk", "breakbeat", "halftime"):
                    if on_beat and b in ((0,) if style == "halftime" else (0, 2)):
                        hits.append((t, KICK, rng.randint(90, 120)))
                    if on_beat and b == (2 if style == "halftime" else 1) or (on_beat and b == 3 and style != "halftime"):
                        hits.append((t, SNARE, rng.randint(90, 125)))
                    if style in ("funk", "breakbeat") and not on_beat and rng.random() < 0.2:
                        hits.append((t, rng.choice([KICK, SNARE]), rng.randint(40, 80)))
                elif style in ("waltz", "sixeight"):
                    if on_beat and b == 0:
                        hits.append((t, KICK, rng.randint(90, 115)))
                    elif on_beat or (style == "sixeight" and s == 0):
                        hits.append((t, SIDE if style == "waltz" else SNARE, rng.randint(60, 100)))
                elif style == "shuffle":
                    if on_beat and b in (0, 2):
                        hits.append((t, KICK, rng.randint(90, 115)))
                    if on_beat and b in (1, 3):
                        hits.append((t, SNARE, rng.randint(90, 120)))
                elif style == "bossa":
                    if on_beat:
                        hits.append((t, KICK, rng.randint(70, 100)))
                    if (b * sub + s) in (0, 3, 6) and bar % 2 == 0 or (b * sub + s) in (2, 4) and bar % 2 == 1:
                        hits.append((t, CLAVE, rng.randint(70, 100)))
        if bar % 8 == 0:
            hits.append((bar * bar_s, CRASH, rng.randint(80, 110)))
        bar += 1
    jitter = rng.uniform(0.0, 0.008)
    return style, [(max(0.0, t + rng.gauss(0, jitter)), k, v) for t, k, v in hits if t < secs]


def render(notes, program, is_drum, sf2, reverb, path, secs, rng):
    pm = pretty_midi.PrettyMIDI()
    ins = pretty_midi.Instrument(program=program, is_drum=is_drum)
    for n in notes:
        if is_drum:
            t, key, vel = n
            ins.notes.append(pretty_midi.Note(velocity=vel, pitch=key, start=t, end=t + 0.1))
        else:
            s, e, p, vel = n
            if e - s > 0.02 and 0 <= p < 128:
                ins.notes.append(pretty_midi.Note(velocity=vel, pitch=int(p), start=s, end=e))
    pm.instruments.append(ins)
    with tempfile.TemporaryDirectory() as d:
        mid = os.path.join(d, "x.mid")
        pm.write(mid)
        wav = os.path.join(d, "x.wav")
        room = f"{rng.uniform(0.2, 0.9):.2f}"
        subprocess.run(
            ["fluidsynth", "-ni", "-g", "0.5", "-r", str(SR), "-o", f"synth.reverb.active={int(reverb)}",
             "-o", f"synth.reverb.room-size={room}", "-o", "synth.chorus.active=0",
             # an .sf3's samples are compressed: decode only those the file plays (the same
             # output, a third of the time: the whole SoundFont took 3 s to load)
             *(["-o", "synth.dynamic-sample-loading=1"] if sf2.endswith(".sf3") else []), "-F", wav, sf2, mid],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        x, sr = sf.read(wav, dtype="float32")
    x = x.mean(axis=1) if x.ndim == 2 else x
    n = int(secs * SR)
    x = np.pad(x[:n], (0, max(0, n - len(x))))
    sf.write(path, x, SR, subtype="PCM_16")


def example(job):
    """One example: variant 0 of a piece is what every split has; a training or test piece's
    variant k (k > 0) is another excerpt, tempo, key, SoundFont and set of programs of the same
    piece (a test piece's from the test pools only, into DIR/testx)."""
    (piece, path), variant, out = job
    split = split_of(piece)
    seed = piece if variant == 0 else f"{piece}#{variant}"
    rng = random.Random(seed)
    pool = POOLS["test" if split == "test" else "train"]
    if split == "test" and variant > 0:  # more renders of a test piece: the test pools only
        split = "testx"
    if split == "val" and variant > 0:  # more renders of a validation piece: the validation pools
        split, pool = "valx", VAL_POOLS
    for first, more in ((1, MORE_TRAIN), (3, EXTRA_TRAIN)):
        if split == "train" and variant >= first:
            pool = {role: programs + more[role] for role, programs in pool.items()}
    if split == "train" and variant >= CROSS_BASS_FROM:  # the bass line on a harmony instrument too
        pool = dict(pool, bass=pool["bass"] + [p for p in pool["other"] if p not in VAL_POOLS["bass"]])
    if split == "train" and variant >= CROSS_ROLE_FROM:  # the lead and the harmony from one pool
        pool = dict(pool, lead=pool["lead"] + pool["other"], other=pool["other"] + pool["lead"])
    ident = hashlib.sha1(seed.encode()).hexdigest()[:12]
    folder = os.path.join(out, split, ident)
    if os.path.exists(os.path.join(folder, "meta.json")):
        return json.load(open(os.path.join(folder, "meta.json")))
    try:
        score = music21.corpus.parse(path)
    except Exception:
        return None
    parts = [p for p in score.parts if len(p.flatten().notes) > 4]
    if len(parts) < 3:
        return None
    bpm = rng.uniform(70, 140)
    spq = 60.0 / bpm
    total = float(score.highestTime) * spq
    t0 = rng.uniform(0, max(0.0, total - EXCERPT_SECS))
    secs = min(EXCERPT_SECS, total - t0)
    if secs < 8:
        return None
    shift = rng.randint(-5, 5)
    stems = {"lead": [parts[0]], "other": parts[1:-1], "bass": [parts[-1]]}
    os.makedirs(folder, exist_ok=True)
    meta = {"piece": piece, "variant": variant, "split": split, "bpm": bpm, "secs": secs, "shift": shift, "stems": {}}
    sf_name = rng.choice(sorted(SOUNDFONTS))
    sf2 = SOUNDFONTS[sf_name]
    if split == "train" and variant >= THIRD_SOUNDFONT_FROM:
        sf_name, sf2 = THIRD_SOUNDFONT
    for role, ps in stems.items():
        notes = [n for p in ps for n in part_notes(p, spq, t0, secs)]
        if role == "bass" and notes and np.median([p for _, _, p in notes]) + shift > 52:
            notes = [(s, e, p - 12) for s, e, p in notes]
        vel = rng.randint(60, 115)
        notes = [(s, e, p + shift, max(1, min(127, vel + rng.randint(-8, 8)))) for s, e, p in notes]
        program = rng.choice(pool[role])
        reverb = rng.random() < 0.4
        render(notes, program, False, sf2, reverb, os.path.join(folder, role + ".wav"), secs, rng)
        meta["stems"][role] = {"program": program, "reverb": reverb}
    style, hits = drum_pattern(rng, secs, bpm)
    kit = rng.choice(pool["kit"])
    render(hits, kit, True, sf2, rng.random() < 0.4, os.path.join(folder, "drums.wav"), secs, rng)
    meta["stems"]["drums"] = {"kit": kit, "style": style}
    meta["soundfont"] = sf_name
    meta["id"] = ident
    json.dump(meta, open(os.path.join(folder, "meta.json"), "w"))
    return meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pieces", type=int, default=340)
    ap.add_argument("--out", default=".cache/separator/data")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--variants", type=int, default=1, help="renders of each training piece")
    ap.add_argument("--val-variants", type=int, default=1,
                    help="renders of each validation piece (those after the first go to DIR/valx)")
    ap.add_argument("--test-variants", type=int, default=1,
                    help="renders of each test piece (those after the first go to DIR/testx)")
    a = ap.parse_args()
    todo = [(p, 0, a.out) for p in pieces(a.pieces)]
    todo += [(p, k, a.out) for k in range(1, a.variants) for p in pieces(a.pieces) if split_of(p[0]) == "train"]
    todo += [(p, k, a.out) for k in range(1, a.val_variants) for p in pieces(a.pieces) if split_of(p[0]) == "val"]
    todo += [(p, k, a.out) for k in range(1, a.test_variants) for p in pieces(a.pieces) if split_of(p[0]) == "test"]
    with Pool(a.jobs) as pool:
        metas = [m for m in pool.imap_unordered(example, todo) if m]
    metas.sort(key=lambda m: m["id"])
    json.dump(metas, open(os.path.join(a.out, "index.json"), "w"), indent=1)
    for split in ("train", "val", "valx", "test", "testx"):
        ms = [m for m in metas if m["split"] == split]
        print(f"{split}: {len(ms)} examples, {sum(m['secs'] for m in ms) / 60:.1f} min")


if __name__ == "__main__":
    main()
