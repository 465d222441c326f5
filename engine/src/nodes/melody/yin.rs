//! `melody`: the pitch. YIN's cumulative mean normalised difference over the newest window of
//! the 16 kHz buffer, and the period picked from it (octave-down errors rescued). Runs on the
//! audio thread, inside the processor's hop (fixed buffers, no allocation).

use super::{midi_of, MelodyProc, RATE, WIN};

/// A whole fraction of the period found wins when it dips under this times the threshold.
const SUBHARMONIC: f32 = 1.0;
const OCTAVE_RESCUE: f32 = 2.0;
const OCTAVE_MARGIN: f32 = 0.1;

impl MelodyProc {
    /// Level of the newest window, and (when it is at least `gate`) its YIN difference
    /// function in `self.d`, ready for `pick`.
    pub(super) fn analyse(&mut self, gate: f32) -> (bool, f32) {
        // The newest WIN samples against the same span `tau` earlier: a note needs only WIN plus
        // one period of itself in the buffer to be found (the low-latency orientation).
        let x = &self.buf[self.pos..self.pos + self.span];
        let n = x.len();
        let base = &x[n - WIN..];
        let rms = (base.iter().map(|v| v * v).sum::<f32>() / WIN as f32).sqrt();
        if rms < gate {
            return (false, rms);
        }
        self.d[0] = 0.0;
        for tau in 1..=self.tau_max {
            let shifted = &x[n - WIN - tau..n - tau];
            let mut s = 0.0f32;
            for j in 0..WIN {
                let e = base[j] - shifted[j];
                s += e * e;
            }
            self.d[tau] = s;
        }
        let mut running = 0.0f32;
        for tau in 1..=self.tau_max {
            running += self.d[tau];
            self.d[tau] = if running > 0.0 { self.d[tau] * tau as f32 / running } else { 1.0 };
        }
        (true, rms)
    }

    /// Pitch (fractional MIDI) and aperiodicity from the difference function, or None if
    /// unvoiced at `threshold`.
    pub(super) fn pick(&self, threshold: f32) -> Option<(f32, f32)> {
        // Cumulative mean normalised difference: the first dip under the threshold.
        let found = (self.tau_min + 1..=self.tau_max).find(|&tau| self.d[tau - 1] < threshold && self.d[tau] >= self.d[tau - 1]);
        let mut t = found? - 1;
        // Octave-down errors: if a period a whole fraction of the one found dips almost as low,
        // the shorter one is the pitch.
        for m in (2..=8).rev() {
            let tm = (t as f32 / m as f32).round() as usize;
            if tm > self.tau_min && tm < t {
                let lo = (tm - 1..=tm + 1).map(|k| self.d[k]).fold(f32::INFINITY, f32::min);
                // Half the period (the octave above) is the pitch on a looser bound: reeds and
                // brass whose fundamental reads rougher than the period of two.
                let (bound, margin) = if m == 2 {
                    (OCTAVE_RESCUE, OCTAVE_MARGIN)
                } else {
                    (SUBHARMONIC, 0.05)
                };
                if lo < threshold * bound && lo < self.d[t] + margin {
                    let k = (tm - 1..=tm + 1).min_by(|a, b| self.d[*a].total_cmp(&self.d[*b])).unwrap();
                    t = k;
                    break;
                }
            }
        }
        if t < 2 || t >= self.tau_max {
            return None;
        }
        // Parabolic interpolation around the minimum.
        let (a, b, c) = (self.d[t - 1], self.d[t], self.d[(t + 1).min(self.tau_max)]);
        let den = a - 2.0 * b + c;
        let shift = if den.abs() > 1e-9 { 0.5 * (a - c) / den } else { 0.0 };
        let period = t as f32 + shift.clamp(-1.0, 1.0);
        let hz = RATE as f32 / period;
        Some((midi_of(hz), b))
    }
}
