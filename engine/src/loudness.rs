//! A-weighted loudness of a short window, as DDSP conditions its decoder on: the window's power
//! spectrum weighted by the A curve (IEC 61672), summed, in dB relative to full scale (a 1 kHz
//! sine at full scale reads -3 dB, its RMS). Built on the control thread; `measure` runs on the
//! audio thread (plan and buffers made at build; no allocation).

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// The lowest loudness reported (silence).
pub const FLOOR_DB: f32 = -100.0;

/// The A-weighting curve's power gain at `hz` (1 at 1 kHz).
pub fn a_weight_power(hz: f32) -> f32 {
    let f2 = (hz as f64) * (hz as f64);
    let ra = 12194f64.powi(2) * f2 * f2
        / ((f2 + 20.6f64.powi(2)) * ((f2 + 107.7f64.powi(2)) * (f2 + 737.9f64.powi(2))).sqrt() * (f2 + 12194f64.powi(2)));
    (ra * ra * 10f64.powf(0.2)) as f32
}

pub struct ALoudness {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    /// A-weighting power gain of each bin, with the one-sided spectrum's doubling and the
    /// normalisation that makes the sum a mean square.
    weights: Vec<f32>,
    frame: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
}

impl ALoudness {
    /// A meter for windows of `len` samples at `sample_rate` (zero-padded to a power of two).
    pub fn new(len: usize, sample_rate: f32) -> Self {
        let n = len.next_power_of_two();
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
        let window: Vec<f32> = (0..len)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * (i as f32 + 0.5) / len as f32).cos())
            .collect();
        let energy: f32 = window.iter().map(|w| w * w).sum();
        let weights = (0..=n / 2)
            .map(|k| {
                let both_sides = if k == 0 || k == n / 2 { 1.0 } else { 2.0 };
                both_sides * a_weight_power(k as f32 * sample_rate / n as f32) / (n as f32 * energy)
            })
            .collect();
        Self {
            scratch: fft.make_scratch_vec(),
            spectrum: fft.make_output_vec(),
            frame: vec![0.0; n],
            fft,
            window,
            weights,
        }
    }

    /// Loudness of `x` (the window's length) in dB, at least `FLOOR_DB`. Audio thread.
    pub fn measure(&mut self, x: &[f32]) -> f32 {
        for ((f, v), w) in self.frame.iter_mut().zip(x).zip(&self.window) {
            *f = v * w;
        }
        if self
            .fft
            .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch)
            .is_err()
        {
            return FLOOR_DB;
        }
        let power: f32 = self.spectrum.iter().zip(&self.weights).map(|(c, w)| c.norm_sqr() * w).sum();
        (10.0 * power.max(1e-30).log10()).max(FLOOR_DB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f32, amp: f32, n: usize, rate: f32) -> Vec<f32> {
        (0..n)
            .map(|i| amp * (2.0 * std::f32::consts::PI * hz * i as f32 / rate).sin())
            .collect()
    }

    #[test]
    fn a_curve_is_0_db_at_1_khz_and_low_for_bass() {
        assert!((10.0 * a_weight_power(1000.0).log10()).abs() < 0.05);
        let at_100 = 10.0 * a_weight_power(100.0).log10();
        assert!((at_100 + 19.1).abs() < 0.3, "{at_100}");
    }

    #[test]
    fn full_scale_1_khz_reads_minus_3_db_and_tracks_level() {
        let mut m = ALoudness::new(192, 16000.0);
        let full = m.measure(&sine(1000.0, 1.0, 192, 16000.0));
        assert!((full + 3.0).abs() < 0.5, "{full}");
        let quiet = m.measure(&sine(1000.0, 0.1, 192, 16000.0));
        assert!((full - quiet - 20.0).abs() < 0.1);
        let bass = m.measure(&sine(100.0, 1.0, 192, 16000.0));
        assert!(bass < full - 12.0, "A-weighting: 100 Hz {bass} vs 1 kHz {full}");
        assert_eq!(m.measure(&[0.0; 192]), FLOOR_DB);
    }
}
