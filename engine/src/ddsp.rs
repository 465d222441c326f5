//! DDSP synthesis, driven by frame controls (audio thread; built on the control thread): an
//! additive bank of harmonics locked to one phase, and white noise filtered frame by frame.
//! A neural decoder (the `timbre` node's model) chooses the controls every frame (4 ms); these
//! make the sound between frames, allocation-free.
//!
//! Harmonics: harmonic k of f0 sounds while k * f0 is below `cutoff_hz` (the model's Nyquist,
//! never above the engine's), so nothing aliases; a frame's weights are renormalised over the
//! harmonics that sound, times its amplitude; f0 and amplitudes move linearly from one frame to
//! the next; the phase is the running sum of f0 and harmonic k's phase is k times it (the
//! Chebyshev recurrence sin((k+4)x) = 2 cos 4x sin(kx) - sin((k-4)x), in f64, four chains).
//!
//! Noise: uniform white noise in [-1, 1] through a short-time filter (FFT of two frames, hop
//! one frame, sqrt-Hann on both sides: unfiltered it is the white noise itself); the band
//! magnitudes are spaced evenly from 0 Hz to `cutoff_hz` and interpolated linearly to the FFT's
//! bins. A frame's filter shapes the two frames it covers, so the noise changes within one
//! frame of its controls (no added latency: the noise is drawn ahead).

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// One frame's harmonic controls: f0 and the amplitude of each harmonic (already normalised).
#[derive(Clone)]
pub struct HarmonicFrame {
    pub f0_hz: f32,
    pub amps: Vec<f32>,
}

impl HarmonicFrame {
    pub fn silent(harmonics: usize) -> Self {
        Self {
            f0_hz: 0.0,
            amps: vec![0.0; harmonics],
        }
    }

    /// Sets the frame from a decoder's outputs: overall amplitude and one weight a harmonic;
    /// the weights of harmonics at or above `cutoff_hz` are dropped and the rest renormalised
    /// to sum to one (DDSP's harmonic distribution).
    pub fn set(&mut self, f0_hz: f32, amplitude: f32, weights: &[f32], cutoff_hz: f32) {
        self.f0_hz = f0_hz;
        let audible = |k: usize| f0_hz > 0.0 && (k + 1) as f32 * f0_hz < cutoff_hz;
        let total: f32 = weights.iter().enumerate().filter(|(k, _)| audible(*k)).map(|(_, w)| *w).sum();
        let scale = if total > 1e-7 { amplitude / total } else { 0.0 };
        for (k, (a, w)) in self.amps.iter_mut().zip(weights).enumerate() {
            *a = if audible(k) { w * scale } else { 0.0 };
        }
    }
}

/// The additive oscillator bank of one voice.
pub struct Harmonics {
    /// Phase of the fundamental, in cycles, in [0, 1).
    phase: f64,
    sample_rate: f64,
    cutoff_hz: f64,
}

impl Harmonics {
    /// `cutoff_hz` is lowered to the engine's Nyquist where it is above it.
    pub fn new(sample_rate: f32, cutoff_hz: f32) -> Self {
        Self {
            phase: 0.0,
            sample_rate: sample_rate as f64,
            cutoff_hz: cutoff_hz.min(sample_rate / 2.0) as f64,
        }
    }

    pub fn reset(&mut self) {
        self.phase = 0.0;
    }

    /// Adds `out.len()` samples moving from frame `from` (at sample 0) to frame `to` (reached
    /// one sample after the last), times `gain`. Audio thread.
    pub fn add(&mut self, from: &HarmonicFrame, to: &HarmonicFrame, gain: f32, out: &mut [f32]) {
        let n = out.len() as f64;
        let (f_a, f_b) = (from.f0_hz as f64, to.f0_hz as f64);
        for (t, o) in out.iter_mut().enumerate() {
            let x = t as f64 / n;
            let f0 = f_a + (f_b - f_a) * x;
            if f0 > 0.0 {
                let top = ((self.cutoff_hz / f0).ceil() as usize).saturating_sub(1).min(from.amps.len());
                *o += gain * self.sample(top, x as f32, from, to) as f32;
            }
            self.phase += f0.max(0.0) / self.sample_rate;
            self.phase -= self.phase.floor();
        }
    }

    /// Sum over harmonics 1..=top of a_k sin(k * phase), a_k between the two frames at `x`.
    /// Four recurrences run side by side (harmonics 1, 5, 9.. / 2, 6, 10.. / 3, 7.. / 4, 8..,
    /// each stepping by sin((k+4)x) = 2 cos 4x sin(kx) - sin((k-4)x)): the same sum as one
    /// recurrence over all harmonics, but the four chains do not wait for each other.
    #[inline]
    fn sample(&self, top: usize, x: f32, from: &HarmonicFrame, to: &HarmonicFrame) -> f64 {
        let theta = 2.0 * std::f64::consts::PI * self.phase;
        let (s1, c2) = (theta.sin(), 2.0 * theta.cos());
        let s2 = c2 * s1;
        let s3 = c2 * s2 - s1;
        let s4 = c2 * s3 - s2;
        let c8 = 2.0 - 4.0 * s2 * s2; // 2 cos 4x
        let (mut cur, mut prev) = ([s1, s2, s3, s4], [-s3, -s2, -s1, 0.0]);
        let mut y = [0.0f64; 4];
        let (mut a, mut b) = (from.amps[..top].chunks_exact(4), to.amps[..top].chunks_exact(4));
        for (qa, qb) in (&mut a).zip(&mut b) {
            for j in 0..4 {
                y[j] += (qa[j] + (qb[j] - qa[j]) * x) as f64 * cur[j];
                let next = c8 * cur[j] - prev[j];
                prev[j] = cur[j];
                cur[j] = next;
            }
        }
        for (j, (p, q)) in a.remainder().iter().zip(b.remainder()).enumerate() {
            y[j] += (p + (q - p) * x) as f64 * cur[j];
        }
        (y[0] + y[1]) + (y[2] + y[3])
    }
}

/// White noise shaped by band magnitudes, one frame (`hop` samples) at a time.
pub struct FilteredNoise {
    hop: usize,
    /// Hz between bins of the FFT (two frames long).
    bin_hz: f32,
    band_hz: f32,
    window: Vec<f32>,
    /// The noise of the two frames the next filter covers.
    noise: Vec<f32>,
    /// Overlap-add accumulator, two frames long: its first `hop` samples are the next output.
    acc: Vec<f32>,
    frame: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
    rng: u64,
}

impl FilteredNoise {
    /// `bands` magnitudes spaced evenly over 0..=cutoff_hz; frames of `hop` samples. `seed`
    /// makes renders repeatable.
    pub fn new(hop: usize, sample_rate: f32, bands: usize, cutoff_hz: f32, seed: u64) -> Self {
        let n = 2 * hop;
        let mut planner = RealFftPlanner::<f32>::new();
        let (forward, inverse) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
        let window = (0..n)
            .map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()).sqrt() as f32)
            .collect();
        let mut scratch = forward.make_scratch_vec();
        if inverse.get_scratch_len() > scratch.len() {
            scratch = inverse.make_scratch_vec();
        }
        let mut s = Self {
            hop,
            bin_hz: sample_rate / n as f32,
            band_hz: cutoff_hz / (bands - 1).max(1) as f32,
            window,
            noise: vec![0.0; n],
            acc: vec![0.0; n],
            frame: vec![0.0; n],
            spectrum: forward.make_output_vec(),
            scratch,
            forward,
            inverse,
            rng: seed | 1,
        };
        let mut first = std::mem::take(&mut s.noise);
        first[hop..].iter_mut().for_each(|x| *x = s.white());
        s.noise = first;
        s
    }

    pub fn reset(&mut self) {
        self.acc.fill(0.0);
    }

    #[inline]
    fn white(&mut self) -> f32 {
        // xorshift64*: fast, allocation-free, repeatable.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (r >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// Adds the next frame (`hop` samples, into `out`) of noise filtered by `bands`, times
    /// `gain`. Audio thread.
    pub fn add(&mut self, bands: &[f32], gain: f32, out: &mut [f32]) {
        let (n, hop) = (2 * self.hop, self.hop);
        self.noise.copy_within(hop.., 0);
        for k in hop..n {
            self.noise[k] = self.white();
        }
        for ((f, x), w) in self.frame.iter_mut().zip(&self.noise).zip(&self.window) {
            *f = x * w;
        }
        if self
            .forward
            .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch)
            .is_ok()
        {
            for (k, c) in self.spectrum.iter_mut().enumerate() {
                *c *= band_at(bands, k as f32 * self.bin_hz / self.band_hz);
            }
            // The inverse FFT needs real DC and Nyquist bins.
            let last = self.spectrum.len() - 1;
            self.spectrum[0].im = 0.0;
            self.spectrum[last].im = 0.0;
            if self
                .inverse
                .process_with_scratch(&mut self.spectrum, &mut self.frame, &mut self.scratch)
                .is_ok()
            {
                for ((a, f), w) in self.acc.iter_mut().zip(&self.frame).zip(&self.window) {
                    *a += f * w / n as f32;
                }
            }
        }
        for (o, a) in out.iter_mut().zip(&self.acc[..hop]) {
            *o += a * gain;
        }
        self.acc.copy_within(hop.., 0);
        self.acc[hop..].fill(0.0);
    }
}

/// The magnitude at fractional band position `pos` (linear between bands; 0 past the last).
#[inline]
fn band_at(bands: &[f32], pos: f32) -> f32 {
    let i = pos.floor() as usize;
    let x = pos - i as f32;
    match (bands.get(i), bands.get(i + 1)) {
        (Some(a), Some(b)) => a + (b - a) * x,
        (Some(a), None) if x < 1e-4 => *a,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(f0: f32, amps: &[f32]) -> HarmonicFrame {
        HarmonicFrame {
            f0_hz: f0,
            amps: amps.to_vec(),
        }
    }

    /// The largest difference between the bank's output and the analytic sum of sines.
    fn worst_against_analytic(f0: f32, amps: &[f32]) -> f64 {
        let sr = 48000.0f32;
        let mut bank = Harmonics::new(sr, 20000.0);
        let mut out = vec![0.0f32; 4800];
        let fr = frame(f0, amps);
        for chunk in out.chunks_mut(192) {
            bank.add(&fr, &fr, 1.0, chunk);
        }
        out.iter()
            .enumerate()
            .map(|(t, y)| {
                let phase = 2.0 * std::f64::consts::PI * f0 as f64 * t as f64 / sr as f64;
                let want: f64 = amps
                    .iter()
                    .enumerate()
                    .map(|(k, a)| *a as f64 * ((k + 1) as f64 * phase).sin())
                    .sum();
                (want - *y as f64).abs()
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn a_known_harmonic_set_equals_its_analytic_waveform() {
        let worst = worst_against_analytic(220.0, &[0.5, 0.25, 0.0, 0.125, 0.05]);
        assert!(worst < 1e-4, "largest difference {worst}");
        // 60 harmonics (every one of the four recurrences 15 steps long), all below 20 kHz.
        let amps: Vec<f32> = (0..60)
            .map(|k| 0.3 / (k + 1) as f32 * if k % 3 == 1 { -1.0 } else { 1.0 })
            .collect();
        let worst = worst_against_analytic(110.0, &amps);
        assert!(worst < 1e-4, "largest difference over 60 harmonics {worst}");
    }

    #[test]
    fn harmonics_at_or_above_the_cutoff_are_silent_and_the_rest_renormalised() {
        let mut fr = HarmonicFrame::silent(60);
        fr.set(3000.0, 1.0, &[1.0; 60], 8000.0);
        // 3000 and 6000 Hz sound; 9000 Hz and up do not.
        assert_eq!(fr.amps[..3], [0.5, 0.5, 0.0]);
        assert!(fr.amps[2..].iter().all(|a| *a == 0.0));
    }

    #[test]
    fn no_harmonic_above_nyquist_folds_back_at_high_f0() {
        // f0 = 3100 Hz at 48 kHz, flat weights, cutoff asked above Nyquist (lowered to 24 kHz):
        // harmonics 1-7 (to 21.7 kHz) sound. Harmonics 8 and 9 (24.8, 27.9 kHz) would fold to
        // 23.2 and 20.1 kHz: nothing may be there.
        let sr = 48000.0;
        let mut bank = Harmonics::new(sr, 30000.0);
        let mut fr = HarmonicFrame::silent(60);
        fr.set(3100.0, 1.0, &[1.0; 60], 24000.0);
        let mut out = vec![0.0f32; 8192];
        bank.add(&fr, &fr, 1.0, &mut out);
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(8192);
        let mut spec = fft.make_output_vec();
        let mut x: Vec<f32> = out
            .iter()
            .enumerate()
            .map(|(i, a)| a * (0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / 8192.0).cos()))
            .collect();
        fft.process(&mut x, &mut spec).unwrap();
        let power = |centre: f32| -> f32 {
            let k = (centre * 8192.0 / sr).round() as usize;
            spec[k - 8..=k + 8].iter().map(|c| c.norm_sqr()).sum()
        };
        let fundamental = power(3100.0);
        assert!(power(21700.0) > fundamental * 0.5, "harmonic 7 sounds");
        for alias in [23200.0, 20100.0] {
            assert!(
                power(alias) < fundamental * 1e-6,
                "energy at {alias} Hz: {}",
                power(alias) / fundamental
            );
        }
    }

    #[test]
    fn unfiltered_noise_is_white_at_unit_level_and_bands_shape_it() {
        let (sr, hop) = (48000.0, 192);
        let mut noise = FilteredNoise::new(hop, sr, 65, 8000.0, 7);
        let mut flat = vec![0.0f32; hop * 500];
        for chunk in flat.chunks_mut(hop) {
            noise.add(&[1.0; 65], 1.0, chunk);
        }
        // Uniform noise in [-1, 1] has variance 1/3; flat bands up to 8 kHz of a 24 kHz band
        // keep a third of it.
        let var = flat[hop * 4..].iter().map(|x| x * x).sum::<f32>() / (flat.len() - hop * 4) as f32;
        assert!((var - 1.0 / 9.0).abs() < 0.01, "variance {var}");
        let mut off = vec![0.0f32; hop * 50];
        for chunk in off.chunks_mut(hop) {
            noise.add(&[0.0; 65], 1.0, chunk);
        }
        assert!(off[hop * 2..].iter().all(|x| x.abs() < 1e-6));
    }
}
