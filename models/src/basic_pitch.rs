//! `basic_pitch`: polyphonic pitch-to-MIDI with Spotify's Basic Pitch, incrementally. The
//! processor (audio thread) resamples its input to 22050 Hz and hands each hop of new samples
//! (`hop_frames` frames of 256) to the inference worker. The worker (inference thread) keeps the
//! model's front end running (models/src/hcqt.rs: the harmonic CQT, each frame computed once
//! its input has arrived), runs the model's CNN (`models/basic_pitch_stream`, split from the
//! original) on a short context of frames (12 before, the new ones, `lookahead_frames` after),
//! and gives the frames that now have their lookahead to the causal note tracker. The notes
//! come back to the processor, which emits each at its frame's time plus the node's declared
//! latency (hop + lookahead + resampler + `margin_ms` for the worker's run).
//!
//! The CNN sees 12 frames on each side of a frame, so with 12 frames of context before the new
//! ones its activations equal the whole model's; only the newest frames (within the lookahead)
//! differ, by the future the model has not heard yet, as at the end of the original's window.

use stagebox_engine::dsp::Resampler;
use stagebox_engine::infer::{Bridge, InferBackend};
use stagebox_engine::node::{BuildCtx, Built, NodeInfo, NodeType, Params, PortSpec, ProcessIo, Processor};
use stagebox_engine::param::ParamSpec;

use crate::hcqt::{FrontEndConsts, Hcqt, CONTOUR_BINS, FRAME_LEN, HARMONICS, MAX_CONTEXT};
use crate::tracker::{NoteEvent, Tracker, TrackerParams, KEYS, LOWEST_MIDI};
use crate::{find_model, ModelError, OrtModel};

const MODEL_RATE: u32 = 22050;
const FFT_HOP: usize = 256;
/// Frames of context before the new ones: the CNN's reach (12 frames each side).
pub const CONTEXT_FRAMES: usize = 12;
const MAX_EVENTS: usize = 128;
/// An event from the worker: frame offset, kind (0 note, 1 bend), key, velocity or semitones.
const EVENT_LEN: usize = 4;
/// A bend is sent when it moves this far (semitones) from the last one sent.
const BEND_STEP: f32 = 0.05;
/// Bends smaller than this (semitones) count as none: a piano's notes do not wobble.
const BEND_DEAD_ZONE: f32 = 0.25;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::float_fixed("onset_threshold", 0.05, 0.95, 0.5, "", "onset activation that starts a note"),
    ParamSpec::float_fixed("frame_threshold", 0.05, 0.95, 0.3, "", "note activation that keeps a note sounding"),
    ParamSpec::float_fixed(
        "swell_level",
        0.0,
        0.95,
        0.6,
        "",
        "note activation that starts a note without an onset (slow attacks: bowed strings, voice); 0 = onsets only",
    ),
    ParamSpec::boolean(
        "second_look",
        true,
        false,
        "look at each frame again one model run later (46 ms at the default hop): notes whose onset shows only then (slow attacks) start late, stamped at their onset",
    ),
    ParamSpec::int(
        "onset_wait_frames",
        0,
        16,
        11,
        "frames (11.6 ms each) an onset may wait for its note activation to reach the frame threshold (slow inner voices of chords); such a note is sent that much later, stamped at its onset",
    ),
    ParamSpec::int(
        "hop_frames",
        1,
        16,
        4,
        "frames (256 samples at 22050 Hz, 11.6 ms) between model runs",
    ),
    ParamSpec::int(
        "lookahead_frames",
        1,
        24,
        4,
        "frames (11.6 ms each) of context after a frame before it is decided",
    ),
    ParamSpec::float_fixed("margin_ms", 0.0, 1000.0, 15.0, "ms", "time allowed for one model run (it takes 3-6 ms here)"),
    ParamSpec::int("midi_channel", 1, 16, 1, "MIDI channel of the notes (without MPE)"),
    ParamSpec::boolean(
        "mpe",
        true,
        false,
        "MPE: each note on its own channel (2-16, channel 1 the zone's manager) so each bends alone; off: one channel, bends only while one note sounds",
    ),
    ParamSpec::float_fixed("bend_range", 1.0, 96.0, 48.0, "semitones", "pitch-bend range the receiver is set to (MPE's default is 48)"),
];

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
struct Backend {
    tr: Transcriber,
    events: Vec<NoteEvent>,
    next_seq: u64,
    silence: Vec<f32>,
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

#[derive(Clone, Copy)]
struct Pending {
    due: u64,
    origin: u64,
    /// 0 note-on, 1 note-off, 2 bend.
    kind: u8,
    midi: u8,
    vel: u8,
    bend: f32,
}

/// No channel.
const NONE: u8 = 0xff;

struct BasicPitchProc {
    node: u32,
    channel: u8,
    mpe: bool,
    bend_range: f32,
    /// MPE: the member channel (0-based) each key sounds on; which channels hold a note and
    /// when each was last freed; the bend last sent on each channel.
    key_ch: [u8; 128],
    ch_notes: [u8; 16],
    ch_freed: [u64; 16],
    ch_bend: [u16; 16],
    configured: bool,
    sounding: u32,
    resampler: Resampler,
    bridge: Bridge,
    engine_rate: u64,
    hop_frames: u64,
    look: u64,
    latency: u64,
    /// Engine frames processed by this node.
    n: u64,
    /// Engine sample time of this node's first frame.
    start_time: Option<u64>,
    next_seq: u64,
    pending: Vec<Pending>,
    dropped_events: u64,
    report_every: u32,
}

impl BasicPitchProc {
    /// Engine frame (of this node's timeline) where global model frame `g` starts.
    fn frame_to_engine(&self, g: u64) -> u64 {
        g * FFT_HOP as u64 * self.engine_rate / MODEL_RATE as u64
    }

    /// When window `seq`'s result is due: its first finalised frame plus the latency.
    fn due(&self, seq: u64) -> u64 {
        let first = ((seq + 1) * self.hop_frames).saturating_sub(self.look + self.hop_frames);
        self.frame_to_engine(first) + self.latency
    }

    fn collect(&mut self, seq: u64) {
        let first = ((seq + 1) * self.hop_frames).saturating_sub(self.look + self.hop_frames);
        let mut buf = [0.0f32; 1 + MAX_EVENTS * EVENT_LEN];
        let Some(out) = self.bridge.result(seq) else { return };
        let n = (out[0] as usize).min(MAX_EVENTS);
        buf[..1 + n * EVENT_LEN].copy_from_slice(&out[..1 + n * EVENT_LEN]);
        let start = self.start_time.unwrap_or(0);
        for e in buf[1..1 + n * EVENT_LEN].chunks_exact(EVENT_LEN) {
            let g = (first as i64 + e[0] as i64).max(0) as u64;
            let midi = (e[2] as u8).min(127);
            let (kind, vel, bend) = if e[1] != 0.0 {
                (2, 0, e[3])
            } else if e[3] > 0.0 {
                (0, e[3] as u8, 0.0)
            } else {
                (1, 0, 0.0)
            };
            let origin = self.frame_to_engine(g);
            if self.pending.len() < self.pending.capacity() {
                self.pending.push(Pending {
                    due: (origin + self.latency).max(self.n),
                    origin: start + origin,
                    kind,
                    midi,
                    vel,
                    bend,
                });
            } else {
                self.dropped_events += 1;
            }
        }
    }

    /// MPE zone set-up (once, at the start): a lower zone of 15 member channels, each with the
    /// node's bend range (RPN 6 on the manager channel, RPN 0 on each member).
    fn configure(&mut self, io: &mut ProcessIo) {
        self.configured = true;
        if !self.mpe {
            return;
        }
        let range = self.bend_range.round().clamp(1.0, 96.0) as u8;
        let st = io.sample_time;
        for m in [[0xb0, 101, 0], [0xb0, 100, 6], [0xb0, 6, 15]] {
            io.emit.note(0, m, st, st);
        }
        for ch in 1..16u8 {
            for m in [[0xb0 | ch, 101, 0], [0xb0 | ch, 100, 0], [0xb0 | ch, 6, range], [0xb0 | ch, 38, 0]] {
                io.emit.note(0, m, st, st);
            }
        }
    }

    fn bend_value(&self, semitones: f32) -> u16 {
        (8192.0 + semitones / self.bend_range * 8192.0).round().clamp(0.0, 16383.0) as u16
    }

    fn send_bend(&mut self, io: &mut ProcessIo, t: u32, ch: u8, v: u16, origin: u64) {
        if self.ch_bend[ch as usize] != v {
            self.ch_bend[ch as usize] = v;
            io.emit
                .note(t, [0xe0 | ch, (v & 0x7f) as u8, (v >> 7) as u8], origin, io.sample_time);
        }
    }

    /// Sends one due event, choosing its channel. Audio thread.
    fn send(&mut self, io: &mut ProcessIo, t: u32, p: Pending) {
        let midi = p.midi as usize;
        match p.kind {
            0 => {
                let ch = if self.mpe {
                    // The free member channel freed longest ago; if none is free, the one with
                    // the fewest notes.
                    let mut best = 1u8;
                    for c in 1..16u8 {
                        let (a, b) = (c as usize, best as usize);
                        if (self.ch_notes[a], self.ch_freed[a]) < (self.ch_notes[b], self.ch_freed[b]) {
                            best = c;
                        }
                    }
                    best
                } else {
                    self.channel - 1
                };
                if self.key_ch[midi] != NONE {
                    // Struck again while sounding: end the old one first.
                    let old = self.key_ch[midi];
                    io.emit.note(t, [0x80 | old, p.midi, 0], p.origin, io.sample_time);
                    self.ch_notes[old as usize] = self.ch_notes[old as usize].saturating_sub(1);
                    self.sounding = self.sounding.saturating_sub(1);
                }
                if self.mpe {
                    self.send_bend(io, t, ch, 8192, p.origin);
                }
                self.key_ch[midi] = ch;
                self.ch_notes[ch as usize] += 1;
                self.sounding += 1;
                io.emit.note(t, [0x90 | ch, p.midi, p.vel.max(1)], p.origin, io.sample_time);
            }
            1 => {
                let ch = self.key_ch[midi];
                if ch == NONE {
                    return;
                }
                self.key_ch[midi] = NONE;
                self.ch_notes[ch as usize] = self.ch_notes[ch as usize].saturating_sub(1);
                if self.ch_notes[ch as usize] == 0 {
                    self.ch_freed[ch as usize] = self.n;
                }
                self.sounding = self.sounding.saturating_sub(1);
                io.emit.note(t, [0x80 | ch, p.midi, 0], p.origin, io.sample_time);
                if !self.mpe && self.sounding == 0 {
                    self.send_bend(io, t, ch, 8192, p.origin);
                }
            }
            _ => {
                let ch = self.key_ch[midi];
                // Without MPE a bend would move every sounding note: only while one sounds.
                if ch == NONE || (!self.mpe && self.sounding != 1) || (self.mpe && self.ch_notes[ch as usize] != 1) {
                    return;
                }
                let v = self.bend_value(p.bend);
                self.send_bend(io, t, ch, v, p.origin);
            }
        }
    }
}

impl Processor for BasicPitchProc {
    fn process(&mut self, io: &mut ProcessIo) {
        if self.start_time.is_none() {
            self.start_time = Some(io.sample_time);
        }
        if !self.configured {
            self.configure(io);
        }
        for t in 0..io.frames {
            let bridge = &mut self.bridge;
            self.resampler.push(io.inputs[0][t], |m| {
                bridge.push(m);
            });
            while self.due(self.next_seq) <= self.n {
                let seq = self.next_seq;
                self.collect(seq);
                self.next_seq += 1;
            }
            // Emit what is due now, in arrival order; the rest is compacted in place in the
            // same pass (no removal from the middle).
            let mut kept = 0;
            for k in 0..self.pending.len() {
                let p = self.pending[k];
                if p.due <= self.n {
                    self.send(io, t as u32, p);
                } else {
                    self.pending[kept] = p;
                    kept += 1;
                }
            }
            self.pending.truncate(kept);
            self.n += 1;
            self.bridge.report(&mut io.emit, self.node, self.report_every);
        }
    }
}

pub const BASIC_PITCH: NodeType = NodeType {
    name: "basic_pitch",
    doc: "Polyphonic pitch-to-MIDI (Spotify's Basic Pitch through ONNX Runtime on the inference thread); notes leave as MIDI.",
    params: PARAMS,
    params_of: None,
    build: |p: &Params, ctx: &BuildCtx| {
        let hop_frames = p.usize("hop_frames");
        let look = p.usize("lookahead_frames");
        if CONTEXT_FRAMES + hop_frames + look > MAX_CONTEXT {
            return Err(format!(
                "`hop_frames` + `lookahead_frames` = {} is more than {}",
                hop_frames + look,
                MAX_CONTEXT - CONTEXT_FRAMES
            ));
        }
        let hop = hop_frames * FFT_HOP;
        let e = ctx.sample_rate as u64;
        let res = Resampler::new(e as u32, MODEL_RATE);
        let margin = (p.f32("margin_ms") * 0.001 * ctx.sample_rate).round() as u64;
        // From a frame's start to its result: the rest of its hop, the lookahead, the resampler's
        // own lookahead and the time allowed for the model.
        let latency = (((hop + look * FFT_HOP) as u64) * e).div_ceil(MODEL_RATE as u64) + (res.lookahead_in() as u64 + 1) + margin;
        let info = NodeInfo {
            inputs: vec![PortSpec::new("in", 1)],
            midi_out: true,
            latency_frames: latency as u32,
            ..Default::default()
        };
        if ctx.dry_run {
            // `stagebox check`: a missing or damaged model is an error there.
            let manifest = find_model("basic_pitch_stream").map_err(|e| e.to_string())?;
            manifest.verify().map_err(|e| e.to_string())?;
            crate::find_runtime().map_err(|e| e.to_string())?;
            return Ok(Built {
                info,
                processor: Box::new(stagebox_engine::nodes::io::Passive),
            });
        }
        let tracker = TrackerParams {
            onset_threshold: p.f32("onset_threshold"),
            frame_threshold: p.f32("frame_threshold"),
            // The frames after an onset that the lookahead already holds.
            sustain_frames: look.min(3),
            swell_level: p.f32("swell_level"),
            second_look: p.bool("second_look"),
            onset_wait_frames: p.usize("onset_wait_frames") as u32,
            ..Default::default()
        };
        // Running: a model that cannot load bypasses the node (no notes) and the engine goes on.
        let tr = match Transcriber::load(hop_frames, look, tracker) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("basic_pitch node bypassed (it will emit no notes): {e}");
                return Ok(Built {
                    info,
                    processor: Box::new(stagebox_engine::nodes::io::Passive),
                });
            }
        };
        let backend = Backend {
            tr,
            events: Vec::with_capacity(MAX_EVENTS * 2),
            next_seq: 0,
            silence: vec![0.0; hop],
        };
        let bridge = Bridge::new(Box::new(backend), hop, hop, 1 + MAX_EVENTS * EVENT_LEN, 8, ctx.offline)
            .map_err(|e| format!("cannot start the inference worker: {e}"))?;
        let hop_frames = hop_frames as u64;
        let look = look as u64;
        Ok(Built {
            info,
            processor: Box::new(BasicPitchProc {
                node: ctx.node_index,
                channel: p.usize("midi_channel") as u8,
                mpe: p.bool("mpe"),
                bend_range: p.f32("bend_range"),
                key_ch: [NONE; 128],
                ch_notes: [0; 16],
                ch_freed: [0; 16],
                ch_bend: [8192; 16],
                configured: false,
                sounding: 0,
                resampler: res,
                bridge,
                engine_rate: e,
                hop_frames,
                look,
                latency,
                n: 0,
                start_time: None,
                next_seq: 0,
                pending: Vec::with_capacity(1024),
                dropped_events: 0,
                report_every: (ctx.sample_rate * 0.1) as u32,
            }),
        })
    },
};
