#!/usr/bin/env python3
"""Two separators compared mix by mix on the same mixes: each one's SDR per stem (mean over
mixes and medians), the paired difference per stem, its mean over mixes and stems with a 90%
bootstrap interval over mixes, and how many mixes the candidate does better. Reads the
`--per-mix` files calibrate.py writes (the last row of each: one checkpoint at one scale);
mixes either could not score are left out of both.

    .cache/eval-venv/bin/python models/separator/compare.py CANDIDATE.json REFERENCE.json
"""
import json
import sys

import numpy as np


def rows(path):
    """The last checkpoint's [mixes, 4] SDRs in a calibrate.py --per-mix file."""
    return np.array(list(json.load(open(path)).values())[-1], dtype=float)


def main():
    cand, ref = rows(sys.argv[1]), rows(sys.argv[2])
    if cand.shape != ref.shape:
        sys.exit(f"not the same mixes: {cand.shape} against {ref.shape}")
    both = ~np.isnan(cand).any(axis=1) & ~np.isnan(ref).any(axis=1)
    cand, ref = cand[both], ref[both]
    for name, x in (("candidate", cand), ("reference", ref)):
        print(f"{name}: mean over mixes {np.round(x.mean(axis=0), 2)} {x.mean():.3f}; "
              f"medians {np.round(np.median(x, axis=0), 2)} {np.median(x, axis=0).mean():.3f}")
    per_mix = (cand - ref).mean(axis=1)
    rng = np.random.default_rng(0)
    boot = [per_mix[rng.integers(0, len(per_mix), len(per_mix))].mean() for _ in range(2000)]
    lo, hi = np.percentile(boot, [5, 95])
    print(f"paired, by stem {np.round((cand - ref).mean(axis=0), 2)}; mean {per_mix.mean():+.3f} "
          f"(90% {lo:+.2f} to {hi:+.2f}); better on {(per_mix > 0).sum()} of {len(per_mix)} mixes")


if __name__ == "__main__":
    main()
