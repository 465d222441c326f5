//! The `onnx` node with the example model (models/example_softclip, made by its make.py): its
//! audio output is the model's formula delayed by exactly the declared latency, at block sizes
//! 1, 64, 333 and 512, bit-identical across them, every process call under the allocation guard;
//! its control output follows the recurrence its state carries; a parameter set at a sample is
//! read from the next hop; NaN input gives finite output. Broken manifests and models are
//! refused by `check` with the manifest's file:line:col or the tensor's name and both shapes;
//! a missing model file leaves a running node silent.

use std::path::{Path, PathBuf};

use stagebox_engine::alloc_check::CheckedAlloc;
use stagebox_engine::audio_file::Audio;
use stagebox_engine::backend::offline::{render, RenderOptions, ScheduledEvent};
use stagebox_engine::Registry;
use stagebox_patches::Patch;

#[global_allocator]
static ALLOC: CheckedAlloc = CheckedAlloc;

const HOP: usize = 128;
const WINDOW: usize = 256;
/// (1 + latency_frames) * hop, as the example's manifest declares.
const LATENCY: usize = 2 * HOP;

fn registry() -> Registry {
    std::env::set_var("STAGEBOX_MODELS", Path::new(env!("CARGO_MANIFEST_DIR")));
    let mut r = Registry::builtin();
    stagebox_models::register(&mut r);
    r
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stagebox-onnx-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// input -> clip (the example) -> output; clip.envelope -> a recorder at `envelope`.
fn patch_text(model: &str, envelope: &Path, extra: &str) -> String {
    format!(
        r#"[[node]]
id = "in"
type = "input"
channels = 1

[[node]]
id = "clip"
type = "onnx"
model = "{model}"
{extra}

[[node]]
id = "env"
type = "recorder"
channels = 1
record = true
path = "{}"

[[node]]
id = "out"
type = "output"
channels = 1

[[connect]]
from = "in"
to = "clip"

[[connect]]
from = "clip.envelope"
to = "env"

[[connect]]
from = "clip.out"
to = "out"
"#,
        envelope.display()
    )
}

/// A rising sine with a NaN and an inf in it (they read as 0).
fn input() -> Audio {
    let samples = (0..24000)
        .map(|t| match t {
            5000 => f32::NAN,
            7000 => f32::INFINITY,
            _ => 0.7 * (t as f32 / 24000.0) * (2.0 * std::f32::consts::PI * 330.0 * t as f32 / 48000.0).sin(),
        })
        .collect();
    Audio {
        sample_rate: 48000,
        channels: 1,
        samples,
        wav_format: None,
    }
}

fn clean(x: f32) -> f32 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

struct Run {
    out: Vec<f32>,
    envelope: Vec<f32>,
    violations: u64,
}

fn run(block: usize, events: Vec<(u64, String, ScheduledEvent)>, name: &str) -> Run {
    let d = tmp(name);
    let env = d.join("envelope.wav");
    let p = d.join("p.toml");
    let reg = registry();
    let patch = Patch::parse(&patch_text("example_softclip", &env, ""), &p, &reg).unwrap();
    let opts = RenderOptions {
        sample_rate: 48000,
        block_size: block,
        events,
        compensate_latency: false,
        ..Default::default()
    };
    let r = render(&patch.graph, &reg, Some(&input()), &opts, |_, _| {}).unwrap();
    assert_eq!(r.latency_frames as usize, LATENCY, "the declared latency");
    let envelope = stagebox_engine::audio_file::read(&env).unwrap().samples;
    Run {
        out: r.audio.samples,
        envelope,
        violations: r.alloc_violations,
    }
}

fn expected(drive_at: impl Fn(usize) -> f32) -> Vec<f32> {
    let x = input().samples;
    (0..x.len())
        .map(|t| match t.checked_sub(LATENCY) {
            Some(s) => {
                let d = drive_at(t);
                (d * clean(x[s])).tanh() / d.tanh()
            }
            None => 0.0,
        })
        .collect()
}

#[test]
fn the_example_model_plays_its_formula_delayed_by_the_declared_latency_at_any_block_size() {
    let first = run(512, Vec::new(), "b512");
    assert_eq!(first.violations, 0, "no allocation in any process call");
    let want = expected(|_| 4.0);
    let worst = first.out.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "output vs tanh(4x)/tanh(4) delayed {LATENCY}: worst {worst}");
    assert!(first.out.iter().all(|v| v.is_finite()), "NaN and inf in, finite out");
    assert!(first.out.iter().map(|v| v.abs()).fold(0.0, f32::max) > 0.9, "it is not silent");
    for block in [1, 64, 333] {
        let r = run(block, Vec::new(), &format!("b{block}"));
        assert_eq!(r.violations, 0);
        assert!(r.out == first.out, "block {block}: output differs from block 512");
        assert!(r.envelope == first.envelope, "block {block}: envelope differs");
    }
    // The envelope: run k (its window ends at sample (k+1)*hop) is 0.8 * run k-1's + 0.2 * the
    // window's rms, the state carried by the worker; it is held through hop k + 2.
    let x: Vec<f32> = input().samples.iter().map(|&v| clean(v)).collect();
    let mut state = 0.0f32;
    let mut worst = 0.0f32;
    for k in 0..x.len() / HOP - 2 {
        let end = (k + 1) * HOP;
        let window: Vec<f32> = (end as i64 - WINDOW as i64..end as i64)
            .map(|t| if t < 0 { 0.0 } else { x[t as usize] })
            .collect();
        let rms = (window.iter().map(|v| v * v).sum::<f32>() / WINDOW as f32).sqrt();
        state = 0.8 * state + 0.2 * rms;
        // The recorder records from engine time 0, as the output does.
        let at = (k + 2) * HOP + HOP / 2;
        worst = worst.max((first.envelope[at] - state).abs());
    }
    assert!(worst < 1e-4, "envelope vs its recurrence: worst {worst}");
    assert!(state > 0.1, "the envelope rose with the input ({state})");
}

#[test]
fn a_parameter_set_at_a_sample_is_read_from_the_next_hop() {
    // drive = 1 at sample 12032 (hop 94's first): the run packed at the end of hop 94 reads
    // it, and is played from hop 96 on.
    let ev = vec![(12032, "clip".to_string(), ScheduledEvent::Param("drive".into(), 1.0))];
    let r = run(100, ev, "param");
    let switch = 12032 + 2 * HOP;
    let want = expected(|t| if t < switch { 4.0 } else { 1.0 });
    let worst = r.out.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "drive 4 then 1 from sample {switch}: worst {worst}");
}

/// The errors `check` gives for the example's folder copied and changed by `edit`.
fn check_with(name: &str, edit: impl Fn(&Path)) -> String {
    let d = tmp(name);
    let model = d.join("model");
    std::fs::create_dir_all(&model).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("example_softclip");
    for f in ["manifest.toml", "softclip.onnx"] {
        std::fs::copy(shipped.join(f), model.join(f)).unwrap();
    }
    edit(&model);
    let reg = registry();
    let p = d.join("p.toml");
    let text = patch_text("./model", &d.join("e.wav"), "");
    std::fs::write(&p, &text).unwrap();
    let result = Patch::parse(&text, &p, &reg).and_then(|patch| patch.check(&reg, 48000.0).map(|_| ()));
    match result {
        Ok(()) => String::new(),
        Err(e) => e.to_string(),
    }
}

fn replace(model: &Path, from: &str, to: &str) {
    let m = model.join("manifest.toml");
    let text = std::fs::read_to_string(&m).unwrap();
    assert!(text.contains(from), "{from}");
    std::fs::write(&m, text.replacen(from, to, 1)).unwrap();
}

/// The 1-based line of `needle` in the example's manifest.
fn line_of(needle: &str) -> usize {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("example_softclip/manifest.toml")).unwrap();
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn broken_manifests_and_models_are_refused_by_check_with_where_and_why() {
    assert_eq!(check_with("ok", |_| {}), "", "the example passes check from a path");
    // A tensor whose shape is not the model's: its name and both shapes.
    let e = check_with("shape", |m| {
        replace(m, "window = 256", "window = 512");
        replace(m, "shape = [1, 256]", "shape = [1, 512]");
    });
    assert!(e.contains("`audio`") && e.contains("[1, 256]") && e.contains("[1, 512]"), "{e}");
    // A role that does not exist: the manifest's file:line:col of that tensor.
    let e = check_with("role", |m| replace(m, "role = \"control\"", "role = \"contrl\""));
    let at = format!("manifest.toml:{}:1:", line_of("name = \"level_db\"") - 1);
    assert!(e.contains(&at) && e.contains("\"contrl\""), "want {at}: {e}");
    // A state without its pair.
    let e = check_with("pair", |m| replace(m, "next = \"env_out\"", ""));
    assert!(e.contains("`env_in` needs `next`") && e.contains("manifest.toml:"), "{e}");
    // An audio tensor of the wrong length for the window.
    let e = check_with("len", |m| replace(m, "window = 256", "window = 300"));
    assert!(e.contains("`audio`") && e.contains("300"), "{e}");
    // TOML that does not parse: line and column.
    let e = check_with("syntax", |m| replace(m, "hop = 128", "hop = = 128"));
    assert!(e.contains(&format!("manifest.toml:{}:", line_of("hop = 128"))), "{e}");
    // A parameter with its default out of its range.
    let e = check_with("range", |m| replace(m, "default = 4.0", "default = 40.0"));
    assert!(e.contains("parameter `drive`") && e.contains("40"), "{e}");
    // The model file missing or damaged: check says so (a running node is silent).
    let e = check_with("missing", |m| std::fs::remove_file(m.join("softclip.onnx")).unwrap());
    assert!(e.contains("softclip.onnx") && e.contains("missing") && e.contains("silent"), "{e}");
    let e = check_with("damaged", |m| std::fs::write(m.join("softclip.onnx"), b"not a model").unwrap());
    assert!(e.contains("sha256"), "{e}");
    // A model that is not there at all, and the patch's own mistakes with the manifest's
    // parameters: each at the patch's line.
    let reg = registry();
    let p = Path::new("p.toml");
    let text = patch_text("no_such_model", Path::new("e.wav"), "");
    let e = Patch::parse(&text, p, &reg).unwrap_err().to_string();
    assert!(
        e.contains(&format!("p.toml:{}:", patch_line(&text, "no_such_model"))) && e.contains("no_such_model"),
        "{e}"
    );
    let text = patch_text("example_softclip", Path::new("e.wav"), "drive = 50.0");
    let e = Patch::parse(&text, p, &reg).unwrap_err().to_string();
    assert!(e.contains("`drive` = 50 is out of range 0.1..=20"), "{e}");
    let text = patch_text("example_softclip", Path::new("e.wav"), "driv = 5.0");
    let e = Patch::parse(&text, p, &reg).unwrap_err().to_string();
    assert!(e.contains("no parameter `driv`") && e.contains("drive"), "{e}");
}

fn patch_line(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn a_running_node_whose_model_file_is_missing_is_silent() {
    let d = tmp("silent");
    let model = d.join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("example_softclip/manifest.toml"),
        model.join("manifest.toml"),
    )
    .unwrap();
    let reg = registry();
    let p = d.join("p.toml");
    let patch = Patch::parse(&patch_text("./model", &d.join("e.wav"), ""), &p, &reg).unwrap();
    let opts = RenderOptions {
        sample_rate: 48000,
        block_size: 256,
        ..Default::default()
    };
    let r = render(&patch.graph, &reg, Some(&input()), &opts, |_, _| {}).unwrap();
    assert_eq!(r.alloc_violations, 0);
    assert!(r.audio.samples.iter().all(|&v| v == 0.0), "silent without its model");
    // At another engine rate an audio model is refused, saying both rates.
    let err = render(
        &patch.graph,
        &reg,
        None,
        &RenderOptions {
            sample_rate: 44100,
            duration_secs: Some(0.1),
            ..Default::default()
        },
        |_, _| {},
    )
    .err()
    .map(|e| match e {
        stagebox_engine::backend::offline::RenderError::Graph(errs) => format!("{errs:?}"),
        other => other.to_string(),
    })
    .unwrap_or_default();
    assert!(err.contains("48000 Hz") && err.contains("44100 Hz"), "{err}");
}
