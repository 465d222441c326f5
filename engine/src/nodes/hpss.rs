//! `hpss`: a live mix split into four stems, `drums`, `bass`, `lead` and `other`, without a
//! model: the DSP floor the separation model must beat, and its fallback. Spec on the control
//! thread; the processor (audio thread) runs the shared STFT (`spectral`) and computes masks:
//!
//! - harmonic / percussive: median of the magnitude over time (9 frames: 7 past, the frame, 1
//!   ahead) against the median over frequency (17 bins), as soft Wiener-like masks;
//! - bass: the harmonic part below `bass_hz` (a one-octave raised-cosine crossover);
//! - lead: of the harmonic part above it, the harmonics of the frame's most salient pitch in
//!   `lead_min_hz..lead_max_hz` (harmonic summation); `other` is the rest.
//!
//! The four masks sum to one in every bin, so the stems sum to the input delayed by the node's
//! latency (the STFT's size plus the one frame of look-ahead). Masks come from the mid (the
//! channels' mean) and apply to every channel. Non-finite input resets the state (counted).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use realfft::num_complex::Complex;

use crate::node::{BuildCtx, Built, NodeInfo, NodeType, Params, PortSpec, ProcessIo, Processor};
use crate::param::{EventKind, ParamSpec};
use crate::spectral::{Spectrum, Stft, Window};

pub const STEMS: [&str; 4] = ["drums", "bass", "lead", "other"];
pub const FFT_SIZE: usize = 1024;
pub const HOP: usize = 256;
/// Frames of look-ahead (each adds `HOP` to the latency) and of the past in the time median.
pub const AHEAD: usize = 1;
const PAST: usize = 7;
const TIME_MEDIAN: usize = PAST + 1 + AHEAD;
const FREQ_MEDIAN: usize = 17;
const HARMONICS: usize = 10;

const HPSS_PARAMS: &[ParamSpec] = &[
    ParamSpec::int("channels", 1, 2, 1, "input channels (each stem has as many)"),
    ParamSpec::float(
        "bass_hz",
        40.0,
        400.0,
        150.0,
        "Hz",
        "crossover under which the harmonic part is bass",
    ),
    ParamSpec::float("lead_min_hz", 60.0, 1000.0, 150.0, "Hz", "lowest pitch the lead is looked for at"),
    ParamSpec::float(
        "lead_max_hz",
        200.0,
        3000.0,
        1400.0,
        "Hz",
        "highest pitch the lead is looked for at",
    ),
];

/// The mask computation's state: past magnitudes and spectra, and scratch.
pub struct StemMasks {
    bins: usize,
    bin_hz: f32,
    /// The last `TIME_MEDIAN` frames' mid magnitudes, a ring.
    mags: Vec<Vec<f32>>,
    /// The last `AHEAD + 1` frames' spectra per channel, a ring (the masked frame is the oldest).
    delayed: Vec<Vec<Spectrum>>,
    newest: usize,
    harmonic: Vec<f32>,
    lead: Vec<f32>,
    sort: [f32; FREQ_MEDIAN],
    pub bass_hz: f32,
    pub lead_hz: (f32, f32),
}

impl StemMasks {
    pub fn new(channels: usize, sample_rate: f32) -> StemMasks {
        let bins = FFT_SIZE / 2 + 1;
        StemMasks {
            bins,
            bin_hz: sample_rate / FFT_SIZE as f32,
            mags: vec![vec![0.0; bins]; TIME_MEDIAN],
            delayed: vec![vec![vec![Complex::default(); bins]; channels]; AHEAD + 1],
            newest: 0,
            harmonic: vec![0.0; bins],
            lead: vec![0.0; bins],
            sort: [0.0; FREQ_MEDIAN],
            bass_hz: 150.0,
            lead_hz: (150.0, 1400.0),
        }
    }

    pub fn reset(&mut self) {
        self.mags.iter_mut().for_each(|m| m.fill(0.0));
        self.delayed.iter_mut().flatten().for_each(|s| s.fill(Complex::default()));
    }

    /// Takes a frame's spectra; writes the stems of the frame `AHEAD` hops older into `out`
    /// (stem-major: `out[stem * channels + channel]`).
    pub fn frame(&mut self, input: &[Spectrum], out: &mut [Spectrum]) {
        self.push(input);
        self.write_stems(out);
    }

    /// The newest frame's mid magnitudes (what `push` took last).
    pub fn newest_mags(&self) -> &[f32] {
        &self.mags[self.mags.len() - 1]
    }

    /// Takes a frame into the history (its spectra and mid magnitudes), computing no masks.
    pub fn push(&mut self, input: &[Spectrum]) {
        let ch = input.len();
        self.newest = (self.newest + 1) % (AHEAD + 1);
        for (d, x) in self.delayed[self.newest].iter_mut().zip(input) {
            d.copy_from_slice(x);
        }
        let slot = self.mags.len() - 1;
        self.mags.rotate_left(1);
        for k in 0..self.bins {
            let mid: Complex<f32> = input.iter().map(|s| s[k]).sum::<Complex<f32>>() / ch as f32;
            self.mags[slot][k] = mid.norm();
        }
    }

    /// Writes the floor's stems of the frame `AHEAD` hops older than the newest into `out`.
    pub fn write_stems(&mut self, out: &mut [Spectrum]) {
        let ch = self.delayed[0].len();
        let centre = TIME_MEDIAN - 1 - AHEAD;
        self.harmonic_masks(centre);
        self.lead_mask(centre);
        let oldest = (self.newest + 1) % (AHEAD + 1);
        for k in 0..self.bins {
            let h = self.harmonic[k];
            let f = k as f32 * self.bin_hz;
            let bass = crossover(f, self.bass_hz);
            let masks = [
                1.0 - h,
                h * bass,
                h * (1.0 - bass) * self.lead[k],
                h * (1.0 - bass) * (1.0 - self.lead[k]),
            ];
            for (stem, m) in masks.iter().enumerate() {
                for c in 0..ch {
                    out[stem * ch + c][k] = self.delayed[oldest][c][k] * *m;
                }
            }
        }
    }

    /// The spectra (per channel) of the frame the last `frame` call wrote stems for.
    pub fn masked_frame(&self) -> &[Spectrum] {
        &self.delayed[(self.newest + 1) % (AHEAD + 1)]
    }

    /// The harmonic share of each bin of frame `centre` (the percussive share is the rest).
    fn harmonic_masks(&mut self, centre: usize) {
        let half = FREQ_MEDIAN / 2;
        for k in 0..self.bins {
            let mut t = [0.0f32; TIME_MEDIAN];
            for (i, m) in self.mags.iter().enumerate() {
                t[i] = m[k];
            }
            let h = median(&mut t);
            let lo = k.saturating_sub(half);
            let hi = (k + half + 1).min(self.bins);
            let n = hi - lo;
            self.sort[..n].copy_from_slice(&self.mags[centre][lo..hi]);
            let p = median(&mut self.sort[..n]);
            let (h2, p2) = (h * h, p * p);
            self.harmonic[k] = if h2 + p2 > 1e-20 { h2 / (h2 + p2) } else { 0.5 };
        }
    }

    /// Marks the harmonics of the most salient pitch of frame `centre`'s harmonic part.
    fn lead_mask(&mut self, centre: usize) {
        self.lead.fill(0.0);
        let mags = &self.mags[centre];
        let harm = |k: usize| mags.get(k).map_or(0.0, |m| m * self.harmonic[k]);
        let total: f32 = (0..self.bins).map(harm).sum();
        let (lo, hi) = (self.lead_hz.0 / self.bin_hz, self.lead_hz.1.max(self.lead_hz.0) / self.bin_hz);
        let (mut best, mut best_f0) = (0.0f32, 0.0f32);
        let mut f0 = lo;
        while f0 <= hi {
            let s: f32 = (1..=HARMONICS)
                .map(|h| harm((f0 * h as f32).round() as usize) * 0.85f32.powi(h as i32 - 1))
                .sum();
            if s > best {
                (best, best_f0) = (s, f0);
            }
            f0 += 0.25;
        }
        // A pitch only when its harmonics hold a fair share of the harmonic energy.
        if best_f0 <= 0.0 || best < 0.15 * total {
            return;
        }
        let mut h = 1.0f32;
        while h * best_f0 < self.bins as f32 {
            let centre_bin = h * best_f0;
            let width = 0.6 + 0.02 * h;
            let from = (centre_bin - 3.0).max(0.0) as usize;
            let to = ((centre_bin + 3.0) as usize).min(self.bins - 1);
            for k in from..=to {
                let d = (k as f32 - centre_bin) / width;
                self.lead[k] = self.lead[k].max((-d * d).exp());
            }
            h += 1.0;
        }
    }
}

/// 1 well below `hz`, 0 well above: a raised cosine over the octave around it.
fn crossover(f: f32, hz: f32) -> f32 {
    let octaves = (f.max(1e-3) / hz).log2();
    if octaves <= -0.5 {
        1.0
    } else if octaves >= 0.5 {
        0.0
    } else {
        0.5 + 0.5 * (std::f32::consts::PI * (octaves + 0.5)).cos()
    }
}

/// The median of a short slice (sorted in place).
fn median(v: &mut [f32]) -> f32 {
    // Insertion sort: a few dozen values, no allocation.
    for i in 1..v.len() {
        let x = v[i];
        let mut j = i;
        while j > 0 && v[j - 1] > x {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = x;
    }
    v[v.len() / 2]
}

/// Copies `n` frames of each input channel into `clean`, NaN and infinities as 0; false when
/// there were any (the caller resets its state). Audio thread.
pub fn finite_copy(clean: &mut [Vec<f32>], inputs: &[&[f32]], n: usize) -> bool {
    let mut finite = true;
    for (c, x) in clean.iter_mut().zip(inputs) {
        for (d, s) in c[..n].iter_mut().zip(&x[..n]) {
            finite &= s.is_finite();
            *d = if s.is_finite() { *s } else { 0.0 };
        }
    }
    finite
}

struct HpssProc {
    stft: Stft,
    masks: StemMasks,
    /// Input with non-finite samples zeroed, per channel.
    clean: Vec<Vec<f32>>,
    resets: Arc<AtomicU64>,
}

impl Processor for HpssProc {
    fn event(&mut self, ev: &EventKind) {
        if let EventKind::Param { index, value } = *ev {
            match index {
                1 => self.masks.bass_hz = value,
                2 => self.masks.lead_hz.0 = value,
                3 => self.masks.lead_hz.1 = value,
                _ => {}
            }
        }
    }

    fn process(&mut self, io: &mut ProcessIo) {
        let n = io.frames;
        if !finite_copy(&mut self.clean, io.inputs, n) {
            self.stft.reset();
            self.masks.reset();
            self.resets.fetch_add(1, Ordering::Relaxed);
        }
        let ins: [&[f32]; 2] = [&self.clean[0][..n], &self.clean[self.clean.len() - 1][..n]];
        let masks = &mut self.masks;
        self.stft.process(&ins[..self.clean.len()], io.outputs, n, |i, o| masks.frame(i, o));
    }
}

impl Drop for HpssProc {
    // Runs where the schedule is freed (control thread), never on the audio thread.
    fn drop(&mut self) {
        let r = self.resets.load(Ordering::Relaxed);
        if r > 0 {
            tracing::warn!("hpss: {r} blocks held NaN or infinite samples; the node reset itself each time");
        }
    }
}

/// The node's latency at any rate: the STFT's size plus its look-ahead.
pub fn latency_frames() -> u32 {
    (FFT_SIZE + AHEAD * HOP) as u32
}

/// Ports and latency of a node that splits `ch` channels into the four stems (`hpss`, `separate`).
pub fn stems_info(ch: usize) -> NodeInfo {
    NodeInfo {
        inputs: vec![PortSpec::new("in", ch)],
        outputs: STEMS.iter().map(|s| PortSpec::new(*s, ch)).collect(),
        latency_frames: latency_frames(),
        ..Default::default()
    }
}

pub const HPSS: NodeType = NodeType {
    name: "hpss",
    doc: "Splits a mix into drums, bass, lead and other stems with spectral median filters (no model); the stems sum to the delayed input.",
    params: HPSS_PARAMS,
    params_of: None,
    build: |p: &Params, ctx: &BuildCtx| {
        let ch = p.usize("channels").clamp(1, 2);
        let stft = Stft::new(FFT_SIZE, HOP, Window::SqrtHann, ch, STEMS.len() * ch)?;
        let mut masks = StemMasks::new(ch, ctx.sample_rate);
        masks.bass_hz = p.f32("bass_hz");
        masks.lead_hz = (p.f32("lead_min_hz"), p.f32("lead_max_hz"));
        let info = stems_info(ch);
        Ok(Built {
            info,
            processor: Box::new(HpssProc {
                stft,
                masks,
                clean: vec![vec![0.0; ctx.max_block]; ch],
                resets: Arc::new(AtomicU64::new(0)),
            }),
        })
    },
};
