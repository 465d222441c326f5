#!/usr/bin/env python3
"""How much of an instrument's fast harmonic movement a decoder could know from the note's key
and how long ago the note began (a SoundFont plays each note from the start of its sample), and
how much from the vibrato input, per key (the body's resonances swept by the pitch).

For each voiced frame of the instrument's lines (make_data.py's renders, 16 kHz): the level of
harmonics 1-10 (oracle.py's `harmonic_levels`: FFT 1024, frames whose tenth harmonic and one
more fit under 8 kHz, so f0 up to 727 Hz), relative to the
frame's strongest, minus its 150 ms moving mean: the movement faster than 150 ms. Fitted on the
training lines, scored on the validation lines (R^2 out of sample):
- by (key, age): the training frames' mean at the same key and the same number of frames since
  the note began (train.py's `note_age_s`: a jump of more than a semitone or an unvoiced frame
  starts a note), frames
  from the fourth on;
- by (key, pitch within it): the training frames' mean at the same key and the same 5 cents
  (train.py's CENTS_STEP) from it: the body's resonances, which vibrato sweeps the harmonics
  across (the decoder's pitch table);
- by the vibrato input: a coefficient per key and harmonic (train.py's `vibrato`), frames from
  100 ms into a note on;
- and what the shipped decoder (timbre.onnx, read back into PyTorch) already plays: the fast
  movement of the same harmonics measured alike on its sound (train.py's synthesis), as a
  prediction of the real one.

    .cache/eval-venv/bin/python models/timbre/note_age.py [INSTRUMENT]
    .cache/eval-venv/bin/python models/timbre/note_age.py --same-key   # FluidR3_GM's violin, G4
                                                                        # at velocity 100 and 70
"""
import collections
import glob
import os
import sys

import numpy as np
from scipy.ndimage import uniform_filter1d

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as T  # noqa: E402
from oracle import harmonic_levels  # noqa: E402

N_FFT, HARMONICS = 1024, 10


def relative_levels(x, f0, voiced):
    """oracle.py's harmonic levels (dB), relative to each frame's strongest; NaN where not voiced."""
    levels = harmonic_levels(x, f0, count=HARMONICS, n=N_FFT)
    levels[~voiced] = np.nan
    return levels - np.nanmax(np.where(np.isfinite(levels), levels, -np.inf), axis=1, keepdims=True)


def decoder_audio(net, d, instrument, frames):
    """The shipped decoder's sound on a line (train.py's synthesis, one noise draw)."""
    import torch

    f0, loud, voiced = (T.as_the_node_reads(d[k][:frames]) for k in ("f0_hz", "loudness_db", "voiced"))
    t = lambda v: torch.tensor(np.asarray(v, np.float32))[None]
    torch.manual_seed(0)
    with torch.no_grad():
        controls, _ = net(T.cond_of(net, t(f0), t(T.expression(f0, voiced)), t(loud), t(voiced),
                                    torch.tensor([T.INSTRUMENTS.index(instrument)])))
        return T.synth(controls, t(f0), frames * T.HOP)[0].numpy()


def line_frames(path, net=None):
    """Fast movement, vibrato input, key, frames since the note began (and the decoder's own
    fast movement where `net` is given), for one line."""
    d = np.load(path)
    f0, voiced = d["f0_hz"], d["voiced"] > 0.5
    frames = min(len(f0), len(d["audio"]) // T.HOP)
    f0, voiced = f0[:frames], voiced[:frames]
    midi = T.midi_of(f0)
    age = np.round(T.note_age_s(f0, voiced) / T.FRAME_S).astype(int)
    levels = relative_levels(d["audio"], f0, voiced)
    ok = (age > 3) & np.all(np.isfinite(levels[:, :4]), axis=1)
    filled = np.where(np.isfinite(levels), levels, 0.0)
    fast = filled - uniform_filter1d(filled, 38, axis=0)
    key = np.round(midi).astype(int)
    cents = np.round((midi - key) * 100 / T.CENTS_STEP).astype(int)
    out = [fast[ok], T.vibrato(f0)[ok], key[ok], age[ok], cents[ok]]
    if net is not None:
        sound = decoder_audio(net, d, os.path.basename(path)[:-4].split("-", 1)[1], frames)
        own = relative_levels(sound, f0, voiced)
        own = np.where(np.isfinite(own), own, 0.0)
        out.append((own - uniform_filter1d(own, 38, axis=0))[ok])  # out[5]
    return out


def collect(split, instrument, net=None):
    rows = [line_frames(p, net) for p in sorted(glob.glob(os.path.join(T.DATA, split, f"*-{instrument}.npz")))]
    return [np.concatenate(c) for c in zip(*rows)]


def r2_by_lookup(train, val, h, second):
    """R^2 on validation of the training frames' mean at the same key and the same value of
    column `second` (3: frames since the note began; 4: the pitch within the key, 5 cent steps)."""
    (dt, kt, st), (dv, kv, sv) = (train[0], train[2], train[second]), (val[0], val[2], val[second])
    sums, counts = collections.defaultdict(float), collections.defaultdict(int)
    for d, k, a in zip(dt[:, h], kt, np.minimum(st, 999)):
        sums[k, a] += d
        counts[k, a] += 1
    pred = np.array([sums[k, a] / counts[k, a] if counts[k, a] >= 3 else 0.0 for k, a in zip(kv, np.minimum(sv, 999))])
    return 1 - np.sum((dv[:, h] - pred) ** 2) / np.sum(dv[:, h] ** 2)


def r2_by_vibrato(train, val, h):
    (dt, vt, kt, at), (dv, vv, kv, av) = train[:4], val[:4]
    t_ok, v_ok = at > 25, av > 25
    pred = np.zeros(v_ok.sum())
    for k in np.unique(kv[v_ok]):
        m = t_ok & (kt == k)
        if m.sum() >= 50:
            coef = np.sum(dt[m, h] * vt[m]) / max(np.sum(vt[m] ** 2), 1e-9)
            pred[kv[v_ok] == k] = coef * vv[v_ok][kv[v_ok] == k]
    return 1 - np.sum((dv[v_ok, h] - pred) ** 2) / np.sum(dv[v_ok, h] ** 2)


def same_key():
    """One key of FluidR3_GM's violin (G4) played 1.5 s at velocity 100, then at 70, then after a
    legato A4: the correlation of each harmonic's fast movement between the first and the others."""
    import subprocess
    import tempfile

    import pretty_midi
    import soundfile as sf

    pm, ins = pretty_midi.PrettyMIDI(), pretty_midi.Instrument(program=40)
    for pitch, velocity, start, end in ((67, 100, 0.5, 2.0), (67, 70, 2.5, 4.0), (69, 90, 4.5, 5.1), (67, 90, 5.1, 6.6)):
        ins.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=start, end=end))
    pm.instruments.append(ins)
    with tempfile.TemporaryDirectory() as work:
        pm.write(os.path.join(work, "a.mid"))
        subprocess.run(["fluidsynth", "-ni", "-g", "0.5", "-r", "16000", "-F", os.path.join(work, "a.wav"),
                        "/usr/share/sounds/sf2/FluidR3_GM.sf2", os.path.join(work, "a.mid")], check=True, capture_output=True)
        x, _ = sf.read(os.path.join(work, "a.wav"))
    x = x.mean(axis=1) if x.ndim == 2 else x
    frames = int(1.5 * T.SR) // T.HOP
    f0, voiced = np.full(frames, 392.0), np.ones(frames, bool)
    fast = []
    for start in (0.5, 2.5, 5.1):
        lv = np.nan_to_num(relative_levels(x[int(start * T.SR):], f0, voiced))  # its first frames lack a window
        fast.append((lv - uniform_filter1d(lv, 38, axis=0))[40:-20])
    for name, other in (("velocity 70", fast[1]), ("after a legato A4", fast[2])):
        r = [np.corrcoef(fast[0][:, h], other[:, h])[0, 1] for h in range(8)]
        print(f"G4 at velocity 100 against {name}: correlation per harmonic " + " ".join(f"{v:.2f}" for v in r))


def main():
    if sys.argv[1:] == ["--same-key"]:
        return same_key()
    instrument = sys.argv[1] if len(sys.argv) > 1 else "violin"
    net = T.Decoder()
    T.warm_from_onnx(net, os.path.join(T.HERE, "timbre.onnx"))
    net.eval()
    train, val = collect("train", instrument), collect("val", instrument, net)
    print(f"{instrument}: {len(train[0])} training frames, {len(val[0])} validation frames")
    print("| harmonic | fast movement (dB, std) | R^2 by (key, age) | R^2 by (key, 5 cents) | R^2 by vibrato, per key "
          "| R^2 of the decoder's own |")
    print("|---:|---:|---:|---:|---:|---:|")
    for h in range(HARMONICS):
        own = 1 - np.sum((val[0][:, h] - val[5][:, h]) ** 2) / np.sum(val[0][:, h] ** 2)
        print(f"| {h + 1} | {val[0][:, h].std():.2f} | {r2_by_lookup(train, val, h, 3):+.3f} | "
              f"{r2_by_lookup(train, val, h, 4):+.3f} | {r2_by_vibrato(train, val, h):+.3f} | {own:+.3f} |")


if __name__ == "__main__":
    main()
