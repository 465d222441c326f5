#!/usr/bin/env python3
"""Renders the test clips for models/tests/melody_net.rs (reproducible), FluidR3_GM through
FluidSynth, mono 16-bit at 22050 Hz, and their notes: a nylon-guitar line (plucked: the attack
network's first use), a slurred cello line (cello is never in the network's training
material: a validation instrument of scripts/eval/make_families.py) and the guitar's line on
FluidR3_GM's percussive organ (its 16-foot stop sounds an octave under each key: YIN alone
reads that octave), and two held notes on that organ (the network names their keys only some
hops after YIN starts them an octave under), no line in the evaluation set.

    .cache/eval-venv/bin/python models/melody_net/make_fixture.py
"""
import json
import os
import subprocess
import tempfile

import numpy as np
import pretty_midi
import soundfile as sf

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "data")
# (start s, end s, MIDI note): steps, a leap, a repeated note, a rest.
NOTES = [(0.30, 0.62, 64), (0.62, 0.94, 67), (0.94, 1.26, 71), (1.26, 1.58, 69), (1.58, 1.90, 69),
         (1.90, 2.22, 74), (2.22, 2.54, 72), (2.80, 3.12, 62), (3.12, 3.60, 60)]

# Slurred (each note ends where the next begins): steps, a leap, a turn, a held end.
SLUR = [(0.30, 0.70, 57), (0.70, 1.10, 59), (1.10, 1.50, 60), (1.50, 1.90, 64), (1.90, 2.30, 62),
        (2.30, 2.70, 60), (2.70, 3.10, 59), (3.10, 3.80, 57)]

# Two held organ notes, the line's first: no earlier note has shown the stop.
HELD = [(0.20, 2.50, 62), (2.50, 4.80, 60)]


def render(name, program, notes):
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    ins = pretty_midi.Instrument(program=program)
    for s, e, p in notes:
        ins.notes.append(pretty_midi.Note(velocity=90, pitch=p, start=s, end=e))
    pm.instruments.append(ins)
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = os.path.join(tmp, "line.mid"), os.path.join(tmp, "line.wav")
        pm.write(mid)
        subprocess.run(["fluidsynth", "-ni", "-g", "0.6", "-r", "22050", "-F", wav, "/usr/share/sounds/sf2/FluidR3_GM.sf2", mid], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        x, sr = sf.read(wav)
    x = x.mean(1) if x.ndim > 1 else x
    x = x[: int((notes[-1][1] + 0.4) * sr)]
    sf.write(os.path.join(OUT, f"{name}.wav"), x, sr, subtype="PCM_16")
    json.dump([list(n) for n in notes], open(os.path.join(OUT, f"{name}.json"), "w"))
    print(f"{name}: {len(x) / sr:.2f} s at {sr} Hz, {len(notes)} notes")


render("guitar_line", 24, NOTES)
render("cello_slur", 42, SLUR)
render("organ_line", 17, NOTES)
render("organ_held", 17, HELD)
