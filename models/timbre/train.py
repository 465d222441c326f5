#!/usr/bin/env python3
"""Trains the `timbre` node's decoder (DDSP-style): f0, loudness and an instrument embedding
in, every 4 ms (250 frames a second), the amplitudes of 60 harmonics and the magnitudes of 65
noise bands out; the engine's additive oscillators and filtered noise make the sound.

Model: cond = [midi(f0) / 127, loudness_db / 100 + 1, voiced, vibrato, note age (s), embedding (8)];
all but the age -> Linear 12->128, LayerNorm, LeakyReLU -> GRU 384 (the state) -> Linear (384 + 12
+ 32 -> 256), LayerNorm, LeakyReLU -> Linear 256 -> 1 + 60 + 65: the overall amplitude, the
harmonic distribution (each exp-sigmoid, as DDSP) and the noise bands (exp-sigmoid, shifted
down). The 32 more the middle layer reads are the key tables' (KeyTables): learned rows for each
key and 5 cents of pitch within it, and for each key and 25 ms of the note's age, read between
the two nearest, times a gate the instrument's embedding sets. The instruments' embeddings are
a table the node reads from instruments.json (morph interpolates two of them).

Synthesis (this file, and the engine's `ddsp` module, equal): harmonic k of f0 sounds while
k * f0 is below 8 kHz (the model's Nyquist), the distribution renormalised over those, times
the amplitude, amplitudes and f0 linear between frames, phase the running sum of f0; noise:
uniform white noise filtered frame by frame in an STFT of 128 / hop 64 at 16 kHz (sqrt-Hann
both sides) whose 65 bins are the 65 bands (125 Hz apart, as the engine's 384 / 192 at 48 kHz).

Loss: multi-scale spectral (FFT 1024, 512, 256, 128, 64; hop a quarter; L1 of magnitudes plus
L1 of log magnitudes), summed over scales, against the real line delayed by the conditioning's
own lag (CONDITIONING_LAG_SAMPLES).

    .cache/eval-venv/bin/python models/timbre/train.py [--minutes M] [--resume]
    .cache/eval-venv/bin/python models/timbre/train.py --export   # ONNX, fixture, manifest
    models/timbre/retrain.sh [LEG_END_MINUTES ...]                # everything from nothing

Resumable (.cache/timbre/ckpt.pt every 2 minutes); the best on validation in best.pt; the
curve in .cache/timbre/curve.tsv. `--warm` starts a run that has no checkpoint from the
shipped timbre.onnx (its weights read back into PyTorch), so a fresh machine can train on.
`--ema DECAY` validates, keeps and exports the weights' running average instead of the weights
(their checks jump by up to 0.02 from one to the next; the average's move steadily).
A GPU is used where one is present.
"""
import argparse
import copy
import glob
import hashlib
import json
import math
import os
import random
import re
import time

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, ".cache", "timbre", "data")
# TIMBRE_WORK / TIMBRE_HIDDEN try another size without touching the shipped run's checkpoints.
WORK = os.environ.get("TIMBRE_WORK", os.path.join(ROOT, ".cache", "timbre"))
SR, HOP, HARMONICS, BANDS, EMBED = 16000, 64, 60, 65, 8
HIDDEN = int(os.environ.get("TIMBRE_HIDDEN", "384"))
MID = max(192, HIDDEN * 2 // 3)
COND = 5 + EMBED
# The key tables (KeyTables), read by the nearest MIDI key of f0 (keys KEY_LO.. KEY_LO + KEYS - 1;
# others read the nearest) and
# - the pitch within the key, in CENT_BINS steps of CENTS_STEP cents from -50 to +50: an
#   instrument's body has its resonances at fixed frequencies, so each harmonic's level moves with
#   the exact pitch as vibrato sweeps it across them (note_age.py: by key and 5 cents, 0.14-0.50 of
#   FluidR3_GM's violin's harmonics' movement faster than 150 ms on unseen lines; the vibrato
#   input, a linear coefficient per key, 0.01-0.12);
# - the note's age, AGE_BIN_S steps to (AGE_BINS - 1) * AGE_BIN_S: a sampled instrument plays
#   each note of one key from the start of the same sample (by key and age: 0.09-0.57).
# Each gives TABLE_WIDTH values a frame, mixed linearly between the two nearest rows.
KEY_LO, KEYS, TABLE_WIDTH = 24, 85, 16
CENTS_STEP, CENT_BINS = 5.0, 21
AGE_BIN_S, AGE_BINS = 0.025, 121
# The vibrato input: a voice's pitch against its own slow centre (VIBRATO_TAU_S; a jump of more
# than VIBRATO_JUMP semitones is a new note, and the centre moves there at once), in semitones
# times VIBRATO_SCALE, clamped to +-2. A bowed string's harmonics swell and fade by several dB as
# vibrato sweeps them across the body's resonances; midi / 127 alone moves by 0.001 for 15 cents.
VIBRATO_TAU_S, VIBRATO_JUMP, VIBRATO_SCALE = 0.1, 1.0, 5.0
FRAME_S = HOP / SR
# A note begins at an unvoiced frame or at a jump of more than NOTE_JUMP semitones from the frame
# before (note_age_s: how long a frame's note has sounded, for loss_parts.py and note_age.py).
NOTE_JUMP = 1.0
# The conditioning's own lag: the `features` node's f0 and loudness describe the audio about
# 9 ms before the frame they are kept for (its YIN window ends there; evaluate.py measures it on a
# pitch step, 9.0 ms). The issue counts the node's latency beyond the conditioning's own, so the
# decoder learns to play the line as heard that late (the real audio delayed by this much), not
# to guess 9 ms ahead of what it is told; evaluate.py scores the node against the line so delayed.
# (v5 and earlier were trained with 0.)
CONDITIONING_LAG_SAMPLES = 144
SEG_FRAMES, BATCH, LR = 300, 8, 1e-3
INSTRUMENTS = [i + s for i in ("flute", "violin", "trumpet", "alto_sax", "cello") for s in ("", "_gm6")]
FFTS = (1024, 512, 256, 128, 64)


def exp_sigmoid(x):
    return 2.0 * torch.sigmoid(x) ** math.log(10.0) + 1e-7


def midi_of(f0_hz):
    return 69.0 + 12.0 * np.log2(np.maximum(f0_hz, 20.0) / 440.0)


def vibrato(f0_hz):
    """The vibrato input of each frame of one line (frames in order; the engine's
    `timbre` node computes the same, frame by frame, for each voice)."""
    alpha = 1.0 - math.exp(-FRAME_S / VIBRATO_TAU_S)
    out = np.zeros(len(f0_hz), dtype=np.float32)
    centre = None
    for j, (f, m) in enumerate(zip(f0_hz, midi_of(np.asarray(f0_hz, dtype=np.float64)))):
        if f <= 20.0 or centre is None or abs(m - centre) > VIBRATO_JUMP:
            centre = m
        else:
            centre += alpha * (m - centre)
        out[j] = min(2.0, max(-2.0, VIBRATO_SCALE * (m - centre)))
    return out


def note_age_s(f0_hz, voiced):
    """Each frame's time since its note began (seconds) in one line."""
    midi = midi_of(np.asarray(f0_hz, dtype=np.float64))
    out = np.zeros(len(f0_hz))
    for j in range(1, len(f0_hz)):
        fresh = f0_hz[j] <= 20.0 or voiced[j] < 0.5 or abs(midi[j] - midi[j - 1]) > NOTE_JUMP
        out[j] = 0.0 if fresh else out[j - 1] + FRAME_S
    return out


def expression(f0_hz, voiced):
    """What a line's own shape gives each frame [frames, 2]: the vibrato input, the note's age (s)."""
    return np.stack([vibrato(f0_hz), note_age_s(f0_hz, voiced).astype(np.float32)], axis=1)


def conditioning(f0_hz, loudness_db, voiced, expr):
    midi = 69.0 + 12.0 * torch.log2(f0_hz.clamp(min=20.0) / 440.0)
    base = torch.stack([midi / 127.0, (loudness_db / 100.0 + 1.0).clamp(0.0, 1.0), voiced], dim=-1)
    return torch.cat([base, expr], dim=-1)


def table_read(table, key, at, bins):
    """Rows of `table` ([KEYS * bins, TABLE_WIDTH]) for each frame's key at fractional bin `at`,
    mixed linearly between the two nearest bins."""
    at = torch.clamp(at, 0, bins - 1)
    below = torch.clamp(torch.floor(at), max=bins - 2)
    frac = (at - below).unsqueeze(-1)
    row = (key * bins + below).long()
    return table[row] * (1 - frac) + table[row + 1] * frac


class KeyTables(nn.Module):
    """The key tables' values for each frame (the pitch table's, then the age table's), times
    the instrument's gate (embedding @ gate: morphing two instruments morphs their gates)."""

    def __init__(self):
        super().__init__()
        self.pitch = nn.Parameter(torch.randn(KEYS * CENT_BINS, TABLE_WIDTH) * 0.1)
        self.age = nn.Parameter(torch.randn(KEYS * AGE_BINS, TABLE_WIDTH) * 0.1)
        self.gate = nn.Parameter(torch.randn(EMBED, 2 * TABLE_WIDTH) * 0.3)

    def forward(self, midi, age_s, embedding):
        nearest = torch.floor(midi + 0.5)
        key = torch.clamp(nearest - KEY_LO, 0, KEYS - 1)
        cents = (midi - nearest) * (100.0 / CENTS_STEP) + (CENT_BINS - 1) / 2
        rows = torch.cat([table_read(self.pitch, key, cents, CENT_BINS),
                          table_read(self.age, key, age_s / AGE_BIN_S, AGE_BINS)], dim=-1)
        return rows * (embedding @ self.gate)


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(len(INSTRUMENTS), EMBED)
        self.inp = nn.Sequential(nn.Linear(COND - 1, 128), nn.LayerNorm(128), nn.LeakyReLU())
        self.gru = nn.GRU(128, HIDDEN, batch_first=True)
        self.keys = KeyTables()
        self.mid = nn.Sequential(nn.Linear(HIDDEN + COND - 1 + 2 * TABLE_WIDTH, MID), nn.LayerNorm(MID), nn.LeakyReLU())
        self.out = nn.Linear(MID, 1 + HARMONICS + BANDS)

    def forward(self, cond, state=None):
        """cond [b, t, COND] -> controls [b, t, 1 + 60 + 65] (amplitude, harmonic weights,
        noise magnitudes), GRU state."""
        base = torch.cat([cond[..., :4], cond[..., 5:]], dim=-1)  # all but the age
        table = self.keys(cond[..., 0] * 127.0, cond[..., 4], cond[..., 5:])
        y, state = self.gru(self.inp(base), state)
        raw = self.out(self.mid(torch.cat([y, base, table], dim=-1)))
        amp = exp_sigmoid(raw[..., :1])
        harm = exp_sigmoid(raw[..., 1:1 + HARMONICS])
        noise = exp_sigmoid(raw[..., 1 + HARMONICS:] - 5.0)
        return torch.cat([amp, harm, noise], dim=-1), state


class Step(nn.Module):
    """One frame, the state explicit: what the engine runs (ONNX). cond [COND], state [HIDDEN]."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, cond, state_in):
        controls, state = self.net(cond.view(1, 1, COND), state_in.view(1, 1, HIDDEN))
        return controls.view(-1), state.view(HIDDEN)


def replay(step, conds):
    """Each frame's controls from `step` (a Step), the state carried frame to frame from zero."""
    outs, state = [], torch.zeros(HIDDEN)
    with torch.no_grad():
        for c in conds:
            o, state = step(c, state)
            outs.append(o)
    return torch.stack(outs)


def upsample(x, n):
    """[b, t, c] frame values -> [b, n, c], linear between frame values (frame j at sample j * HOP)."""
    return nn.functional.interpolate(x.transpose(1, 2), size=n, mode="linear", align_corners=False).transpose(1, 2)


def synth(controls, f0_hz, n):
    """The sound of `controls` [b, t, 126] played at f0 [b, t]: n samples at 16 kHz."""
    amp, harm, noise = controls[..., :1], controls[..., 1:1 + HARMONICS], controls[..., 1 + HARMONICS:]
    k = torch.arange(1, HARMONICS + 1, device=controls.device)
    audible = (f0_hz.unsqueeze(-1) * k < SR / 2).float()
    harm = harm * audible
    harm = amp * harm / harm.sum(-1, keepdim=True).clamp(min=1e-7)
    f0 = upsample(f0_hz.unsqueeze(-1), n)[..., 0]
    a = upsample(harm, n)
    phase = 2 * math.pi * torch.cumsum(f0 / SR, dim=1)
    phase = torch.remainder(phase, 2 * math.pi)
    harmonic = (torch.sin(phase.unsqueeze(-1) * k) * a).sum(-1)
    window = torch.hann_window(2 * HOP, periodic=True, device=controls.device).sqrt()
    white = torch.rand(controls.shape[0], n, device=controls.device) * 2 - 1
    spec = torch.stft(white, 2 * HOP, HOP, window=window, center=True, return_complex=True)
    frames = min(spec.shape[-1], noise.shape[1])
    spec = spec[..., :frames] * noise[:, :frames].transpose(1, 2)
    filtered = torch.istft(spec, 2 * HOP, HOP, window=window, center=True, length=n)
    return harmonic + filtered


def sawtooth(f0, audio16):
    """A band-limited sawtooth at `f0` (frames), its level the real rendering's per frame: the
    baseline every spectral loss is set beside (evaluate.py, and `--select ratio`)."""
    n = len(audio16)
    f0s = np.interp(np.arange(n) / HOP, np.arange(len(f0)), f0)
    phase = 2 * np.pi * np.cumsum(f0s / SR)
    y = np.zeros(n)
    for k in range(1, 61):
        y += np.where(k * f0s < SR / 2, np.sin(k * phase) / k, 0.0)
    frames = len(f0)
    rms = lambda x: np.sqrt(np.mean(x[:frames * HOP].reshape(frames, HOP) ** 2, axis=1) + 1e-12)
    gain = np.interp(np.arange(n) / HOP, np.arange(frames), rms(audio16) / rms(y))
    return (y * gain).astype(np.float32)


def spectral_loss(x, y):
    total = 0.0
    for n in FFTS:
        w = torch.hann_window(n, device=x.device)
        sx = torch.stft(x, n, n // 4, window=w, return_complex=True).abs()
        sy = torch.stft(y, n, n // 4, window=w, return_complex=True).abs()
        total = total + (sx - sy).abs().mean() + (torch.log(sx + 1e-5) - torch.log(sy + 1e-5)).abs().mean()
    return total


def as_the_node_reads(curve):
    """make_data.py keeps each frame's value at its last sample, the value of the `features`
    node's hop that ended 48 samples (at 48 kHz) into the frame. The node frames on those hop
    ends (the engine's `melody::hop_end_phase`): its frame j starts the sample hop j ends and
    reads it at once. So frame j is conditioned by the value kept for j, and is heard
    NODE_PHASE_SAMPLES after make_data's frame j starts (the line is delayed that much less,
    `load_split`). (v8 and earlier: the node read at each frame's first sample, the value kept
    for j - 1, 3 ms older.)"""
    return curve


# Where the node's frames start, after the 4 ms grid make_data.py cuts frames on: 48 samples at
# 48 kHz, 16 at the model's 16 kHz (the `features` node's hops end there).
NODE_PHASE_SAMPLES = 16


def heard_late(audio, lag=CONDITIONING_LAG_SAMPLES - NODE_PHASE_SAMPLES):
    """`audio` delayed by `lag` samples (silence before it), as long as it was. By default the
    conditioning's own lag, less the node's phase: what a frame that starts NODE_PHASE_SAMPLES
    into make_data's frame is scored against (evaluate.py: the node's output against the line
    CONDITIONING_LAG_SAMPLES late)."""
    return np.concatenate([np.zeros(lag, dtype=audio.dtype), audio[:len(audio) - lag]]) if lag else audio


def load_split(split):
    out = []
    for path in sorted(glob.glob(os.path.join(DATA, split, "*.npz"))):
        d = np.load(path)
        name = os.path.basename(path)[:-4].split("-", 1)[1]
        frames = min(len(d["f0_hz"]), len(d["audio"]) // HOP)
        f0, loud, voiced = (as_the_node_reads(d[k][:frames]) for k in ("f0_hz", "loudness_db", "voiced"))
        out.append({"instrument": INSTRUMENTS.index(name), "audio": heard_late(d["audio"][:frames * HOP]), "f0": f0,
                    "expr": expression(f0, voiced), "loud": loud, "voiced": voiced, "file": path})
    return out


def batch(examples, rng, device, frames=SEG_FRAMES, size=BATCH, weights=None):
    f0, expr, loud, voiced, audio, ins = [], [], [], [], [], []
    for _ in range(size):
        e = rng.choices(examples, weights)[0] if weights else rng.choice(examples)
        start = rng.randrange(0, max(1, len(e["f0"]) - frames))
        sl = slice(start, start + frames)
        pad = frames - len(e["f0"][sl])
        f0.append(np.pad(e["f0"][sl], (0, pad), mode="edge"))
        expr.append(np.pad(e["expr"][sl], ((0, pad), (0, 0)), mode="edge"))
        loud.append(np.pad(e["loud"][sl], (0, pad), constant_values=-100.0))
        voiced.append(np.pad(e["voiced"][sl], (0, pad)))
        a = e["audio"][start * HOP:(start + frames) * HOP]
        audio.append(np.pad(a, (0, frames * HOP - len(a))))
        ins.append(e["instrument"])
    t = lambda v: torch.tensor(np.stack(v), dtype=torch.float32, device=device)
    return t(f0), t(expr), t(loud), t(voiced), t(audio), torch.tensor(ins, device=device)


def cond_of(net, f0, expr, loud, voiced, ins):
    emb = net.embedding(ins).unsqueeze(1).expand(-1, f0.shape[1], -1)
    return torch.cat([conditioning(f0, loud, voiced, expr), emb], dim=-1)


def loss_of(net, f0, expr, loud, voiced, audio, ins):
    controls, _ = net(cond_of(net, f0, expr, loud, voiced, ins))
    return spectral_loss(synth(controls, f0, audio.shape[1]), audio)


def validation(net, examples, device):
    rng = random.Random(99)
    torch.manual_seed(99)
    with torch.no_grad():
        return float(np.mean([loss_of(net, *batch(examples, rng, device)).item() for _ in range(6)]))


def segment(e, rng, frames):
    """A random stretch of `frames` frames of line `e`, as loss_of takes it (a batch of one)."""
    start = rng.randrange(0, max(1, len(e["f0"]) - frames))
    sl = slice(start, start + frames)
    t = lambda v: torch.tensor(np.asarray(v[sl], dtype=np.float32))[None]
    f0 = t(e["f0"])
    audio = torch.tensor(e["audio"][start * HOP:(start + f0.shape[1]) * HOP])[None]
    return f0, t(e["expr"]), t(e["loud"]), t(e["voiced"]), audio, torch.tensor([e["instrument"]])


def sawtooth_loss(seg):
    """The sawtooth's spectral loss on a `segment`: the baseline its ratios are taken against."""
    f0, audio = seg[0][0].numpy(), seg[4]
    return spectral_loss(torch.tensor(sawtooth(f0, audio[0].numpy()))[None], audio).item()


class RatioCheck:
    """Each instrument's spectral loss over the sawtooth's on fixed validation segments (up to
    six lines of 500 frames each, one noise draw): the target is every instrument's ratio at
    most 0.5, so `--select ratio` keeps the checkpoint whose worst ratio is lowest."""

    def __init__(self, examples, frames=500):
        rng = random.Random(1)
        self.segments = []
        for i in range(len(INSTRUMENTS)):
            for e in [e for e in examples if e["instrument"] == i][:6]:
                seg = segment(e, rng, frames)
                self.segments.append((i, seg, sawtooth_loss(seg)))

    def ratios(self, net, device):
        torch.manual_seed(5)
        loss, saw = np.zeros(len(INSTRUMENTS)), np.zeros(len(INSTRUMENTS))
        with torch.no_grad():
            for i, seg, s in self.segments:
                loss[i] += loss_of(net, *(x.to(device) for x in seg)).item()
                saw[i] += s
        return loss / np.maximum(saw, 1e-9)


def warm_from_onnx(net, path):
    """The shipped model's weights into `net` (the checkpoints live in .cache and are gone on a
    fresh machine; the ONNX file and instruments.json are committed). ONNX's GRU keeps its gates
    as z, r, h; PyTorch's as r, z, n. A model from before the key tables (v7 and earlier: the
    middle layer HIDDEN + 12 wide) gets the tables' columns of the middle layer at zero: it plays
    as it did until training moves them."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    init = {i.name: torch.tensor(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
    mats = [n.input[1] for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in init]
    shaped = lambda rows, cols: next(w for w in mats if rows(init[w].shape[0]) and init[w].shape[1] == cols)
    inp_w = shaped(lambda r: r == COND - 1, 128)
    mid_w = shaped(lambda r: r >= HIDDEN, MID)
    out_w = shaped(lambda r: r == MID, 1 + HARMONICS + BANDS)
    gru = next(n.input for n in m.graph.node if n.op_type == "GRU")
    reorder = lambda t: torch.cat([t[HIDDEN:2 * HIDDEN], t[:HIDDEN], t[2 * HIDDEN:]])
    sd = net.state_dict()
    mid = init[mid_w].T
    wide = HIDDEN + COND - 1 + 2 * TABLE_WIDTH
    missing = wide - mid.shape[1]  # the tables' columns, where the shipped model lacks them
    if missing not in (0, 2 * TABLE_WIDTH):
        raise SystemExit(f"warm start: the shipped model's middle layer reads {mid.shape[1]}, this one {wide}")
    sd["inp.0.weight"], sd["inp.0.bias"] = init[inp_w].T, init["net.inp.0.bias"]
    sd["inp.1.weight"], sd["inp.1.bias"] = init["net.inp.1.weight"], init["net.inp.1.bias"]
    sd["gru.weight_ih_l0"], sd["gru.weight_hh_l0"] = reorder(init[gru[1]][0]), reorder(init[gru[2]][0])
    bias = init[gru[3]][0]
    sd["gru.bias_ih_l0"], sd["gru.bias_hh_l0"] = reorder(bias[:3 * HIDDEN]), reorder(bias[3 * HIDDEN:])
    sd["mid.0.weight"] = torch.cat([mid, torch.zeros(mid.shape[0], missing)], dim=1)
    sd["mid.0.bias"] = init["net.mid.0.bias"]
    sd["mid.1.weight"], sd["mid.1.bias"] = init["net.mid.1.weight"], init["net.mid.1.bias"]
    sd["out.weight"], sd["out.bias"] = init[out_w].T, init["net.out.bias"]
    if not missing:
        for name in ("pitch", "age", "gate"):
            sd[f"keys.{name}"] = init[f"net.keys.{name}"]
    table = json.load(open(os.path.join(HERE, "instruments.json")))["instruments"]
    sd["embedding.weight"] = torch.tensor([r["embedding"] for r in table], dtype=torch.float32)
    net.load_state_dict(sd)
    # Read back right only if PyTorch now gives the committed fixture's controls (a fixture from
    # before the age input gets it at 0: the zero columns make it play no part).
    fixture = json.load(open(os.path.join(ROOT, "models", "tests", "data", "timbre_ref.json")))
    conds = torch.tensor(fixture["cond"]).view(-1, COND - 1 if missing else COND)
    if missing:
        conds = torch.cat([conds[:, :4], torch.zeros(len(conds), 1), conds[:, 4:]], dim=1)
    got = replay(Step(net).eval(), conds)
    worst = (got - torch.tensor(fixture["controls"]).view(got.shape)).abs().max().item()
    net.train()
    if worst > 1e-4:
        raise SystemExit(f"warm start: the ONNX weights read back differ from the fixture by {worst}")


def average_into(ema, net, decay):
    """ema's weights <- decay * ema's + (1 - decay) * net's (Polyak averaging over the steps)."""
    with torch.no_grad():
        for e, p in zip(ema.parameters(), net.parameters()):
            e.mul_(decay).add_(p.detach(), alpha=1.0 - decay)


def train(a):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rng = random.Random(0)
    train_set, val_set = load_split("train"), load_split("val")
    print(f"train {len(train_set)} lines, val {len(val_set)}, device {device}", flush=True)
    focus = dict(w.split("=") for w in a.weight)
    weights = [float(focus.get(INSTRUMENTS[e["instrument"]], 1.0)) for e in train_set] if focus else None
    check = RatioCheck(val_set) if a.select == "ratio" else None
    net = Decoder().to(device)
    # The table's rows are each read by few frames of a batch: they learn at TABLE_LR_SCALE times
    # the rate of the rest.
    table = list(net.keys.parameters())
    rest = [p for p in net.parameters() if all(p is not q for q in table)]
    opt = torch.optim.Adam([{"params": rest, "scale": 1.0}, {"params": table, "scale": a.table_lr_scale}], lr=LR)
    ema = None  # with --ema: the weights' running average, what is validated, kept and exported
    step, best, spent, warmed = 0, float("inf"), 0.0, False
    ckpt = os.path.join(WORK, "ckpt.pt")
    if a.resume and os.path.exists(ckpt):
        c = torch.load(ckpt, map_location=device, weights_only=False)  # our own checkpoint
        net.load_state_dict(c["net"])
        opt.load_state_dict(c["opt"])
        step, best, spent = c["step"], c["best"], c["minutes"]
        rng.setstate(c["rng"])
        if a.ema:
            ema = Decoder().to(device)
            ema.load_state_dict(c.get("ema", c["net"]))
        print(f"resumed at step {step}, {spent:.1f} min", flush=True)
    else:
        warmed = a.warm
        if a.warm:
            warm_from_onnx(net, os.path.join(HERE, "timbre.onnx"))
            print("warm start: the shipped timbre.onnx", flush=True)
        open(os.path.join(WORK, "curve.tsv"), "w").write("step\tminutes\ttrain_loss\tval_loss\n")
    if a.ema and ema is None:
        ema = copy.deepcopy(net)
    judged = ema if ema is not None else net  # the network validated, kept and exported
    if check and step == 0:  # what the start already scores: a checkpoint is kept only if better
        ratios = check.ratios(judged, device)
        best = float(ratios.max())
        print("ratios at the start " + " ".join(f"{n} {r:.3f}" for n, r in zip(INSTRUMENTS, ratios)), flush=True)
    t0, last_save, running = time.time(), time.time(), []
    while spent + (time.time() - t0) / 60 < a.minutes:
        minutes = spent + (time.time() - t0) / 60
        # Cosine decay to a tenth over the run; a warm start's fresh Adam ramps up over 200
        # steps first (its first steps move every weight by the full rate and undo the model).
        ramp = min(1.0, (step + 1) / 200) if warmed else 1.0
        for group in opt.param_groups:
            group["lr"] = group["scale"] * ramp * a.lr * (0.1 + 0.45 * (1 + np.cos(np.pi * min(1.0, minutes / a.minutes))))
        loss = loss_of(net, *batch(train_set, rng, device, weights=weights))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 2.0)
        opt.step()
        if ema is not None:
            average_into(ema, net, a.ema)
        running.append(loss.item())
        step += 1
        if step % 25 == 0:
            val = validation(judged, val_set, device)
            minutes = spent + (time.time() - t0) / 60
            with open(os.path.join(WORK, "curve.tsv"), "a") as f:
                f.write(f"{step}\t{minutes:.1f}\t{np.mean(running):.4f}\t{val:.4f}\n")
            print(f"step {step} {minutes:.1f} min train {np.mean(running):.4f} val {val:.4f}", flush=True)
            running = []
            if check and step % 250 == 0:
                ratios = check.ratios(judged, device)
                with open(os.path.join(WORK, "ratios.tsv"), "a") as f:
                    f.write(f"{step}\t{minutes:.1f}\t" + "\t".join(f"{r:.4f}" for r in ratios) + "\n")
                print("ratios " + " ".join(f"{n} {r:.3f}" for n, r in zip(INSTRUMENTS, ratios)), flush=True)
                val = float(ratios.max())
            if (check is None or step % 250 == 0) and val < best:
                best = val
                torch.save(judged.state_dict(), os.path.join(WORK, "best.pt"))
        if time.time() - last_save > 120:
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "step": step, "best": best,
                        "minutes": spent + (time.time() - t0) / 60, "rng": rng.getstate(),
                        **({"ema": ema.state_dict()} if ema is not None else {})}, ckpt)
            last_save = time.time()


def export(_a):
    net = Decoder()
    net.load_state_dict(torch.load(os.path.join(WORK, "best.pt"), map_location="cpu"))
    net.eval()
    step = Step(net)
    onnx_path = os.path.join(HERE, "timbre.onnx")
    torch.onnx.export(step, (torch.rand(COND), torch.zeros(HIDDEN)), onnx_path, input_names=["cond", "state_in"],
                      output_names=["controls", "state_out"], opset_version=17, dynamo=False)
    from make_data import INSTRUMENTS as RANGES  # the MIDI range each instrument was trained on

    table = net.embedding.weight.detach().numpy()
    rows = [{"name": n, "embedding": table[i].tolist(), "lowest": RANGES[n.replace("_gm6", "")][1],
             "highest": RANGES[n.replace("_gm6", "")][2]} for i, n in enumerate(INSTRUMENTS)]
    json.dump({"instruments": rows}, open(os.path.join(HERE, "instruments.json"), "w"), indent=1)
    # Fixture: 16 frames of conditioning and PyTorch's controls, for the Rust test that ONNX
    # Runtime gives the same (models/tests/timbre.rs).
    g = torch.Generator().manual_seed(7)
    conds = torch.rand(16, COND, generator=g)
    conds[:, 4] *= 4.0  # ages up to 4 s: the table's rows between and past its last
    # And the vibrato and age inputs on an f0 curve: 0.2 s of vibrato, a new note, silence, a
    # slide with an unvoiced frame in it.
    t = np.arange(50) * FRAME_S
    f0 = np.concatenate([392.0 * 2 ** (0.15 * np.sin(2 * np.pi * 6 * t) / 12), np.full(20, 440.0), np.zeros(5),
                         300.0 * 2 ** (np.linspace(0, 0.8, 25) / 12)])
    voiced = (f0 > 0).astype(np.float32)
    voiced[90] = 0.0
    fixture = {"cond": conds.numpy().ravel().tolist(), "controls": replay(step, conds).numpy().ravel().tolist(),
               "vibrato_f0_hz": f0.tolist(), "vibrato_voiced": voiced.tolist(),
               "expression": expression(f0, voiced).ravel().tolist()}
    json.dump(fixture, open(os.path.join(ROOT, "models", "tests", "data", "timbre_ref.json"), "w"))
    manifest = os.path.join(HERE, "manifest.toml")
    text = open(manifest).read()
    for name in ("timbre.onnx", "instruments.json"):
        digest = hashlib.sha256(open(os.path.join(HERE, name), "rb").read()).hexdigest()
        at = text.index(f'"{name}"')
        start = text.index('sha256 = "', at) + len('sha256 = "')
        text = text[:start] + digest + text[text.index('"', start):]
    for name, size in (("cond", COND), ("state_in", HIDDEN), ("state_out", HIDDEN)):
        text = re.sub(rf'(name = "{name}"\nshape = )\[\d+\]', rf"\g<1>[{size}]", text)
    open(manifest, "w").write(text)
    print(f"wrote {onnx_path} ({sum(p.numel() for p in net.parameters())} parameters); manifest sha256s updated")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--export", action="store_true")
    ap.add_argument("--lr", type=float, default=LR, help="the peak learning rate of the cosine decay")
    ap.add_argument("--warm", action="store_true", help="with no checkpoint, start from the shipped timbre.onnx")
    ap.add_argument("--weight", action="append", default=[], metavar="INSTRUMENT=W",
                    help="draw this instrument's training lines W times as often (repeatable)")
    ap.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                    help="validate, keep and export the weights' running average (for example 0.999 a step)")
    ap.add_argument("--select", choices=("loss", "ratio"), default="loss",
                    help="keep the checkpoint with the lowest validation loss, or the lowest worst ratio to the sawtooth")
    ap.add_argument("--table-lr-scale", type=float, default=20.0,
                    help="the key-age table's learning rate over the rest's")
    a = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    export(a) if a.export else train(a)
