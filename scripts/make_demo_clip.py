#!/usr/bin/env python3
"""Makes assets/demo.wav, the short clip `stagebox run` plays when no audio device is found.

A plucked arpeggio (Karplus-Strong) over a soft bass, 6 s, 22050 Hz, mono, 16-bit.
Standard library only; deterministic. Run from the repository root:
    python3 scripts/make_demo_clip.py
"""
import math
import random
import struct
import wave

SR = 22050
LEN = 6 * SR
random.seed(7)
out = [0.0] * LEN


def pluck(start, midi, dur, amp):
    f = 440.0 * 2 ** ((midi - 69) / 12)
    n = max(2, int(round(SR / f)))
    buf = [random.uniform(-1, 1) for _ in range(n)]
    for i in range(int(dur * SR)):
        j = start + i
        if j >= LEN:
            break
        k = i % n
        y = buf[k]
        buf[k] = 0.996 * 0.5 * (buf[k] + buf[(k + 1) % n])
        out[j] += amp * y


notes = [60, 64, 67, 72, 67, 64, 57, 60, 64, 69, 64, 60, 53, 57, 60, 65, 60, 57, 55, 59, 62, 67, 62, 59]
step = 0.25
for i, m in enumerate(notes):
    pluck(int(i * step * SR), m, 1.2, 0.35)
for i, m in enumerate([36, 33, 29, 31]):
    t0 = int(i * 1.5 * SR)
    f = 440.0 * 2 ** ((m - 69) / 12)
    for k in range(int(1.5 * SR)):
        if t0 + k < LEN:
            env = min(1.0, k / 200) * math.exp(-k / (0.8 * SR))
            out[t0 + k] += 0.25 * env * math.sin(2 * math.pi * f * k / SR)
fade = int(0.05 * SR)
for k in range(fade):
    out[LEN - 1 - k] *= k / fade
peak = max(abs(x) for x in out)
with wave.open("assets/demo.wav", "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(SR)
    w.writeframes(b"".join(struct.pack("<h", int(round(x / peak * 0.7 * 32767))) for x in out))
