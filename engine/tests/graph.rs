//! Graph compilation: order, errors, latency alignment (control thread; renders run the engine
//! on the test thread).

mod common;
use common::*;
use stagebox_engine::alloc_check::CheckedAlloc;
use stagebox_engine::audio_file::Audio;
use stagebox_engine::backend::offline::{render, RenderOptions};
use stagebox_engine::graph::{ErrorLoc, Schedule};

/// Every render here runs its process calls under the allocation guard, which counts only
/// with the checked allocator installed.
#[global_allocator]
static ALLOC: CheckedAlloc = CheckedAlloc;

#[test]
fn compiles_in_topological_order() {
    let g = graph(
        vec![
            node("out", "output", &[("channels", i(1))]),
            node("g", "gain", &[("channels", i(1))]),
            node("tone", "osc", &[]),
        ],
        vec![conn("g", "out"), conn("tone", "g")],
    );
    let s = Schedule::compile(&g, &registry(), 48000.0).unwrap();
    let order: Vec<String> = s.order().iter().map(|&k| s.nodes()[k as usize].id.clone()).collect();
    assert_eq!(order, vec!["tone", "g", "out"]);
    assert_eq!(s.output_channels(), 1);
    assert_eq!(s.input_channels(), 0);
}

#[test]
fn cycles_are_rejected_with_their_nodes() {
    let g = graph(
        vec![node("a", "gain", &[("channels", i(1))]), node("b", "gain", &[("channels", i(1))])],
        vec![conn("a", "b"), conn("b", "a")],
    );
    let errs = Schedule::compile(&g, &registry(), 48000.0).err().unwrap();
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].message.contains("cycle") && errs[0].message.contains("a, b"),
        "{}",
        errs[0].message
    );
    assert!(matches!(errs[0].loc, ErrorLoc::Connection(_)));
}

#[test]
fn bad_ports_channels_and_types_are_reported_where_they_are() {
    let g = graph(
        vec![
            node("tone", "osc", &[("channels", i(3))]),
            node("g", "gain", &[("channels", i(2))]),
            node("m", "mixer", &[]),
            node("x", "nosuch", &[]),
            node("y", "gain", &[("gain_db", f(99.0))]),
        ],
        vec![conn("tone", "g"), conn("g", "m.in9"), conn("g", "ghost")],
    );
    let errs = Schedule::compile(&g, &registry(), 48000.0).err().unwrap();
    let msgs: Vec<String> = errs.iter().map(|e| e.message.clone()).collect();
    assert!(
        errs.iter()
            .any(|e| e.loc == ErrorLoc::Node(3) && e.message.contains("unknown node type `nosuch`")),
        "{msgs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.loc == ErrorLoc::Param(4, "gain_db".into()) && e.message.contains("out of range")),
        "{msgs:?}"
    );
    // Node errors stop compilation before connections are checked; fix them and look again.
    let g2 = graph(g.nodes[..3].to_vec(), g.connections.clone());
    let errs = Schedule::compile(&g2, &registry(), 48000.0).err().unwrap();
    let msgs: Vec<String> = errs.iter().map(|e| e.message.clone()).collect();
    assert!(
        errs.iter()
            .any(|e| e.loc == ErrorLoc::Connection(0) && e.message.contains("3 channels")),
        "{msgs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.loc == ErrorLoc::ConnectionTo(1) && e.message.contains("no port `in9`")),
        "{msgs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.loc == ErrorLoc::ConnectionTo(2) && e.message.contains("`ghost`")),
        "{msgs:?}"
    );
}

#[test]
fn merging_paths_are_aligned_to_the_slowest() {
    // in -> delay(100) -> mix.in1 ; in -> mix.in2. Aligned: out = 2 * in(t - 100).
    let g = graph(
        vec![
            node("in", "input", &[("channels", i(1))]),
            node("d", "test_delay", &[("frames", i(100))]),
            node("m", "mixer", &[("channels", i(1))]),
            node("out", "output", &[("channels", i(1))]),
        ],
        vec![conn("in", "d"), conn("d", "m.in1"), conn("in", "m.in2"), conn("m", "out")],
    );
    let s = Schedule::compile(&g, &registry(), 48000.0).unwrap();
    assert_eq!(s.latency_frames(), 100);
    assert_eq!(s.nodes()[2].input_latency_frames, 100);
    let x = test_signal(4000, 1, 48000.0);
    let input = Audio {
        sample_rate: 48000,
        channels: 1,
        samples: x.clone(),
        wav_format: None,
    };
    let opts = RenderOptions {
        sample_rate: 48000,
        block_size: 64,
        compensate_latency: false,
        ..Default::default()
    };
    let r = render(&g, &registry(), Some(&input), &opts, |_, _| {}).unwrap();
    assert_eq!(r.alloc_violations, 0, "a process call allocated");
    for t in 0..4000 {
        let want = if t >= 100 { 2.0 * x[t - 100] } else { 0.0 };
        assert!((r.audio.samples[t] - want).abs() < 1e-6, "t={t}: {} vs {want}", r.audio.samples[t]);
    }
    // With compensation the output lines up with the input.
    let opts = RenderOptions {
        compensate_latency: true,
        ..opts
    };
    let r = render(&g, &registry(), Some(&input), &opts, |_, _| {}).unwrap();
    assert_eq!(r.alloc_violations, 0, "a process call allocated");
    assert_eq!(r.audio.samples.len(), 4000);
    for t in 0..4000 {
        assert!((r.audio.samples[t] - 2.0 * x[t]).abs() < 1e-6);
    }
}

#[test]
fn outputs_are_aligned_with_each_other() {
    // Two outputs on different channels, one behind a delay: both arrive together.
    let g = graph(
        vec![
            node("in", "input", &[("channels", i(1))]),
            node("d", "test_delay", &[("frames", i(37))]),
            node("o1", "output", &[("channels", i(1))]),
            node("o2", "output", &[("channels", i(1)), ("first_channel", i(1))]),
        ],
        vec![conn("in", "d"), conn("d", "o1"), conn("in", "o2")],
    );
    let x = test_signal(1000, 1, 48000.0);
    let input = Audio {
        sample_rate: 48000,
        channels: 1,
        samples: x,
        wav_format: None,
    };
    let r = render(
        &g,
        &registry(),
        Some(&input),
        &RenderOptions {
            block_size: 100,
            ..Default::default()
        },
        |_, _| {},
    )
    .unwrap();
    assert_eq!(r.alloc_violations, 0, "a process call allocated");
    assert_eq!(r.audio.channels, 2);
    for t in 0..1000 {
        assert_eq!(r.audio.samples[2 * t], r.audio.samples[2 * t + 1]);
    }
}

#[test]
fn resample_node_declares_its_true_latency() {
    // A 200 Hz sine through resample(22050) with compensation comes back aligned: one frame
    // of error in the declared latency would leave an error of about 0.026.
    let g = graph(
        vec![
            node("in", "input", &[("channels", i(1))]),
            node("r", "resample", &[("rate_hz", i(22050))]),
            node("out", "output", &[("channels", i(1))]),
        ],
        vec![conn("in", "r"), conn("r", "out")],
    );
    let x: Vec<f32> = (0..48000)
        .map(|t| 0.5 * (2.0 * std::f32::consts::PI * 200.0 * t as f32 / 48000.0).sin())
        .collect();
    let input = Audio {
        sample_rate: 48000,
        channels: 1,
        samples: x.clone(),
        wav_format: None,
    };
    let r = render(
        &g,
        &registry(),
        Some(&input),
        &RenderOptions {
            block_size: 128,
            ..Default::default()
        },
        |_, _| {},
    )
    .unwrap();
    assert_eq!(r.alloc_violations, 0, "a process call allocated");
    assert!(r.latency_frames > 10);
    let err = r.audio.samples[2000..46000]
        .iter()
        .zip(&x[2000..46000])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(err < 2e-3, "max error {err}");
}

#[test]
fn midi_flows_between_nodes_within_the_block() {
    let g = graph(
        vec![
            node("seq", "test_notes", &[("every", i(2400))]),
            node("keys", "synth", &[("channels", i(1))]),
            node("out", "output", &[("channels", i(1))]),
        ],
        vec![conn("seq.midi", "keys.midi"), conn("keys", "out")],
    );
    let r = render(
        &g,
        &registry(),
        None,
        &RenderOptions {
            duration_secs: Some(0.2),
            block_size: 512,
            ..Default::default()
        },
        |_, _| {},
    )
    .unwrap();
    assert_eq!(r.alloc_violations, 0, "a process call allocated");
    // The first note starts at frame 0: sound from the first frames on.
    assert!(r.audio.samples[..64].iter().any(|x| x.abs() > 1e-4));
    let bad = graph(
        vec![node("seq", "test_notes", &[]), node("g", "gain", &[])],
        vec![conn("seq.midi", "g.midi")],
    );
    let errs = Schedule::compile(&bad, &registry(), 48000.0).err().unwrap();
    assert!(errs[0].message.contains("no MIDI input"));
}
