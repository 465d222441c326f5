#!/usr/bin/env python3
"""Which keys a SoundFont does not sound at their pitch: the generalisation set's ground truth
(make_families.py) is the MIDI key, which holds only where the instrument sounds that key.

For every program of make_families.py's families (every split: the rule does not look at any
system's output) and every SoundFont, a held note on every key of the family's range is
rendered (FluidSynth, 44.1 kHz) and its sustain (0.25-0.75 s after the note-on) read as a
spectrum. At the key's frequency f0 the levels of the components at f0/4, f0/2 and at f0, 2 f0,
3 f0, 4 f0 (within half a semitone) are taken against the spectrum's strongest peak:

- **sounds under its key**: the key's own partials (f0 .. 4 f0) are all at least 30 dB under the
  strongest of f0/2 and f0/4: nothing of the key sounds, the note sounds one or two octaves down
  (offset -12 or -24, by the stronger). An organ's 16-foot stop is not this: its key's 8-foot
  pitch sounds with it, within a few dB (a registration, and the key is its name by convention);
- **silent**: the sustain's level is at least 50 dB under the program's loudest key (the
  SoundFont has no sound there: FluidR3_GM's contrabass above MIDI 57); checked first;
- **off its key**: the spectrum's strongest peak is at least 10 dB over every one of those
  components (the sound's pitch is none of the key's octaves; TimGM6mb's whistle, 9 semitones
  flat, is one, make_families.py `MISTUNED`).

Writes a JSON list of {soundfont, program, key, kind, offset} for the flagged keys (stdout: a
summary per SoundFont and program). `--relabel SET OUT` then writes OUT/index.json: SET's index
with each note the audit says sounds under its key labelled at the pitch it sounds and each
silent note left out (the wavs are SET's own; nothing is re-rendered), and `audit` on each clip
naming the notes moved ([onset, key, label], label null where left out).

    .cache/eval-venv/bin/python scripts/eval/audit_tuning.py .cache/eval/tuning-audit.json
    .cache/eval-venv/bin/python scripts/eval/audit_tuning.py .cache/eval/tuning-audit.json \\
        --relabel .cache/eval/families-test .cache/eval/families-test-sounding
"""
import argparse
import json
import os
import sys
import tempfile
from multiprocessing import Pool

import numpy as np
import pretty_midi
import soundfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_families import FAMILIES, MORE_SOUNDFONTS, SOUNDFONTS, render_line  # noqa: E402

NOTE_S, GAP_S = 1.0, 0.25
SILENT_DB = 50.0  # this far under the program's loudest key: no sound
UNDER_DB = 30.0  # the key's partials this far under an octave below: the key does not sound
OFF_DB = 10.0  # the strongest peak this far over every octave of the key: another pitch
SUBS = (0.25, 0.5)
OWN = (1.0, 2.0, 3.0, 4.0)


def render_keys(sf2, program, keys, wav):
    """Each key held NOTE_S, GAP_S apart, on `program`, into `wav`."""
    starts = [0.1 + i * (NOTE_S + GAP_S) for i in range(len(keys))]
    render_line([(s, s + NOTE_S, key, 100) for s, key in zip(starts, keys)], program, sf2, wav)


def component_db(mag, freqs_hz, f_hz, peak):
    """The strongest bin within half a semitone of f_hz, in dB against `peak` (-200: none)."""
    band = (freqs_hz > f_hz * 2 ** (-0.5 / 12)) & (freqs_hz < f_hz * 2 ** (0.5 / 12))
    if not band.any() or f_hz < 20:
        return -200.0
    return 20 * np.log10(mag[band].max() / peak + 1e-12)


def verdict(segment, key, rate_hz):
    """(kind, offset in semitones) for one held note's sustain: None where it sounds its key."""
    windowed = segment * np.hanning(len(segment))
    n = 4 * len(windowed)
    mag = np.abs(np.fft.rfft(windowed, n))
    freqs_hz = np.fft.rfftfreq(n, 1 / rate_hz)
    audible = (freqs_hz > 20) & (freqs_hz < 10000)
    peak = mag[audible].max()
    if peak <= 0:
        return None
    f0_hz = 440.0 * 2 ** ((key - 69) / 12)
    subs = {k: component_db(mag, freqs_hz, f0_hz * k, peak) for k in SUBS}
    own = max(component_db(mag, freqs_hz, f0_hz * k, peak) for k in OWN)
    if max(subs.values()) >= own + UNDER_DB:
        return "under", -24 if subs[0.25] >= subs[0.5] else -12
    if max(max(subs.values()), own) <= -OFF_DB:
        return "off", None
    return None


def audit_one(job):
    sf_name, sf2, program, keys = job
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "keys.wav")
        render_keys(sf2, program, keys, wav)
        audio, rate = soundfile.read(wav)
    audio = audio.mean(axis=1) if audio.ndim > 1 else audio
    segments = [audio[int((0.35 + i * (NOTE_S + GAP_S)) * rate):][:int(0.5 * rate)] for i in range(len(keys))]
    levels_db = [10 * np.log10(np.mean(seg ** 2) + 1e-20) for seg in segments]
    floor_db = max(levels_db) - SILENT_DB
    found = []
    for key, seg, level_db in zip(keys, segments, levels_db):
        got = ("silent", None) if level_db < floor_db else verdict(seg, key, rate)
        if got:
            found.append({"soundfont": sf_name, "program": program, "key": key, "kind": got[0], "offset": got[1],
                          "level_db": round(float(level_db), 1)})
    return found


def audit(jobs):
    fonts = dict(SOUNDFONTS, **MORE_SOUNDFONTS)
    work = [(sf_name, sf2, program, list(range(lo, hi + 1)))
            for sf_name, sf2 in fonts.items() if os.path.exists(sf2)
            for programs, lo, hi, _, _ in FAMILIES.values() for program in programs]
    with Pool(jobs) as pool:
        return [row for rows in pool.imap(audit_one, work) for row in rows]


def programs_of_notes(clip):
    """{key: [(onset, program)]} for a clip: its own program for a single line; for a polyphonic
    clip, from the MIDI file make_families.py rendered it from (one instrument a part, beside the
    wavs), or None where that file is missing."""
    found = {}
    if clip["kind"] == "single":
        for s, _, p in clip["notes"]:
            found.setdefault(int(p), []).append((s, clip["program"]))
        return found
    mid = clip["wav"].rsplit("-", 1)[0] + ".mid"
    if not os.path.exists(mid):
        return None
    for ins in pretty_midi.PrettyMIDI(mid).instruments:
        for n in ins.notes:
            found.setdefault(n.pitch, []).append((n.start, ins.program))
    return found


def playing(programs, onset, key):
    """The programs that play `key` at `onset` (within 5 ms: the MIDI file's ticks)."""
    return {program for s, program in programs.get(int(key), []) if abs(s - onset) <= 0.005}


def relabel(rows, set_dir, out_dir):
    """SET's index with the notes that sound under their key labelled where they sound, and the
    notes every instrument playing them leaves silent left out."""
    under = {(r["soundfont"], r["program"], r["key"]): r["offset"] for r in rows if r["kind"] == "under"}
    silent = {(r["soundfont"], r["program"], r["key"]) for r in rows if r["kind"] == "silent"}
    index = json.load(open(os.path.join(set_dir, "index.json")))
    moved_total = 0
    for clip in index:
        programs = programs_of_notes(clip)
        if programs is None:
            print(f"{clip['wav']}: no MIDI file beside it, left as it is")
            continue
        moved, kept = [], []
        for note in clip["notes"]:
            by = playing(programs, note[0], note[2])
            offsets = {under.get((clip["soundfont"], program, note[2])) for program in by}
            if len(offsets) == 1 and None not in offsets:
                offset = offsets.pop()
                moved.append([note[0], note[2], note[2] + offset])
                note[2] += offset
            if by and all((clip["soundfont"], program, note[2]) in silent for program in by):
                moved.append([note[0], note[2], None])
            else:
                kept.append(note)
        clip["notes"] = kept
        if moved:
            clip["audit"] = moved
            moved_total += len(moved)
    os.makedirs(out_dir, exist_ok=True)
    json.dump(index, open(os.path.join(out_dir, "index.json"), "w"), indent=1)
    print(f"{moved_total} notes labelled where they sound or left out (silent), in {sum(1 for c in index if 'audit' in c)} clips")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="the audit's JSON (read instead of measured if it exists)")
    ap.add_argument("--relabel", nargs=2, metavar=("SET", "OUT"))
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    if os.path.exists(a.out):
        rows = json.load(open(a.out))
    else:
        rows = audit(a.jobs)
        json.dump(rows, open(a.out, "w"), indent=1)
    summary = {}
    for r in rows:
        summary.setdefault((r["soundfont"], r["program"], r["kind"], r["offset"]), []).append(r["key"])
    for (sf_name, program, kind, offset), keys in sorted(summary.items(), key=str):
        print(f"{sf_name} program {program}: {kind} {offset if offset else ''} on {len(keys)} keys, {min(keys)}-{max(keys)}")
    if a.relabel:
        relabel(rows, *a.relabel)


if __name__ == "__main__":
    main()
