//! `infer_test`: the inference bridge with a test backend (identity, or identity that stalls),
//! for graph and scheduling tests without ONNX Runtime. Spec on the control thread, processor
//! on the audio thread, backend on the bridge's worker thread.

use std::time::Duration;

use crate::infer::{Bridge, Identity, InferBackend, InferCounts, OnLate, Stall};
use crate::msg::FromRt;
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
    ParamSpec::float(
        "margin_ms",
        0.0,
        2000.0,
        10.0,
        "ms",
        "time allowed for inference after a hop is complete",
    ),
    ParamSpec::float("stall_ms", 0.0, 10000.0, 50.0, "ms", "stall backend: sleep per window"),
    ParamSpec::choice("on_late", ON_LATE, 0, false, "what plays when a result is late"),
    ParamSpec::int("jobs", 1, 64, 4, "windows in flight"),
];

struct InferTestProc {
    bridge: Bridge,
    node: u32,
    reported: InferCounts,
    since_report: u32,
    report_every: u32,
}

impl Processor for InferTestProc {
    fn process(&mut self, io: &mut ProcessIo) {
        for t in 0..io.frames {
            io.outputs[0][t] = self.bridge.tick(io.inputs[0][t]);
            self.since_report += 1;
            if self.since_report >= self.report_every {
                self.since_report = 0;
                if self.bridge.counts != self.reported {
                    self.reported = self.bridge.counts;
                    io.emit.control(FromRt::Infer {
                        gen: io.emit.generation(),
                        node: self.node,
                        counts: self.reported,
                    });
                }
            }
        }
    }
}

pub const INFER_TEST: NodeType = NodeType {
    name: "infer_test",
    doc: "Test model node: the inference bridge with an identity (or stalling) backend; declares hop + margin latency.",
    params: PARAMS,
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
        let on_late = if p.str("on_late") == "hold" {
            OnLate::HoldLast
        } else {
            OnLate::Silence
        };
        if ctx.dry_run {
            // Validation only: no worker thread.
            return Ok(Built {
                info,
                processor: Box::new(crate::nodes::io::Passive),
            });
        }
        let bridge = Bridge::new(backend, window, hop, latency, p.usize("jobs"), ctx.offline, on_late)
            .map_err(|e| format!("cannot start the inference worker: {e}"))?;
        Ok(Built {
            info,
            processor: Box::new(InferTestProc {
                bridge,
                node: ctx.node_index,
                reported: InferCounts::default(),
                since_report: 0,
                report_every: (ctx.sample_rate * 0.1) as u32,
            }),
        })
    },
};
