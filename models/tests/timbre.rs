//! The `timbre` node with its shipped model: ONNX gives PyTorch's controls on the fixture
//! train.py wrote (state carried frame to frame); a sung line's f0 is what the instrument plays
//! (tracked back by the `features` node); MIDI voices render the same at any block size; every
//! process call under the allocation guard; NaN input gives finite output; without its model
//! the node is silent and `check` says why. A separate test binary: it sets STAGEBOX_MODELS.

use std::path::Path;

use stagebox_engine::alloc_check::CheckedAlloc;
use stagebox_engine::audio_file::Audio;
use stagebox_engine::backend::offline::{render, RenderOptions, Rendered};
use stagebox_engine::graph::{CompileMode, Schedule};
use stagebox_engine::Registry;

#[global_allocator]
static ALLOC: CheckedAlloc = CheckedAlloc;

const SR: u32 = 48000;

fn registry() -> Registry {
    let mut r = Registry::builtin();
    stagebox_models::register(&mut r);
    r
}

/// input -> features -> timbre -> output, and a `midi_in` into the timbre's MIDI port.
fn patch(model: &str, voices: usize) -> String {
    format!(
        r#"
[[node]]
id = "in"
type = "input"
channels = 1
[[node]]
id = "feat"
type = "features"
[[node]]
id = "keys"
type = "midi_in"
[[node]]
id = "voice"
type = "timbre"
model = "{model}"
instrument = "violin"
voices = {voices}
[[node]]
id = "out"
type = "output"
channels = 1
[[connect]]
from = "in"
to = "feat"
[[connect]]
from = "feat.f0"
to = "voice.f0"
[[connect]]
from = "feat.loudness"
to = "voice.loudness"
[[connect]]
from = "feat.voiced"
to = "voice.voiced"
[[connect]]
from = "keys.midi"
to = "voice.midi"
[[connect]]
from = "voice"
to = "out"
"#
    )
}

/// input -> features, its f0 recorded to `path` (a control port goes to a recorder, not out).
fn features_patch(path: &Path) -> String {
    format!(
        r#"
[[node]]
id = "in"
type = "input"
channels = 1
[[node]]
id = "feat"
type = "features"
[[node]]
id = "f0"
type = "recorder"
channels = 1
format = "float32"
path = "{}"
[[connect]]
from = "in"
to = "feat"
[[connect]]
from = "feat.f0"
to = "f0"
"#,
        path.display()
    )
}

fn run(src: &str, input: Option<&Audio>, opts: &RenderOptions) -> Rendered {
    let reg = registry();
    let p = stagebox_patches::Patch::parse(src, Path::new("/tmp/timbre-test.toml"), &reg).unwrap();
    render(&p.graph, &reg, input, opts, |_, _| {}).unwrap()
}

fn mono(samples: Vec<f32>) -> Audio {
    Audio {
        sample_rate: SR,
        channels: 1,
        samples,
        wav_format: None,
    }
}

/// A sung-like line: 220 Hz for a second, then 330 Hz, a little vibrato, at -12 dBFS.
fn line() -> Audio {
    let mut phase = 0.0f64;
    mono(
        (0..2 * SR as usize)
            .map(|t| {
                let ts = t as f64 / SR as f64;
                let f = if ts < 1.0 { 220.0 } else { 330.0 } * (1.0 + 0.003 * (2.0 * std::f64::consts::PI * 5.0 * ts).sin());
                phase += f / SR as f64;
                let y = (2.0 * std::f64::consts::PI * phase).sin() + 0.3 * (4.0 * std::f64::consts::PI * phase).sin();
                (0.2 * y) as f32
            })
            .collect(),
    )
}

fn opts(block: usize) -> RenderOptions {
    RenderOptions {
        sample_rate: SR,
        block_size: block,
        ..Default::default()
    }
}

/// The f0 the `features` node hears in `audio`, every 4 ms (0 where it hears none yet).
fn f0_track(audio: Vec<f32>) -> Vec<f32> {
    let path = std::env::temp_dir().join(format!("stagebox-timbre-f0-{}.wav", std::process::id()));
    run(&features_patch(&path), Some(&mono(audio)), &opts(512));
    let f0 = stagebox_engine::audio_file::read(&path).unwrap().samples;
    let _ = std::fs::remove_file(&path);
    f0.iter().skip(191).step_by(192).copied().collect()
}

fn median_cents(track: &[f32], from_s: f64, to_s: f64, hz: f32) -> f32 {
    let mut c: Vec<f32> = track[(from_s * 250.0) as usize..(to_s * 250.0) as usize]
        .iter()
        .map(|f| (1200.0 * (f.max(1.0) / hz).log2()).abs())
        .collect();
    c.sort_by(f32::total_cmp);
    c[c.len() / 2]
}

/// One test: each part points STAGEBOX_MODELS somewhere (tests run in parallel otherwise).
#[test]
fn the_timbre_node_with_and_without_its_model() {
    without_its_model_the_node_is_silent_and_check_says_so();
    std::env::set_var(
        "STAGEBOX_MODELS",
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("models"),
    );
    the_onnx_model_gives_pytorchs_controls();
    the_vibrato_and_age_inputs_are_the_ones_the_model_was_trained_on();
    the_instrument_plays_the_lines_f0();
    midi_voices_render_the_same_at_any_block_size();
    nan_input_gives_finite_output();
    the_instrument_plays_through_short_gaps_and_falls_silent_on_noise();
}

fn without_its_model_the_node_is_silent_and_check_says_so() {
    std::env::set_var("STAGEBOX_MODELS", std::env::temp_dir().join("stagebox-no-models-here"));
    let r = run(&patch("timbre", 2), Some(&line()), &opts(256));
    assert!(r.audio.samples.iter().all(|x| *x == 0.0), "silent without its model");
    let reg = registry();
    let p = stagebox_patches::Patch::parse(&patch("no_such_model", 2), Path::new("/tmp/t.toml"), &reg).unwrap();
    let errs = Schedule::compile_with(&p.graph, &reg, 48000.0, CompileMode::DryRun)
        .err()
        .expect("check fails");
    assert!(
        errs[0].message.contains("no_such_model") && errs[0].message.contains("silent"),
        "{}",
        errs[0].message
    );
}

fn the_onnx_model_gives_pytorchs_controls() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/timbre_ref.json");
    let f: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    let floats = |k: &str| -> Vec<f32> { f[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect() };
    let (cond, want) = (floats("cond"), floats("controls"));
    let mut model = stagebox_models::OrtModel::load(stagebox_models::find_model("timbre").unwrap()).unwrap();
    let state_shape = model.manifest.input[1].shape.clone();
    let mut state = vec![0.0f32; state_shape.iter().product::<i64>() as usize];
    let mut outs = Vec::new();
    let per = want.len() / 16;
    let width = model.manifest.input[0].shape[0];
    assert_eq!(
        width as usize,
        stagebox_models::timbre_model::COND,
        "the node feeds what the model reads"
    );
    for (k, c) in cond.chunks(width as usize).enumerate() {
        model.run_many(&[(&[width], c), (&state_shape, &state)], &mut outs).unwrap();
        let worst = outs[0]
            .iter()
            .zip(&want[k * per..(k + 1) * per])
            .map(|(a, b)| (a - b).abs() / b.abs().max(1e-3))
            .fold(0.0, f32::max);
        assert!(worst < 1e-3, "frame {k}: relative difference {worst}");
        state.copy_from_slice(&outs[1]);
    }
}

/// The node's vibrato and age inputs follow train.py's rules: the same values on the f0 curve the
/// fixture holds (vibrato, a jump to a new note, silence, a slide with an unvoiced frame in it).
fn the_vibrato_and_age_inputs_are_the_ones_the_model_was_trained_on() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/timbre_ref.json");
    let f: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    let floats = |k: &str| -> Vec<f32> { f[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect() };
    use stagebox_models::timbre_model::{NoteAge, Vibrato};
    let (f0, voiced, want) = (floats("vibrato_f0_hz"), floats("vibrato_voiced"), floats("expression"));
    let want: Vec<&[f32]> = want.chunks_exact(2).collect();
    assert_eq!(want.len(), f0.len());
    assert!(want.iter().any(|w| w[0].abs() > 0.3), "the fixture has vibrato in it");
    assert!(
        want.iter().any(|w| w[1] > 0.15) && want.iter().skip(1).any(|w| w[1] == 0.0),
        "old and new notes"
    );
    let (mut vib, mut age) = (Vibrato::default(), NoteAge::default());
    for (k, ((hz, v), w)) in f0.iter().zip(&voiced).zip(&want).enumerate() {
        let got = vib.input(*hz, 1.0 / 250.0);
        assert!((got - w[0]).abs() < 1e-3, "vibrato, frame {k} at {hz} Hz: {got}, train.py {}", w[0]);
        let got = age.input(*hz, *v, 1.0 / 250.0);
        assert!(
            (got - w[1]).abs() < 1e-4,
            "age, frame {k} at {hz} Hz voiced {v}: {got} s, train.py {} s",
            w[1]
        );
    }
}

fn the_instrument_plays_the_lines_f0() {
    let r = run(&patch("timbre", 0), Some(&line()), &opts(128));
    assert_eq!(r.alloc_violations, 0);
    let rms = (r.audio.samples.iter().map(|x| x * x).sum::<f32>() / r.audio.samples.len() as f32).sqrt();
    assert!(rms > 0.01, "the instrument sounds: rms {rms}");
    let track = f0_track(r.audio.samples);
    let (low, high) = (median_cents(&track, 0.3, 0.95, 220.0), median_cents(&track, 1.3, 1.95, 330.0));
    assert!(low < 30.0 && high < 30.0, "median error {low} cents at 220 Hz, {high} at 330 Hz");
}

fn midi_voices_render_the_same_at_any_block_size() {
    let notes = [
        (0.1, [0x90, 60, 100]),
        (0.3, [0x90, 64, 90]),
        (0.35, [0xe0, 0, 0x50]),
        (0.9, [0x80, 60, 0]),
        (1.2, [0x80, 64, 0]),
    ];
    let midi: Vec<(u64, [u8; 3])> = notes.iter().map(|(t, m)| ((t * SR as f64) as u64, *m)).collect();
    let renders: Vec<Rendered> = [1usize, 64, 333, 512]
        .iter()
        .map(|&b| {
            let o = RenderOptions {
                duration_secs: Some(1.8),
                device_midi: midi.clone(),
                ..opts(b)
            };
            run(&patch("timbre", 4), None, &o)
        })
        .collect();
    let first = &renders[0].audio.samples;
    assert!(first.iter().map(|x| x.abs()).fold(0.0, f32::max) > 0.01, "the notes sound");
    for r in &renders {
        assert_eq!(r.alloc_violations, 0);
        assert_eq!(&r.audio.samples, first, "block size changes the sound");
    }
    // The release ends in silence, no click: the last 0.2 s are quiet.
    let tail = &first[first.len() - 9600..];
    assert!(tail.iter().all(|x| x.abs() < 1e-3));
}

fn nan_input_gives_finite_output() {
    let mut a = line();
    for x in &mut a.samples[30000..30500] {
        *x = f32::NAN;
    }
    a.samples[40000] = f32::INFINITY;
    let r = run(&patch("timbre", 2), Some(&a), &opts(256));
    assert!(r.audio.samples.iter().all(|x| x.is_finite()));
}

/// RMS of `x` over `from_s..to_s`.
fn rms_between(x: &[f32], from_s: f64, to_s: f64) -> f32 {
    let part = &x[(from_s * SR as f64) as usize..(to_s * SR as f64) as usize];
    (part.iter().map(|v| v * v).sum::<f32>() / part.len() as f32).sqrt()
}

/// Noise at the line's level, from `from_s` to `to_s`, in place of the line.
fn noise_over(a: &mut Audio, from_s: f64, to_s: f64) {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for x in &mut a.samples[(from_s * SR as f64) as usize..(to_s * SR as f64) as usize] {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *x = 0.35 * ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5);
    }
}

/// 60 ms with no pitch inside a note (a consonant, a bow change) does not stop the instrument;
/// noise with no pitch that goes on makes it fall silent, smoothly.
fn the_instrument_plays_through_short_gaps_and_falls_silent_on_noise() {
    let mut a = line();
    noise_over(&mut a, 0.5, 0.56);
    noise_over(&mut a, 1.2, 2.0);
    let r = run(&patch("timbre", 0), Some(&a), &opts(128));
    let y = &r.audio.samples;
    let note = rms_between(y, 0.3, 0.5);
    let gap = (0..6)
        .map(|k| rms_between(y, 0.5 + 0.01 * k as f64, 0.51 + 0.01 * k as f64))
        .fold(f32::INFINITY, f32::min);
    assert!(note > 0.01 && gap > 0.3 * note, "through the gap: rms {gap} (the note's {note})");
    let after = rms_between(y, 1.6, 2.0);
    assert!(after < 0.01 * note, "noise with no pitch: rms {after} (the note's {note})");
    let worst_step = y
        .windows(2)
        .skip((1.2 * SR as f64) as usize)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0, f32::max);
    let line_step = y
        .windows(2)
        .take((1.2 * SR as f64) as usize)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0, f32::max);
    assert!(
        worst_step <= line_step,
        "no click as it falls silent: a step of {worst_step} (the line's largest {line_step})"
    );
}
