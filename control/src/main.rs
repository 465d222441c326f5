//! The `stagebox` binary (main thread = control thread): command line, logging, and the
//! subcommands run, render, check, devices and bench.
#![recursion_limit = "256"]

mod access;
mod audio_io;
mod bench;
mod cpu_wake;
mod events;
mod histogram;
mod memlock;
mod midi_clock;
mod midi_in;
mod midi_map;
mod notes;
mod osc;
mod oscquery;
mod outputs;
mod piano_roll;
mod plot;
mod record_dir;
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
    /// Print a patch's OSC address space (Markdown), generated from the node parameter specs.
    OscSpace(OscSpaceArgs),
    /// Draw the notes of an event log (`--events-out`) or a MIDI file as a piano roll (PNG).
    Plot(plot::PlotArgs),
}

#[derive(clap::Args)]
struct OscSpaceArgs {
    #[arg(long, default_value = "patches/default.toml")]
    patch: PathBuf,
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
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STAGEBOX_LOG")
                .unwrap_or_else(|_| "info,jack=off,symphonia_core=off,symphonia_bundle_mp3=off,symphonia=off".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        // A command that prints (`osc-space | head`) ends quietly when its reader goes away,
        // as Unix tools do. `run` keeps SIGPIPE ignored: a closed socket must not stop it.
        // SAFETY: setting a signal's disposition to the default touches no memory of ours.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Render(a) => render::render(a),
        Command::Check(a) => check(a),
        Command::Devices => devices(),
        Command::Bench(a) => bench::bench(a),
        Command::OscSpace(a) => osc_space(a),
        Command::Plot(a) => plot::plot(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `stagebox osc-space`: the running patch's addresses as `run` would serve them.
fn osc_space(a: OscSpaceArgs) -> anyhow::Result<ExitCode> {
    let registry = registry();
    let Some(patch) = load_or_report(&a.patch, &registry) else {
        return Ok(ExitCode::FAILURE);
    };
    let sr = patch.engine.sample_rate.unwrap_or(48000) as f32;
    let schedule = match patch.check(&registry, sr) {
        Ok(s) => s,
        Err(e) => {
            print_patch_errors(&e);
            return Ok(ExitCode::FAILURE);
        }
    };
    let (mut handle, _engine) = stagebox_engine::EngineHandle::new(stagebox_engine::EngineConfig::new(sr, 2, 2));
    handle.swap(schedule).map_err(|e| anyhow::anyhow!(e))?;
    println!("# OSC address space of {}\n", a.patch.display());
    println!("Node parameters (`/norm` after any of them takes 0..1 over its range; no argument asks for the value):\n");
    println!("| address | type | range | default | settable | description |");
    println!("|---|---|---|---|---|---|");
    for p in osc::address_space(&handle) {
        use stagebox_engine::param::ParamKind::*;
        let (ty, range) = match p.spec.kind {
            Float { min, max, unit, .. } => ("f", format!("{min}..{max} {unit}")),
            Int { min, max, .. } => ("i", format!("{min}..{max}")),
            Bool { .. } => ("T/F (or 0/1)", "".into()),
            Enum { options, .. } => ("s or i", options.join(", ")),
            Str { .. } => ("s", "".into()),
        };
        let settable = if p.spec.is_runtime() {
            "while running"
        } else {
            "rebuilds the node"
        };
        println!(
            "| `{}` | {ty} | {} | {} | {settable} | {} |",
            p.address,
            range.trim(),
            default_text(&p.spec),
            p.spec.doc
        );
    }
    println!("\nCommands:\n");
    println!("| address | arguments | what it does |");
    println!("|---|---|---|");
    for (addr, args, doc) in osc::COMMANDS {
        println!("| `{addr}` | {args} | {doc} |");
    }
    Ok(ExitCode::SUCCESS)
}

/// A parameter's default as a person writes it in a patch (`0.3`, `saw`, `true`).
fn default_text(spec: &stagebox_engine::ParamSpec) -> String {
    use stagebox_engine::param::ParamKind::*;
    match spec.kind {
        Float { default, .. } => format!("{default}"),
        Int { default, .. } => format!("{default}"),
        Bool { default, .. } => format!("{default}"),
        Enum { options, default, .. } => options.get(default).copied().unwrap_or("").to_string(),
        Str { default } => format!("\"{default}\""),
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
        // The control tables: [osc], and [midi] (whose mappings name nodes and parameters).
        let result = result.and_then(|(patch, s)| {
            // Pointed at the table's header line ([osc], or [midi] / [[midi.map]]).
            let text = std::fs::read_to_string(&patch.path).unwrap_or_default();
            let fail = |msg: String| {
                let key = if msg.starts_with("[osc]") { "[osc]" } else { "[midi" };
                let (line, src) = text
                    .lines()
                    .enumerate()
                    .find(|(_, l)| l.trim_start().starts_with(key) || l.trim_start().starts_with(&format!("[{key}")))
                    .map(|(i, l)| (i + 1, l.to_string()))
                    .unwrap_or((1, String::new()));
                stagebox_patches::PatchErrors(vec![stagebox_patches::PatchError {
                    file: patch.path.clone(),
                    line,
                    col: 1,
                    message: msg,
                    source_line: src,
                }])
            };
            run::check_osc_table(&patch).map_err(fail)?;
            let (mut handle, _engine) = stagebox_engine::EngineHandle::new(stagebox_engine::EngineConfig::new(48000.0, 2, 2));
            let probe = patch.check(&registry, 48000.0)?;
            handle.swap(probe).map_err(fail)?;
            midi_in::settings(patch.midi.as_ref(), &patch.path, &handle).map_err(fail)?;
            Ok((patch, s))
        });
        match result {
            Ok((patch, s)) => println!(
                "{}: ok ({} nodes, {} connections, {} in / {} out channels, {})",
                p.display(),
                patch.graph.nodes.len(),
                patch.graph.connections.len(),
                s.input_channels(),
                s.output_channels(),
                s.latency_text()
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
    #[cfg(feature = "jack")]
    println!("\nJACK:\n  {}", stagebox_engine::backend::jack::describe_server());
    if !live::alsa_card_present() {
        println!("\nALSA:\n  no sound card (nothing in /dev/snd)");
        println!("\nChoose with `stagebox run --backend jack|alsa --device NAME` (a unique part of the name is enough).");
        return Ok(ExitCode::SUCCESS);
    }
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
