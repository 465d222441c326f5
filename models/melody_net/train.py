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
ones) then get another instrument body, some a room and a noise floor (`augment`). A frame is
labelled with the note sounding 6 ms before the window's end (the synths' attack delay), none
below -50 dBFS.

Then a fine-tune (`--fine-tune`, from net.bin as it is: run it once, after the first command):
FT_EPOCHS passes at a fifth of the rate over FT_SHARE of those frames and, twice over, 24 lines
on tonewheel organs synthesised here with random drawbar registrations (`organ_line`: an organ
whose 16-foot bar is out sounds an octave under its key; the label is the key). A network
trained again from nothing with the organs moved every decision the node was tuned around
(BENCHMARKS.md, seventh round); the fine-tune keeps them.

Then a second fine-tune (`--fine-tune --synth`, from the first's net.bin): SYNTH_EPOCHS passes
over the same frames and, beside them, SYNTH_LINES lines each on a random additive instrument
of its own (synth_lines.py: stretched or bar partials, bodies, breath and bow noise, clicks,
vibrato, chorus, notes ringing under the next), all their frames once: the network had learnt
the SoundFonts' bodies (45.9% of the held-out random instruments' frames right) more than the
pitch (BENCHMARKS.md, ninth round).

    scripts/eval/setup.sh                                   # FluidSynth, SoundFonts, the venv
    .cache/eval-venv/bin/python models/melody_net/train.py  # -> models/melody_net/net.bin
    .cache/eval-venv/bin/python models/melody_net/train.py --fine-tune
    .cache/eval-venv/bin/python models/melody_net/train.py --fine-tune --synth  # the shipped net.bin

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

sys.path.insert(0, HERE)
from synth_lines import synth_line  # noqa: E402

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


# Tonewheel organs synthesised with random drawbar registrations, labelled by their keys (the
# 8-foot pitch): a registration with the 16-foot bar out sounds an octave under its key, and
# the GM organs above hold few registrations. The bars' pitches against the key: 16', 5 1/3',
# 8', 4', 2 2/3', 2', 1 3/5', 1 1/3', 1'. ORGAN is these lines' program number in file names.
DRAWBARS = (0.5, 1.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
ORGAN, ORGAN_LINES = 200, 24
# Lines on random additive instruments (synth_lines.py), in the fine-tune: SYNTH in file names.
SYNTH, SYNTH_LINES = 201, int(os.environ.get("MELODY_SYNTH_LINES", 480))
# --fine-tune: passes over the data (with --synth: SYNTH_EPOCHS), and the rate, from net.bin.
# MELODY_SYNTH_LINES, MELODY_FT_EPOCHS and MELODY_FT_LR override them (for experiments).
FT_EPOCHS, SYNTH_EPOCHS, FT_SHARE = 6, 10, 0.4
FT_LR = float(os.environ.get("MELODY_FT_LR", 2e-4))


def organ_line(rng, notes):
    """`notes` on a tonewheel organ at 16 kHz: each bar at 0-8 (3 dB a step; some out), the
    16-foot or the 8-foot bar always out; on some lines percussion (the 4-foot or 2 2/3-foot
    pitch decaying), a key click, vibrato and a rotating speaker's tremolo."""
    bars = rng.integers(0, 9, len(DRAWBARS)) * (rng.uniform(size=len(DRAWBARS)) < 0.6)
    bars[int(rng.choice([0, 2]))] = int(rng.integers(5, 9))
    amp = np.where(bars > 0, 10 ** (-(8 - bars) * 3 / 20), 0.0)
    perc = (float(rng.choice([2.0, 3.0])), rng.uniform(0.15, 0.8)) if rng.uniform() < 0.4 else None
    vib_hz, vib = rng.uniform(5.5, 7.0), (rng.uniform(0.001, 0.005) if rng.uniform() < 0.5 else 0.0)
    trem = rng.uniform(0.0, 0.3) if rng.uniform() < 0.4 else 0.0
    click = 10 ** (-rng.uniform(20, 35) / 20) if rng.uniform() < 0.6 else 0.0
    y = np.zeros(int((notes[-1][1] + 0.5) * R))
    for s, e, p, v in notes:
        f = 440.0 * 2 ** ((p - 69) / 12)
        n0, n1 = int(s * R), min(len(y), int((e + 0.05) * R))
        t = np.arange(n1 - n0) / R
        env = np.clip(t / 0.004, 0, 1) * np.where(t > e - s, np.exp(-(t - (e - s)) / 0.012), 1.0)
        phase = 2 * np.pi * f * (t - vib / (2 * np.pi * vib_hz) * np.cos(2 * np.pi * vib_hz * (t + s)))
        tone = sum(a * np.sin(r * phase) for a, r in zip(amp, DRAWBARS) if a > 0 and r * f < 7800)
        if perc and perc[0] * f < 7800:
            tone = tone + 0.7 * np.exp(-t / perc[1]) * np.sin(perc[0] * phase)
        if click:
            k = min(len(t), 48)
            tone[:k] += click * rng.standard_normal(k) * np.sum(amp)
        y[n0:n1] += v / 127 * env * tone
    if trem:
        y *= 1 - trem * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.8, 6.5) * np.arange(len(y)) / R))
    return (y / np.abs(y).max() * rng.uniform(0.3, 0.9)).astype(np.float32)


def load16(wav):
    x, sr = sf.read(wav, dtype="float32")
    x = x.mean(1) if x.ndim > 1 else x
    g = gcd(sr, R)
    return resample_poly(x, R // g, sr // g).astype(np.float32)


def render_line(rng, program, rep, notes, controls=(), bends=(), tag_of=None):
    """`notes` on `program` with every SoundFont (a random gain each, drawn from `rng`), as
    WORK/p{program}_{rep}_{tag}_{soundfont}.wav, kept where already made: the clips' tuples. The
    tag is the sha1 of `tag_of` (by default the notes and the controls' and bends' shape): a
    changed script never reuses a stale render."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    ins = pretty_midi.Instrument(program=program)
    ins.notes = [pretty_midi.Note(velocity=v, pitch=p, start=s, end=e) for s, e, p, v in notes]
    ins.control_changes, ins.pitch_bends = list(controls), list(bends)
    pm.instruments.append(ins)
    if tag_of is None:
        tag_of = (notes, [(c.number, c.value, round(c.time, 4)) for c in controls] + [b.pitch for b in bends])
    tag = hashlib.sha1(repr(tag_of).encode()).hexdigest()[:10]
    mid = os.path.join(WORK, f"p{program}_{rep}_{tag}.mid")
    pm.write(mid)
    clips = []
    for name, font in SOUNDFONTS.items():
        wav = os.path.join(WORK, f"p{program}_{rep}_{tag}_{name}.wav")
        gain = f"{rng.uniform(0.3, 0.9):.3f}"
        if not os.path.exists(wav):
            subprocess.run(["fluidsynth", "-ni", "-g", gain, "-r", "44100", "-F", wav, font, mid], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        clips.append((wav, notes, program, rep))
    return clips


def render_all(rng, organs, synths):
    os.makedirs(WORK, exist_ok=True)
    clips = []
    extra = [(p, rep) for p in PROGRAMS if p not in SLOW for rep in range(REPS, REPS_FAST)]
    for program, rep in [(p, rep) for p in PROGRAMS for rep in range(REPS)] + extra:
        notes = melody(rng, program)
        controls, bends = expression(rng, program, notes)
        clips += render_line(rng, program, rep, notes, controls, bends)
    for rep in range(ORGAN_LINES if organs else 0):
        notes = melody(rng, 18)
        y = organ_line(rng, notes)
        tag = hashlib.sha1(repr(notes).encode()).hexdigest()[:10]
        wav = os.path.join(WORK, f"p{ORGAN}_{rep}_{tag}_synth.wav")
        if not os.path.exists(wav):
            sf.write(wav, y, R, subtype="FLOAT")
        clips.append((wav, notes, ORGAN, rep))
    for rep in range(SYNTH_LINES if synths else 0):
        notes = melody(rng, int(rng.choice([33, 40, 24])))  # a bass's, a sustained, a plucked range
        seed = int(rng.integers(2**31))
        tag = hashlib.sha1(repr((notes, seed)).encode()).hexdigest()[:10]
        wav = os.path.join(WORK, f"p{SYNTH}_{rep}_{tag}_synth.wav")
        if not os.path.exists(wav):
            sf.write(wav, synth_line(np.random.default_rng(seed), notes), R, subtype="FLOAT")
        clips.append((wav, notes, SYNTH, rep))
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
        (held if held_out else X).append((features(y, ends[keep]), lab[keep], near[keep], program))
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


def read_net(path):
    """net.bin's layers as (weights [inputs][outputs], biases), as `layers` gives them."""
    raw = open(path, "rb").read()
    if raw[:8] == b"SBPNET02":
        sys.exit(f"{path} is a harmonic network (train_harm.py); the fine-tunes start from the perceptron: "
                 "git show 43cd90d:models/melody_net/net.bin > models/melody_net/net.bin")
    assert raw[:8] == b"SBPNET01", f"{path} is not a melody_net file"
    dims = struct.unpack("<5I", raw[8:28])
    sizes, at, net = [dims[0], dims[1], dims[2], dims[3]], 28, []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        w = np.frombuffer(raw, "<f4", n_in * n_out, at).reshape(n_out, n_in).T.copy()
        at += 4 * n_in * n_out
        b = np.frombuffer(raw, "<f4", n_out, at).copy()
        at += 4 * n_out
        net.append((w, b))
    return net


def fine_tuned(X, Y, epochs, lr):
    """The shipped net.bin trained on for `epochs` passes over (X, Y) at a low rate: the node's
    thresholds were tuned around the shipped network's outputs, and a network trained again
    from nothing moves them all (BENCHMARKS.md, seventh round)."""
    clf = MLPClassifier(hidden_layer_sizes=(HIDDEN, HIDDEN), batch_size=512, learning_rate_init=lr, alpha=1e-4, random_state=0)
    clf.partial_fit(X[:512], Y[:512], classes=np.arange(CLASSES))  # builds the layers and Adam
    for i, (w, b) in enumerate(read_net(os.path.join(HERE, "net.bin"))):
        clf.coefs_[i][...], clf.intercepts_[i][...] = w, b  # in place: Adam holds these arrays
    for epoch in range(epochs):
        clf.partial_fit(X, Y)
        print(f"fine-tune epoch {epoch + 1}: loss {clf.loss_:.4f}", file=sys.stderr)
    return clf


def held_out_accuracy(net, held, label):
    if not held:  # no organ lines outside the fine-tune
        return
    for name, sel in (("all frames", None), ("attack frames (first 60 ms)", True)):
        hx = np.concatenate([a if sel is None else a[c] for a, _, c, _ in held])
        hy = np.concatenate([b if sel is None else b[c] for _, b, c, _ in held])
        print(f"{label}, held-out lines, {name}: accuracy {np.mean(forward(net, hx).argmax(1) == hy):.3f} ({len(hy)} frames)", file=sys.stderr)


def main():
    fine_tune = "--fine-tune" in sys.argv
    rng = np.random.default_rng(20261126)
    clips = render_all(rng, organs=fine_tune, synths=fine_tune and "--synth" in sys.argv)
    held, train = dataset(clips, rng)
    if fine_tune:  # a share of the frames: the organs' all, twice, the random instruments' all, and FT_SHARE of the rest
        train = [(a, b, c, p) for a, b, c, p in train for _ in range(2 if p == ORGAN else 1)]
        keep = [np.ones(len(b), bool) if p in (ORGAN, SYNTH) else rng.uniform(size=len(b)) < FT_SHARE for _, b, _, p in train]
        train = [(a[k], b[k], c[k], p) for (a, b, c, p), k in zip(train, keep)]
    X = np.concatenate([a for a, _, _, _ in train])
    Y = np.concatenate([b for _, b, _, _ in train])
    del train
    print(f"{len(clips)} clips rendered; {len(X)} training frames", file=sys.stderr)
    organs = [h for h in held if h[3] == ORGAN]
    synths = [h for h in held if h[3] == SYNTH]
    if fine_tune:
        held_out_accuracy(read_net(os.path.join(HERE, "net.bin")), held, "shipped")
        held_out_accuracy(read_net(os.path.join(HERE, "net.bin")), organs, "shipped, organs")
        held_out_accuracy(read_net(os.path.join(HERE, "net.bin")), synths, "shipped, random instruments")
        epochs = int(os.environ.get("MELODY_FT_EPOCHS", SYNTH_EPOCHS if "--synth" in sys.argv else FT_EPOCHS))
        clf = fine_tuned(X, Y, epochs, FT_LR)
        net = [(w, b) for w, b in zip(clf.coefs_, clf.intercepts_)]
    else:
        clf = MLPClassifier(hidden_layer_sizes=(HIDDEN, HIDDEN), batch_size=512, max_iter=ITERATIONS, learning_rate_init=1e-3, alpha=1e-4, random_state=0)
        clf.fit(X, Y)
        net = layers(clf)
        print(f"classes never seen in training: {sorted(set(range(CLASSES)) - set(clf.classes_))}", file=sys.stderr)
    held_out_accuracy(net, held, "trained")
    held_out_accuracy(net, organs, "trained, organs")
    held_out_accuracy(net, synths, "trained, random instruments")

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
