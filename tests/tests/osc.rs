//! The OSC control surface against a running `stagebox run` (the paced backend: real time
//! without a sound card), with real sockets: UDP and TCP (SLIP) clients built on rosc, and
//! liblo's `oscsend` / `oscdump` (Debian liblo-tools, installed by scripts/setup.sh).

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};
use stagebox_tests::osc::{client, expect, flatten, msg, recv_for, send};
use stagebox_tests::*;

const PATCH: &str = r#"
[[node]]
id = "tone"
type = "osc"
freq_hz = 440.0
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
"#;

/// A running engine with OSC on a free port.
struct Engine {
    child: Child,
    port: u16,
    query_port: u16,
    stats: std::path::PathBuf,
    log: mpsc::Receiver<String>,
}

impl Engine {
    /// On the paced backend (real time without a sound card).
    fn start(name: &str, patch: &str, secs: f64) -> Engine {
        Self::start_on(name, patch, secs, None)
    }

    /// On a dummy JACK server when `jack` is given.
    fn start_on(name: &str, patch: &str, secs: f64, jack: Option<&JackServer>) -> Engine {
        let d = tmp(name);
        let p = d.join("p.toml");
        std::fs::write(&p, patch).unwrap();
        let stats = d.join("stats.json");
        let mut cmd = stagebox();
        match jack {
            Some(j) => cmd
                .args(["run", "--backend", "jack", "--no-midi-out", "--no-midi-in"])
                .env("JACK_DEFAULT_SERVER", &j.name),
            None => cmd.args(["run", "--backend", "none"]),
        };
        let (child, rx) = spawn_logged(
            cmd.args(["--no-watch", "--osc-port", "0", "--duration"])
                .arg(secs.to_string())
                .arg("--patch")
                .arg(&p)
                .arg("--stats-json")
                .arg(&stats),
        );
        let ports = log_ports(&rx, &["udp://", "OSCQuery on http://"]);
        Engine {
            child,
            port: ports[0],
            query_port: ports[1],
            stats,
            log: rx,
        }
    }

    fn wait(mut self) -> serde_json::Value {
        assert!(self.child.wait().unwrap().success());
        let rest: Vec<String> = self.log.try_iter().collect();
        let _ = rest;
        read_json(&self.stats)
    }
}

fn meter_rms(ms: &[OscMessage]) -> Vec<f32> {
    osc::meter_rms(ms, "level")
}

#[test]
fn osc_sets_a_gain_heard_in_the_meter_answers_status_sync_and_gets() {
    let e = Engine::start("osc-basic", PATCH, 6.0);
    let c = client();
    let mut seen = Vec::new();
    send(&c, e.port, "/stagebox/notify", vec![OscType::Int(1)]);
    let done = expect(&c, "/stagebox/done", &mut seen);
    assert_eq!(done.args, vec![OscType::String("/stagebox/notify".into())]);
    let before = meter_rms(&recv_for(&c, 0.5));
    assert!(before.len() >= 10, "meter reports to a subscriber: {before:?}");
    let loud = before[before.len() - 1];
    assert!(loud > -20.0, "the tone's level {loud} dB");
    // Set the gain; the meter after it hears it.
    send(&c, e.port, "/stagebox/node/vol/gain_db", vec![OscType::Float(-40.0)]);
    let after = meter_rms(&recv_for(&c, 0.5));
    let quiet = after[after.len() - 1];
    assert!((loud - quiet - 40.0).abs() < 1.5, "gain -40 dB: {loud} -> {quiet} dB");
    // The normalized form (0..1 over -120..24 dB): 0.75 is -12 dB.
    send(&c, e.port, "/stagebox/node/vol/gain_db/norm", vec![OscType::Double(0.75)]);
    let after = meter_rms(&recv_for(&c, 0.4));
    assert!((loud - after[after.len() - 1] - 12.0).abs() < 1.5, "{after:?}");
    // Get: no argument returns the value.
    send(&c, e.port, "/stagebox/node/vol/gain_db", vec![]);
    let got = expect(&c, "/stagebox/node/vol/gain_db", &mut seen);
    assert_eq!(got.args, vec![OscType::Float(-12.0)]);
    // Status.
    send(&c, e.port, "/stagebox/status", vec![]);
    let st = expect(&c, "/stagebox/status.reply", &mut seen);
    assert_eq!(st.args[3], OscType::Int(48000), "{:?}", st.args);
    assert!(matches!(st.args[5], OscType::Float(u) if u > 0.5), "uptime {:?}", st.args[5]);
    // Sync after a burst of sets: synced comes back with the id, after they are applied.
    for g in 0..50 {
        send(&c, e.port, "/stagebox/node/vol/gain_db", vec![OscType::Int(-g)]);
    }
    send(&c, e.port, "/stagebox/sync", vec![OscType::Int(42)]);
    let synced = expect(&c, "/stagebox/synced", &mut seen);
    assert_eq!(synced.args, vec![OscType::Int(42)]);
    // A bundle with a time tag 300 ms ahead: applied then, not now.
    send(&c, e.port, "/stagebox/node/vol/gain_db", vec![OscType::Float(0.0)]);
    let _ = recv_for(&c, 0.3);
    let now = OscTime::try_from(std::time::SystemTime::now() + Duration::from_millis(300)).unwrap();
    let b = OscPacket::Bundle(OscBundle {
        timetag: now,
        content: vec![OscPacket::Message(OscMessage {
            addr: "/stagebox/node/vol/gain_db".into(),
            args: vec![OscType::Float(-30.0)],
        })],
    });
    c.send_to(&rosc::encoder::encode(&b).unwrap(), ("127.0.0.1", e.port)).unwrap();
    let soon = meter_rms(&recv_for(&c, 0.15));
    assert!(soon.iter().all(|r| (r - loud).abs() < 1.5), "applied before its time: {soon:?}");
    let later = meter_rms(&recv_for(&c, 0.5));
    assert!((loud - later[later.len() - 1] - 30.0).abs() < 1.5, "{later:?}");
    // Unsubscribe: the meter stops coming.
    send(&c, e.port, "/stagebox/notify", vec![OscType::Int(0)]);
    std::thread::sleep(Duration::from_millis(100));
    let _ = recv_for(&c, 0.1);
    assert!(meter_rms(&recv_for(&c, 0.3)).is_empty());
    let s = e.wait();
    assert_eq!(s["rt_allocations"], 0);
    assert!(s["osc_received"].as_u64().unwrap() >= 59, "{}", s["osc_received"]);
}

#[test]
fn bad_input_gets_error_replies_and_the_engine_goes_on() {
    let e = Engine::start("osc-bad", PATCH, 4.0);
    let c = client();
    let mut seen = Vec::new();
    let error_for = |c: &UdpSocket, seen: &mut Vec<OscMessage>| {
        let m = expect(c, "/stagebox/error", seen);
        match (&m.args[0], &m.args[1]) {
            (OscType::String(a), OscType::String(why)) => (a.clone(), why.clone()),
            _ => panic!("{m:?}"),
        }
    };
    send(&c, e.port, "/nope", vec![]);
    assert!(error_for(&c, &mut seen).1.contains("unknown address"));
    send(&c, e.port, "/stagebox/node/vol/gain_db", vec![OscType::String("loud".into())]);
    assert!(error_for(&c, &mut seen).1.contains("expects a number"));
    send(&c, e.port, "/stagebox/node/vol/gain_db", vec![OscType::Float(f32::NAN)]);
    assert!(error_for(&c, &mut seen).1.contains("not a finite number"));
    send(&c, e.port, "/stagebox/node/vol/gain_db", vec![OscType::Double(f64::INFINITY)]);
    assert!(error_for(&c, &mut seen).1.contains("not a finite number"));
    send(&c, e.port, "/stagebox/node/vol/gain_db", vec![OscType::Int(99)]);
    let (_, why) = error_for(&c, &mut seen);
    assert!(why.contains("out of range") && why.contains("clamped to 24"), "{why}");
    send(&c, e.port, "/stagebox/node/vol/gain_db", vec![]);
    assert_eq!(expect(&c, "/stagebox/node/vol/gain_db", &mut seen).args, vec![OscType::Float(24.0)]);
    send(&c, e.port, "/stagebox/node/nobody/gain_db", vec![OscType::Float(0.0)]);
    assert!(error_for(&c, &mut seen).1.contains("no such node parameter"));
    // Malformed bytes, a truncated message, deep bundles.
    c.send_to(b"garbage that is not OSC", ("127.0.0.1", e.port)).unwrap();
    assert!(error_for(&c, &mut seen).1.contains("malformed"));
    let mut m = msg("/stagebox/status", vec![OscType::Int(1)]);
    m.truncate(m.len() - 2);
    c.send_to(&m, ("127.0.0.1", e.port)).unwrap();
    assert!(error_for(&c, &mut seen).1.contains("malformed"));
    let mut p = OscPacket::Message(OscMessage {
        addr: "/stagebox/status".into(),
        args: vec![],
    });
    for _ in 0..20 {
        p = OscPacket::Bundle(OscBundle {
            timetag: OscTime::from((0, 1)),
            content: vec![p],
        });
    }
    c.send_to(&rosc::encoder::encode(&p).unwrap(), ("127.0.0.1", e.port)).unwrap();
    assert!(error_for(&c, &mut seen).1.contains("nested deeper"));
    // A fixed (build-time) parameter: the node is rebuilt with it.
    send(&c, e.port, "/stagebox/node/tone/waveform", vec![OscType::String("square".into())]);
    send(&c, e.port, "/stagebox/node/tone/waveform", vec![OscType::String("kazoo".into())]);
    assert!(error_for(&c, &mut seen).1.contains("not one of"));
    // Still answering.
    send(&c, e.port, "/stagebox/status", vec![]);
    let st = expect(&c, "/stagebox/status.reply", &mut seen);
    assert!(matches!(st.args[8], OscType::Int(n) if n >= 9), "errors counted: {:?}", st.args);
    let s = e.wait();
    assert_eq!(s["rt_allocations"], 0);
    assert!(s["osc_malformed"].as_u64().unwrap() >= 2);
    // Audio never stopped (the paced backend runs 4 s of 256-frame blocks at 48 kHz).
    assert!(s["callbacks"].as_u64().unwrap() > 600, "{}", s["callbacks"]);
}

fn slip(data: &[u8]) -> Vec<u8> {
    let mut v = vec![0xc0];
    for &b in data {
        match b {
            0xc0 => v.extend_from_slice(&[0xdb, 0xdc]),
            0xdb => v.extend_from_slice(&[0xdb, 0xdd]),
            _ => v.push(b),
        }
    }
    v.push(0xc0);
    v
}

#[test]
fn tcp_with_slip_framing_and_address_patterns() {
    let e = Engine::start("osc-tcp", PATCH, 4.0);
    let mut t = TcpStream::connect(("127.0.0.1", e.port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // A pattern: every gain_db of any node whose id starts with v.
    t.write_all(&slip(&msg("/stagebox/node/v*/gain_db", vec![OscType::Float(-6.0)])))
        .unwrap();
    t.write_all(&slip(&msg("/stagebox/node/{vol,tone}/gain_db", vec![]))).unwrap();
    t.write_all(&slip(&msg("/stagebox/sync", vec![OscType::Int(7)]))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut frame = Vec::new();
    let mut esc = false;
    let t0 = Instant::now();
    while !got.iter().any(|m: &OscMessage| m.addr == "/stagebox/synced") && t0.elapsed() < Duration::from_secs(5) {
        let n = t.read(&mut buf).unwrap();
        for &b in &buf[..n] {
            match (b, esc) {
                (0xc0, _) => {
                    if !frame.is_empty() {
                        if let Ok((_, p)) = rosc::decoder::decode_udp(&frame) {
                            flatten(p, &mut got);
                        }
                        frame.clear();
                    }
                }
                (0xdb, false) => esc = true,
                (0xdc, true) => {
                    frame.push(0xc0);
                    esc = false;
                }
                (0xdd, true) => {
                    frame.push(0xdb);
                    esc = false;
                }
                (b, _) => {
                    frame.push(b);
                    esc = false;
                }
            }
        }
    }
    let find = |a: &str| {
        got.iter()
            .find(|m| m.addr == a)
            .unwrap_or_else(|| panic!("no {a} in {got:?}"))
            .clone()
    };
    assert_eq!(find("/stagebox/node/vol/gain_db").args, vec![OscType::Float(-6.0)]);
    assert_eq!(find("/stagebox/node/tone/gain_db").args, vec![OscType::Float(-6.0)]);
    assert_eq!(find("/stagebox/synced").args, vec![OscType::Int(7)]);
    drop(t);
    let s = e.wait();
    assert_eq!(s["osc_errors"], 0);
}

#[test]
fn a_flood_of_20000_messages_a_second_never_stops_audio_and_status_still_answers() {
    let secs = 10.0;
    // On a dummy JACK server (128 frames), as a live rig runs.
    let jack = JackServer::start_named(&format!("stagebox-flood-{}", std::process::id()), 48000, 128);
    let e = Engine::start_on("osc-flood", PATCH, secs + 3.0, Some(&jack));
    let c = client();
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = e.port;
    let sender = std::thread::spawn(move || {
        let m = msg("/stagebox/node/vol/gain_db", vec![OscType::Float(-3.0)]);
        let t0 = Instant::now();
        let mut sent = 0u64;
        while t0.elapsed().as_secs_f64() < secs {
            // 20,000 a second, in bursts of 200 every 10 ms.
            let due = (t0.elapsed().as_secs_f64() * 20_000.0) as u64;
            while sent < due {
                let _ = flood.send_to(&m, ("127.0.0.1", port));
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        sent
    });
    // Status answered during the flood.
    std::thread::sleep(Duration::from_secs(3));
    let mut seen = Vec::new();
    send(&c, e.port, "/stagebox/status", vec![]);
    let st = expect(&c, "/stagebox/status.reply", &mut seen);
    println!("status during the flood: {:?}", st.args);
    let sent = sender.join().unwrap();
    send(&c, e.port, "/stagebox/status", vec![]);
    let st = expect(&c, "/stagebox/status.reply", &mut seen);
    println!("sent {sent}; status after: {:?}", st.args);
    let s = e.wait();
    println!("{}", serde_json::to_string_pretty(&s).unwrap());
    assert!(sent >= 190_000);
    let (received, dropped) = (s["osc_received"].as_u64().unwrap(), s["osc_dropped"].as_u64().unwrap());
    // The kernel may drop datagrams before we see them; what arrives is handled or counted.
    assert!(received > sent / 2, "received {received} of {sent}");
    println!("received {received}, dropped in the queue {dropped}");
    assert_eq!(s["rt_allocations"], 0);
    // Audio kept its pace: (secs + 3) s of 256-frame blocks at 48 kHz, less start-up.
    let expected = (secs + 3.0) * 48000.0 / 256.0;
    assert!(
        s["callbacks"].as_f64().unwrap() > expected * 0.9,
        "callbacks {} of {expected}",
        s["callbacks"]
    );
    assert_eq!(s["events_dropped"], 0, "the engine's event ring overflowed");
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A clip with three known notes into the melody node, and the tone through the gain.
fn notes_patch(name: &str, line: &[(f64, f64, u8)]) -> String {
    let d = tmp(name);
    let wav = d.join("line.wav");
    write_flute_wav(&wav, line, 3.5);
    format!(
        r#"{PATCH}
[[node]]
id = "clip"
type = "player"
path = "{}"
[[node]]
id = "line"
type = "melody"
[[node]]
id = "sink"
type = "output"
channels = 1
first_channel = 1
[[connect]]
from = "clip"
to = "line"
[[connect]]
from = "clip"
to = "sink"
"#,
        wav.display()
    )
}

#[test]
fn oscsend_sets_a_gain_and_oscdump_shows_status_and_subscribed_events() {
    assert!(
        have("oscsend") && have("oscdump"),
        "liblo's oscsend/oscdump are missing: scripts/setup.sh installs Debian liblo-tools"
    );
    let line = [(1.5, 1.9, 69u8), (2.0, 2.4, 72), (2.5, 3.0, 76)];
    let jack = JackServer::start_named(&format!("stagebox-liblo-{}", std::process::id()), 48000, 128);
    let e = Engine::start_on("osc-liblo", &notes_patch("osc-liblo-clip", &line), 4.0, Some(&jack));
    let dump_port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut dump = Command::new("oscdump")
        .arg("-L")
        .arg(dump_port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let oscsend = |args: &[&str]| {
        let st = Command::new("oscsend")
            .arg("127.0.0.1")
            .arg(e.port.to_string())
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "oscsend {args:?}");
    };
    let dp = dump_port.to_string();
    oscsend(&["/stagebox/notify", "ii", "1", &dp]);
    oscsend(&["/stagebox/node/vol/gain_db", "f", "-20"]);
    std::thread::sleep(Duration::from_millis(300));
    oscsend(&["/stagebox/status", "i", &dp]);
    std::thread::sleep(Duration::from_millis(2700));
    let _ = dump.kill();
    let mut text = String::new();
    dump.stdout.take().unwrap().read_to_string(&mut text).unwrap();
    let _ = dump.wait();
    assert!(text.contains("/stagebox/status.reply"), "{text}");
    // The subscribed events: meters, and the clip's notes as they were played.
    let last_meter = text
        .lines()
        .rev()
        .find(|l| l.contains("/stagebox/meter") && l.contains("\"level\""))
        .unwrap_or_else(|| panic!("no meter in {text}"));
    // The meter heard the new gain: the tone (-6 dB peak sine, about -9 dB rms) now near -29.
    let rms: f32 = last_meter.split_whitespace().last().unwrap().parse().unwrap();
    assert!((rms + 29.0).abs() < 2.0, "{last_meter}");
    let ons: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("/stagebox/note"))
        .filter_map(|l| {
            // "/stagebox/note siiiff "line" 1 69 87 1.49 1.51"
            let f: Vec<&str> = l.split_whitespace().collect();
            let i = f.iter().position(|w| *w == "/stagebox/note")?;
            (f.get(i + 5) != Some(&"0")).then(|| *f.get(i + 4).unwrap())
        })
        .collect();
    assert_eq!(ons, vec!["69", "72", "76"], "{text}");
    e.wait();
}

#[test]
fn subscribers_receive_notes_as_they_are_played() {
    let d = tmp("osc-notes-clip");
    let line = [(0.3, 0.7, 69u8), (0.8, 1.2, 72), (1.3, 1.8, 76)];
    let wav = d.join("line.wav");
    write_flute_wav(&wav, &line, 2.5);
    let patch = format!(
        r#"
[[node]]
id = "clip"
type = "player"
path = "{}"
[[node]]
id = "line"
type = "melody"
[[node]]
id = "out"
type = "output"
channels = 1
[[connect]]
from = "clip"
to = "line"
[[connect]]
from = "clip"
to = "out"
"#,
        wav.display()
    );
    // Subscribe before the clip's first note (the player starts with the engine).
    let e = Engine::start("osc-notes", &patch, 3.5);
    let c = client();
    send(&c, e.port, "/stagebox/notify", vec![OscType::Int(1)]);
    let got = recv_for(&c, 3.0);
    let keys: Vec<i32> = got
        .iter()
        .filter(|m| m.addr == "/stagebox/note" && m.args[3] != OscType::Int(0))
        .filter_map(|m| if let OscType::Int(k) = m.args[2] { Some(k) } else { None })
        .collect();
    assert_eq!(keys, vec![69, 72, 76], "{got:?}");
    e.wait();
}

#[test]
fn oscquery_serves_the_namespace_to_curl_and_streams_listened_values() {
    let e = Engine::start("oscquery", PATCH, 4.0);
    let base = format!("http://127.0.0.1:{}", e.query_port);
    let curl = |path: &str| -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5"])
            .arg(format!("{base}{path}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "curl {path}");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    };
    let ns = curl("/");
    // Every parameter of every node in the patch, with its range and value.
    let nodes = &ns["CONTENTS"]["stagebox"]["CONTENTS"]["node"]["CONTENTS"];
    for (node, params) in [
        ("tone", &["freq_hz", "gain_db", "waveform", "channels"][..]),
        ("vol", &["gain_db", "pan", "mute", "channels"][..]),
        ("level", &["channels", "interval_ms"][..]),
    ] {
        for p in params {
            let leaf = &nodes[node]["CONTENTS"][p];
            assert_eq!(leaf["FULL_PATH"], format!("/stagebox/node/{node}/{p}"), "{node}.{p}: {leaf}");
            assert!(leaf["RANGE"][0].get("MIN").is_some(), "{node}.{p} has a range: {leaf}");
            assert!(leaf["VALUE"].is_array() && leaf["ACCESS"] == 3, "{leaf}");
        }
    }
    // Every parameter `stagebox osc-space` lists for the patch (the same specs) is there, with
    // a range (strings excepted) and a value.
    let d = tmp("oscquery-space");
    std::fs::write(d.join("p.toml"), PATCH).unwrap();
    let space = stagebox().args(["osc-space", "--patch"]).arg(d.join("p.toml")).output().unwrap();
    let space = String::from_utf8_lossy(&space.stdout);
    let addrs: Vec<&str> = space
        .lines()
        .filter_map(|l| l.strip_prefix("| `/stagebox/node/"))
        .map(|l| l.split('`').next().unwrap())
        .collect();
    assert!(addrs.len() >= 12, "{space}");
    for a in &addrs {
        let (node, param) = a.split_once('/').unwrap();
        let leaf = &nodes[node]["CONTENTS"][param];
        assert_eq!(leaf["FULL_PATH"], format!("/stagebox/node/{a}"), "{a} missing from the namespace");
        assert!(leaf["VALUE"].is_array(), "{a}: {leaf}");
        assert!(
            leaf["TYPE"] == "s" || leaf["RANGE"][0].get("MAX").is_some(),
            "{a} has a range: {leaf}"
        );
    }
    assert_eq!(nodes["vol"]["CONTENTS"]["gain_db"]["RANGE"][0]["MIN"], -120.0);
    assert_eq!(nodes["vol"]["CONTENTS"]["gain_db"]["TYPE"], "f");
    assert_eq!(nodes["tone"]["CONTENTS"]["gain_db"]["VALUE"][0], -6.0);
    let info = curl("/?HOST_INFO");
    assert_eq!(info["OSC_PORT"], e.port);
    assert_eq!(info["EXTENSIONS"]["LISTEN"], true);
    assert_eq!(curl("/stagebox/node/vol/gain_db?VALUE")["VALUE"][0], 0.0);
    // WebSocket: LISTEN to the gain, change it by OSC, receive the change as binary OSC.
    let (mut ws, _) = tungstenite::client::client(
        format!("ws://127.0.0.1:{}/", e.query_port),
        TcpStream::connect(("127.0.0.1", e.query_port)).unwrap(),
    )
    .unwrap();
    ws.send(tungstenite::Message::Text(
        r#"{"COMMAND": "LISTEN", "DATA": "/stagebox/node/vol/gain_db"}"#.into(),
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let c = client();
    send(&c, e.port, "/stagebox/node/tone/gain_db", vec![OscType::Float(-20.0)]);
    send(&c, e.port, "/stagebox/node/vol/gain_db", vec![OscType::Float(-7.5)]);
    ws.get_mut().set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let m = loop {
        match ws.read().unwrap() {
            tungstenite::Message::Binary(b) => break rosc::decoder::decode_udp(&b).unwrap().1,
            _ => continue,
        }
    };
    assert_eq!(
        m,
        OscPacket::Message(OscMessage {
            addr: "/stagebox/node/vol/gain_db".into(),
            args: vec![OscType::Float(-7.5)]
        }),
        "only the listened path comes"
    );
    // And the namespace follows.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(curl("/stagebox/node/vol/gain_db?VALUE")["VALUE"][0], -7.5);
    drop(ws);
    e.wait();
}

#[test]
fn python_osc_over_udp_and_tcp() {
    let py = root().join(".cache/test-venv/bin/python");
    assert!(py.exists(), "python-osc's venv is missing: scripts/setup.sh makes .cache/test-venv");
    let e = Engine::start("osc-python", PATCH, 5.0);
    let out = Command::new(&py)
        .arg(root().join("tests/python/osc_client.py"))
        .arg(e.port.to_string())
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    e.wait();
}
