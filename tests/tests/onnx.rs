//! The `onnx` node through the real binary with the example model (models/example_softclip):
//! the parameter its manifest declares is in `osc-space`, in the OSCQuery namespace with its
//! range, set over OSC while `run` plays (the sound changes and the namespace follows), and
//! mapped to a MIDI controller by patches/onnx.toml, which `check` accepts; the model's folder
//! is in /stagebox/models/list.

use std::time::Duration;

use rosc::OscType;
use stagebox_tests::osc::{client, expect, send};
use stagebox_tests::*;

#[test]
fn osc_space_lists_the_manifests_parameter_with_its_range() {
    let out = stagebox().args(["check", "patches/onnx.toml"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = stagebox().args(["osc-space", "--patch", "patches/onnx.toml"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.contains("`/stagebox/node/clip/drive`"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("0.1..20") && row.contains("while running"), "{row}");
}

/// Peak over rms of `x` (a sine: 1.41; a square: 1).
fn crest(x: &[f32]) -> f64 {
    let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
    let rms = (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
    peak / rms.max(1e-12)
}

/// The median crest of `x`'s 20 ms windows (four periods of the 200 Hz tone): what the model
/// made of most of it, a window or two it answered late (the dry tone, on a loaded machine)
/// not deciding it.
fn median_crest(x: &[f32], sample_rate: f64) -> f64 {
    let mut c: Vec<f64> = x.chunks_exact((0.02 * sample_rate) as usize).map(crest).collect();
    c.sort_by(f64::total_cmp);
    c[c.len() / 2]
}

#[test]
fn a_manifest_parameter_is_in_oscquery_and_set_over_osc_while_running() {
    let d = tmp("onnx-run");
    let patch = d.join("clip.toml");
    std::fs::write(
        &patch,
        "[[node]]\nid = \"tone\"\ntype = \"osc\"\nfreq_hz = 200.0\ngain_db = -6.0\n\
         [[node]]\nid = \"clip\"\ntype = \"onnx\"\nmodel = \"example_softclip\"\ndrive = 0.1\nextra_hops = 3\n\
         [[node]]\nid = \"take\"\ntype = \"recorder\"\nchannels = 1\nformat = \"float32\"\npath = \"clip.wav\"\n\
         [[node]]\nid = \"out\"\ntype = \"output\"\nchannels = 1\n\
         [[connect]]\nfrom = \"tone\"\nto = \"clip\"\n[[connect]]\nfrom = \"clip.out\"\nto = \"take\"\n\
         [[connect]]\nfrom = \"clip.out\"\nto = \"out\"\n",
    )
    .unwrap();
    let takes = d.join("takes");
    // Stopped over OSC once the checks are done (30 s is only the cap): a fixed short run could
    // end before the last query reached it on a loaded machine.
    let (mut child, log) = spawn_logged(paced_run(&patch, 30.0, &takes).args(["--buffer", "128"]));
    let ports = log_ports(&log, &["udp://", "OSCQuery on http://"]);
    let curl = |path: &str| curl_json(ports[1], path);
    let leaf = &curl("/")["CONTENTS"]["stagebox"]["CONTENTS"]["node"]["CONTENTS"]["clip"]["CONTENTS"]["drive"];
    assert_eq!(leaf["TYPE"], "f", "{leaf}");
    assert!((leaf["RANGE"][0]["MIN"].as_f64().unwrap() - 0.1).abs() < 1e-6, "{leaf}");
    assert_eq!(leaf["RANGE"][0]["MAX"], 20.0, "{leaf}");
    assert!((leaf["VALUE"][0].as_f64().unwrap() - 0.1).abs() < 1e-6, "{leaf}");
    // The model folders, the example among them.
    let c = client();
    send(&c, ports[0], "/stagebox/models/list", vec![]);
    let list = expect(&c, "/stagebox/models/list.reply", &mut Vec::new());
    assert!(list.args.contains(&OscType::String("example_softclip".into())), "{list:?}");
    std::thread::sleep(Duration::from_millis(1000));
    send(&c, ports[0], "/stagebox/node/clip/drive", vec![OscType::Float(20.0)]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(curl("/stagebox/node/clip/drive?VALUE")["VALUE"][0], 20.0);
    std::thread::sleep(Duration::from_millis(1000));
    send(&c, ports[0], "/stagebox/quit", vec![]);
    assert!(child.wait().unwrap().success());
    let r = hound::WavReader::open(takes.join("clip.wav")).unwrap();
    let sr = r.spec().sample_rate as f64;
    let x: Vec<f32> = r.into_samples::<f32>().map(|s| s.unwrap()).collect();
    assert!(x.len() as f64 > 2.5 * sr, "the take is {} s", x.len() as f64 / sr);
    // Before: the first second (drive 0.1). After: the take's last half second but its last
    // 0.1 s, 1 s or more after drive 20 was set and read back.
    let end = x.len() - (0.1 * sr) as usize;
    let (before, after) = (
        median_crest(&x[(0.5 * sr) as usize..(1.0 * sr) as usize], sr),
        median_crest(&x[end - (0.5 * sr) as usize..end], sr),
    );
    assert!(
        (before - 2f64.sqrt()).abs() < 0.02,
        "drive 0.1 leaves the sine a sine: crest {before:.3}"
    );
    assert!(after < 1.1, "drive 20 makes it nearly square: crest {after:.3}");
}
