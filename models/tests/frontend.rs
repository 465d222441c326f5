//! The incremental front end (models/src/hcqt.rs) against the original model's own front end:
//! models/tests/data/bp_frontend_ref.bin is what nmp.onnx computes inside for `signal()`
//! (written by models/basic_pitch_stream/make.py). No ONNX Runtime needed.

use std::path::Path;

use stagebox_models::hcqt::*;

fn consts() -> FrontEndConsts {
    FrontEndConsts::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("basic_pitch_stream/frontend.bin")).unwrap()
}

/// The test signal of make.py: 2 s at 22050 Hz (43844 samples).
fn signal() -> Vec<f32> {
    (0..43844)
        .map(|i| {
            let t = i as f64 / 22050.0;
            let tau = 2.0 * std::f64::consts::PI;
            let late = if t > 0.7 { 1.0 } else { 0.0 };
            (0.2 * (tau * 55.0 * t).sin()
                + 0.2 * (tau * 196.0 * t).sin()
                + 0.2 * (tau * 523.25 * t).sin() * late
                + 0.1 * (tau * 2093.0 * t).sin()
                + 0.05 * (tau * 6000.0 * t).sin()) as f32
        })
        .collect()
}

fn reference() -> (Vec<f32>, Vec<f32>) {
    let b = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bp_frontend_ref.bin")).unwrap();
    let f: Vec<f32> = b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(f.len(), 172 * BINS + 5 * FRAME_LEN);
    (f[..172 * BINS].to_vec(), f[172 * BINS..].to_vec())
}

fn streamed(chunk: usize) -> Vec<f32> {
    let mut h = Hcqt::new(consts());
    for c in signal().chunks(chunk) {
        h.push(c);
    }
    let mut db = vec![0.0; 172 * BINS];
    h.db_frames(0, 172, &mut db);
    db
}

#[test]
fn interior_frames_equal_the_original_front_end() {
    let (want, _) = reference();
    let got = streamed(1000);
    let mut checked = 0;
    let mut worst: f32 = 0.0;
    for k in 0..OCTAVES {
        for f in batch_interior(43844, 172, k) {
            let bins: Vec<usize> = (0..BPO)
                .filter_map(|b| ((OCTAVES - 1 - k) * BPO + b).checked_sub(OCTAVES * BPO - BINS))
                .collect();
            // Magnitudes (not powers): float rounding in a 256-tap sum is absolute, so weak bins
            // are compared to the frame's loudest.
            let p = |d: f32| 10f64.powf(d as f64 / 20.0);
            let loudest = (0..BINS).map(|i| p(want[f * BINS + i])).fold(0.0, f64::max);
            for &i in &bins {
                let (g, w) = (got[f * BINS + i], want[f * BINS + i]);
                // To 0.05% (0.005 dB), or to 1e-4 of the frame's loudest bin (-80 dB): the sums
                // run in another order, and float rounding of that size shows in weak bins.
                let err = (p(g) - p(w)).abs();
                assert!(
                    err <= 5e-4 * p(w) + 1e-4 * loudest,
                    "octave {k} frame {f} bin {i}: {g} dB, the original {w} dB (loudest {:.1} dB)",
                    20.0 * loudest.log10()
                );
                worst = worst.max(if w > -40.0 { (g - w).abs() } else { 0.0 });
                checked += 1;
            }
        }
    }
    // Every octave but the lowest (whose kernel spans more than the 2 s window) is checked.
    assert!(checked > 30_000, "only {checked} values compared");
    println!("{checked} values compared, largest difference above -40 dB: {worst} dB");
}

#[test]
fn normalisation_and_harmonic_stacking_equal_the_original() {
    let (db, want) = reference();
    let c = consts();
    let lo = db.iter().cloned().fold(f32::INFINITY, f32::min);
    let hi = db.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut out = vec![0.0; FRAME_LEN];
    for (i, f) in (80..85).enumerate() {
        stack(&c, &db[f * BINS..(f + 1) * BINS], lo, hi, &mut out);
        for (j, (&g, &w)) in out.iter().zip(&want[i * FRAME_LEN..(i + 1) * FRAME_LEN]).enumerate() {
            assert!(
                (g - w).abs() < 1e-4,
                "frame {f} value {j} (bin {}, harmonic {}): {g} vs {w}",
                j / HARMONICS,
                j % HARMONICS
            );
        }
    }
}

#[test]
fn the_result_does_not_depend_on_how_the_input_is_cut() {
    let a = streamed(256);
    let b = streamed(4096);
    let c = streamed(43844);
    assert_eq!(a, b);
    assert_eq!(a, c);
}

#[test]
fn damaged_constants_are_refused() {
    let e = FrontEndConsts::from_bytes(&[0u8; 100]).err().unwrap();
    assert!(e.contains("100 bytes"), "{e}");
}
