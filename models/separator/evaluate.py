#!/usr/bin/env python3
"""Scores stem separation on the test split of make_data.py (pieces, drum patterns and
instruments never used in training or checkpoint choice), as Open-Unmix and Demucs report it:
BSSEval v4 SDR (museval, 1 s windows), the median over each track's windows, then the median
over tracks, per stem; also per SoundFont.

Three separators, through the real binary (`stagebox render --record-dir`, block 512):
  hpss       the DSP floor (node `hpss`)
  separate   the trained model (node `separate`; the floor where it has no model)
  oracle     the ideal ratio mask at the same STFT (1024 / 256, sqrt-Hann): the ceiling

    .cache/eval-venv/bin/python models/separator/evaluate.py [--limit N] [--out FILE.json] [--split testx]
"""
import argparse
import json
import os
import subprocess
import tempfile

import importlib.util

import numpy as np
import soundfile as sf
from scipy.signal import istft, stft

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, ".cache", "separator", "data")
BIN = os.environ.get("STAGEBOX_BIN", os.path.join(ROOT, "target", "release", "stagebox"))
STEMS = ["drums", "bass", "lead", "other"]
SR, N_FFT, HOP = 48000, 1024, 256

PATCH = """
[[node]]
id = "in"
type = "input"
channels = 1
[[node]]
id = "split"
type = "{kind}"
channels = 1
{recorders}
[[node]]
id = "mix"
type = "mixer"
inputs = 4
channels = 1
[[node]]
id = "out"
type = "output"
channels = 1
[[connect]]
from = "in"
to = "split"
{connects}
[[connect]]
from = "mix"
to = "out"
"""


def patch(kind):
    recs = "".join(f'[[node]]\nid = "{s}"\ntype = "recorder"\npath = "{s}.wav"\nchannels = 1\nformat = "float32"\n' for s in STEMS)
    cons = "".join(f'[[connect]]\nfrom = "split.{s}"\nto = "{s}"\n[[connect]]\nfrom = "split.{s}"\nto = "mix.in{k + 1}"\n' for k, s in enumerate(STEMS))
    return PATCH.format(kind=kind, recorders=recs, connects=cons)


def through_stagebox(kind, mix_path, work):
    p = os.path.join(work, f"{kind}.toml")
    open(p, "w").write(patch(kind))
    out = os.path.join(work, kind)
    subprocess.run([BIN, "render", "--patch", p, "--input", mix_path, "--output", os.path.join(work, f"{kind}-out.wav"),
                    "--record-dir", out], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return np.stack([sf.read(os.path.join(out, s + ".wav"), dtype="float32")[0] for s in STEMS])


WINDOW = np.sqrt(np.hanning(N_FFT + 1)[:-1])  # sqrt-Hann, periodic: the engine's STFT


def spectrum(x):
    """scipy's STFT at the engine's frame (scaled by 1 / sum(window)): [bins, frames]."""
    return stft(x, SR, window=WINDOW, nperseg=N_FFT, noverlap=N_FFT - HOP, boundary=None, padded=False)[2]


def masked(masks, spec, n):
    """Each mask [bins, frames] applied to `spec` and brought back to `n` samples: [stems, n]."""
    outs = [istft(mask * spec, SR, window=WINDOW, nperseg=N_FFT, noverlap=N_FFT - HOP, boundary=False)[1] for mask in masks]
    return np.stack([np.pad(o, (0, max(0, n - len(o))))[:n] for o in outs])


def load_example(folder, seconds=None):
    """An example's four stems (the first `seconds`), scaled so their sum stays under 0.99, and that sum."""
    stems = np.stack([sf.read(os.path.join(folder, s + ".wav"), dtype="float32")[0] for s in STEMS])
    if seconds is not None:
        stems = stems[:, : int(seconds * SR)]
    peak = np.abs(stems.sum(0)).max()
    if peak > 0.99:
        stems *= 0.99 / peak
    return stems, stems.sum(0)


def oracle(stems, mix):
    mags = np.stack([np.abs(spectrum(s)) for s in stems])
    return masked(mags / (mags.sum(0, keepdims=True) + 1e-10), spectrum(mix), len(mix))


def load_metrics():
    """museval's BSSEval v4 (`museval.metrics`), loaded alone: the package's __init__ pulls in
    musdb and stempeg, which want ffmpeg, which nothing here needs."""
    import site
    for d in site.getsitepackages():
        path = os.path.join(d, "museval", "metrics.py")
        if os.path.exists(path):
            spec = importlib.util.spec_from_file_location("museval_metrics", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod
    raise SystemExit("museval is not installed (scripts/eval/setup.sh, then pip install museval)")


METRICS = load_metrics()


def sdr(refs, ests):
    sdrs = METRICS.bss_eval(refs[..., None], ests[..., None], window=SR, hop=SR)[0]
    return [float(np.nanmedian(s)) for s in sdrs]


def scorable(stems):
    """Whether BSSEval can score these references: a part with no note in the excerpt (all
    zeros) it cannot."""
    return bool(np.all(np.abs(stems).max(axis=1) > 0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--out", default=os.path.join(ROOT, ".cache", "separator", "eval.json"))
    ap.add_argument("--only", default="hpss,separate,oracle", help="which separators to score")
    ap.add_argument("--split", default="test", help="test, or testx: make_data.py --test-variants' more renders")
    ap.add_argument("--gain-db", type=float, default=0.0,
                    help="the mixes (and their stems) this much louder: a quiet or hot input")
    a = ap.parse_args()
    kinds = a.only.split(",")
    root = os.path.join(DATA, a.split)
    tracks = sorted(d for d in os.listdir(root) if os.path.exists(os.path.join(root, d, "meta.json")))[: a.limit]
    rows, gain = [], 10 ** (a.gain_db / 20)
    for t in tracks:
        meta = json.load(open(os.path.join(root, t, "meta.json")))
        stems, mix = load_example(os.path.join(root, t))
        if not scorable(stems):
            print(t, "skipped: a stem is silent, which BSSEval cannot score", flush=True)
            continue
        stems, mix = stems * gain, mix * gain
        with tempfile.TemporaryDirectory() as work:
            mp = os.path.join(work, "mix.wav")
            sf.write(mp, mix, SR, subtype="FLOAT")
            row = {"track": t, "soundfont": meta["soundfont"], "style": meta["stems"]["drums"]["style"]}
            for kind in ("hpss", "separate"):
                if kind in kinds:
                    row[kind] = sdr(stems, through_stagebox(kind, mp, work))
            if "oracle" in kinds:
                row["oracle"] = sdr(stems, oracle(stems, mix))
        rows.append(row)
        print(t, {k: [round(x, 1) for x in row[k]] for k in kinds}, flush=True)
    report(rows, kinds)
    json.dump(rows, open(a.out, "w"), indent=1)


def report(rows, kinds):
    def table(subset, title):
        print(f"\n{title} ({len(subset)} tracks): median SDR in dB")
        print("| separator | " + " | ".join(STEMS) + " | mean |")
        print("|---|" + "---|" * (len(STEMS) + 1))
        for kind in kinds:
            med = [float(np.nanmedian([r[kind][k] for r in subset])) for k in range(len(STEMS))]
            print(f"| {kind} | " + " | ".join(f"{m:.2f}" for m in med) + f" | {np.mean(med):.2f} |")

    table(rows, "all test tracks")
    for sfont in sorted({r["soundfont"] for r in rows}):
        table([r for r in rows if r["soundfont"] == sfont], f"SoundFont {sfont}")


if __name__ == "__main__":
    main()
