//! The worker side of `basic_pitch` (inference thread): the streaming `Transcriber` (front end,
//! CNN on a short context, note tracker, pitch bends read from the contour) and the `Backend`
//! that runs it behind the inference bridge and encodes its notes for the audio thread.

use stagebox_engine::infer::InferBackend;

use super::{BEND_DEAD_ZONE, BEND_STEP, CONTEXT_FRAMES, EVENT_LEN, MAX_EVENTS};
use crate::hcqt::{FrontEndConsts, Hcqt, CONTOUR_BINS, FRAME_LEN, HARMONICS, MAX_CONTEXT};
use crate::tracker::{NoteEvent, Tracker, TrackerParams, KEYS, LOWEST_MIDI};
use crate::{find_model, ModelError, OrtModel};

/// Contour bin (3 a semitone from A0) where key `k` (0 = MIDI 21) sits: the middle one of its
/// three bins (measured: steady tones peak there).
fn centre_bin(k: usize) -> f32 {
    (3 * k + 1) as f32
}

/// Where the pitch is in one frame of the contour output (264 bins), in bins, searching
/// within 4 bins (1⅓ semitones) of `near` (the note's last position, so a bend is followed
/// without straying to a neighbouring note of a chord), weighted by a Gaussian of 3 bins
/// around it, refined between bins by a parabola. `None` where the contour is too weak to say.
pub fn contour_pitch(row: &[f32], near: f32) -> Option<f32> {
    let c = near.round() as isize;
    let lo = (c - 4).max(0);
    let hi = (c + 4).min(CONTOUR_BINS as isize - 1);
    if lo > hi {
        return None;
    }
    let w = |b: isize| row[b as usize] * (-0.5 * ((b as f32 - near) / 3.0).powi(2)).exp();
    let (mut best, mut top) = (lo, f32::MIN);
    for b in lo..=hi {
        let v = w(b);
        if v > top {
            (best, top) = (b, v);
        }
    }
    if top < 0.2 {
        return None;
    }
    let mut delta = 0.0;
    if best > lo && best < hi {
        let (y0, y1, y2) = (w(best - 1), top, w(best + 1));
        let d = y0 - 2.0 * y1 + y2;
        if d < 0.0 {
            delta = (0.5 * (y0 - y2) / d).clamp(-0.5, 0.5);
        }
    }
    Some(best as f32 + delta)
}

/// Per-note bend state on the worker: where the pitch was last seen (bins), the last three
/// estimates (a median drops one-frame outliers) and the last bend sent (semitones).
#[derive(Clone, Copy, Default)]
struct BendTrack {
    pos: f32,
    hist: [f32; 3],
    n: usize,
    sent: f32,
}

impl BendTrack {
    fn start(k: usize) -> Self {
        Self {
            pos: centre_bin(k),
            ..Default::default()
        }
    }
}

/// No key.
const NO_KEY: u8 = 0xff;

/// The streaming transcriber (inference worker thread): front end, CNN on a short context,
/// tracker. `push_hop` takes `hop_frames * 256` new samples at 22050 Hz.
pub struct Transcriber {
    fe: Hcqt,
    cnn: OrtModel,
    hcqt: Vec<f32>,
    outs: Vec<Vec<f32>>,
    note_i: usize,
    onset_i: usize,
    contour_i: usize,
    pub tracker: Tracker,
    bends: [BendTrack; KEYS],
    /// Glides: a tracker key that is the continuation of another key's note (a bend that went
    /// past the next semitone) maps to that key; the note is not struck again.
    alias: [u8; KEYS],
    /// Notes sounding on the output, by key.
    out_active: [bool; KEYS],
    /// Pitch bends of sounding notes from the last `push_hop`: (frame, MIDI key, semitones).
    pub bend_events: Vec<(u64, u8, f32)>,
    hop_frames: usize,
    look: usize,
    /// Hops pushed.
    hops: u64,
    /// Time spent in the front end and in the CNN (for the benchmark).
    pub front_end_ns: u64,
    pub cnn_ns: u64,
}

impl Transcriber {
    /// Loads `models/basic_pitch_stream` (control thread).
    pub fn load(hop_frames: usize, look: usize, tracker: TrackerParams) -> Result<Transcriber, ModelError> {
        let m = find_model("basic_pitch_stream")?;
        let consts = FrontEndConsts::load(&m.data_path("frontend")?).map_err(|msg| ModelError::Ort {
            model: m.name.clone(),
            msg,
        })?;
        let mut cnn = OrtModel::load(m)?;
        let err = |msg: &str| ModelError::Ort {
            model: cnn.manifest.name.clone(),
            msg: msg.into(),
        };
        let note_i = cnn
            .manifest
            .output_index("note")
            .ok_or_else(|| err("manifest has no `note` output"))?;
        let onset_i = cnn
            .manifest
            .output_index("onset")
            .ok_or_else(|| err("manifest has no `onset` output"))?;
        let contour_i = cnn
            .manifest
            .output_index("contour")
            .ok_or_else(|| err("manifest has no `contour` output"))?;
        let frames = CONTEXT_FRAMES + hop_frames + look;
        if frames > MAX_CONTEXT {
            return Err(err("hop_frames + lookahead_frames is too large"));
        }
        // Warm up at the size the stream uses.
        let mut outs = Vec::new();
        cnn.run_shaped(
            &[1, frames as i64, CONTOUR_BINS as i64, HARMONICS as i64],
            &vec![0.0; frames * FRAME_LEN],
            &mut outs,
        )?;
        Ok(Transcriber {
            fe: Hcqt::new(consts),
            cnn,
            hcqt: vec![0.0; frames * FRAME_LEN],
            outs,
            note_i,
            onset_i,
            contour_i,
            tracker: Tracker::new(tracker),
            bends: [BendTrack::default(); KEYS],
            alias: [NO_KEY; KEYS],
            out_active: [false; KEYS],
            bend_events: Vec::with_capacity(KEYS * 16),
            hop_frames,
            look,
            hops: 0,
            front_end_ns: 0,
            cnn_ns: 0,
        })
    }

    /// Frames each run decides.
    pub fn hop_frames(&self) -> usize {
        self.hop_frames
    }

    /// The first frame the next `push_hop` decides (negative at the start).
    pub fn next_decided(&self) -> i64 {
        (self.hops * self.hop_frames as u64) as i64 - self.look as i64
    }

    /// Takes one hop of samples; decides the frames that now have their lookahead, and puts
    /// the notes that start or end in them into `events`.
    pub fn push_hop(&mut self, x: &[f32], events: &mut Vec<NoteEvent>) -> Result<(), ModelError> {
        let t0 = std::time::Instant::now();
        self.fe.push(x);
        self.hops += 1;
        let newest = self.fe.newest_frame();
        let frames = CONTEXT_FRAMES + self.hop_frames + self.look;
        let first = newest - frames as i64 + 1;
        self.fe.context(first, frames, &mut self.hcqt);
        let t1 = std::time::Instant::now();
        self.cnn.run_shaped(
            &[1, frames as i64, CONTOUR_BINS as i64, HARMONICS as i64],
            &self.hcqt,
            &mut self.outs,
        )?;
        self.front_end_ns += (t1 - t0).as_nanos() as u64;
        self.cnn_ns += t1.elapsed().as_nanos() as u64;
        let outs = std::mem::take(&mut self.outs);
        let (note, onset, contour) = (&outs[self.note_i], &outs[self.onset_i], &outs[self.contour_i]);
        debug_assert_eq!(note.len(), frames * KEYS);
        self.bend_events.clear();
        let decided = newest - self.look as i64 - self.hop_frames as i64 + 1;
        for g in decided..decided + self.hop_frames as i64 {
            if g < 0 {
                continue;
            }
            let j = (g - first) as usize;
            let before = events.len();
            self.tracker.frame(g as u64, onset, note, j, events);
            self.glides(g as u64, &note[j * KEYS..(j + 1) * KEYS], before, events);
            let row = &contour[j * CONTOUR_BINS..(j + 1) * CONTOUR_BINS];
            for k in 0..KEYS {
                if !self.out_active[k] {
                    continue;
                }
                let t = &mut self.bends[k];
                let Some(pos) = contour_pitch(row, t.pos) else { continue };
                // Not further than 2 semitones from the note (past that it is a new note).
                let pos = pos.clamp(centre_bin(k) - 6.0, centre_bin(k) + 6.0);
                t.pos = pos;
                t.hist[t.n % 3] = (pos - centre_bin(k)) / 3.0;
                t.n += 1;
                let m = if t.n >= 3 {
                    let [a, b, c] = t.hist;
                    a.max(b).min(a.min(b).max(c))
                } else {
                    t.hist[(t.n - 1) % 3]
                };
                let m = if m.abs() < BEND_DEAD_ZONE { 0.0 } else { m };
                if (m - t.sent).abs() >= BEND_STEP || (m == 0.0 && t.sent != 0.0) {
                    t.sent = m;
                    self.bend_events.push((g as u64, LOWEST_MIDI + k as u8, m));
                }
            }
        }
        if self.tracker.params.second_look {
            let upto = (decided + self.hop_frames as i64 - 1).max(0) as u64;
            for g in decided - self.hop_frames as i64..decided {
                if g < 0 {
                    continue;
                }
                let j = (g - first) as usize;
                let before = events.len();
                self.tracker.late_frame(g as u64, onset, note, j, upto, events);
                self.glides(g as u64, &note[j * KEYS..(j + 1) * KEYS], before, events);
            }
        }
        self.outs = outs;
        Ok(())
    }

    /// The key a sounding note on key `k` has bent into, if its pitch is nearer that key's
    /// (at most 2 semitones away) and that key's note activation is up.
    fn glide_target(&self, k: usize, note: &[f32], threshold: f32) -> Option<usize> {
        if !self.out_active[k] {
            return None;
        }
        let kk = ((self.bends[k].pos - 1.0) / 3.0).round() as isize;
        let d = kk - k as isize;
        if d == 0 || d.abs() > 2 || kk < 0 || kk >= KEYS as isize {
            return None;
        }
        let kk = kk as usize;
        (note[kk] >= threshold && !self.tracker.is_active(kk) && self.alias[kk] == NO_KEY).then_some(kk)
    }

    /// Turns the tracker's events from `events[from..]` into the output's: a note-on next to
    /// a sounding note whose pitch has already bent to it continues that note (a glide); the
    /// note ends when the last key carrying it ends.
    fn glides(&mut self, frame: u64, note: &[f32], from: usize, events: &mut Vec<NoteEvent>) {
        let threshold = self.tracker.params.frame_threshold;
        let mut i = from;
        while i < events.len() {
            let e = events[i];
            let k = (e.midi - LOWEST_MIDI) as usize;
            let keep = if e.velocity > 0 {
                let glide_from = (k.saturating_sub(2)..=(k + 2).min(KEYS - 1))
                    .find(|&k1| k1 != k && self.out_active[k1] && (self.bends[k1].pos - centre_bin(k)).abs() < 1.5);
                match glide_from {
                    Some(k1) => {
                        self.alias[k] = k1 as u8;
                        false
                    }
                    None => {
                        self.alias[k] = NO_KEY;
                        self.out_active[k] = true;
                        self.bends[k] = BendTrack::start(k);
                        true
                    }
                }
            } else if self.alias[k] != NO_KEY {
                // A glide's key ends: the note it carried ends unless its own key or another
                // glide still sounds.
                let k1 = self.alias[k] as usize;
                self.alias[k] = NO_KEY;
                let carried = self.tracker.is_active(k1) || self.alias.contains(&(k1 as u8));
                if !carried && self.out_active[k1] {
                    self.out_active[k1] = false;
                    events[i].midi = LOWEST_MIDI + k1 as u8;
                    true
                } else {
                    false
                }
            } else if self.alias.contains(&(k as u8)) {
                // The note's own key ends while a glide carries it on.
                false
            } else if let Some(k2) = self.glide_target(k, note, threshold) {
                // The note's key ends because its pitch has bent into the next key, which has
                // no onset of its own: that key carries the note on.
                self.tracker.carry_on(k2, frame);
                self.alias[k2] = k as u8;
                false
            } else {
                let was = self.out_active[k];
                self.out_active[k] = false;
                was
            };
            if keep {
                i += 1;
            } else {
                events.remove(i);
            }
        }
    }
}

/// Worker side of the node: the transcriber behind the bridge.
pub(super) struct Backend {
    tr: Transcriber,
    events: Vec<NoteEvent>,
    next_seq: u64,
    silence: Vec<f32>,
}

impl Backend {
    /// `hop`: the samples (22050 Hz) a window brings (control thread).
    pub(super) fn new(tr: Transcriber, hop: usize) -> Backend {
        Backend {
            tr,
            events: Vec::with_capacity(MAX_EVENTS * 2),
            next_seq: 0,
            silence: vec![0.0; hop],
        }
    }
}

impl InferBackend for Backend {
    fn infer(&mut self, seq: u64, input: &[f32], output: &mut [f32]) -> Result<(), String> {
        self.events.clear();
        // A dropped window leaves a gap: keep the timeline with silence (notes that end in it
        // are still sent, late, so none is left hanging).
        while self.next_seq < seq {
            let silence = std::mem::take(&mut self.silence);
            let r = self.tr.push_hop(&silence, &mut self.events);
            self.silence = silence;
            r.map_err(|e| e.to_string())?;
            self.next_seq += 1;
        }
        let first = self.tr.next_decided().max(0) as u64;
        self.tr.push_hop(input, &mut self.events).map_err(|e| e.to_string())?;
        self.next_seq = seq + 1;
        // Encode: [count, (frame - first, kind, key, velocity or semitones) ...], notes first:
        // a note-on comes before its first bend (the audio side keeps the order).
        let notes = self.events.iter().map(|e| (e.frame, 0.0, e.midi, e.velocity as f32));
        let bends = self.tr.bend_events.iter().map(|&(f, m, b)| (f, 1.0, m, b));
        let mut n = 0;
        for (frame, kind, midi, value) in notes.chain(bends).take(MAX_EVENTS) {
            let o = &mut output[1 + n * EVENT_LEN..1 + (n + 1) * EVENT_LEN];
            o[0] = frame as f32 - first as f32;
            o[1] = kind;
            o[2] = midi as f32;
            o[3] = value;
            n += 1;
        }
        output[0] = n as f32;
        Ok(())
    }
}
