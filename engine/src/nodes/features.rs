//! `features`: what a performer plays, as control curves for nodes that play along (`timbre`):
//! f0 (Hz, held through unvoiced hops), voiced (0 or 1) and A-weighted loudness (dB), every
//! 4 ms (250 frames a second). The `melody` node's tracker without its notes, so both read the
//! same. Spec on the control thread; the processor (the tracker) on the audio thread.

use crate::node::{BuildCtx, NodeType, Params};
use crate::param::ParamSpec;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::float_fixed("min_hz", 30.0, 1000.0, 60.0, "Hz", "lowest pitch tracked"),
    ParamSpec::float_fixed("max_hz", 100.0, 4000.0, 1600.0, "Hz", "highest pitch tracked"),
    ParamSpec::float_fixed("threshold", 0.02, 0.5, 0.15, "", "YIN threshold (lower = stricter voicing)"),
    ParamSpec::float_fixed("gate_db", -90.0, 0.0, -45.0, "dB", "level below which nothing is voiced"),
];

pub const FEATURES: NodeType = NodeType {
    name: "features",
    doc: "f0 (Hz), voiced and A-weighted loudness (dB) of any input, as control curves every 4 ms (the melody node's tracker, without notes).",
    params: PARAMS,
    params_of: None,
    build: |p: &Params, ctx: &BuildCtx| super::melody::build(p, ctx, false),
};
