#!/usr/bin/env python3
"""Trains the shipped `melody_net` (since the eleventh round, BENCHMARKS.md): melody_net's inputs
read through a harmonic stack by a network shared across pitch (PyTorch on CPU; a training
script, never run by the engine, its tests or CI; about 25 minutes on one core after train.py's
renders, which it makes itself if they are missing).

Why: the perceptron train.py makes (two layers over the three log spectra) learns each note's
pattern at its own place in the spectrum, so an instrument whose body it never heard moves every
pattern it knows (BENCHMARKS.md, ninth and tenth rounds: a salience input adds nothing, a wider
perceptron nothing). Here every candidate note reads the same thing, its own harmonics: for note
p and each ratio of the set (a subharmonic, the fifth between, partials 1-8), the three scaled log
spectra interpolated at ratio * f0(p), with the notes a semitone either side; one small
perceptron, the same for every note, turns that into the note's logit (plus a bias per note), and
a second reads the pooled hidden units and the level for "no note". The outputs are the
perceptron's (a softmax over no note and MIDI 28..90), from the same 452 inputs;
engine/src/pitchnet/harm.rs runs it (`SBPNET02`).

The frames are train.py's, made the same way (its renders, bodies, rooms, noise floors, drawbar
organs and random instruments, the same seed), all of them: the held-out lines there are held out
here, and the perceptron (net.bin as it is before an export) is scored on the same frames.

    scripts/eval/setup.sh && .cache/eval-venv/bin/pip install torch
    .cache/eval-venv/bin/python models/melody_net/train_harm.py --epochs 6 --width 48 --threads 1
    .cache/eval-venv/bin/python models/melody_net/train_harm.py --export .cache/melody_net/harm/w48_epoch6.pt \
        --out models/melody_net/net.bin --ref models/tests/data/melody_net_ref.bin   # the shipped net.bin
    -> .cache/melody_net/harm/ (frames cache, a checkpoint per epoch, held-out accuracy per epoch)

`--rise` (BENCHMARKS.md, twelfth round): every note also reads how much each of its harmonics
rose over the last 32 ms (the same spectra of the window that ended `RISE_BACK` samples earlier,
scaled by the newest window's peak, follow the features; a note struck over one still ringing
rises, the ringing one does not); its frames are cached apart (frames_rise.npz); `--export` with
`--rise` writes `SBPNET03`.

`--period` (BENCHMARKS.md, eighteenth round): every note's row also holds whether the sound
repeats at its period and at half of it, over the newest 4 and 16 ms (`periodicity`; YIN's
question, which a 32 ms spectrum cannot answer for a semitone under middle C until the window
holds mostly the new note); its frames are cached apart (frames_period.npz); `--export` with
`--period` writes `SBPNET04`. `--init-rise CKPT` starts it from a `--rise` network, the
periodicity's weights zero.

`--pedal N` (BENCHMARKS.md, eighteenth round; not the shipped network): N more lines on each
training program whose notes die away, the sustain pedal held (`pedal_lines`).

`--early-weight W` (BENCHMARKS.md, sixteenth round; not the shipped network): each frame in the
first `--early-ms` of its note counts W times in the loss, so that a fine-tune (`--init`) learns
to name a note sooner after its onset; the frames' ages come from onset_ages.py.
"""
import argparse
import os
import sys
import time
import zlib

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train as base  # noqa: E402

OUT = os.path.join(base.WORK, "harm")
# Ratios to the candidate's fundamental read from each spectrum (--ratios): a subharmonic, the
# fifth between, partials 1-8; `--ratios wide` adds 2.5 and 3.5, where the key an octave above a
# sound's fundamental has nothing and that fundamental's partials 5 and 7 have something (an
# organ's 16-foot stop sounds under its key with no 5th or 7th partial of its own).
RATIO_SETS = {
    "base": (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0),
    "wide": (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0),
}
NOTES = base.HI - base.LO + 1
FLOOR = -1.0
SPECTRA = sum(n // 2 + 1 for n in base.SIZES)  # 451: the three spectra's bins, then the level
# `--rise`: the same spectra of the window that ended this many samples (32 ms at 16 kHz)
# earlier, scaled by the newest window's peak, follow the newest features; each note reads, beside
# its harmonics, how much each rose since (a note struck over one still ringing rises; the
# ringing one does not).
RISE_BACK = 512
PLAIN_FEATURES = base.features  # the scaled spectra's lowest value; read beyond a spectrum's Nyquist
# `--period` (SBPNET04): every note also reads whether the sound repeats at its period, as YIN
# does, where a spectrum of 32 ms cannot yet tell a semitone under middle C from its neighbour:
# the normalised correlation 2 sum(x_t x_{t-L}) / (sum x_t^2 + sum x_{t-L}^2) over the newest
# PERIOD_WINDOWS samples, at the note's period L and at half of it (the octave above), linearly
# interpolated between whole lags. 1: the newest window repeats the one a period earlier.
PERIOD_WINDOWS = (64, 256)
PERIOD_FACTORS = (1.0, 0.5)
PERIOD_VALUES = len(PERIOD_WINDOWS) * len(PERIOD_FACTORS)
PERIOD_EPS = 1e-6


def stack_index(ratios):
    """For every note and (spectrum, ratio): the two feature indices around ratio * f0 and the
    weight of the lower one (linear interpolation over bins). Index `INPUTS - 1` (the level's
    place) is replaced by FLOOR in `HarmNet.forward`, for frequencies a spectrum cannot hold."""
    lo_i, hi_i, w_lo = [], [], []
    floor = 451
    for p in range(base.LO, base.HI + 1):
        f0 = 440.0 * 2 ** ((p - 69) / 12)
        row = ([], [], [])
        offset = 0
        for n in base.SIZES:
            bins = n // 2 + 1
            for r in ratios:
                b = r * f0 / (base.R / n)
                if b >= bins - 1:
                    i0 = i1 = floor
                    w = 1.0
                else:
                    i0 = offset + int(np.floor(b))
                    i1 = i0 + 1
                    w = 1.0 - (b - np.floor(b))
                row[0].append(i0)
                row[1].append(i1)
                row[2].append(w)
            offset += bins
        lo_i.append(row[0])
        hi_i.append(row[1])
        w_lo.append(row[2])
    return torch.tensor(lo_i), torch.tensor(hi_i), torch.tensor(w_lo, dtype=torch.float32)


class HarmNet(nn.Module):
    def __init__(self, width, ratios=RATIO_SETS["base"], rise=False, period=False):
        super().__init__()
        self.ratios = tuple(ratios)
        self.rise = rise or period  # SBPNET04 is SBPNET03 with the periods
        self.period = period
        i0, i1, w = stack_index(self.ratios)
        self.register_buffer("i0", i0)
        self.register_buffer("i1", i1)
        self.register_buffer("w", w)
        c = i0.shape[1]
        row = c + (PERIOD_VALUES if period else 0)
        self.l1 = nn.Linear(3 * row + 1 + (c if self.rise else 0), width)
        self.l2 = nn.Linear(width, width)
        self.note = nn.Linear(width, 1)
        self.note_bias = nn.Parameter(torch.zeros(NOTES))
        self.none1 = nn.Linear(width + 1, 32)
        self.none2 = nn.Linear(32, 1)

    def stack(self, spec):
        """Each note's harmonics read from `spec` (B, 452: the spectra, then FLOOR): (B, notes, c)."""
        return spec[:, self.i0] * self.w + spec[:, self.i1] * (1 - self.w)

    def forward(self, x):
        level = x[:, SPECTRA : SPECTRA + 1]
        spec = torch.cat([x[:, :SPECTRA], torch.full_like(level, FLOOR)], 1)
        v = self.stack(spec)
        row = v
        if self.period:  # each note's periodicity follows its harmonics in its row
            at = 2 * SPECTRA + 1
            row = torch.cat([v, x[:, at : at + NOTES * PERIOD_VALUES].reshape(-1, NOTES, PERIOD_VALUES)], 2)
        pad = torch.full_like(row[:, :1], FLOOR)
        vp = torch.cat([pad, row, pad], 1)
        parts = [vp[:, :-2], vp[:, 1:-1], vp[:, 2:], level[:, None, :].expand(-1, NOTES, 1)]
        if self.rise:
            past = torch.cat([x[:, SPECTRA + 1 : 2 * SPECTRA + 1], torch.full_like(level, FLOOR)], 1)
            parts.append(v - self.stack(past))
        ctx = torch.cat(parts, 2)
        h = torch.relu(self.l2(torch.relu(self.l1(ctx))))
        notes = self.note(h).squeeze(2) + self.note_bias
        none = self.none2(torch.relu(self.none1(torch.cat([h.max(1).values, level], 1))))
        return torch.cat([none, notes], 1)

    def multiply_adds(self):
        c = self.i0.shape[1]
        w = self.l1.out_features
        return NOTES * (self.l1.in_features * w + w * w + w) + (w + 1) * 32 + 32


def with_rise_weights(model, path):
    """`model` (`--period`) given the weights of the `--rise` network saved at `path`, its
    periodicity inputs' weights zero: it starts as that network."""
    old = torch.load(path)
    new = model.state_dict()
    c, k = model.i0.shape[1], PERIOD_VALUES
    w_old, w = old["l1.weight"], torch.zeros_like(new["l1.weight"])
    for r in range(3):  # each row's harmonics, after the rows before with their periodicity
        w[:, r * (c + k) : r * (c + k) + c] = w_old[:, r * c : (r + 1) * c]
    w[:, 3 * (c + k) :] = w_old[:, 3 * c :]  # the level, then the rise
    old["l1.weight"] = w
    model.load_state_dict(old)


def log_spectra(y, ends):
    """The three log magnitude spectra of the windows ending at `ends` (train.features before
    its scaling)."""
    out = []
    for n in base.SIZES:
        idx = ends[:, None] - n + np.arange(n)[None, :]
        seg = np.where(idx >= 0, y[np.clip(idx, 0, len(y) - 1)], 0).astype(np.float32)
        out.append(np.log(np.abs(np.fft.rfft(seg * base.WINDOWS[n], axis=1)) + 1e-5))
    return np.concatenate(out, 1)


def features_with_rise(y, ends):
    """train.features, then the spectra of the windows `RISE_BACK` samples earlier scaled by the
    newest window's peak (as float16: the frames of every line are held at once)."""
    now = PLAIN_FEATURES(y, ends)
    top = now[:, -1:] * 6
    past = np.maximum(log_spectra(y, ends - RISE_BACK) - top, -12) / 6 + 1
    return np.concatenate([now, past], 1).astype(np.float16)


def note_periods():
    """Each note's period in 16 kHz samples (MIDI LO..HI)."""
    return base.R / (440.0 * 2.0 ** ((np.arange(base.LO, base.HI + 1) - 69) / 12))


def periodicity(y, ends):
    """For the windows ending (exclusive) at `ends`: each note's PERIOD_VALUES (window-major:
    for each of PERIOD_WINDOWS, at each of PERIOD_FACTORS times its period), (frames,
    NOTES * PERIOD_VALUES). Zeros before the clip's start."""
    pad = max(PERIOD_WINDOWS) + int(note_periods().max()) + 2
    x = np.concatenate([np.zeros(pad), y.astype(np.float64)])
    e = ends + pad
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    taus = [(tau * f) for tau in note_periods() for f in PERIOD_FACTORS]
    lags = sorted({int(np.floor(t)) + k for t in taus for k in (0, 1)})
    out = np.zeros((len(ends), base.HI - base.LO + 1, len(PERIOD_WINDOWS), len(PERIOD_FACTORS)))
    value = {}
    for lag in lags:
        c = np.concatenate([[0.0], np.cumsum(x[lag:] * x[:-lag])])  # c[i]: sum of x_t x_{t-lag}, t < i + lag
        for w in PERIOD_WINDOWS:
            s = c[e - lag] - c[e - w - lag]
            ea = energy[e] - energy[e - w]
            eb = energy[e - lag] - energy[e - w - lag]
            value[lag, w] = 2 * s / (ea + eb + PERIOD_EPS)
    for p, tau in enumerate(note_periods()):
        for j, w in enumerate(PERIOD_WINDOWS):
            for k, f in enumerate(PERIOD_FACTORS):
                t = tau * f
                i = int(np.floor(t))
                frac = t - i
                out[:, p, j, k] = (1 - frac) * value[i, w] + frac * value[i + 1, w]
    return out.reshape(len(ends), -1).astype(np.float32)


def features_with_period(y, ends):
    """features_with_rise, then `periodicity` (float16)."""
    return np.concatenate([features_with_rise(y, ends), periodicity(y, ends).astype(np.float16)], 1)


def sub_octave(y, notes, rng):
    """`y` (16 kHz) with a sound an octave under each of its notes: a sine at half the note's
    frequency (an organ's 16-foot stop, a saxophone's subtone), on some clips the fifth above it
    too (the 5 1/3-foot stop), following the clip's own level at 6-20 dB under it. The label
    stays the note: the key, not the lowest period."""
    level = np.sqrt(np.convolve(y * y, np.ones(192) / 192, "same"))
    gain = 10 ** (rng.uniform(-20, -6) / 20)
    fifth = 10 ** (-rng.uniform(0, 10) / 20) if rng.uniform() < 0.4 else 0.0
    out = y.astype(np.float64)
    for s, e, p, _ in notes:
        n0, n1 = int(s * base.R), min(len(y), int((e + 0.05) * base.R))
        if n1 <= n0:
            continue
        t = np.arange(n1 - n0) / base.R
        f = 440.0 * 2 ** ((p - 69) / 12) / 2
        tone = np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        if fifth and 3 * f < 7800:
            tone += fifth * np.sin(2 * np.pi * 3 * f * t + rng.uniform(0, 2 * np.pi))
        out[n0:n1] += np.sqrt(2) * gain * np.clip(t / 0.005, 0, 1) * tone * level[n0:n1]
    return out.astype(np.float32)


def with_sub_octaves(clips, share):
    """base.load16 replaced, for `frames`: a share of the SoundFont lines outside the held-out
    ones gain `sub_octave` (their own random stream, seeded by the file's name, so the frames'
    stream and picks stay those of the plain frames)."""
    lines = {wav: (notes, program, rep) for wav, notes, program, rep in clips}
    plain = base.load16

    def load16(wav):
        y = plain(wav)
        notes, program, rep = lines[wav]
        rng = np.random.default_rng(zlib.crc32(os.path.basename(wav).encode()))
        if program not in (base.ORGAN, base.SYNTH) and (program + rep) % 8 != 0 and rng.uniform() < share:
            y = sub_octave(y, notes, rng)
        return y

    base.load16 = load16


# `--pedal N` (BENCHMARKS.md, eighteenth round): N more lines on every struck and plucked program
# with the sustain pedal held (CC 64), each note held to the next one's onset: every note sounds
# over the last ones still ringing, as a harp's, a vibraphone's or a pedalled piano's do. Their
# reps (in file names and the held-out rule) start at PEDAL_REP.
PEDAL_REP = 100


def pedal_lines(rng, reps):
    """`reps` pedalled legato lines on each program train.py renders whose notes die away (not
    the organs, leads and overdriven guitars: held, their notes would pile up)."""
    import pretty_midi

    clips = []
    held = {17, 19, 29, 30, 80, 81, 84, 87}
    for program in [p for p in base.PROGRAMS if p not in base.SLOW and p not in held]:
        for rep in range(PEDAL_REP, PEDAL_REP + reps):
            notes = base.melody(rng, program)
            notes = [(s, nxt[0] if nxt else e, p, v) for (s, e, p, v), nxt in zip(notes, notes[1:] + [None])]
            pedal = [pretty_midi.ControlChange(64, 127, 0.0)]
            clips += base.render_line(rng, program, rep, notes, pedal, tag_of=("pedal", notes))
    return clips


def frames(rise=False, sub_octaves=0.0, period=False, pedal=0):
    """train.py's frames, all of them (the fine-tunes' organ and random-instrument lines with the
    SoundFont lines), cached as float16; with `rise`, each with its past spectra too; with
    `period`, then each note's periodicity; with `sub_octaves`, that share of the SoundFont lines
    with a sound an octave under each note."""
    os.makedirs(OUT, exist_ok=True)
    name = ("frames_period" if period else "frames_rise" if rise else "frames") + (f"_sub{round(100 * sub_octaves)}" if sub_octaves else "") + (f"_pedal{pedal}" if pedal else "")
    cache = os.path.join(OUT, name + ".npz")
    if rise:
        base.features = features_with_rise
    if period:
        base.features = features_with_period
    if os.path.exists(cache):
        z = np.load(cache)
        return {k: z[k] for k in z.files}
    rng = np.random.default_rng(20261126)
    clips = base.render_all(rng, organs=True, synths=True)
    clips += pedal_lines(rng, pedal)
    if sub_octaves:
        with_sub_octaves(clips, sub_octaves)
    held, train = base.dataset(clips, rng)
    d = {
        "X": np.concatenate([a for a, *_ in train]).astype(np.float16),
        "Y": np.concatenate([b for _, b, *_ in train]).astype(np.int8),
        "P": np.concatenate([np.full(len(b), p, np.int16) for _, b, _, p in train]),
    }
    for k, v in (("hX", 0), ("hY", 1), ("hA", 2)):
        d[k] = np.concatenate([h[v] for h in held])
    d["hX"] = d["hX"].astype(np.float16)
    d["hP"] = np.concatenate([np.full(len(h[1]), h[3], np.int16) for h in held])
    np.savez(cache, **d)
    return d


def held_report(predict, d, label):
    """Held-out frames right: SoundFont lines / organs / random instruments, all and attack."""
    pred = predict(d["hX"])
    right = pred == d["hY"]
    parts = []
    for name, sel in (("soundfonts", (d["hP"] != base.ORGAN) & (d["hP"] != base.SYNTH)), ("organs", d["hP"] == base.ORGAN), ("random", d["hP"] == base.SYNTH)):
        parts.append(f"{name} {right[sel].mean():.3f} (attack {right[sel & d['hA']].mean():.3f})")
    line = f"{label}: " + ", ".join(parts)
    print(line, flush=True)
    return line


def shipped_predict(X):
    net = base.read_net(os.path.join(HERE, "net.bin"))
    return np.concatenate([base.forward(net, X[i : i + 65536].astype(np.float32)).argmax(1) for i in range(0, len(X), 65536)])


def model_predict(model):
    def predict(X):
        with torch.no_grad():
            return np.concatenate([model(torch.from_numpy(X[i : i + 16384].astype(np.float32))).argmax(1).numpy() for i in range(0, len(X), 16384)])

    return predict


def export(model, out, ref):
    """`model` as an SBPNET02 file (engine/src/pitchnet/harm.rs reads it) and, for the Rust
    implementation's test, the reference of the test signal (train.py's format)."""
    import struct
    import hashlib

    def t(x):
        return np.ascontiguousarray(x.detach().numpy(), dtype="<f4").tobytes()

    with open(out, "wb") as f:
        f.write(b"SBPNET04" if model.period else b"SBPNET03" if model.rise else b"SBPNET02")
        f.write(struct.pack("<5I", NOTES, base.LO, len(model.ratios), model.l1.out_features, model.none1.out_features))
        f.write(np.asarray(model.ratios, "<f4").tobytes())
        for layer in (model.l1, model.l2):
            f.write(t(layer.weight) + t(layer.bias))
        f.write(t(model.note.weight) + t(model.note.bias) + t(model.note_bias))
        for layer in (model.none1, model.none2):
            f.write(t(layer.weight) + t(layer.bias))
    y = base.test_signal()
    ends = np.array([512, 4096, 4800, 6400, 9664, 9728, 9792, 9856, 12000], dtype=int)
    make = features_with_period if model.period else features_with_rise if model.rise else PLAIN_FEATURES
    F = make(y, ends).astype(np.float32)
    with torch.no_grad():
        P = torch.softmax(model(torch.from_numpy(F)), 1).numpy()
    with open(ref, "wb") as f:
        f.write(struct.pack("<3I", len(ends), F.shape[1], P.shape[1]))
        f.write(ends.astype("<u4").tobytes() + F.astype("<f4").tobytes() + P.astype("<f4").tobytes())
    print(f"{out}: sha256 {hashlib.sha256(open(out, 'rb').read()).hexdigest()}; test signal argmax {[int(c) + base.LO - 1 if c else None for c in P.argmax(1)]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", metavar="CKPT", help="write CKPT as net.bin (--out) and its Rust reference (--ref), then stop")
    ap.add_argument("--out", default=os.path.join(OUT, "net.bin"))
    ap.add_argument("--ref", default=os.path.join(OUT, "melody_net_ref.bin"))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--width", type=int, default=48)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tag", default="w48")
    ap.add_argument("--init", metavar="CKPT", help="start from this checkpoint's weights (same width and ratios)")
    ap.add_argument("--organ-weight", type=int, default=1, help="times each organ frame is seen a pass")
    ap.add_argument("--ratios", choices=sorted(RATIO_SETS), default="base")
    ap.add_argument("--rise", action="store_true", help="each note also reads how much its harmonics rose in the last 32 ms (SBPNET03)")
    ap.add_argument("--period", action="store_true", help="each note also reads the sound's periodicity at its period and half of it (SBPNET04; implies --rise)")
    ap.add_argument("--init-rise", metavar="CKPT", help="with --period: start from this --rise checkpoint (same width and ratios), the periodicity's weights zero")
    ap.add_argument("--pedal", type=int, default=0, help="this many pedalled legato lines more on each struck or plucked program (pedal_lines)")
    ap.add_argument("--early-weight", type=float, default=1.0, help="weight of the frames in a note's first --early-ms (their ages: onset_ages.py)")
    ap.add_argument("--early-ms", type=float, default=24.0)
    ap.add_argument("--sub-octaves", type=float, default=0.0, help="share of the SoundFont lines given a sound an octave under each note (sub_octave)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.export:
        model = HarmNet(a.width, RATIO_SETS[a.ratios], a.rise, a.period)
        model.load_state_dict(torch.load(a.export))
        model.eval()
        export(model, a.out, a.ref)
        return
    t0 = time.time()
    d = frames(a.rise or a.period, a.sub_octaves, a.period, a.pedal)
    print(f"{len(d['Y'])} training frames, {len(d['hY'])} held out ({time.time() - t0:.0f} s)", flush=True)
    if open(os.path.join(HERE, "net.bin"), "rb").read(8) == b"SBPNET01":
        held_report(shipped_predict, d, "shipped net.bin (perceptron)")
    model = HarmNet(a.width, RATIO_SETS[a.ratios], a.rise, a.period)
    if a.init:
        model.load_state_dict(torch.load(a.init))
        held_report(model_predict(model.eval()), d, f"start ({a.init})")
    if a.init_rise:
        with_rise_weights(model, a.init_rise)
        held_report(model_predict(model.eval()), d, f"start ({a.init_rise}, the periodicity's weights zero)")
    print(f"HarmNet width {a.width}, ratios {a.ratios}: {sum(p.numel() for p in model.parameters())} parameters, {model.multiply_adds()} multiply-adds a run", flush=True)
    X, Y = torch.from_numpy(d["X"]), torch.from_numpy(d["Y"].astype(np.int64))
    W = torch.ones(len(Y))
    if a.early_weight != 1.0:
        age = torch.from_numpy(np.load(os.path.join(OUT, "ages.npz"))["age"])
        assert len(age) == len(Y), "ages.npz was made for other frames"
        W[(age >= 0) & (age < a.early_ms / 1000)] = a.early_weight
    if a.organ_weight > 1:  # the organ lines' frames repeated: a few lines among thousands
        organ = torch.from_numpy(np.flatnonzero(d["P"] == base.ORGAN))
        X = torch.cat([X] + [X[organ]] * (a.organ_weight - 1))
        Y = torch.cat([Y] + [Y[organ]] * (a.organ_weight - 1))
        W = torch.cat([W] + [W[organ]] * (a.organ_weight - 1))
    steps = a.epochs * (len(Y) // a.batch)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps, pct_start=0.05)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    g = torch.Generator().manual_seed(0)
    for epoch in range(a.epochs):
        perm = torch.randperm(len(Y), generator=g)
        total = 0.0
        model.train()
        for k in range(len(Y) // a.batch):
            idx = perm[k * a.batch : (k + 1) * a.batch]
            loss = (loss_fn(model(X[idx].float()), Y[idx]) * W[idx]).sum() / W[idx].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            if k % 500 == 0:
                print(f"epoch {epoch + 1} step {k}: loss {total / (k + 1):.4f} ({time.time() - t0:.0f} s)", flush=True)
        model.eval()
        held_report(model_predict(model), d, f"epoch {epoch + 1} ({a.tag}), loss {total / (len(Y) // a.batch):.4f}")
        torch.save(model.state_dict(), os.path.join(OUT, f"{a.tag}_epoch{epoch + 1}.pt"))


if __name__ == "__main__":
    main()
