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

//!
//! This file is the node and its audio-thread side (`BasicPitchProc`); the worker's side is in
//! `transcriber.rs`.

mod transcriber;

use stagebox_engine::dsp::Resampler;
use stagebox_engine::infer::Bridge;
use stagebox_engine::node::{BuildCtx, Built, NodeInfo, NodeType, Params, PortSpec, ProcessIo, Processor};
use stagebox_engine::param::ParamSpec;

use crate::find_model;
use crate::hcqt::MAX_CONTEXT;
use crate::tracker::TrackerParams;
use transcriber::Backend;
pub use transcriber::{contour_pitch, Transcriber};

const MODEL_RATE: u32 = 22050;
const FFT_HOP: usize = 256;
/// Frames of context before the new ones: the CNN's reach (12 frames each side).
pub const CONTEXT_FRAMES: usize = 12;
pub(crate) const MAX_EVENTS: usize = 128;
/// An event from the worker: frame offset, kind (0 note, 1 bend), key, velocity or semitones.
pub(crate) const EVENT_LEN: usize = 4;
/// A bend is sent when it moves this far (semitones) from the last one sent.
pub(crate) const BEND_STEP: f32 = 0.05;
/// Bends smaller than this (semitones) count as none: a piano's notes do not wobble.
pub(crate) const BEND_DEAD_ZONE: f32 = 0.25;

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
        let backend = Backend::new(tr, hop);
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
