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

/// Writes `text` as a patch in a fresh temporary folder and runs `check` on it.
fn check_text(name: &str, text: &str) -> String {
    let path = tmp(name.trim_end_matches(".toml")).join(name);
    std::fs::write(&path, text).unwrap();
    let out = stagebox().arg("check").arg(&path).output().unwrap();
    assert!(!out.status.success(), "a bad patch passed check");
    let dir = path.parent().unwrap().display().to_string();
    String::from_utf8_lossy(&out.stderr).replace(&format!("{dir}/"), "")
}

/// The shipped default patch with one line changed.
fn default_with(from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(root().join("patches/default.toml")).unwrap();
    assert!(text.contains(from), "default.toml no longer has {from}");
    text.replacen(from, to, 1)
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn a_bad_to_port_is_reported_at_its_own_line() {
    let patch = default_with("to = \"mix.in2\"", "to = \"mix.in9\"");
    let err = check_text("bad_to.toml", &patch);
    let line = line_of(&patch, "mix.in9");
    assert!(
        err.contains(&format!("bad_to.toml:{line}:6: error: node `mix` has no port `in9`")),
        "{err}"
    );
}

#[test]
fn a_bad_port_on_a_midi_node_is_named_as_missing() {
    let patch = default_with("from = \"notes.midi\"", "from = \"notes.foo\"");
    let err = check_text("bad_midi.toml", &patch);
    let line = line_of(&patch, "notes.foo");
    assert!(
        err.contains(&format!("bad_midi.toml:{line}:8: error: node `notes` has no port `foo`")),
        "{err}"
    );
    assert!(!err.contains("joins a MIDI port"), "{err}");
}

#[test]
fn a_node_id_used_twice_is_said_at_the_second_id() {
    let patch = default_with("id = \"level\"", "id = \"vol\"");
    let err = check_text("dup.toml", &patch);
    let first = line_of(&patch, "id = \"vol\"");
    let second = first + 1 + patch.lines().skip(first).position(|l| l.contains("id = \"vol\"")).unwrap();
    assert!(
        err.contains(&format!(
            "dup.toml:{second}:6: error: node id `vol` is used twice (first on line {first})"
        )),
        "{err}"
    );
}

#[test]
fn check_of_every_shipped_patch_by_glob_passes() {
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("{} check patches/*.toml", bin().display())])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Renders `input` through the passthrough patch: (success, standard error).
fn render_input(input: &std::path::Path) -> (bool, String) {
    let out_wav = input.with_extension("out.wav");
    let out = stagebox()
        .args(["render", "--patch", "patches/passthrough.toml", "--input"])
        .arg(input)
        .arg("--output")
        .arg(&out_wav)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_input_files_are_named_plainly_once() {
    let dir = tmp("bad-inputs");
    let missing = dir.join("missing.wav");
    let (ok, err) = render_input(&missing);
    assert!(!ok);
    assert!(err.contains("missing.wav: no such file"), "{err}");
    assert_eq!(err.matches("missing.wav").count(), 1, "the path said more than once: {err}");
    let text = dir.join("text.wav");
    std::fs::write(&text, "hello\n").unwrap();
    let (ok, err) = render_input(&text);
    assert!(!ok);
    assert!(err.contains("text.wav: not an audio file Stagebox can read"), "{err}");
    let empty = dir.join("empty.wav");
    std::fs::write(&empty, "").unwrap();
    let (ok, err) = render_input(&empty);
    assert!(!ok);
    assert!(err.contains("empty.wav: the file is empty (0 bytes)"), "{err}");
    for jargon in ["probe", "os error", "unsupported feature", "Failed to read"] {
        assert!(!err.contains(jargon), "{jargon} reached the user");
    }
}

#[test]
fn a_truncated_wav_renders_its_readable_part_with_a_warning() {
    let dir = tmp("truncated");
    let whole = dir.join("whole.wav");
    write_wav_i16(&whole, 48000, 2, &test_clip(48000, 48000));
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.join("cut.wav");
    std::fs::write(&cut, &bytes[..44 + 4 * 24000 + 3]).unwrap();
    let (ok, err) = render_input(&cut);
    assert!(ok, "{err}");
    assert!(err.contains("the file ends early: read 0.50 s of the 1.00 s"), "{err}");
    let rendered = hound::WavReader::open(cut.with_extension("out.wav")).unwrap();
    assert_eq!(rendered.duration(), 24000);
}

#[test]
fn a_wav_of_no_frames_is_said() {
    let dir = tmp("zero-frames");
    let zero = dir.join("zero.wav");
    write_wav_i16(&zero, 48000, 1, &[]);
    let (ok, err) = render_input(&zero);
    assert!(ok, "{err}");
    assert!(err.contains("holds no audio (0 frames)"), "{err}");
    assert!(!err.contains("0x real time"), "{err}");
}

#[test]
fn run_sh_shows_its_build_and_installs_nothing_only_tests_use() {
    let run = std::fs::read_to_string(root().join("run.sh")).unwrap();
    let build = run.lines().find(|l| l.starts_with("cargo ")).expect("run.sh builds with cargo");
    assert!(
        !build.split_whitespace().any(|w| w == "-q" || w == "--quiet"),
        "a silent build: {build}"
    );
    let setup = run.lines().find(|l| l.contains("setup.sh")).unwrap();
    assert!(!setup.contains("--tests"), "{setup}");
    // What setup.sh installs without --tests: no OSC test tools, no python-osc.
    let text = std::fs::read_to_string(root().join("scripts/setup.sh")).unwrap();
    let base = text.lines().find(|l| l.starts_with("packages=(")).unwrap();
    for tool in ["liblo-tools", "puredata-core", "python3-venv"] {
        assert!(!base.contains(tool), "{tool} installed to run: {base}");
    }
    let venv_at = text.find("pythonosc").unwrap();
    let stop_at = text.find("$tests || exit 0").expect("setup.sh stops before the test venv");
    assert!(stop_at < venv_at);
}

#[test]
fn devices_without_a_jack_server_says_how_to_start_one() {
    let out = stagebox()
        .arg("devices")
        .env("JACK_DEFAULT_SERVER", "stagebox-no-such-server")
        .env("JACK_NO_START_SERVER", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("no JACK server is running (start one"), "{all}");
    for raw in ["ClientError", "SERVER_FAILED", "ALSA lib", "JACK: no devices"] {
        assert!(!all.contains(raw), "{raw} reached the user:\n{all}");
    }
}

#[test]
fn bench_leaves_no_takes_beside_the_patch() {
    let dir = tmp("bench-takes");
    let patch = dir.join("rec.toml");
    std::fs::write(
        &patch,
        "[[node]]\nid = \"tone\"\ntype = \"osc\"\n[[node]]\nid = \"rec\"\ntype = \"recorder\"\npath = \"take.wav\"\nchannels = 1\n[[node]]\nid = \"out\"\ntype = \"output\"\nchannels = 1\n[[connect]]\nfrom = \"tone\"\nto = \"rec\"\n[[connect]]\nfrom = \"tone\"\nto = \"out\"\n",
    )
    .unwrap();
    let out = stagebox()
        .args(["bench", "--blocks", "64", "--seconds", "0.5", "--model-windows", "0", "--patch"])
        .arg(&patch)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("rec.toml")], "bench wrote beside the patch");
}
