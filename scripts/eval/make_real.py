#!/usr/bin/env python3
"""A real recording for the pitch-to-MIDI evaluation (issue 13: "add real recordings where any
reach this machine with a licence that allows it, and sung lines").

What reaches this machine: music21 (BSD-3-Clause, already in the eval venv for its corpus) ships
one monophonic recording, `music21/audioSearch/test_audio.wav` (20 s, 44.1 kHz, a microphone
recording of a sustained instrument or voice: a C major scale, arpeggios, then chromatic steps),
which music21's own score-follower test transcribes against the line C4 D E F G A B C5 C4 E G
C5 A F D C# D# F#. No Debian package or wheel here ships annotated recordings of instruments or
singing (checked: the SoundFonts are samples played by a synthesiser; scipy's and other
packages' test WAVs are tones and noise).

The annotation is made by a rule, here, from the audio, never by the nodes under test:
  pitches: pYIN (librosa, 100-1000 Hz, 10 ms hop) rounded to semitones, runs of at least 100 ms
           (a run of the same note after a gap under 50 ms joins it) that start at an onset,
           kept in order where they follow music21's line above; the file ends 0.35 s into a
           nineteenth note (G#4) after the line, kept from pYIN (a run with no onset is a pYIN
           octave slip on a release: one, at 9.82 s, the octave under C5's release);
  onsets:  the latest librosa onset (spectral flux peak) from 120 ms before to 30 ms after the
           run's first voiced frame;
  offsets: the run's last voiced frame.
A 40 ms knock before the first note and bursts of breath or handling noise at 1.7-2.3 s are no
notes: a node that plays them is wrong, as on stage.

    .cache/eval-venv/bin/python scripts/eval/make_real.py .cache/eval/real
    .cache/eval-venv/bin/python scripts/eval/evaluate.py .cache/eval/real target/release/stagebox
"""
import json
import os
import shutil
import sys

import librosa
import music21
import numpy as np
import soundfile as sf

LINE = [60, 62, 64, 65, 67, 69, 71, 72, 60, 64, 67, 72, 69, 65, 62, 61, 63, 66]
TAIL = 68  # the note the file ends in, after the line


def runs(midi, hop_s):
    """Runs of one rounded note at least 100 ms long, as [start, end, note]; a gap under 50 ms
    between two runs of the same note joins them."""
    out, i = [], 0
    while i < len(midi):
        if np.isnan(midi[i]):
            i += 1
            continue
        j = i
        while j < len(midi) and midi[j] == midi[i]:
            j += 1
        if (j - i) * hop_s >= 0.1:
            if out and out[-1][2] == int(midi[i]) and i * hop_s - out[-1][1] < 0.05:
                out[-1][1] = j * hop_s
            else:
                out.append([i * hop_s, j * hop_s, int(midi[i])])
        i = j
    return out


def annotate(x, sr):
    hop = 441 if sr == 44100 else int(sr / 100)
    f0, _, _ = librosa.pyin(x, fmin=100, fmax=1000, sr=sr, frame_length=2048, hop_length=hop)
    found = runs(np.round(librosa.hz_to_midi(f0)), hop / sr)
    onsets = librosa.onset.onset_detect(y=x, sr=sr, units="time", hop_length=256)
    want, notes = LINE + [TAIL], []
    for start, end, note in found:
        near = [float(t) for t in onsets if start - 0.12 <= t <= start + 0.03]
        if near and len(notes) < len(want) and note == want[len(notes)]:
            notes.append([near[-1], end, note])
    if len(notes) != len(want):
        raise SystemExit(f"pYIN's runs follow {len(notes)} of the line's {len(want)} notes: not annotated")
    return notes


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else ".cache/eval/real"
    os.makedirs(out, exist_ok=True)
    src = os.path.join(os.path.dirname(music21.__file__), "audioSearch", "test_audio.wav")
    wav = os.path.join(out, "real-music21-test_audio.wav")
    shutil.copy(src, wav)
    x, sr = sf.read(wav, dtype="float32")
    notes = annotate(x if x.ndim == 1 else x.mean(1), sr)
    clip = {"wav": wav, "kind": "single", "instrument": "real:music21", "family": "real", "program": -1,
            "attack": "slow", "soundfont": "recording", "piece": "music21 audioSearch/test_audio.wav",
            "split": "test", "notes": notes}
    json.dump([clip], open(os.path.join(out, "index.json"), "w"), indent=1)
    print(f"{wav}: {len(notes)} notes, " + " ".join(f"{n[2]}@{n[0]:.3f}" for n in notes))


if __name__ == "__main__":
    main()
