#!/usr/bin/env python3
"""Builds the transcription evaluation set (reproducible, deterministic).

MIDI from music21's bundled corpus (Bach chorales: all four voices for polyphony, the soprano
alone for single lines), rendered by FluidSynth through several General MIDI instruments with
two SoundFonts (FluidR3_GM and TimGM6mb). The MIDI is the ground truth.

    .cache/eval-venv/bin/python scripts/eval/make_set.py [OUT]   # default .cache/eval/set
"""
import json
import os
import subprocess
import sys

import music21
import pretty_midi

OUT = sys.argv[1] if len(sys.argv) > 1 else ".cache/eval/set"
PIECES = ["bach/bwv66.6", "bach/bwv7.7", "bach/bwv40.8"]
QPM = 84.0
MAX_SECS = 20.0
SOUNDFONTS = {
    "fluidr3": "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "timgm6mb": "/usr/share/sounds/sf2/TimGM6mb.sf2",
}
# name: (GM program, attack class)
POLY = {"piano": (0, "fast"), "guitar": (24, "fast"), "strings": (48, "slow")}
SINGLE = {"flute": (73, "slow"), "voice": (53, "slow"), "piano": (0, "fast"), "guitar": (24, "fast")}


def notes_of(score, parts):
    out = []
    spq = 60.0 / QPM
    for i, part in enumerate(score.parts):
        if parts is not None and i not in parts:
            continue
        for n in part.flatten().notes:
            start = float(n.offset) * spq
            end = start + float(n.quarterLength) * spq
            if start >= MAX_SECS:
                continue
            end = min(end, MAX_SECS)
            pitches = [p.midi for p in (n.pitches if n.isChord else [n.pitch])]
            for p in pitches:
                out.append((start, end, p))
    # Ties leave adjacent equal notes: merge them (one struck note).
    out.sort()
    merged = []
    for s, e, p in out:
        for m in reversed(merged):
            if m[2] == p and abs(m[1] - s) < 1e-6:
                m[1] = e
                break
        else:
            merged.append([s, e, p])
    return [tuple(m) for m in sorted(merged)]


def main():
    os.makedirs(OUT, exist_ok=True)
    index = []
    for piece in PIECES:
        score = music21.corpus.parse(piece)
        for kind, parts, instruments in (("poly", None, POLY), ("single", [0], SINGLE)):
            notes = notes_of(score, parts)
            for inst, (program, attack) in instruments.items():
                name = f"{piece.replace('/', '_')}-{kind}-{inst}"
                pm = pretty_midi.PrettyMIDI(initial_tempo=QPM)
                ins = pretty_midi.Instrument(program=program)
                for s, e, p in notes:
                    ins.notes.append(pretty_midi.Note(velocity=90, pitch=int(p), start=s, end=e))
                pm.instruments.append(ins)
                mid = os.path.join(OUT, name + ".mid")
                pm.write(mid)
                for sf_name, sf in SOUNDFONTS.items():
                    wav = os.path.join(OUT, f"{name}-{sf_name}.wav")
                    if not os.path.exists(wav):
                        subprocess.run(["fluidsynth", "-ni", "-g", "0.6", "-r", "44100", "-F", wav, sf, mid], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    index.append({"wav": wav, "kind": kind, "instrument": inst, "attack": attack, "soundfont": sf_name, "piece": piece, "notes": notes})
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f)
    print(f"{len(index)} clips in {OUT}")


if __name__ == "__main__":
    main()
