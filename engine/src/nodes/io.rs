//! `input` and `output`: the graph's hardware ports. Spec on the control thread; their
//! processors do nothing (the schedule copies hardware buffers on the audio thread).

use crate::node::{BuildCtx, Built, NodeInfo, NodeType, Params, PortSpec, ProcessIo, Processor};
use crate::param::ParamSpec;

const IO_PARAMS: &[ParamSpec] = &[
    ParamSpec::int("channels", 1, 16, 2, "number of channels"),
    ParamSpec::int("first_channel", 0, 47, 0, "first hardware channel (0-based)"),
];

/// A processor that does nothing (hardware ports; dry-run stand-ins).
pub struct Passive;
impl Processor for Passive {
    fn process(&mut self, _io: &mut ProcessIo) {}
}

pub const INPUT: NodeType = NodeType {
    name: "input",
    doc: "Live audio input (a file in offline render, the demo clip when no device is found). Mono hardware feeds every channel.",
    params: IO_PARAMS,
    params_of: None,
    build: |p: &Params, _: &BuildCtx| {
        let ch = p.usize("channels");
        Ok(Built {
            info: NodeInfo {
                outputs: vec![PortSpec::new("out", ch)],
                hw_input: Some(p.usize("first_channel")),
                ..Default::default()
            },
            processor: Box::new(Passive),
        })
    },
};

pub const OUTPUT: NodeType = NodeType {
    name: "output",
    doc: "Live audio output (the rendered file offline). Several outputs are summed and aligned.",
    params: IO_PARAMS,
    params_of: None,
    build: |p: &Params, _: &BuildCtx| {
        let ch = p.usize("channels");
        Ok(Built {
            info: NodeInfo {
                inputs: vec![PortSpec::new("in", ch)],
                hw_output: Some(p.usize("first_channel")),
                ..Default::default()
            },
            processor: Box::new(Passive),
        })
    },
};
