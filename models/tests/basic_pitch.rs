//! Loads the real Basic Pitch model through ONNX Runtime (needs scripts/setup_models.sh, which
//! the README's test command runs) and checks its manifest, shapes and outputs.

use std::path::Path;

use stagebox_models::{Manifest, ModelError, OrtModel};

fn manifest() -> Manifest {
    Manifest::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("basic_pitch")).unwrap()
}

fn copy_with(name: &str, edit: impl Fn(String) -> String, with_model: bool) -> Manifest {
    let d = std::env::temp_dir().join(format!("stagebox-model-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("basic_pitch");
    std::fs::write(
        d.join("manifest.toml"),
        edit(std::fs::read_to_string(src.join("manifest.toml")).unwrap()),
    )
    .unwrap();
    if with_model {
        std::fs::copy(src.join("nmp.onnx"), d.join("nmp.onnx")).unwrap();
    }
    Manifest::load(&d).unwrap()
}

#[test]
fn manifest_and_file_agree() {
    let m = manifest();
    assert_eq!(m.sample_rate, 22050);
    assert_eq!(m.window, 43844);
    m.verify().unwrap();
}

#[test]
fn a_sine_lights_up_its_own_pitch() {
    let mut model = OrtModel::load(manifest()).unwrap();
    // 2 s of A4 (440 Hz, MIDI 69) starting at 0.5 s.
    let sr = 22050.0;
    let x: Vec<f32> = (0..43844)
        .map(|t| {
            if t as f32 > 0.5 * sr {
                0.5 * (2.0 * std::f32::consts::PI * 440.0 * t as f32 / sr).sin()
            } else {
                0.0
            }
        })
        .collect();
    let mut outs = Vec::new();
    model.run(&x, &mut outs).unwrap();
    assert_eq!(outs.len(), 3);
    assert_eq!(outs[0].len(), 172 * 264);
    assert_eq!(outs[1].len(), 172 * 88);
    assert_eq!(outs[2].len(), 172 * 88);
    let m = manifest();
    let (note_i, onset_i) = (m.output_index("note").unwrap(), m.output_index("onset").unwrap());
    let argmax = |row: &[f32]| row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    // The note output stays high on MIDI 69 while the tone lasts (frame 120 = 1.39 s).
    let note = &outs[note_i][120 * 88..121 * 88];
    assert_eq!(argmax(note) + 21, 69, "the sustained tone should be MIDI 69");
    assert!(note[48] > 0.5, "note activation {}", note[48]);
    // The onset output peaks on MIDI 69 near 0.5 s (frame 43), and is quiet by 1.4 s.
    let onset_peak = (38..50).map(|f| outs[onset_i][f * 88 + 48]).fold(0.0f32, f32::max);
    assert!(onset_peak > 0.5, "onset peak {onset_peak}");
    assert!(outs[onset_i][120 * 88 + 48] < onset_peak / 2.0);
    // Before the tone starts, nothing.
    assert!(outs[note_i][10 * 88..11 * 88].iter().all(|&v| v < 0.3));
}

#[test]
fn a_damaged_model_is_refused_with_its_sha256() {
    let m = copy_with("sha", |t| t.replace("2c3c1d14", "00000000"), true);
    match OrtModel::load(m) {
        Err(ModelError::Sha256 { expected, actual, .. }) => {
            assert!(expected.starts_with("00000000"));
            assert!(actual.starts_with("2c3c1d14"));
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a wrong sha256 must be refused"),
    }
}

#[test]
fn a_missing_model_file_says_where_it_comes_from() {
    let m = copy_with("missing", |t| t, false);
    let e = OrtModel::load(m).err().expect("must fail");
    assert!(matches!(e, ModelError::MissingFile { .. }), "{e}");
    assert!(e.to_string().contains("nmp.onnx is missing"), "{e}");
}

#[test]
fn a_wrong_tensor_shape_is_named() {
    let m = copy_with("shape", |t| t.replace("shape = [-1, 172, 264]", "shape = [-1, 173, 264]"), true);
    let e = OrtModel::load(m).err().expect("must fail");
    assert!(matches!(e, ModelError::Shape { .. }), "{e}");
    assert!(
        e.to_string().contains("StatefulPartitionedCall:0") && e.to_string().contains("[-1, 172, 264]"),
        "{e}"
    );
}
