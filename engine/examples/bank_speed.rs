//! The additive bank's cost on the audio thread (main thread here, as the callback would run
//! it): four voices of 60 harmonics, every harmonic audible (f0 110 -> 112 Hz, amplitudes
//! moving between two frames), 128-frame blocks, 48 kHz.
//!     cargo run --release -p stagebox-engine --example bank_speed
use stagebox_engine::ddsp::{HarmonicFrame, Harmonics};

fn main() {
    let (mut from, mut to) = (HarmonicFrame::silent(60), HarmonicFrame::silent(60));
    let weights: Vec<f32> = (0..60).map(|k| 1.0 / (k + 1) as f32).collect();
    from.set(110.0, 0.5, &weights, 20000.0);
    to.set(112.0, 0.4, &weights, 20000.0);
    let mut voices: Vec<Harmonics> = (0..4).map(|_| Harmonics::new(48000.0, 20000.0)).collect();
    let mut out = vec![0.0f32; 128];
    let blocks = 20000;
    let start = std::time::Instant::now();
    for _ in 0..blocks {
        for bank in &mut voices {
            bank.add(&from, &to, 1.0, &mut out);
        }
    }
    let block_us = start.elapsed().as_secs_f64() * 1e6 / blocks as f64;
    let period_us = 128.0 / 48000.0 * 1e6;
    println!(
        "4 voices x 60 harmonics, 128 frames: {block_us:.1} us a block ({:.1}% of the {period_us:.0}-us period; output sum {})",
        100.0 * block_us / period_us,
        out.iter().sum::<f32>()
    );
}
