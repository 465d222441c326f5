//! Offline renders through the real engine: block-size invariance, determinism, allocation
//! checks, sample-accurate events, crossfaded swaps, recorder and player. The test thread plays
//! the audio thread's part; every process call runs under the allocation guard.

mod common;
use common::*;
use stagebox_engine::alloc_check::{self, CheckedAlloc};
use stagebox_engine::audio_file::{self, Audio, WavFormat};
use stagebox_engine::backend::offline::{render, RenderOptions, Rendered, ScheduledEvent};
use stagebox_engine::graph::Schedule;
use stagebox_engine::{EngineConfig, EngineHandle, GraphDesc};

#[global_allocator]
static ALLOC: CheckedAlloc = CheckedAlloc;

/// Every built-in node type, MIDI between nodes, events at odd sample times.
fn rich_graph(dir: &std::path::Path) -> GraphDesc {
    let clip = dir.join("clip.wav");
    let x = test_signal(30000, 2, 44100.0);
    audio_file::write_wav(
        &clip,
        &Audio {
            sample_rate: 44100,
            channels: 2,
            samples: x,
            wav_format: None,
        },
        WavFormat::Float32,
    )
    .unwrap();
    let mut g = graph(
        vec![
            node("in", "input", &[("channels", i(2))]),
            node("vol", "gain", &[("gain_db", f(-3.0)), ("pan", f(0.3))]),
            node("clip", "player", &[("path", s(clip.to_str().unwrap())), ("loop", b(true))]),
            node("tone", "osc", &[("waveform", s("saw")), ("freq_hz", f(331.0))]),
            node("noise", "osc", &[("waveform", s("noise")), ("gain_db", f(-30.0))]),
            node("p", "pan", &[("pan", f(-0.5))]),
            node("seq", "test_notes", &[("every", i(1777))]),
            node("keys", "synth", &[("waveform", s("square")), ("voices", i(4))]),
            node("rs", "resample", &[("rate_hz", i(16000)), ("channels", i(2))]),
            node("mix", "mixer", &[("inputs", i(5)), ("gain_db_3", f(-6.0))]),
            node("lvl", "meter", &[("interval_ms", i(7))]),
            node("out", "output", &[("channels", i(2))]),
        ],
        vec![
            conn("in", "vol"),
            conn("vol", "mix.in1"),
            conn("clip", "rs"),
            conn("rs", "mix.in2"),
            conn("tone", "mix.in3"),
            conn("noise", "p"),
            conn("p", "mix.in4"),
            conn("seq.midi", "keys.midi"),
            conn("keys", "mix.in5"),
            conn("mix", "lvl"),
            conn("lvl", "out"),
        ],
    );
    g.base_dir = dir.to_path_buf();
    g
}

fn rich_events() -> Vec<(u64, String, ScheduledEvent)> {
    vec![
        (1001, "vol".into(), ScheduledEvent::Param("gain_db".into(), -20.0)),
        (1500, "tone".into(), ScheduledEvent::Param("freq_hz".into(), 555.0)),
        (2047, "keys".into(), ScheduledEvent::Midi([0x90, 72, 90])),
        (9999, "keys".into(), ScheduledEvent::Midi([0x80, 72, 0])),
        (12345, "tone".into(), ScheduledEvent::Param("waveform".into(), 2.0)),
        (20000, "mix".into(), ScheduledEvent::Param("gain_db_2".into(), -40.0)),
        (25001, "vol".into(), ScheduledEvent::Param("mute".into(), 1.0)),
    ]
}

fn render_rich(dir: &std::path::Path, block: usize) -> Rendered {
    let g = rich_graph(dir);
    let input = Audio {
        sample_rate: 48000,
        channels: 2,
        samples: test_signal(30000, 2, 48000.0),
        wav_format: None,
    };
    let opts = RenderOptions {
        sample_rate: 48000,
        block_size: block,
        events: rich_events(),
        ..Default::default()
    };
    render(&g, &registry(), Some(&input), &opts, |_, _| {}).unwrap()
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("stagebox-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn block_size_does_not_change_the_output() {
    let dir = tmpdir("blocks");
    let base = render_rich(&dir, 64);
    assert!(base.audio.samples.iter().any(|x| x.abs() > 0.01), "the render should not be silent");
    for bs in [1, 512, 77, 1024, 3000] {
        let r = render_rich(&dir, bs);
        assert_eq!(r.audio.samples.len(), base.audio.samples.len());
        let first_diff = r
            .audio
            .samples
            .iter()
            .zip(&base.audio.samples)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        assert_eq!(first_diff, None, "block size {bs} differs from 64 (bit-exact expected)");
        // Meters report at the same sample times with the same values.
        assert_eq!(r.messages, base.messages, "block size {bs}: meter reports differ");
    }
}

#[test]
fn two_renders_are_identical() {
    let dir = tmpdir("determinism");
    let a = render_rich(&dir, 256);
    let b = render_rich(&dir, 256);
    assert!(a.audio.samples == b.audio.samples);
    assert!(!a.messages.is_empty());
}

#[test]
fn no_process_call_allocates() {
    assert!(
        alloc_check::is_installed(),
        "the checked allocator must be installed for this test to mean anything"
    );
    let dir = tmpdir("alloc");
    for bs in [1, 128, 1000] {
        let r = render_rich(&dir, bs);
        assert!(r.process_calls > 0);
        assert_eq!(r.alloc_violations, 0, "block size {bs}: allocations on the audio thread");
    }
}

#[test]
fn the_allocation_check_catches_a_node_that_allocates() {
    let g = graph(
        vec![
            node("in", "input", &[("channels", i(1))]),
            node("bad", "test_alloc", &[]),
            node("out", "output", &[("channels", i(1))]),
        ],
        vec![conn("in", "bad"), conn("bad", "out")],
    );
    let input = Audio {
        sample_rate: 48000,
        channels: 1,
        samples: vec![0.1; 1000],
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
    assert!(
        r.alloc_violations >= 10,
        "expected allocations to be caught, got {}",
        r.alloc_violations
    );
}

#[test]
fn parameter_events_land_on_their_exact_sample() {
    // Constant input through a gain; mute at sample 777 starts the ramp exactly there.
    let g = graph(
        vec![
            node("in", "input", &[("channels", i(1))]),
            node("g", "gain", &[("channels", i(1))]),
            node("out", "output", &[("channels", i(1))]),
        ],
        vec![conn("in", "g"), conn("g", "out")],
    );
    let input = Audio {
        sample_rate: 48000,
        channels: 1,
        samples: vec![0.5; 4000],
        wav_format: None,
    };
    for bs in [1, 64, 500] {
        let opts = RenderOptions {
            block_size: bs,
            events: vec![(777, "g".into(), ScheduledEvent::Param("mute".into(), 1.0))],
            ..Default::default()
        };
        let r = render(&g, &registry(), Some(&input), &opts, |_, _| {}).unwrap();
        let y = &r.audio.samples;
        assert!(y[..777].iter().all(|&v| v == 0.5), "block {bs}: changed before its time");
        assert!(y[777] < 0.5, "block {bs}: the ramp must start at sample 777");
        // 20 ms linear ramp = 960 frames: silent from 777 + 959 on, half-way at 777 + 479.
        assert!((y[777 + 479] - 0.25).abs() < 1e-3, "block {bs}: {}", y[777 + 479]);
        assert!(y[777 + 959..].iter().all(|&v| v == 0.0), "block {bs}: not silent after the ramp");
    }
}

#[test]
fn a_swapped_graph_is_crossfaded_without_a_click() {
    // Tone at 0 dB, then swap to the same tone through -40 dB: the level moves smoothly.
    let reg = registry();
    let mk = |db: f64| {
        graph(
            vec![
                node("t", "osc", &[("freq_hz", f(100.0)), ("gain_db", f(0.0))]),
                node("g", "gain", &[("gain_db", f(db)), ("channels", i(1))]),
                node("out", "output", &[("channels", i(1))]),
            ],
            vec![conn("t", "g"), conn("g", "out")],
        )
    };
    let (mut handle, mut engine) = EngineHandle::new(EngineConfig::new(48000.0, 0, 1));
    handle.swap(Schedule::compile(&mk(0.0), &reg, 48000.0).unwrap()).unwrap();
    let mut out = vec![0.0f32; 128];
    let mut all = Vec::new();
    for k in 0..100 {
        if k == 50 {
            handle.swap(Schedule::compile(&mk(-40.0), &reg, 48000.0).unwrap()).unwrap();
        }
        let before = alloc_check::thread_violations();
        alloc_check::no_alloc(|| engine.process(&[], &mut out));
        assert_eq!(alloc_check::thread_violations(), before, "swap allocated on the audio thread");
        all.extend_from_slice(&out);
        handle.collect();
    }
    // Largest step between samples: a 100 Hz sine at full scale moves at most ~0.0131 per sample.
    let max_step = all.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0, f32::max);
    assert!(max_step < 0.02, "click: step {max_step}");
    let tail_peak = all[all.len() - 2000..].iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!((tail_peak - 0.01).abs() < 0.002, "after the swap the level is -40 dB: {tail_peak}");
    let mut swapped = 0;
    handle.drain(|m| {
        if matches!(m, stagebox_engine::msg::FromRt::Swapped { gen: 2 }) {
            swapped += 1
        }
    });
    assert_eq!(swapped, 1);
    // The old schedule was retired through the collector (freed here, not on the audio thread).
    drop(engine);
    handle.collect();
}

#[test]
fn events_for_a_retired_graph_are_dropped_not_misapplied() {
    let reg = registry();
    let g = graph(
        vec![
            node("t", "osc", &[("gain_db", f(-6.0))]),
            node("out", "output", &[("channels", i(1))]),
        ],
        vec![conn("t", "out")],
    );
    let (mut handle, mut engine) = EngineHandle::new(EngineConfig::new(48000.0, 0, 1));
    handle.swap(Schedule::compile(&g, &reg, 48000.0).unwrap()).unwrap();
    handle.set_param("t", "gain_db", -12.0, stagebox_engine::msg::AT_ONCE).unwrap();
    handle.swap(Schedule::compile(&g, &reg, 48000.0).unwrap()).unwrap();
    let mut out = vec![0.0f32; 64];
    engine.process(&[], &mut out);
    assert_eq!(stagebox_engine::stats::RtStats::get(&handle.stats.events_dropped), 1);
    assert!(handle.set_param("t", "nope", 1.0, 0).unwrap_err().contains("no parameter"));
    assert!(handle.set_param("ghost", "gain_db", 1.0, 0).unwrap_err().contains("no node"));
}

#[test]
fn recorder_writes_what_it_hears_and_player_plays_files() {
    let dir = tmpdir("rec");
    let take = dir.join("take.wav");
    let _ = std::fs::remove_file(&take);
    let g = graph(
        vec![
            node("in", "input", &[("channels", i(2))]),
            node("rec", "recorder", &[("path", s(take.to_str().unwrap())), ("format", s("float32"))]),
            node("out", "output", &[("channels", i(2))]),
        ],
        vec![conn("in", "rec"), conn("in", "out")],
    );
    let x = test_signal(20000, 2, 48000.0);
    let input = Audio {
        sample_rate: 48000,
        channels: 2,
        samples: x.clone(),
        wav_format: None,
    };
    let r = render(
        &g,
        &registry(),
        Some(&input),
        &RenderOptions {
            block_size: 333,
            ..Default::default()
        },
        |_, _| {},
    )
    .unwrap();
    assert_eq!(r.alloc_violations, 0, "the recorder allocated on the audio thread");
    let rec = audio_file::read(&take).unwrap();
    assert_eq!(rec.channels, 2);
    assert_eq!(rec.samples, x);
    // Played back through a player at the same rate, the file comes out unchanged.
    let g = graph(
        vec![
            node("p", "player", &[("path", s(take.to_str().unwrap()))]),
            node("out", "output", &[("channels", i(2))]),
        ],
        vec![conn("p", "out")],
    );
    let r = render(
        &g,
        &registry(),
        None,
        &RenderOptions {
            duration_secs: Some(20000.0 / 48000.0),
            ..Default::default()
        },
        |_, _| {},
    )
    .unwrap();
    assert_eq!(r.alloc_violations, 0, "the player allocated on the audio thread");
    assert_eq!(r.audio.samples, x);
    // A second take never overwrites the first.
    let g = graph(
        vec![
            node("in", "input", &[("channels", i(2))]),
            node("rec", "recorder", &[("path", s(take.to_str().unwrap()))]),
        ],
        vec![conn("in", "rec")],
    );
    render(&g, &registry(), Some(&input), &RenderOptions::default(), |_, _| {}).unwrap();
    assert!(dir.join("take-1.wav").exists());
    assert_eq!(audio_file::read(&take).unwrap().samples, x);
}
