//! An analysis-only spectrum over a window longer than a node's STFT, ending at the same sample:
//! finer frequency resolution with no added latency (the separator's long window: 4096 samples
//! where its STFT has 1024, for the low bins where a bass note and the harmony meet). Built on
//! the control thread (`new` allocates everything); run on the audio thread (`push_hop` and
//! `magnitudes` allocate nothing).

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// The magnitudes of the lowest `kept` bins of a periodic-Hann window of the last `n` samples.
pub struct SlidingSpectrum {
    window: Vec<f32>,
    /// The last `n` samples, oldest first (zeros before the first).
    history: Vec<f32>,
    frame: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    mags: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl SlidingSpectrum {
    /// `n` samples (even), the lowest `kept` bins (at most `n / 2 + 1`).
    pub fn new(n: usize, kept: usize) -> Result<SlidingSpectrum, String> {
        if n < 4 || !n.is_multiple_of(2) || kept == 0 || kept > n / 2 + 1 {
            return Err(format!("a sliding spectrum of {n} samples keeping {kept} bins"));
        }
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
        let hann = |i: usize| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()) as f32;
        Ok(SlidingSpectrum {
            window: (0..n).map(hann).collect(),
            history: vec![0.0; n],
            frame: vec![0.0; n],
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            mags: vec![0.0; kept],
            fft,
        })
    }

    /// Forgets all audio.
    pub fn reset(&mut self) {
        self.history.fill(0.0);
    }

    /// Appends `samples` (newest last; at most `n` of them).
    pub fn push_hop(&mut self, samples: &[f32]) {
        let (n, k) = (self.history.len(), samples.len().min(self.history.len()));
        self.history.copy_within(k.., 0);
        self.history[n - k..].copy_from_slice(&samples[samples.len() - k..]);
    }

    /// The kept bins' magnitudes of the window ending at the newest sample (unnormalised, as
    /// `torch.stft` gives them).
    pub fn magnitudes(&mut self) -> &[f32] {
        for ((f, x), w) in self.frame.iter_mut().zip(&self.history).zip(&self.window) {
            *f = x * w;
        }
        // Lengths match the plan: cannot fail.
        let _ = self
            .fft
            .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch);
        for (m, c) in self.mags.iter_mut().zip(&self.spectrum) {
            *m = c.norm();
        }
        &self.mags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sines_one_short_bin_apart_are_told_apart() {
        let (n, rate) = (4096, 48000.0f32);
        let bin_hz = rate / n as f32;
        let mut s = SlidingSpectrum::new(n, 256).unwrap();
        // Two sines 4 long bins apart (47 Hz: one bin of a 1024-sample window, whose Hann main
        // lobe is 4 of its bins wide, so it hears one blur).
        let x: Vec<f32> = (0..n)
            .map(|t| {
                let ts = t as f32 / rate;
                (2.0 * std::f32::consts::PI * 40.0 * bin_hz * ts).sin() + (2.0 * std::f32::consts::PI * 44.0 * bin_hz * ts).sin()
            })
            .collect();
        for hop in x.chunks(256) {
            s.push_hop(hop);
        }
        let m = s.magnitudes().to_vec();
        assert!(
            m[40] > 100.0 * m[42] && m[44] > 100.0 * m[42],
            "40 {} 42 {} 44 {}",
            m[40],
            m[42],
            m[44]
        );
        // Unnormalised Hann: a unit sine's peak is n / 4.
        assert!((m[40] / (n as f32 / 4.0) - 1.0).abs() < 0.02, "peak {}", m[40]);
    }

    #[test]
    fn the_window_ends_at_the_newest_sample() {
        let mut s = SlidingSpectrum::new(64, 33).unwrap();
        s.push_hop(&[1.0; 8]);
        let dc_one_hop = s.magnitudes()[0];
        s.push_hop(&[0.0; 8]);
        let dc_two_hops = s.magnitudes()[0];
        // The ones sit at the window's newest end first (small weight), then nearer its middle.
        assert!(dc_one_hop > 0.0 && dc_two_hops > dc_one_hop, "{dc_one_hop} {dc_two_hops}");
        s.reset();
        assert_eq!(s.magnitudes()[0], 0.0);
    }

    #[test]
    fn analysing_allocates_nothing() {
        let mut s = SlidingSpectrum::new(4096, 256).unwrap();
        let hop = vec![0.5f32; 256];
        let before = crate::alloc_check::thread_violations();
        crate::alloc_check::no_alloc(|| {
            s.push_hop(&hop);
            let _ = s.magnitudes();
        });
        assert_eq!(crate::alloc_check::thread_violations(), before);
    }
}
