//! Streaming STFT and inverse STFT (weighted overlap-add) on realfft, shared by spectral DSP
//! and model nodes. Built on the control thread (`Stft::new` allocates everything and checks
//! that the windows and hop reconstruct); run on the audio thread (`process` allocates nothing).
//!
//! Shape: `inputs` channels are analysed, a callback turns their spectra into `outputs` spectra
//! (a mask, a model, a filter), and those are synthesised. A frame is taken every `hop` samples
//! whatever the block size, so the result does not depend on how audio is cut into blocks. The
//! output lags the input by exactly `fft_size` samples (`latency_frames`): a sample enters at
//! the newest end of a frame and leaves once the last frame that holds it has been added.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// Analysis and synthesis windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Periodic Hann on analysis, none on synthesis.
    Hann,
    /// The square root of periodic Hann on both sides (their product is Hann).
    SqrtHann,
    /// No window on either side (hop must equal or divide the size).
    Rect,
}

impl Window {
    /// (analysis, synthesis) windows of length `n`.
    fn pair(self, n: usize) -> (Vec<f32>, Vec<f32>) {
        let hann = |i: usize| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos();
        match self {
            Window::Hann => ((0..n).map(|i| hann(i) as f32).collect(), vec![1.0; n]),
            Window::SqrtHann => {
                let w: Vec<f32> = (0..n).map(|i| hann(i).sqrt() as f32).collect();
                (w.clone(), w)
            }
            Window::Rect => (vec![1.0; n], vec![1.0; n]),
        }
    }
}

/// One channel's spectrum: `fft_size / 2 + 1` bins.
pub type Spectrum = Vec<Complex<f32>>;

/// A streaming STFT -> spectral callback -> inverse STFT over several channels.
pub struct Stft {
    n: usize,
    hop: usize,
    analysis: Vec<f32>,
    /// Synthesis window with the overlap-add normalisation and the inverse FFT's 1/n folded in.
    synthesis: Vec<f32>,
    /// Per input channel: the last `n` input samples, oldest first.
    history: Vec<Vec<f32>>,
    /// Per output channel: overlap-add accumulator, `n` long; its first `hop` samples are
    /// what leaves during the current hop.
    acc: Vec<Vec<f32>>,
    /// Samples of the current hop taken so far.
    filled: usize,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
    frame: Vec<f32>,
    scratch_fwd: Vec<Complex<f32>>,
    scratch_inv: Vec<Complex<f32>>,
    spec_in: Vec<Spectrum>,
    spec_out: Vec<Spectrum>,
}

impl Stft {
    /// An STFT of `fft_size` (even) with `hop`, analysing `inputs` channels into `outputs`
    /// synthesised channels. Err: the windows overlapped at this hop do not sum to a constant
    /// (the output would not reconstruct the input).
    pub fn new(fft_size: usize, hop: usize, window: Window, inputs: usize, outputs: usize) -> Result<Stft, String> {
        if fft_size < 4 || !fft_size.is_multiple_of(2) || hop == 0 || hop > fft_size || !fft_size.is_multiple_of(hop) {
            return Err(format!(
                "an STFT of size {fft_size} with hop {hop}: the size must be even and a multiple of the hop"
            ));
        }
        let (analysis, synth) = window.pair(fft_size);
        let overlap = overlap_sum(&analysis, &synth, hop)?;
        let synthesis = synth.iter().map(|w| w / (overlap * fft_size as f32)).collect();
        let mut planner = RealFftPlanner::<f32>::new();
        let forward = planner.plan_fft_forward(fft_size);
        let inverse = planner.plan_fft_inverse(fft_size);
        let bins = fft_size / 2 + 1;
        Ok(Stft {
            n: fft_size,
            hop,
            analysis,
            synthesis,
            history: vec![vec![0.0; fft_size]; inputs],
            acc: vec![vec![0.0; fft_size]; outputs],
            filled: 0,
            scratch_fwd: forward.make_scratch_vec(),
            scratch_inv: inverse.make_scratch_vec(),
            forward,
            inverse,
            frame: vec![0.0; fft_size],
            spec_in: vec![vec![Complex::default(); bins]; inputs],
            spec_out: vec![vec![Complex::default(); bins]; outputs],
        })
    }

    /// Output lag behind the input, in samples.
    pub fn latency_frames(&self) -> usize {
        self.n
    }

    pub fn fft_size(&self) -> usize {
        self.n
    }

    pub fn hop(&self) -> usize {
        self.hop
    }

    /// Forgets all audio (after non-finite input, or a reset).
    pub fn reset(&mut self) {
        self.history.iter_mut().chain(self.acc.iter_mut()).for_each(|b| b.fill(0.0));
        self.filled = 0;
    }

    /// Streams `frames` samples of each input channel through, writing each output channel.
    /// `spectral(inputs, outputs)` runs once per hop with the input spectra; the output spectra
    /// it leaves are synthesised (they start each frame zeroed). Audio thread: no allocation.
    pub fn process<F>(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]], frames: usize, mut spectral: F)
    where
        F: FnMut(&[Spectrum], &mut [Spectrum]),
    {
        self.process_with_history(inputs, outputs, frames, |i, _, o| spectral(i, o));
    }

    /// As `process`, the callback also given each input channel's last `fft_size` samples, the
    /// newest last (the samples the frame's spectra were taken from, before the window): for a
    /// node that analyses the same signal another way too (a longer window ending at the same
    /// sample). Audio thread: no allocation.
    pub fn process_with_history<F>(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]], frames: usize, mut spectral: F)
    where
        F: FnMut(&[Spectrum], &[Vec<f32>], &mut [Spectrum]),
    {
        let mut done = 0;
        while done < frames {
            let take = (self.hop - self.filled).min(frames - done);
            let at = self.n - self.hop + self.filled;
            for (h, x) in self.history.iter_mut().zip(inputs) {
                h[at..at + take].copy_from_slice(&x[done..done + take]);
            }
            for (a, y) in self.acc.iter().zip(outputs.iter_mut()) {
                y[done..done + take].copy_from_slice(&a[self.filled..self.filled + take]);
            }
            self.filled += take;
            done += take;
            if self.filled == self.hop {
                self.frame_step(&mut spectral);
                self.filled = 0;
            }
        }
    }

    /// One hop: analyse, call back, synthesise, advance the buffers.
    fn frame_step<F: FnMut(&[Spectrum], &[Vec<f32>], &mut [Spectrum])>(&mut self, spectral: &mut F) {
        for (h, s) in self.history.iter().zip(self.spec_in.iter_mut()) {
            for ((f, x), w) in self.frame.iter_mut().zip(h).zip(&self.analysis) {
                *f = x * w;
            }
            // Lengths match the plan: cannot fail.
            let _ = self.forward.process_with_scratch(&mut self.frame, s, &mut self.scratch_fwd);
        }
        for s in self.spec_out.iter_mut() {
            s.fill(Complex::default());
        }
        spectral(&self.spec_in, &self.history, &mut self.spec_out);
        let (n, hop) = (self.n, self.hop);
        for (a, s) in self.acc.iter_mut().zip(self.spec_out.iter_mut()) {
            // A real signal's DC and Nyquist bins are real; a callback may have left them not.
            s[0].im = 0.0;
            s[n / 2].im = 0.0;
            a.copy_within(hop.., 0);
            a[n - hop..].fill(0.0);
            let _ = self.inverse.process_with_scratch(s, &mut self.frame, &mut self.scratch_inv);
            for ((y, f), w) in a.iter_mut().zip(&self.frame).zip(&self.synthesis) {
                *y += f * w;
            }
        }
        for h in self.history.iter_mut() {
            h.copy_within(hop.., 0);
        }
    }
}

/// The constant that overlapped analysis x synthesis windows sum to at `hop`; Err when they do
/// not sum to a constant (within 1e-4 of it).
fn overlap_sum(analysis: &[f32], synthesis: &[f32], hop: usize) -> Result<f32, String> {
    let n = analysis.len();
    let sums: Vec<f64> = (0..hop)
        .map(|r| (r..n).step_by(hop).map(|i| analysis[i] as f64 * synthesis[i] as f64).sum())
        .collect();
    let mean = sums.iter().sum::<f64>() / hop as f64;
    let worst = sums.iter().map(|s| (s - mean).abs()).fold(0.0, f64::max);
    if mean <= 0.0 || worst > 1e-4 * mean {
        return Err(format!(
            "the windows do not overlap-add to a constant at hop {hop} of {n} (off by {:.2}%): the output would not reconstruct the input",
            100.0 * worst / mean.max(1e-12)
        ));
    }
    Ok(mean as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// Streams `x` through an identity STFT in blocks of `block` samples.
    fn through(x: &[f32], block: usize, window: Window, n: usize, hop: usize) -> Vec<f32> {
        let mut stft = Stft::new(n, hop, window, 1, 1).unwrap();
        let mut y = vec![0.0; x.len()];
        for (xi, yi) in x.chunks(block).zip(y.chunks_mut(block)) {
            let frames = xi.len();
            stft.process(&[xi], &mut [yi], frames, |i, o| o[0].copy_from_slice(&i[0]));
        }
        y
    }

    #[test]
    fn reconstructs_the_input_delayed_by_its_latency_at_any_block_size() {
        let (n, hop) = (1024, 256);
        let x = noise(20_000, 7);
        for window in [Window::SqrtHann, Window::Hann] {
            for block in [1, 64, 512, 333] {
                let y = through(&x, block, window, n, hop);
                let worst = (n..x.len()).map(|t| (y[t] - x[t - n]).abs()).fold(0.0, f32::max);
                assert!(worst < 1e-5, "{window:?} block {block}: off by {worst}");
                assert!(y[..n].iter().all(|v| v.abs() < 1e-6), "output before the latency");
            }
        }
    }

    #[test]
    fn the_same_output_whatever_the_block_size() {
        let x = noise(9000, 3);
        let a = through(&x, 1, Window::SqrtHann, 512, 128);
        let b = through(&x, 777, Window::SqrtHann, 512, 128);
        assert_eq!(a, b);
    }

    #[test]
    fn windows_that_do_not_overlap_add_are_refused() {
        assert!(Stft::new(1024, 512, Window::Hann, 1, 1).is_ok());
        assert!(Stft::new(1024, 768, Window::Hann, 1, 1).is_err(), "hop must divide the size");
        let e = Stft::new(1024, 512, Window::SqrtHann, 1, 1).err();
        assert!(e.is_none(), "sqrt-Hann at half overlap sums to a constant: {e:?}");
        assert!(Stft::new(1000, 1000, Window::Hann, 1, 1).is_err(), "Hann without overlap");
    }

    #[test]
    fn processing_allocates_nothing() {
        let mut stft = Stft::new(1024, 256, Window::SqrtHann, 2, 4).unwrap();
        let x = noise(4096, 1);
        let mut outs = vec![vec![0.0f32; 4096]; 4];
        let (a, b) = (x.clone(), x.clone());
        let before = crate::alloc_check::thread_violations();
        let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
        let ins: [&[f32]; 2] = [&a, &b];
        crate::alloc_check::no_alloc(|| {
            stft.process(&ins, &mut o, 4096, |i, o| {
                for (k, out) in o.iter_mut().enumerate() {
                    out.copy_from_slice(&i[k % 2]);
                }
            });
        });
        assert_eq!(crate::alloc_check::thread_violations(), before);
    }
}
