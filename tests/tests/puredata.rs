//! The Pure Data example (examples/puredata/stagebox-control.pd), headless (`pd -nogui`,
//! Debian puredata-core, installed by scripts/setup.sh) against a running `stagebox run`: it
//! sets a parameter and receives the notes of a clip as they are played.

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use rosc::{OscMessage, OscPacket, OscType};
use stagebox_tests::*;

#[test]
fn the_pure_data_example_sets_a_gain_and_prints_the_notes() {
    let have_pd = Command::new("sh")
        .args(["-c", "command -v pd"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(have_pd, "Pure Data is missing: scripts/setup.sh installs Debian puredata-core");
    let d = tmp("puredata");
    let line = [(1.2, 1.6, 69u8), (1.7, 2.1, 72), (2.2, 2.7, 76)];
    let wav = d.join("line.wav");
    write_flute_wav(&wav, &line, 3.5);
    let patch = d.join("p.toml");
    std::fs::write(
        &patch,
        format!(
            r#"
[[node]]
id = "clip"
type = "player"
path = "{}"
[[node]]
id = "line"
type = "melody"
[[node]]
id = "vol"
type = "gain"
channels = 1
[[node]]
id = "out"
type = "output"
channels = 1
[[connect]]
from = "clip"
to = "line"
[[connect]]
from = "clip"
to = "vol"
[[connect]]
from = "vol"
to = "out"
"#,
            wav.display()
        ),
    )
    .unwrap();
    let (mut run, rx) = spawn_logged(
        stagebox()
            .args([
                "run",
                "--backend",
                "none",
                "--no-watch",
                "--osc-port",
                "0",
                "--no-oscquery",
                "--duration",
                "5",
                "--patch",
            ])
            .arg(&patch),
    );
    let port = log_ports(&rx, &["udp://"])[0];
    let reply = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let pd = Command::new("pd")
        .args(["-nogui", "-stderr", "-noaudio", "-nomidi", "-open"])
        .arg(root().join("examples/puredata/stagebox-control.pd"))
        .args([
            "-send",
            &format!("stagebox-port {port}"),
            "-send",
            &format!("stagebox-reply {reply}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pd_pid = pd.id();
    std::thread::sleep(Duration::from_millis(3500));
    // The gain the patch set, read back over OSC.
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let q = rosc::encoder::encode(&OscPacket::Message(OscMessage {
        addr: "/stagebox/node/vol/gain_db".into(),
        args: vec![],
    }))
    .unwrap();
    c.send_to(&q, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 1024];
    let (n, _) = c.recv_from(&mut buf).unwrap();
    let (_, got) = rosc::decoder::decode_udp(&buf[..n]).unwrap();
    let _ = Command::new("kill").arg(pd_pid.to_string()).status();
    let out = pd.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let _ = run.wait();
    assert_eq!(
        got,
        OscPacket::Message(OscMessage {
            addr: "/stagebox/node/vol/gain_db".into(),
            args: vec![OscType::Float(-6.0)]
        }),
        "pd set the gain"
    );
    assert!(text.contains("stagebox-done: /stagebox/notify"), "{text}");
    // "stagebox-note: line 1 69 87 1.194 1.217" (node channel key velocity onset emitted): the
    // notes, in order.
    let keys: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("stagebox-note: line"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 7 && f[4] != "0").then(|| f[3].to_string())
        })
        .collect();
    assert_eq!(keys, vec!["69", "72", "76"], "{text}");
}
