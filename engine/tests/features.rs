//! The `features` node's control curves (f0, voiced, A-weighted loudness every 4 ms) through
//! the real engine, under the allocation guard: they read a tone's pitch and level, the same at
//! any block size, and a control port cannot be wired to an audio port.

mod common;
use common::*;
use stagebox_engine::alloc_check::CheckedAlloc;
use stagebox_engine::audio_file::Audio;
use stagebox_engine::backend::offline::{render, RenderOptions};

#[global_allocator]
static ALLOC: CheckedAlloc = CheckedAlloc;

const SR: u32 = 48000;

/// Silence, then a 330 Hz tone at amplitude 0.25 from 0.5 s, then silence from 1.5 s.
fn tone() -> Audio {
    let samples = (0..2 * SR as usize)
        .map(|t| {
            let ts = t as f32 / SR as f32;
            if (0.5..1.5).contains(&ts) {
                0.25 * (2.0 * std::f32::consts::PI * 330.0 * ts).sin()
            } else {
                0.0
            }
        })
        .collect();
    Audio {
        sample_rate: SR,
        channels: 1,
        samples,
        wav_format: None,
    }
}

/// The three curves at `block`, read back from recorders: (f0, voiced, loudness), one per sample.
fn curves(block: usize, dir: &std::path::Path) -> [Vec<f32>; 3] {
    let names = ["f0", "voiced", "loudness"];
    let mut nodes = vec![node("in", "input", &[("channels", i(1))]), node("feat", "features", &[])];
    let mut conns = vec![conn("in", "feat")];
    for n in names {
        let path = dir.join(format!("{n}-{block}.wav"));
        nodes.push(node(
            n,
            "recorder",
            &[("channels", i(1)), ("format", s("float32")), ("path", s(path.to_str().unwrap()))],
        ));
        conns.push(conn(&format!("feat.{n}"), n));
    }
    let opts = RenderOptions {
        sample_rate: SR,
        block_size: block,
        ..Default::default()
    };
    let r = render(&graph(nodes, conns), &registry(), Some(&tone()), &opts, |_, _| {}).unwrap();
    assert_eq!(r.alloc_violations, 0);
    names.map(|n| {
        stagebox_engine::audio_file::read(&dir.join(format!("{n}-{block}.wav")))
            .unwrap()
            .samples
    })
}

#[test]
fn features_read_a_tones_pitch_and_level_the_same_at_any_block_size() {
    let dir = std::env::temp_dir().join(format!("stagebox-features-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let [f0, voiced, loud] = curves(512, &dir);
    let at = |v: &[f32], s: f32| v[(s * SR as f32) as usize];
    assert_eq!(at(&voiced, 0.3), 0.0);
    assert_eq!(at(&loud, 0.3), stagebox_engine::loudness::FLOOR_DB);
    assert_eq!(at(&voiced, 1.0), 1.0);
    assert!((at(&f0, 1.0) - 330.0).abs() < 1.0, "f0 {}", at(&f0, 1.0));
    // -15.1 dBFS RMS, and the A curve takes 6.3 dB at 330 Hz.
    let l = at(&loud, 1.0);
    assert!((-22.4..-20.4).contains(&l), "loudness {l} dB");
    // After the tone: unvoiced, f0 held (what plays along does not glide), level at the floor.
    assert_eq!(at(&voiced, 1.8), 0.0);
    assert!((at(&f0, 1.8) - 330.0).abs() < 3.0, "{}", at(&f0, 1.8));
    assert_eq!(at(&loud, 1.8), stagebox_engine::loudness::FLOOR_DB);
    // Values change only every 4 ms (192 samples), and the same at any block size.
    let changes = f0.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(changes < 2 * SR as usize / 192);
    // ... on the phase `timbre` frames on (so it reads each hop the sample it appears).
    let phase = stagebox_engine::nodes::melody::hop_end_phase(SR, 192);
    assert_eq!(phase, 48);
    let moved: Vec<usize> = (1..loud.len()).filter(|&t| loud[t] != loud[t - 1]).collect();
    assert!(moved.len() > 200, "{} changes", moved.len());
    assert!(moved.iter().all(|t| t % 192 == phase), "changes at {:?}", &moved[..8]);
    for block in [1, 77, 128] {
        assert_eq!(curves(block, &dir), [f0.clone(), voiced.clone(), loud.clone()], "block {block}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_control_port_cannot_feed_an_audio_port() {
    let g = graph(
        vec![
            node("in", "input", &[("channels", i(1))]),
            node("feat", "features", &[]),
            node("out", "output", &[("channels", i(1))]),
        ],
        vec![conn("in", "feat"), conn("feat.loudness", "out")],
    );
    let errs = stagebox_engine::graph::Schedule::compile(&g, &registry(), 48000.0)
        .err()
        .expect("refused");
    assert!(errs[0].message.contains("`feat.loudness` is a control port"), "{}", errs[0].message);
}

#[test]
fn notes_become_f0_and_shaped_loudness_curves() {
    use stagebox_engine::backend::offline::ScheduledEvent;
    let dir = std::env::temp_dir().join(format!("stagebox-n2c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names = ["f0", "loudness", "voiced"];
    let mut nodes = vec![node("n2c", "notes_to_control", &[("attack_ms", f(20.0)), ("release_ms", f(100.0))])];
    let mut conns = vec![];
    for n in names {
        let path = dir.join(format!("{n}.wav"));
        nodes.push(node(
            n,
            "recorder",
            &[("channels", i(1)), ("format", s("float32")), ("path", s(path.to_str().unwrap()))],
        ));
        conns.push(conn(&format!("n2c.{n}"), n));
    }
    let at = |t: f64| (t * SR as f64) as u64;
    let events = vec![
        (at(0.1), "n2c".to_string(), ScheduledEvent::Midi([0x90, 69, 127])),
        (at(0.3), "n2c".to_string(), ScheduledEvent::Midi([0x90, 76, 127])),
        (at(0.35), "n2c".to_string(), ScheduledEvent::Midi([0xe0, 0x00, 0x60])),
        (at(0.5), "n2c".to_string(), ScheduledEvent::Midi([0x80, 76, 0])),
    ];
    let opts = RenderOptions {
        sample_rate: SR,
        block_size: 100,
        duration_secs: Some(0.8),
        events,
        ..Default::default()
    };
    let r = render(&graph(nodes, conns), &registry(), None, &opts, |_, _| {}).unwrap();
    assert_eq!(r.alloc_violations, 0);
    let [f0, loud, voiced] = names.map(|n| stagebox_engine::audio_file::read(&dir.join(format!("{n}.wav"))).unwrap().samples);
    let v = |c: &[f32], t: f64| c[(t * SR as f64) as usize];
    assert_eq!(v(&voiced, 0.05), 0.0);
    assert!(v(&loud, 0.105) < -50.0, "the attack starts low");
    assert!((v(&f0, 0.2) - 440.0).abs() < 0.01 && (v(&loud, 0.2) + 10.0).abs() < 0.01);
    // Legato to E5, then bent up half the range (one semitone): F5.
    let f5 = 440.0 * 2f32.powf(8.0 / 12.0);
    assert!((v(&f0, 0.45) - f5).abs() < 0.05, "{}", v(&f0, 0.45));
    assert!(v(&loud, 0.31) > -11.0, "legato: no new attack");
    // Released at 0.5 s: silent and unvoiced 100 ms later.
    assert!(v(&loud, 0.55) < -20.0 && v(&voiced, 0.7) == 0.0);
    let _ = std::fs::remove_dir_all(&dir);
}
