//! `melody`: a new note's partials rising where the level does not (a music box or a harp note
//! struck under the last one still ringing as loud): the spectral flux of the newest 32 ms against
//! the window 16 ms before, weighted by each bin's share of the newest spectrum. Built on the
//! control thread (`SpectralFlux::new` plans the FFT and makes every buffer); `measure` runs on
//! the audio thread inside the processor's hop (one 512-point FFT, no allocation).

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// Samples (16 kHz) of each window: 32 ms.
pub(super) const FLUX_WINDOW: usize = 512;
/// Hops (4 ms) between the two windows compared: 16 ms.
const LAG_HOPS: usize = 4;
const BINS: usize = FLUX_WINDOW / 2 + 1;
/// Bins more than 40 dB under the newest spectrum's peak are noise: no rise counts there.
const FLOOR: f32 = 0.01;

pub(super) struct SpectralFlux {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    frame: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    /// The last `LAG_HOPS` + 1 magnitude spectra, a ring by hop.
    past: Vec<[f32; BINS]>,
    hop: usize,
}

impl SpectralFlux {
    /// Control thread: plans the FFT and makes the buffers.
    pub(super) fn new() -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(FLUX_WINDOW);
        let scratch = vec![Complex::default(); fft.get_scratch_len()];
        Self {
            fft,
            window: crate::pitchnet::hann_inner(FLUX_WINDOW),
            frame: vec![0.0; FLUX_WINDOW],
            spectrum: vec![Complex::default(); BINS],
            scratch,
            past: vec![[0.0; BINS]; LAG_HOPS + 1],
            hop: 0,
        }
    }

    /// The flux of the newest `FLUX_WINDOW` samples of `x` (16 kHz) against the window
    /// `LAG_HOPS` hops before: the sum over bins of each bin's share of the newest magnitude
    /// times its rise in nepers (ln of the ratio), rises only, bins above `FLOOR` of the peak.
    /// 0 for a steady or decaying sound; a new note's partials, rising 20 dB from nothing in
    /// bins that hold half the spectrum, read about 1.
    pub(super) fn measure(&mut self, x: &[f32]) -> f32 {
        let src = &x[x.len() - FLUX_WINDOW..];
        for ((d, &v), &w) in self.frame.iter_mut().zip(src).zip(&self.window) {
            *d = v * w;
        }
        // An FFT of the planned size with buffers of the planned sizes cannot fail.
        let _ = self
            .fft
            .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch);
        let slot = self.hop % (LAG_HOPS + 1);
        let then = (self.hop + 1) % (LAG_HOPS + 1);
        self.hop += 1;
        let mut peak = 0.0f32;
        for (m, c) in self.past[slot].iter_mut().zip(&self.spectrum) {
            *m = c.norm();
            peak = peak.max(*m);
        }
        if self.hop <= LAG_HOPS || peak <= 0.0 {
            return 0.0;
        }
        let (now, old) = (&self.past[slot], &self.past[then]);
        let (mut total, mut flux) = (0.0f32, 0.0f32);
        for (&n, &o) in now.iter().zip(old) {
            if n < FLOOR * peak {
                continue;
            }
            total += n;
            if n > o {
                flux += n * (n / o.max(FLOOR * peak)).ln();
            }
        }
        if total > 0.0 {
            flux / total
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE_HZ: f32 = 16000.0;
    const HOP: usize = 64;

    /// The flux at every hop of `x` (16 kHz).
    fn fluxes(x: &[f32]) -> Vec<f32> {
        let mut f = SpectralFlux::new();
        (FLUX_WINDOW..=x.len()).step_by(HOP).map(|end| f.measure(&x[..end])).collect()
    }

    /// A harmonic tone of `f0_hz` (four partials), struck at sample `at` and decaying by half
    /// every `half_s` seconds; silent before.
    fn struck(f0_hz: f32, at: usize, half_s: f32, len: usize) -> Vec<f32> {
        (0..len)
            .map(|n| {
                if n < at {
                    return 0.0;
                }
                let t = (n - at) as f32 / RATE_HZ;
                let env = 0.5f32.powf(t / half_s);
                (1..=4)
                    .map(|k| (std::f32::consts::TAU * f0_hz * k as f32 * t).sin() / k as f32)
                    .sum::<f32>()
                    * env
                    * 0.2
            })
            .collect()
    }

    #[test]
    fn a_steady_or_decaying_tone_has_no_flux() {
        let steady = struck(440.0, 0, 1e9, 8000);
        let decaying = struck(440.0, 0, 0.2, 8000);
        for x in [steady, decaying] {
            let after_start = &fluxes(&x)[8..];
            let most = after_start.iter().copied().fold(0.0, f32::max);
            assert!(most < 0.1, "flux {most}");
        }
    }

    #[test]
    fn a_note_struck_under_a_ringing_one_as_loud_reads_as_flux() {
        // A4 struck, ringing; 200 ms later C5 struck with the same peak, while the total level
        // barely rises (the music box's fast runs): the flux passes 0.5 within 40 ms of the
        // strike, and nowhere in the ringing before it.
        let len = 8000;
        let at = 3200;
        let a4 = struck(440.0, 0, 0.5, len);
        let c5 = struck(523.25, at, 0.5, len);
        let x: Vec<f32> = a4.iter().zip(&c5).map(|(a, c)| a * 0.7 + c * 0.7).collect();
        let f = fluxes(&x);
        let hop_of = |n: usize| (n - FLUX_WINDOW) / HOP;
        let before = f[8..hop_of(at)].iter().copied().fold(0.0, f32::max);
        let after = f[hop_of(at)..hop_of(at + 640)].iter().copied().fold(0.0, f32::max);
        assert!(before < 0.1, "flux before the strike {before}");
        assert!(after >= 0.5, "flux after the strike {after}");
    }
}
