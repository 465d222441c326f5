//! The audio device of a live run (control thread): which backend (JACK's native client, ALSA
//! through cpal, or none: the paced clock), opening it, starting the engine on it, and what each
//! running backend hands the control side (callback timings, device loss, MIDI ports).

use std::sync::Arc;

use stagebox_engine::backend::jack::{JackDevice, JackOptions, JackRunning};
use stagebox_engine::backend::live::{self, HostChoice, LiveDevice, LiveError, LiveOptions};
use stagebox_engine::backend::paced::Paced;
use stagebox_engine::device_midi::{ClockShared, PortMidi};
use stagebox_engine::Engine;

/// Which backend `run` asked for.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum BackendArg {
    /// JACK if a server is running, else ALSA; the demo clip if neither has a device.
    Auto,
    Jack,
    Alsa,
    /// No device: real-time pace on a plain thread, the demo clip as input.
    None,
}

/// Everything needed to open the device again (after a loss).
#[derive(Clone, Debug)]
pub struct DeviceChoice {
    pub backend: BackendArg,
    pub alsa: LiveOptions,
    pub jack: JackOptions,
}

/// A device chosen and open, not yet running.
pub enum Opened {
    Jack(JackDevice),
    Alsa(LiveDevice),
}

impl Opened {
    /// Opens the device `choice` names: JACK when asked, or on `auto` when a server runs.
    pub fn open(choice: &DeviceChoice) -> Result<Opened, LiveError> {
        let jack = match choice.backend {
            BackendArg::Jack => true,
            BackendArg::Auto => live::jack_server_running(),
            BackendArg::Alsa | BackendArg::None => false,
        };
        if jack {
            return JackDevice::open(&choice.jack).map(Opened::Jack);
        }
        let mut alsa = choice.alsa.clone();
        alsa.host = HostChoice::Alsa;
        LiveDevice::open(&alsa).map(Opened::Alsa)
    }

    pub fn sample_rate(&self) -> u32 {
        match self {
            Opened::Jack(d) => d.sample_rate(),
            Opened::Alsa(d) => d.sample_rate(),
        }
    }
    pub fn in_channels(&self) -> usize {
        match self {
            Opened::Jack(d) => d.in_channels(),
            Opened::Alsa(d) => d.in_channels(),
        }
    }
    pub fn out_channels(&self) -> usize {
        match self {
            Opened::Jack(d) => d.out_channels(),
            Opened::Alsa(d) => d.out_channels(),
        }
    }
    /// "JACK" or "ALSA" (the stats' `backend`).
    pub fn host_name(&self) -> String {
        match self {
            Opened::Jack(_) => "JACK".into(),
            Opened::Alsa(d) => d.host_name().to_string(),
        }
    }
    pub fn device_name(&self) -> String {
        match self {
            Opened::Jack(d) => d.client_name().to_string(),
            Opened::Alsa(d) => d.device_name(),
        }
    }

    /// Starts the engine on the device. `latency_frames` is reported to JACK; `tempo` starts
    /// its MIDI clock.
    pub fn start(self, engine: Engine, latency_frames: u32, tempo: f64) -> Result<AudioIo, LiveError> {
        match self {
            Opened::Jack(d) => {
                let name = d.client_name().to_string();
                let r = d.start(engine, latency_frames, tempo)?;
                tracing::info!("JACK client `{name}`: audio, MIDI in (midi_in, control) and out (notes, clock) in one process callback");
                Ok(AudioIo::Jack(r))
            }
            Opened::Alsa(d) => d.start(engine).map(AudioIo::Alsa),
        }
    }
}

/// A running backend.
pub enum AudioIo {
    Jack(JackRunning),
    Alsa(live::Running),
    Paced(Paced),
    /// Audio stopped (the run is over): only an empty timing ring is left.
    Stopped(rtrb::Consumer<u32>),
}

impl AudioIo {
    /// Stops the backend (its engine is dropped with it).
    pub fn stop(&mut self) {
        let (_, rx) = rtrb::RingBuffer::new(1);
        drop(std::mem::replace(self, AudioIo::Stopped(rx)));
    }

    /// Callback durations (ns), one per callback.
    pub fn timings(&mut self) -> &mut rtrb::Consumer<u32> {
        match self {
            AudioIo::Jack(r) => &mut r.timings,
            AudioIo::Alsa(r) => &mut r.timings,
            AudioIo::Paced(p) => &mut p.timings,
            AudioIo::Stopped(t) => t,
        }
    }
    /// Whether the backend reported its device gone.
    pub fn device_lost(&mut self) -> bool {
        match self {
            AudioIo::Jack(r) => r.device_lost(),
            AudioIo::Alsa(r) => r.device_lost(),
            AudioIo::Paced(_) | AudioIo::Stopped(_) => false,
        }
    }
    pub fn is_jack(&self) -> bool {
        matches!(self, AudioIo::Jack(_))
    }
    /// Tells the server the graph's latency (JACK; a no-op elsewhere).
    pub fn set_latency(&self, frames: u32) {
        if let AudioIo::Jack(r) = self {
            r.set_latency(frames);
        }
    }
    /// The ring of the backend's own `control` MIDI port (JACK), taken once.
    pub fn take_control_midi(&mut self) -> Option<(rtrb::Consumer<PortMidi>, Arc<std::sync::atomic::AtomicU64>)> {
        match self {
            AudioIo::Jack(r) => r.control_in.take(),
            _ => None,
        }
    }
    /// The clock the backend sends itself (JACK's `clock` port).
    pub fn clock(&self) -> Option<Arc<ClockShared>> {
        match self {
            AudioIo::Jack(r) => r.clock.clone(),
            _ => None,
        }
    }
    /// Lets go of a backend whose device died; its engine (if it can be had back) is dropped
    /// here, on the control thread, so that its schedule's workers stop and its recorders
    /// finish their files. A JACK client of a dead server is deactivated, never closed.
    pub fn abandon(self) {
        match self {
            AudioIo::Jack(r) => drop(r.into_engine()),
            other => drop(other),
        }
    }
}
