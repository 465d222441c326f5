//! A live run on a dummy JACK server: a file player plays a melody, the melody and basic_pitch
//! nodes turn it into notes, and the notes leave through a JACK MIDI port (read by
//! jack_midi_dump), as OSC to a loopback socket, and into an event log. Its own test binary.

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stagebox_tests::*;

#[test]
fn notes_leave_a_jack_midi_port_and_osc_while_the_clip_plays() {
    let d = tmp("jack-notes");
    let line: [(f64, f64, u8); 6] = [
        (0.5, 0.9, 67),
        (1.0, 1.4, 69),
        (1.5, 1.9, 71),
        (2.0, 2.6, 72),
        (2.8, 3.2, 74),
        (3.4, 4.0, 76),
    ];
    write_flute_wav(&d.join("line.wav"), &line, 4.5);
    let patch = d.join("live.toml");
    std::fs::write(
        &patch,
        r#"
[[node]]
id = "clip"
type = "player"
path = "line.wav"
[[node]]
id = "line"
type = "melody"
[[node]]
id = "poly"
type = "basic_pitch"
mpe = false
midi_channel = 2
[[node]]
id = "out"
type = "output"
[[connect]]
from = "clip"
to = "line"
[[connect]]
from = "clip"
to = "poly"
[[connect]]
from = "clip"
to = "out"
"#,
    )
    .unwrap();
    // Under heavy load this VM's dummy JACK server can zombify a slow client (jack_midi_dump then
    // receives nothing while the engine sends); that is the environment, so the run is tried up
    // to three times, and the assertions below hold for the attempt where the dump heard MIDI.
    let mut attempt = 0;
    let (s, text, osc_notes, events, jack) = loop {
        attempt += 1;
        let jack = JackServer::start(48000, 128);
        let osc = UdpSocket::bind("127.0.0.1:0").unwrap();
        osc.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let osc_addr = osc.local_addr().unwrap().to_string();
        let stats = d.join(format!("stats{attempt}.json"));
        let events = d.join(format!("events{attempt}.jsonl"));
        let mut run = stagebox()
            .args([
                "run",
                "--backend",
                "jack",
                "--duration",
                "8",
                "--no-watch",
                "--no-midi-in",
                "--no-osc",
                "--patch",
            ])
            .arg(&patch)
            .args(["--osc-out", &osc_addr, "--events-out"])
            .arg(&events)
            .arg("--stats-json")
            .arg(&stats)
            .env("JACK_DEFAULT_SERVER", &jack.name)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        // A MIDI monitor on the same server, connected to our port as soon as it exists.
        let dump_log = d.join("midi_dump.txt");
        let mut dump = Command::new("jack_midi_dump")
            .arg("dump")
            .env("JACK_DEFAULT_SERVER", &jack.name)
            .stdout(std::fs::File::create(&dump_log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        loop {
            let ok = Command::new("jack_connect")
                .args(["stagebox:notes", "dump:input"])
                .env("JACK_DEFAULT_SERVER", &jack.name)
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success();
            if ok {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "the MIDI port stagebox:notes never appeared");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut osc_notes = Vec::new();
        let mut buf = [0u8; 2048];
        while t0.elapsed() < Duration::from_secs(9) {
            if let Ok((n, _)) = osc.recv_from(&mut buf) {
                if let Ok((_, rosc::OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..n]) {
                    if m.addr == "/stagebox/note" {
                        osc_notes.push(m.args);
                    }
                }
            }
        }
        assert!(run.wait().unwrap().success());
        let _ = dump.kill();
        let _ = dump.wait();
        let s = read_json(&stats);
        println!("{}", serde_json::to_string_pretty(&s).unwrap());
        // MIDI through JACK: note-ons on channel 1 (melody) and 2 (basic_pitch).
        let text = std::fs::read_to_string(&dump_log).unwrap();
        let heard = text.lines().count() as u64;
        let sent = s["midi_sent"].as_u64().unwrap();
        if heard > 0 || attempt == 3 {
            break (s, text, osc_notes, events, jack);
        }
        println!(
            "attempt {attempt}: jack_midi_dump heard none of the {sent} MIDI messages sent; the dummy \
             server logged {} xruns of its own; trying again",
            jack.log_text().matches("XRun").count()
        );
    };
    let ons1 = text.lines().filter(|l| l.contains("0x90") || l.contains("90 ")).count();
    let ons2 = text.lines().filter(|l| l.contains("0x91") || l.contains("91 ")).count();
    println!(
        "jack_midi_dump: {} lines, ch1 note-ons {ons1}, ch2 note-ons {ons2}",
        text.lines().count()
    );
    // A JACK client that misses a cycle (an xrun: on a loaded VM the dummy server has hundreds a
    // minute) never sees what was in its input port that cycle, so the monitor may hear fewer
    // messages than the engine handed to JACK. Such losses are counted, allowed only where the
    // server reported xruns, and every note-on must be either heard or among them.
    let sent = s["midi_sent"].as_u64().unwrap() as usize;
    let lost = sent.saturating_sub(text.lines().count());
    let xruns = s["xruns"].as_u64().unwrap() as usize + jack.log_text().matches("XRun").count();
    if lost > 0 {
        println!("jack_midi_dump missed {lost} of {sent} messages over {xruns} xruns");
        assert!(xruns > 0, "MIDI messages lost with no xrun reported: {lost} of {sent}");
    }
    assert!(ons1 >= 1, "{text}");
    assert!(ons1 + lost >= line.len(), "melody note-ons {ons1}, lost {lost}\n{text}");
    // basic_pitch: the notes, unless windows came back late (counted, and their notes dropped:
    // the graceful degradation this VM's stalls sometimes call for).
    let late = s["late_windows"].as_u64().unwrap();
    assert!(ons2 >= 1, "{text}");
    assert!(
        ons2 + lost >= line.len() - 1 || late > 0,
        "basic_pitch lost notes without late windows: {ons2} note-ons\n{text}"
    );
    assert!(sent >= line.len() + ons2);
    // The melody's notes, in order, by OSC (node, channel, key, velocity, onset, emitted).
    let mel: Vec<i32> = osc_notes
        .iter()
        .filter(|a| a[0] == rosc::OscType::String("line".into()) && a[3] != rosc::OscType::Int(0))
        .filter_map(|a| if let rosc::OscType::Int(k) = a[2] { Some(k) } else { None })
        .collect();
    assert_eq!(mel, line.iter().map(|l| l.2 as i32).collect::<Vec<_>>());
    // The event log holds the same notes with their times.
    let log = std::fs::read_to_string(&events).unwrap();
    assert!(log.lines().filter(|l| l.contains("\"note_on\"")).count() >= line.len() + ons2);
    // Note-on latency in the engine's timeline (the player starts at engine time 0, so a note's
    // true onset is its time in the clip): emitted time minus true onset, per node.
    for (node, ch) in [("line", 1), ("poly", 2)] {
        let mut lat: Vec<f64> = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|j| j["type"] == "note_on" && j["node"] == node && j["channel"] == ch)
            .filter_map(|j| {
                let t = j["time_s"].as_f64().unwrap();
                let k = j["pitch"].as_u64().unwrap() as u8;
                line.iter()
                    .filter(|l| l.2 == k && (t - l.0) > -0.01 && (t - l.0) < 0.5)
                    .map(|l| t - l.0)
                    .reduce(f64::min)
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        if !lat.is_empty() {
            println!(
                "live note-on latency, {node}: median {:.1} ms, max {:.1} ms over {} notes",
                lat[lat.len() / 2] * 1e3,
                lat[lat.len() - 1] * 1e3,
                lat.len()
            );
        }
        if node == "line" {
            assert_eq!(lat.len(), line.len());
            assert!(lat[lat.len() - 1] < 0.1, "melody latency {lat:?}");
        }
    }
    assert_eq!(s["rt_allocations"], 0);
    // Audio ran throughout (a loaded VM loses some cycles to its own stalls; see BENCHMARKS.md).
    assert!(s["callbacks"].as_u64().unwrap() > 8 * 375 * 3 / 4, "callbacks {}", s["callbacks"]);
    // Late windows are reported, not asserted: this VM stalls threads for several ms at times
    // (see BENCHMARKS.md); they are counted and replaced, never a glitch.
    assert!(s["late_windows"].is_u64());
}
