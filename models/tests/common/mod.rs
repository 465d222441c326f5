//! Shared by the models' test binaries (renders run on this thread, as the audio thread
//! would). Each binary uses some of it.
#![allow(dead_code)]

use std::path::Path;

use stagebox_engine::backend::offline::{render, RenderOptions, Rendered};
use stagebox_engine::msg::FromRt;
use stagebox_engine::{Connection, GraphDesc, NodeDesc, ParamValue, PortRef, Registry};

/// A line of make_fixture.py (`guitar_line`, `cello_slur`) through the melody node, with or
/// without the network: notes (onset, emitted, key) in seconds, and the allocation violations.
pub fn melody_notes(clip: &str, attack_net: bool) -> (Vec<(f64, f64, u8)>, u64) {
    melody_notes_with(clip, vec![("attack_net", ParamValue::Bool(attack_net))])
}

/// `melody_notes` with the melody node's parameters `params` (the rest at their defaults).
pub fn melody_notes_with(clip: &str, params: Vec<(&str, ParamValue)>) -> (Vec<(f64, f64, u8)>, u64) {
    let mut reg = Registry::builtin();
    stagebox_models::register(&mut reg);
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let clip = stagebox_engine::audio_file::read(&data.join(format!("{clip}.wav"))).unwrap();
    // The clip (22050 Hz) is resampled to the render's rate.
    let sr = 48000.0;
    let node = |id: &str, kind: &str, params: Vec<(&str, ParamValue)>| NodeDesc {
        id: id.into(),
        kind: kind.into(),
        params: params.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    };
    let desc = GraphDesc {
        nodes: vec![
            node("in", "input", vec![("channels", ParamValue::Int(1))]),
            node("mel", "melody", params),
        ],
        connections: vec![Connection {
            from: PortRef::parse("in"),
            to: PortRef::parse("mel"),
        }],
        base_dir: std::env::temp_dir(),
        takes_dir: None,
    };
    let opts = RenderOptions {
        sample_rate: sr as u32,
        block_size: 128,
        tail_secs: 0.5,
        ..Default::default()
    };
    let r = render(&desc, &reg, Some(&clip), &opts, |_, _| {}).unwrap();
    (note_ons(&r, sr), r.alloc_violations)
}

/// The note-ons a render at `sr` Hz sent: (estimated onset s, emitted s, key).
pub fn note_ons(r: &Rendered, sr: f64) -> Vec<(f64, f64, u8)> {
    r.messages
        .iter()
        .filter_map(|m| match *m {
            FromRt::Midi {
                sample_time, origin, msg, ..
            } if msg[0] & 0xf0 == 0x90 && msg[2] > 0 => Some((origin as f64 / sr, sample_time as f64 / sr, msg[1])),
            _ => None,
        })
        .collect()
}
