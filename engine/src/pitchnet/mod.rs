//! The `melody` node's pitch network: which note sounds now, from the newest 8, 16 and 32 ms of
//! 16 kHz audio, early in an attack, before a clean period is there for YIN.
//!
//! Threads: `PitchNet::load`/`from_bytes` and `NetRunner::new` run on the control thread (they
//! allocate); `NetRunner::run` runs on the audio thread: fixed buffers made in `new`, planned
//! FFTs run with their scratch, a bounded amount of work (0.35 M multiply-adds for the
//! perceptron, 0.4-0.7 M for the harmonic networks, periodicity included), no allocation, no locks.
//!
//! The network and its features are made by `models/melody_net/train.py` (the features here equal
//! that script's; `models/tests/melody_net.rs` checks them and the outputs against its
//! reference). Features: for each window size (128, 256, 512 samples, ending at the newest
//! sample), `ln(|rfft(x * hann)| + 1e-5)`, concatenated; the largest value `m` is taken off and
//! the values clipped at -12 and scaled (`max(f - m, -12) / 6 + 1`), with `m / 6` appended.
//! Three kinds of network, by the file's magic, all ending in a softmax over "no note" and the MIDI
//! notes from its lowest: `SBPNET01`, two ReLU layers over the features (train.py); `SBPNET02`,
//! one small network shared across notes over each note's harmonics (harm.rs, train_harm.py);
//! `SBPNET03`, that network reading its harmonics' rise too, from the same spectra of the window
//! that ended `RISE_BACK` samples earlier (scaled by the newest window's peak `m`, appended to the
//! features); `SBPNET04`, that network whose notes also read the sound's periodicity at their
//! period (period.rs; appended after those, unscaled).

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// Window sizes of the three spectra, in 16 kHz samples.
pub const SIZES: [usize; 3] = [128, 256, 512];
/// Samples a run needs (the longest window; an `SBPNET03` network reads `RISE_BACK` more, zeros
/// where they are not given).
pub const HISTORY: usize = 512;
/// How far back (16 kHz samples, 32 ms) the window ends whose spectra an `SBPNET03` network
/// compares with the newest.
pub const RISE_BACK: usize = 512;
/// Inputs of the network: the three spectra and the level.
pub const INPUTS: usize = 128 / 2 + 1 + 256 / 2 + 1 + 512 / 2 + 1 + 1;

const MAGIC: &[u8; 8] = b"SBPNET01";
const MAGIC_HARM: &[u8; 8] = b"SBPNET02";
const MAGIC_RISE: &[u8; 8] = b"SBPNET03";
const MAGIC_PERIOD: &[u8; 8] = b"SBPNET04";

mod harm;
mod period;
use harm::{HarmNet, HarmScratch};
use period::PeriodTable;

struct Layer {
    inputs: usize,
    outputs: usize,
    /// `[outputs][inputs]`.
    w: Vec<f32>,
    b: Vec<f32>,
}

/// Reads little-endian values from a network file, with clear errors.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u32(&mut self) -> Result<usize, String> {
        let b = self.bytes.get(self.at..self.at + 4).ok_or("the file ends early, in its header")?;
        self.at += 4;
        Ok(u32::from_le_bytes(b.try_into().unwrap()) as usize)
    }
    fn floats_raw(&mut self, n: usize) -> Result<Vec<f32>, String> {
        let end = self.at + 4 * n;
        if end > self.bytes.len() {
            return Err(format!("the file ends early ({} bytes; the shape needs more)", self.bytes.len()));
        }
        let v = self.bytes[self.at..end]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        self.at = end;
        Ok(v)
    }
    fn floats(&mut self, n: usize) -> Result<Vec<f32>, String> {
        let v = self.floats_raw(n)?;
        if v.iter().any(|x| !x.is_finite()) {
            return Err("weights that are not finite".into());
        }
        Ok(v)
    }
    fn layer(&mut self, inputs: usize, outputs: usize) -> Result<Layer, String> {
        let w = self.floats(inputs * outputs)?;
        let b = self.floats(outputs)?;
        Ok(Layer { inputs, outputs, w, b })
    }
}

enum Kind {
    /// `SBPNET01`: two ReLU layers and the output layer over the features.
    Perceptron([Layer; 3]),
    /// `SBPNET02`: one network shared across notes over each note's harmonics (harm.rs).
    Harmonic(HarmNet),
}

/// A trained network, read from `net.bin` (formats in `models/melody_net/train.py` and
/// `train_harm.py`).
pub struct PitchNet {
    kind: Kind,
    lowest: u8,
    classes: usize,
}

impl PitchNet {
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let magic = bytes.get(..8);
        let mut r = Reader { bytes, at: 8 };
        let net = if magic == Some(MAGIC_HARM) || magic == Some(MAGIC_RISE) || magic == Some(MAGIC_PERIOD) {
            let (net, lowest) = HarmNet::parse(&mut r, magic == Some(MAGIC_RISE), magic == Some(MAGIC_PERIOD))?;
            Self {
                classes: net.notes + 1,
                kind: Kind::Harmonic(net),
                lowest,
            }
        } else if magic == Some(MAGIC) {
            Self::parse_perceptron(&mut r)?
        } else {
            return Err("not a Stagebox pitch network (SBPNET01 to SBPNET04)".into());
        };
        if r.at != bytes.len() {
            return Err(format!("{} bytes after the last layer", bytes.len() - r.at));
        }
        Ok(net)
    }

    /// `SBPNET01` after its magic: u32 inputs, hidden1, hidden2, classes, lowest MIDI note; then
    /// each layer's weights `[outputs][inputs]` and biases.
    fn parse_perceptron(r: &mut Reader) -> Result<Self, String> {
        let (inputs, h1, h2, classes, lowest) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        if inputs != INPUTS {
            return Err(format!("the network takes {inputs} inputs; these features are {INPUTS}"));
        }
        if classes < 2 || lowest + classes - 1 > 128 || h1 == 0 || h2 == 0 || h1 > 4096 || h2 > 4096 {
            return Err(format!(
                "implausible shape: {h1} and {h2} hidden, {classes} classes from MIDI {lowest}"
            ));
        }
        let layers = [r.layer(inputs, h1)?, r.layer(h1, h2)?, r.layer(h2, classes)?];
        Ok(Self {
            kind: Kind::Perceptron(layers),
            lowest: lowest as u8,
            classes,
        })
    }

    /// Number of outputs: "no note" and one per MIDI note from `lowest()`.
    pub fn classes(&self) -> usize {
        self.classes
    }
    pub fn lowest(&self) -> u8 {
        self.lowest
    }
}

/// Runs a network on the newest audio, with every buffer it needs made in advance.
pub struct NetRunner {
    net: Arc<PitchNet>,
    ffts: Vec<Arc<dyn RealToComplex<f32>>>,
    windows: Vec<Vec<f32>>,
    frame: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    features: Vec<f32>,
    hidden: [Vec<f32>; 2],
    harm: Option<HarmScratch>,
    /// `SBPNET04`: each note's periodicity.
    period: Option<PeriodTable>,
    probs: Vec<f32>,
}

/// Control thread: a Hann window of `n` points without its zero end points (numpy's
/// `hanning(n + 2)[1:-1]`), the window the network's features were trained with; the melody
/// node's spectral flux uses it too.
pub(crate) fn hann_inner(n: usize) -> Vec<f32> {
    (0..n)
        .map(|k| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * (k + 1) as f64 / (n + 1) as f64).cos()) as f32)
        .collect()
}

impl NetRunner {
    /// Control thread: plans the FFTs and makes the buffers.
    pub fn new(net: Arc<PitchNet>) -> Self {
        let mut planner = RealFftPlanner::<f32>::new();
        let ffts: Vec<_> = SIZES.iter().map(|&n| planner.plan_fft_forward(n)).collect();
        let scratch_len = ffts.iter().map(|f| f.get_scratch_len()).max().unwrap_or(0);
        let windows = SIZES.iter().map(|&n| hann_inner(n)).collect();
        let (h1, h2) = match &net.kind {
            Kind::Perceptron(l) => (l[0].outputs, l[1].outputs),
            Kind::Harmonic(_) => (0, 0),
        };
        let harm = match &net.kind {
            Kind::Harmonic(h) => Some(HarmScratch::new(h)),
            Kind::Perceptron(_) => None,
        };
        let classes = net.classes;
        let rise = matches!(&net.kind, Kind::Harmonic(h) if h.rise);
        let period = match &net.kind {
            Kind::Harmonic(h) if h.period => Some(PeriodTable::new(h.notes, net.lowest as usize, HISTORY + RISE_BACK)),
            _ => None,
        };
        let periods = period.as_ref().map_or(0, |_| (classes - 1) * period::VALUES);
        Self {
            net,
            ffts,
            windows,
            frame: vec![0.0; HISTORY],
            spectrum: vec![Complex::new(0.0, 0.0); HISTORY / 2 + 1],
            scratch: vec![Complex::new(0.0, 0.0); scratch_len],
            features: vec![0.0; if rise { 2 * INPUTS - 1 + periods } else { INPUTS }],
            hidden: [vec![0.0; h1], vec![0.0; h2]],
            harm,
            period,
            probs: vec![0.0; classes],
        }
    }

    /// Audio thread. Computes the features of `x` (the newest samples, oldest first; at least
    /// `HISTORY`) into `features()`: the scaled spectra and the level, then for an `SBPNET03`
    /// network the spectra of the window ending `RISE_BACK` samples earlier, scaled alike; for an
    /// `SBPNET04` network then each note's periodicity (period.rs).
    pub fn compute_features(&mut self, x: &[f32]) {
        debug_assert!(x.len() >= HISTORY);
        let spectra = INPUTS - 1;
        self.log_spectra(x, x.len(), 0);
        let top = self.features[..spectra].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        self.features[spectra] = top / 6.0;
        let past = self.features.len() > INPUTS;
        if past {
            self.log_spectra(x, x.len().saturating_sub(RISE_BACK), INPUTS);
        }
        let scaled = if past { 2 * INPUTS - 1 } else { INPUTS };
        for (k, f) in self.features[..scaled].iter_mut().enumerate() {
            if k != spectra {
                *f = (*f - top).max(-12.0) / 6.0 + 1.0;
            }
        }
        if let Some(t) = &mut self.period {
            t.compute(x, &mut self.features[scaled..]);
        }
    }

    /// The three log spectra of the windows of `x` ending (exclusive) at `end` (zeros before
    /// `x`'s start) into `features[at..at + INPUTS - 1]`.
    fn log_spectra(&mut self, x: &[f32], end: usize, at: usize) {
        let mut off = at;
        for (s, &n) in SIZES.iter().enumerate() {
            let missing = n.saturating_sub(end);
            self.frame[..missing].fill(0.0);
            let src = &x[end + missing - n..end];
            for ((d, &v), &w) in self.frame[missing..n].iter_mut().zip(src).zip(&self.windows[s][missing..]) {
                *d = v * w;
            }
            let bins = n / 2 + 1;
            // An FFT of the planned size with buffers of the planned sizes cannot fail.
            let _ = self.ffts[s].process_with_scratch(&mut self.frame[..n], &mut self.spectrum[..bins], &mut self.scratch);
            for (f, c) in self.features[off..off + bins].iter_mut().zip(&self.spectrum[..bins]) {
                *f = (c.norm() + 1e-5).ln();
            }
            off += bins;
        }
    }

    /// Audio thread. Runs the network on the newest samples `x` (oldest first; at least
    /// `HISTORY`): the likeliest MIDI note (None: no note) and its probability.
    pub fn run(&mut self, x: &[f32]) -> (Option<u8>, f32) {
        self.compute_features(x);
        let Self {
            net,
            features,
            hidden,
            harm,
            probs,
            ..
        } = self;
        match (&net.kind, harm) {
            (Kind::Perceptron(layers), _) => {
                let [h1, h2] = hidden;
                dense(&layers[0], features, h1, true);
                dense(&layers[1], h1, h2, true);
                dense(&layers[2], h2, probs, false);
            }
            (Kind::Harmonic(h), Some(scratch)) => h.run(features, scratch, probs),
            // `new` makes the scratch for every harmonic network; never reached.
            (Kind::Harmonic(_), None) => probs.fill(0.0),
        }
        let max = probs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for p in probs.iter_mut() {
            *p = (*p - max).exp();
            sum += *p;
        }
        let (mut best, mut best_p) = (0, 0.0);
        for (k, p) in probs.iter_mut().enumerate() {
            *p /= sum;
            if *p > best_p {
                (best, best_p) = (k, *p);
            }
        }
        let note = (best > 0).then(|| net.lowest + (best - 1) as u8);
        (note, best_p)
    }

    pub fn features(&self) -> &[f32] {
        &self.features
    }
    /// Probabilities of the last run: "no note", then each note from `PitchNet::lowest`.
    pub fn probabilities(&self) -> &[f32] {
        &self.probs
    }
}

fn dense(layer: &Layer, x: &[f32], y: &mut [f32], relu: bool) {
    for (o, out) in y.iter_mut().enumerate().take(layer.outputs) {
        let row = &layer.w[o * layer.inputs..(o + 1) * layer.inputs];
        // Eight partial sums: the compiler keeps them in vector registers.
        let mut acc = [0.0f32; 8];
        let chunks = row.chunks_exact(8).zip(x.chunks_exact(8));
        for (w, v) in chunks {
            for k in 0..8 {
                acc[k] += w[k] * v[k];
            }
        }
        let tail = layer.inputs - layer.inputs % 8;
        let mut s = layer.b[o] + acc.iter().sum::<f32>();
        for k in tail..layer.inputs {
            s += row[k] * x[k];
        }
        *out = if relu { s.max(0.0) } else { s };
    }
}
