"""Random instruments for melody_net's training (run by train.py, never by the engine): each line
is played on an additive instrument drawn at random, so that the network hears bodies no
SoundFont holds and learns the pitch rather than the train part's timbres.

An instrument is drawn once a line:
- partials: harmonic, or stretched like a stiff string (inharmonicity B 1e-5..1e-3), or a tuned
  bar's few partials (ratios near 1 : 2.8-4 : 5.4-10);
- a spectrum: a slope of -2 to -14 dB an octave, one to three formants fixed in frequency (the
  body), sometimes weak even harmonics (a clarinet), sometimes a weak fundamental, a jitter;
- sustained (attack 5-150 ms, higher partials later; a release; vibrato that comes in after the
  attack; breath or bow noise under the tone) or struck (attack 0.5-4 ms, higher partials
  decaying faster, a click; a note may ring on under the next one);
- sometimes a chorus (detuned copies).
The label is the key played, as for the SoundFont lines.
"""
import numpy as np
from scipy.signal import butter, lfilter

R = 16000
NYQUIST_GUARD_HZ = 7800.0
MAX_PARTIALS = 40


def partial_ratios(rng, struck):
    h = np.arange(1, MAX_PARTIALS + 1, dtype=float)
    if struck and rng.uniform() < 0.25:  # a tuned bar: few partials, far apart
        return np.array([1.0, rng.uniform(2.75, 4.05), rng.uniform(5.4, 10.2)])
    if struck and rng.uniform() < 0.6:  # a stiff string
        return h * np.sqrt(1 + np.exp(rng.uniform(np.log(1e-5), np.log(1e-3))) * h * h)
    return h


def spectrum_db(rng, ratios):
    """Each partial's level before the body, in dB: a slope, weak even partials or a weak
    fundamental on some instruments, a jitter."""
    db = rng.uniform(-14, -2) * np.log2(ratios)
    if len(ratios) > 3 and rng.uniform() < 0.25:
        db[1::2] -= rng.uniform(5, 25)
    if rng.uniform() < 0.2:
        db[0] -= rng.uniform(6, 20)
    return db + rng.normal(0, 3, len(ratios))


def body(rng):
    """One to three formants fixed in frequency: (centre Hz, width octaves, gain dB)."""
    return [(float(np.exp(rng.uniform(np.log(250), np.log(4500)))), rng.uniform(0.2, 0.8), rng.uniform(3, 20))
            for _ in range(int(rng.integers(1, 4)))]


def body_db(formants, f_hz):
    out = np.zeros_like(f_hz)
    for centre, width, gain in formants:
        out += gain * np.exp(-0.5 * (np.log2(f_hz / centre) / width) ** 2)
    return out


def instrument(rng):
    struck = rng.uniform() < 0.5
    ratios = partial_ratios(rng, struck)
    return {
        "struck": struck,
        "ratios": ratios,
        "db": spectrum_db(rng, ratios),
        "body": body(rng),
        "attack_s": rng.uniform(0.0005, 0.004) if struck else float(np.exp(rng.uniform(np.log(0.005), np.log(0.15)))),
        "release_s": rng.uniform(0.02, 0.25),
        "decay_s": float(np.exp(rng.uniform(np.log(0.15), np.log(2.5)))),
        "decay_tilt": rng.uniform(0.05, 1.0),
        "ring_s": rng.uniform(0.05, 0.4) if struck and rng.uniform() < 0.5 else 0.0,
        "vibrato": (rng.uniform(4.5, 7.0), rng.uniform(5, 50), rng.uniform(0.1, 0.3)) if not struck and rng.uniform() < 0.7 else None,
        "noise_db": rng.uniform(-35, -12) if rng.uniform() < 0.5 else None,
        "noise_band": sorted(rng.uniform(500, 7000, 2)),
        "click_db": rng.uniform(-20, 0) if struck and rng.uniform() < 0.6 else None,
        "chorus": [(rng.uniform(-15, 15), rng.uniform(0.4, 1.0)) for _ in range(int(rng.integers(1, 3)))] if rng.uniform() < 0.2 else [],
    }


def note_envelopes(ins, n, hold_n):
    """Per-partial envelopes [partials][n] for a note held `hold_n` samples and sounding `n`."""
    t = np.arange(n) / R
    k = np.arange(len(ins["ratios"]))[:, None]
    attack = np.clip(t[None, :] / (ins["attack_s"] * (1 + 0.3 * np.log2(1 + k))), 0, 1)
    if ins["struck"]:
        shape = np.exp(-t[None, :] * (1 + ins["decay_tilt"] * k) / ins["decay_s"])
    else:
        shape = np.ones((1, n))
    after = np.maximum(t - hold_n / R, 0)
    return attack * shape * np.exp(-after / ins["release_s"])[None, :]


def note_tone(ins, rng, f0_hz, n, hold_n, start_s):
    t = np.arange(n) / R
    cents = np.zeros(n)
    if ins["vibrato"]:
        rate, depth, delay = ins["vibrato"]
        cents = depth * np.clip((t - delay) / 0.2, 0, 1) * np.sin(2 * np.pi * rate * (t + start_s))
    phase = 2 * np.pi * np.cumsum(f0_hz * 2 ** (cents / 1200)) / R
    f = f0_hz * ins["ratios"]
    ok = f < NYQUIST_GUARD_HZ
    amp = 10 ** ((ins["db"] + body_db(ins["body"], f)) / 20) * ok
    env = note_envelopes(ins, n, hold_n)
    tone = np.zeros(n)
    for detune, gain in [(0.0, 1.0)] + ins["chorus"]:
        ph = phase * 2 ** (detune / 1200)
        for j in np.nonzero(ok)[0]:
            tone += gain * amp[j] * env[j] * np.sin(ins["ratios"][j] * ph + rng.uniform(0, 2 * np.pi))
    return tone / (np.abs(tone).max() + 1e-9)


def note_noise(ins, rng, n, tone):
    """Breath or bow noise under a sustained tone (following its level), a struck note's click."""
    out = np.zeros(n)
    if ins["noise_db"] is not None:
        b, a = butter(2, [ins["noise_band"][0] / (R / 2), min(ins["noise_band"][1], 7900) / (R / 2)], "band")
        out += lfilter(b, a, rng.standard_normal(n)) * np.abs(tone) * 10 ** (ins["noise_db"] / 20) * 3
    if ins["click_db"] is not None:
        k = min(n, int(rng.integers(32, 320)))
        out[:k] += rng.standard_normal(k) * np.exp(-np.arange(k) / (k / 4)) * 10 ** (ins["click_db"] / 20)
    return out


def synth_line(rng, notes):
    """`notes` [(start s, end s, MIDI, velocity)] on a random instrument at 16 kHz, peak 0.3-0.9."""
    ins = instrument(rng)
    y = np.zeros(int((notes[-1][1] + 1.0) * R))
    for i, (s, e, p, v) in enumerate(notes):
        end_s = e
        if ins["ring_s"] and i + 1 < len(notes) and notes[i + 1][0] - e < 0.05:
            end_s = notes[i + 1][0] + ins["ring_s"]  # rings on under the next note
        n0, hold_n = int(s * R), int((end_s - s) * R)
        n = min(len(y) - n0, hold_n + int(5 * ins["release_s"] * R))
        f0 = 440.0 * 2 ** ((p - 69) / 12)
        tone = note_tone(ins, rng, f0, n, hold_n, s)
        tone = tone + note_noise(ins, rng, n, tone)
        y[n0 : n0 + n] += (v / 127) ** 1.5 * tone
    return (y / (np.abs(y).max() + 1e-9) * rng.uniform(0.3, 0.9)).astype(np.float32)
