//! The session of a live run (main thread = the control thread): it owns the engine handle, the
//! patch, the device and the outputs, and a control loop that is a short dispatcher: each turn
//! it waits for OSC (or 1-3 ms), collects what the audio thread reported, polls the event
//! sources and control surfaces for [`Command`]s, applies them, reloads when due and watches
//! the device.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stagebox_engine::msg::AT_ONCE;
use stagebox_engine::stats::RtStats;
use stagebox_engine::{EngineConfig, EngineHandle, ParamValue, Registry};
use stagebox_patches::Patch;

use super::args::RunArgs;
use super::device::{self, Device};
use super::results::Results;
use super::sources::Sources;
use super::surfaces::Surfaces;
use crate::osc::Status;
use crate::outputs::Outputs;

/// What an event source or control surface asks of the session.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Reload the patch file after `Duration` (editors write in several steps).
    Reload(Duration),
    Load(PathBuf),
    /// Set a runtime parameter (typed on stdin: the value as typed).
    Set {
        node: String,
        param: String,
        value: String,
    },
    /// A parameter fixed at build time, changed by OSC: rebuild the running patch with it.
    Rebuild {
        node: String,
        param: String,
        value: ParamValue,
    },
    Status,
    Stop(&'static str),
}

pub struct Session {
    pub registry: Registry,
    /// The file the next reload reads.
    pub patch_path: PathBuf,
    /// The last patch that loaded (rebuilt when the device goes away and comes back).
    pub current: Patch,
    pub handle: EngineHandle,
    pub cfg: EngineConfig,
    pub stats: Arc<RtStats>,
    pub device: Device,
    pub outputs: Outputs,
    pub results: Results,
    pub surfaces: Surfaces,
    pub started: Instant,
    pub alloc_before: u64,
    pub cpu_wake: Option<crate::cpu_wake::CpuWakeHold>,
    pub memory_locked: bool,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    reload_at: Option<Instant>,
    rebuilds: Vec<(String, String, ParamValue)>,
    /// Where recorders write (every patch this session runs).
    takes_dir: PathBuf,
    stop: Option<&'static str>,
    show_meters: bool,
    last_print: Instant,
    duration: Option<f64>,
}

impl Session {
    /// Loads the patch, opens the device, starts the engine on it and the control surfaces.
    /// None: the patch is wrong (its errors were printed).
    pub fn start(a: &RunArgs) -> anyhow::Result<Option<Session>> {
        let registry = crate::registry();
        let Some(mut patch) = crate::load_or_report(&a.patch, &registry) else {
            return Ok(None);
        };
        let takes_dir = super::args::takes_dir(a);
        patch.graph.takes_dir = Some(takes_dir.clone());
        let probe = match patch.check(&registry, patch.engine.sample_rate.unwrap_or(48000) as f32) {
            Ok(s) => s,
            Err(e) => {
                crate::print_patch_errors(&e);
                return Ok(None);
            }
        };
        let chosen = device::choose(a, &patch, probe.input_channels(), probe.output_channels().max(1))?;
        drop(probe);
        let schedule = match patch.compile(&registry, chosen.sample_rate as f32) {
            Ok(s) => s,
            Err(e) => {
                crate::print_patch_errors(&e);
                return Ok(None);
            }
        };
        let mut cfg = EngineConfig::new(chosen.sample_rate as f32, chosen.in_channels, chosen.out_channels);
        cfg.fade_ms = patch.engine.fade_ms.unwrap_or(30.0);
        let (mut handle, engine) = EngineHandle::new(cfg);
        handle.swap(schedule).map_err(|e| anyhow::anyhow!(e))?;
        // Held for the whole run (through a lost device and its return): dropped at exit.
        let cpu_wake = match (&chosen.opened, a.no_cpu_wake_hold) {
            (Some(_), false) => crate::cpu_wake::CpuWakeHold::request_logged(a.cpu_wake_us),
            _ => None,
        };
        let memory_locked = chosen.opened.is_some() && !a.no_mlock && crate::memlock::lock_all();
        let tempo = crate::midi_in::settings_lenient(patch.midi.as_ref()).2;
        let paced_block = a.buffer.or(patch.engine.block_size).unwrap_or(256) as usize;
        let mut device = Device::start(chosen, engine, handle.latency_frames(), tempo, paced_block)?;
        let makes_midi = handle.nodes().any(|n| n.info.midi_out);
        let midi_port = (makes_midi && !a.no_midi_out && !device.audio.is_jack()).then_some(a.midi_port.as_str());
        let outputs = Outputs::open(midi_port, a.osc_out.as_deref(), a.events_out.as_deref(), device.sample_rate)?;
        let surfaces = match Surfaces::start(a, &patch, &a.patch, &handle, &mut device.audio) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return Ok(None);
            }
        };
        Ok(Some(Session {
            stats: handle.stats.clone(),
            results: Results::new(&handle),
            registry,
            patch_path: a.patch.clone(),
            takes_dir,
            current: patch,
            handle,
            cfg,
            show_meters: !a.quiet,
            device,
            outputs,
            surfaces,
            started: Instant::now(),
            alloc_before: stagebox_engine::alloc_check::violations(),
            cpu_wake,
            memory_locked,
            reloads_ok: 0,
            reloads_failed: 0,
            reload_at: None,
            rebuilds: Vec::new(),
            stop: None,
            last_print: Instant::now(),
            duration: a.duration,
        }))
    }

    /// The control loop, until a signal, `quit` or `--duration`.
    pub fn run(&mut self, sources: &mut Sources) -> anyhow::Result<()> {
        tracing::info!(
            "running {} on {} ({}), {} Hz, {} in / {} out, {}",
            self.patch_path.display(),
            self.device.backend_name,
            self.device.device_name,
            self.device.sample_rate,
            self.device.in_channels,
            self.device.out_channels,
            self.handle.latency_text()
        );
        let mut commands = Vec::new();
        while self.stop.is_none() {
            self.surfaces.wait();
            self.collect();
            commands.extend(sources.poll());
            self.surfaces.poll_midi(&mut self.handle, &self.current.path, &mut commands);
            self.poll_osc(&mut commands);
            for c in commands.drain(..) {
                self.apply(c);
            }
            if self.duration.is_some_and(|d| self.started.elapsed().as_secs_f64() >= d) {
                self.stop = Some("duration");
            }
            self.reload_if_due();
            self.watch_device()?;
            if self.show_meters && self.last_print.elapsed() >= Duration::from_secs(1) {
                self.last_print = Instant::now();
                self.print_status();
            }
        }
        if let Some(why) = self.stop.filter(|w| *w == "signal") {
            tracing::info!("stopping ({why})");
        }
        Ok(())
    }

    /// Timings, meters, notes and counters from the audio thread; frees what it retired.
    fn collect(&mut self) {
        let period_ns = (RtStats::get(&self.stats.last_block_frames) as f64 / self.device.sample_rate as f64 * 1e9) as u64;
        self.results.take_timings(self.device.audio.timings(), period_ns);
        let sr = self.device.sample_rate;
        self.results
            .drain(&mut self.handle, self.surfaces.osc.as_ref(), &mut self.outputs, sr);
        self.handle.collect();
    }

    fn poll_osc(&mut self, commands: &mut Vec<Command>) {
        let Session {
            surfaces,
            handle,
            current,
            results,
            stats,
            device,
            started,
            alloc_before,
            ..
        } = self;
        let midi_dropped = surfaces.midi_dropped();
        let gen = handle.generation();
        let status = || {
            status(
                results,
                stats,
                device.sample_rate,
                *started,
                *alloc_before,
                current,
                midi_dropped,
                gen,
            )
        };
        surfaces.poll_osc(handle, current, &status, commands);
    }

    fn apply(&mut self, c: Command) {
        match c {
            Command::Reload(after) => self.reload_at = Some(Instant::now() + after),
            Command::Load(p) => {
                self.patch_path = p;
                self.reload_at = Some(Instant::now());
            }
            Command::Set { node, param, value } => self.set_from_stdin(&node, &param, &value),
            Command::Rebuild { node, param, value } => self.rebuilds.push((node, param, value)),
            Command::Status => self.print_status(),
            Command::Stop(why) => self.stop = Some(why),
        }
    }

    fn print_status(&mut self) {
        let paced = matches!(self.device.audio, crate::audio_io::AudioIo::Paced(_));
        eprintln!("{}", self.results.status_line(&self.stats, paced));
    }

    fn set_from_stdin(&mut self, node: &str, param: &str, value: &str) {
        let Ok(v) = value.parse::<f32>() else {
            return tracing::warn!("set: `{value}` is not a number");
        };
        let range = match self.handle.resolve_param(node, param) {
            Ok((_, _, spec)) => match spec.kind {
                stagebox_engine::ParamKind::Float { min, max, unit, .. } => Some((min, max, unit)),
                _ => None,
            },
            Err(e) => return tracing::warn!("set: {e}"),
        };
        match self.handle.set_param(node, param, v, AT_ONCE) {
            Ok(()) => match range {
                Some((min, max, unit)) if !(min..=max).contains(&v) => {
                    let c = v.clamp(min, max);
                    tracing::warn!("{node}.{param} = {v} is out of range {min}..{max} {unit}; clamped to {c}");
                }
                _ => tracing::info!("{node}.{param} = {v}"),
            },
            Err(e) => tracing::warn!("set: {e}"),
        }
    }

    /// Replaces the engine handle by `new` (a fresh engine after a device loss or return); the
    /// old one frees what its engine retired (its engine must be stopped or let go first).
    fn replace_handle(&mut self, new: EngineHandle) {
        let mut old = std::mem::replace(&mut self.handle, new);
        old.drain(|_| {});
        old.collect();
        self.results.replaced(&self.handle);
    }

    /// A lost device: the patch runs on without one; it is reopened when it is back.
    fn watch_device(&mut self) -> anyhow::Result<()> {
        let stalled = self.device.stalled(RtStats::get(&self.stats.callbacks));
        if self.device.audio.device_lost() || stalled {
            self.surfaces.device_lost();
            let (h, e) = self.fresh_engine()?;
            self.device.lost(e)?;
            self.replace_handle(h);
        }
        if let Some(d) = self.device.try_reopen() {
            let (h, e) = self.fresh_engine()?;
            if self.device.back(d, e, h.latency_frames(), self.surfaces.tempo) {
                self.replace_handle(h);
                self.surfaces.open_midi(&mut self.device.audio);
            }
        }
        Ok(())
    }

    /// A new engine running the current patch, counting into the same stats (control thread).
    fn fresh_engine(&self) -> anyhow::Result<(EngineHandle, stagebox_engine::Engine)> {
        let schedule = self
            .current
            .compile(&self.registry, self.cfg.sample_rate)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (mut h, e) = EngineHandle::with_stats(self.cfg, self.stats.clone());
        h.swap(schedule).map_err(|e| anyhow::anyhow!(e))?;
        Ok((h, e))
    }

    /// The file reload or OSC rebuild that is due, if any.
    fn reload_if_due(&mut self) {
        let from_file = self.reload_at.is_some_and(|t| Instant::now() >= t);
        if !from_file && self.rebuilds.is_empty() {
            return;
        }
        let loaded = if from_file {
            self.reload_at = None;
            Patch::load(&self.patch_path, &self.registry).map(|mut p| {
                p.graph.takes_dir = Some(self.takes_dir.clone());
                p
            })
        } else {
            Ok(self.current_with_rebuilds())
        };
        self.swap_in(loaded);
    }

    /// The running patch with the build-time parameters OSC changed.
    fn current_with_rebuilds(&mut self) -> Patch {
        let mut p = self.current.clone();
        for (node, param, value) in self.rebuilds.drain(..) {
            if let Some(n) = p.graph.nodes.iter_mut().find(|n| n.id == node) {
                n.params.insert(param, value);
            }
        }
        p
    }

    /// Compiles `loaded` and crossfades to it; a patch that fails leaves the running one.
    fn swap_in(&mut self, loaded: Result<Patch, stagebox_patches::PatchErrors>) {
        let t0 = Instant::now();
        let compiled = loaded.and_then(|p| p.compile(&self.registry, self.cfg.sample_rate).map(|s| (p, s)));
        let (p, s) = match compiled {
            Ok(x) => x,
            Err(e) => {
                // Clients are told where and what, never the file's lines (docs/security.md).
                self.surfaces.reload_finished(&Err(e.to_string()), None, &self.handle);
                self.reloads_failed += 1;
                tracing::error!("reload failed; the running patch stays:\n{}", pretty(&e.0));
                return;
            }
        };
        let (in_ch, out_ch) = (self.device.in_channels, self.device.out_channels);
        if s.input_channels() > in_ch || s.output_channels() > out_ch {
            tracing::warn!(
                "the new patch wants {} in / {} out channels; the device has {in_ch} / {out_ch}",
                s.input_channels(),
                s.output_channels()
            );
        }
        self.current = p;
        let swapped = self.handle.swap(s);
        let result = swapped.as_ref().map(|_| ()).map_err(|e| e.to_string());
        self.surfaces
            .reload_finished(&result, swapped.is_ok().then_some(&self.current), &self.handle);
        match swapped {
            Ok(gen) => {
                self.reloads_ok += 1;
                self.device.audio.set_latency(self.handle.latency_frames());
                self.results.swapped(&self.handle);
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                tracing::info!(
                    "reloaded {} (generation {gen}, compiled in {ms:.1} ms)",
                    self.current.path.display()
                );
            }
            Err(e) => {
                self.reloads_failed += 1;
                tracing::error!("reload failed: {e}");
            }
        }
    }

    /// Stops audio, flushes the outputs, frees what is left. Returns the run's length (s).
    pub fn finish(&mut self) -> f64 {
        self.device.audio.stop();
        self.outputs.flush();
        self.handle.drain(|_| {});
        self.handle.collect();
        let elapsed = self.started.elapsed().as_secs_f64();
        tracing::info!(
            "stopped after {elapsed:.1} s: {} callbacks, {} xruns, callback median {:.1} us, p99 {:.1} us, max {:.1} us",
            RtStats::get(&self.stats.callbacks),
            RtStats::get(&self.stats.xruns),
            self.results.hist.quantile_us(0.5),
            self.results.hist.quantile_us(0.99),
            self.results.hist.max_us()
        );
        elapsed
    }
}

fn pretty(errors: &[stagebox_patches::PatchError]) -> String {
    errors.iter().map(|x| x.pretty()).collect::<Vec<_>>().join("\n")
}

/// What `/stagebox/status` answers.
#[allow(clippy::too_many_arguments)]
fn status(
    results: &Results,
    stats: &RtStats,
    sr: u32,
    started: Instant,
    alloc_before: u64,
    patch: &Patch,
    midi_dropped: u64,
    gen: u64,
) -> Status {
    let period_us = RtStats::get(&stats.last_block_frames) as f64 / sr as f64 * 1e6;
    Status {
        cpu_load: if period_us > 0.0 {
            (results.hist.mean_us() / period_us) as f32
        } else {
            0.0
        },
        xruns: RtStats::get(&stats.xruns),
        late_windows: results.late_windows(),
        sample_rate: sr,
        block_size: RtStats::get(&stats.last_block_frames) as u32,
        uptime_s: started.elapsed().as_secs_f64(),
        late_callbacks: results.late_callbacks,
        notes: results.notes_emitted,
        rt_allocations: stagebox_engine::alloc_check::violations() - alloc_before,
        frames: RtStats::get(&stats.frames),
        patch: patch.path.display().to_string(),
        midi_dropped,
        models: results
            .inference
            .iter()
            .filter(|((g, _), _)| *g == gen)
            .map(|((_, id), c)| (id.clone(), *c))
            .collect(),
    }
}
