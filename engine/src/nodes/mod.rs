//! Built-in node types. Each file holds a node's spec (parameters and `build`, control thread)
//! and its processor (audio thread).

pub mod basic;
pub mod features;
pub mod hpss;
pub mod infer_test;
pub mod io;
pub mod melody;
pub mod meter;
pub mod midi_io;
pub mod notes_control;
pub mod player;
pub mod recorder;
pub mod resample;
pub mod synth;

use crate::node::NodeType;

/// Every built-in node type.
pub fn builtin_types() -> Vec<NodeType> {
    vec![
        io::INPUT,
        io::OUTPUT,
        player::PLAYER,
        basic::GAIN,
        basic::PAN,
        basic::MIXER,
        basic::OSC,
        meter::METER,
        recorder::RECORDER,
        synth::SYNTH,
        resample::RESAMPLE,
        infer_test::INFER_TEST,
        melody::MELODY,
        features::FEATURES,
        notes_control::NOTES_TO_CONTROL,
        midi_io::MIDI_IN,
        midi_io::MIDI_OUT,
        hpss::HPSS,
    ]
}

/// Smoothing time of continuous parameters, in milliseconds.
pub const SMOOTH_MS: f32 = 20.0;
