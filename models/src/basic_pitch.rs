//! `basic_pitch`: polyphonic pitch-to-MIDI with Spotify's Basic Pitch. The processor (audio
//! thread) resamples its input to 22050 Hz and hands a 2 s window to the inference worker every
//! hop; the worker (inference thread) runs the model and the causal note tracker on the newest
//! finalised frames (those with `lookahead_frames` of context after them) and returns note
//! events; the processor emits each at its frame's time plus the node's declared latency.
//!
//! This is the sliding-window baseline (the whole model per hop); the incremental front end is
//! the next step (see the inference issue).

use stagebox_engine::dsp::Resampler;
use stagebox_engine::infer::{Bridge, InferBackend};
use stagebox_engine::node::{BuildCtx, Built, NodeInfo, NodeType, Params, PortSpec, ProcessIo, Processor};
use stagebox_engine::param::ParamSpec;

use crate::tracker::{NoteEvent, Tracker, TrackerParams};
use crate::{find_model, OrtModel};

const MODEL_RATE: u32 = 22050;
const FFT_HOP: usize = 256;
const WINDOW_FRAMES: usize = 172;
const MAX_EVENTS: usize = 128;
const EVENT_LEN: usize = 3;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::float("onset_threshold", 0.05, 0.95, 0.5, "", "onset activation that starts a note"),
    ParamSpec::float("frame_threshold", 0.05, 0.95, 0.3, "", "note activation that keeps a note sounding"),
    ParamSpec::int(
        "hop",
        256,
        16384,
        2048,
        "samples at 22050 Hz between model runs (a multiple of 256)",
    ),
    ParamSpec::int(
        "lookahead_frames",
        1,
        40,
        4,
        "frames (11.6 ms each) of context after a frame before it is decided",
    ),
    ParamSpec::float("margin_ms", 0.0, 1000.0, 60.0, "ms", "time allowed for one model run"),
    ParamSpec::int("midi_channel", 1, 16, 1, "MIDI channel of the notes"),
];

/// Worker side: model plus tracker.
struct Backend {
    model: OrtModel,
    outs: Vec<Vec<f32>>,
    note_i: usize,
    onset_i: usize,
    tracker: Tracker,
    hop_frames: u64,
    look: u64,
    events: Vec<NoteEvent>,
    next_frame: u64,
}

impl InferBackend for Backend {
    fn infer(&mut self, seq: u64, input: &[f32], output: &mut [f32]) -> Result<(), String> {
        self.model.run(input, &mut self.outs).map_err(|e| e.to_string())?;
        let (note, onset) = (&self.outs[self.note_i], &self.outs[self.onset_i]);
        // Window `seq` ends at model frame (seq+1)*hop_frames; its frame j is global frame
        // (seq+1)*hop_frames - 172 + j. Finalise the frames that have `look` frames after them.
        let end = (seq + 1) * self.hop_frames;
        let first = end.saturating_sub(self.look + self.hop_frames).max(self.next_frame);
        let last = end.saturating_sub(self.look); // exclusive
        self.events.clear();
        for g in first..last {
            let j = (g + WINDOW_FRAMES as u64 - end) as usize;
            self.tracker.frame(g, onset, note, j, &mut self.events);
        }
        self.next_frame = self.next_frame.max(last);
        // Encode: [count, (frame - first, midi, velocity) ...].
        let n = self.events.len().min(MAX_EVENTS);
        output[0] = n as f32;
        for (k, e) in self.events.iter().take(n).enumerate() {
            output[1 + k * EVENT_LEN] = e.frame as f32 - first as f32;
            output[2 + k * EVENT_LEN] = e.midi as f32;
            output[3 + k * EVENT_LEN] = e.velocity as f32;
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct Pending {
    due: u64,
    origin: u64,
    msg: [u8; 3],
}

struct BasicPitchProc {
    node: u32,
    channel: u8,
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
        for k in 0..n {
            let g = (first as i64 + buf[1 + k * EVENT_LEN] as i64).max(0) as u64;
            let midi = buf[2 + k * EVENT_LEN] as u8;
            let vel = buf[3 + k * EVENT_LEN] as u8;
            let origin = self.frame_to_engine(g);
            let msg = if vel > 0 {
                [0x90 | (self.channel - 1), midi, vel]
            } else {
                [0x80 | (self.channel - 1), midi, 0]
            };
            if self.pending.len() < self.pending.capacity() {
                self.pending.push(Pending {
                    due: (origin + self.latency).max(self.n),
                    origin: start + origin,
                    msg,
                });
            } else {
                self.dropped_events += 1;
            }
        }
    }
}

impl Processor for BasicPitchProc {
    fn process(&mut self, io: &mut ProcessIo) {
        if self.start_time.is_none() {
            self.start_time = Some(io.sample_time);
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
            // Emit what is due now, in arrival order.
            let mut k = 0;
            while k < self.pending.len() {
                if self.pending[k].due <= self.n {
                    let p = self.pending.remove(k);
                    io.emit.note(t as u32, p.msg, p.origin, io.sample_time);
                } else {
                    k += 1;
                }
            }
            self.n += 1;
            self.bridge.report(&mut io.emit, self.node, self.report_every);
        }
    }
}

pub const BASIC_PITCH: NodeType = NodeType {
    name: "basic_pitch",
    doc: "Polyphonic pitch-to-MIDI (Spotify's Basic Pitch through ONNX Runtime on the inference thread); notes leave as MIDI.",
    params: PARAMS,
    build: |p: &Params, ctx: &BuildCtx| {
        let hop = p.usize("hop");
        if hop % FFT_HOP != 0 {
            return Err(format!("`hop` = {hop} must be a multiple of {FFT_HOP}"));
        }
        let look = p.usize("lookahead_frames") as u64;
        let hop_frames = (hop / FFT_HOP) as u64;
        let e = ctx.sample_rate as u64;
        let res = Resampler::new(e as u32, MODEL_RATE);
        let margin = (p.f32("margin_ms") * 0.001 * ctx.sample_rate).round() as u64;
        // From a frame's start to its result: the rest of its hop, the lookahead, the resampler's
        // own lookahead and the time allowed for the model.
        let latency = ((hop as u64 + look * FFT_HOP as u64) * e).div_ceil(MODEL_RATE as u64) + (res.lookahead_in() as u64 + 1) + margin;
        let info = NodeInfo {
            inputs: vec![PortSpec::new("in", 1)],
            midi_out: true,
            latency_frames: latency as u32,
            ..Default::default()
        };
        if ctx.dry_run {
            // `stagebox check`: a missing or damaged model is an error there.
            let manifest = find_model("basic_pitch").map_err(|e| e.to_string())?;
            manifest.verify().map_err(|e| e.to_string())?;
            crate::find_runtime().map_err(|e| e.to_string())?;
            return Ok(Built {
                info,
                processor: Box::new(stagebox_engine::nodes::io::Passive),
            });
        }
        // Running: a model that cannot load bypasses the node (no notes) and the engine goes on.
        let loaded = find_model("basic_pitch").and_then(|m| {
            let window = m.window;
            OrtModel::load(m).map(|model| (model, window))
        });
        let (model, window) = match loaded {
            Ok(x) => x,
            Err(e) => {
                tracing::error!("basic_pitch node bypassed (it will emit no notes): {e}");
                return Ok(Built {
                    info,
                    processor: Box::new(stagebox_engine::nodes::io::Passive),
                });
            }
        };
        let (note_i, onset_i) = (
            model.manifest.output_index("note").ok_or("manifest has no `note` output")?,
            model.manifest.output_index("onset").ok_or("manifest has no `onset` output")?,
        );
        let tracker = Tracker::new(TrackerParams {
            onset_threshold: p.f32("onset_threshold"),
            frame_threshold: p.f32("frame_threshold"),
            // The frames after an onset that the lookahead already holds.
            sustain_frames: (look as usize).min(3),
            ..Default::default()
        });
        let backend = Backend {
            model,
            outs: Vec::new(),
            note_i,
            onset_i,
            tracker,
            hop_frames,
            look,
            events: Vec::with_capacity(MAX_EVENTS * 2),
            next_frame: 0,
        };
        let bridge = Bridge::new(Box::new(backend), window, hop, 1 + MAX_EVENTS * EVENT_LEN, 4, ctx.offline)
            .map_err(|e| format!("cannot start the inference worker: {e}"))?;
        Ok(Built {
            info,
            processor: Box::new(BasicPitchProc {
                node: ctx.node_index,
                channel: p.usize("midi_channel") as u8,
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
