//! `stagebox run` (main thread = control thread): opens the audio backend, moves the engine
//! onto the audio thread, then loops every 10 ms: drains results and timings, frees what the
//! audio thread retired, reloads the patch when its file changes (or on SIGHUP or the `reload`
//! command), and on exit writes the stats JSON.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::Context;
use notify::Watcher;
use serde_json::json;
use stagebox_engine::backend::jack::JackOptions;
use stagebox_engine::backend::live::{HostChoice, LiveOptions};
use stagebox_engine::backend::paced::Paced;
use stagebox_engine::msg::{FromRt, AT_ONCE};
use stagebox_engine::stats::RtStats;
use stagebox_engine::{EngineConfig, EngineHandle, Registry};
use stagebox_patches::Patch;

use crate::histogram::Histogram;

/// The clip played when no audio device is found.
pub const DEMO_CLIP: &[u8] = include_bytes!("../../assets/demo.wav");

pub use crate::audio_io::BackendArg;
use crate::audio_io::{AudioIo, DeviceChoice, Opened};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Patch to run.
    #[arg(long, default_value = "patches/default.toml")]
    pub patch: PathBuf,
    /// Audio backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Device name (or a unique part of it); see `stagebox devices`.
    #[arg(long)]
    pub device: Option<String>,
    /// The JACK client's name (its ports are NAME:in_1, NAME:out_1, NAME:notes, ...).
    #[arg(long, default_value = "stagebox")]
    pub client_name: String,
    /// Buffer size in frames (ALSA; JACK uses the server's).
    #[arg(long)]
    pub buffer: Option<u32>,
    /// Sample rate (ALSA; JACK uses the server's).
    #[arg(long)]
    pub sample_rate: Option<u32>,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Write run statistics (callbacks, xruns, callback times, ...) to this JSON file on exit.
    #[arg(long)]
    pub stats_json: Option<PathBuf>,
    /// Print meter levels once a second (always on in demo mode).
    #[arg(long)]
    pub meters: bool,
    /// Do not reload the patch when its file changes.
    #[arg(long)]
    pub no_watch: bool,
    /// Name of the MIDI output port notes leave by (JACK: stagebox:NAME), when the patch makes MIDI.
    #[arg(long, default_value = "notes")]
    pub midi_port: String,
    /// Make no MIDI output port.
    #[arg(long)]
    pub no_midi_out: bool,
    /// Send notes and bends as OSC (/stagebox/note, /stagebox/bend) to HOST:PORT.
    #[arg(long)]
    pub osc_out: Option<String>,
    /// Append every MIDI event the graph emits to this file, one JSON object a line.
    #[arg(long)]
    pub events_out: Option<PathBuf>,
    /// OSC control port, UDP and TCP (SLIP); 0 = any free port (the log says which). Also
    /// `[osc] port` in the patch; default 57130.
    #[arg(long)]
    pub osc_port: Option<u16>,
    /// Address the OSC server binds (default 127.0.0.1: this machine only).
    #[arg(long)]
    pub osc_bind: Option<std::net::IpAddr>,
    /// Client networks allowed when bound wider, e.g. 192.168.1.0/24,10.0.0.7/32.
    #[arg(long, value_delimiter = ',')]
    pub osc_allow: Vec<ipnet::IpNet>,
    /// No OSC control server.
    #[arg(long)]
    pub no_osc: bool,
    /// OSCQuery HTTP/WebSocket port; 0 = any free port. Also `[osc] oscquery_port`; default
    /// the OSC port + 1.
    #[arg(long)]
    pub oscquery_port: Option<u16>,
    /// No OSCQuery server.
    #[arg(long)]
    pub no_oscquery: bool,
    /// Advertise OSCQuery and OSC over mDNS (`_oscjson._tcp`, `_osc._udp`). Off by default:
    /// mDNS multicasts to the local network.
    #[arg(long)]
    pub oscquery_mdns: bool,
    /// No MIDI input port (controllers, program change, clock; `[midi]` in the patch).
    #[arg(long)]
    pub no_midi_in: bool,
    /// While running on a live device, keep every CPU able to wake within this many µs (PM QoS
    /// on /dev/cpu_dma_latency: no deep idle states, fewer late audio callbacks; needs root or
    /// write access to that file).
    #[arg(long, default_value_t = 0)]
    pub cpu_wake_us: u32,
    /// Let the CPUs sleep as deeply as they like (saves power; idle CPUs may wake too late for
    /// short audio periods).
    #[arg(long)]
    pub no_cpu_wake_hold: bool,
}

#[derive(Default, Clone)]
struct MeterState {
    reports: u64,
    silent_reports: u64,
    peak: Vec<f32>,
    rms: Vec<f32>,
}

fn db(x: f32) -> f64 {
    if x <= 1e-6 {
        -120.0
    } else {
        20.0 * (x as f64).log10()
    }
}

fn load_patch(path: &Path, registry: &Registry) -> Result<Patch, String> {
    Patch::load(path, registry).map_err(|e| e.0.iter().map(|x| x.pretty()).collect::<Vec<_>>().join("\n"))
}

/// Demo clip, resampled to `sr` and spread over `channels` (interleaved).
fn demo_input(sr: u32, channels: usize) -> anyhow::Result<Vec<f32>> {
    if channels == 0 {
        return Ok(Vec::new());
    }
    let r = hound::WavReader::new(std::io::Cursor::new(DEMO_CLIP))?;
    let spec = r.spec();
    let mono: Vec<f32> = r
        .into_samples::<i16>()
        .map(|s| s.map(|v| v as f32 / 32768.0))
        .collect::<Result<_, _>>()?;
    let mono = stagebox_engine::dsp::resample_interleaved(&mono, 1, spec.sample_rate, sr);
    Ok(mono.iter().flat_map(|&x| std::iter::repeat_n(x, channels)).collect())
}

pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let registry = crate::registry();
    let mut patch_path = a.patch.clone();
    let Some(patch) = crate::load_or_report(&patch_path, &registry) else {
        return Ok(ExitCode::FAILURE);
    };
    let probe = match patch.check(&registry, patch.engine.sample_rate.unwrap_or(48000) as f32) {
        Ok(s) => s,
        Err(e) => {
            crate::print_patch_errors(&e);
            return Ok(ExitCode::FAILURE);
        }
    };
    let (want_in, want_out) = (probe.input_channels(), probe.output_channels().max(1));
    drop(probe);

    // Choose the backend.
    let mut demo = a.backend == BackendArg::None;
    let mut device = None;
    let midi_settings_early = crate::midi_in::settings_lenient(patch.midi.as_ref());
    let choice = DeviceChoice {
        backend: a.backend,
        alsa: LiveOptions {
            host: HostChoice::Alsa,
            device: a.device.clone(),
            buffer_frames: a.buffer.or(patch.engine.block_size),
            sample_rate: a.sample_rate.or(patch.engine.sample_rate),
            in_channels: want_in,
            out_channels: want_out,
        },
        jack: JackOptions {
            client_name: a.client_name.clone(),
            in_channels: want_in,
            out_channels: want_out,
            notes_port: (!a.no_midi_out).then(|| a.midi_port.clone()),
            control_port: (!a.no_midi_in).then(|| midi_settings_early.0.clone()),
            midi_in_port: (!a.no_midi_in).then(|| "midi_in".to_string()),
            clock_port: (!a.no_midi_in && midi_settings_early.1).then(|| "clock".to_string()),
            autoconnect: true,
        },
    };
    if !demo {
        match Opened::open(&choice) {
            Ok(d) => device = Some(d),
            Err(e) if a.backend == BackendArg::Auto => {
                eprintln!("stagebox: no audio device is available ({e}).");
                eprintln!(
                    "stagebox: playing the bundled demo clip through {} in real time instead; levels below.",
                    patch_path.display()
                );
                eprintln!("stagebox: connect a sound card or start JACK, then see `stagebox devices`.");
                demo = true;
            }
            Err(e) => anyhow::bail!(
                "cannot open the {} backend: {e}",
                if a.backend == BackendArg::Jack { "JACK" } else { "ALSA" }
            ),
        }
    }
    let (sr, in_ch, out_ch, mut backend_name, device_name) = match &device {
        Some(d) => (d.sample_rate(), d.in_channels(), d.out_channels(), d.host_name(), d.device_name()),
        None => (
            a.sample_rate.or(patch.engine.sample_rate).unwrap_or(48000),
            want_in,
            want_out,
            "none".to_string(),
            "demo".to_string(),
        ),
    };
    let schedule = match patch.compile(&registry, sr as f32) {
        Ok(s) => s,
        Err(e) => {
            crate::print_patch_errors(&e);
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut cfg = EngineConfig::new(sr as f32, in_ch, out_ch);
    cfg.fade_ms = patch.engine.fade_ms.unwrap_or(30.0);
    let (mut handle, engine) = EngineHandle::new(cfg);
    handle.swap(schedule, &registry).map_err(|e| anyhow::anyhow!(e))?;
    let stats = handle.stats.clone();
    let alloc_checked = stagebox_engine::alloc_check::is_installed();
    let alloc_before = stagebox_engine::alloc_check::violations();

    let paced_block = a.buffer.or(patch.engine.block_size).unwrap_or(256) as usize;
    // Held for the whole run (through a lost device and its return): dropped at exit.
    let cpu_wake = match (&device, a.no_cpu_wake_hold) {
        (Some(_), false) => crate::cpu_wake::CpuWakeHold::request_logged(a.cpu_wake_us),
        _ => None,
    };
    let mut audio = match device {
        Some(d) => d
            .start(engine, handle.latency_frames(), midi_settings_early.2)
            .context("starting audio")?,
        None => AudioIo::Paced(Paced::start(engine, paced_block, demo_input(sr, in_ch)?)?),
    };
    // The last patch that loaded, rebuilt if the device goes away and comes back.
    let mut current_patch = patch.clone();
    let mut device_losses = 0u64;
    let mut device_recoveries = 0u64;
    let mut lost_since: Option<Instant> = None;
    let mut last_try = Instant::now();
    let makes_midi = handle.nodes().any(|n| n.info.midi_out);
    let midi_port = (makes_midi && !a.no_midi_out && !audio.is_jack()).then_some(a.midi_port.as_str());
    let mut outputs = crate::outputs::Outputs::open(midi_port, a.osc_out.as_deref(), a.events_out.as_deref(), sr)?;
    let mut notes_emitted = 0u64;
    let mut emitted: Vec<crate::events::Emitted> = Vec::with_capacity(256);
    let mut osc = match osc_settings(&a, &patch)? {
        Some(settings) => match crate::osc::OscServer::start(settings.clone(), &patch_path) {
            Ok(o) => Some(o),
            Err(e) => {
                // Another instance may hold the port: the engine still runs, without OSC control.
                tracing::error!("OSC control not started: cannot bind {}:{}: {e}", settings.bind, settings.port);
                None
            }
        },
        None => None,
    };
    let mut rebuilds: Vec<(String, String, stagebox_engine::ParamValue)> = Vec::new();
    let oscquery = match (&osc, a.no_oscquery) {
        (Some(o), false) => {
            let qp = a
                .oscquery_port
                .or_else(|| {
                    patch
                        .osc
                        .as_ref()
                        .and_then(|v| v.get("oscquery_port"))
                        .and_then(|v| v.as_integer())
                        .map(|p| p as u16)
                })
                .unwrap_or(if a.osc_port == Some(0) { 0 } else { o.local.port().wrapping_add(1) });
            match crate::oscquery::OscQuery::start(o.local.ip(), qp, o.local.port()) {
                Ok(q) => Some(q),
                Err(e) => {
                    tracing::error!("OSCQuery not started: cannot bind port {qp}: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    // MIDI in: the patch's [midi] mappings; a port only where there is a MIDI system (JACK
    // running, or ALSA's sequencer).
    let midi_settings = match crate::midi_in::settings(patch.midi.as_ref(), &patch_path, &handle) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{}: {e}", patch_path.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let want_midi = !a.no_midi_in && (stagebox_engine::backend::live::jack_server_running() || Path::new("/dev/snd/seq").exists());
    let mut midi_in = if let Some((rx, dropped)) = audio.take_control_midi() {
        Some(crate::midi_in::MidiIn::from_ring(&midi_settings, rx, dropped, None))
    } else if want_midi {
        match crate::midi_in::MidiIn::open(&midi_settings) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!("no MIDI input: {e}");
                None
            }
        }
    } else {
        None
    };
    let mut clock_out = if let Some(shared) = audio.clock() {
        Some(crate::midi_in::ClockOut::driven(shared))
    } else if want_midi && midi_settings.clock_out {
        crate::midi_in::ClockOut::start("clock", midi_settings.tempo)
            .map_err(|e| tracing::warn!("no MIDI clock out: {e}"))
            .ok()
    } else {
        None
    };
    let mut tempo = midi_settings.tempo;
    let mut learn_peer: Option<crate::osc::Peer> = None;
    let mut last_publish = Instant::now();
    let mut ns_dirty = false;
    let _mdns = match (&oscquery, &osc, a.oscquery_mdns) {
        (Some(q), Some(o), true) => crate::oscquery::advertise(q.local.port(), o.local.port())
            .map_err(|e| tracing::warn!("no mDNS advertising: {e}"))
            .ok(),
        _ => None,
    };
    tracing::info!(
        "running {} on {backend_name} ({device_name}), {sr} Hz, {in_ch} in / {out_ch} out, graph latency {} frames",
        patch_path.display(),
        handle.latency_frames()
    );

    // Stop and reload signals.
    let term = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, term.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone())?;
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;

    // Patch file watcher (the folder, since editors replace files by renaming).
    let (fs_tx, fs_rx) = mpsc::channel::<()>();
    let mut watcher = None;
    if !a.no_watch {
        let name = patch_path.file_name().map(|n| n.to_os_string());
        let w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev {
                if matches!(ev.kind, notify::EventKind::Modify(_) | notify::EventKind::Create(_))
                    && ev.paths.iter().any(|p| p.file_name().map(|n| n.to_os_string()) == name)
                {
                    let _ = fs_tx.send(());
                }
            }
        });
        match w {
            Ok(mut w) => {
                let dir = patch_path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                match w.watch(dir, notify::RecursiveMode::NonRecursive) {
                    Ok(()) => watcher = Some(w),
                    Err(e) => tracing::warn!("not watching {} for changes: {e}", dir.display()),
                }
            }
            Err(e) => tracing::warn!("no file watching: {e}"),
        }
    }

    // Commands on standard input.
    let (cmd_tx, cmd_rx) = mpsc::channel::<String>();
    std::thread::Builder::new().name("stagebox-stdin".into()).spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) => {
                    if cmd_tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    })?;

    let started = Instant::now();
    let mut hist = Histogram::new();
    let mut late_callbacks = 0u64;
    let mut inference: BTreeMap<(u64, String), stagebox_engine::infer::InferCounts> = BTreeMap::new();
    let mut meters: BTreeMap<String, MeterState> = BTreeMap::new();
    let mut reload_at: Option<Instant> = None;
    let mut reloads_ok = 0u64;
    let mut reloads_failed = 0u64;
    let mut last_print = Instant::now();
    let show_meters = a.meters || demo;
    // Node ids by schedule generation: the current one and the one fading out.
    let node_ids = |h: &EngineHandle| (h.generation(), h.nodes().map(|n| n.id.clone()).collect::<Vec<_>>());
    let mut ids = node_ids(&handle);
    let mut prev_ids = ids.clone();

    loop {
        // The loop's pause: woken by OSC as it arrives; MIDI is polled each turn, so with a MIDI
        // port the turns are 1 ms.
        let pause = Duration::from_millis(if midi_in.is_some() { 1 } else { 3 });
        match &mut osc {
            Some(o) => o.wait(pause),
            None => std::thread::sleep(pause),
        }
        // A callback that took longer than its block's duration missed its deadline.
        let period_ns = (RtStats::get(&stats.last_block_frames) as f64 / sr as f64 * 1e9) as u64;
        while let Ok(ns) = audio.timings().pop() {
            hist.add(ns as u64);
            if period_ns > 0 && ns as u64 > period_ns {
                late_callbacks += 1;
            }
        }
        handle.drain(|m| match m {
            FromRt::Meter {
                gen,
                node,
                channels,
                peak,
                rms,
                ..
            } => {
                let names = if gen == ids.0 { &ids.1 } else { &prev_ids.1 };
                let id = names.get(node as usize).cloned().unwrap_or_else(|| format!("#{node}"));
                let id_for_osc = id.clone();
                let st = meters.entry(id).or_default();
                st.reports += 1;
                let ch = channels as usize;
                if peak[..ch].iter().all(|p| *p < 1e-4) {
                    st.silent_reports += 1;
                }
                st.peak = peak[..ch].to_vec();
                st.rms = rms[..ch].to_vec();
                if let Some(o) = &osc {
                    let top = |v: &[f32]| v.iter().cloned().fold(0.0f32, f32::max);
                    o.broadcast(
                        "/stagebox/meter",
                        vec![
                            rosc::OscType::String(id_for_osc.clone()),
                            rosc::OscType::Float(db(top(&peak[..ch])) as f32),
                            rosc::OscType::Float(db(top(&rms[..ch])) as f32),
                        ],
                    );
                }
            }
            FromRt::Midi {
                gen,
                node,
                sample_time,
                origin,
                msg,
            } => {
                let names = if gen == ids.0 { &ids.1 } else { &prev_ids.1 };
                let id = names.get(node as usize).cloned().unwrap_or_else(|| format!("#{node}"));
                emitted.push(crate::events::Emitted {
                    node: id,
                    sample_time,
                    origin,
                    msg,
                });
            }
            FromRt::Infer { gen, node, counts } => {
                // Counters are cumulative per node instance; keyed by generation and id.
                let names = if gen == ids.0 { &ids.1 } else { &prev_ids.1 };
                let id = names.get(node as usize).cloned().unwrap_or_else(|| format!("#{node}"));
                inference.insert((gen, id), counts);
            }
            _ => {}
        });
        for e in emitted.drain(..) {
            if e.msg[0] & 0xf0 == 0x90 && e.msg[2] > 0 {
                notes_emitted += 1;
            }
            outputs.send(&e);
            if let Some(o) = &osc {
                let (addr, args) = crate::outputs::osc_message(&e, sr);
                o.broadcast(addr, args);
            }
        }
        handle.collect();

        if term.load(Ordering::Relaxed) {
            tracing::info!("stopping (signal)");
            break;
        }
        if a.duration.is_some_and(|d| started.elapsed().as_secs_f64() >= d) {
            break;
        }
        if fs_rx.try_iter().count() > 0 {
            reload_at = Some(Instant::now() + Duration::from_millis(150));
        }
        if hup.swap(false, Ordering::Relaxed) {
            reload_at = Some(Instant::now());
        }
        for line in cmd_rx.try_iter() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                ["reload"] => reload_at = Some(Instant::now()),
                ["load", p] => {
                    patch_path = PathBuf::from(p);
                    reload_at = Some(Instant::now());
                }
                ["set", node, param, value] => match value.parse::<f32>() {
                    Ok(v) => match handle.set_param(node, param, v, AT_ONCE) {
                        Ok(()) => tracing::info!("{node}.{param} = {v}"),
                        Err(e) => tracing::warn!("set: {e}"),
                    },
                    Err(_) => tracing::warn!("set: `{value}` is not a number"),
                },
                ["quit"] | ["exit"] => term.store(true, Ordering::Relaxed),
                ["status"] => eprintln!("{}", status_line(&stats, &hist, &meters, notes_emitted)),
                _ => tracing::warn!("unknown command `{line}` (commands: reload, load PATH, set NODE PARAM VALUE, status, quit)"),
            }
        }
        if let Some(m) = &mut midi_in {
            // The values as the OSC side knows them (borrowed; looked up only for a message).
            let osc_ref = osc.as_ref();
            let current =
                |node: &str, param: &str| -> Option<f64> { osc_ref?.values().get(&format!("/stagebox/node/{node}/{param}"))?.as_f64() };
            let actions = m.poll(&mut handle, &current);
            for action in actions {
                match action {
                    crate::midi_in::MidiAction::Load(p) => {
                        tracing::info!("program change: loading {}", p.display());
                        patch_path = p;
                        reload_at = Some(Instant::now());
                    }
                    crate::midi_in::MidiAction::Learned(addr, what) => {
                        tracing::info!("MIDI learn: {what} -> {addr}");
                        if let (Some(o), Some(peer)) = (&osc, learn_peer.take()) {
                            o.send(
                                peer,
                                "/stagebox/learned",
                                vec![rosc::OscType::String(addr), rosc::OscType::String(what)],
                            );
                        }
                    }
                }
            }
            for (node, param, v) in m.sets.drain(..) {
                if let Some(o) = &mut osc {
                    o.note_set(&node, &param, v);
                }
            }
        }
        if let Some(o) = &mut osc {
            let gen = handle.generation();
            let period_us = RtStats::get(&stats.last_block_frames) as f64 / sr as f64 * 1e6;
            let st = || crate::osc::Status {
                cpu_load: if period_us > 0.0 {
                    (hist.mean_us() / period_us) as f32
                } else {
                    0.0
                },
                xruns: RtStats::get(&stats.xruns),
                late_windows: inference.values().map(|c| c.late).sum(),
                sample_rate: sr,
                block_size: RtStats::get(&stats.last_block_frames) as u32,
                uptime_s: started.elapsed().as_secs_f64(),
                late_callbacks,
                notes: notes_emitted,
                rt_allocations: stagebox_engine::alloc_check::violations() - alloc_before,
                frames: RtStats::get(&stats.frames),
                patch: current_patch.path.display().to_string(),
                midi_dropped: midi_in.as_ref().map_or(0, |m| m.dropped.load(Ordering::Relaxed)),
                models: inference
                    .iter()
                    .filter(|((g, _), _)| *g == gen)
                    .map(|((_, id), c)| (id.clone(), *c))
                    .collect(),
            };
            for action in o.poll(&mut handle, &current_patch, &st) {
                match action {
                    crate::osc::Action::Reload => reload_at = Some(Instant::now()),
                    crate::osc::Action::Load(p) => {
                        patch_path = p;
                        reload_at = Some(Instant::now());
                    }
                    crate::osc::Action::Quit => term.store(true, Ordering::Relaxed),
                    crate::osc::Action::Rebuild { node, param, value } => rebuilds.push((node, param, value)),
                    crate::osc::Action::Learn { node, param, peer } => match &mut midi_in {
                        Some(m) => {
                            m.arm(&node, &param);
                            learn_peer = Some(peer);
                            tracing::info!("MIDI learn armed for {node}.{param}: move a control");
                        }
                        None => o.send(
                            peer,
                            "/stagebox/error",
                            vec![
                                rosc::OscType::String("/stagebox/learn".into()),
                                rosc::OscType::String("no MIDI input port".into()),
                            ],
                        ),
                    },
                    crate::osc::Action::SaveLearned { peer } => {
                        let r = match &mut midi_in {
                            Some(m) => m.save_learned(&current_patch.path),
                            None => Err("no MIDI input port".into()),
                        };
                        match r {
                            Ok(n) => {
                                tracing::info!("saved {n} learned MIDI bindings into {}", current_patch.path.display());
                                o.send(
                                    peer,
                                    "/stagebox/done",
                                    vec![rosc::OscType::String("/stagebox/learn/save".into()), rosc::OscType::Int(n as i32)],
                                );
                            }
                            Err(e) => o.send(
                                peer,
                                "/stagebox/error",
                                vec![rosc::OscType::String("/stagebox/learn/save".into()), rosc::OscType::String(e)],
                            ),
                        }
                    }
                    crate::osc::Action::Tempo { bpm, peer } => match bpm {
                        Some(b) => {
                            tempo = b;
                            if let Some(c) = &clock_out {
                                c.set_tempo(b);
                            }
                        }
                        None => {
                            let clock = midi_in.as_ref().map(|m| m.clock).unwrap_or_default();
                            o.send(
                                peer,
                                "/stagebox/tempo.reply",
                                vec![
                                    rosc::OscType::Float(tempo as f32),
                                    rosc::OscType::Float(clock.bpm.unwrap_or(0.0) as f32),
                                    rosc::OscType::Bool(clock.running),
                                    rosc::OscType::Float(clock.position_16ths as f32),
                                ],
                            );
                        }
                    },
                }
            }
            if let Some(q) = &oscquery {
                let (space, changed) = o.take_changes();
                for addr in &changed {
                    if let Some(v) = o.values().get(addr) {
                        q.changed(addr, v);
                    }
                }
                // The namespace (with values) at most every 100 ms, and at once when it changes.
                ns_dirty |= !changed.is_empty();
                if space || (ns_dirty && last_publish.elapsed() >= Duration::from_millis(100)) {
                    q.publish(crate::oscquery::namespace(o.params(), o.values()));
                    last_publish = Instant::now();
                    ns_dirty = false;
                }
            }
        }
        let from_file = reload_at.is_some_and(|t| Instant::now() >= t);
        if from_file || !rebuilds.is_empty() {
            if from_file {
                reload_at = None;
            }
            let t0 = Instant::now();
            let loaded = if from_file {
                load_patch(&patch_path, &registry)
            } else {
                // Parameters fixed at build time, changed by OSC: the running patch with them.
                let mut p = current_patch.clone();
                for (node, param, value) in rebuilds.drain(..) {
                    if let Some(n) = p.graph.nodes.iter_mut().find(|n| n.id == node) {
                        n.params.insert(param, value);
                    }
                }
                Ok(p)
            };
            let result = loaded.and_then(|p| {
                p.compile(&registry, sr as f32)
                    .map_err(|e| e.0.iter().map(|x| x.pretty()).collect::<Vec<_>>().join("\n"))
                    .map(|s| (p, s))
            });
            if let (Some(o), Err(e)) = (&mut osc, &result) {
                o.finished(&Err(e.clone()));
            }
            match result {
                Ok((p, s)) => {
                    current_patch = p.clone();
                    if s.input_channels() > in_ch || s.output_channels() > out_ch {
                        tracing::warn!(
                            "the new patch wants {} in / {} out channels; the device has {in_ch} / {out_ch}",
                            s.input_channels(),
                            s.output_channels()
                        );
                    }
                    let swapped = handle.swap(s, &registry);
                    if let Some(o) = &mut osc {
                        o.finished(&swapped.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                    }
                    match swapped {
                        Ok(gen) => {
                            reloads_ok += 1;
                            audio.set_latency(handle.latency_frames());
                            if let Some(m) = &mut midi_in {
                                match crate::midi_in::settings(p.midi.as_ref(), &p.path, &handle) {
                                    Ok(ms) => m.set_maps(&ms),
                                    Err(e) => tracing::error!("{}: {e} (the MIDI mappings stay as they were)", p.path.display()),
                                }
                            }
                            prev_ids = std::mem::replace(&mut ids, node_ids(&handle));
                            tracing::info!(
                                "reloaded {} (generation {gen}, compiled in {:.1} ms)",
                                p.path.display(),
                                t0.elapsed().as_secs_f64() * 1e3
                            );
                        }
                        Err(e) => {
                            reloads_failed += 1;
                            tracing::error!("reload failed: {e}");
                        }
                    }
                }
                Err(e) => {
                    reloads_failed += 1;
                    tracing::error!("reload failed; the running patch stays:\n{e}");
                }
            }
        }
        // A lost device: keep the patch running without one (silence in), retry every 2 s.
        if audio.device_lost() {
            device_losses += 1;
            tracing::error!("the audio device went away; the patch keeps running without a device, retrying every 2 s");
            // The MIDI port's JACK client died with the server; closing it then crashes inside
            // JACK, so it is let go (leaked) and opened again when the server is back.
            if let Some(m) = midi_in.take() {
                std::mem::forget(m);
            }
            if let Some(c) = clock_out.take() {
                c.stop_without_port();
            }
            let (h, e) = fresh_engine(&current_patch, &registry, cfg, stats.clone())?;
            std::mem::replace(&mut audio, AudioIo::Paced(Paced::start(e, paced_block, Vec::new())?)).abandon();
            handle = h;
            ids = node_ids(&handle);
            prev_ids = ids.clone();
            backend_name = "none (device lost)".into();
            lost_since = Some(Instant::now());
            last_try = Instant::now();
        }
        if lost_since.is_some() && last_try.elapsed() >= Duration::from_secs(2) {
            last_try = Instant::now();
            match Opened::open(&choice) {
                Ok(d) if d.sample_rate() == sr && d.in_channels() == in_ch && d.out_channels() == out_ch => {
                    let name = d.host_name();
                    let (h, e) = fresh_engine(&current_patch, &registry, cfg, stats.clone())?;
                    drop(audio);
                    match d.start(e, h.latency_frames(), tempo) {
                        Ok(r) => {
                            audio = r;
                            handle = h;
                            ids = node_ids(&handle);
                            prev_ids = ids.clone();
                            device_recoveries += 1;
                            if let Some((rx, dropped)) = audio.take_control_midi() {
                                midi_in = Some(crate::midi_in::MidiIn::from_ring(&midi_settings, rx, dropped, None));
                                clock_out = audio.clock().map(crate::midi_in::ClockOut::driven);
                            } else if want_midi && midi_in.is_none() {
                                midi_in = crate::midi_in::MidiIn::open(&midi_settings)
                                    .map_err(|e| tracing::warn!("no MIDI input: {e}"))
                                    .ok();
                            }
                            backend_name = name;
                            lost_since = None;
                            tracing::info!("the audio device is back");
                        }
                        Err(err) => {
                            tracing::warn!("the device came back but would not start: {err}");
                            let (h, e) = fresh_engine(&current_patch, &registry, cfg, stats.clone())?;
                            audio = AudioIo::Paced(Paced::start(e, paced_block, Vec::new())?);
                            handle = h;
                            ids = node_ids(&handle);
                            prev_ids = ids.clone();
                        }
                    }
                }
                Ok(_) => tracing::warn!("a device is back with another rate or channel count; still waiting for the original"),
                Err(_) => {}
            }
        }
        if show_meters && last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            eprintln!("{}", status_line(&stats, &hist, &meters, notes_emitted));
        }
    }
    drop(watcher);
    drop(audio);
    outputs.flush();
    handle.drain(|_| {});
    handle.collect();
    let elapsed = started.elapsed().as_secs_f64();
    let rt_allocs = stagebox_engine::alloc_check::violations() - alloc_before;
    tracing::info!(
        "stopped after {elapsed:.1} s: {} callbacks, {} xruns, callback median {:.1} us, p99 {:.1} us, max {:.1} us",
        RtStats::get(&stats.callbacks),
        RtStats::get(&stats.xruns),
        hist.quantile_us(0.5),
        hist.quantile_us(0.99),
        hist.max_us()
    );
    if let Some(path) = &a.stats_json {
        let meters_json: serde_json::Map<String, serde_json::Value> = meters
            .iter()
            .map(|(k, m)| {
                (
                    k.clone(),
                    json!({
                        "reports": m.reports,
                        "silent_reports": m.silent_reports,
                        "last_peak_db": m.peak.iter().map(|x| db(*x)).collect::<Vec<_>>(),
                        "last_rms_db": m.rms.iter().map(|x| db(*x)).collect::<Vec<_>>(),
                    }),
                )
            })
            .collect();
        let j = json!({
            "backend": backend_name,
            "device": device_name,
            "demo": demo,
            "patch": patch_path.display().to_string(),
            "sample_rate": sr,
            "block_size": RtStats::get(&stats.last_block_frames),
            "in_channels": in_ch,
            "out_channels": out_ch,
            "duration_secs": elapsed,
            "callbacks": RtStats::get(&stats.callbacks),
            "frames": RtStats::get(&stats.frames),
            "xruns": RtStats::get(&stats.xruns),
            "late_callbacks": late_callbacks,
            "callback_us": {
                "count": hist.count(),
                "median": hist.quantile_us(0.5),
                "p99": hist.quantile_us(0.99),
                "max": hist.max_us(),
                "mean": hist.mean_us(),
            },
            "input_underrun_frames": RtStats::get(&stats.input_underruns),
            "input_overrun_frames": RtStats::get(&stats.input_overruns),
            "events_dropped": RtStats::get(&stats.events_dropped),
            "events_late": RtStats::get(&stats.events_late),
            "from_rt_dropped": RtStats::get(&stats.from_rt_dropped),
            "timings_dropped": RtStats::get(&stats.timings_dropped),
            "swaps": RtStats::get(&stats.swaps),
            "reloads_ok": reloads_ok,
            "notes_emitted": notes_emitted,
            "midi_sent": outputs.midi_sent + RtStats::get(&stats.device_midi_sent),
            "osc_sent": outputs.osc_sent,
            "osc_port": osc.as_ref().map(|o| o.local.port()),
            "oscquery_port": oscquery.as_ref().map(|q| q.local.port()),
            "midi_in_received": midi_in.as_ref().map(|m| m.received),
            "midi_dispatch_us": midi_in.as_ref().map(|m| {
                let mut v = m.dispatch_us.clone();
                v.sort_unstable();
                let q = |f: f64| v.get(((v.len() as f64 - 1.0) * f).round() as usize).copied().unwrap_or(0);
                json!({"count": v.len(), "median": q(0.5), "p99": q(0.99), "max": v.last().copied().unwrap_or(0)})
            }),
            "midi_in_dropped": midi_in.as_ref().map(|m| m.dropped.load(Ordering::Relaxed)),
            "midi_clock_in_bpm": midi_in.as_ref().and_then(|m| m.clock.bpm),
            "midi_clock_out_ticks": clock_out.as_ref().map(|c| c.sent()),
            "osc_received": osc.as_ref().map(|o| o.counters.received.load(Ordering::Relaxed)),
            "osc_dropped": osc.as_ref().map(|o| o.counters.dropped.load(Ordering::Relaxed)),
            "osc_errors": osc.as_ref().map(|o| o.counters.errors.load(Ordering::Relaxed)),
            "osc_malformed": osc.as_ref().map(|o| o.counters.malformed.load(Ordering::Relaxed)),
            "osc_refused": osc.as_ref().map(|o| o.counters.refused.load(Ordering::Relaxed)),
            "osc_late_bundles": osc.as_ref().map(|o| o.counters.late_bundles.load(Ordering::Relaxed)),
            "osc_dispatch_us": osc.as_ref().map(|o| {
                let mut v = o.dispatch_us.clone();
                v.sort_unstable();
                let q = |f: f64| v.get(((v.len() as f64 - 1.0) * f).round() as usize).copied().unwrap_or(0);
                json!({"count": v.len(), "median": q(0.5), "p99": q(0.99), "max": v.last().copied().unwrap_or(0)})
            }),
            "device_losses": device_losses,
            "device_recoveries": device_recoveries,
            "reloads_failed": reloads_failed,
            "rt_allocations": rt_allocs,
            "alloc_check_installed": alloc_checked,
            "cpu_wake_us": cpu_wake.as_ref().map(|h| h.bound_us),
            "latency_frames": handle.latency_frames(),
            "meters": meters_json,
            "late_windows": inference.values().map(|c| c.late).sum::<u64>(),
            "dropped_windows": inference.values().map(|c| c.dropped).sum::<u64>(),
            "inference": inference.iter().map(|((g, id), c)| json!({
                "node": id, "generation": g, "windows": c.windows, "late": c.late, "dropped": c.dropped, "failed": c.failed,
            })).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&j)? + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks a patch's `[osc]` table (control thread; `check` and `run`).
pub fn check_osc_table(patch: &Patch) -> Result<(), String> {
    let Some(v) = &patch.osc else { return Ok(()) };
    let t = v.as_table().ok_or("[osc] is not a table")?;
    for (k, v) in t {
        match k.as_str() {
            "port" | "oscquery_port" => match v.as_integer() {
                Some(p) if (0..=65535).contains(&p) => {}
                _ => return Err(format!("[osc] {k} = {v} is not a port number (0..65535)")),
            },
            "bind" => {
                v.as_str()
                    .and_then(|b| b.parse::<std::net::IpAddr>().ok())
                    .ok_or(format!("[osc] bind = {v} is not an IP address"))?;
            }
            "allow" => {
                for e in v.as_array().ok_or("[osc] allow is not a list")? {
                    let s = e.as_str().unwrap_or_default();
                    if s.parse::<ipnet::IpNet>().is_err() && s.parse::<std::net::IpAddr>().is_err() {
                        return Err(format!("[osc] allow: {e} is not an address or network (192.168.1.0/24)"));
                    }
                }
            }
            "notify_timeout_s" => {
                if v.as_float().or_else(|| v.as_integer().map(|i| i as f64)).is_none_or(|x| x <= 0.0) {
                    return Err(format!("[osc] notify_timeout_s = {v} is not a positive number"));
                }
            }
            "enabled" => {
                v.as_bool().ok_or(format!("[osc] enabled = {v} is not true or false"))?;
            }
            _ => {
                return Err(format!(
                    "[osc] has no setting `{k}` (port, oscquery_port, bind, allow, notify_timeout_s, enabled)"
                ))
            }
        }
    }
    Ok(())
}

/// The OSC server's settings: the command line over the patch's `[osc]` table over defaults;
/// None when turned off.
fn osc_settings(a: &RunArgs, patch: &Patch) -> anyhow::Result<Option<crate::osc::OscSettings>> {
    if a.no_osc {
        return Ok(None);
    }
    check_osc_table(patch).map_err(|e| anyhow::anyhow!("{}: {e}", patch.path.display()))?;
    let t = patch.osc.as_ref().and_then(|v| v.as_table());
    let get = |k: &str| t.and_then(|t| t.get(k));
    if get("enabled").and_then(|v| v.as_bool()) == Some(false) && a.osc_port.is_none() {
        return Ok(None);
    }
    let port = match (a.osc_port, get("port").and_then(|v| v.as_integer())) {
        (Some(p), _) => p,
        (None, Some(p)) => u16::try_from(p).map_err(|_| anyhow::anyhow!("[osc] port = {p} is not a port number"))?,
        (None, None) => 57130,
    };
    let bind = match (a.osc_bind, get("bind").and_then(|v| v.as_str())) {
        (Some(b), _) => b,
        (None, Some(b)) => b.parse().map_err(|e| anyhow::anyhow!("[osc] bind = {b:?}: {e}"))?,
        (None, None) => std::net::IpAddr::from([127, 0, 0, 1]),
    };
    let mut allow = a.osc_allow.clone();
    if allow.is_empty() {
        for v in get("allow").and_then(|v| v.as_array()).into_iter().flatten() {
            let s = v.as_str().unwrap_or_default();
            let net: ipnet::IpNet = s
                .parse()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|e| anyhow::anyhow!("[osc] allow: {s:?}: {e}"))?;
            allow.push(net);
        }
    }
    let timeout = get("notify_timeout_s")
        .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
        .unwrap_or(60.0);
    Ok(Some(crate::osc::OscSettings {
        bind,
        port,
        allow,
        notify_timeout: Duration::from_secs_f64(timeout.max(1.0)),
    }))
}

/// A new engine running `patch`, counting into `stats` (control thread).
fn fresh_engine(
    patch: &Patch,
    registry: &Registry,
    cfg: EngineConfig,
    stats: Arc<RtStats>,
) -> anyhow::Result<(EngineHandle, stagebox_engine::Engine)> {
    let schedule = patch.compile(registry, cfg.sample_rate).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut h, e) = EngineHandle::with_stats(cfg, stats);
    h.swap(schedule, registry).map_err(|e| anyhow::anyhow!(e))?;
    Ok((h, e))
}

fn status_line(stats: &RtStats, hist: &Histogram, meters: &BTreeMap<String, MeterState>, notes: u64) -> String {
    let mut s = format!(
        "callbacks {:>7}  xruns {}  cb median {:>6.1} us  max {:>7.1} us  notes {notes}",
        RtStats::get(&stats.callbacks),
        RtStats::get(&stats.xruns),
        hist.quantile_us(0.5),
        hist.max_us()
    );
    for (id, m) in meters {
        let levels: Vec<String> = m.peak.iter().map(|p| format!("{:>6.1}", db(*p))).collect();
        s.push_str(&format!("  | {id} peak dB {}", levels.join(" ")));
    }
    s
}
