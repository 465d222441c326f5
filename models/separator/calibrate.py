#!/usr/bin/env python3
"""Chooses the separator's per-stem mask powers on the validation split (never the test split).

The network is trained on a compressed-magnitude loss, which makes its masks surer than what
scores best as SDR (BSSEval v4, museval: what evaluate.py reports). A mask raised to a power p
and renormalised, m_j^p_j / sum_k m_k^p_k: p < 1 softens a stem's mask (more of the bins it
is unsure of), p > 1 sharpens it. The masks still sum to one,
so the stems still sum to the input. The chosen powers go to calibration.json beside this file;
train.py --export folds them into the ONNX model (a multiply and a second softmax).

For each validation example (its first 20 s), the trained network's masks are computed once
(whole-sequence forward: the same as frame by frame, the network is causal), then each
candidate set of powers is applied and scored; the set with the best mean over the four stems
of the median SDR over examples wins (ties: the first, i.e. the plainest).

    .cache/eval-venv/bin/python models/separator/calibrate.py [--limit N]
    .cache/eval-venv/bin/python models/separator/calibrate.py --score --limit 31 --scale 1 0.1 \
        --checkpoint WORK/best.pt WORK/snaps/step_002400.pt   # candidates, at two input levels
        [--split valx]   # the validation pieces played by instruments training never used
        [--per-mix F.json]   # and every mix's SDRs, to compare candidates mix by mix
"""
import argparse
import json
import os

import numpy as np
import torch

import evaluate as ev
import train as T

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "calibration.json")
# drums, bass, lead, other. The first is the network as trained.
CANDIDATES = [
    [1.0, 1.0, 1.0, 1.0],
    [1.0, 0.7, 0.7, 0.7],
    [1.0, 0.55, 0.55, 0.55],
    [0.85, 0.7, 0.6, 0.5],
    [1.0, 0.7, 0.55, 0.4],
]
SECONDS = 20
SPLIT = "val"  # --split: "valx" plays the validation pieces with instruments training never used


def masks_of(net, mix, scale=1.0, level_target=0.0):
    """The network's masks for a mono mix: [4, bins, frames], and the mix's scipy STFT. The
    network reads the mix times `scale` (the masks apply to the mix as it is); `level_target`
    (> 0) scales its frames by train.py's `level_gains` to that level first."""
    x = ev.spectrum(mix)
    mag = np.abs(x) * ev.WINDOW.sum() * scale  # scipy scales by 1/sum(window); the network saw torch's unscaled STFT
    with torch.no_grad():
        mag = torch.from_numpy(mag.T.astype(np.float32))[None]
        long = T.long_stft(torch.from_numpy(mix.astype(np.float32)) * scale)[None] if net.long else None
        if level_target > 0:
            gain = T.level_gains(mag)[0] * level_target / T.LEVEL_TARGET
            mag, long = mag * gain, None if long is None else long * gain
        m = net(mag, long=long)[0]
    return m[0].numpy().transpose(1, 2, 0), x


def with_powers(powers, masks):
    """Each stem's mask to its power, renormalised so the masks still sum to one."""
    m = masks ** np.array(powers)[:, None, None]
    return m / m.sum(0, keepdims=True)


def validation_tracks(limit):
    """The first `limit` finished validation examples of SPLIT (sorted by id: the same every run)."""
    root = os.path.join(T.DATA, SPLIT)
    names = sorted(d for d in os.listdir(root) if os.path.exists(os.path.join(root, d, "meta.json")))[:limit]
    return [os.path.join(root, d) for d in names]


def per_mix(net, limit=16, scale=1.0, level_target=0.0):
    """The network as it is (no powers) on the first `limit` validation mixes: each mix's four
    stems' SDR (dB, museval; [mixes, 4])."""
    was_training = net.training
    net.eval()
    sdrs = []
    for folder in validation_tracks(limit):
        stems, mix = ev.load_example(folder, SECONDS)
        if not ev.scorable(stems):  # a part with no note
            sdrs.append([np.nan] * len(T.STEMS))
            continue
        masks, x = masks_of(net, mix, scale, level_target)
        sdrs.append(ev.sdr(stems, ev.masked(masks, x, len(mix))))
    net.train(was_training)
    return np.array(sdrs, dtype=float)


def score(net, limit=16, scale=1.0, level_target=0.0):
    """The median over the validation mixes of each stem's SDR, as main() scores its first
    candidate. train.py --select-sdr keeps the checkpoint that scores best here."""
    return [float(v) for v in np.nanmedian(per_mix(net, limit, scale, level_target), axis=0)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--out", default=OUT, help="where the chosen powers go (export reads calibration.json)")
    ap.add_argument("--score", action="store_true", help="only score the network as it is (no powers chosen)")
    ap.add_argument("--scale", type=float, nargs="+", default=[1.0],
                    help="with --score: the network reads the mix this much louder (each given, in turn)")
    ap.add_argument("--checkpoint", nargs="+", help="with --score: these saved networks (default WORK/best.pt)")
    ap.add_argument("--level-target", type=float, default=0.0,
                    help="with --score: its frames scaled to this level by train.py's level_gains first")
    ap.add_argument("--per-mix", metavar="JSON",
                    help="with --score: every mix's SDRs, by checkpoint and scale, written here (to compare mix by mix)")
    ap.add_argument("--split", default="val", choices=["val", "valx"],
                    help="val: validation pieces, training's instruments; valx: validation instruments too")
    ap.add_argument("--candidates", help="the sets of powers to try, as JSON (the first should be ones)")
    a = ap.parse_args()
    global SPLIT
    SPLIT = a.split
    candidates = json.loads(a.candidates) if a.candidates else CANDIDATES
    torch.set_num_threads(1)
    if a.score:
        rows = {}
        for path in a.checkpoint or [None]:
            net = T.load_best(path)
            for scale in a.scale:
                sdrs = per_mix(net, a.limit, scale, a.level_target)
                med = np.nanmedian(sdrs, axis=0)
                print(f"{path or 'best.pt'} x{scale}: median SDR {[round(float(v), 3) for v in med]}, mean "
                      f"{med.mean():.3f}; mean over mixes {[round(float(v), 3) for v in np.nanmean(sdrs, axis=0)]}, "
                      f"{np.nanmean(sdrs):.3f}", flush=True)
                rows[f"{path or 'best.pt'} x{scale}"] = sdrs.tolist()
                if a.per_mix:  # after each, so a stopped run keeps what it scored
                    json.dump(rows, open(a.per_mix, "w"))
        return
    net = T.load_best()
    net.eval()
    tracks = validation_tracks(a.limit)
    scores = [[] for _ in candidates]
    for t in tracks:
        stems, mix = ev.load_example(t, SECONDS)
        if not ev.scorable(stems):  # a part with no note
            continue
        masks, x = masks_of(net, mix)
        for k, powers in enumerate(candidates):
            scores[k].append(ev.sdr(stems, ev.masked(with_powers(powers, masks), x, len(mix))))
        print(os.path.basename(t), [[round(v, 1) for v in s[-1]] for s in scores], flush=True)
    medians = [np.nanmedian(np.array(s), axis=0) for s in scores]
    for powers, med in zip(candidates, medians):
        print(f"powers {powers}: median SDR {[round(float(v), 2) for v in med]}, mean {np.mean(med):.3f}")
    best = int(np.argmax([np.mean(m) for m in medians]))
    result = {"stems": T.STEMS, "powers": candidates[best], "validation_tracks": len(tracks),
              "validation_median_sdr_db": [round(float(v), 3) for v in medians[best]],
              "as_trained_median_sdr_db": [round(float(v), 3) for v in medians[0]]}
    json.dump(result, open(a.out, "w"), indent=1)
    print(f"chose {candidates[best]} -> {a.out}")


if __name__ == "__main__":
    main()
