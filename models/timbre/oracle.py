#!/usr/bin/env python3
"""How far the `timbre` node's synthesis could go, and how much of that a decoder could reach
from its inputs: on validation lines (never the test split), each instrument's spectral loss
(train.py's) over a sawtooth's for

- the decoder (a checkpoint, PyTorch's synthesis, the conditioning as the node reads it);
- the oracle: the same synthesis with free controls for every 4 ms frame (amplitude, 60
  harmonic weights, 65 noise bands), fitted by gradient descent to the real line itself: what
  the additive-plus-noise synthesis can sound like at best (it cannot match the noise draw);
- the oracle's controls smoothed over 9 frames (36 ms) and 37 frames (150 ms), in log: the
  part of the oracle's advantage that lies in fluctuations faster than that. A decoder that
  reads only f0, loudness, voicing and vibrato can follow these only where the inputs carry them;
- and how much the harmonics' balance moves faster than 150 ms, in the real line and the
  decoder's, and how closely that follows the vibrato input.

    .cache/eval-venv/bin/python models/timbre/oracle.py [CHECKPOINT] [--instruments violin,cello] [--lines 4]

(no CHECKPOINT: the shipped timbre.onnx, its weights read back into PyTorch)

Runs on one core (about a minute a line).
"""
import argparse
import os
import random
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as T  # noqa: E402

SEGMENT_FRAMES, FIT_STEPS, SEED = 500, 200, 5


def loss(x, y):
    with torch.no_grad():
        torch.manual_seed(SEED)  # the same noise draw for every candidate
        return T.spectral_loss(x, y).item()


def smoothed(log_controls, frames):
    """A moving average over `frames` frames of each control (log), the edges held."""
    x = F.pad(log_controls.transpose(1, 2), (frames // 2, frames // 2), mode="replicate")
    kernel = torch.ones(log_controls.shape[-1], 1, frames) / frames
    return F.conv1d(x, kernel, groups=log_controls.shape[-1]).transpose(1, 2)


def fit(controls, f0, audio):
    """Free per-frame controls from `controls`, fitted to `audio` (log domain, Adam)."""
    torch.manual_seed(SEED)  # the fit's own noise draws: a rerun fits the same
    log_c = torch.log(controls.clamp(min=1e-7)).clone().requires_grad_(True)
    opt = torch.optim.Adam([log_c], lr=0.05)
    for _ in range(FIT_STEPS):
        l = T.spectral_loss(T.synth(torch.exp(log_c), f0, audio.shape[1]), audio)
        opt.zero_grad()
        l.backward()
        opt.step()
    return log_c.detach()


def score_segment(net, e, rng):
    seg = T.segment(e, rng, SEGMENT_FRAMES)
    f0, audio = seg[0], seg[4]
    n = audio.shape[1]
    with torch.no_grad():
        controls, _ = net(T.cond_of(net, *seg[:4], seg[5]))
    log_c = fit(controls, f0, audio)
    play = lambda log: loss(T.synth(torch.exp(log), f0, n), audio)
    its_noise = torch.cat([log_c[..., :1 + T.HARMONICS], torch.log(controls[..., 1 + T.HARMONICS:].clamp(min=1e-7))], -1)
    return {"decoder": loss(T.synth(controls, f0, n), audio),
            "sawtooth": T.sawtooth_loss(seg),
            "oracle": play(log_c), "oracle, decoder's noise": play(its_noise),
            "oracle 36 ms": play(smoothed(log_c, 9)), "oracle 150 ms": play(smoothed(log_c, 37))}


def harmonic_levels(audio, f0, count=8, n=1024):
    """dB of harmonics 1..count at each frame (the strongest FFT bin within a quarter of f0)."""
    window, freqs = np.hanning(n), np.fft.rfftfreq(n, 1 / T.SR)
    out = np.full((len(f0), count), np.nan)
    for j, f in enumerate(f0):
        seg = audio[j * T.HOP - n // 2:j * T.HOP + n // 2] if j * T.HOP >= n // 2 else []
        if len(seg) < n or f < 50 or count * f > T.SR / 2 - f:
            continue
        mag = np.abs(np.fft.rfft(seg * window))
        out[j] = [20 * np.log10(mag[np.abs(freqs - k * f) < max(f / 4, 16)].max() + 1e-9) for k in range(1, count + 1)]
    return out


def fluctuation(net, e):
    """How much the harmonics' balance moves faster than 150 ms (each harmonic relative to the
    frame's strongest, minus its 150 ms moving average; standard deviation, dB) in the real line
    and the decoder's, and how closely it follows the vibrato input (mean |r| over harmonics)."""
    t = lambda v: torch.tensor(np.asarray(v, dtype=np.float32))[None]
    with torch.no_grad():
        controls, _ = net(T.cond_of(net, t(e["f0"]), t(e["expr"]), t(e["loud"]), t(e["voiced"]), torch.tensor([e["instrument"]])))
        torch.manual_seed(SEED)
        played = T.synth(controls, t(e["f0"]), len(e["audio"]))[0].numpy()
    real, dec = harmonic_levels(e["audio"], e["f0"]), harmonic_levels(played, e["f0"])
    ok = (e["voiced"] > 0.5) & ~np.isnan(real).any(1) & ~np.isnan(dec).any(1)
    def fast(h):
        h = h[ok] - h[ok].max(1, keepdims=True)
        return h - np.stack([np.convolve(c, np.ones(37) / 37, mode="same") for c in h.T], 1)
    fr, fd = fast(real), fast(dec)
    r = np.nanmean([abs(np.corrcoef(fr[:, k], e["expr"][ok, 0])[0, 1]) for k in range(fr.shape[1])])
    return fr.std(0).mean(), fd.std(0).mean(), r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", nargs="?", help="a train.py checkpoint (default: the shipped timbre.onnx)")
    ap.add_argument("--instruments", default="violin,cello")
    ap.add_argument("--lines", type=int, default=4)
    a = ap.parse_args()
    torch.set_num_threads(1)
    net = T.Decoder()
    if a.checkpoint:
        net.load_state_dict(torch.load(a.checkpoint, map_location="cpu"))
    else:
        T.warm_from_onnx(net, os.path.join(T.HERE, "timbre.onnx"))
    net.eval()
    val = T.load_split("val")
    names = a.instruments.split(",")
    cols = ["decoder", "sawtooth", "oracle", "oracle, decoder's noise", "oracle 36 ms", "oracle 150 ms"]
    print("| instrument | lines | " + " | ".join(cols) + " |")
    print("|---|---:|" + "---:|" * len(cols))
    for name in names:
        lines = [e for e in val if T.INSTRUMENTS[e["instrument"]] == name][:a.lines]
        rng = random.Random(1)
        rows = [score_segment(net, e, rng) for e in lines]
        mean = {k: np.mean([r[k] for r in rows]) for k in cols}
        cells = [f"{v:.2f} ({v / mean['sawtooth']:.2f})" for v in mean.values()]
        print(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |", flush=True)
    print("\n| instrument | lines | harmonics' fast movement, real (dB) | decoder's (dB) | mean abs r with the vibrato input |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        lines = [e for e in val if T.INSTRUMENTS[e["instrument"]] == name][:2 * a.lines]
        m = np.mean([fluctuation(net, e) for e in lines], 0)
        print(f"| {name} | {len(lines)} | {m[0]:.1f} | {m[1]:.1f} | {m[2]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
