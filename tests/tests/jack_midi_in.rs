//! MIDI in on a dummy JACK server: a JACK MIDI port (this test's, through midir) connected to
//! Stagebox's `control` port moves a mapped parameter, MIDI learn binds a new control, clock in
//! sets the tempo and program change switches the patch. Observed over OSC (meter levels,
//! `/stagebox/tempo.reply`, `/stagebox/status.reply`).

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscType};
use stagebox_tests::osc::{recv_for, send};
use stagebox_tests::*;

fn patch(extra: &str) -> String {
    format!(
        r#"
[[node]]
id = "tone"
type = "osc"
gain_db = -6.0
[[node]]
id = "vol"
type = "gain"
channels = 1
[[node]]
id = "level"
type = "meter"
channels = 1
interval_ms = 20
[[node]]
id = "out"
type = "output"
channels = 1
[[connect]]
from = "tone"
to = "vol"
[[connect]]
from = "vol"
to = "level"
[[connect]]
from = "level"
to = "out"
{extra}
"#
    )
}

fn last_rms(ms: &[OscMessage]) -> f32 {
    *osc::meter_rms(ms, "level").last().expect("meter reports")
}

fn wait_for(s: &UdpSocket, addr: &str) -> OscMessage {
    osc::expect(s, addr, &mut Vec::new())
}

/// Sends one control message three times, 10 ms apart. A JACK client that misses a cycle (an
/// xrun: this VM's dummy server logs hundreds a minute under load) never sees what was in its
/// input port that cycle, and a lone message can vanish that way; a real fader sends a stream of
/// values. Only messages whose repetition changes nothing (a CC's absolute value, start, the
/// same program) go through here.
fn send_again(ctl: &mut midir::MidiOutputConnection, msg: &[u8]) {
    for _ in 0..3 {
        ctl.send(msg).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_jack_midi_controller_moves_a_mapped_parameter_learns_follows_clock_and_switches_patch() {
    let d = tmp("midi-in");
    let p = d.join("a.toml");
    std::fs::write(
        &p,
        patch(
            r#"
[midi]
programs = ["b.toml"]
clock_out = true
tempo = 150.0

[[midi.map]]
cc = 7
to = "vol.gain_db"
min = -60.0
max = 0.0
"#,
        ),
    )
    .unwrap();
    std::fs::write(d.join("b.toml"), patch("")).unwrap();
    let stats = d.join("stats.json");
    let jack = JackServer::start(48000, 128);
    std::env::set_var("JACK_DEFAULT_SERVER", &jack.name);
    let (mut run, rx) = spawn_logged(
        stagebox()
            .args([
                "run",
                "--backend",
                "jack",
                "--no-watch",
                "--osc-port",
                "0",
                "--no-oscquery",
                "--duration",
                "20",
                "--patch",
            ])
            .arg(&p)
            .arg("--stats-json")
            .arg(&stats)
            .env("JACK_DEFAULT_SERVER", &jack.name),
    );
    // The OSC line comes first, then the MIDI port's.
    let port = log_ports(&rx, &["udp://"])[0];
    let t0 = Instant::now();
    while !rx
        .recv_timeout(Duration::from_secs(20))
        .expect("stagebox started")
        .contains("MIDI in on port")
    {
        assert!(t0.elapsed() < Duration::from_secs(20), "no MIDI in port");
    }
    // Our controller: a JACK MIDI output port, connected to Stagebox's `control` input.
    let out = midir::MidiOutput::new("tester").unwrap();
    use midir::os::unix::VirtualOutput;
    let mut ctl = out.create_virtual("out").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let ports = String::from_utf8(
        Command::new("jack_lsp")
            .env("JACK_DEFAULT_SERVER", &jack.name)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let ours = ports
        .lines()
        .find(|l| l.starts_with("tester") && l.ends_with(":out"))
        .expect("our port")
        .to_string();
    let theirs = ports
        .lines()
        .find(|l| l.ends_with(":control"))
        .unwrap_or_else(|| panic!("no control port in {ports}"))
        .to_string();
    assert!(Command::new("jack_connect")
        .args([&ours, &theirs])
        .env("JACK_DEFAULT_SERVER", &jack.name)
        .status()
        .unwrap()
        .success());
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    send(&c, port, "/stagebox/notify", vec![OscType::Int(1)]);
    let loud = last_rms(&recv_for(&c, 0.5));
    // CC 7 at 0: the mapped gain goes to -60 dB.
    send_again(&mut ctl, &[0xb0, 7, 0]);
    let quiet = last_rms(&recv_for(&c, 0.5));
    assert!((loud - quiet - 60.0).abs() < 2.0, "CC7 = 0: {loud} -> {quiet} dB");
    send_again(&mut ctl, &[0xb0, 7, 127]);
    let back = last_rms(&recv_for(&c, 0.5));
    assert!((back - loud).abs() < 1.0, "CC7 = 127: {back} dB");
    // MIDI learn: arm the tone's level, move CC 21, which then drives it.
    send(
        &c,
        port,
        "/stagebox/learn",
        vec![OscType::String("/stagebox/node/tone/gain_db".into())],
    );
    std::thread::sleep(Duration::from_millis(200));
    send_again(&mut ctl, &[0xb0, 21, 127]);
    let learned = wait_for(&c, "/stagebox/learned");
    assert_eq!(learned.args[0], OscType::String("/stagebox/node/tone/gain_db".into()));
    send_again(&mut ctl, &[0xb0, 21, 0]);
    let silent = last_rms(&recv_for(&c, 0.5));
    assert!(silent < -100.0, "learned CC21 = 0 silences the tone: {silent} dB");
    // Saved into the patch file.
    send(&c, port, "/stagebox/learn/save", vec![]);
    let done = wait_for(&c, "/stagebox/done");
    assert_eq!(done.args[0], OscType::String("/stagebox/learn/save".into()));
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("cc = 21") && text.contains("to = \"tone.gain_db\""), "{text}");
    // Clock in at 120 BPM (a tick every 20.833 ms) for a second.
    send_again(&mut ctl, &[0xfa]);
    let t0 = Instant::now();
    for k in 1..=48u32 {
        let due = Duration::from_micros(20_833 * k as u64);
        if let Some(w) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(w);
        }
        ctl.send(&[0xf8]).unwrap();
    }
    send(&c, port, "/stagebox/tempo", vec![]);
    let t = wait_for(&c, "/stagebox/tempo.reply");
    let OscType::Float(bpm) = t.args[1] else { panic!("{t:?}") };
    assert!((bpm - 120.0).abs() < 4.0, "clock in: {bpm} BPM");
    assert_eq!(t.args[2], OscType::Bool(true), "started");
    // Clock out at 150 BPM: 60 ticks a second on stagebox's `clock` port.
    let clock_port = ports
        .lines()
        .find(|l| l.ends_with(":clock"))
        .unwrap_or_else(|| panic!("no clock port in {ports}"))
        .to_string();
    let mut dump = Command::new("jack_midi_dump")
        .arg("clockdump")
        .env("JACK_DEFAULT_SERVER", &jack.name)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(Command::new("jack_connect")
        .args([clock_port.as_str(), "clockdump:input"])
        .env("JACK_DEFAULT_SERVER", &jack.name)
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_secs(2));
    let _ = dump.kill();
    let out = dump.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let ticks = text.lines().filter(|l| l.to_ascii_lowercase().contains("f8")).count();
    assert!(
        (90..=150).contains(&ticks),
        "about 120 clock ticks in 2 s at 150 BPM, got {ticks}:\n{text}"
    );
    // Program change 0: b.toml.
    send_again(&mut ctl, &[0xc0, 0]);
    std::thread::sleep(Duration::from_millis(500));
    send(&c, port, "/stagebox/status", vec![]);
    let st = wait_for(&c, "/stagebox/status.reply");
    let OscType::String(patch_now) = &st.args[12] else {
        panic!("{st:?}")
    };
    assert!(patch_now.ends_with("b.toml"), "program change switched to {patch_now}");
    // A burst of CCs for the latency figures (callback to the control thread's dispatch).
    for v in 0..200u8 {
        ctl.send(&[0xb0, 7, v % 128]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(ctl);
    send(&c, port, "/stagebox/quit", vec![]);
    let st = run.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let log: Vec<String> = rx.try_iter().collect();
    assert!(st.success(), "{}", log.join("\n"));
    assert!(stats.exists(), "no stats: {}", log.join("\n"));
    let s = read_json(&stats);
    println!(
        "MIDI in: {} received, dropped {}, callback -> dispatch {}",
        s["midi_in_received"], s["midi_in_dropped"], s["midi_dispatch_us"]
    );
    assert!(s["midi_dispatch_us"]["count"].as_u64().unwrap() >= 200);
    assert_eq!(s["midi_in_dropped"], 0);
}
