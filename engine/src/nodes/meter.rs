//! `meter`: peak and RMS per channel, sent to the control side every interval. Spec on the
//! control thread, processor on the audio thread.

use crate::msg::{FromRt, METER_CHANNELS};
use crate::node::{BuildCtx, Built, NodeInfo, NodeType, Params, PortSpec, ProcessIo, Processor};
use crate::param::ParamSpec;

const METER_PARAMS: &[ParamSpec] = &[
    ParamSpec::int("channels", 1, METER_CHANNELS as i64, 2, "channels measured (and passed through)"),
    ParamSpec::int("interval_ms", 5, 5000, 50, "how often levels are reported"),
];

struct MeterProc {
    node: u32,
    interval: u32,
    count: u32,
    peak: [f32; METER_CHANNELS],
    sum_sq: [f64; METER_CHANNELS],
}

impl Processor for MeterProc {
    fn process(&mut self, io: &mut ProcessIo) {
        let ch = io.outputs.len();
        for t in 0..io.frames {
            for c in 0..ch {
                let x = io.inputs[c][t];
                io.outputs[c][t] = x;
                self.peak[c] = self.peak[c].max(x.abs());
                self.sum_sq[c] += (x as f64) * (x as f64);
            }
            self.count += 1;
            if self.count == self.interval {
                let mut rms = [0.0f32; METER_CHANNELS];
                for c in 0..ch {
                    rms[c] = (self.sum_sq[c] / self.interval as f64).sqrt() as f32;
                }
                io.emit.control(FromRt::Meter {
                    gen: io.emit.generation(),
                    node: self.node,
                    sample_time: io.sample_time + t as u64 + 1,
                    channels: ch as u8,
                    peak: self.peak,
                    rms,
                });
                self.count = 0;
                self.peak = [0.0; METER_CHANNELS];
                self.sum_sq = [0.0; METER_CHANNELS];
            }
        }
    }
}

pub const METER: NodeType = NodeType {
    name: "meter",
    doc: "Peak and RMS levels, reported to the control side; audio passes through unchanged.",
    params: METER_PARAMS,
    params_of: None,
    build: |p: &Params, ctx: &BuildCtx| {
        let ch = p.usize("channels");
        let interval = ((p.usize("interval_ms") as f32 * 0.001 * ctx.sample_rate).round() as u32).max(1);
        Ok(Built {
            info: NodeInfo {
                inputs: vec![PortSpec::new("in", ch)],
                outputs: vec![PortSpec::new("out", ch)],
                ..Default::default()
            },
            processor: Box::new(MeterProc {
                node: ctx.node_index,
                interval,
                count: 0,
                peak: [0.0; METER_CHANNELS],
                sum_sq: [0.0; METER_CHANNELS],
            }),
        })
    },
};
