//! The native JACK client on dummy servers: one client with every audio and MIDI port; the
//! round trip measured by `jack_iodelay` equals one period (what `jack_thru` measures) plus the
//! latency Stagebox reports to JACK, at 64, 128 and 256 frames; MIDI into `midi_in` comes out
//! of `notes` at a fixed frame offset, the same for every note (0 frames of jitter). Its own
//! test binary.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stagebox_tests::*;

/// The tests here share a server name (the process id): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const PASSTHROUGH_MONO: &str = r#"
[[node]]
id = "in"
type = "input"
channels = 1
[[node]]
id = "out"
type = "output"
channels = 1
[[connect]]
from = "in"
to = "out"
"#;

/// A patch with a declared latency: a resampler to 16 kHz and back (exact, linear phase).
const RESAMPLED_MONO: &str = r#"
[[node]]
id = "in"
type = "input"
channels = 1
[[node]]
id = "rs"
type = "resample"
rate_hz = 16000
channels = 1
[[node]]
id = "out"
type = "output"
channels = 1
[[connect]]
from = "in"
to = "rs"
[[connect]]
from = "rs"
to = "out"
"#;

const MIDI_ECHO: &str = r#"
[[node]]
id = "keys"
type = "midi_in"
[[node]]
id = "echo"
type = "midi_out"
[[node]]
id = "tone"
type = "osc"
gain_db = -60.0
[[node]]
id = "out"
type = "output"
[[connect]]
from = "keys.midi"
to = "echo.midi"
[[connect]]
from = "tone"
to = "out"
[midi]
clock_out = true
"#;

fn jack(args: &[&str], server: &str) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .env("JACK_DEFAULT_SERVER", server)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Starts `stagebox run --backend jack` on `server` with `patch` and waits for its port `port`.
fn start(server: &str, patch: &std::path::Path, port: &str, secs: u32) -> Child {
    let child = stagebox()
        .args(["run", "--backend", "jack", "--no-osc", "--duration", &secs.to_string(), "--patch"])
        .arg(patch)
        .env("JACK_DEFAULT_SERVER", server)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !jack(&["jack_lsp"], server).lines().any(|l| l == port) {
        assert!(t0.elapsed() < Duration::from_secs(20), "the port {port} never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// The largest capture latency JACK reports for `port` (frames).
fn capture_latency(server: &str, port: &str) -> u32 {
    let text = jack(&["jack_lsp", "-l", port], server);
    let line = text
        .lines()
        .find(|l| l.contains("capture latency"))
        .expect("jack_lsp -l prints latencies");
    let nums: Vec<u32> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    *nums.last().unwrap()
}

/// Runs `jack_iodelay` looped through `through` (a pair of ports: into, out of) for 3 s and
/// returns the last round trip it measured, in frames.
fn iodelay(server: &str, into: &str, out_of: &str) -> f64 {
    let mut io = Command::new("stdbuf")
        .args(["-oL", "jack_iodelay"])
        .env("JACK_DEFAULT_SERVER", server)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("jack_iodelay (Debian package jackd2)");
    let t0 = Instant::now();
    while !jack(&["jack_lsp"], server).lines().any(|l| l == "jack_delay:in") {
        assert!(t0.elapsed() < Duration::from_secs(10), "jack_iodelay did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    for (a, b) in [("jack_delay:out", into), (out_of, "jack_delay:in")] {
        assert!(Command::new("jack_connect")
            .args([a, b])
            .env("JACK_DEFAULT_SERVER", server)
            .status()
            .unwrap()
            .success());
    }
    std::thread::sleep(Duration::from_secs(3));
    // Killed outright (SIGINT is ignored by processes started in the background); stdbuf made
    // its output line-buffered, so every line it printed is in the pipe.
    let _ = io.kill();
    let out = io.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let last = text
        .lines()
        .filter(|l| l.contains("total roundtrip latency"))
        .last()
        .unwrap_or_else(|| panic!("jack_iodelay measured nothing:\n{text}"));
    last.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn one_client_whose_round_trip_is_one_period_plus_the_latency_it_reports() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = tmp("jack-native");
    for period in [128u32, 64, 256] {
        let server = JackServer::start(48000, period);
        // jack_thru, the minimal C client, on the same server: one period.
        let mut thru = Command::new("jack_thru")
            .env("JACK_DEFAULT_SERVER", &server.name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("jack_thru");
        std::thread::sleep(Duration::from_millis(500));
        let thru_frames = iodelay(&server.name, "jack_thru:input_1", "jack_thru:output_1");
        let _ = thru.kill();
        let _ = thru.wait();
        println!("{period} frames: jack_thru round trip {thru_frames} frames");
        assert_eq!(thru_frames, period as f64);
        for (k, text) in [PASSTHROUGH_MONO, RESAMPLED_MONO].iter().enumerate() {
            let patch = d.join(format!("p{period}-{k}.toml"));
            std::fs::write(&patch, text).unwrap();
            let mut child = start(&server.name, &patch, "stagebox:out_1", 8);
            let ports = jack(&["jack_lsp"], &server.name);
            let ours: Vec<&str> = ports.lines().filter(|l| !l.starts_with("system:")).collect();
            assert!(ours.iter().all(|p| p.starts_with("stagebox:")), "one client: {ours:?}");
            for p in [
                "stagebox:in_1",
                "stagebox:out_1",
                "stagebox:notes",
                "stagebox:control",
                "stagebox:midi_in",
            ] {
                assert!(ours.contains(&p), "{p} missing from {ours:?}");
            }
            // Only the loop's signal reaches our input.
            let _ = Command::new("jack_disconnect")
                .args(["system:capture_1", "stagebox:in_1"])
                .env("JACK_DEFAULT_SERVER", &server.name)
                .status();
            let measured = iodelay(&server.name, "stagebox:in_1", "stagebox:out_1");
            let reported = capture_latency(&server.name, "stagebox:out_1");
            println!("{period} frames, patch {k}: round trip {measured} frames, reported graph latency {reported}");
            assert_eq!(
                measured,
                (period + reported) as f64,
                "measured round trip vs one period + reported latency"
            );
            if k == 1 {
                assert!(reported > 0, "the resampling patch declares a latency");
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the test's JACK client saw: (frame time sent, note) and (frame time heard, note).
#[derive(Default)]
struct Seen {
    sent: Vec<(u64, u8)>,
    heard: Vec<(u64, u8)>,
    clock_ticks: Vec<u64>,
}

#[test]
fn midi_into_midi_in_leaves_notes_at_a_fixed_frame_offset() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = tmp("jack-native-midi");
    let server = JackServer::start(48000, 128);
    let patch = d.join("echo.toml");
    std::fs::write(&patch, MIDI_ECHO).unwrap();
    let mut child = start(&server.name, &patch, "stagebox:clock", 12);
    std::env::set_var("JACK_DEFAULT_SERVER", &server.name);
    let (client, _) = jack::Client::new("keyboard", jack::ClientOptions::NO_START_SERVER).unwrap();
    let mut out = client.register_port("out", jack::MidiOut::default()).unwrap();
    let input = client.register_port("in", jack::MidiIn::default()).unwrap();
    let clock_in = client.register_port("clock", jack::MidiIn::default()).unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    let mut cycle = 0u64;
    let process = jack::contrib::ClosureProcessHandler::new(move |_: &jack::Client, ps: &jack::ProcessScope| {
        let now = ps.last_frame_time() as u64;
        let n = ps.n_frames();
        let mut seen = s.lock().unwrap();
        for ev in input.iter(ps) {
            if ev.bytes.len() == 3 && ev.bytes[0] == 0x90 {
                seen.heard.push((now + ev.time as u64, ev.bytes[1]));
            }
        }
        for ev in clock_in.iter(ps) {
            if ev.bytes == [0xf8] {
                seen.clock_ticks.push(now + ev.time as u64);
            }
        }
        cycle += 1;
        // The writer clears the port's buffer: made every cycle, or old events repeat.
        let mut writer = out.writer(ps);
        // A note every 5th cycle, each at another frame of its cycle.
        if cycle > 50 && cycle % 5 == 0 && seen.sent.len() < 120 {
            let k = seen.sent.len() as u8;
            let offset = (k as u32 * 37) % n;
            let note = 20 + k % 100;
            if writer
                .write(&jack::RawMidi {
                    time: offset,
                    bytes: &[0x90, note, 100],
                })
                .is_ok()
            {
                seen.sent.push((now + offset as u64, note));
            }
        }
        jack::Control::Continue
    });
    let active = client.activate_async((), process).unwrap();
    let c = active.as_client();
    c.connect_ports_by_name("keyboard:out", "stagebox:midi_in").unwrap();
    c.connect_ports_by_name("stagebox:notes", "keyboard:in").unwrap();
    c.connect_ports_by_name("stagebox:clock", "keyboard:clock").unwrap();
    std::thread::sleep(Duration::from_secs(6));
    drop(active.deactivate());
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.lock().unwrap();
    // Match each note heard to the send of the same note (notes repeat only 100 sends apart).
    let mut deltas = Vec::new();
    for &(t_heard, note) in &seen.heard {
        if let Some(&(t_sent, _)) = seen.sent.iter().rev().find(|(t, k)| *k == note && *t <= t_heard) {
            deltas.push(t_heard - t_sent);
        }
    }
    println!(
        "sent {}, heard {}, offsets {:?}",
        seen.sent.len(),
        seen.heard.len(),
        &deltas[..deltas.len().min(10)]
    );
    // A JACK client that misses a cycle (an xrun on this VM) loses what was in its port then:
    // most notes, not all, must come back; every one that does at the same offset.
    assert!(seen.sent.len() >= 60, "only {} notes sent", seen.sent.len());
    assert!(
        deltas.len() * 10 >= seen.sent.len() * 8,
        "heard {} of {}",
        deltas.len(),
        seen.sent.len()
    );
    let first = deltas[0];
    assert!(deltas.iter().all(|&x| x == first), "MIDI jitter: offsets {deltas:?}");
    assert_eq!(first, 128, "one period through the loop (the patch adds no latency)");
    // Clock out at 120 BPM from the callback: 24 ticks a beat, 1000 frames apart at 48 kHz.
    let ticks = &seen.clock_ticks;
    assert!(ticks.len() > 100, "clock ticks heard: {}", ticks.len());
    let gaps: Vec<u64> = ticks.windows(2).map(|w| w[1] - w[0]).collect();
    let regular = gaps.iter().filter(|&&g| g == 1000).count();
    assert!(regular * 10 >= gaps.len() * 9, "clock gaps {:?}", &gaps[..gaps.len().min(30)]);
}
