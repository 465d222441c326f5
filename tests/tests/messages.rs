//! What a user reads: messages that say what happened. `osc-space` prints defaults as they are
//! written in a patch; `set` on standard input says when it clamped; a printing command piped
//! into `head` ends quietly. Its own test binary.

use std::io::Write;
use std::process::Stdio;

use stagebox_tests::*;

#[test]
fn osc_space_prints_defaults_as_a_patch_writes_them() {
    let out = stagebox().args(["osc-space", "--patch", "patches/tone.toml"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for raw in ["Float(", "Int(", "Str(", "Bool("] {
        assert!(!text.contains(raw), "a Rust value in:\n{text}");
    }
    let waveform = text.lines().find(|l| l.contains("/waveform`")).expect("the osc's waveform");
    assert!(waveform.contains("| sine |"), "{waveform}");
    let gain = text.lines().find(|l| l.contains("/tone/gain_db`")).expect("the osc's gain");
    assert!(!gain.contains("0000000"), "{gain}");
}

#[test]
fn set_on_standard_input_says_when_it_clamped() {
    let mut child = stagebox()
        .args([
            "run",
            "--backend",
            "none",
            "--no-osc",
            "--no-watch",
            "--duration",
            "20",
            "--patch",
            "patches/tone.toml",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "set vol gain_db 99").unwrap();
    writeln!(stdin, "set vol gain_db -6").unwrap();
    writeln!(stdin, "quit").unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("vol.gain_db = 99 is out of range -120..24 dB; clamped to 24"), "{log}");
    assert!(log.contains("vol.gain_db = -6"), "{log}");
}

#[test]
fn a_printing_command_piped_into_head_ends_quietly() {
    let cmd = format!("{} osc-space --patch patches/default.toml | head -1", bin().display());
    let out = std::process::Command::new("sh")
        .args(["-c", &cmd])
        .current_dir(root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn check_says_the_notes_latency_beside_the_audio_path_latency() {
    let out = stagebox()
        .args(["check", "patches/transcribe.toml", "patches/passthrough.toml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("patches/transcribe.toml")).unwrap();
    assert!(line.contains("audio latency 0 frames (0.0 ms)"), "{line}");
    // basic_pitch declares about 109 ms for its notes (README).
    let ms: f64 = line
        .split(", notes ")
        .nth(1)
        .and_then(|r| r.split('(').nth(1))
        .and_then(|r| r.split(" ms").next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no notes latency in: {line}"));
    assert!((100.0..120.0).contains(&ms), "{line}");
    let pass = text.lines().find(|l| l.starts_with("patches/passthrough.toml")).unwrap();
    assert!(!pass.contains("notes"), "a patch without notes says nothing of them: {pass}");
}
