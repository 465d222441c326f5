//! A melody node whose pitch network is missing or damaged still transcribes, on YIN alone:
//! the patch builds, the render runs, and the notes are those of `attack_net = false`, to the
//! sample (a separate test binary: it points STAGEBOX_MODELS at its own folders).

use std::path::Path;

mod common;

/// Note-ons (emitted at sample, key) of the guitar line, the models found in `models`.
fn notes(models: &Path, attack_net: bool) -> Vec<(u64, u8)> {
    std::env::set_var("STAGEBOX_MODELS", models);
    let (ons, _) = common::melody_notes("guitar_line", attack_net);
    ons.into_iter()
        .map(|(_, emitted, key)| ((emitted * 48000.0).round() as u64, key))
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
