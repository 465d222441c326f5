#!/usr/bin/env python3
"""Trains `melody_net`: the small pitch network the `melody` node uses to name a note during its
attack, before YIN hears a clean period (reproducible; about an hour on 2 cores).

What it learns: from the newest 8, 16 and 32 ms of 16 kHz audio (three magnitude spectra, each
window ending now), which MIDI note sounds now (28..90), or none. A two-layer perceptron
(452 -> 384 -> 384 -> 64), small enough for the audio thread (0.35 M multiply-adds a run).

Training material is made here, never the evaluation set: random single lines (steps, leaps,
legato and detached, rests, velocities 55-120; on sustained instruments vibrato from the
modulation wheel, swells and slurs), five (eight for plucked and struck ones) for each General
MIDI program of the train part of scripts/eval/make_families.py's instrument split (no
validation or test instrument is ever heard here) and for the programs that split does not use
(basses, ethnic plucked, more keys and guitars), rendered by FluidSynth with two SoundFonts
(FluidR3_GM, MIT; TimGM6mb, GPL-2.0), at random gains; most training lines (never the held-out
ones) then get another instrument body, some a room and a noise floor (`augment`). A frame is labelled with the note sounding 6 ms before the window's end (the synths'
attack delay), none below -50 dBFS.

    scripts/eval/setup.sh                                   # FluidSynth, SoundFonts, the venv
    .cache/eval-venv/bin/python models/melody_net/train.py  # -> models/melody_net/net.bin

Writes net.bin (format below), models/tests/data/melody_net_ref.bin (a test signal's features
and outputs, for the Rust implementation's test) and prints the sha256 for manifest.toml.

net.bin, little-endian: b"SBPNET01", u32 inputs, hidden1, hidden2, classes, lowest MIDI note;
then for each layer its weights [outputs][inputs] (f32) and biases [outputs] (f32).
"""
import hashlib
import json
import os
import struct
import subprocess
import sys
from math import gcd

import numpy as np
import pretty_midi
import soundfile as sf
from scipy.signal import fftconvolve, lfilter, resample_poly
from sklearn.neural_network import MLPClassifier

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORK = os.path.join(ROOT, ".cache", "melody_net")
SOUNDFONTS = {
    "fluidr3": "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "timgm6mb": "/usr/share/sounds/sf2/TimGM6mb.sf2",
}
sys.path.insert(0, os.path.join(ROOT, "scripts", "eval"))
from make_families import FAMILIES, instrument_split  # noqa: E402

# Programs the evaluation split never uses: more keys, guitars, basses, ethnic plucked, synths.
OUTSIDE_SPLIT = [3, 18, 20, 21, 22, 23, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 50, 51, 104, 108, 112, 114]
IN_SPLIT = sorted(p for progs, *_ in FAMILIES.values() for i, p in enumerate(progs) if instrument_split(p, i) == "train")
SLOW = {p for progs, *_, attack in FAMILIES.values() if attack == "slow" for p in progs} | {18, 20, 21, 22, 23, 50, 51}
PROGRAMS = sorted(set(IN_SPLIT + OUTSIDE_SPLIT))
R = 16000
HOP = 64
SIZES = (128, 256, 512)
LO, HI = 28, 90
CLASSES = HI - LO + 2  # 0: no note
LAG = 0.006
GATE = 10 ** (-50 / 20)
HIDDEN = 384
REPS = 5
# Plucked and struck programs get more lines (their attacks are what the network is for).
REPS_FAST = 8
ITERATIONS = 24
# Shares of training clips (never held-out ones) given another body, a room, a noise floor.
AUG_EQ, AUG_ROOM, AUG_NOISE = 0.7, 0.35, 0.3


def window(n):
    # Hann without its zero end points: w[k] = 0.5 - 0.5 cos(2 pi (k + 1) / (n + 1)).
    return (0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(n) + 1) / (n + 1))).astype(np.float32)


WINDOWS = {n: window(n) for n in SIZES}


def features(y, ends):
    """Features of the windows ending (exclusive) at each of `ends` (16 kHz sample indices)."""
    out = []
    for n in SIZES:
        idx = ends[:, None] - n + np.arange(n)[None, :]
        seg = np.where(idx >= 0, y[np.clip(idx, 0, len(y) - 1)], 0).astype(np.float32)
        out.append(np.log(np.abs(np.fft.rfft(seg * WINDOWS[n], axis=1)) + 1e-5))
    f = np.concatenate(out, 1)
    lvl = f.max(1, keepdims=True)
    return np.concatenate([np.maximum(f - lvl, -12) / 6 + 1, lvl / 6], 1).astype(np.float32)


def melody(rng, program):
    lo, hi = (28, 64) if 32 <= program <= 39 else (36, 90) if program in SLOW else (45, 90)
    notes, t, p = [], 0.2, int(rng.integers(lo + 5, hi - 5))
    while t < 24:
        d = float(rng.choice([0.12, 0.18, 0.25, 0.35, 0.5, 0.7, 1.0])) * rng.uniform(0.8, 1.2)
        p = int(np.clip(p + int(rng.choice([-12, -7, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 7, 12])), lo, hi))
        e = t + d if rng.uniform() < 0.7 else t + d * rng.uniform(0.4, 0.9)
        notes.append((t, e, p, int(rng.integers(55, 121))))
        t += d if rng.uniform() < 0.92 else d + rng.uniform(0.1, 0.5)
    return notes


def expression(rng, program, notes):
    """How a player shapes a sustained line: vibrato from the modulation wheel (CC 1) that comes
    in after each attack, swells (CC 11) on some notes, a slight detune (pitch bend, at most 25
    cents) per clip. Plucked and struck programs get none."""
    if program not in SLOW:
        return [], []
    cc, bends = [], [pretty_midi.PitchBend(int(rng.uniform(-1, 1) * 8192 * 0.25 / 2), 0.0)]
    depth = int(rng.integers(0, 110)) if rng.uniform() < 0.7 else 0
    for s, e, _, _ in notes:
        cc.append(pretty_midi.ControlChange(1, 0, s))
        if depth and e - s > 0.3:
            cc.append(pretty_midi.ControlChange(1, depth, s + min(0.25, (e - s) / 2)))
        if rng.uniform() < 0.3:
            for k in range(6):
                cc.append(pretty_midi.ControlChange(11, int(50 + 77 * k / 5), s + (e - s) * k / 6))
        else:
            cc.append(pretty_midi.ControlChange(11, 127, s))
    return cc, bends


def load16(wav):
    x, sr = sf.read(wav, dtype="float32")
    x = x.mean(1) if x.ndim > 1 else x
    g = gcd(sr, R)
    return resample_poly(x, R // g, sr // g).astype(np.float32)


def render_all(rng):
    os.makedirs(WORK, exist_ok=True)
    clips = []
    extra = [(p, rep) for p in PROGRAMS if p not in SLOW for rep in range(REPS, REPS_FAST)]
    for program, rep in [(p, rep) for p in PROGRAMS for rep in range(REPS)] + extra:
        notes = melody(rng, program)
        pm = pretty_midi.PrettyMIDI(initial_tempo=120)
        ins = pretty_midi.Instrument(program=program)
        for s, e, p, v in notes:
            ins.notes.append(pretty_midi.Note(velocity=v, pitch=p, start=s, end=e))
        ins.control_changes, ins.pitch_bends = expression(rng, program, notes)
        pm.instruments.append(ins)
        # The lines' digest names the files: a changed script never reuses a stale render.
        shape = [(c.number, c.value, round(c.time, 4)) for c in ins.control_changes] + [b.pitch for b in ins.pitch_bends]
        tag = hashlib.sha1(repr((notes, shape)).encode()).hexdigest()[:10]
        mid = os.path.join(WORK, f"p{program}_{rep}_{tag}.mid")
        pm.write(mid)
        for name, font in SOUNDFONTS.items():
            wav = os.path.join(WORK, f"p{program}_{rep}_{tag}_{name}.wav")
            gain = f"{rng.uniform(0.3, 0.9):.3f}"
            if not os.path.exists(wav):
                subprocess.run(["fluidsynth", "-ni", "-g", gain, "-r", "44100", "-F", wav, font, mid], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            clips.append((wav, notes, program, rep))
    return clips


def peaking(f_hz, gain_db, q):
    """RBJ peaking-EQ biquad at 16 kHz: (b, a)."""
    a_lin = 10 ** (gain_db / 40)
    w = 2 * np.pi * f_hz / R
    alpha = np.sin(w) / (2 * q)
    b = np.array([1 + alpha * a_lin, -2 * np.cos(w), 1 - alpha * a_lin])
    a = np.array([1 + alpha / a_lin, -2 * np.cos(w), 1 - alpha / a_lin])
    return b / a[0], a / a[0]


def augment(y, rng):
    """Another instrument body and another room, so that the network learns the pitch and not
    the train part's timbres: on most clips two or three random resonances and dips (peaking EQ,
    200-5000 Hz, +-10 dB), on some a room (an exponentially decaying noise tail, RT60 0.2-1.2 s,
    mixed 10-40%) and on some a noise floor 45-65 dB under the clip's peak."""
    if rng.uniform() < AUG_EQ:
        for _ in range(int(rng.integers(2, 4))):
            b, a = peaking(float(np.exp(rng.uniform(np.log(200), np.log(5000)))), rng.uniform(-10, 10), rng.uniform(0.7, 3))
            y = lfilter(b, a, y)
    if rng.uniform() < AUG_ROOM:
        rt60 = rng.uniform(0.2, 1.2)
        t = np.arange(int(rt60 * R)) / R
        ir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
        ir *= rng.uniform(0.1, 0.4) / np.sqrt(np.sum(ir**2))
        y = y + fftconvolve(y, ir)[: len(y)]
    if rng.uniform() < AUG_NOISE:
        y = y + rng.standard_normal(len(y)) * np.abs(y).max() * 10 ** (-rng.uniform(45, 65) / 20)
    return y.astype(np.float32)


def dataset(clips, rng):
    X, Y, held = [], [], []
    for wav, notes, program, rep in clips:
        # Every 8th clip is held out (kept clean) to report accuracy on lines the network never saw.
        held_out = (program + rep) % 8 == 0
        y = load16(wav)
        if not held_out:
            y = augment(y, rng)
        ends = np.arange(512, len(y), HOP)
        t = ends / R - LAG
        lab = np.zeros(len(ends), int)
        for s, e, p, _ in notes:
            lab[(t >= s) & (t < e)] = np.clip(p, LO, HI) - LO + 1
        rms = np.sqrt(np.convolve(y * y, np.ones(192) / 192, "full")[ends - 1])
        lab[rms < GATE] = 0
        near = np.zeros(len(ends), bool)
        for s, *_ in notes:
            near |= (ends / R >= s) & (ends / R < s + 0.06)
        keep = near | (rng.uniform(size=len(ends)) < 0.25)
        (held if held_out else X).append((features(y, ends[keep]), lab[keep], near[keep]))
    return held, X


def test_signal():
    """A deterministic 16 kHz test signal (also made in Rust): silence, then a plucked E4 with
    harmonics, then an A4 over it."""
    n = np.arange(R, dtype=np.float64)
    t = n / R
    y = np.zeros(R)
    for k, (f0, start) in enumerate(((329.63, 0.25), (440.0, 0.6))):
        on = t >= start
        env = np.exp(-(t - start) * 4.0) * on
        for h in range(1, 6):
            y += 0.3 / h * env * np.sin(2 * np.pi * f0 * h * (t - start) + 0.3 * h)
    return y.astype(np.float32)


def layers(clf):
    """The trained layers as (weights [inputs][outputs], biases), the last widened to every class
    (a class never seen in training gets a bias that never wins)."""
    ws = [np.asarray(w, np.float32) for w in clf.coefs_]
    bs = [np.asarray(b, np.float32) for b in clf.intercepts_]
    w, b = np.zeros((ws[-1].shape[0], CLASSES), np.float32), np.full(CLASSES, -30.0, np.float32)
    for j, c in enumerate(clf.classes_):
        w[:, c], b[c] = ws[-1][:, j], bs[-1][j]
    return list(zip(ws[:-1] + [w], bs[:-1] + [b]))


def forward(net, X):
    h = X
    for i, (w, b) in enumerate(net):
        h = h @ w + b
        if i < len(net) - 1:
            h = np.maximum(h, 0)
    e = np.exp(h - h.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def main():
    rng = np.random.default_rng(20261126)
    clips = render_all(rng)
    held, train = dataset(clips, rng)
    X = np.concatenate([a for a, _, _ in train])
    Y = np.concatenate([b for _, b, _ in train])
    print(f"{len(clips)} clips rendered; {len(X)} training frames", file=sys.stderr)
    clf = MLPClassifier(hidden_layer_sizes=(HIDDEN, HIDDEN), batch_size=512, max_iter=ITERATIONS, learning_rate_init=1e-3, alpha=1e-4, random_state=0)
    clf.fit(X, Y)
    net = layers(clf)
    print(f"classes never seen in training: {sorted(set(range(CLASSES)) - set(clf.classes_))}", file=sys.stderr)
    for name, sel in (("all frames", None), ("attack frames (first 60 ms)", True)):
        hx = np.concatenate([a if sel is None else a[c] for a, _, c in held])
        hy = np.concatenate([b if sel is None else b[c] for _, b, c in held])
        print(f"held-out lines, {name}: accuracy {np.mean(forward(net, hx).argmax(1) == hy):.3f} ({len(hy)} frames)", file=sys.stderr)

    out = os.path.join(HERE, "net.bin")
    with open(out, "wb") as f:
        f.write(b"SBPNET01")
        f.write(struct.pack("<5I", X.shape[1], HIDDEN, HIDDEN, CLASSES, LO))
        for w, b in net:
            f.write(np.ascontiguousarray(w.T, dtype="<f4").tobytes())
            f.write(np.asarray(b, dtype="<f4").tobytes())
    sha = hashlib.sha256(open(out, "rb").read()).hexdigest()

    # Reference for the Rust implementation: features and outputs of the test signal.
    y = test_signal()
    ends = np.array([512, 4096, 4800, 6400, 9664, 9728, 9792, 9856, 12000], dtype=int)
    F = features(y, ends)
    P = forward(net, F)
    ref = os.path.join(ROOT, "models", "tests", "data", "melody_net_ref.bin")
    with open(ref, "wb") as f:
        f.write(struct.pack("<3I", len(ends), F.shape[1], P.shape[1]))
        f.write(ends.astype("<u4").tobytes())
        f.write(F.astype("<f4").tobytes())
        f.write(P.astype("<f4").tobytes())
    print(json.dumps({"net.bin sha256": sha, "test signal argmax": [int(c) + LO - 1 if c else None for c in P.argmax(1)]}))


if __name__ == "__main__":
    main()
