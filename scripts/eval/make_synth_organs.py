#!/usr/bin/env python3
"""A validation view of tonewheel organs: the lines of a set make_families.py built (use one on
the validation part's pieces, e.g. organs-val6) played again by the training script's additive
drawbar organ (models/melody_net/train.py `organ_line`: random registrations, the 16-foot or the
8-foot bar always out, percussion, key click, vibrato, a rotating speaker's tremolo), several
registrations a line, labelled by the keys. The organ is a training instrument (the network's
organ lines); the pieces are validation's: a view for tuning the octave rules on organs whose
lowest sounding pitch is not the key, like the organs view of the train part's SoundFont organs.
Seeded; 16 kHz files.

`--pipe-32`: a pipe organ with a 32-foot stop out instead (two octaves under the key, as a church
organ's pedal and full-organ registrations have it), with random 16-, 8-, 4- and 2-foot stops,
each pipe a sine with weak second and third harmonics (a flue pipe); no instrument the network
was trained on has a stop two octaves under its key.

`--program P --soundfont NAME`: the lines played by a SoundFont's General MIDI program instead
(FluidSynth, 44.1 kHz, one render a line): the train part's other organ, the rock organ (18), on
MuseScore_General (never trained on) is one more view of organs the network knows by their
program and not by their body.

    .cache/eval-venv/bin/python scripts/eval/make_synth_organs.py .cache/eval/organs-val6 .cache/eval/synth-organs-val6
    .cache/eval-venv/bin/python scripts/eval/make_synth_organs.py --pipe-32 .cache/eval/organs-val6 .cache/eval/pipe32-organs-val6
    .cache/eval-venv/bin/python scripts/eval/make_synth_organs.py --program 18 --soundfont musescore .cache/eval/organs-val6 .cache/eval/organ18-val6-ms
"""
import argparse
import json
import os
import sys

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "melody_net"))
import train as organ  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_families import MORE_SOUNDFONTS, SOUNDFONTS, render_line  # noqa: E402


def pipe32_line(rng, notes):
    """`notes` on a pipe organ at organ.R: the 32-foot stop out at 0 to -6 dB, the 8-foot at 0 to
    -15 dB, the 16-, 4- and 2-foot stops each out on half the lines at 0 to -20 dB; a flue pipe's
    sine with its second and third harmonics 20 and 26 dB under it; 30 ms onsets and releases."""
    level_db = {32: rng.uniform(-6, 0), 8: rng.uniform(-15, 0)}
    for feet in (16, 4, 2):
        if rng.uniform() < 0.5:
            level_db[feet] = rng.uniform(-20, 0)
    y = np.zeros(int((notes[-1][1] + 0.5) * organ.R))
    for s, e, p, v in notes:
        f = 440.0 * 2 ** ((p - 69) / 12)
        n0, n1 = int(s * organ.R), min(len(y), int((e + 0.03) * organ.R))
        t = np.arange(n1 - n0) / organ.R
        env = np.clip(t / 0.03, 0, 1) * np.where(t > e - s, np.exp(-(t - (e - s)) / 0.01), 1.0)
        tone = np.zeros(len(t))
        for feet, db in level_db.items():
            for h, h_db in ((1, 0.0), (2, -20.0), (3, -26.0)):
                if f * 8 / feet * h < 7800:
                    tone += 10 ** ((db + h_db) / 20) * np.sin(2 * np.pi * f * 8 / feet * h * t)
        y[n0:n1] += v / 127 * env * tone
    return (y / np.abs(y).max() * rng.uniform(0.3, 0.9)).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("source", help="a set's folder (its index.json): the lines to play")
    ap.add_argument("out")
    ap.add_argument("--registrations", type=int, default=3, help="organs (random registrations) per line")
    ap.add_argument("--pipe-32", action="store_true", help="a pipe organ with a 32-foot stop (pipe32_line)")
    ap.add_argument("--program", type=int, help="a SoundFont's General MIDI program instead (with --soundfont)")
    ap.add_argument("--soundfont", default="musescore", help="fluidr3, timgm6mb or musescore (with --program)")
    a = ap.parse_args()
    lines = {}
    for clip in json.load(open(os.path.join(a.source, "index.json"))):
        if clip["kind"] == "single":
            lines.setdefault(os.path.basename(clip["wav"]).rsplit("-", 1)[0], clip)
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(20261204)
    index = []
    for name, clip in sorted(lines.items()):
        notes = [(s, e, int(p), 90) for s, e, p in clip["notes"]]
        if a.program is not None:
            wav = os.path.join(a.out, f"{name}-{a.program}-{a.soundfont}.wav")
            render_line(notes, a.program, dict(SOUNDFONTS, **MORE_SOUNDFONTS)[a.soundfont], wav)
            index.append({**clip, "wav": wav, "instrument": f"keys:{a.program}", "program": a.program, "soundfont": a.soundfont})
            continue
        for r in range(a.registrations):
            y = pipe32_line(rng, notes) if a.pipe_32 else organ.organ_line(rng, notes)
            wav = os.path.join(a.out, f"{name}-organ{r}.wav")
            sf.write(wav, y, organ.R, subtype="FLOAT")
            index.append({**clip, "wav": wav, "instrument": f"keys:{organ.ORGAN}", "program": organ.ORGAN,
                          "soundfont": "pipe_organ_32" if a.pipe_32 else "synth_organ", "registration": r})
    json.dump(index, open(os.path.join(a.out, "index.json"), "w"))
    print(f"{len(index)} clips in {a.out}")


if __name__ == "__main__":
    main()
