#!/usr/bin/env python3
"""Trains Stagebox's streaming separator: a causal mask network over the STFT that the engine's
`separate` node runs once per frame, with its recurrent state passed in and out.

Model (mono, 48 kHz, STFT 1024 / hop 256, sqrt-Hann on both sides: the engine's
`spectral::Stft`): the frame's log magnitudes (513 bins), standardised by statistics of the
training data (with `--level`, v8 on: first scaled to a set level by the mix's running level).
Two paths add up to each stem's logits in each bin (and v7's long-window branch, below):
  global: Linear 513->H -> tanh -> GRU H x 2 layers -> Linear (H + H -> 4 x 513), H = 256 (v1: 160);
  local:  a causal convolution over the last 3 frames and 9 bins (12 channels, tanh), then one
          over 9 bins (12 -> 4): what a bin's neighbourhood looks like (a peak that holds is
          harmonic, a broadband step is a hit), which the global path's bottleneck cannot see;
          with `--local-depth N` (v10 tries), N residual convolutions over bins dilated 2, 4, 8...
          between the two, so that a bin sees its harmonics' neighbours an octave and more away.
  pitch:  with `--pitch` (v13 tries; pitch_branch.py), the long and short frames on a log-frequency
          grid stacked by harmonic, read by convolutions over the grid, their logits spread back
          onto the bins (starting at zero; `--freeze-base` trains it alone on a warm start).
A softmax over the four stems in each bin makes the masks sum to one, so the stems sum to the
input. The state passed in and out is one flat vector: the GRU's state (2 x H) and the last
two frames' standardised log magnitudes (2 x 513), then with `--level` the running level (2).
About 2.31 M parameters with the long-window branch (v6 1.97 M, v1 1.05 M).

Data: models/separator/make_data.py (its train split only; the validation split picks the
checkpoint). Each training example remixes stems across examples at random levels: a stem's
crop comes from its own example half of the time, from another the rest.

Loss: L1 between estimated and true stem magnitudes compressed by a power of 0.3, plus L1
between the complex spectra (normalised per example), both over all four stems.

    .cache/eval-venv/bin/python models/separator/train.py [--minutes M] [--resume] [--lr LR] [--hidden H]
        [--seg-frames F] [--batch B]   # sequences of F frames (128: 0.7 s), B a step
    .cache/eval-venv/bin/python models/separator/train.py --warm-onnx ...  # from the shipped model
    .cache/eval-venv/bin/python models/separator/train.py ... --select-sdr 400  # keep the best validation-mix SDR
    .cache/eval-venv/bin/python models/separator/train.py ... --snapshots  # each 2-min checkpoint's network kept
    .cache/eval-venv/bin/python models/separator/train.py --average MIN  # the mean of the last MIN minutes' snapshots
    .cache/eval-venv/bin/python models/separator/train.py --take-last  # the last checkpoint, not the best loss
    .cache/eval-venv/bin/python models/separator/train.py --export   # ONNX, fixture, manifest (onnx_io.py)
    .cache/eval-venv/bin/python models/separator/calibrate.py   # mask powers, on validation
    models/separator/retrain.sh [MINUTES]   # everything from nothing, then the evaluation

Resumable: a checkpoint every 2 minutes in WORK/ckpt.pt (`--resume` goes on from it); the best
on validation in WORK/best.pt (WORK: $SEPARATOR_WORK, default .cache/separator). A GPU is used
where one is present. The training curve goes to WORK/curve.tsv (step, minutes, train loss,
val loss).
"""
import argparse
import json
import os
import random
import time

import numpy as np
import torch
import torch.nn as nn
from scipy.io import wavfile

from pitch_branch import PitchBranch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, ".cache", "separator", "data")
WORK = os.environ.get("SEPARATOR_WORK", os.path.dirname(DATA))  # checkpoints, curve
SR, N_FFT, HOP = 48000, 1024, 256
BINS = N_FFT // 2 + 1
# The long window (v7): a 4096-sample Hann frame ending at the same sample as the short frame
# (no added latency), its lowest LONG_BINS bins (11.7 Hz apart, to 3 kHz) as a second input,
# where the short frame's bins (47 Hz apart) cannot tell a bass note from the harmony's.
LONG_FFT, LONG_BINS, LONG_HIDDEN = 4096, 256, 128
STEMS = ["drums", "bass", "lead", "other"]
HIDDEN = 256  # v2; v1 had 160
LOCAL = 12  # channels of the local path
HISTORY = 2  # past frames the local path sees (kept in the state)
SEG_FRAMES = 128  # about 0.7 s a training sequence
BATCH = 8
LR = 1e-3


# Level (v8 on, `--level`): the frames the network reads are scaled to LEVEL_TARGET by the mix's
# running level (an average of the frames' energy with a LEVEL_SECONDS time constant, corrected
# for its start from zero, kept in the state), the gain within LEVEL_GAINS. The masks apply to
# the mix as it is, so a quiet input separates as a loud one does: v6 on the validation mixes
# 20 dB down scored 2.25 dB against 4.86. The gain reaches 36 dB down (a full-scale mix is 14 dB
# over the target; v8 was trained with 12 dB, which the validation mixes at their own level do
# not reach: 12 dB hot they scored 4.93 with 12 dB and 5.018, as at their own level, with 36)
# and 30 dB up (no more, so that a quiet room's noise is not read as music).
LEVEL_TARGET, LEVEL_SECONDS, LEVEL_GAINS = 25.0, 3.0, (1.0 / 64.0, 32.0)


def state_size(hidden, level=False):
    return 2 * hidden + HISTORY * BINS + (2 if level else 0)


def level_gains(mag, level=None):
    """Each frame's gain (mag [b, t, bins] -> [b, t, 1]) and the level state after the last
    ([b, 2]: the running mean energy and its weight, both from zero). One frame at a time (the
    engine) or a whole sequence (training): the same recurrence, the latter in closed form."""
    a = float(np.exp(-HOP / (LEVEL_SECONDS * SR)))
    b, t, _ = mag.shape
    if level is None:
        level = torch.zeros(b, 2, device=mag.device)
    energy = mag.pow(2).sum(-1)  # [b, t]
    if t == 1:
        ms = a * level[:, :1] + (1 - a) * energy
        w = a * level[:, 1:] + (1 - a)
    else:  # ms_t = a^t (ms_0 + (1 - a) sum_k<=t a^-k e_k), in float64 (a^-t stays under 1e4 a chunk)
        outs, state = [], level.double()
        for chunk in energy.double().split(4096, dim=1):
            k = torch.arange(1, chunk.shape[1] + 1, device=mag.device, dtype=torch.float64)
            decay = a ** k
            ms = decay * (state[:, :1] + (1 - a) * torch.cumsum(chunk / decay, dim=1))
            w = decay * (state[:, 1:] + (1 - a) * torch.cumsum(1 / decay.expand_as(chunk), dim=1))
            outs.append((ms, w))
            state = torch.stack([ms[:, -1], w[:, -1]], dim=1)
        ms, w = (torch.cat(v, dim=1).float() for v in zip(*outs))
    gain = (LEVEL_TARGET / torch.sqrt(ms / w + 1e-6)).clamp(*LEVEL_GAINS)
    return gain.unsqueeze(-1), torch.stack([ms[:, -1], w[:, -1]], dim=1)


def window():
    return torch.hann_window(N_FFT, periodic=True).sqrt()


def long_window():
    return torch.hann_window(LONG_FFT, periodic=True)


def long_stft(x):
    """The long frames' low magnitudes, one per short frame: [.., frames, LONG_BINS]. A long
    frame ends where its short frame ends (the signal is zero before its start)."""
    padded = torch.nn.functional.pad(x, (LONG_FFT - N_FFT, 0))
    spec = torch.stft(padded, LONG_FFT, HOP, window=long_window().to(x.device), center=False, return_complex=True)
    return spec[..., :LONG_BINS, :].abs().transpose(-1, -2)


def scaled(net, example):
    """A batch's mix magnitudes and long frames as the network reads them (level-scaled where it
    is `--level`): what its input statistics are measured on."""
    mag, long = example[0].abs(), example[2]
    if net.level:
        gain = level_gains(mag)[0]
        mag, long = mag * gain, long * gain
    return mag, long


class Separator(nn.Module):
    def __init__(self, hidden=HIDDEN, long=True, level=False, local_depth=0, pitch=False):
        super().__init__()
        self.hidden = hidden
        self.long = long
        self.level = level
        if level:  # marks a network trained on level-scaled frames (load_best reads it)
            self.register_buffer("level_target", torch.tensor(LEVEL_TARGET))
        self.register_buffer("mean", torch.zeros(BINS))
        self.register_buffer("std", torch.ones(BINS))
        # Per-stem mask powers (calibrate.py; ones while training): each mask to its power p,
        # renormalised (p times the log-softmax, softmax again). Not in the checkpoints.
        self.register_buffer("power", torch.ones(len(STEMS)), persistent=False)
        self.inp = nn.Linear(BINS, hidden)
        self.gru = nn.GRU(hidden, hidden, num_layers=2, batch_first=True)
        self.out = nn.Linear(2 * hidden, len(STEMS) * BINS)
        self.local1 = nn.Conv2d(1, LOCAL, (HISTORY + 1, 9), padding=(0, 4))
        # v10 (`--local-depth N`): N residual convolutions over bins between them, dilated 2, 4,
        # 8..., each starting at zero (the path as it was): a bin then sees a harmonic's
        # neighbours an octave and more away, where 9 bins reach 190 Hz.
        self.localmid = nn.ModuleList(
            nn.Conv2d(LOCAL, LOCAL, (1, 9), padding=(0, 4 * 2 ** (k + 1)), dilation=(1, 2 ** (k + 1)))
            for k in range(local_depth))
        for conv in self.localmid:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.local2 = nn.Conv2d(LOCAL, len(STEMS), (1, 9), padding=(0, 4))
        nn.init.zeros_(self.local2.weight)  # starts as the global path alone (a warm start)
        nn.init.zeros_(self.local2.bias)
        if long:  # the long window's branch: into the GRU's input and straight to the logits
            self.register_buffer("long_mean", torch.zeros(LONG_BINS))
            self.register_buffer("long_std", torch.ones(LONG_BINS))
            self.long_a = nn.Linear(LONG_BINS, LONG_HIDDEN)
            self.long_inp = nn.Linear(LONG_HIDDEN, hidden)
            self.long_out = nn.Linear(LONG_HIDDEN, len(STEMS) * BINS)
            for layer in (self.long_inp, self.long_out):  # starts as the network without it
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        # The pitch branch (`--pitch`, v13 tries; pitch_branch.py): reads the long and short
        # frames on a log-frequency grid, stacked by harmonic; needs the long window.
        self.pitch = PitchBranch(SR, N_FFT, LONG_FFT, LONG_BINS, 2 * hidden, len(STEMS)) if pitch and long else None

    def standardise(self, mag):
        return (torch.log1p(mag) - self.mean) / self.std

    def forward(self, mag, state=None, history=None, long=None, level=None):
        """mag: [batch, frames, bins] magnitudes (and `long`: [batch, frames, LONG_BINS], the
        long frames' low magnitudes, where the network has the branch) -> masks [batch, frames,
        4, bins], GRU state, the last HISTORY standardised frames. `history` [batch, HISTORY,
        bins] (zeros if None). With `self.level`, also the level state in and out ([batch, 2])."""
        if self.level:
            gain, level = level_gains(mag, level)
            mag = mag * gain
            long = None if long is None else long * gain
        x = self.standardise(mag)
        b, t, _ = x.shape
        if history is None:
            history = torch.zeros(b, HISTORY, BINS, device=x.device)
        ctx = torch.cat([history, x], dim=1)
        local = torch.tanh(self.local1(ctx.unsqueeze(1)))
        for conv in self.localmid:
            local = local + torch.tanh(conv(local))
        local = self.local2(local)  # [b, 4, t, bins]
        pre = self.inp(x)
        if self.long:
            long_x = (torch.log1p(long) - self.long_mean) / self.long_std
            g = torch.tanh(self.long_a(long_x))
            pre = pre + self.long_inp(g)
        h = torch.tanh(pre)
        y, state = self.gru(h, state)
        hy = torch.cat([h, y], dim=-1)
        logits = self.out(hy).view(b, t, len(STEMS), BINS)
        logits = logits + local.permute(0, 2, 1, 3)
        if self.long:
            logits = logits + self.long_out(g).view(b, t, len(STEMS), BINS)
        if self.pitch is not None:
            logits = logits + self.pitch(x, long_x, hy)
        masks = torch.softmax(self.power.view(1, 1, -1, 1) * torch.log_softmax(logits, dim=2), dim=2)
        return masks, state, ctx[:, -HISTORY:], level


class Step(nn.Module):
    """One frame, the state explicit: what the engine runs (ONNX)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, mag, state_in, long=None):
        hidden, at = self.net.hidden, 2 * self.net.hidden + HISTORY * BINS
        gru = state_in[:2 * hidden].view(2, 1, hidden)
        history = state_in[2 * hidden:at].view(1, HISTORY, BINS)
        level = state_in[at:].view(1, 2) if self.net.level else None
        long = None if long is None else long.view(1, 1, LONG_BINS)
        masks, gru, history, level = self.net(mag.view(1, 1, BINS), gru, history, long, level)
        parts = [gru.reshape(-1), history.reshape(-1)] + ([level.reshape(-1)] if self.net.level else [])
        return masks.view(len(STEMS), BINS), torch.cat(parts)


class LongStep(nn.Module):
    """A Step whose inputs are in the engine's order: mag, mag_long, state_in."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def forward(self, mag, long, state_in):
        return self.step(mag, state_in, long)


def stft(x):
    return torch.stft(x, N_FFT, HOP, window=window().to(x.device), center=False, return_complex=True).transpose(-1, -2)


def wav_int16(path):
    """A 16-bit WAV's samples, mapped from the file rather than read (scipy's reader with
    `mmap`): the pages live in the OS's file cache, so two training runs on the same renders
    share one copy of them (the training set is about 14 GB)."""
    return wavfile.read(path, mmap=True)[1]


def load_split(split, variants=None):
    """Every example of a split that make_data.py finished (its meta.json written last); with
    `variants`, only the renders numbered under it (make_data.py --variants: 5 is v8's data)."""
    root = os.path.join(DATA, split)
    out = []
    for ident in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        folder = os.path.join(root, ident)
        meta = os.path.join(folder, "meta.json")
        if os.path.exists(meta) and (variants is None or json.load(open(meta))["variant"] < variants):
            out.append({s: wav_int16(os.path.join(folder, s + ".wav")) for s in STEMS})
    return out


EQ_HZ = np.array([60.0, 180.0, 500.0, 1200.0, 3000.0, 7000.0, 16000.0])  # --eq-db's control points


def random_eq(seg, rng, db):
    """`seg` through a smooth random equaliser: a gain drawn in +-`db` dB at each of EQ_HZ,
    interpolated over log frequency (flat beyond the ends): the same program with another
    spectral envelope, so the network learns stems by more than one sample's colour."""
    size = 1 << (len(seg) - 1).bit_length()
    spec = np.fft.rfft(seg, size)
    hz = np.fft.rfftfreq(size, 1.0 / SR)
    gains_db = np.array([rng.uniform(-db, db) for _ in EQ_HZ])
    curve = np.interp(np.log(np.maximum(hz, 1.0)), np.log(EQ_HZ), gains_db)
    return np.fft.irfft(spec * 10 ** (curve / 20), size)[:len(seg)].astype(np.float32)


def batch(examples, rng, device, frames=SEG_FRAMES, size=BATCH, eq_db=0.0):
    """`size` random remixes of `frames` STFT frames each: the mixture's STFT and the stems'
    (each stem through random_eq when `eq_db` > 0)."""
    n = (frames - 1) * HOP + N_FFT
    stems = np.zeros((size, len(STEMS), n), np.float32)
    for b in range(size):
        own = rng.choice(examples)
        for k, s in enumerate(STEMS):
            src = own if rng.random() < 0.5 else rng.choice(examples)
            x = src[s]
            start = rng.randrange(0, max(1, len(x) - n))
            seg = x[start:start + n].astype(np.float32) / 32768.0
            gain = 10 ** (rng.uniform(-10, 2) / 20)
            if eq_db > 0:
                seg = random_eq(seg, rng, eq_db)
            stems[b, k, :len(seg)] = seg * gain
    stems = torch.from_numpy(stems).to(device)
    mix = stems.sum(1)
    return stft(mix), stft(stems.view(-1, n)).view(size, len(STEMS), frames, BINS), long_stft(mix)


SDR_WEIGHT = 0.0  # --sdr-weight
SELECT_MIXES = 16  # --select-mixes
SELECT_SPLIT = "val"  # --select-split
STEM_WEIGHTS = None  # --stem-weights: [4] tensor, mean one, or None (all alike)


def sdr_db(est, target):
    """Each stem's SDR (dB) over each sequence, from the spectra (the sqrt-Hann STFT at a quarter
    hop is a tight frame: energies in it are the waveform's times a constant), and which of them
    count: a stem under -30 dB of its mix in that sequence has no SDR (museval skips silent
    references too)."""
    energy = target.abs().pow(2).sum(dim=(2, 3))
    error = (target - est).abs().pow(2).sum(dim=(2, 3))
    sdr = 10 * torch.log10((energy + 1e-8) / (error + 1e-8))
    return sdr, energy > 1e-3 * energy.sum(1, keepdim=True)


def loss_fn(net, mix, target, long):
    masks = net(mix.abs(), long=long)[0]
    est = masks.permute(0, 2, 1, 3) * mix.unsqueeze(1)
    mag = (est.abs() + 1e-8) ** 0.3 - (target.abs() + 1e-8) ** 0.3
    scale = target.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-4
    w = torch.ones(len(STEMS), device=mix.device) if STEM_WEIGHTS is None else STEM_WEIGHTS.to(mix.device)
    per_stem = mag.abs().mean(dim=(0, 2, 3)) + 0.5 * ((est - target).abs() / scale).mean(dim=(0, 2, 3))
    loss = (per_stem * w).mean()  # the same as the plain means when the weights are ones
    if SDR_WEIGHT > 0:  # minus the mean SDR over stems that sound, in tens of dB
        sdr, sounding = sdr_db(est, target)
        sounding = sounding * w
        loss = loss - SDR_WEIGHT * (sdr * sounding).sum() / sounding.sum().clamp(min=1) / 10
    return loss


def validation(net, examples, device, frames=SEG_FRAMES, size=BATCH):
    """The loss on six fixed batches of the validation split, with the run's sequence length
    (the state carried over a longer sequence is worth more; calibrate.py compares runs)."""
    rng = random.Random(1234)
    with torch.no_grad():
        losses = [loss_fn(net, *batch(examples, rng, device, frames, size)).item() for _ in range(6)]
    return float(np.mean(losses))


def train(a):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(a.threads or max(1, os.cpu_count() or 1))
    torch.manual_seed(0)
    rng = random.Random(0)
    train_set, val_set = load_split("train", a.variants), load_split("val")
    print(f"train {len(train_set)} examples, val {len(val_set)}, device {device}", flush=True)
    net = Separator(a.hidden, level=a.level, local_depth=a.local_depth, pitch=a.pitch).to(device)
    warm, ckpt = os.path.join(WORK, "warm.pt"), os.path.join(WORK, "ckpt.pt")
    resuming = a.resume and os.path.exists(ckpt)
    if not resuming and a.warm_onnx:
        from onnx_io import warm_from_onnx, widen_into

        widen_into(warm_from_onnx(os.path.join(HERE, "separator.onnx")), net)
    elif not resuming and os.path.exists(warm):
        missing = net.load_state_dict(torch.load(warm, map_location=device), strict=False).missing_keys
        print(f"warm start from {warm}; new: {missing}", flush=True)
    # The long window's branch (new in v7) and the pitch branch learn at --long-lr-scale times
    # the rate of the rest.
    if a.freeze_base and net.pitch is None:
        raise SystemExit("--freeze-base trains the pitch branch alone: it needs --pitch")
    if a.freeze_base:  # only the pitch branch learns: the rest stays the warm start's
        for n, p in net.named_parameters():
            p.requires_grad_(n.startswith("pitch."))
    branch = [p for n, p in net.named_parameters() if n.startswith(("long_", "pitch."))]
    rest = [p for n, p in net.named_parameters() if not n.startswith(("long_", "pitch."))]
    opt = torch.optim.Adam([{"params": rest, "scale": 1.0}, {"params": branch, "scale": a.long_lr_scale}], lr=a.lr)
    step, best, spent = 0, float("inf"), 0.0
    if resuming:
        c = torch.load(ckpt, map_location=device, weights_only=False)  # our own checkpoint
        net.load_state_dict(c["net"])
        opt.load_state_dict(c["opt"])
        step, best, spent = c["step"], c["best"], c["minutes"]
        rng.setstate(c["rng"])
        print(f"resumed at step {step}, {spent:.1f} min", flush=True)
    elif not os.path.exists(warm) and not a.warm_onnx:
        with torch.no_grad():
            mags = torch.cat([torch.log1p(scaled(net, batch(train_set, rng, device))[0]).reshape(-1, BINS) for _ in range(8)])
            net.mean.copy_(mags.mean(0))
            net.std.copy_(mags.std(0) + 1e-3)
    if not resuming and net.long and bool((net.long_std == 1).all()):  # a new branch's input statistics
        with torch.no_grad():
            longs = torch.cat([torch.log1p(scaled(net, batch(train_set, rng, device))[1]).reshape(-1, LONG_BINS) for _ in range(8)])
            net.long_mean.copy_(longs.mean(0))
            net.long_std.copy_(longs.std(0) + 1e-3)
    if not resuming and (a.warm_onnx or a.select_sdr):  # the start is the bar a checkpoint must beat
        best = -select_sdr(net, 0, 0.0) if a.select_sdr else validation(net, val_set, device, a.seg_frames, a.batch)
        torch.save(net.state_dict(), os.path.join(WORK, "best.pt"))
        print(f"start: val {best:.4f}", flush=True)
    if not resuming:
        open(os.path.join(WORK, "curve.tsv"), "w").write("step\tminutes\ttrain_loss\tval_loss\n")
    t0, last_save, last_load, running = time.time(), time.time(), time.time(), []
    while spent + (time.time() - t0) / 60 < a.minutes:
        minutes = spent + (time.time() - t0) / 60
        for group in opt.param_groups:  # cosine decay to a tenth over the run
            group["lr"] = group["scale"] * a.lr * (0.1 + 0.45 * (1 + np.cos(np.pi * min(1.0, minutes / a.minutes))))
        if a.reload_minutes and time.time() - last_load > 60 * a.reload_minutes:  # renders still being made
            train_set, last_load = load_split("train", a.variants), time.time()
            print(f"train {len(train_set)} examples", flush=True)
        loss = loss_fn(net, *batch(train_set, rng, device, a.seg_frames, a.batch, a.eq_db))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        running.append(loss.item())
        step += 1
        if step % 50 == 0:
            val = validation(net, val_set, device, a.seg_frames, a.batch)
            minutes = spent + (time.time() - t0) / 60
            with open(os.path.join(WORK, "curve.tsv"), "a") as f:
                f.write(f"{step}\t{minutes:.1f}\t{np.mean(running):.4f}\t{val:.4f}\n")
            print(f"step {step} {minutes:.1f} min train {np.mean(running):.4f} val {val:.4f}", flush=True)
            running = []
            if not a.select_sdr and val < best:
                best = val
                torch.save(net.state_dict(), os.path.join(WORK, "best.pt"))
        if a.select_sdr and step % a.select_sdr == 0:
            score = -select_sdr(net, step, spent + (time.time() - t0) / 60)
            if score < best:
                best = score
                torch.save(net.state_dict(), os.path.join(WORK, "best.pt"))
        if time.time() - last_save > 120:
            minutes = spent + (time.time() - t0) / 60
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "step": step, "best": best,
                        "minutes": minutes, "rng": rng.getstate()}, ckpt)
            if a.snapshots:  # the network alone, for --average
                os.makedirs(os.path.join(WORK, "snaps"), exist_ok=True)
                torch.save({"net": net.state_dict(), "step": step, "minutes": minutes},
                           os.path.join(WORK, "snaps", f"step_{step:06d}.pt"))
            last_save = time.time()


def select_sdr(net, step, minutes):
    """The mean over stems of the validation mixes' median SDR (calibrate.py's score: the first
    --select-mixes examples, 20 s each, museval), appended to WORK/sdr.tsv. v5 showed the validation loss
    (random remixes of 2.7 s crops) and this disagree; this is what evaluate.py reports."""
    import calibrate

    calibrate.SPLIT = SELECT_SPLIT
    medians = calibrate.score(net, SELECT_MIXES)
    mean = float(np.mean(medians))
    path = os.path.join(WORK, "sdr.tsv")
    if not os.path.exists(path):
        open(path, "w").write("step\tminutes\t" + "\t".join(STEMS) + "\tmean\n")
    with open(path, "a") as f:
        f.write(f"{step}\t{minutes:.1f}\t" + "\t".join(f"{v:.3f}" for v in medians) + f"\t{mean:.3f}\n")
    print(f"step {step}: validation mixes' SDR {[round(v, 2) for v in medians]}, mean {mean:.3f}", flush=True)
    return mean


def average(minutes_back):
    """The mean of the snapshots' weights (WORK/snaps, from --snapshots) over the run's last
    `minutes_back` minutes, as WORK/best.pt (the one calibrate.py and --export read): late in a
    run the weights wander around a point that scores better than any one of them."""
    snaps = [torch.load(os.path.join(WORK, "snaps", f), map_location="cpu", weights_only=False)  # our own
             for f in sorted(os.listdir(os.path.join(WORK, "snaps"))) if f.endswith(".pt")]
    end = max(c["minutes"] for c in snaps)
    chosen = [c["net"] for c in snaps if c["minutes"] >= end - minutes_back]
    mean = {k: sum(sd[k].double() for sd in chosen).div(len(chosen)).to(v.dtype) if v.is_floating_point() else v
            for k, v in chosen[-1].items()}
    torch.save(mean, os.path.join(WORK, "best.pt"))
    print(f"best.pt <- the mean of {len(chosen)} snapshots from minute {end - minutes_back:.1f} to {end:.1f}")


def take_last():
    """The last checkpoint's network as WORK/best.pt (the one calibrate.py and --export read): the
    validation loss in training (random remixes of 2.7 s crops) did not predict the validation
    mixes' SDR for v5, whose end of run scored 4.81 dB there against 4.48 for its start (v4),
    while its validation loss never went under the start's."""
    c = torch.load(os.path.join(WORK, "ckpt.pt"), map_location="cpu", weights_only=False)  # our own checkpoint
    torch.save(c["net"], os.path.join(WORK, "best.pt"))
    print(f"best.pt <- the checkpoint at step {c['step']} ({c['minutes']:.1f} min)")


def load_best(path=None):
    """The best checkpoint on validation (or the network saved at `path`: a best.pt, or a
    snapshot from --snapshots), at the GRU width it was trained at."""
    sd = torch.load(path or os.path.join(WORK, "best.pt"), map_location="cpu", weights_only=False)  # our own
    sd = sd.get("net", sd)  # a snapshot keeps the network under "net"
    depth = sum(1 for k in sd if k.startswith("localmid.") and k.endswith(".weight"))
    net = Separator(sd["inp.weight"].shape[0], long="long_mean" in sd, level="level_target" in sd, local_depth=depth,
                    pitch="pitch.out.weight" in sd)
    net.load_state_dict(sd)
    return net


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=45.0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--export", action="store_true")
    ap.add_argument("--warm-onnx", action="store_true", help="start from the shipped separator.onnx")
    ap.add_argument("--hidden", type=int, default=HIDDEN, help="GRU width (a warm start widens the shipped one)")
    ap.add_argument("--local-depth", type=int, default=0, help="residual dilated convolutions in the local path (v10)")
    ap.add_argument("--pitch", action="store_true", help="add the pitch branch (pitch_branch.py; v13 tries)")
    ap.add_argument("--freeze-base", action="store_true", help="train the pitch branch alone, the rest as warm-started")
    ap.add_argument("--reload-minutes", type=float, default=0.0, help="read the train split again this often (renders still running)")
    ap.add_argument("--variants", type=int, help="train on the renders numbered under this only (5: v8's data)")
    ap.add_argument("--lr", type=float, default=LR, help="peak learning rate (cosine decay to a tenth)")
    ap.add_argument("--seg-frames", type=int, default=SEG_FRAMES, help="frames a training sequence")
    ap.add_argument("--batch", type=int, default=BATCH, help="sequences a step")
    ap.add_argument("--sdr-weight", type=float, default=0.0, help="add minus the stems' mean SDR / 10 dB, this much")
    ap.add_argument("--level", action="store_true", help="the network reads frames scaled to a set level (v8 on)")
    ap.add_argument("--long-lr-scale", type=float, default=1.0, help="the long window's branch learns this much faster")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core)")
    ap.add_argument("--select-sdr", type=int, default=0, metavar="N",
                    help="every N steps score the validation mixes' SDR (calibrate.py) and keep the best by it")
    ap.add_argument("--select-mixes", type=int, default=16, metavar="N",
                    help="with --select-sdr: score the first N validation mixes (31 in all; 16 take about 80 s, and their lead median moves by a dB)")
    ap.add_argument("--select-split", default="val", choices=["val", "valx"],
                    help="--select-sdr scores these mixes (valx: validation instruments training never used)")
    ap.add_argument("--stem-weights", type=float, nargs=4, metavar=("DRUMS", "BASS", "LEAD", "OTHER"),
                    help="each stem's weight in the loss (scaled to mean one)")
    ap.add_argument("--eq-db", type=float, default=0.0,
                    help="each training stem through a random smooth equaliser of up to this many dB")
    ap.add_argument("--snapshots", action="store_true", help="keep each 2-minute checkpoint's network in WORK/snaps")
    ap.add_argument("--average", type=float, default=0.0, metavar="MIN",
                    help="make the mean of the snapshots of the run's last MIN minutes the one calibrate.py and --export use")
    ap.add_argument("--take-last", action="store_true", help="make the last checkpoint the one calibrate.py and --export use")
    a = ap.parse_args()
    SDR_WEIGHT = a.sdr_weight
    SELECT_MIXES = a.select_mixes
    SELECT_SPLIT = a.select_split
    if a.stem_weights:
        STEM_WEIGHTS = torch.tensor(a.stem_weights) * len(STEMS) / sum(a.stem_weights)
    os.makedirs(WORK, exist_ok=True)
    if a.take_last:
        take_last()
    elif a.average:
        average(a.average)
    elif a.export:
        from onnx_io import export

        export()
    else:
        train(a)
