//! Helpers for the integration tests: the real `stagebox` binary (built once per test run),
//! temporary folders, WAV helpers, and a named dummy JACK server started and stopped by tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Path of the `stagebox` binary, built (or brought up to date) on first use.
pub fn bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("STAGEBOX_BIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-q", "-p", "stagebox"])
            .current_dir(root())
            .status()
            .expect("running cargo build");
        assert!(st.success(), "building stagebox failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root().join("target"));
        target.join("debug").join("stagebox")
    })
    .clone()
}

/// A `stagebox` command run from the workspace root.
pub fn stagebox() -> Command {
    let mut c = Command::new(bin());
    c.current_dir(root());
    c
}

/// `stagebox run` of `patch` for `secs` on the paced backend (real time without a sound card),
/// OSC on a free port (read it with `log_ports`), takes written under `takes`.
pub fn paced_run(patch: &Path, secs: f64, takes: &Path) -> Command {
    let mut c = stagebox();
    c.args(["run", "--backend", "none", "--no-watch", "--osc-port", "0", "--duration"])
        .arg(secs.to_string())
        .arg("--patch")
        .arg(patch)
        .arg("--takes-dir")
        .arg(takes);
    c
}

/// The JSON an HTTP GET of `path` on loopback `port` answers (curl, 5 s at most).
pub fn curl_json(port: u16, path: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A fresh temporary folder for one test.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stagebox-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes interleaved i16 samples as a WAV.
pub fn write_wav_i16(path: &Path, sr: u32, channels: u16, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: sr,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// A deterministic stereo test clip: two sines and noise, in i16.
pub fn test_clip(frames: usize, sr: u32) -> Vec<i16> {
    let mut seed = 99u32;
    let mut v = Vec::with_capacity(frames * 2);
    for t in 0..frames {
        for c in 0..2 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let x = t as f64 / sr as f64;
            let y = 0.4 * (2.0 * std::f64::consts::PI * (261.63 * (c + 1) as f64) * x).sin() + 0.05 * (seed as f64 / u32::MAX as f64 - 0.5);
            v.push((y * 32767.0) as i16);
        }
    }
    v
}

/// A dummy-driver JACK server with its own name, stopped on drop.
pub struct JackServer {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl JackServer {
    /// Starts `jackd -n NAME -d dummy -r RATE -p PERIOD` and waits for its socket.
    pub fn start(rate: u32, period: u32) -> JackServer {
        clean_stale_jack_state();
        Self::start_named(&format!("stagebox-test-{}", std::process::id()), rate, period)
    }

    /// As `start`, with a given server name, and without clearing leftovers of dead servers
    /// (a client still running keeps its view of them; see `clean_stale_jack_state`).
    pub fn start_named(name: &str, rate: u32, period: u32) -> JackServer {
        let name = name.to_string();
        let log = std::env::temp_dir().join(format!("{name}.jackd.log"));
        let child = Command::new("jackd")
            .args(["-n", &name, "-d", "dummy", "-r", &rate.to_string(), "-p", &period.to_string()])
            .env("JACK_NO_AUDIO_RESERVATION", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("jackd must be installed (Debian package jackd2; the README's test command installs it)");
        let uid = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap_or(0);
        let sock = PathBuf::from(format!("/dev/shm/jack_{name}_{uid}_0"));
        let t0 = Instant::now();
        while !sock.exists() {
            assert!(t0.elapsed() < Duration::from_secs(10), "jackd did not start; see {}", log.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        JackServer { name, child, log }
    }

    /// What the server printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl JackServer {
    /// Stops the server (SIGTERM, then SIGKILL after 3 s) and waits for it.
    pub fn kill(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for JackServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// JACK allows a few servers at a time and counts those killed without cleaning up; when no
/// jackd runs on this machine, their leftovers in /dev/shm are removed.
fn clean_stale_jack_state() {
    let running = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten().any(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .map(|c| c.trim() == "jackd")
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false);
    if running {
        return;
    }
    if let Ok(d) = std::fs::read_dir("/dev/shm") {
        for e in d.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.starts_with("jack") {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
}

/// Reads a stats JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A monophonic line of flute-like tones (soft attack, vibrato, breath noise), mono f64.
pub fn flute_line(sr: u32, notes: &[(f64, f64, u8)], secs: f64) -> Vec<f64> {
    let n = (secs * sr as f64) as usize;
    let mut x = vec![0.0f64; n];
    let mut seed = 7u32;
    for &(on, off, k) in notes {
        let f = 440.0 * 2f64.powf((k as f64 - 69.0) / 12.0);
        let mut ph = 0.0;
        for t in (on * sr as f64) as usize..((off * sr as f64) as usize).min(n) {
            let age = t as f64 / sr as f64 - on;
            let env = (age / 0.03).min(1.0) * ((off - on - age) / 0.02).clamp(0.0, 1.0);
            ph += f * (1.0 + 0.004 * (2.0 * std::f64::consts::PI * 5.0 * age).sin()) / sr as f64;
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let breath = (seed as f64 / u32::MAX as f64 - 0.5) * 0.03;
            x[t] += env * (0.5 * (2.0 * std::f64::consts::PI * ph).sin() + 0.1 * (4.0 * std::f64::consts::PI * ph).sin() + breath);
        }
    }
    x
}

/// Writes `flute_line` at 48 kHz as a mono 16-bit WAV at `path`.
pub fn write_flute_wav(path: &Path, notes: &[(f64, f64, u8)], secs: f64) {
    let clip: Vec<i16> = flute_line(48000, notes, secs).iter().map(|v| (v * 20000.0) as i16).collect();
    write_wav_i16(path, 48000, 1, &clip);
}

/// Note-ons (seconds, key) in the first track of a Standard MIDI File written at 120 BPM (as
/// `stagebox render --midi-out` writes them).
pub fn smf_note_ons(path: &Path) -> Vec<(f64, u8)> {
    let bytes = std::fs::read(path).unwrap();
    let smf = midly::Smf::parse(&bytes).unwrap();
    let midly::Timing::Metrical(tpb) = smf.header.timing else {
        panic!("metrical timing expected")
    };
    let mut t = 0u64;
    let mut ons = Vec::new();
    for e in &smf.tracks[0] {
        t += e.delta.as_int() as u64;
        if let midly::TrackEventKind::Midi {
            message: midly::MidiMessage::NoteOn { key, vel },
            ..
        } = e.kind
        {
            if vel.as_int() > 0 {
                ons.push((t as f64 / (tpb.as_int() as f64 * 2.0), key.as_int()));
            }
        }
    }
    ons
}

/// Spawns `cmd` (a `stagebox run`) with its standard error read line by line on a thread.
pub fn spawn_logged(cmd: &mut Command) -> (Child, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Reads log lines until each tag (`"udp://"`, `"OSCQuery on http://"`) has been followed by
/// `host:port`; returns the ports in the tags' order. Waits at most 20 s.
pub fn log_ports(log: &std::sync::mpsc::Receiver<String>, tags: &[&str]) -> Vec<u16> {
    let mut ports: Vec<Option<u16>> = vec![None; tags.len()];
    let t0 = Instant::now();
    while ports.iter().any(Option::is_none) {
        let line = log
            .recv_timeout(Duration::from_secs(20))
            .expect("stagebox said nothing about its ports");
        for (p, tag) in ports.iter_mut().zip(tags) {
            if let Some(i) = line.find(tag) {
                let addr = line[i + tag.len()..].split(['/', ' ']).next().unwrap_or_default();
                *p = p.or(addr.rsplit(':').next().and_then(|x| x.parse().ok()));
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "no {tags:?} in the log");
    }
    ports.into_iter().map(Option::unwrap).collect()
}

/// Loopback OSC clients for the tests.
pub mod osc {
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    use rosc::{OscMessage, OscPacket, OscType};

    /// A UDP socket on 127.0.0.1 with a 100 ms read timeout.
    pub fn client() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        s
    }

    pub fn msg(addr: &str, args: Vec<OscType>) -> Vec<u8> {
        rosc::encoder::encode(&OscPacket::Message(OscMessage { addr: addr.into(), args })).unwrap()
    }

    pub fn send(s: &UdpSocket, port: u16, addr: &str, args: Vec<OscType>) {
        s.send_to(&msg(addr, args), ("127.0.0.1", port)).unwrap();
    }

    pub fn flatten(p: OscPacket, out: &mut Vec<OscMessage>) {
        match p {
            OscPacket::Message(m) => out.push(m),
            OscPacket::Bundle(b) => b.content.into_iter().for_each(|p| flatten(p, out)),
        }
    }

    /// Messages received within `secs`, flattened out of bundles.
    pub fn recv_for(s: &UdpSocket, secs: f64) -> Vec<OscMessage> {
        let mut out = Vec::new();
        let t0 = Instant::now();
        let mut buf = [0u8; 65536];
        while t0.elapsed().as_secs_f64() < secs {
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                if let Ok((_, p)) = rosc::decoder::decode_udp(&buf[..n]) {
                    flatten(p, &mut out);
                }
            }
        }
        out
    }

    /// Waits (5 s at most) for a message to `addr`; other messages are kept in `seen`.
    pub fn expect(s: &UdpSocket, addr: &str, seen: &mut Vec<OscMessage>) -> OscMessage {
        let t0 = Instant::now();
        let mut buf = [0u8; 65536];
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                let mut v = Vec::new();
                if let Ok((_, p)) = rosc::decoder::decode_udp(&buf[..n]) {
                    flatten(p, &mut v);
                }
                for m in v {
                    if m.addr == addr {
                        return m;
                    }
                    seen.push(m);
                }
            }
        }
        panic!("no {addr} within 5 s; got {:?}", seen.iter().map(|m| &m.addr).collect::<Vec<_>>());
    }

    /// The rms (dB) of each `/stagebox/meter` report from the meter node `node`.
    pub fn meter_rms(ms: &[OscMessage], node: &str) -> Vec<f32> {
        ms.iter()
            .filter(|m| m.addr == "/stagebox/meter" && m.args[0] == OscType::String(node.into()))
            .filter_map(|m| if let OscType::Float(r) = m.args[2] { Some(r) } else { None })
            .collect()
    }
}

/// A MIDI keyboard of the tests' own: a JACK client that plays notes at known frames and hears
/// what comes back (tests/tests/jack_native.rs, jack_midir.rs).
pub mod keyboard {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A patch that echoes the keyboard: `midi_in -> midi_out` (and a quiet tone to the output).
    pub const MIDI_ECHO: &str = r#"
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
"#;

    /// What the test's JACK client saw: (frame time sent, note) and (frame time heard, note).
    #[derive(Default, Clone)]
    pub struct Seen {
        pub sent: Vec<(u64, u8)>,
        pub heard: Vec<(u64, u8)>,
        pub clock_ticks: Vec<u64>,
    }

    /// A JACK client of the test's own on `server`: a note-on every 5th cycle into `into`, each at
    /// another frame of its cycle, while it listens to `notes_from` (and `clock_from`) for 6 s.
    pub fn play_keyboard(server: &str, into: &str, notes_from: &str, clock_from: Option<&str>) -> Seen {
        std::env::set_var("JACK_DEFAULT_SERVER", server);
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
            if cycle > 50 && cycle.is_multiple_of(5) && seen.sent.len() < 120 {
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
        c.connect_ports_by_name("keyboard:out", into).unwrap();
        c.connect_ports_by_name(notes_from, "keyboard:in").unwrap();
        if let Some(clock) = clock_from {
            c.connect_ports_by_name(clock, "keyboard:clock").unwrap();
        }
        std::thread::sleep(Duration::from_secs(6));
        drop(active.deactivate());
        let seen = seen.lock().unwrap().clone();
        seen
    }

    /// Frames from each note's send to its echo (notes repeat only 100 sends apart).
    pub fn echo_delays(seen: &Seen) -> Vec<u64> {
        let mut deltas = Vec::new();
        for &(t_heard, note) in &seen.heard {
            if let Some(&(t_sent, _)) = seen.sent.iter().rev().find(|(t, k)| *k == note && *t <= t_heard) {
                deltas.push(t_heard - t_sent);
            }
        }
        deltas
    }
}
