//! Each candidate note's periodicity, for an `SBPNET04` network (`train_harm.py --period`):
//! whether the newest samples repeat at the note's period, as YIN asks, where a 32 ms spectrum
//! cannot yet tell a semitone under middle C from its neighbour.
//!
//! Threads: `PeriodTable::new` runs on the control thread (it allocates); `PeriodTable::compute`
//! runs on the audio thread into the buffers `new` made (no allocation; about 0.13 M
//! multiply-adds a run).
//!
//! For a whole lag L and a window of the newest W samples (t over them):
//! `v(L) = 2 sum x_t x_{t-L} / (sum x_t^2 + sum x_{t-L}^2 + 1e-6)`, 1 where the window repeats the
//! one L earlier; for note p, at each of `WINDOWS` and each of `FACTORS` times its period
//! (16000 / f0(p) samples), v linearly interpolated between the whole lags around it. Values per
//! note are window-major, as `train_harm.periodicity` writes them.

/// The windows (16 kHz samples) over which each note's periodicity is read.
pub const WINDOWS: [usize; 2] = [64, 256];
/// The lags read, in periods of the note: its own, and half (the octave above).
pub const FACTORS: [f64; 2] = [1.0, 0.5];
/// Values a note reads.
pub const VALUES: usize = WINDOWS.len() * FACTORS.len();
const EPS: f64 = 1e-6;
const RATE_HZ: f64 = 16000.0;

/// Which lags each note reads, and buffers for them.
pub(super) struct PeriodTable {
    /// The whole lags read, ascending.
    lags: Vec<usize>,
    /// Per (note, factor): the index in `lags` of the lag under the note's, and the weight of the
    /// one over it.
    taps: Vec<(usize, f64)>,
    /// Per (lag, window): v.
    values: Vec<f64>,
    /// Running sums of x^2 over the samples given (`energy[i]`: the first i).
    energy: Vec<f64>,
}

impl PeriodTable {
    /// Control thread: the table for `notes` notes from MIDI `lowest`, for runs of `len` samples.
    pub(super) fn new(notes: usize, lowest: usize, len: usize) -> Self {
        let periods: Vec<f64> = (lowest..lowest + notes)
            .flat_map(|p| {
                let f0 = 440.0 * 2f64.powf((p as f64 - 69.0) / 12.0);
                FACTORS.iter().map(move |f| RATE_HZ / f0 * f)
            })
            .collect();
        let mut lags: Vec<usize> = periods.iter().flat_map(|t| [t.floor() as usize, t.floor() as usize + 1]).collect();
        lags.sort_unstable();
        lags.dedup();
        let taps = periods
            .iter()
            .map(|t| (lags.binary_search(&(t.floor() as usize)).unwrap_or(0), t - t.floor()))
            .collect();
        Self {
            values: vec![0.0; lags.len() * WINDOWS.len()],
            lags,
            taps,
            energy: vec![0.0; len + 1],
        }
    }

    /// Audio thread: each note's `VALUES` into `out` (notes * VALUES) from `x` (the newest
    /// samples, oldest first; zeros are taken before its start).
    pub(super) fn compute(&mut self, x: &[f32], out: &mut [f32]) {
        let n = x.len().min(self.energy.len() - 1);
        let x = &x[x.len() - n..];
        self.energy[0] = 0.0;
        for (i, &v) in x.iter().enumerate() {
            self.energy[i + 1] = self.energy[i] + v as f64 * v as f64;
        }
        let sum_sq = |e: &[f64], from: isize, to: isize| e[to.max(0) as usize] - e[from.max(0) as usize];
        for (l, &lag) in self.lags.iter().enumerate() {
            let mut cross = 0.0f64;
            let mut done = 0;
            for (j, &w) in WINDOWS.iter().enumerate() {
                // The window's samples t in [n - w, n), each against t - lag (zero before x).
                for t in (n.saturating_sub(w)..n.saturating_sub(done)).rev() {
                    if t >= lag {
                        cross += x[t] as f64 * x[t - lag] as f64;
                    }
                }
                done = w.min(n);
                let (end, w, lag) = (n as isize, w as isize, lag as isize);
                let now = sum_sq(&self.energy, end - w, end);
                let back = sum_sq(&self.energy, end - w - lag, end - lag);
                self.values[l * WINDOWS.len() + j] = 2.0 * cross / (now + back + EPS);
            }
        }
        let factors = FACTORS.len();
        for (k, o) in out.iter_mut().enumerate() {
            let (note, j, f) = (k / VALUES, (k % VALUES) / factors, k % factors);
            let (l, frac) = self.taps[note * factors + f];
            let at = |l: usize| self.values[l * WINDOWS.len() + j];
            *o = ((1.0 - frac) * at(l) + frac * at(l + 1)) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pitchnet::{HISTORY, RISE_BACK};

    const LOWEST: usize = 28;
    const NOTES: usize = 63;

    /// A tone at MIDI `key` with five harmonics, `n` samples at 16 kHz.
    fn tone(key: usize, n: usize) -> Vec<f32> {
        let f0 = 440.0 * 2f64.powf((key as f64 - 69.0) / 12.0);
        (0..n)
            .map(|i| {
                let t = i as f64 / RATE_HZ;
                (1..6)
                    .map(|h| (0.3 / h as f64 * (2.0 * std::f64::consts::PI * f0 * h as f64 * t).sin()) as f32)
                    .sum()
            })
            .collect()
    }

    fn values(x: &[f32]) -> Vec<f32> {
        let mut t = PeriodTable::new(NOTES, LOWEST, HISTORY + RISE_BACK);
        let mut out = vec![0.0; NOTES * VALUES];
        t.compute(x, &mut out);
        out
    }

    #[test]
    fn every_lag_read_lies_within_the_samples_a_run_gets() {
        let t = PeriodTable::new(NOTES, LOWEST, HISTORY + RISE_BACK);
        assert!(WINDOWS.iter().max().unwrap() + t.lags.last().unwrap() < HISTORY + RISE_BACK);
    }

    #[test]
    fn a_tone_repeats_at_its_own_period_and_not_a_semitone_away() {
        // Below middle C, where a 32 ms spectrum's bins are wider than a semitone.
        let v = values(&tone(57, HISTORY + RISE_BACK));
        let at = |key: usize, window: usize, factor: usize| v[(key - LOWEST) * VALUES + window * FACTORS.len() + factor];
        for w in 0..WINDOWS.len() {
            assert!(at(57, w, 0) > 0.97, "window {w}: {}", at(57, w, 0));
            assert!(at(56, w, 0) < at(57, w, 0) - 0.05 && at(58, w, 0) < at(57, w, 0) - 0.05);
            // Half its period is no period of it; the octave under it repeats at its half.
            assert!(at(57, w, 1) < 0.5, "window {w}: {}", at(57, w, 1));
            assert!(at(45, w, 1) > 0.97);
        }
    }

    #[test]
    fn silence_reads_zero_not_nan() {
        assert!(values(&[0.0; HISTORY + RISE_BACK]).iter().all(|&v| v == 0.0));
        // Shorter than the table's span: zeros before the samples given.
        assert!(values(&tone(69, 100)).iter().all(|v| v.is_finite()));
    }
}
