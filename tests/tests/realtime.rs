//! Real-time runs of the `stagebox` binary without a device: the recorder surviving SIGKILL,
//! and the demo clip when no audio device is found.

use std::time::{Duration, Instant};

use stagebox_tests::*;

#[test]
fn recorder_file_is_valid_after_sigkill() {
    let d = tmp("kill");
    let patch = d.join("rec.toml");
    std::fs::write(
        &patch,
        r#"
[[node]]
id = "tone"
type = "osc"
freq_hz = 1000.0
gain_db = -6.0
[[node]]
id = "rec"
type = "recorder"
path = "take.wav"
channels = 1
format = "int16"
flush_ms = 100
[[node]]
id = "out"
type = "output"
[[connect]]
from = "tone"
to = "rec"
[[connect]]
from = "tone"
to = "out"
"#,
    )
    .unwrap();
    let mut child = stagebox()
        .args(["run", "--backend", "none", "--no-watch", "--patch"])
        .arg(&patch)
        .arg("--takes-dir")
        .arg(&d)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let take = d.join("take.wav");
    let t0 = Instant::now();
    while std::fs::metadata(&take).map(|m| m.len()).unwrap_or(0) < 48000 {
        assert!(t0.elapsed() < Duration::from_secs(20), "the recorder wrote nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap(); // SIGKILL: no chance to finalize
    child.wait().unwrap();
    let r = hound::WavReader::open(&take).expect("a valid WAV after SIGKILL");
    let spec = r.spec();
    assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (1, 48000, 16));
    let n = r.len();
    let samples: Vec<i16> = r
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("every sample the header promises is there");
    assert_eq!(samples.len() as u32, n);
    assert!(n >= 24000, "only {n} samples");
    // A continuous -6 dB tone: peak about 0.5 of full scale, no gaps.
    let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!((15500..17000).contains(&peak), "peak {peak}");
    let longest_quiet = samples.split(|s| s.unsigned_abs() > 1000).map(|r| r.len()).max().unwrap();
    assert!(longest_quiet < 48, "a gap of {longest_quiet} samples");
}

#[test]
fn run_without_a_device_plays_the_demo_clip() {
    let d = tmp("demo");
    let stats = d.join("s.json");
    let out = stagebox()
        .args(["run", "--duration", "2.5", "--no-watch", "--stats-json"])
        .arg(&stats)
        .env("JACK_DEFAULT_SERVER", "stagebox-no-such-server")
        .env("ALSA_CONFIG_PATH", d.join("no-alsa.conf"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("no audio device is available"), "{err}");
    assert!(err.contains("demo clip"), "{err}");
    for noise in ["ALSA lib", "no longer available", "unplugged", "ClientError"] {
        assert!(!err.contains(noise), "{noise} reached the user:\n{err}");
    }
    // The status line a second: the notes by name, and late blocks of the paced clock (not "xruns").
    let status = err
        .lines()
        .find(|l| l.starts_with("level "))
        .unwrap_or_else(|| panic!("no status line:\n{err}"));
    assert!(status.contains("late blocks (no device)") && !status.contains("xruns"), "{status}");
    let named = err.lines().filter(|l| l.starts_with("level ")).any(|l| {
        l.split("notes: ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .is_some_and(|n| n.len() >= 2 && n.as_bytes()[0].is_ascii_uppercase() && n.as_bytes()[n.len() - 1].is_ascii_digit())
    });
    assert!(named, "no note named in the status lines:\n{err}");
    let s = read_json(&stats);
    assert_eq!(s["demo"], true);
    assert!(s["callbacks"].as_u64().unwrap() > 200);
    assert_eq!(s["rt_allocations"], 0);
    let m = &s["meters"]["level"];
    assert!(m["reports"].as_u64().unwrap() > 20);
    assert!(
        m["silent_reports"].as_u64().unwrap() < m["reports"].as_u64().unwrap(),
        "the demo clip should be heard: {m}"
    );
}
