//! `stagebox bench` (main thread runs the engine offline, as the audio thread would): callback
//! CPU time per block at several block sizes, and offline render speed.

use std::path::PathBuf;
use std::process::ExitCode;

use stagebox_engine::audio_file::Audio;
use stagebox_engine::backend::offline::{self, RenderOptions};
use stagebox_engine::graph::CompileMode;
use stagebox_engine::stats::Summary;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Patch to measure.
    #[arg(long, default_value = "patches/default.toml")]
    pub patch: PathBuf,
    /// Block sizes in frames.
    #[arg(long, value_delimiter = ',', default_value = "64,128,256")]
    pub blocks: Vec<usize>,
    /// Seconds of audio processed per block size.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 48000)]
    pub sample_rate: u32,
}

pub fn bench(a: BenchArgs) -> anyhow::Result<ExitCode> {
    let registry = crate::registry();
    let Some(patch) = crate::load_or_report(&a.patch, &registry) else {
        return Ok(ExitCode::FAILURE);
    };
    let probe = patch.check(&registry, a.sample_rate as f32).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ch = probe.input_channels().max(1);
    drop(probe);
    // Deterministic noise input at -12 dBFS peak.
    let frames = (a.seconds * a.sample_rate as f64) as usize;
    let mut seed = 0x1234_5678u32;
    let samples = (0..frames * ch)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed as f32 / u32::MAX as f32 * 2.0 - 1.0) * 0.25
        })
        .collect();
    let input = Audio {
        sample_rate: a.sample_rate,
        channels: ch,
        samples,
        wav_format: None,
    };
    println!(
        "patch {} at {} Hz, {:.0} s of audio per block size",
        a.patch.display(),
        a.sample_rate,
        a.seconds
    );
    println!("Callback time: the graph compiled as for a live audio thread (model nodes hand windows to their");
    println!("worker and never wait). Render speed: an offline render, which waits for every model result.");
    println!();
    println!("| block (frames) | budget (us) | median (us) | p99 (us) | max (us) | mean (us) | render speed (x real time) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &bs in &a.blocks {
        let live = RenderOptions {
            sample_rate: a.sample_rate,
            block_size: bs,
            keep_timings: true,
            mode: CompileMode::Live,
            ..Default::default()
        };
        let r = offline::render(&patch.graph, &registry, Some(&input), &live, |_, _| {}).map_err(|e| anyhow::anyhow!("{e}"))?;
        let s = Summary::from_ns(&r.timings_ns);
        let budget = bs as f64 / a.sample_rate as f64 * 1e6;
        let off = RenderOptions {
            sample_rate: a.sample_rate,
            block_size: bs,
            ..Default::default()
        };
        let ro = offline::render(&patch.graph, &registry, Some(&input), &off, |_, _| {}).map_err(|e| anyhow::anyhow!("{e}"))?;
        let speed = ro.audio.duration_secs() / ro.wall_secs;
        println!(
            "| {bs} | {budget:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {speed:.0} |",
            s.median_us, s.p99_us, s.max_us, s.mean_us
        );
        if r.alloc_violations > 0 {
            println!("(!) {} allocations inside process calls", r.alloc_violations);
        }
    }
    Ok(ExitCode::SUCCESS)
}
