//! `infer_test`: the inference bridge with a test backend (identity, or identity that stalls),
//! for graph and scheduling tests without ONNX Runtime. Spec on the control thread, processor
//! on the audio thread, backend on the bridge's worker thread.

use std::time::Duration;

use crate::infer::{Bridge, Identity, InferBackend, Stall};
use crate::node::{BuildCtx, Built, NodeInfo, NodeType, Params, PortSpec, ProcessIo, Processor};
use crate::param::ParamSpec;

const BACKENDS: &[&str] = &["identity", "stall"];
const ON_LATE: &[&str] = &["silence", "hold"];
const PARAMS: &[ParamSpec] = &[
    ParamSpec::choice(
        "backend",
        BACKENDS,
        0,
        false,
        "identity, or identity that sleeps `stall_ms` per window",
    ),
    ParamSpec::int("hop", 16, 16384, 512, "frames per window step"),
    ParamSpec::int("window", 0, 65536, 0, "frames per window (0 = hop)"),
    ParamSpec::float_fixed(
        "margin_ms",
        0.0,
        2000.0,
        10.0,
        "ms",
        "time allowed for inference after a hop is complete",
    ),
    ParamSpec::float_fixed("stall_ms", 0.0, 10000.0, 50.0, "ms", "stall backend: sleep per window"),
    ParamSpec::choice("on_late", ON_LATE, 0, false, "what plays when a result is late"),
    ParamSpec::int("jobs", 1, 64, 4, "windows in flight"),
];

struct InferTestProc {
    bridge: Bridge,
    latency: u64,
    hold: bool,
    /// Output of the hop now playing (a copy: the bridge's buffer is recycled).
    playing: Vec<f32>,
    have: bool,
    node: u32,
    report_every: u32,
}

impl InferTestProc {
    /// One sample in, one out: output frame `t` plays input frame `t - latency`.
    #[inline]
    fn tick(&mut self, x: f32) -> f32 {
        self.bridge.push(x);
        let t = self.bridge.pushed() - 1;
        if t < self.latency {
            return 0.0;
        }
        let hop = self.bridge.hop() as u64;
        let k = t - self.latency;
        let i = (k % hop) as usize;
        if i == 0 {
            match self.bridge.result(k / hop) {
                Some(out) => {
                    self.playing.copy_from_slice(out);
                    self.have = true;
                }
                None if self.hold && self.have => {}
                None => self.playing.fill(0.0),
            }
        }
        self.playing[i]
    }
}

impl Processor for InferTestProc {
    fn process(&mut self, io: &mut ProcessIo) {
        for t in 0..io.frames {
            io.outputs[0][t] = self.tick(io.inputs[0][t]);
            self.bridge.report(&mut io.emit, self.node, self.report_every);
        }
    }
}

pub const INFER_TEST: NodeType = NodeType {
    name: "infer_test",
    doc: "Test model node: the inference bridge with an identity (or stalling) backend; declares hop + margin latency.",
    params: PARAMS,
    params_of: None,
    build: |p: &Params, ctx: &BuildCtx| {
        let hop = p.usize("hop");
        let window = p.usize("window").max(hop);
        let margin = (p.f32("margin_ms") * 0.001 * ctx.sample_rate).round() as u64;
        let latency = hop as u64 + margin;
        let info = NodeInfo {
            inputs: vec![PortSpec::new("in", 1)],
            outputs: vec![PortSpec::new("out", 1)],
            latency_frames: latency as u32,
            ..Default::default()
        };
        let backend: Box<dyn InferBackend> = match p.str("backend") {
            "stall" => Box::new(Stall(Duration::from_secs_f32(p.f32("stall_ms") * 0.001))),
            _ => Box::new(Identity),
        };
        if ctx.dry_run {
            // Validation only: no worker thread.
            return Ok(Built {
                info,
                processor: Box::new(crate::nodes::io::Passive),
            });
        }
        let bridge = Bridge::new(backend, window, hop, hop, p.usize("jobs"), ctx.offline)
            .map_err(|e| format!("cannot start the inference worker: {e}"))?;
        Ok(Built {
            info,
            processor: Box::new(InferTestProc {
                bridge,
                latency,
                hold: p.str("on_late") == "hold",
                playing: vec![0.0; hop],
                have: false,
                node: ctx.node_index,
                report_every: (ctx.sample_rate * 0.1) as u32,
            }),
        })
    },
};
