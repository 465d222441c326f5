"""The separator's pitch branch (v13 tries): the frame's spectrum on a log-frequency grid, stacked
with itself moved by the intervals of harmonics 1/2 to 6, read by convolutions over that grid.

A bass note, a harmony note and a lead note differ by where their fundamentals sit and which
partials are theirs; on a log-frequency grid a note's partials are the same pattern whatever its
pitch, and stacking the grid moved by each harmonic's interval lines a fundamental up with its
partials in one column (Basic Pitch's harmonic stacking). So a convolution over the grid learns
"this bin is the 3rd partial of a note that sounds" once for every key, which the global path's
Linear over 513 bins must learn bin by bin. Two channels count how much of the frame's salience
lies below each bin (a running sum over the grid, divided by the whole): the lowest sounding
note is the bass, the highest the lead. The GRU's output sets a bias for each channel
(what the song has done so far). The branch's logits, on the grid, are spread back onto the
STFT's bins and added to each stem's logits; its last layer starts at zero, so a network read
back into a wider one with the branch gives the same masks until training uses it.

The grid: 24 bins an octave from 32.7 Hz (C1) for 8.5 octaves (to 11.9 kHz), read from the long
window's bins below LONG_TOP_HZ (11.7 Hz apart) and the short frame's above (46.9 Hz apart),
each grid bin a triangle over its neighbours' span (linear interpolation where the source bins
are coarser than the grid). Runs on the training machine and, exported in the model, on the
engine's inference worker. No state of its own: one frame at a time.
"""
import numpy as np
import torch
import torch.nn as nn

F_MIN_HZ, BINS_PER_OCTAVE, GRID_BINS = 32.70, 24, 204
HARMONICS = [0.5, 1, 2, 3, 4, 5, 6]
CHANNELS = 24
LONG_TOP_HZ = 2800.0  # under 3 kHz, where the long window's 256 bins end


def grid_hz():
    return F_MIN_HZ * 2.0 ** (np.arange(GRID_BINS) / BINS_PER_OCTAVE)


def triangle_weights(centres_hz, source_hz):
    """[len(centres), len(source)]: each centre a triangle over the source bins between its
    neighbours' centres, normalised to sum one; linear interpolation between the two nearest
    source bins where no source bin falls inside (the grid finer than the source)."""
    w = np.zeros((len(centres_hz), len(source_hz)))
    logs = np.log2(centres_hz)
    step = 1.0 / BINS_PER_OCTAVE
    src = np.log2(np.maximum(source_hz, 1e-3))
    for k, c in enumerate(logs):
        tri = np.clip(1.0 - np.abs(src - c) / step, 0.0, None)
        if (tri > 0).sum() >= 2:
            w[k] = tri / tri.sum()
        else:
            j = np.searchsorted(source_hz, centres_hz[k])
            j = int(np.clip(j, 1, len(source_hz) - 1))
            lo, hi = source_hz[j - 1], source_hz[j]
            frac = (centres_hz[k] - lo) / (hi - lo)
            w[k, j - 1], w[k, j] = 1.0 - frac, frac
    return w


def to_grid_matrix(sr, n_fft, long_fft, long_bins):
    """[GRID_BINS, long_bins + n_fft // 2 + 1]: the grid from the long frame's standardised bins
    (below LONG_TOP_HZ) and the short frame's (above)."""
    hz = grid_hz()
    long_hz = np.arange(long_bins) * sr / long_fft
    short_hz = np.arange(n_fft // 2 + 1) * sr / n_fft
    low = hz < LONG_TOP_HZ
    m = np.zeros((GRID_BINS, long_bins + len(short_hz)))
    m[low, :long_bins] = triangle_weights(hz[low], long_hz)
    m[~low, long_bins:] = triangle_weights(hz[~low], short_hz)
    return m


def from_grid_matrix(sr, n_fft):
    """[GRID_BINS, n_fft // 2 + 1]: each STFT bin's value interpolated over log frequency from
    the grid (the lowest grid bin below the grid, nothing above it)."""
    hz = grid_hz()
    short_hz = np.arange(n_fft // 2 + 1) * sr / n_fft
    m = np.zeros((GRID_BINS, len(short_hz)))
    pos = np.log2(np.maximum(short_hz, 1e-3) / F_MIN_HZ) * BINS_PER_OCTAVE
    for j, p in enumerate(pos):
        if p <= 0:
            m[0, j] = 1.0
        elif p < GRID_BINS - 1:
            k = int(p)
            m[k, j], m[k + 1, j] = 1.0 - (p - k), p - k
    return m


class PitchBranch(nn.Module):
    def __init__(self, sr, n_fft, long_fft, long_bins, context, stems):
        super().__init__()
        self.register_buffer("to_grid", torch.tensor(to_grid_matrix(sr, n_fft, long_fft, long_bins).T, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("from_grid", torch.tensor(from_grid_matrix(sr, n_fft), dtype=torch.float32),
                             persistent=False)
        self.register_buffer("position", torch.linspace(-1.0, 1.0, GRID_BINS), persistent=False)
        self.shifts = [int(round(BINS_PER_OCTAVE * np.log2(h))) for h in HARMONICS]
        self.conv1 = nn.Conv1d(len(HARMONICS) + 1, CHANNELS, 5, padding=2)
        self.context = nn.Parameter(torch.zeros(context, CHANNELS))  # the GRU's output -> a bias a channel
        self.conv2 = nn.Conv1d(CHANNELS, CHANNELS, 5, padding=4, dilation=2)
        self.salience = nn.Conv1d(CHANNELS, 2, 1)
        self.out = nn.Conv1d(CHANNELS + 2, stems, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # starts as the network without it
        nn.init.zeros_(self.out.bias)

    def stacked(self, grid):
        """[n, GRID_BINS] -> [n, harmonics + 1, GRID_BINS]: the grid moved down by each harmonic's
        interval (bin k reads its harmonic's bin), zero past the ends, and the bin's position."""
        lo, hi = -min(self.shifts), max(self.shifts)
        padded = nn.functional.pad(grid, (lo, hi))
        rows = [padded[:, lo + s:lo + s + GRID_BINS] for s in self.shifts]
        rows.append(self.position.expand(grid.shape[0], GRID_BINS))
        return torch.stack(rows, dim=1)

    def forward(self, short, long, context):
        """short [b, t, 513] and long [b, t, long_bins] standardised log magnitudes, context
        [b, t, C] (the GRU's output) -> logits [b, t, stems, 513]."""
        b, t, _ = short.shape
        grid = torch.cat([long, short], dim=-1) @ self.to_grid  # [b, t, GRID_BINS]
        x = torch.tanh(self.conv1(self.stacked(grid.reshape(b * t, GRID_BINS))))
        x = x + (context.reshape(b * t, -1) @ self.context).unsqueeze(-1)
        x = x + torch.tanh(self.conv2(x))
        sal = nn.functional.softplus(self.salience(x))
        below = torch.cumsum(sal, dim=-1) / (sal.sum(-1, keepdim=True) + 1e-3)
        logits = self.out(torch.cat([x, below], dim=1))  # [b * t, stems, GRID_BINS]
        return (logits @ self.from_grid).view(b, t, -1, self.from_grid.shape[1])
