#!/usr/bin/env python3
"""Builds the generalisation set for pitch-to-MIDI (issue 13), reproducible and deterministic:
single lines of many kinds of music played by every General MIDI melodic family, split by
piece AND by instrument into train, validation and test. Report numbers on the test part only
(pieces and instruments never used in training or tuning); tune on train and validation.

Families (GM programs): keys (pianos, electric pianos, harpsichord, clavinet, organs), mallets,
plucked strings, bowed strings, brass, reeds, pipes, voices, synth leads.
Instrument split: within a family, in program order, every fourth program from the fourth on is
test, from the third on validation, the rest train; the programs scripts/eval's clips were tuned
on (piano 0, guitar 24, voice 53, flute 73) are always train.
Piece split: by a hash of the piece's name, 1/5 test, 1/5 validation, 3/5 train. Pieces: Bach
chorale soprano and bass lines, string quartets' first violin and cello parts, Monteverdi and
Palestrina voices, fiddle tunes (Ryan's Mammoth Collection), folk songs (the Essen collection).
Each line: a 15 s excerpt, moved by octaves into its instrument's range, at a tempo drawn per
piece, velocities per phrase; rendered by FluidSynth at 44.1 kHz with both SoundFonts.
Polyphonic clips (for `basic_pitch`): every part of a piece at once (chorales, madrigals,
quartets), 15 s, on each keys, mallets and plucked program of the split (two pieces each), and
as an ensemble: each part on another sustained program of the split (bowed, brass, reeds,
pipes, voices), four pieces. Their pieces follow the same piece split.

The reference is the MIDI key. Where a SoundFont has no sound for a key (FluidR3_GM's contrabass
above MIDI 57), scripts/eval/audit_tuning.py finds it and writes a copy of the set's index with
those notes left out (BENCHMARKS.md, seventeenth round); the index written here keeps them.

    .cache/eval-venv/bin/python scripts/eval/make_families.py [--split test] [--lines N] [OUT]
        # default OUT .cache/eval/families-<split>; writes index.json for scripts/eval/evaluate.py
        # --lines: single lines per instrument (default 2, as every number in BENCHMARKS.md so
        # far); more gives a larger validation part to tune on (--split val --lines 6
        # .cache/eval/families-val6)
"""
import argparse
import hashlib
import json
import os
import random
import subprocess

import music21
import pretty_midi

SOUNDFONTS = {"fluidr3": "/usr/share/sounds/sf2/FluidR3_GM.sf2", "timgm6mb": "/usr/share/sounds/sf2/TimGM6mb.sf2"}
# A third General MIDI SoundFont (Debian's musescore-general-soundfont-small, MIT), never used in
# any training or tuning: every instrument body in it is unseen (`--soundfonts musescore`).
MORE_SOUNDFONTS = {"musescore": "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"}
# Instruments a SoundFont plays at another pitch than the MIDI note (measured: a held note's
# spectrum at MIDI 62, 74 and 86): a clip of theirs would score every system against notes that
# do not sound. TimGM6mb's Whistle sounds 9 semitones flat.
MISTUNED = {("timgm6mb", 78)}
# family: (programs, lowest, highest, centre of a line, attack class)
FAMILIES = {
    "keys": ([0, 1, 2, 4, 5, 6, 7, 16, 17, 19], 36, 96, 67, "fast"),
    "mallets": ([8, 9, 10, 11, 12, 13, 14, 15], 53, 96, 74, "fast"),
    "plucked": ([24, 25, 26, 27, 28, 45, 46, 105, 106, 107], 40, 84, 62, "fast"),
    "bowed": ([40, 41, 42, 43, 44, 48, 49, 110], 36, 96, 64, "slow"),
    "brass": ([56, 57, 58, 59, 60, 61, 62, 63], 40, 82, 62, "slow"),
    "reeds": ([64, 65, 66, 67, 68, 69, 70, 71], 36, 88, 64, "slow"),
    "pipes": ([72, 73, 74, 75, 76, 77, 78, 79], 60, 96, 76, "slow"),
    "voices": ([52, 53, 54, 85], 45, 79, 64, "slow"),
    "synth_leads": ([80, 81, 82, 83, 84, 87], 48, 90, 67, "fast"),
}
TUNED_ON = {0, 24, 53, 73}
SOURCES = {"bach": 40, "beethoven": 10, "mozart": 10, "haydn": 6, "monteverdi": 16, "palestrina": 16,
           "ryansMammoth": 24, "essenFolksong": 10}
EXCERPT_SECS = 15.0
PIECES_PER_INSTRUMENT = 2


def render_line(notes, program, sf2, wav):
    """`notes` ((start s, end s, key, velocity)) on General MIDI `program` of SoundFont `sf2`,
    rendered by FluidSynth at 44.1 kHz into `wav` (its MIDI file beside it)."""
    pm = pretty_midi.PrettyMIDI()
    ins = pretty_midi.Instrument(program=program)
    ins.notes = [pretty_midi.Note(velocity=v, pitch=p, start=s, end=e) for s, e, p, v in notes]
    pm.instruments.append(ins)
    mid = wav[:-4] + ".mid"
    pm.write(mid)
    subprocess.run(["fluidsynth", "-ni", "-g", "0.6", "-r", "44100", "-F", wav, sf2, mid], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def instrument_split(program, index):
    if program in TUNED_ON:
        return "train"
    return "test" if index % 4 == 3 else "val" if index % 4 == 2 else "train"


def piece_split(name):
    h = int(hashlib.sha1(name.encode()).hexdigest(), 16) % 5
    return "test" if h == 0 else "val" if h == 1 else "train"


def corpus_score(path, rng):
    """A music21 corpus file's score (from an opus, one drawn with `rng`) and its parts of more
    than 8 notes; (None, []) if it does not parse. (models/timbre/make_data.py uses it too.)"""
    try:
        score = music21.corpus.parse(path)
        if isinstance(score, music21.stream.Opus):
            score = rng.choice(list(score.scores))
    except Exception:
        return None, []
    return score, [p for p in getattr(score, "parts", []) if len(p.flatten().notes) > 8]


def lines_of(source, path, rng):
    """Single lines (start s, end s, midi) of one corpus file: its top and bottom parts."""
    score, parts = corpus_score(path, rng)
    if score is None:
        return []
    parts = parts or [score]
    spq = 60.0 / rng.uniform(70, 140)
    out = []
    for part in {id(parts[0]): parts[0], id(parts[-1]): parts[-1]}.values():
        notes = []
        for n in part.flatten().notes:
            p = max(n.pitches).midi if n.isChord else n.pitch.midi
            s = float(n.offset) * spq
            notes.append([s, s + float(n.quarterLength) * spq, p])
        notes.sort()
        merged = []
        for s, e, p in notes:  # ties: one struck note; overlaps: cut
            if merged and merged[-1][2] == p and abs(merged[-1][1] - s) < 1e-6:
                merged[-1][1] = e
                continue
            if merged:
                merged[-1][1] = min(merged[-1][1], s)
            merged.append([s, e, p])
        merged = [n for n in merged if n[1] - n[0] > 0.05]
        if len(merged) >= 8:
            out.append(merged)
    return out


def excerpt(notes, rng, lo, hi, centre):
    total = notes[-1][1]
    start = rng.uniform(0, max(0.0, total - EXCERPT_SECS))
    sel = [(s - start, min(e, start + EXCERPT_SECS) - start, p) for s, e, p in notes if start <= s < start + EXCERPT_SECS - 0.1]
    if len(sel) < 6:
        return None
    shift = 12 * round((centre - sorted(p for _, _, p in sel)[len(sel) // 2]) / 12)
    out = []
    for s, e, p in sel:
        p += shift
        while p < lo:
            p += 12
        while p > hi:
            p -= 12
        out.append((s, e, p))
    return out


def parts_of(path, rng):
    """Every part of a corpus file as (start s, end s, midi) notes, chords kept; None if it has
    fewer than two parts."""
    _, parts = corpus_score(path, rng)
    if len(parts) < 2:
        return None
    spq = 60.0 / rng.uniform(70, 120)
    out = []
    for part in parts:
        notes = []
        for n in part.flatten().notes:
            s = float(n.offset) * spq
            e = s + float(n.quarterLength) * spq
            notes += [[s, e, p.midi] for p in n.pitches]
        out.append(sorted(n for n in notes if n[1] - n[0] > 0.05))  # no grace notes
    return out


def poly_excerpt(parts, rng, lo, hi):
    """The same 15 s of every part, moved by one number of octaves toward the middle of lo..hi,
    each note then by octaves into it; per part (start, end, midi) lists."""
    total = max(n[1] for p in parts for n in p)
    start = rng.uniform(0, max(0.0, total - EXCERPT_SECS))
    sel = [[(s - start, min(e, start + EXCERPT_SECS) - start, p) for s, e, p in part if start <= s < start + EXCERPT_SECS - 0.1] for part in parts]
    sel = [part for part in sel if part]
    pitches = sorted(p for part in sel for _, _, p in part)
    if len(pitches) < 12:
        return None
    shift = 12 * round(((lo + hi) / 2 - pitches[len(pitches) // 2]) / 12)
    fold = lambda p: p + 12 * max(0, -((p - lo) // 12)) - 12 * max(0, (p - hi + 11) // 12)  # noqa: E731
    return [[(s, e, fold(p + shift)) for s, e, p in part] for part in sel]


def pieces(split):
    out = []
    for source, n in SOURCES.items():
        paths = sorted(str(p) for p in music21.corpus.getComposer(source))
        random.Random(source).shuffle(paths)
        out += [(source, p) for p in paths[: 4 * n] if piece_split(source + "/" + os.path.basename(p)) == split][:n]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--lines", type=int, default=PIECES_PER_INSTRUMENT, help="single lines per instrument")
    ap.add_argument("--soundfonts", default=",".join(SOUNDFONTS), help="comma-separated: " + ", ".join({**SOUNDFONTS, **MORE_SOUNDFONTS}))
    ap.add_argument("--no-poly", action="store_true", help="single lines only")
    ap.add_argument("--programs", help="comma-separated: these programs (of any part) on the split's pieces, not the split's own; "
                    "for instruments a part lacks, played by a SoundFont no training used (the train part's organs on musescore)")
    ap.add_argument("out", nargs="?")
    a = ap.parse_args()
    every = {**SOUNDFONTS, **MORE_SOUNDFONTS}
    SOUNDFONTS.clear()
    SOUNDFONTS.update({name: every[name] for name in a.soundfonts.split(",")})
    out_dir = a.out or f".cache/eval/families-{a.split}"
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(13)
    lines = [(s, p, l) for s, p in pieces(a.split) for l in lines_of(s, p, random.Random(p))]
    index, names = [], set()
    for family, (programs, lo, hi, centre, attack) in FAMILIES.items():
        for k, program in enumerate(programs):
            wanted = instrument_split(program, k) == a.split if a.programs is None else str(program) in a.programs.split(",")
            if not wanted:
                continue
            for source, path, notes in rng.sample(lines, min(a.lines, len(lines))):
                line = excerpt(notes, rng, lo, hi, centre)
                if line is None:
                    continue
                piece = source + "/" + os.path.basename(path)
                name = f"{family}-{program}-{hashlib.sha1(piece.encode()).hexdigest()[:8]}"
                while name in names:  # another line of the same piece: a name of its own
                    name += "b"
                names.add(name)
                pm = pretty_midi.PrettyMIDI()
                ins = pretty_midi.Instrument(program=program)
                vel = 90
                for i, (s, e, p) in enumerate(line):
                    vel = rng.randint(60, 115) if i % 8 == 0 else vel
                    ins.notes.append(pretty_midi.Note(velocity=vel, pitch=int(p), start=s, end=e))
                pm.instruments.append(ins)
                mid = os.path.join(out_dir, name + ".mid")
                pm.write(mid)
                for sf_name, sf2 in SOUNDFONTS.items():
                    if (sf_name, program) in MISTUNED:
                        continue
                    wav = os.path.join(out_dir, f"{name}-{sf_name}.wav")
                    if not os.path.exists(wav):
                        subprocess.run(["fluidsynth", "-ni", "-g", "0.6", "-r", "44100", "-F", wav, sf2, mid], check=True,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    index.append({"wav": wav, "kind": "single", "instrument": f"{family}:{program}", "family": family,
                                  "program": program, "attack": attack, "soundfont": sf_name, "piece": piece,
                                  "split": a.split, "notes": [list(n) for n in line]})
    if not a.no_poly:
        index += poly_clips(a.split, out_dir)
    json.dump(index, open(os.path.join(out_dir, "index.json"), "w"))
    print(f"{len(index)} clips ({a.split}) in {out_dir}")


def render(name, programs, parts, out_dir, rng):
    """Writes NAME.mid (a part on each program) and a wav for each SoundFont; their paths."""
    pm = pretty_midi.PrettyMIDI()
    for ch, (program, part) in enumerate(zip(programs, parts)):
        ins = pretty_midi.Instrument(program=program)
        vel = rng.randint(60, 110)
        for s, e, p in part:
            ins.notes.append(pretty_midi.Note(velocity=vel, pitch=int(p), start=s, end=max(e, s + 0.05)))
        pm.instruments.append(ins)
    mid = os.path.join(out_dir, name + ".mid")
    pm.write(mid)
    wavs = {}
    for sf_name, sf2 in SOUNDFONTS.items():
        wavs[sf_name] = os.path.join(out_dir, f"{name}-{sf_name}.wav")
        if not os.path.exists(wavs[sf_name]):
            subprocess.run(["fluidsynth", "-ni", "-g", "0.5", "-r", "44100", "-F", wavs[sf_name], sf2, mid], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wavs


def poly_clips(split, out_dir):
    """Polyphonic clips of the split: chord instruments and ensembles (see the module's doc)."""
    rng = random.Random(1313)  # its own draws: the single lines stay as they were
    scores = [(s, p) for s, p in pieces(split) if s in ("bach", "monteverdi", "palestrina", "beethoven", "mozart", "haydn")]
    scores = [(s, p, parts) for s, p in scores if (parts := parts_of(p, random.Random(p)))]
    jobs = []
    for family in ("keys", "mallets", "plucked"):
        programs, lo, hi, _, attack = FAMILIES[family]
        for k, program in enumerate(programs):
            if instrument_split(program, k) == split:
                jobs += [(family, [program], lo, hi, attack, sc) for sc in rng.sample(scores, min(2, len(scores)))]
    ensemble = [p for f in ("bowed", "brass", "reeds", "pipes", "voices") for k, p in enumerate(FAMILIES[f][0]) if instrument_split(p, k) == split]
    for sc in rng.sample(scores, min(4, len(scores))):
        jobs.append(("ensemble", rng.sample(ensemble, min(len(sc[2]), len(ensemble))), 36, 88, "slow", sc))
    index = []
    for family, programs, lo, hi, attack, (source, path, parts) in jobs:
        sel = poly_excerpt(parts, rng, lo, hi)
        if sel is None:
            continue
        programs = [programs[i % len(programs)] for i in range(len(sel))]
        piece = source + "/" + os.path.basename(path)
        name = f"poly-{family}-{'_'.join(map(str, sorted(set(programs))))}-{hashlib.sha1(piece.encode()).hexdigest()[:8]}"
        notes = sorted(n for part in sel for n in part)
        for sf_name, wav in render(name, programs, sel, out_dir, rng).items():
            index.append({"wav": wav, "kind": "poly", "instrument": f"{family}:{'+'.join(map(str, programs))}", "family": family,
                          "program": programs[0], "attack": attack, "soundfont": sf_name, "piece": piece,
                          "split": split, "notes": [list(n) for n in notes]})
    return index


if __name__ == "__main__":
    main()
