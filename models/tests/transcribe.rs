//! Transcribes a rendered clip with known notes through the basic_pitch node, offline (the
//! render thread plays the audio thread, under the allocation guard).

use std::collections::BTreeMap;

mod common;

use stagebox_engine::alloc_check::CheckedAlloc;
use stagebox_engine::audio_file::Audio;
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

const SR: u64 = 48000;

/// `notes` (onset s, end s, key) played by a triangle synth, 4.5 s at `SR`.
fn synth_clip(reg: &Registry, notes: &[(f64, f64, u8)]) -> Audio {
    let mut events = Vec::new();
    for &(on, off, k) in notes {
        events.push(((on * SR as f64) as u64, "keys".to_string(), ScheduledEvent::Midi([0x90, k, 100])));
        events.push(((off * SR as f64) as u64, "keys".to_string(), ScheduledEvent::Midi([0x80, k, 0])));
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
        takes_dir: None,
    };
    render(
        &synth,
        reg,
        None,
        &RenderOptions {
            duration_secs: Some(4.5),
            events,
            ..Default::default()
        },
        |_, _| {},
    )
    .unwrap()
    .audio
}

#[test]
fn a_rendered_melody_and_chord_come_back_as_notes() {
    let mut reg = Registry::builtin();
    stagebox_models::register(&mut reg);
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
    let clip = synth_clip(&reg, &notes);
    let transcribe = GraphDesc {
        nodes: vec![
            node("in", "input", &[("channels", ParamValue::Int(1))]),
            node("bp", "basic_pitch", &[]),
        ],
        connections: vec![conn("in", "bp")],
        base_dir: std::env::temp_dir(),
        takes_dir: None,
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
    let ons = common::note_ons(&r, SR as f64);
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
    // (a hop of 4 frames + 4 frames of lookahead at 22050 Hz, the resampler, a 15 ms margin:
    // 109 ms).
    let lat: Vec<f64> = ons.iter().map(|&(o, e, _)| e - o).collect();
    assert!(lat.iter().all(|l| (l - lat[0]).abs() < 1.0 / SR as f64 + 1e-9), "{lat:?}");
    let declared = 8.0 * 256.0 / 22050.0 + 0.015;
    assert!((lat[0] - declared).abs() < 0.002, "latency {} s, expected {declared} s", lat[0]);
    // MPE: notes on member channels 2-16, the chord's three on three channels; steady
    // notes send no bends (only a channel's reset to centre before a note).
    let on_msgs: Vec<[u8; 3]> = midi(&r).into_iter().filter(|m| m[0] & 0xf0 == 0x90).collect();
    assert!(on_msgs.iter().all(|m| (1..16).contains(&(m[0] & 0x0f))), "{on_msgs:?}");
    let chord: Vec<u8> = on_msgs.iter().rev().take(3).map(|m| m[0] & 0x0f).collect();
    assert!(chord[0] != chord[1] && chord[1] != chord[2] && chord[0] != chord[2], "{chord:?}");
    let bends: Vec<[u8; 3]> = midi(&r).into_iter().filter(|m| m[0] & 0xf0 == 0xe0 && bend_of(m) != 8192).collect();
    assert!(bends.is_empty(), "steady notes bent: {bends:?}");
    // The zone is set up first: RPN 6 (MPE configuration) on channel 1.
    assert_eq!(&midi(&r)[..3], &[[0xb0, 101, 0], [0xb0, 100, 6], [0xb0, 6, 15]]);
}

fn midi(r: &stagebox_engine::backend::offline::Rendered) -> Vec<[u8; 3]> {
    r.messages
        .iter()
        .filter_map(|m| match *m {
            FromRt::Midi { msg, .. } => Some(msg),
            _ => None,
        })
        .collect()
}

fn bend_of(m: &[u8; 3]) -> u16 {
    (m[2] as u16) << 7 | m[1] as u16
}

#[test]
fn a_bent_note_bends_on_its_own_channel() {
    let mut reg = Registry::builtin();
    stagebox_models::register(&mut reg);
    let sr = 48000u64;
    // A4 held from 0.5 s to 2.5 s, bent up a semitone between 1.2 and 1.5 s (the synth's bend
    // range is 2 semitones: half way up), while C4 sounds steady beneath it.
    let at = |s: f64| (s * sr as f64) as u64;
    let mut events = vec![
        (at(0.5), "keys".to_string(), ScheduledEvent::Midi([0x90, 69, 100])),
        (at(0.5), "keys".to_string(), ScheduledEvent::Midi([0x91, 60, 100])),
        (at(2.5), "keys".to_string(), ScheduledEvent::Midi([0x80, 69, 0])),
        (at(2.5), "keys".to_string(), ScheduledEvent::Midi([0x81, 60, 0])),
    ];
    for i in 0..=30 {
        let v = 8192 + (4096 * i / 30) as u16;
        events.push((
            at(1.2 + 0.01 * i as f64),
            "keys".to_string(),
            ScheduledEvent::Midi([0xe0, (v & 0x7f) as u8, (v >> 7) as u8]),
        ));
    }
    let synth = GraphDesc {
        nodes: vec![
            node(
                "keys",
                "synth",
                &[("waveform", ParamValue::Str("triangle".into())), ("channels", ParamValue::Int(1))],
            ),
            node("out", "output", &[("channels", ParamValue::Int(1))]),
        ],
        connections: vec![conn("keys", "out")],
        base_dir: std::env::temp_dir(),
        takes_dir: None,
    };
    let opts = RenderOptions {
        duration_secs: Some(3.0),
        events,
        ..Default::default()
    };
    let clip = render(&synth, &reg, None, &opts, |_, _| {}).unwrap().audio;
    let transcribe = GraphDesc {
        nodes: vec![
            node("in", "input", &[("channels", ParamValue::Int(1))]),
            node("bp", "basic_pitch", &[]),
        ],
        connections: vec![conn("in", "bp")],
        base_dir: std::env::temp_dir(),
        takes_dir: None,
    };
    let opts = RenderOptions {
        tail_secs: 1.0,
        ..Default::default()
    };
    let r = render(&transcribe, &reg, Some(&clip), &opts, |_, _| {}).unwrap();
    assert_eq!(r.alloc_violations, 0);
    let msgs = midi(&r);
    let ch_of = |key: u8| {
        msgs.iter()
            .find(|m| m[0] & 0xf0 == 0x90 && m[1] == key && m[2] > 0)
            .map(|m| m[0] & 0x0f)
    };
    let ons: Vec<[u8; 3]> = msgs
        .iter()
        .filter(|m| m[0] & 0xf0 == 0x90 || m[0] & 0xf0 == 0x80)
        .cloned()
        .collect();
    let (a4, c4) = (
        ch_of(69).expect("A4 found"),
        ch_of(60).unwrap_or_else(|| panic!("C4 not found: {ons:?}")),
    );
    assert_ne!(a4, c4);
    let semis = |ch: u8| -> Vec<f32> {
        msgs.iter()
            .filter(|m| m[0] == 0xe0 | ch)
            .map(|m| (bend_of(m) as f32 - 8192.0) / 8192.0 * 48.0)
            .collect()
    };
    let (ba, bc) = (semis(a4), semis(c4));
    println!("A4 bends (semitones): {ba:?}\nC4 bends: {bc:?}");
    // A4 bends up by a semitone and holds it; C4 does not move.
    let top = ba.iter().cloned().fold(f32::MIN, f32::max);
    assert!((top - 1.0).abs() < 0.15, "A4 bent to {top} semitones");
    assert!(ba.len() >= 3, "a gradual bend comes as several messages: {ba:?}");
    assert!(bc.iter().all(|b| b.abs() < 0.01), "C4 bent: {bc:?}");
    // No new note for the bent one (it is the same note).
    let a_ons = msgs
        .iter()
        .filter(|m| m[0] & 0xf0 == 0x90 && m[2] > 0 && (m[1] == 69 || m[1] == 70))
        .count();
    assert_eq!(a_ons, 1, "{msgs:?}");
}
