//! The inference bridge: declared latency, alignment, determinism offline, and a stalled model
//! costing late windows on a live engine, never a blocked callback. The test thread plays the
//! audio thread's part, under the allocation guard.

mod common;
use common::*;
use stagebox_engine::alloc_check::{self, CheckedAlloc};
use stagebox_engine::audio_file::Audio;
use stagebox_engine::backend::offline::{render, RenderOptions};
use stagebox_engine::graph::{CompileMode, Schedule};
use stagebox_engine::msg::FromRt;
use stagebox_engine::{EngineConfig, EngineHandle, GraphDesc};

#[global_allocator]
static ALLOC: CheckedAlloc = CheckedAlloc;

fn model_graph(params: &[(&str, stagebox_engine::ParamValue)]) -> GraphDesc {
    // in -> model -> mix.in1 ; in -> mix.in2 (a dry path that must be aligned with the model's).
    graph(
        vec![
            node("in", "input", &[("channels", i(1))]),
            node("m", "infer_test", params),
            node("mix", "mixer", &[("channels", i(1))]),
            node("out", "output", &[("channels", i(1))]),
        ],
        vec![conn("in", "m"), conn("m", "mix.in1"), conn("in", "mix.in2"), conn("mix", "out")],
    )
}

fn mono(frames: usize) -> Audio {
    Audio {
        sample_rate: 48000,
        channels: 1,
        samples: test_signal(frames, 1, 48000.0),
        wav_format: None,
    }
}

#[test]
fn identity_model_is_aligned_with_the_dry_path_at_any_block_size() {
    let g = model_graph(&[("hop", i(256)), ("window", i(1024)), ("margin_ms", f(5.0))]);
    let x = mono(20000);
    let mut first: Option<Vec<f32>> = None;
    for bs in [1, 64, 100, 512] {
        let r = render(
            &g,
            &registry(),
            Some(&x),
            &RenderOptions {
                block_size: bs,
                ..Default::default()
            },
            |_, _| {},
        )
        .unwrap();
        assert_eq!(r.latency_frames, 256 + 240);
        assert_eq!(r.alloc_violations, 0);
        // Compensated and aligned: out = 2 * in, exactly.
        for t in 0..20000 {
            assert_eq!(r.audio.samples[t], x.samples[t] * 2.0, "block {bs}, frame {t}");
        }
        match &first {
            None => first = Some(r.audio.samples),
            Some(f) => assert!(*f == r.audio.samples),
        }
    }
}

#[test]
fn offline_renders_wait_for_a_slow_model() {
    // 3 ms per window with a 1 ms margin: live it would be late; offline it is exact.
    let g = model_graph(&[
        ("backend", s("stall")),
        ("stall_ms", f(3.0)),
        ("hop", i(512)),
        ("margin_ms", f(1.0)),
    ]);
    let x = mono(12000);
    let r = render(
        &g,
        &registry(),
        Some(&x),
        &RenderOptions {
            block_size: 128,
            ..Default::default()
        },
        |_, _| {},
    )
    .unwrap();
    for t in 0..12000 {
        assert_eq!(r.audio.samples[t], x.samples[t] * 2.0, "frame {t}");
    }
    let late: u64 = r
        .messages
        .iter()
        .filter_map(|m| {
            if let FromRt::Infer { counts, .. } = m {
                Some(counts.late)
            } else {
                None
            }
        })
        .max()
        .unwrap_or(0);
    assert_eq!(late, 0);
}

#[test]
fn a_stalled_model_costs_late_windows_not_a_blocked_callback() {
    // Live mode: 200 ms per window against a 10 ms margin, the engine driven as fast as the test
    // thread can. A callback that waited for the model would see no late window at all.
    let reg = registry();
    let g = graph(
        vec![
            node("in", "input", &[("channels", i(1))]),
            node(
                "m",
                "infer_test",
                &[
                    ("backend", s("stall")),
                    ("stall_ms", f(200.0)),
                    ("hop", i(512)),
                    ("margin_ms", f(10.0)),
                ],
            ),
            node("out", "output", &[("channels", i(1))]),
        ],
        vec![conn("in", "m"), conn("m", "out")],
    );
    let sched = Schedule::compile_with(&g, &reg, 48000.0, CompileMode::Live).unwrap();
    let (mut handle, mut engine) = EngineHandle::new(EngineConfig::new(48000.0, 1, 1));
    handle.swap(sched).unwrap();
    let input = vec![0.5f32; 128];
    let mut out = vec![0.0f32; 128];
    let mut heard = 0usize;
    let before = alloc_check::thread_violations();
    for _ in 0..(30 * 512 / 128) {
        alloc_check::no_alloc(|| engine.process(&input, &mut out));
        heard += out.iter().filter(|x| **x != 0.0).count();
    }
    assert_eq!(alloc_check::thread_violations(), before, "the bridge allocated on the audio thread");
    let mut late = 0;
    handle.drain(|m| {
        if let FromRt::Infer { counts, .. } = m {
            late = late.max(counts.late);
        }
    });
    assert!(late >= 20, "late windows: {late}");
    // Results that are late play as silence, never as stale or shifted audio.
    assert!(heard <= 2 * 512, "{heard} samples came through from a model that is always late");
    drop(engine);
    handle.collect();
}

/// A model whose worker dies (a panic in the backend) must not hang an offline render.
struct Dies;
impl stagebox_engine::infer::InferBackend for Dies {
    fn infer(&mut self, _seq: u64, _input: &[f32], _output: &mut [f32]) -> Result<(), String> {
        panic!("the model crashed");
    }
}

#[test]
fn a_dead_inference_worker_fails_its_windows_instead_of_hanging_a_render() {
    let mut bridge = stagebox_engine::infer::Bridge::new(Box::new(Dies), 64, 64, 4, 2, true).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut results = Vec::new();
        for t in 0..64 * 3 {
            if let Some(seq) = bridge.push(t as f32) {
                results.push(bridge.result(seq).is_some());
            }
        }
        let _ = done_tx.send((results, bridge.counts.failed));
    });
    let (results, failed) = done_rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the render hung waiting for a dead worker");
    assert!(results.iter().all(|ok| !ok), "{results:?}");
    assert!(failed >= 1);
}
