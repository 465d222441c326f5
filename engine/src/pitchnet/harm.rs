//! A pitch network shared across notes (`SBPNET02`): every candidate note reads its own
//! harmonics from the same three scaled log spectra the perceptron reads, and one small network,
//! the same for every note, turns them into that note's logit; a second reads the pooled hidden
//! units and the level for "no note". Made by `models/melody_net/train_harm.py` (its `HarmNet`).
//!
//! Threads: `HarmNet::parse` runs on the control thread (it allocates); `HarmNet::run` runs on the
//! audio thread into buffers `HarmScratch::new` made, with no allocation and bounded work.
//!
//! For note p (MIDI `lowest + p`) and each ratio r, for each spectrum (128, 256, 512 samples at
//! 16 kHz), the value at the fractional bin `r * f0(p) / (16000 / n)`, linearly interpolated;
//! `FLOOR` where the spectrum cannot hold the frequency. A note's input is its row with the rows
//! of the notes a semitone under and over it (`FLOOR` beyond the ends) and the level.

use super::{dense, Layer, Reader, SIZES};

/// The scaled spectra's lowest value, read beyond a spectrum's top bin.
const FLOOR: f32 = -1.0;
const RATE_HZ: f64 = 16000.0;

pub(super) struct HarmNet {
    pub(super) notes: usize,
    /// Per note, per (spectrum, ratio): the lower bin's feature index (None: `FLOOR`) and weight.
    taps: Vec<(Option<u16>, f32)>,
    row: usize,
    l1: Layer,
    l2: Layer,
    note_w: Vec<f32>,
    note_b: f32,
    note_bias: Vec<f32>,
    none1: Layer,
    none2: Layer,
}

impl HarmNet {
    /// The body of an `SBPNET02` file after its magic: u32 notes, lowest MIDI note, ratios,
    /// width, the no-note layer's width; f32 ratios; then l1, l2 (weights `[outputs][inputs]`,
    /// biases), the note layer's weights and bias, the per-note biases, none1, none2.
    pub(super) fn parse(r: &mut Reader) -> Result<(Self, u8), String> {
        let (notes, lowest, n_ratios, width, none_width) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        if notes == 0
            || lowest + notes > 128
            || n_ratios == 0
            || n_ratios > 64
            || width == 0
            || width > 1024
            || none_width == 0
            || none_width > 1024
        {
            return Err(format!(
                "implausible shape: {notes} notes from MIDI {lowest}, {n_ratios} ratios, width {width} and {none_width}"
            ));
        }
        let ratios = r.floats(n_ratios)?;
        if ratios.iter().any(|&x| x <= 0.0) {
            return Err("a harmonic ratio that is not positive".into());
        }
        let row = SIZES.len() * n_ratios;
        let net = Self {
            notes,
            taps: taps(notes, lowest, &ratios),
            row,
            l1: r.layer(3 * row + 1, width)?,
            l2: r.layer(width, width)?,
            note_w: r.floats(width)?,
            note_b: r.floats(1)?[0],
            note_bias: r.floats(notes)?,
            none1: r.layer(width + 1, none_width)?,
            none2: r.layer(none_width, 1)?,
        };
        Ok((net, lowest as u8))
    }

    pub(super) fn width(&self) -> usize {
        self.l1.outputs
    }

    /// Audio thread: logits ("no note", then each note) into `out` from `features` (the scaled
    /// spectra and the level), with `s`'s buffers.
    pub(super) fn run(&self, features: &[f32], s: &mut HarmScratch, out: &mut [f32]) {
        let level = features[features.len() - 1];
        let row = self.row;
        // Rows 0 and notes + 1 stay FLOOR (made so in `HarmScratch::new`).
        for (k, &(i0, w)) in self.taps.iter().enumerate() {
            s.stack[row + k] = match i0 {
                Some(i) => features[i as usize] * w + features[i as usize + 1] * (1.0 - w),
                None => FLOOR,
            };
        }
        s.pooled.fill(0.0);
        for p in 0..self.notes {
            s.input[..3 * row].copy_from_slice(&s.stack[p * row..(p + 3) * row]);
            s.input[3 * row] = level;
            dense(&self.l1, &s.input, &mut s.h1, true);
            dense(&self.l2, &s.h1, &mut s.h2, true);
            let dot: f32 = self.note_w.iter().zip(&s.h2).map(|(a, b)| a * b).sum();
            out[1 + p] = dot + self.note_b + self.note_bias[p];
            // ReLU outputs are at least 0, so pooling from 0 is the maximum.
            for (m, &h) in s.pooled.iter_mut().zip(&s.h2) {
                *m = m.max(h);
            }
        }
        s.pooled[self.width()] = level;
        dense(&self.none1, &s.pooled, &mut s.none_h, true);
        let mut none = [0.0f32];
        dense(&self.none2, &s.none_h, &mut none, false);
        out[0] = none[0];
    }
}

/// Where each note's ratio falls in each spectrum, as `train_harm.stack_index` computes it.
fn taps(notes: usize, lowest: usize, ratios: &[f32]) -> Vec<(Option<u16>, f32)> {
    let mut out = Vec::with_capacity(notes * SIZES.len() * ratios.len());
    for p in lowest..lowest + notes {
        let f0 = 440.0 * 2f64.powf((p as f64 - 69.0) / 12.0);
        let mut offset = 0;
        for &n in &SIZES {
            let bins = n / 2 + 1;
            for &r in ratios {
                let b = r as f64 * f0 / (RATE_HZ / n as f64);
                out.push(if b >= (bins - 1) as f64 {
                    (None, 1.0)
                } else {
                    ((Some((offset + b.floor() as usize) as u16)), (1.0 - (b - b.floor())) as f32)
                });
            }
            offset += bins;
        }
    }
    out
}

/// Buffers for `HarmNet::run`, made on the control thread.
pub(super) struct HarmScratch {
    /// The notes' rows with a FLOOR row either side.
    stack: Vec<f32>,
    input: Vec<f32>,
    h1: Vec<f32>,
    h2: Vec<f32>,
    /// The hidden units' maximum over notes, then the level.
    pooled: Vec<f32>,
    none_h: Vec<f32>,
}

impl HarmScratch {
    pub(super) fn new(net: &HarmNet) -> Self {
        Self {
            stack: vec![FLOOR; (net.notes + 2) * net.row],
            input: vec![0.0; 3 * net.row + 1],
            h1: vec![0.0; net.width()],
            h2: vec![0.0; net.width()],
            pooled: vec![0.0; net.width() + 1],
            none_h: vec![0.0; net.none1.outputs],
        }
    }
}
