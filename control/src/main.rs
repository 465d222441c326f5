//! The `stagebox` binary (main thread = control thread): command line, logging, and the
//! subcommands run, render, check, devices and bench.
#![recursion_limit = "256"]

mod bench;
mod events;
mod histogram;
mod osc;
mod oscquery;
mod outputs;
mod render;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stagebox_engine::alloc_check::CheckedAlloc;
use stagebox_engine::Registry;
use stagebox_patches::Patch;

/// Counts allocations on audio threads (inside `alloc_check::no_alloc`); reported in stats.
#[global_allocator]
static ALLOC: CheckedAlloc = CheckedAlloc;

#[derive(Parser)]
#[command(
    name = "stagebox",
    version,
    about = "Stagebox: a real-time engine for live music performance with machine learning"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a patch live on an audio device (JACK or ALSA); plays a demo clip when there is none.
    Run(run::RunArgs),
    /// Render a patch offline over an input file, faster than real time and deterministic.
    Render(render::RenderArgs),
    /// Validate patch files; exits non-zero with file:line:col errors.
    Check(CheckArgs),
    /// List audio backends and devices.
    Devices,
    /// Measure callback CPU time per block and offline render speed.
    Bench(bench::BenchArgs),
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Patch files to check.
    #[arg(required = true)]
    patches: Vec<PathBuf>,
    /// Sample rate to build the nodes at (default: the patch's, else 48000).
    #[arg(long)]
    sample_rate: Option<u32>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("STAGEBOX_LOG").unwrap_or_else(|_| "info,jack=off".into()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Render(a) => render::render(a),
        Command::Check(a) => check(a),
        Command::Devices => devices(),
        Command::Bench(a) => bench::bench(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Every node type: the engine's built-ins and the model nodes.
pub fn registry() -> Registry {
    let mut r = Registry::builtin();
    stagebox_models::register(&mut r);
    r
}

/// Loads a patch, or prints its errors (file:line:col, with the source line) and returns None.
pub fn load_or_report(path: &std::path::Path, registry: &Registry) -> Option<Patch> {
    match Patch::load(path, registry) {
        Ok(p) => Some(p),
        Err(e) => {
            print_patch_errors(&e);
            None
        }
    }
}

/// Prints patch errors the way a compiler does.
pub fn print_patch_errors(errs: &stagebox_patches::PatchErrors) {
    for e in &errs.0 {
        eprintln!("{}", e.pretty());
    }
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let registry = crate::registry();
    let mut failed = 0;
    for p in &a.patches {
        let result = Patch::load(p, &registry).and_then(|patch| {
            let sr = a.sample_rate.or(patch.engine.sample_rate).unwrap_or(48000);
            patch.check(&registry, sr as f32).map(|s| (patch, s))
        });
        match result {
            Ok((patch, s)) => println!(
                "{}: ok ({} nodes, {} connections, {} in / {} out channels, latency {} frames)",
                p.display(),
                patch.graph.nodes.len(),
                patch.graph.connections.len(),
                s.input_channels(),
                s.output_channels(),
                s.latency_frames()
            ),
            Err(errs) => {
                print_patch_errors(&errs);
                failed += 1;
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} patches have errors", a.patches.len());
        Ok(ExitCode::FAILURE)
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

fn devices() -> anyhow::Result<ExitCode> {
    use stagebox_engine::backend::live;
    println!("Backends built in: ALSA{}", if cfg!(feature = "jack") { ", JACK" } else { "" });
    for (host, devs) in live::list() {
        println!("\n{host}:");
        match devs {
            Err(e) => println!("  unavailable: {e}"),
            Ok(d) if d.is_empty() => println!("  no devices"),
            Ok(d) => {
                for (name, what) in d {
                    println!("  {name}{}", if what.is_empty() { String::new() } else { format!("  ({what})") });
                }
            }
        }
    }
    println!("\nChoose with `stagebox run --backend jack|alsa --device NAME` (a unique part of the name is enough).");
    Ok(ExitCode::SUCCESS)
}
