//! The `stagebox` binary's offline commands: render, check, --help.

use stagebox_tests::*;

fn read_i16(path: &std::path::Path) -> (hound::WavSpec, Vec<i16>) {
    let r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    (spec, r.into_samples::<i16>().map(|s| s.unwrap()).collect())
}

#[test]
fn passthrough_render_reproduces_the_input_at_any_block_size() {
    let d = tmp("passthrough");
    let x = test_clip(48000 * 2 + 123, 48000);
    let input = d.join("x.wav");
    write_wav_i16(&input, 48000, 2, &x);
    for bs in ["64", "512", "1", "999"] {
        let out = d.join(format!("y{bs}.wav"));
        let st = stagebox()
            .args(["render", "--patch", "patches/passthrough.toml", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(&out)
            .args(["--block-size", bs])
            .status()
            .unwrap();
        assert!(st.success());
        let (spec, y) = read_i16(&out);
        assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (2, 48000, 16));
        assert!(y == x, "block size {bs}: output differs from input");
    }
    assert_eq!(
        std::fs::read(d.join("y64.wav")).unwrap(),
        std::fs::read(d.join("y512.wav")).unwrap()
    );
}

#[test]
fn passthrough_render_resamples_when_rates_differ() {
    let d = tmp("resample");
    let x = test_clip(44100, 44100);
    let input = d.join("x.wav");
    write_wav_i16(&input, 44100, 2, &x);
    let out = d.join("y.wav");
    let st = stagebox()
        .args(["render", "--patch", "patches/passthrough.toml", "--sample-rate", "48000", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let (spec, y) = read_i16(&out);
    assert_eq!(spec.sample_rate, 48000);
    assert_eq!(y.len(), 48000 * 2);
    // The left channel's 261.63 Hz sine, compared with the ideal resampled one (noise aside).
    let mut err2 = 0.0;
    let mut sig2 = 0.0;
    for t in 1000..47000 {
        let want = 0.4 * (2.0 * std::f64::consts::PI * 261.63 * t as f64 / 48000.0).sin() * 32767.0;
        let got = y[2 * t] as f64;
        err2 += (got - want).powi(2);
        sig2 += want * want;
    }
    let snr = 10.0 * (sig2 / err2).log10();
    assert!(snr > 25.0, "SNR {snr:.1} dB (noise in the clip limits it to about 30 dB)");
}

#[test]
fn renders_are_deterministic_with_sources_and_latency() {
    let d = tmp("det");
    let patch = d.join("p.toml");
    std::fs::write(
        &patch,
        r#"
[[node]]
id = "t"
type = "osc"
waveform = "noise"
[[node]]
id = "r"
type = "resample"
rate_hz = 16000
[[node]]
id = "out"
type = "output"
[[connect]]
from = "t"
to = "r"
[[connect]]
from = "r"
to = "out"
"#,
    )
    .unwrap();
    let mut outs = Vec::new();
    for (k, bs) in ["64", "64", "512"].iter().enumerate() {
        let out = d.join(format!("o{k}.wav"));
        let st = stagebox()
            .args(["render", "--duration", "1.5", "--block-size", bs, "--patch"])
            .arg(&patch)
            .arg("--output")
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success());
        outs.push(std::fs::read(&out).unwrap());
    }
    assert!(outs[0] == outs[1], "two renders differ");
    assert!(outs[0] == outs[2], "block sizes 64 and 512 differ");
}

#[test]
fn check_accepts_the_shipped_patches() {
    // Every patch in patches/ and patches/examples/.
    let mut files = Vec::new();
    for dir in ["patches", "patches/examples"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                files.push(p);
            }
        }
    }
    assert!(files.len() >= 8, "{files:?}");
    let out = stagebox().arg("check").args(&files).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches(": ok").count(), files.len());
    // The obvious command, as a shell expands it, takes only patches.
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("{} check patches/*.toml", bin().display())])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_reports_file_line_and_column() {
    let d = tmp("check");
    let cases: &[(&str, &str, &str)] = &[
        ("syntax.toml", "[[node]]\nid = \"a\"\ntype = \"gain\"\ngain_db = = 3\n", ":4:11:"),
        ("type.toml", "[[node]]\nid = \"a\"\ntype = \"gian\"\n", ":3:8: error: unknown node type `gian`"),
        ("range.toml", "[[node]]\nid = \"a\"\ntype = \"gain\"\n  gain_db = 40.0\n", ":4:13: error: `gain_db` = 40 is out of range"),
        ("param.toml", "[[node]]\nid = \"a\"\ntype = \"osc\"\nfreq = 3\n", ":4:8: error: node type `osc` has no parameter `freq`"),
        ("conn.toml", "[[node]]\nid = \"a\"\ntype = \"osc\"\n\n[[connect]]\nfrom = \"a\"\nto = \"nowhere\"\n", ":7:6: error: `to` names node `nowhere`"),
        (
            "channels.toml",
            "[[node]]\nid = \"a\"\ntype = \"osc\"\nchannels = 3\n[[node]]\nid = \"o\"\ntype = \"output\"\n[[connect]]\nfrom = \"a\"\nto = \"o\"\n",
            ":9:8: error: `a` has 3 channels but `o` has 2",
        ),
        ("file.toml", "[[node]]\nid = \"p\"\ntype = \"player\"\npath = \"missing.wav\"\n", ":3:8: error: node `p`:"),
        (
            "midi.toml",
            "[[node]]\nid = \"v\"\ntype = \"gain\"\n\n[[midi.map]]\ncc = 7\nto = \"v.gian_db\"\n",
            ":5:1: error: [[midi.map]] number 1: node `v` has no parameter `gian_db`",
        ),
        (
            "midicc.toml",
            "[[node]]\nid = \"v\"\ntype = \"gain\"\n\n[[midi.map]]\ncc = 300\nto = \"v.gain_db\"\n",
            ":5:1: error: [[midi.map]] number 1: cc = 300 is not 0..127",
        ),
        (
            "osc.toml",
            "[[node]]\nid = \"v\"\ntype = \"gain\"\n\n[osc]\nport = 99999\n",
            ":5:1: error: [osc] port = 99999 is not a port number",
        ),
        (
            "oscallow.toml",
            "[[node]]\nid = \"v\"\ntype = \"gain\"\n\n[osc]\nallow = [\"everyone\"]\n",
            ":5:1: error: [osc] allow: \"everyone\" is not an address or network",
        ),
    ];
    for (name, src, want) in cases {
        let p = d.join(name);
        std::fs::write(&p, src).unwrap();
        let out = stagebox().arg("check").arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: check should fail");
        let expect = format!("{}{want}", p.display());
        assert!(err.contains(&expect), "{name}: wanted `{expect}` in:\n{err}");
    }
}

#[test]
fn render_refuses_a_broken_patch_and_writes_nothing() {
    let d = tmp("broken-render");
    let p = d.join("b.toml");
    std::fs::write(&p, "[[node]]\nid = \"a\"\ntype = \"nope\"\n").unwrap();
    let out = d.join("o.wav");
    let r = stagebox()
        .args(["render", "--duration", "1", "--patch"])
        .arg(&p)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("b.toml:3:8"));
    assert!(!out.exists());
}

#[test]
fn every_command_has_help() {
    for cmd in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["render", "--help"],
        vec!["check", "--help"],
        vec!["devices", "--help"],
        vec!["bench", "--help"],
    ] {
        let out = stagebox().args(&cmd).output().unwrap();
        assert!(out.status.success(), "{cmd:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage:"), "{cmd:?}");
    }
}

#[test]
fn transcribe_writes_the_notes_of_a_clip_as_midi_and_events() {
    let d = tmp("transcribe");
    // Piano-like tones (sharp attack, exponential decay) at known times: C4, E4, G4, then A3+E4.
    let sr = 44100u32;
    let notes: [(f64, f64, u8); 5] = [(0.4, 0.9, 60), (0.9, 1.4, 64), (1.4, 1.9, 67), (2.1, 2.9, 57), (2.1, 2.9, 64)];
    let n = (3.5 * sr as f64) as usize;
    let mut x = vec![0.0f64; n];
    for &(on, off, k) in &notes {
        let f = 440.0 * 2f64.powf((k as f64 - 69.0) / 12.0);
        for t in (on * sr as f64) as usize..((off * sr as f64) as usize).min(n) {
            let age = t as f64 / sr as f64 - on;
            let env = (age / 0.003).min(1.0) * (-age * 3.0).exp();
            for h in 1..=4 {
                x[t] += 0.25 * env * (2.0 * std::f64::consts::PI * f * h as f64 * t as f64 / sr as f64).sin() / h as f64;
            }
        }
    }
    let clip: Vec<i16> = x.iter().flat_map(|v| [(v * 20000.0) as i16; 2]).collect();
    let input = d.join("clip.wav");
    write_wav_i16(&input, sr, 2, &clip);
    let (mid, ev) = (d.join("notes.mid"), d.join("events.jsonl"));
    let out = stagebox()
        .args(["render", "--patch", "patches/transcribe.toml", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(d.join("out.wav"))
        .arg("--midi-out")
        .arg(&mid)
        .arg("--events-out")
        .arg(&ev)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The MIDI file holds every note at its time (within 50 ms).
    let found = smf_note_ons(&mid);
    for &(on, _, k) in &notes {
        assert!(
            found.iter().any(|&(s, kk)| kk == k && (s - on).abs() <= 0.05),
            "key {k} at {on} s missing from {found:?}"
        );
    }
    // The event log has one JSON object a line with time, rate, pitch and estimated onset.
    let text = std::fs::read_to_string(&ev).unwrap();
    let ons: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|j: &serde_json::Value| j["type"] == "note_on")
        .collect();
    assert!(ons.len() >= notes.len());
    for j in &ons {
        assert_eq!(j["sample_rate"], 44100);
        assert!(j["pitch"].is_u64() && j["onset_s"].is_f64() && j["time_s"].as_f64().unwrap() >= j["onset_s"].as_f64().unwrap());
    }
}

#[test]
fn melody_writes_a_flute_like_line_as_midi() {
    let d = tmp("melody");
    // Flute-like tones (soft attack, breath noise, vibrato) at known times.
    let sr = 48000u32;
    let line: [(f64, f64, u8); 5] = [(0.3, 0.7, 72), (0.8, 1.2, 74), (1.3, 1.7, 76), (1.8, 2.4, 79), (2.6, 3.0, 84)];
    let x = flute_line(sr, &line, 3.3);
    let clip: Vec<i16> = x.iter().flat_map(|v| [(v * 20000.0) as i16; 2]).collect();
    let input = d.join("flute.wav");
    write_wav_i16(&input, sr, 2, &clip);
    let mid = d.join("line.mid");
    let out = stagebox()
        .args(["render", "--patch", "patches/melody.toml", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(d.join("o.wav"))
        .arg("--midi-out")
        .arg(&mid)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ons = smf_note_ons(&mid);
    let keys: Vec<u8> = ons.iter().map(|o| o.1).collect();
    assert_eq!(keys, line.iter().map(|l| l.2).collect::<Vec<_>>(), "{ons:?}");
    for (k, &(on, _, _)) in line.iter().enumerate() {
        assert!((ons[k].0 - on).abs() <= 0.05, "note {k} at {} s, played at {on} s", ons[k].0);
    }
}

#[test]
fn a_missing_or_damaged_model_bypasses_its_node_and_the_engine_goes_on() {
    let d = tmp("nomodel");
    // Missing: an empty models folder. Damaged: a copy of the streaming Basic Pitch with one
    // byte of the model changed.
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let damaged = d.join("damaged/basic_pitch_stream");
    std::fs::create_dir_all(&damaged).unwrap();
    for f in ["manifest.toml", "frontend.bin"] {
        std::fs::copy(root().join("models/basic_pitch_stream").join(f), damaged.join(f)).unwrap();
    }
    let mut model = std::fs::read(root().join("models/basic_pitch_stream/nmp_cnn.onnx")).unwrap();
    model[1000] ^= 0xff;
    std::fs::write(damaged.join("nmp_cnn.onnx"), model).unwrap();
    for (dir, why) in [(empty.clone(), "is missing"), (d.join("damaged"), "sha256")] {
        let out = stagebox()
            .args([
                "render",
                "--patch",
                "patches/transcribe.toml",
                "--input",
                "assets/demo.wav",
                "--output",
            ])
            .arg(d.join("o.wav"))
            .env("STAGEBOX_MODELS", &dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("basic_pitch node bypassed") && err.contains(why), "{err}");
        assert!(hound::WavReader::open(d.join("o.wav")).unwrap().len() > 0);
        // `check` treats it as an error, with the place in the patch.
        let out = stagebox()
            .args(["check", "patches/transcribe.toml"])
            .env("STAGEBOX_MODELS", &dir)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("patches/transcribe.toml:11:8"));
    }
}
