#!/usr/bin/env python3
"""Where an instrument's spectral loss lies, on its validation lines: the shipped decoder
(timbre.onnx read back into PyTorch, train.py's synthesis, one noise draw) beside the sawtooth.

- By how long the note has sounded (train.py's `note_age_s`; frames quieter than -70 dB left
  out): the frames, the decoder's share of its loss, and its ratio to the sawtooth there.
- By where in the spectrum, for each of the loss's FFT sizes: the linear-magnitude term, and the
  log-magnitude term in the bins within a quarter of f0 of a harmonic and in the bins between.
  Beside them, between the harmonics, what the decoder scores against itself played with another
  noise draw: the part no choice of noise bands removes (two draws of the same noise differ by
  about 0.69 nepers a bin in log magnitude).

Sums over the lines' frames and bins, divided by the bins in each STFT (the loss's means, summed
over lines).

    .cache/eval-venv/bin/python models/timbre/loss_parts.py violin [cello ...]
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as T  # noqa: E402

AGE_EDGES_S = (0.0, 0.05, 0.15, 0.4, 1.0)


def play(net, e, seed):
    t = lambda v: torch.tensor(np.asarray(v, np.float32))[None]
    with torch.no_grad():
        controls, _ = net(T.cond_of(net, t(e["f0"]), t(e["expr"]), t(e["loud"]), t(e["voiced"]),
                                    torch.tensor([e["instrument"]])))
        torch.manual_seed(seed)
        return T.synth(controls, t(e["f0"]), len(e["audio"]))


def magnitudes(x, n, hop):
    return torch.stft(x, n, hop, window=torch.hann_window(n), return_complex=True).abs()[0]


def log_error(a, b):
    return (torch.log(a + 1e-5) - torch.log(b + 1e-5)).abs()


def harmonic_bins(f0, n, frames):
    """[bins, frames]: whether a bin lies within a quarter of f0 of a harmonic (f0 per STFT frame)."""
    freqs = torch.fft.rfftfreq(n, 1 / T.SR)[:, None]
    at = np.clip(np.arange(frames) * (n // 4) // T.HOP, 0, len(f0) - 1)
    f = torch.tensor(f0[at], dtype=torch.float32)[None]
    k = torch.round(freqs / f.clamp(min=20.0))
    return ((freqs - k * f).abs() < f / 4) & (k >= 1) & (f > 20.0)


def by_age(rows):
    """rows: (age_s, voiced, loud_db, decoder loss, sawtooth loss) per frame."""
    age, voiced, loud, dec, saw = (np.concatenate(c) for c in zip(*rows))
    keep = loud > -70.0
    bucket = np.where(voiced > 0.5, np.searchsorted(AGE_EDGES_S, age, side="right") - 1, len(AGE_EDGES_S))
    names = [f"{lo * 1000:.0f}-{hi * 1000:.0f} ms" for lo, hi in zip(AGE_EDGES_S, AGE_EDGES_S[1:])]
    names += [f"over {AGE_EDGES_S[-1] * 1000:.0f} ms", "unvoiced"]
    print("| note age | frames | share of the decoder's loss | ratio to the sawtooth |")
    print("|---|---:|---:|---:|")
    for b, name in enumerate(names):
        m = keep & (bucket == b)
        print(f"| {name} | {m.sum()} | {dec[m].sum() / dec[keep].sum():.2f} | {dec[m].sum() / saw[m].sum():.3f} |")


def frame_losses(real, dec, saw):
    """Each 4 ms frame's loss (FFT 256, hop 64: L1 of magnitudes plus of log magnitudes)."""
    r, d, s = (magnitudes(x, 256, T.HOP) for x in (real, dec, saw))
    return [((x - r).abs().mean(0) + log_error(x, r).mean(0)).numpy() for x in (d, s)]


def main():
    net = T.Decoder()
    T.warm_from_onnx(net, os.path.join(T.HERE, "timbre.onnx"))
    net.eval()
    val = T.load_split("val")
    for instrument in sys.argv[1:] or ["violin"]:
        lines = [e for e in val if T.INSTRUMENTS[e["instrument"]] == instrument]
        parts, rows = {}, []
        for e in lines:
            real = torch.tensor(e["audio"])[None]
            dec, again = play(net, e, 0), play(net, e, 1)
            saw = torch.tensor(T.sawtooth(e["f0"], e["audio"]))[None]
            d, s = frame_losses(real, dec, saw)
            m = min(len(d), len(e["f0"]))
            rows.append((T.note_age_s(e["f0"], e["voiced"])[:m], e["voiced"][:m], e["loud"][:m], d[:m], s[:m]))
            for n in T.FFTS:
                r, mags = magnitudes(real, n, n // 4), {k: magnitudes(x, n, n // 4) for k, x in
                                                         (("decoder", dec), ("sawtooth", saw), ("again", again))}
                harm = harmonic_bins(e["f0"], n, r.shape[1])
                bins = r.numel()
                for k in ("decoder", "sawtooth"):
                    err = log_error(mags[k], r)
                    for part, v in (("linear", (mags[k] - r).abs().sum()), ("log, harmonics", err[harm].sum()),
                                    ("log, between", err[~harm].sum())):
                        parts[k, n, part] = parts.get((k, n, part), 0.0) + v.item() / bins
                floor = log_error(mags["again"], mags["decoder"])[~harm].sum().item() / bins
                parts["again", n] = parts.get(("again", n), 0.0) + floor
        print(f"\n{instrument}: {len(lines)} validation lines\n")
        by_age(rows)
        print("\n| FFT | linear: decoder / sawtooth | log, harmonics' bins | log, between | between: decoder against itself |")
        print("|---:|---:|---:|---:|---:|")
        for n in T.FFTS:
            cells = [f"{parts['decoder', n, p]:.2f} / {parts['sawtooth', n, p]:.2f}"
                     for p in ("linear", "log, harmonics", "log, between")]
            print(f"| {n} | " + " | ".join(cells) + f" | {parts['again', n]:.2f} |")
        total = lambda k, p: sum(parts[k, n, p] for n in T.FFTS)
        cells = [f"{total('decoder', p):.2f} / {total('sawtooth', p):.2f}" for p in ("linear", "log, harmonics", "log, between")]
        print("| all | " + " | ".join(cells) + f" | {sum(parts['again', n] for n in T.FFTS):.2f} |")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
