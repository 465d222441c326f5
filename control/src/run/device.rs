//! The audio device through a run (main thread): choosing and opening it at start (the demo
//! clip when `auto` finds none), noticing it went away (the patch keeps running on the paced
//! clock with silence in), and reconnecting every 2 s until it is back.

use std::time::{Duration, Instant};

use anyhow::Context;
use stagebox_engine::backend::jack::JackOptions;
use stagebox_engine::backend::live::{HostChoice, LiveError, LiveOptions};
use stagebox_engine::backend::paced::Paced;
use stagebox_engine::Engine;
use stagebox_patches::Patch;

use super::args::RunArgs;
use crate::audio_io::{AudioIo, BackendArg, DeviceChoice, Opened};

/// The clip played when no audio device is found.
pub const DEMO_CLIP: &[u8] = include_bytes!("../../../assets/demo.wav");

pub struct Device {
    pub audio: AudioIo,
    pub choice: DeviceChoice,
    /// The stats' `backend`: "JACK", "ALSA", "none", "none (device lost)".
    pub backend_name: String,
    pub device_name: String,
    pub demo: bool,
    pub sample_rate: u32,
    pub in_channels: usize,
    pub out_channels: usize,
    pub losses: u64,
    pub recoveries: u64,
    lost_since: Option<Instant>,
    last_try: Instant,
    paced_block: usize,
    /// The callback count last seen moving, and when.
    progress: (u64, Instant),
}

/// A device chosen and open, or the demo (None) when `auto` finds none.
pub struct Chosen {
    pub opened: Option<Opened>,
    pub choice: DeviceChoice,
    pub sample_rate: u32,
    pub in_channels: usize,
    pub out_channels: usize,
}

/// What `run` asks of the device, from the command line and the patch.
fn device_choice(a: &RunArgs, patch: &Patch, want_in: usize, want_out: usize) -> DeviceChoice {
    let (control_port, clock_out, _) = crate::midi_in::settings_lenient(patch.midi.as_ref());
    DeviceChoice {
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
            control_port: (!a.no_midi_in).then_some(control_port),
            midi_in_port: (!a.no_midi_in).then(|| "midi_in".to_string()),
            clock_port: (!a.no_midi_in && clock_out).then(|| "clock".to_string()),
            autoconnect: true,
        },
    }
}

/// Opens the device the command line asks for (control thread, at start).
pub fn choose(a: &RunArgs, patch: &Patch, want_in: usize, want_out: usize) -> anyhow::Result<Chosen> {
    let choice = device_choice(a, patch, want_in, want_out);
    let opened = match a.backend {
        BackendArg::None => None,
        _ => match Opened::open(&choice) {
            Ok(d) => Some(d),
            Err(e) if a.backend == BackendArg::Auto => {
                let why = match &e {
                    LiveError::NoDevice(r) | LiveError::Backend(r) => r,
                };
                eprintln!("stagebox: no audio device is available: {why}.");
                eprintln!(
                    "stagebox: playing the bundled demo clip through {} in real time instead; levels below.",
                    a.patch.display()
                );
                eprintln!("stagebox: connect a sound card or start JACK, then see `stagebox devices`.");
                None
            }
            Err(e) => anyhow::bail!(
                "cannot open the {} backend: {e}",
                if a.backend == BackendArg::Jack { "JACK" } else { "ALSA" }
            ),
        },
    };
    let (sample_rate, in_channels, out_channels) = match &opened {
        Some(d) => (d.sample_rate(), d.in_channels(), d.out_channels()),
        None => (a.sample_rate.or(patch.engine.sample_rate).unwrap_or(48000), want_in, want_out),
    };
    Ok(Chosen {
        opened,
        choice,
        sample_rate,
        in_channels,
        out_channels,
    })
}

impl Device {
    /// Starts `engine` on the chosen device, or on the paced clock with the demo clip.
    pub fn start(c: Chosen, engine: Engine, latency_frames: u32, tempo: f64, paced_block: usize) -> anyhow::Result<Device> {
        let (backend_name, device_name, demo, audio) = match c.opened {
            Some(d) => {
                let (b, n) = (d.host_name(), d.device_name());
                (b, n, false, d.start(engine, latency_frames, tempo).context("starting audio")?)
            }
            None => {
                let demo = demo_input(c.sample_rate, c.in_channels)?;
                (
                    "none".into(),
                    "demo".into(),
                    true,
                    AudioIo::Paced(Paced::start(engine, paced_block, demo)?),
                )
            }
        };
        Ok(Device {
            audio,
            choice: c.choice,
            backend_name,
            device_name,
            demo,
            sample_rate: c.sample_rate,
            in_channels: c.in_channels,
            out_channels: c.out_channels,
            losses: 0,
            recoveries: 0,
            lost_since: None,
            last_try: Instant::now(),
            paced_block,
            progress: (0, Instant::now()),
        })
    }

    /// Whether a live device stopped calling back (`callbacks` has not moved for 3 s): a card
    /// lost without an error (cpal may loop on POLLERR), or a JACK client the server dropped.
    pub fn stalled(&mut self, callbacks: u64) -> bool {
        if callbacks != self.progress.0 || matches!(self.audio, AudioIo::Paced(_) | AudioIo::Stopped(_)) {
            self.progress = (callbacks, Instant::now());
            return false;
        }
        let stalled = self.progress.1.elapsed() >= Duration::from_secs(3);
        if stalled {
            tracing::error!("the audio device has not called back for 3 s");
            self.progress = (callbacks, Instant::now());
        }
        stalled
    }

    /// The device went away: `engine` (a fresh one) runs on the paced clock instead.
    pub fn lost(&mut self, engine: Engine) -> anyhow::Result<()> {
        self.losses += 1;
        tracing::error!("the audio device went away; the patch keeps running without a device, retrying every 2 s");
        let paced = AudioIo::Paced(Paced::start(engine, self.paced_block, Vec::new())?);
        std::mem::replace(&mut self.audio, paced).abandon();
        self.backend_name = "none (device lost)".into();
        self.lost_since = Some(Instant::now());
        self.last_try = Instant::now();
        Ok(())
    }

    /// Every 2 s while lost: the device, if it is back as it was (same rate and channels).
    pub fn try_reopen(&mut self) -> Option<Opened> {
        if self.lost_since.is_none() || self.last_try.elapsed() < Duration::from_secs(2) {
            return None;
        }
        self.last_try = Instant::now();
        match Opened::open(&self.choice) {
            Ok(d)
                if d.sample_rate() == self.sample_rate && d.in_channels() == self.in_channels && d.out_channels() == self.out_channels =>
            {
                Some(d)
            }
            Ok(_) => {
                tracing::warn!("a device is back with another rate or channel count; still waiting for the original");
                None
            }
            Err(_) => None,
        }
    }

    /// Starts `engine` on the device that came back (the paced clock stops once it runs). On
    /// failure the paced clock goes on with the engine it has. True when the device runs.
    pub fn back(&mut self, d: Opened, engine: Engine, latency_frames: u32, tempo: f64) -> bool {
        let name = d.host_name();
        match d.start(engine, latency_frames, tempo) {
            Ok(audio) => {
                drop(std::mem::replace(&mut self.audio, audio));
                self.recoveries += 1;
                self.backend_name = name;
                self.lost_since = None;
                self.progress.1 = Instant::now();
                tracing::info!("the audio device is back");
                true
            }
            Err(err) => {
                tracing::warn!("the device came back but would not start: {err}");
                false
            }
        }
    }
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
