//! A lost audio device never stops the engine: the JACK server dies mid-run, the patch goes on
//! without a device, and the engine reconnects when the server is back. Its own test binary.

use std::time::{Duration, Instant};

use stagebox_tests::*;

#[test]
fn engine_survives_the_jack_server_dying_and_reconnects() {
    let d = tmp("jack-recovery");
    let mut jack = JackServer::start(48000, 256);
    let name = jack.name.clone();
    let stats = d.join("stats.json");
    let mut child = stagebox()
        .args([
            "run",
            "--backend",
            "jack",
            "--duration",
            "14",
            "--no-watch",
            "--patch",
            "patches/tone.toml",
            "--stats-json",
        ])
        .arg(&stats)
        .env("JACK_DEFAULT_SERVER", &name)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let at = |s: u64| {
        if let Some(w) = Duration::from_secs(s).checked_sub(t0.elapsed()) {
            std::thread::sleep(w);
        }
    };
    at(3);
    jack.kill();
    at(6);
    assert!(child.try_wait().unwrap().is_none(), "stagebox exited when the server died");
    let _jack2 = JackServer::start_named(&name, 48000, 256);
    let st = child.wait().unwrap();
    assert!(st.success());
    let s = read_json(&stats);
    println!("{}", serde_json::to_string_pretty(&s).unwrap());
    assert_eq!(s["device_losses"], 1);
    assert_eq!(s["device_recoveries"], 1);
    assert_eq!(s["backend"], "JACK");
    // Audio kept being computed through the outage (about 14 s of callbacks in all).
    let frames = s["frames"].as_u64().unwrap();
    assert!(frames as f64 >= 48000.0 * 14.0 * 0.6, "frames {frames}");
    assert_eq!(s["rt_allocations"], 0);
}
