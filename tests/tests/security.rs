//! The control surfaces against a careful attacker on loopback (docs/security.md): files read
//! and written only where they may be, every request bounded in size, time and threads, web
//! origins checked, guarded commands guarded. Each test is one finding of the security review.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscType};
use stagebox_tests::osc::{client, send};
use stagebox_tests::*;

const PATCH: &str = r#"
[[node]]
id = "tone"
type = "osc"
[[node]]
id = "rec"
type = "recorder"
path = "take.wav"
channels = 1
[[node]]
id = "out"
type = "output"
channels = 1
[[connect]]
from = "tone"
to = "rec"
[[connect]]
from = "tone"
to = "out"
"#;

/// A running engine: its patch in `dir/set`, takes in `dir/takes`.
struct Rig {
    child: Child,
    port: u16,
    query_port: u16,
    dir: PathBuf,
}

impl Rig {
    fn start(name: &str, extra: &[&str]) -> Rig {
        let dir = tmp(name);
        std::fs::create_dir_all(dir.join("set")).unwrap();
        std::fs::write(dir.join("set/p.toml"), PATCH).unwrap();
        let (child, log) = spawn_logged(
            stagebox()
                .args([
                    "run",
                    "--backend",
                    "none",
                    "--no-watch",
                    "--osc-port",
                    "0",
                    "--duration",
                    "60",
                    "--patch",
                ])
                .arg(dir.join("set/p.toml"))
                .arg("--takes-dir")
                .arg(dir.join("takes"))
                .args(extra),
        );
        let ports = log_ports(&log, &["udp://", "OSCQuery on http://"]);
        std::thread::spawn(move || for _ in log.iter() {});
        Rig {
            child,
            port: ports[0],
            query_port: ports[1],
            dir,
        }
    }

    /// Sends a command and waits for its `/stagebox/done` or `/stagebox/error` (and how long it took).
    fn ask(&self, addr: &str, args: Vec<OscType>) -> (OscMessage, Duration) {
        let c = client();
        let t0 = Instant::now();
        send(&c, self.port, addr, args);
        let mut buf = [0u8; 65536];
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok((n, _)) = c.recv_from(&mut buf) {
                let mut v = Vec::new();
                stagebox_tests::osc::flatten(rosc::decoder::decode_udp(&buf[..n]).unwrap().1, &mut v);
                if let Some(m) = v.into_iter().find(|m| m.addr == "/stagebox/error" || m.addr == "/stagebox/done") {
                    return (m, t0.elapsed());
                }
            }
        }
        panic!("no answer to {addr} within 5 s");
    }

    fn proc_status(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = s.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn threads(&self) -> u64 {
        self.proc_status("Threads:")
    }

    fn still_answers(&self) {
        let c = client();
        send(&c, self.port, "/stagebox/status", vec![]);
        let mut seen = Vec::new();
        stagebox_tests::osc::expect(&c, "/stagebox/status.reply", &mut seen);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(m: &OscMessage) -> String {
    m.args
        .iter()
        .filter_map(|a| if let OscType::String(s) = a { Some(s.clone()) } else { None })
        .collect::<Vec<_>>()
        .join(" ")
}

fn load(r: &Rig, path: &str) -> (String, Duration) {
    let (m, took) = r.ask("/stagebox/patch/load", vec![OscType::String(path.into())]);
    assert_eq!(m.addr, "/stagebox/error", "{path} was loaded: {m:?}");
    (text(&m), took)
}

#[test]
fn patch_load_reads_only_patches_in_the_patch_folders_and_quotes_nothing() {
    let outside = tmp("sec-read-elsewhere");
    std::fs::write(outside.join("valid.toml"), PATCH.replace("take.wav", "b.wav")).unwrap();
    let valid = outside.join("valid.toml").display().to_string();
    let missing = outside.join("missing.toml").display().to_string();
    let r = Rig::start("sec-read", &[]);
    for path in [
        "/etc/passwd",
        "/proc/self/environ",
        "../../../../../../etc/hostname",
        &valid,
        &missing,
    ] {
        let (why, took) = load(&r, path);
        assert!(took < Duration::from_secs(1), "{path} answered after {took:?}");
        assert!(why.contains(&format!("`{path}` is not in a patch folder")), "{path}: {why}");
        assert!(
            !why.contains("root:") && !why.contains("PATH=") && !why.contains("[[node]]"),
            "{why}"
        );
    }
    // Whether an outside file exists is not told.
    let (a, _) = load(&r, &valid);
    let (b, _) = load(&r, &missing);
    assert_eq!(a.replace("valid", "X"), b.replace("missing", "X"));
    // A folder named with --patch-dir may be loaded from.
    drop(r);
    let r = Rig::start("sec-read-dir", &["--patch-dir", &outside.display().to_string()]);
    let (m, _) = r.ask("/stagebox/patch/load", vec![OscType::String(valid.clone())]);
    assert_eq!(m.addr, "/stagebox/done", "{m:?}");
}

#[test]
fn a_fifo_a_device_or_a_huge_file_is_refused_at_once_and_memory_stays_flat() {
    let r = Rig::start("sec-fifo", &[]);
    let set = r.dir.join("set");
    let fifo = set.join("fifo.toml");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    std::os::unix::fs::symlink("/dev/zero", set.join("zero.toml")).unwrap();
    let big = format!("# {}\n{PATCH}", "x".repeat(2 << 20));
    std::fs::write(set.join("big.toml"), big).unwrap();
    let rss_before = r.proc_status("VmRSS:");
    let (why, took) = load(&r, "fifo.toml");
    assert!(
        took < Duration::from_secs(1) && why.contains("not a regular file"),
        "{why} after {took:?}"
    );
    r.still_answers();
    let (why, took) = load(&r, "/dev/zero");
    assert!(took < Duration::from_secs(1) && why.contains("not in a patch folder"), "{why}");
    let (why, _) = load(&r, "zero.toml");
    assert!(why.contains("not in a patch folder"), "a link out of the folder: {why}");
    let (why, _) = load(&r, "big.toml");
    assert!(why.contains("over the 1048576"), "{why}");
    let grown_kb = r.proc_status("VmRSS:").saturating_sub(rss_before);
    assert!(grown_kb < 8 * 1024, "the engine grew {grown_kb} kB");
}

#[test]
fn recorders_write_only_inside_the_takes_folder_and_a_refusal_is_answered() {
    let r = Rig::start("sec-write", &[]);
    let takes = r.dir.join("takes");
    assert!(takes.join("take.wav").exists(), "the patch's take goes into --takes-dir");
    let escape = r.dir.join("escaped.wav");
    for bad in [escape.display().to_string(), "../escaped.wav".into(), "a/../../escaped.wav".into()] {
        let (m, _) = r.ask("/stagebox/node/rec/path", vec![OscType::String(bad.clone())]);
        assert_eq!(m.addr, "/stagebox/error", "{bad}: {m:?}");
        assert!(text(&m).contains("not a path inside the takes folder"), "{bad}: {}", text(&m));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!escape.exists(), "a file was created outside the takes folder");
    let (m, _) = r.ask("/stagebox/node/rec/path", vec![OscType::String("set2/new.wav".into())]);
    assert_eq!(m.addr, "/stagebox/done", "{m:?}");
    assert!(takes.join("set2/new.wav").exists());
    // A patch from the patch folder whose recorder points outside: refused, nothing created.
    std::fs::write(r.dir.join("set/out.toml"), PATCH.replace("take.wav", &escape.display().to_string())).unwrap();
    let (why, _) = load(&r, "out.toml");
    assert!(why.contains("not a path inside the takes folder"), "{why}");
    assert!(!escape.exists());
}

/// Opens `n` connections to the OSCQuery port, sends `head` on each, and closes them.
fn half_sent(port: u16, n: usize, head: &[u8]) {
    let conns: Vec<TcpStream> = (0..n)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .map(|mut s| {
            let _ = s.write_all(head);
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    drop(conns);
}

#[test]
fn half_sent_http_requests_leave_no_threads_behind() {
    let r = Rig::start("sec-threads", &["--osc-tcp-idle-s", "1"]);
    std::thread::sleep(Duration::from_millis(500));
    let baseline = r.threads();
    half_sent(r.query_port, 100, b"GET / HTTP/1.1\nHost: 127.0.0.1\n");
    half_sent(r.query_port, 100, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    let t0 = Instant::now();
    while r.threads() > baseline {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{} threads, baseline {baseline}",
            r.threads()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // LF-only line ends are still answered.
    let mut s = TcpStream::connect(("127.0.0.1", r.query_port)).unwrap();
    s.write_all(b"GET /?HOST_INFO HTTP/1.1\nHost: 127.0.0.1\n\n").unwrap();
    let mut answer = String::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("OSC_PORT"), "{answer}");
    // OSC over TCP: silent connections are closed after --osc-tcp-idle-s, and are capped.
    let held: Vec<TcpStream> = (0..100).filter_map(|_| TcpStream::connect(("127.0.0.1", r.port)).ok()).collect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(r.threads() <= baseline + 64 + 2, "{} threads for 100 TCP clients", r.threads());
    let t0 = Instant::now();
    while r.threads() > baseline {
        assert!(t0.elapsed() < Duration::from_secs(10), "idle TCP connections still held");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(held);
    r.still_answers();
}

/// The status line and headers of an answer to `request`.
fn http(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

#[test]
fn oscquery_answers_this_machine_and_allowed_origins_only() {
    let r = Rig::start("sec-origin", &["--oscquery-allow-origin", "http://td.example:9980"]);
    let p = r.query_port;
    let get = |extra: &str| http(p, &format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\n{extra}\r\n"));
    let plain = get("");
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    assert!(!plain.contains("Access-Control-Allow-Origin"), "{plain}");
    let local = get("Origin: http://localhost:3000\r\n");
    assert!(local.contains("Access-Control-Allow-Origin: http://localhost:3000\r\n"), "{local}");
    let listed = get("Origin: http://td.example:9980\r\n");
    assert!(
        listed.contains("Access-Control-Allow-Origin: http://td.example:9980\r\n"),
        "{listed}"
    );
    let foreign = get("Origin: https://evil.example\r\n");
    assert!(
        foreign.starts_with("HTTP/1.1 403") && !foreign.contains("Access-Control-Allow-Origin"),
        "{foreign}"
    );
    assert!(!foreign.contains("CONTENTS"), "{foreign}");
    let rebound = http(p, "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n");
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    // A WebSocket handshake from a foreign page is refused; from this machine's, accepted.
    let ws = |origin: &str| {
        let req = tungstenite::http::Request::builder()
            .uri(format!("ws://127.0.0.1:{p}/"))
            .header("Host", format!("127.0.0.1:{p}"))
            .header("Origin", origin)
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", tungstenite::handshake::client::generate_key())
            .body(())
            .unwrap();
        tungstenite::client::client(req, TcpStream::connect(("127.0.0.1", p)).unwrap()).map(|_| ())
    };
    match ws("https://evil.example") {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => assert_eq!(resp.status(), 403),
        other => panic!(
            "a foreign origin's WebSocket was not refused: {:?}",
            other.map_err(|e| e.to_string())
        ),
    }
    assert!(ws("http://localhost:3000").is_ok());
    // LISTEN with a huge path is refused; a huge frame closes the socket.
    let (mut sock, _) = tungstenite::client::client(format!("ws://127.0.0.1:{p}/"), TcpStream::connect(("127.0.0.1", p)).unwrap()).unwrap();
    let huge = format!(r#"{{"COMMAND": "LISTEN", "DATA": "/{}"}}"#, "a".repeat(100_000));
    let _ = sock.send(tungstenite::Message::Text(huge));
    sock.get_mut().set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let after = sock.read();
    assert!(
        matches!(after, Err(_) | Ok(tungstenite::Message::Close(_))),
        "a 100 kB LISTEN was taken: {after:?}"
    );
    r.still_answers();
}

#[test]
fn guarded_commands_need_the_control_token() {
    let mut r = Rig::start("sec-token", &["--control-token", "correct-horse"]);
    for addr in ["/stagebox/quit", "/stagebox/patch/reload", "/stagebox/learn/save"] {
        let (m, _) = r.ask(addr, vec![]);
        assert_eq!(m.addr, "/stagebox/error", "{addr}: {m:?}");
        assert!(text(&m).contains("control token"), "{}", text(&m));
    }
    let (m, _) = r.ask("/stagebox/quit", vec![OscType::String("wrong-horse".into())]);
    assert_eq!(m.addr, "/stagebox/error");
    r.still_answers();
    let (m, _) = r.ask(
        "/stagebox/patch/load",
        vec![OscType::String("p.toml".into()), OscType::String("correct-horse".into())],
    );
    assert_eq!(m.addr, "/stagebox/done", "{m:?}");
    send(&client(), r.port, "/stagebox/quit", vec![OscType::String("correct-horse".into())]);
    let t0 = Instant::now();
    while r.child.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(5), "quit with the token did not stop the engine");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_warns_when_it_listens_beyond_loopback_without_a_token() {
    let dir = tmp("sec-warn");
    std::fs::write(dir.join("p.toml"), PATCH).unwrap();
    let out = stagebox()
        .args([
            "run",
            "--backend",
            "none",
            "--no-watch",
            "--no-oscquery",
            "--osc-port",
            "0",
            "--osc-bind",
            "0.0.0.0",
        ])
        .args(["--duration", "0.5", "--patch"])
        .arg(dir.join("p.toml"))
        .arg("--takes-dir")
        .arg(dir.join("takes"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("without --control-token"), "{log}");
}
