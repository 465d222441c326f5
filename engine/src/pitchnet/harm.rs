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
//!
//! `SBPNET03` (train_harm.py `--rise`) is the same network whose notes also read how much each of
//! their harmonics rose: the row minus the same row read from the spectra of the window that ended
//! `RISE_BACK` samples earlier (scaled by the newest window's peak; they follow the level in the
//! features). A note struck over one still ringing rises; the ringing one does not.
//!
//! `SBPNET04` (train_harm.py `--period`) is `SBPNET03` whose rows also hold each note's
//! periodicity (period.rs; those values follow the earlier window's spectra in the features),
//! after its harmonics: its neighbours' come with their rows.

use super::period::VALUES as PERIOD_VALUES;
use super::{dense, Layer, Reader, INPUTS, SIZES};

/// The scaled spectra's lowest value, read beyond a spectrum's top bin.
const FLOOR: f32 = -1.0;
const RATE_HZ: f64 = 16000.0;

pub(super) struct HarmNet {
    pub(super) notes: usize,
    /// Per note, per (spectrum, ratio): the lower bin's feature index (None: `FLOOR`) and weight.
    taps: Vec<(Option<u16>, f32)>,
    /// A note's harmonics (spectra times ratios).
    harmonics: usize,
    /// A note's row: its harmonics, then (`SBPNET04`) its periodicity.
    row: usize,
    /// `SBPNET03` and `SBPNET04`: each note reads its harmonics' rise too.
    pub(super) rise: bool,
    /// `SBPNET04`: each note's row holds its periodicity too.
    pub(super) period: bool,
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
    /// biases), the note layer's weights and bias, the per-note biases, none1, none2. With `rise`
    /// (`SBPNET03`) l1 takes the harmonics' rise more; with `period` (`SBPNET04`, which rises too)
    /// each of its three rows the periodicity more.
    pub(super) fn parse(r: &mut Reader, rise: bool, period: bool) -> Result<(Self, u8), String> {
        let rise = rise || period;
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
        let harmonics = SIZES.len() * n_ratios;
        let row = harmonics + if period { PERIOD_VALUES } else { 0 };
        let net = Self {
            notes,
            taps: taps(notes, lowest, &ratios),
            harmonics,
            row,
            rise,
            period,
            l1: r.layer(3 * row + 1 + if rise { harmonics } else { 0 }, width)?,
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
    /// spectra and the level; for `rise`, then the earlier window's spectra; for `period`, then
    /// each note's periodicity), with `s`'s buffers.
    pub(super) fn run(&self, features: &[f32], s: &mut HarmScratch, out: &mut [f32]) {
        let level = features[INPUTS - 1];
        let (row, harmonics) = (self.row, self.harmonics);
        let periods = &features[(2 * INPUTS - 1).min(features.len())..];
        // Rows 0 and notes + 1 stay FLOOR (made so in `HarmScratch::new`).
        for p in 0..self.notes {
            let at = (p + 1) * row;
            read_taps(
                &self.taps[p * harmonics..(p + 1) * harmonics],
                features,
                &mut s.stack[at..at + harmonics],
            );
            if self.period {
                s.stack[at + harmonics..at + row].copy_from_slice(&periods[p * PERIOD_VALUES..(p + 1) * PERIOD_VALUES]);
            }
        }
        if self.rise {
            read_taps(&self.taps, &features[INPUTS..], &mut s.past);
        }
        s.pooled.fill(0.0);
        for p in 0..self.notes {
            s.input[..3 * row].copy_from_slice(&s.stack[p * row..(p + 3) * row]);
            s.input[3 * row] = level;
            if self.rise {
                let now = &s.stack[(p + 1) * row..(p + 1) * row + harmonics];
                let before = &s.past[p * harmonics..(p + 1) * harmonics];
                for ((d, &a), &b) in s.input[3 * row + 1..].iter_mut().zip(now).zip(before) {
                    *d = a - b;
                }
            }
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

/// Each note's harmonics read from `spectra` (the three scaled spectra) at `taps` into `out`.
fn read_taps(taps: &[(Option<u16>, f32)], spectra: &[f32], out: &mut [f32]) {
    for (o, &(i0, w)) in out.iter_mut().zip(taps) {
        *o = match i0 {
            Some(i) => spectra[i as usize] * w + spectra[i as usize + 1] * (1.0 - w),
            None => FLOOR,
        };
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
    /// `rise`: the notes' rows read from the earlier window's spectra.
    past: Vec<f32>,
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
            past: vec![FLOOR; if net.rise { net.notes * net.harmonics } else { 0 }],
            input: vec![0.0; net.l1.inputs],
            h1: vec![0.0; net.width()],
            h2: vec![0.0; net.width()],
            pooled: vec![0.0; net.width() + 1],
            none_h: vec![0.0; net.none1.outputs],
        }
    }
}
