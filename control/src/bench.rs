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
    /// Also time Basic Pitch on the inference worker's side: the whole model over this many
    /// 2-s windows (the sliding-window baseline), and the streaming transcriber (front end +
    /// CNN on a short context + tracker) over as many seconds of audio per setting (0: skip).
    #[arg(long, default_value_t = 20)]
    pub model_windows: usize,
}

pub fn bench(a: BenchArgs) -> anyhow::Result<ExitCode> {
    let registry = crate::registry();
    let Some(mut patch) = crate::load_or_report(&a.patch, &registry) else {
        return Ok(ExitCode::FAILURE);
    };
    // Recorders write their takes to a scratch folder, not beside the patch.
    let takes = std::env::temp_dir().join(format!("stagebox-bench-takes-{}", std::process::id()));
    patch.graph.takes_dir = Some(takes.clone());
    let _cleanup = RemoveOnDrop(takes);
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
    // Play the audio thread's part: SCHED_FIFO above the inference worker, as JACK's threads are.
    {
        use thread_priority::*;
        let fifo = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
        let p = ThreadPriority::Crossplatform(ThreadPriorityValue::try_from(10u8).unwrap());
        match set_thread_priority_and_policy(thread_native_id(), p, fifo) {
            Ok(()) => println!("(this thread runs at SCHED_FIFO 10, above the inference worker, like an audio thread)"),
            Err(e) => println!("(SCHED_FIFO refused ({e:?}); timings include preemption by the inference worker)"),
        }
    }
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
    if a.model_windows > 0 {
        bench_model(a.model_windows)?;
        bench_pitch_net()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The melody node's pitch network, as the audio thread runs it during an attack (at most once
/// per 4-ms hop): features (three FFTs, six for a network that reads the rise) and the network, per run, and the share of one core if
/// it ran on every hop (it runs only for the 48 ms after an attack).
fn bench_pitch_net() -> anyhow::Result<()> {
    use stagebox_engine::pitchnet::{NetRunner, PitchNet, HISTORY, RISE_BACK};
    let path = stagebox_models::find_model("melody_net")?.verify()?;
    let mut runner = NetRunner::new(std::sync::Arc::new(PitchNet::load(&path).map_err(|e| anyhow::anyhow!(e))?));
    let n = HISTORY + RISE_BACK;
    let x: Vec<f32> = (0..n + 4096).map(|i| (i as f32 * 0.0712).sin() * 0.3).collect();
    let mut ns = Vec::new();
    let mut sink = 0usize;
    for k in 0..5000 {
        let o = k % 4096;
        let t = std::time::Instant::now();
        let (note, _) = runner.run(&x[o..o + n]);
        ns.push(t.elapsed().as_nanos() as u64);
        sink += note.map_or(0, |n| n as usize);
    }
    let s = Summary::from_ns(&ns);
    println!();
    println!(
        "melody pitch network (features + network, one run; {} runs; checksum {sink}):",
        ns.len()
    );
    println!(
        "  median {:.1} us, p99 {:.1} us, max {:.1} us; on every 4-ms hop it would take {:.2}% of one core",
        s.median_us,
        s.p99_us,
        s.max_us,
        s.mean_us / 4000.0 * 100.0
    );
    Ok(())
}

/// Inference cost of Basic Pitch on one thread (the worker's view): the whole model per 2-s
/// window (the sliding-window baseline), and the streaming transcriber per hop, with the share
/// of one core each takes.
fn bench_model(windows: usize) -> anyhow::Result<()> {
    let mut seed = 0x9e37_79b9u32;
    let mut noise = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                (seed as f32 / u32::MAX as f32 - 0.5) * 0.2
            })
            .collect()
    };
    let manifest = stagebox_models::find_model("basic_pitch")?;
    let (window, rate) = (manifest.window, manifest.sample_rate);
    let mut model = stagebox_models::OrtModel::load(manifest)?;
    let x = noise(window);
    let mut outs = Vec::new();
    let mut ns = Vec::with_capacity(windows);
    for _ in 0..windows {
        let t0 = std::time::Instant::now();
        model.run(&x, &mut outs)?;
        ns.push(t0.elapsed().as_nanos() as u64);
    }
    let s = Summary::from_ns(&ns);
    let per_sec = rate as f64 / 2048.0;
    println!();
    println!("Basic Pitch on the inference worker (one intra-op thread):");
    println!("| how | per run: median (ms) | p99 (ms) | max (ms) | runs a second | share of one core |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| whole model, 2-s window every 2048 samples (sliding-window baseline) | {:.2} | {:.2} | {:.2} | {per_sec:.1} | {:.1}% |",
        s.median_us / 1e3,
        s.p99_us / 1e3,
        s.max_us / 1e3,
        s.mean_us / 1e6 * per_sec * 100.0
    );
    let audio = noise(windows * rate as usize);
    for (hop, look) in [(1, 4), (2, 4), (4, 4), (4, 3), (8, 4)] {
        let mut tr = stagebox_models::basic_pitch::Transcriber::load(hop, look, Default::default())?;
        let mut events = Vec::new();
        let mut ns = Vec::new();
        for x in audio.chunks_exact(hop * 256) {
            events.clear();
            let t0 = std::time::Instant::now();
            tr.push_hop(x, &mut events)?;
            ns.push(t0.elapsed().as_nanos() as u64);
        }
        let slowest = ns.iter().enumerate().max_by_key(|(_, &v)| v).map(|(i, _)| i).unwrap_or(0);
        tracing::debug!("hop {hop}: slowest run is number {slowest} of {}", ns.len());
        let s = Summary::from_ns(&ns);
        let per_sec = rate as f64 / (hop * 256) as f64;
        println!(
            "| streaming, hop {hop} frames, lookahead {look} (context {} frames): front end {:.2} ms + CNN {:.2} ms a run | {:.2} | {:.2} | {:.2} | {per_sec:.1} | {:.1}% |",
            stagebox_models::basic_pitch::CONTEXT_FRAMES + hop + look,
            tr.front_end_ns as f64 / ns.len() as f64 / 1e6,
            tr.cnn_ns as f64 / ns.len() as f64 / 1e6,
            s.median_us / 1e3,
            s.p99_us / 1e3,
            s.max_us / 1e3,
            s.mean_us / 1e6 * per_sec * 100.0
        );
    }
    Ok(())
}

/// Removes a scratch folder when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
