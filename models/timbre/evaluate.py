#!/usr/bin/env python3
"""Scores the `timbre` node on the test split of make_data.py (lines from pieces never used in
training or checkpoint choice), through the real binary:

- spectral loss: each test line's conditioning (the engine's `features` node on the line's
  audio) plays the node with the line's own instrument (`stagebox render`, block 512); the
  multi-scale spectral loss of train.py between the node's output (at 16 kHz) and the real
  instrument's rendering of the same line, beside a band-limited sawtooth at the same f0 whose
  level follows the real rendering frame by frame (a generous baseline); per instrument and
  SoundFont. The output is set against the line delayed by the conditioning's own lag
  (train.CONDITIONING_LAG_SAMPLES, 9 ms: the issue counts the node's latency beyond it, and the
  latency below measures that); the score with no such delay is reported beside it;
- f0: the node's output tracked by the `features` node, against the conditioning f0, in cents,
  over frames both call voiced (median, p90);
- control-to-sound latency: a sine stepping from 220 to 262 Hz (three semitones); the time the
  output's pitch crosses the midpoint minus the time the conditioning's does;
- real-time factor per voice: an offline render of 60 s of four held MIDI voices (the audio
  thread's and the worker's time together, as the render waits for every frame), over 4.

    .cache/eval-venv/bin/python models/timbre/evaluate.py [--limit N] [--out FILE.json] [--split val]
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train as T  # noqa: E402  (the loss, the instruments)
from make_data import BIN, FEATURES_PATCH, FRAME  # noqa: E402

PATCH = """
[[node]]
id = "in"
type = "input"
channels = 1
[[node]]
id = "feat"
type = "features"
min_hz = 50.0
max_hz = 2000.0
[[node]]
id = "voice"
type = "timbre"
instrument = "{instrument}"
voices = {voices}
[[node]]
id = "keys"
type = "midi_in"
[[node]]
id = "out"
type = "output"
channels = 1
[[connect]]
from = "in"
to = "feat"
[[connect]]
from = "feat.f0"
to = "voice.f0"
[[connect]]
from = "feat.loudness"
to = "voice.loudness"
[[connect]]
from = "feat.voiced"
to = "voice.voiced"
[[connect]]
from = "keys.midi"
to = "voice.midi"
[[connect]]
from = "voice"
to = "out"
"""


def run(args):
    subprocess.run([BIN, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def render(work, instrument, wav, voices=0, extra=()):
    patch = os.path.join(work, f"timbre-{instrument}.toml")
    open(patch, "w").write(PATCH.format(instrument=instrument, voices=voices))
    out = os.path.join(work, "out.wav")
    run(["render", "--patch", patch, "--output", out, "--sample-rate", "48000", *(["--input", wav] if wav else []), *extra])
    return sf.read(out, dtype="float32")[0]


def features(work, audio48):
    """f0 and voiced every 4 ms by the engine's `features` node."""
    wav = os.path.join(work, "feat_in.wav")
    sf.write(wav, audio48, 48000, subtype="FLOAT")
    open(os.path.join(work, "features.toml"), "w").write(FEATURES_PATCH)
    rec = os.path.join(work, "rec")
    run(["render", "--patch", os.path.join(work, "features.toml"), "--input", wav, "--output",
         os.path.join(work, "o.wav"), "--record-dir", rec])
    f0 = sf.read(os.path.join(rec, "f0.wav"), dtype="float32")[0][FRAME - 1::FRAME]
    voiced = sf.read(os.path.join(rec, "voiced.wav"), dtype="float32")[0][FRAME - 1::FRAME]
    return f0, voiced


def loss(a, b):
    n = min(len(a), len(b))
    with torch.no_grad():
        return T.spectral_loss(torch.tensor(a[None, :n]), torch.tensor(b[None, :n])).item()


def score_line(path, work):
    d = np.load(path)
    instrument = os.path.basename(path)[:-4].split("-", 1)[1]
    real16 = d["audio"]
    wav = os.path.join(work, "line.wav")
    sf.write(wav, real16, 16000, subtype="FLOAT")
    out48 = render(work, instrument, wav)
    out16 = resample_poly(out48, 1, 3).astype(np.float32)
    in_f0, in_voiced = features(work, resample_poly(real16, 3, 1).astype(np.float32))
    out_f0, out_voiced = features(work, out48)
    n = min(len(in_f0), len(out_f0))
    both = (in_voiced[:n] > 0.5) & (out_voiced[:n] > 0.5)
    cents = np.abs(1200 * np.log2(out_f0[:n][both] / in_f0[:n][both])) if both.any() else np.array([np.nan])
    lag = T.CONDITIONING_LAG_SAMPLES
    return {"file": os.path.basename(path), "instrument": instrument, "loss": loss(out16[lag:], real16[:len(real16) - lag]),
            "loss_unaligned": loss(out16, real16), "saw": loss(T.sawtooth(d["f0_hz"], real16), real16),
            "cents": cents.tolist()}


def latency(work):
    """A sine stepping from 220 to 262 Hz (three semitones) at 1 s. The conditioning's step:
    where the f0 curve the timbre node reads (recorded from `features`) crosses the midpoint;
    the sound's: where the output's instantaneous frequency crosses it (its fundamental alone:
    band 180-300 Hz, which leaves out the second harmonics at 440 and 524 Hz, zero-phase
    filtered, analytic signal, 2 ms median), in engine time (the render removed the declared
    latency; it is added back)."""
    from scipy.signal import butter, hilbert, medfilt, sosfiltfilt

    sr, lo, hi = 48000, 220.0, 262.0
    t = np.arange(2 * sr) / sr
    f = np.where(t < 1.0, lo, hi)
    x = (0.3 * np.sin(2 * np.pi * np.cumsum(f) / sr)).astype(np.float32)
    wav = os.path.join(work, "step.wav")
    sf.write(wav, x, sr, subtype="FLOAT")
    patch = os.path.join(work, "step.toml")
    rec = '\n[[node]]\nid = "cond"\ntype = "recorder"\nchannels = 1\nformat = "float32"\npath = "cond.wav"\n'
    rec += '[[connect]]\nfrom = "feat.f0"\nto = "cond"\n'
    open(patch, "w").write(PATCH.format(instrument="violin", voices=0) + rec)
    out_wav, takes = os.path.join(work, "step_out.wav"), os.path.join(work, "takes")
    run(["render", "--patch", patch, "--input", wav, "--output", out_wav, "--record-dir", takes])
    out = sf.read(out_wav, dtype="float32")[0]
    cond = sf.read(os.path.join(takes, "cond.wav"), dtype="float32")[0]
    mid = np.sqrt(lo * hi)
    start = int(0.9 * sr)
    t_cond = (start + np.argmax(cond[start:] > mid)) / sr
    band = sosfiltfilt(butter(8, [180, 300], btype="band", fs=sr, output="sos"), out)
    inst = medfilt(np.diff(np.unwrap(np.angle(hilbert(band)))) * sr / (2 * np.pi), 97)
    declared = 2 * FRAME / sr
    t_sound = (start + np.argmax(inst[start:] > mid)) / sr + declared
    return {"conditioning_step_s": t_cond, "sound_step_s": t_sound, "declared_ms": 1000 * declared,
            "beyond_conditioning_ms": 1000 * (t_sound - t_cond)}


def rtf_per_voice(work):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    ins = pretty_midi.Instrument(0)
    for k, p in enumerate([48, 55, 60, 64]):
        ins.notes.append(pretty_midi.Note(velocity=100, pitch=p, start=0.01 * k, end=60.0))
    pm.instruments.append(ins)
    mid = os.path.join(work, "chord.mid")
    pm.write(mid)
    t0 = time.time()
    render(work, "cello", None, voices=4, extra=["--midi-in", mid])
    return (time.time() - t0) / 60.0 / 4


def summary(rows):
    out = {}
    for ins in sorted({r["instrument"] for r in rows}):
        rs = [r for r in rows if r["instrument"] == ins]
        cents = np.concatenate([np.array(r["cents"]) for r in rs])
        cents = cents[np.isfinite(cents)]
        out[ins] = {"lines": len(rs), "loss": float(np.mean([r["loss"] for r in rs])),
                    "loss_unaligned": float(np.mean([r["loss_unaligned"] for r in rs])),
                    "saw": float(np.mean([r["saw"] for r in rs])),
                    "cents_median": float(np.median(cents)) if len(cents) else None,
                    "cents_p90": float(np.percentile(cents, 90)) if len(cents) else None}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--split", default="test", help="test (the reported numbers) or val (for choices)")
    ap.add_argument("--out", default=os.path.join(T.WORK, "eval.json"))
    a = ap.parse_args()
    paths = sorted(glob.glob(os.path.join(T.DATA, a.split, "*.npz")))
    paths = paths[:a.limit] if a.limit else paths
    with tempfile.TemporaryDirectory() as work:
        rows = [score_line(p, work) for p in paths]
        result = {"per_instrument": summary(rows), "latency": latency(work), "rtf_per_voice": rtf_per_voice(work)}
    print(f"| instrument | {a.split} lines | spectral loss | sawtooth | ratio | ratio, not aligned | f0 error median (cents) | p90 (cents) |")
    print("|---|---|---|---|---|---|---|---|")
    for ins, s in result["per_instrument"].items():
        print(f"| {ins} | {s['lines']} | {s['loss']:.2f} | {s['saw']:.2f} | {s['loss'] / s['saw']:.3f} | "
              f"{s['loss_unaligned'] / s['saw']:.3f} | {s['cents_median']:.1f} | {s['cents_p90']:.1f} |")
    lag_ms = 1000 * (result["latency"]["conditioning_step_s"] - 1.0)
    print(f"the conditioning's own lag on the step: {lag_ms:.1f} ms (the scores compare the node's output "
          f"with the line {1000 * T.CONDITIONING_LAG_SAMPLES / T.SR:.1f} ms later)")
    print(f"latency: {result['latency']}")
    print(f"real-time factor per voice: {result['rtf_per_voice']:.4f}")
    json.dump({**result, "rows": rows}, open(a.out, "w"))


if __name__ == "__main__":
    main()
