//! The path ALSA keeps for MIDI (midir ports; notes handed to the engine by the control thread
//! as soon as it has them, and sent out by the control thread), measured for comparison with the
//! native JACK client's (tests/tests/jack_native.rs): the same keyboard on the same kind of
//! server, with `--backend none`. It must work; its spread is printed (BENCHMARKS.md). Its own
//! test binary (a process's libjack does not take well to a second server of the same name).

use std::process::Stdio;
use std::time::{Duration, Instant};

use stagebox_tests::keyboard::{echo_delays, play_keyboard, MIDI_ECHO};
use stagebox_tests::*;

fn jack_lsp(server: &str) -> String {
    let out = std::process::Command::new("jack_lsp")
        .env("JACK_DEFAULT_SERVER", server)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// For comparison, the path ALSA keeps (midir ports; notes handed to the engine by the control
/// thread as soon as it has them, and sent by the control thread): the same keyboard on the same
/// kind of server with `--backend none`. It must work; its spread is printed (BENCHMARKS.md).
#[test]
fn the_midir_path_echoes_notes_with_the_jitter_of_a_control_thread() {
    let d = tmp("jack-native-midir");
    let server = JackServer::start(48000, 128);
    let patch = d.join("echo.toml");
    std::fs::write(&patch, MIDI_ECHO).unwrap();
    let mut child = stagebox()
        .args([
            "run",
            "--backend",
            "none",
            "--buffer",
            "128",
            "--no-osc",
            "--quiet",
            "--duration",
            "12",
            "--patch",
        ])
        .arg(&patch)
        .env("JACK_DEFAULT_SERVER", &server.name)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // midir makes a client per port ("stagebox", "stagebox-01", ...): find them by port name.
    let find = |suffix: &str| -> String {
        let t0 = Instant::now();
        loop {
            if let Some(p) = jack_lsp(&server.name).lines().find(|l| l.ends_with(suffix)) {
                return p.to_string();
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "no port {suffix}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (into, from) = (find(":midi_in"), find(":notes"));
    let seen = play_keyboard(&server.name, &into, &from, None);
    let _ = child.kill();
    let _ = child.wait();
    let mut deltas = echo_delays(&seen);
    deltas.sort_unstable();
    assert!(deltas.len() * 2 >= seen.sent.len(), "heard {} of {}", deltas.len(), seen.sent.len());
    let ms = |f: u64| f as f64 / 48.0;
    println!(
        "midir path: {} notes, delay min {:.2} ms, median {:.2} ms, max {:.2} ms (spread {:.2} ms)",
        deltas.len(),
        ms(deltas[0]),
        ms(deltas[deltas.len() / 2]),
        ms(*deltas.last().unwrap()),
        ms(deltas.last().unwrap() - deltas[0])
    );
}
