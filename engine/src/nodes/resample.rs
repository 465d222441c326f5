//! `resample`: band-limits its input to what a model running at `rate_hz` hears (down to that
//! rate and back up), with its exact latency declared. The same `dsp::Resampler` feeds model
//! nodes. Spec on the control thread, processor on the audio thread.

use crate::dsp::Resampler;
use crate::node::{BuildCtx, Built, NodeInfo, NodeType, Params, PortSpec, ProcessIo, Processor};
use crate::param::ParamSpec;

const RESAMPLE_PARAMS: &[ParamSpec] = &[
    ParamSpec::int(
        "rate_hz",
        4000,
        192000,
        22050,
        "the rate to pass through (a model's rate: 22050, 16000)",
    ),
    ParamSpec::int("channels", 1, 8, 1, "channels"),
];

struct Chain {
    down: Resampler,
    up: Resampler,
    ring: Vec<f32>,
    mask: usize,
    produced: u64,
}

struct ResampleProc {
    chains: Vec<Chain>,
    latency: u64,
    pos: u64,
}

impl Processor for ResampleProc {
    fn process(&mut self, io: &mut ProcessIo) {
        for (c, ch) in self.chains.iter_mut().enumerate() {
            let mut pos = self.pos;
            for t in 0..io.frames {
                let Chain {
                    down,
                    up,
                    ring,
                    mask,
                    produced,
                } = ch;
                down.push(io.inputs[c][t], |m| {
                    up.push(m, |y| {
                        ring[*produced as usize & *mask] = y;
                        *produced += 1;
                    })
                });
                io.outputs[c][t] = if pos >= self.latency {
                    let j = pos - self.latency;
                    debug_assert!(j < ch.produced);
                    ch.ring[j as usize & ch.mask]
                } else {
                    0.0
                };
                pos += 1;
            }
        }
        self.pos += io.frames as u64;
    }
}

pub const RESAMPLE: NodeType = NodeType {
    name: "resample",
    doc: "Passes audio through a model's sample rate (down and back up); declares its latency.",
    params: RESAMPLE_PARAMS,
    params_of: None,
    build: |p: &Params, ctx: &BuildCtx| {
        let (e, r) = (ctx.sample_rate as u32, p.usize("rate_hz") as u32);
        let ch = p.usize("channels");
        let probe_down = Resampler::new(e, r);
        let probe_up = Resampler::new(r, e);
        let latency = probe_down.lookahead_in() as u64 + (probe_up.lookahead_in() as u64 * e as u64).div_ceil(r as u64) + 2;
        let size = ((2 * latency + 64) as usize).next_power_of_two();
        let chains = (0..ch)
            .map(|_| Chain {
                down: Resampler::new(e, r),
                up: Resampler::new(r, e),
                ring: vec![0.0; size],
                mask: size - 1,
                produced: 0,
            })
            .collect();
        Ok(Built {
            info: NodeInfo {
                inputs: vec![PortSpec::new("in", ch)],
                outputs: vec![PortSpec::new("out", ch)],
                latency_frames: latency as u32,
                ..Default::default()
            },
            processor: Box::new(ResampleProc { chains, latency, pos: 0 }),
        })
    },
};
