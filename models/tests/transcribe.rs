//! Transcribes a rendered clip with known notes through the basic_pitch node, offline (the
//! render thread plays the audio thread, under the allocation guard).

use std::collections::BTreeMap;

use stagebox_engine::alloc_check::CheckedAlloc;
use stagebox_engine::backend::offline::{render, RenderOptions, ScheduledEvent};
use stagebox_engine::msg::FromRt;
use stagebox_engine::{Connection, GraphDesc, NodeDesc, ParamValue, PortRef, Registry};

#[global_allocator]
static ALLOC: CheckedAlloc = CheckedAlloc;

fn node(id: &str, kind: &str, params: &[(&str, ParamValue)]) -> NodeDesc {
    NodeDesc {
        id: id.into(),
        kind: kind.into(),
        params: params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
    }
}
fn conn(a: &str, b: &str) -> Connection {
    Connection {
        from: PortRef::parse(a),
        to: PortRef::parse(b),
    }
}

#[test]
fn a_rendered_melody_and_chord_come_back_as_notes() {
    let mut reg = Registry::builtin();
    stagebox_models::register(&mut reg);
    let sr = 48000u64;
    // Known notes: C4 E4 G4 C5 one after another, then a C major chord.
    let notes: Vec<(f64, f64, u8)> = vec![
        (0.5, 0.9, 60),
        (1.0, 1.4, 64),
        (1.5, 1.9, 67),
        (2.0, 2.4, 72),
        (2.8, 3.6, 60),
        (2.8, 3.6, 64),
        (2.8, 3.6, 67),
    ];
    let mut events = Vec::new();
    for &(on, off, k) in &notes {
        events.push(((on * sr as f64) as u64, "keys".to_string(), ScheduledEvent::Midi([0x90, k, 100])));
        events.push(((off * sr as f64) as u64, "keys".to_string(), ScheduledEvent::Midi([0x80, k, 0])));
    }
    let synth = GraphDesc {
        nodes: vec![
            node(
                "keys",
                "synth",
                &[
                    ("waveform", ParamValue::Str("triangle".into())),
                    ("channels", ParamValue::Int(1)),
                    ("release_ms", ParamValue::Float(60.0)),
                ],
            ),
            node("out", "output", &[("channels", ParamValue::Int(1))]),
        ],
        connections: vec![conn("keys", "out")],
        base_dir: std::env::temp_dir(),
    };
    let clip = render(
        &synth,
        &reg,
        None,
        &RenderOptions {
            duration_secs: Some(4.5),
            events,
            ..Default::default()
        },
        |_, _| {},
    )
    .unwrap()
    .audio;

    let transcribe = GraphDesc {
        nodes: vec![
            node("in", "input", &[("channels", ParamValue::Int(1))]),
            node("bp", "basic_pitch", &[]),
        ],
        connections: vec![conn("in", "bp")],
        base_dir: std::env::temp_dir(),
    };
    let r = render(
        &transcribe,
        &reg,
        Some(&clip),
        &RenderOptions {
            block_size: 256,
            tail_secs: 1.0,
            ..Default::default()
        },
        |_, _| {},
    )
    .unwrap();
    assert_eq!(r.alloc_violations, 0, "the basic_pitch node allocated on the audio thread");
    let ons: Vec<(f64, f64, u8)> = r
        .messages
        .iter()
        .filter_map(|m| match *m {
            FromRt::Midi {
                sample_time, origin, msg, ..
            } if msg[0] & 0xf0 == 0x90 && msg[2] > 0 => Some((origin as f64 / sr as f64, sample_time as f64 / sr as f64, msg[1])),
            _ => None,
        })
        .collect();
    println!("latency {} frames; note-ons (onset s, emitted s, key): {ons:?}", r.latency_frames);
    // Every true note is found with the right key, its onset within 50 ms.
    for &(on, _, k) in &notes {
        assert!(
            ons.iter().any(|&(o, _, kk)| kk == k && (o - on).abs() <= 0.05),
            "missing key {k} at {on} s"
        );
    }
    // Few extras (octave errors and the like).
    assert!(ons.len() <= notes.len() + 2, "{} note-ons for {} notes", ons.len(), notes.len());
    // Every note leaves exactly the node's declared latency after its estimated onset
    // (hop 2048 + 4 frames of lookahead at 22050 Hz, the resampler, a 60 ms margin: 200 ms).
    let lat: Vec<f64> = ons.iter().map(|&(o, e, _)| e - o).collect();
    assert!(lat.iter().all(|l| (l - lat[0]).abs() < 1.0 / sr as f64 + 1e-9), "{lat:?}");
    assert!((lat[0] - 0.2001).abs() < 0.002, "latency {}", lat[0]);
}
