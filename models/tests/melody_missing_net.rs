//! A melody node whose pitch network is missing or damaged still transcribes, on YIN alone:
//! the patch builds, the render runs, and the notes are those of `attack_net = false`, to the
//! sample (a separate test binary: it points STAGEBOX_MODELS at its own folders).

use std::path::Path;

use stagebox_engine::backend::offline::{render, RenderOptions};
use stagebox_engine::msg::FromRt;
use stagebox_engine::{Connection, GraphDesc, NodeDesc, ParamValue, PortRef, Registry};

fn notes(models: &Path, attack_net: bool) -> Vec<(u64, u8)> {
    std::env::set_var("STAGEBOX_MODELS", models);
    let mut reg = Registry::builtin();
    stagebox_models::register(&mut reg);
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let clip = stagebox_engine::audio_file::read(&data.join("guitar_line.wav")).unwrap();
    let desc = GraphDesc {
        nodes: vec![
            NodeDesc {
                id: "in".into(),
                kind: "input".into(),
                params: [("channels".to_string(), ParamValue::Int(1))].into_iter().collect(),
            },
            NodeDesc {
                id: "mel".into(),
                kind: "melody".into(),
                params: [("attack_net".to_string(), ParamValue::Bool(attack_net))].into_iter().collect(),
            },
        ],
        connections: vec![Connection {
            from: PortRef::parse("in"),
            to: PortRef::parse("mel"),
        }],
        base_dir: std::env::temp_dir(),
    };
    let r = render(&desc, &reg, Some(&clip), &RenderOptions::default(), |_, _| {}).expect("the patch renders without its network");
    r.messages
        .iter()
        .filter_map(|m| match *m {
            FromRt::Midi { msg, sample_time, .. } if msg[0] & 0xf0 == 0x90 && msg[2] > 0 => Some((sample_time, msg[1])),
            _ => None,
        })
        .collect()
}

#[test]
fn a_missing_or_damaged_network_leaves_yin_alone() {
    let truth = [64u8, 67, 71, 69, 69, 74, 72, 62, 60];
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR"));
    let yin_alone = notes(shipped, false);
    assert_eq!(yin_alone.iter().map(|n| n.1).collect::<Vec<_>>(), truth);
    // With the network the same notes leave sooner (so the comparisons below can tell).
    let with_net = notes(shipped, true);
    assert!(
        with_net.iter().zip(&yin_alone).filter(|(a, b)| a.0 < b.0).count() >= 5,
        "{with_net:?} {yin_alone:?}"
    );
    let tmp = std::env::temp_dir().join(format!("stagebox-melody-net-{}", std::process::id()));
    // No melody_net folder at all.
    std::fs::create_dir_all(tmp.join("empty")).unwrap();
    assert_eq!(notes(&tmp.join("empty"), true), yin_alone);
    // A net.bin that is not the one its manifest describes (sha256).
    let damaged = tmp.join("damaged/melody_net");
    std::fs::create_dir_all(&damaged).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("melody_net");
    std::fs::copy(src.join("manifest.toml"), damaged.join("manifest.toml")).unwrap();
    let mut net = std::fs::read(src.join("net.bin")).unwrap();
    net.truncate(net.len() / 2);
    std::fs::write(damaged.join("net.bin"), net).unwrap();
    assert_eq!(notes(&tmp.join("damaged"), true), yin_alone);
    std::fs::remove_dir_all(&tmp).ok();
}
