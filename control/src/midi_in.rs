//! MIDI in (control thread). The port is JACK's own `control` port, read in the engine's
//! process callback, or a midir port (ALSA) whose callback runs on midir's thread: either only
//! copies each short message and its time into an rtrb ring of fixed capacity (a full ring
//! counts a drop). The control thread
//! (`MidiIn::poll`, from the `run` loop) maps controllers, notes, bend and aftertouch to
//! parameters (through `EngineHandle::set_param`, the engine's event ring), learns bindings,
//! switches patches on program change and follows clock. Mappings are in `midi_map`, clock in
//! and out in `midi_clock`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use stagebox_engine::msg::AT_ONCE;
use stagebox_engine::EngineHandle;

use crate::midi_clock::clock_bpm;
pub use crate::midi_clock::ClockOut;
pub use crate::midi_map::{settings, settings_lenient, Mapping, MidiSettings, Source};

/// Messages waiting for the control thread.
pub const RING: usize = 4096;

use stagebox_engine::device_midi::PortMidi as Raw;

/// What the run loop must do.
#[derive(Debug, Clone, PartialEq)]
pub enum MidiAction {
    Load(PathBuf),
    /// A learned binding: (address, what moved).
    Learned(String, String),
}

/// Clock followed from MIDI in.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClockIn {
    pub bpm: Option<f64>,
    pub running: bool,
    /// Song position in 16th notes (from 0xF2, advanced by ticks).
    pub position_16ths: f64,
    pub ticks: u64,
}

pub struct MidiIn {
    /// The midir port (ALSA); None when the backend reads the port itself (JACK).
    _conn: Option<Conn>,
    rx: rtrb::Consumer<Raw>,
    pub dropped: Arc<AtomicU64>,
    pub received: u64,
    pub maps: Vec<Mapping>,
    programs: Vec<PathBuf>,
    armed: Option<(String, String)>,
    pub learned: Vec<Mapping>,
    pub clock: ClockIn,
    tick_times: Vec<u64>,
    /// Parameters set since the run loop last took them: (node, param, value).
    pub sets: Vec<(String, String, f64)>,
    /// Callback-to-dispatch time of each channel message (µs).
    pub dispatch_us: Vec<u32>,
}

impl MidiIn {
    /// Opens the virtual input port (control thread).
    pub fn open(s: &MidiSettings) -> Result<MidiIn, String> {
        let (conn, rx, dropped) = open_port(&s.port)?;
        Ok(Self::from_ring(s, rx, dropped, Some(conn)))
    }

    /// MIDI in from a ring a backend fills from its own port (JACK's process callback).
    pub fn from_ring(s: &MidiSettings, rx: rtrb::Consumer<Raw>, dropped: Arc<AtomicU64>, conn: Option<Conn>) -> MidiIn {
        tracing::info!("MIDI in on port `{}`", s.port);
        MidiIn {
            _conn: conn,
            rx,
            dropped,
            received: 0,
            maps: s.maps.clone(),
            programs: s.programs.clone(),
            armed: None,
            learned: Vec::new(),
            clock: ClockIn::default(),
            tick_times: Vec::with_capacity(32),
            sets: Vec::new(),
            dispatch_us: Vec::new(),
        }
    }

    /// Arms MIDI learn: the next controller, note, bend or aftertouch moved binds to it.
    pub fn arm(&mut self, node: &str, param: &str) {
        self.armed = Some((node.into(), param.into()));
    }

    /// Handles what arrived (control thread). `current` gives a parameter's value as the
    /// control side knows it (for soft takeover and relative controls).
    pub fn poll(&mut self, handle: &mut EngineHandle, current: &dyn Fn(&str, &str) -> Option<f64>) -> Vec<MidiAction> {
        let mut actions = Vec::new();
        while let Ok(raw) = self.rx.pop() {
            self.received += 1;
            if raw.bytes[0] < 0xf0 && self.dispatch_us.len() < 1 << 20 {
                self.dispatch_us.push(raw.at.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            self.message(raw, handle, current, &mut actions);
        }
        actions
    }

    /// New mappings (after a reload), keeping the clock and learn state.
    pub fn set_maps(&mut self, s: &MidiSettings) {
        self.maps = s.maps.clone();
        self.programs = s.programs.clone();
    }

    fn message(&mut self, raw: Raw, handle: &mut EngineHandle, current: &dyn Fn(&str, &str) -> Option<f64>, actions: &mut Vec<MidiAction>) {
        let b = raw.bytes;
        // Channel messages carry data bytes (program change and aftertouch one, the rest two).
        let need = match b[0] & 0xf0 {
            0xc0 | 0xd0 => 2,
            0x80..=0xe0 => 3,
            _ => 1,
        };
        if raw.len < need {
            return;
        }
        if b[0] >= 0xf0 {
            return self.system(b, raw.time_us);
        }
        let (kind, ch) = (b[0] & 0xf0, b[0] & 0x0f);
        if kind == 0xc0 {
            return self.program_change(b[1], ch, actions);
        }
        let Some(moved) = control_moved(b) else { return };
        if let Some((node, param)) = self.armed.take() {
            self.learn(moved.0, ch, &node, &param, handle, actions);
        }
        self.apply_maps(moved, ch, b[2], handle, current);
    }

    /// Clock, start, continue, stop and song position.
    fn system(&mut self, b: [u8; 3], time_us: u64) {
        match b[0] {
            0xf8 => {
                self.clock.ticks += 1;
                if self.clock.running {
                    self.clock.position_16ths += 1.0 / 6.0;
                }
                if self.tick_times.len() >= 25 {
                    self.tick_times.remove(0);
                }
                self.tick_times.push(time_us);
                if let Some(bpm) = clock_bpm(&self.tick_times) {
                    self.clock.bpm = Some(bpm);
                }
            }
            0xfa => {
                self.clock.running = true;
                self.clock.position_16ths = 0.0;
            }
            0xfb => self.clock.running = true,
            0xfc => self.clock.running = false,
            0xf2 => self.clock.position_16ths = ((b[2] as u16) << 7 | b[1] as u16) as f64,
            _ => {}
        }
    }

    fn program_change(&mut self, program: u8, ch: u8, actions: &mut Vec<MidiAction>) {
        match self.programs.get(program as usize) {
            Some(p) => actions.push(MidiAction::Load(p.clone())),
            None => tracing::warn!("program change {program} on channel {}: no such entry in [midi] programs", ch + 1),
        }
    }

    /// MIDI learn: binds the control that moved to the armed parameter.
    fn learn(&mut self, source: Source, ch: u8, node: &str, param: &str, handle: &EngineHandle, actions: &mut Vec<MidiAction>) {
        let Some((_, specs)) = handle.node_params().find(|(n, _)| n.id == node) else {
            return;
        };
        let Some(spec) = specs.iter().find(|p| p.name == param) else {
            return;
        };
        let map = Mapping::new(source, Some(ch), node, param, spec);
        let what = format!("{source:?} on channel {}", ch + 1);
        actions.push(MidiAction::Learned(format!("/stagebox/node/{node}/{param}"), what));
        self.learned.push(map.clone());
        self.maps.push(map);
    }

    /// Every mapping the control that moved drives sets its parameter.
    fn apply_maps(
        &mut self,
        moved: (Source, f64, i32),
        ch: u8,
        data: u8,
        handle: &mut EngineHandle,
        current: &dyn Fn(&str, &str) -> Option<f64>,
    ) {
        let (source, x, steps) = moved;
        for m in &mut self.maps {
            if m.channel.is_some_and(|c| c != ch) {
                continue;
            }
            let Some(x) = m.position(source, x, data) else { continue };
            let now = current(&m.node, &m.param).unwrap_or_else(|| {
                handle
                    .node_params()
                    .find(|(n, _)| n.id == m.node)
                    .and_then(|(_, s)| s.iter().find(|p| p.name == m.param))
                    .and_then(|s| s.default_value().as_f64())
                    .unwrap_or(0.0)
            });
            if let Some(v) = m.apply(x, steps, now) {
                match handle.set_param(&m.node, &m.param, v as f32, AT_ONCE) {
                    Ok(()) => self.sets.push((m.node.clone(), m.param.clone(), v)),
                    Err(e) => tracing::warn!("MIDI map to {}.{}: {e}", m.node, m.param),
                }
            }
        }
    }

    /// Appends the learned bindings to the patch file (`[[midi.map]]` tables).
    pub fn save_learned(&mut self, patch: &Path) -> Result<usize, String> {
        if self.learned.is_empty() {
            return Ok(0);
        }
        let mut text = std::fs::read_to_string(patch).map_err(|e| format!("{}: {e}", patch.display()))?;
        for m in &self.learned {
            text.push_str(&m.to_toml());
        }
        std::fs::write(patch, text).map_err(|e| format!("{}: {e}", patch.display()))?;
        Ok(std::mem::take(&mut self.learned).len())
    }
}

/// A midir input port (ALSA, or JACK through midir) whose callback copies each short message
/// and its time into a ring of fixed capacity (a full ring counts a drop).
#[allow(clippy::type_complexity)]
fn open_port(name: &str) -> Result<(Conn, rtrb::Consumer<Raw>, Arc<AtomicU64>), String> {
    let input = midir::MidiInput::new("stagebox").map_err(|e| e.to_string())?;
    let (tx, rx) = rtrb::RingBuffer::<Raw>::new(RING);
    let dropped = Arc::new(AtomicU64::new(0));
    use midir::os::unix::VirtualInput;
    let conn = input
        .create_virtual(
            name,
            // midir's thread (JACK's process thread): copy, never block or allocate.
            |t, msg, (tx, dropped)| {
                if msg.is_empty() || msg.len() > 3 {
                    return;
                }
                let mut bytes = [0u8; 3];
                bytes[..msg.len()].copy_from_slice(msg);
                let raw = Raw {
                    time_us: t,
                    at: Instant::now(),
                    len: msg.len() as u8,
                    bytes,
                };
                if tx.push(raw).is_err() {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            },
            (tx, dropped.clone()),
        )
        .map_err(|e| e.to_string())?;
    Ok((conn, rx, dropped))
}

type Conn = midir::MidiInputConnection<(rtrb::Producer<Raw>, Arc<AtomicU64>)>;

/// Instrument notes from a midir port `midi_in` (ALSA) to the patch's `midi_in` nodes, as soon
/// as the control thread has them (JACK's own `midi_in` port places them at their frame).
pub struct NotesIn {
    _conn: Conn,
    rx: rtrb::Consumer<Raw>,
    pub dropped: Arc<AtomicU64>,
}

impl NotesIn {
    pub fn open(port: &str) -> Result<NotesIn, String> {
        let (conn, rx, dropped) = open_port(port)?;
        tracing::info!("MIDI notes in on port `{port}` (to the patch's midi_in nodes)");
        Ok(NotesIn { _conn: conn, rx, dropped })
    }

    /// Hands what arrived to the engine (control thread).
    pub fn poll(&mut self, handle: &mut EngineHandle) {
        while let Ok(raw) = self.rx.pop() {
            if raw.len as usize == stagebox_engine::device_midi::message_len(raw.bytes[0]) {
                handle.send_device_midi(raw.bytes, AT_ONCE);
            }
        }
    }
}

/// The control a channel message moved: (source, 0..1 position, relative steps for encoders).
fn control_moved(b: [u8; 3]) -> Option<(Source, f64, i32)> {
    Some(match b[0] & 0xf0 {
        0xb0 => (
            Source::Cc(b[1]),
            b[2] as f64 / 127.0,
            if b[2] < 64 { b[2] as i32 } else { b[2] as i32 - 128 },
        ),
        0x90 if b[2] > 0 => (Source::Note(b[1]), b[2] as f64 / 127.0, 0),
        0xe0 => (Source::Bend, ((b[2] as u16) << 7 | b[1] as u16) as f64 / 16383.0, 0),
        0xd0 => (Source::Aftertouch, b[1] as f64 / 127.0, 0),
        0xa0 => (Source::KeyPressure(b[1]), b[2] as f64 / 127.0, 0),
        _ => return None,
    })
}
