//! MIDI in and MIDI clock (midir: JACK or ALSA ports). The input port's callback runs on
//! midir's thread (JACK's process thread, real time): it only copies each short message and its
//! time into an rtrb ring of fixed capacity (a full ring counts a drop). The control thread
//! (`MidiIn::poll`, from the `run` loop) maps controllers, notes, bend and aftertouch to
//! parameters (through `EngineHandle::set_param`, the engine's event ring), learns bindings,
//! switches patches on program change and follows clock. Clock out is its own thread.
//!
//! The patch's `[midi]` table:
//!
//! ```toml
//! [midi]
//! port = "control"                 # the input port's name (JACK: stagebox:control)
//! programs = ["a.toml", "b.toml"]  # program change n loads the n-th (relative to the patch)
//! clock_out = false                # send MIDI clock (24 PPQN) from the internal tempo
//! tempo = 120.0                    # the internal tempo (also /stagebox/tempo over OSC)
//!
//! [[midi.map]]
//! cc = 7                # or: cc14 = 1 (CC 1 + CC 33 as 14 bits), note = 60 (velocity),
//!                       #     bend = true, aftertouch = true (channel pressure),
//!                       #     key_pressure = 60 (polyphonic aftertouch of one key)
//! channel = 1           # 1-16; omitted: any
//! to = "vol.gain_db"    # node.param
//! min = -60.0           # the range the control sweeps (default: the parameter's)
//! max = 6.0
//! curve = "linear"      # linear, exp (fine at the bottom), log (fine at the top)
//! mode = "absolute"     # or "relative" (endless encoders: 1..63 up, 65..127 down)
//! takeover = "soft"     # soft: the control takes over once it passes the current value; jump
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stagebox_engine::device_midi::ClockShared;
use stagebox_engine::msg::AT_ONCE;
use stagebox_engine::param::{ParamKind, ParamSpec};
use stagebox_engine::EngineHandle;

/// Messages waiting for the control thread.
pub const RING: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    Cc(u8),
    Cc14(u8),
    Note(u8),
    Bend,
    Aftertouch,
    /// Polyphonic aftertouch of one key.
    KeyPressure(u8),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Curve {
    Linear,
    Exp,
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Absolute,
    Relative,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Takeover {
    Jump,
    Soft,
}

/// One binding of a control to a parameter.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub source: Source,
    /// 0-15; None: any channel.
    pub channel: Option<u8>,
    pub node: String,
    pub param: String,
    pub min: f64,
    pub max: f64,
    pub curve: Curve,
    pub mode: Mode,
    pub takeover: Takeover,
    /// The parameter's value as this mapping last set or found it, and whether a soft takeover
    /// has caught it; the last position of the control (0..1).
    value: Option<f64>,
    caught: bool,
    last_x: Option<f64>,
    /// A 14-bit controller's MSB waiting for its LSB.
    msb: Option<u8>,
}

impl Mapping {
    pub fn new(source: Source, channel: Option<u8>, node: &str, param: &str, spec: &ParamSpec) -> Mapping {
        let (min, max) = range(spec);
        Mapping {
            source,
            channel,
            node: node.into(),
            param: param.into(),
            min,
            max,
            curve: Curve::Linear,
            mode: Mode::Absolute,
            takeover: Takeover::Jump,
            value: None,
            caught: false,
            last_x: None,
            msb: None,
        }
    }

    /// The TOML of this binding, for saving into a patch.
    pub fn to_toml(&self) -> String {
        let src = match self.source {
            Source::Cc(n) => format!("cc = {n}"),
            Source::Cc14(n) => format!("cc14 = {n}"),
            Source::Note(n) => format!("note = {n}"),
            Source::Bend => "bend = true".into(),
            Source::Aftertouch => "aftertouch = true".into(),
            Source::KeyPressure(n) => format!("key_pressure = {n}"),
        };
        let ch = self.channel.map(|c| format!("channel = {}\n", c + 1)).unwrap_or_default();
        format!("\n[[midi.map]]\n{src}\n{ch}to = \"{}.{}\"\n", self.node, self.param)
    }

    /// The value for a control position `x` (0..1) or a relative step count, honouring the
    /// curve, mode and takeover; None when a soft takeover has not caught the value yet.
    fn apply(&mut self, x: f64, steps: i32, current: f64) -> Option<f64> {
        let span = self.max - self.min;
        if self.mode == Mode::Relative {
            let base = self.value.unwrap_or(current);
            let v = (base + steps as f64 * span / 127.0).clamp(self.min.min(self.max), self.min.max(self.max));
            self.value = Some(v);
            return Some(v);
        }
        let shaped = match self.curve {
            Curve::Linear => x,
            Curve::Exp => x * x,
            Curve::Log => x.sqrt(),
        };
        let v = self.min + shaped * span;
        if self.takeover == Takeover::Soft && !self.caught {
            // Caught when the control reaches the current value or passes it.
            let cur = self.value.unwrap_or(current);
            let near = (v - cur).abs() <= span.abs() / 64.0;
            let crossed = self.last_x.is_some_and(|lx| {
                let lv = self.min + lx * span;
                (lv - cur).signum() != (v - cur).signum()
            });
            self.last_x = Some(x);
            if !(near || crossed) {
                return None;
            }
            self.caught = true;
        }
        self.last_x = Some(x);
        self.value = Some(v);
        Some(v)
    }
}

fn range(spec: &ParamSpec) -> (f64, f64) {
    match spec.kind {
        ParamKind::Float { min, max, .. } => (min as f64, max as f64),
        ParamKind::Int { min, max, .. } => (min as f64, max as f64),
        ParamKind::Bool { .. } => (0.0, 1.0),
        ParamKind::Enum { options, .. } => (0.0, options.len().saturating_sub(1) as f64),
        ParamKind::Str { .. } => (0.0, 0.0),
    }
}

/// Reads `[midi]` (control thread). Errors name the setting.
pub struct MidiSettings {
    pub port: String,
    pub programs: Vec<PathBuf>,
    pub clock_out: bool,
    pub tempo: f64,
    pub maps: Vec<Mapping>,
}

/// The `[midi]` settings a backend needs before the engine exists: the control port's name,
/// whether to send clock, and the tempo (defaults where missing or wrong; `settings` checks).
pub fn settings_lenient(midi: Option<&toml::Value>) -> (String, bool, f64) {
    let get = |k: &str| midi.and_then(|v| v.as_table()).and_then(|t| t.get(k));
    let port = get("port").and_then(|v| v.as_str()).unwrap_or("control").to_string();
    let clock_out = get("clock_out").and_then(|v| v.as_bool()).unwrap_or(false);
    let tempo = get("tempo")
        .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
        .unwrap_or(120.0);
    (port, clock_out, tempo.clamp(20.0, 400.0))
}

pub fn settings(midi: Option<&toml::Value>, patch_path: &Path, handle: &EngineHandle) -> Result<MidiSettings, String> {
    let t = midi.and_then(|v| v.as_table());
    let dir = patch_path.parent().unwrap_or(Path::new("."));
    let get = |k: &str| t.and_then(|t| t.get(k));
    if let Some(t) = t {
        for k in t.keys() {
            if !["port", "programs", "clock_out", "tempo", "map"].contains(&k.as_str()) {
                return Err(format!("[midi] has no setting `{k}` (port, programs, clock_out, tempo, map)"));
            }
        }
    }
    let port = get("port").and_then(|v| v.as_str()).unwrap_or("control").to_string();
    let programs = get("programs")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|p| p.as_str()).map(|p| dir.join(p)).collect())
        .unwrap_or_default();
    let clock_out = get("clock_out").and_then(|v| v.as_bool()).unwrap_or(false);
    let tempo = get("tempo")
        .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
        .unwrap_or(120.0);
    if !(20.0..=400.0).contains(&tempo) {
        return Err(format!("[midi] tempo = {tempo} is out of range 20..400"));
    }
    let mut maps = Vec::new();
    for (i, m) in get("map").and_then(|v| v.as_array()).into_iter().flatten().enumerate() {
        let err = |msg: String| format!("[[midi.map]] number {}: {msg}", i + 1);
        let m = m.as_table().ok_or_else(|| err("not a table".into()))?;
        for k in m.keys() {
            if ![
                "cc",
                "cc14",
                "note",
                "bend",
                "aftertouch",
                "channel",
                "to",
                "min",
                "max",
                "curve",
                "mode",
                "takeover",
            ]
            .contains(&k.as_str())
            {
                return Err(err(format!("no setting `{k}`")));
            }
        }
        let int = |k: &str| m.get(k).and_then(|v| v.as_integer());
        let source = if let Some(n) = int("cc") {
            Source::Cc(
                u8::try_from(n)
                    .ok()
                    .filter(|n| *n < 128)
                    .ok_or_else(|| err(format!("cc = {n} is not 0..127")))?,
            )
        } else if let Some(n) = int("cc14") {
            Source::Cc14(
                u8::try_from(n)
                    .ok()
                    .filter(|n| *n < 32)
                    .ok_or_else(|| err(format!("cc14 = {n} is not 0..31")))?,
            )
        } else if let Some(n) = int("note") {
            Source::Note(
                u8::try_from(n)
                    .ok()
                    .filter(|n| *n < 128)
                    .ok_or_else(|| err(format!("note = {n} is not 0..127")))?,
            )
        } else if m.get("bend").and_then(|v| v.as_bool()) == Some(true) {
            Source::Bend
        } else if m.get("aftertouch").and_then(|v| v.as_bool()) == Some(true) {
            Source::Aftertouch
        } else if let Some(n) = int("key_pressure") {
            Source::KeyPressure(
                u8::try_from(n)
                    .ok()
                    .filter(|n| *n < 128)
                    .ok_or_else(|| err(format!("key_pressure = {n} is not 0..127")))?,
            )
        } else {
            return Err(err("needs one of cc, cc14, note, bend, aftertouch, key_pressure".into()));
        };
        let channel = match int("channel") {
            None => None,
            Some(c @ 1..=16) => Some(c as u8 - 1),
            Some(c) => return Err(err(format!("channel = {c} is not 1..16"))),
        };
        let to = m
            .get("to")
            .and_then(|v| v.as_str())
            .ok_or_else(|| err("needs `to = \"node.param\"`".into()))?;
        let (node, param) = to
            .split_once('.')
            .ok_or_else(|| err(format!("`to = \"{to}\"` is not node.param")))?;
        let spec = handle
            .node_params()
            .find(|(n, _)| n.id == node)
            .ok_or_else(|| err(format!("no node `{node}`")))?
            .1
            .iter()
            .find(|p| p.name == param)
            .ok_or_else(|| err(format!("node `{node}` has no parameter `{param}`")))?;
        if !spec.is_runtime() {
            return Err(err(format!(
                "`{to}` is fixed when the node is built; map a parameter that changes while running"
            )));
        }
        let mut map = Mapping::new(source, channel, node, param, spec);
        let (lo, hi) = range(spec);
        let num = |k: &str| m.get(k).and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)));
        map.min = num("min").unwrap_or(map.min).clamp(lo, hi);
        map.max = num("max").unwrap_or(map.max).clamp(lo, hi);
        map.curve = match m.get("curve").and_then(|v| v.as_str()).unwrap_or("linear") {
            "linear" => Curve::Linear,
            "exp" => Curve::Exp,
            "log" => Curve::Log,
            c => return Err(err(format!("curve = \"{c}\" (linear, exp, log)"))),
        };
        map.mode = match m.get("mode").and_then(|v| v.as_str()).unwrap_or("absolute") {
            "absolute" => Mode::Absolute,
            "relative" => Mode::Relative,
            c => return Err(err(format!("mode = \"{c}\" (absolute, relative)"))),
        };
        map.takeover = match m.get("takeover").and_then(|v| v.as_str()).unwrap_or("jump") {
            "jump" => Takeover::Jump,
            "soft" => Takeover::Soft,
            c => return Err(err(format!("takeover = \"{c}\" (jump, soft)"))),
        };
        maps.push(map);
    }
    Ok(MidiSettings {
        port,
        programs,
        clock_out,
        tempo,
        maps,
    })
}

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
    _conn: Option<midir::MidiInputConnection<(rtrb::Producer<Raw>, Arc<AtomicU64>)>>,
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
        let input = midir::MidiInput::new("stagebox").map_err(|e| e.to_string())?;
        let (tx, rx) = rtrb::RingBuffer::<Raw>::new(RING);
        let dropped = Arc::new(AtomicU64::new(0));
        use midir::os::unix::VirtualInput;
        let conn = input
            .create_virtual(
                &s.port,
                // midir's thread (JACK's process thread): copy, never block or allocate.
                |t, msg, (tx, dropped)| {
                    if msg.is_empty() || msg.len() > 3 {
                        return;
                    }
                    let mut bytes = [0u8; 3];
                    bytes[..msg.len()].copy_from_slice(msg);
                    if tx
                        .push(Raw {
                            time_us: t,
                            at: Instant::now(),
                            len: msg.len() as u8,
                            bytes,
                        })
                        .is_err()
                    {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                },
                (tx, dropped.clone()),
            )
            .map_err(|e| e.to_string())?;
        Ok(Self::from_ring(s, rx, dropped, Some(conn)))
    }

    /// MIDI in from a ring a backend fills from its own port (JACK's process callback).
    pub fn from_ring(
        s: &MidiSettings,
        rx: rtrb::Consumer<Raw>,
        dropped: Arc<AtomicU64>,
        conn: Option<midir::MidiInputConnection<(rtrb::Producer<Raw>, Arc<AtomicU64>)>>,
    ) -> MidiIn {
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
        match b[0] {
            0xf8 => {
                self.clock.ticks += 1;
                if self.clock.running {
                    self.clock.position_16ths += 1.0 / 6.0;
                }
                self.tick_times.push(raw.time_us);
                if self.tick_times.len() > 25 {
                    self.tick_times.remove(0);
                }
                if let Some(bpm) = clock_bpm(&self.tick_times) {
                    self.clock.bpm = Some(bpm);
                }
                return;
            }
            0xfa => {
                self.clock.running = true;
                self.clock.position_16ths = 0.0;
                return;
            }
            0xfb => {
                self.clock.running = true;
                return;
            }
            0xfc => {
                self.clock.running = false;
                return;
            }
            0xf2 => {
                self.clock.position_16ths = ((b[2] as u16) << 7 | b[1] as u16) as f64;
                return;
            }
            s if s >= 0xf0 => return,
            _ => {}
        }
        let (kind, ch) = (b[0] & 0xf0, b[0] & 0x0f);
        if kind == 0xc0 {
            if let Some(p) = self.programs.get(b[1] as usize) {
                actions.push(MidiAction::Load(p.clone()));
            } else {
                tracing::warn!("program change {} on channel {}: no such entry in [midi] programs", b[1], ch + 1);
            }
            return;
        }
        // The control that moved: (source, 0..1 position or relative steps).
        let (source, x, steps) = match kind {
            0xb0 => (
                Source::Cc(b[1]),
                b[2] as f64 / 127.0,
                if b[2] < 64 { b[2] as i32 } else { b[2] as i32 - 128 },
            ),
            0x90 if b[2] > 0 => (Source::Note(b[1]), b[2] as f64 / 127.0, 0),
            0xe0 => (Source::Bend, ((b[2] as u16) << 7 | b[1] as u16) as f64 / 16383.0, 0),
            0xd0 => (Source::Aftertouch, b[1] as f64 / 127.0, 0),
            0xa0 => (Source::KeyPressure(b[1]), b[2] as f64 / 127.0, 0),
            _ => return,
        };
        if let Some((node, param)) = self.armed.take() {
            if let Some((_, specs)) = handle.node_params().find(|(n, _)| n.id == node) {
                if let Some(spec) = specs.iter().find(|p| p.name == param) {
                    let map = Mapping::new(source, Some(ch), &node, &param, spec);
                    let what = format!("{source:?} on channel {}", ch + 1);
                    actions.push(MidiAction::Learned(format!("/stagebox/node/{node}/{param}"), what));
                    self.learned.push(map.clone());
                    self.maps.push(map);
                }
            }
        }
        let mut i = 0;
        while i < self.maps.len() {
            let m = &mut self.maps[i];
            i += 1;
            if m.channel.is_some_and(|c| c != ch) {
                continue;
            }
            // 14-bit: CC n is the MSB, CC n + 32 the LSB that completes it.
            let x = match (m.source, source) {
                (Source::Cc14(n), Source::Cc(c)) if c == n => {
                    m.msb = Some(b[2]);
                    b[2] as f64 / 127.0
                }
                (Source::Cc14(n), Source::Cc(c)) if c == n + 32 => match m.msb {
                    Some(msb) => ((msb as u16) << 7 | b[2] as u16) as f64 / 16383.0,
                    None => continue,
                },
                (a, b) if a == b => x,
                _ => continue,
            };
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

/// MIDI clock out: 24 ticks a quarter note from the internal tempo. With JACK the backend sends
/// it from its process callback at exact frames (`driven`); elsewhere a thread of its own sends
/// it through a midir port.
pub struct ClockOut {
    shared: Arc<ClockShared>,
    stop: Arc<AtomicBool>,
    /// The thread keeps its port; set when the port's server died: the thread then leaks the
    /// port instead of closing it (closing a dead JACK client crashes).
    leak: Arc<AtomicBool>,
}

impl ClockOut {
    pub fn start(port: &str, bpm: f64) -> Result<ClockOut, String> {
        let out = midir::MidiOutput::new("stagebox").map_err(|e| e.to_string())?;
        use midir::os::unix::VirtualOutput;
        let mut conn = out.create_virtual(port).map_err(|e| e.to_string())?;
        let clock = ClockOut::driven(Arc::new(ClockShared::new(bpm)));
        let (sh, s, l) = (clock.shared.clone(), clock.stop.clone(), clock.leak.clone());
        std::thread::Builder::new()
            .name("stagebox-clock".into())
            .spawn(move || {
                let _ = conn.send(&[0xfa]);
                let mut next = Instant::now();
                while !s.load(Ordering::Relaxed) {
                    next += Duration::from_secs_f64(60.0 / (sh.bpm().max(1.0) * 24.0));
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else if now - next > Duration::from_millis(100) {
                        next = now;
                    }
                    if conn.send(&[0xf8]).is_ok() {
                        sh.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if l.load(Ordering::Relaxed) {
                    std::mem::forget(conn);
                } else {
                    let _ = conn.send(&[0xfc]);
                }
            })
            .map_err(|e| e.to_string())?;
        tracing::info!("MIDI clock out on port `{port}` at {bpm} BPM");
        Ok(clock)
    }

    /// A clock the backend sends from its own callback (JACK's `clock` port): no thread here;
    /// the tempo and the tick count are shared with the callback.
    pub fn driven(shared: Arc<ClockShared>) -> ClockOut {
        ClockOut {
            shared,
            stop: Arc::new(AtomicBool::new(false)),
            leak: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Ticks sent so far.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// Stops the clock after its server died: the port is let go, not closed.
    pub fn stop_without_port(self) {
        self.leak.store(true, Ordering::Relaxed);
    }

    pub fn set_tempo(&self, bpm: f64) {
        self.shared
            .bpm_milli
            .store((bpm.clamp(20.0, 400.0) * 1000.0) as u64, Ordering::Relaxed);
    }
}

impl Drop for ClockOut {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The tempo of an incoming MIDI clock from the arrival times (µs) of its last ticks (24 a
/// beat, at most 25 used): the median of the slopes between every pair of ticks (Theil–Sen), so
/// one tick that arrives late, or a few that arrive bunched after a stall of the sender, do not
/// move it, while the jitter of each tick still averages out. A gap of about two periods
/// followed by a normal one counts as two periods: a tick lost on the way (a JACK client that
/// misses a cycle never sees that cycle's events) does not slow the tempo. None below 7 ticks.
fn clock_bpm(times: &[u64]) -> Option<f64> {
    const MAX: usize = 25;
    if times.len() < 7 {
        return None;
    }
    let times = &times[times.len().saturating_sub(MAX)..];
    let n = times.len() - 1;
    let mut gaps = [0.0f64; MAX];
    for k in 0..n {
        gaps[k] = times[k + 1].saturating_sub(times[k]) as f64;
    }
    let mut sorted = gaps;
    sorted[..n].sort_unstable_by(f64::total_cmp);
    let median = sorted[n / 2];
    if median <= 0.0 {
        return None;
    }
    let mut index = [0.0f64; MAX];
    for k in 0..n {
        let lost = gaps[k] > 1.5 * median && gaps[k] < 2.5 * median && (k + 1 == n || gaps[k + 1] > 0.5 * median);
        index[k + 1] = index[k] + if lost { 2.0 } else { 1.0 };
    }
    let mut slopes = [0.0f64; MAX * (MAX - 1) / 2];
    let mut m = 0;
    for i in 0..=n {
        for j in i + 1..=n {
            slopes[m] = (times[j] as f64 - times[i] as f64) / (index[j] - index[i]);
            m += 1;
        }
    }
    slopes[..m].sort_unstable_by(f64::total_cmp);
    let period_us = slopes[m / 2];
    (period_us > 0.0).then(|| 60e6 / (24.0 * period_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_tempo_holds_through_jitter_and_a_lost_tick() {
        // 120 BPM: a tick every 20833 µs, each arriving up to ±1.5 ms off its time.
        let jitter = [0i64, 900, -1200, 400, 1500, -800, 0, 300, -1500, 1100, -300, 700];
        let ticks: Vec<u64> = (0..25u64)
            .map(|k| (1_000_000 + k as i64 * 20_833 + jitter[k as usize % jitter.len()]) as u64)
            .collect();
        let bpm = clock_bpm(&ticks).unwrap();
        assert!((bpm - 120.0).abs() < 0.5, "{bpm}");
        // One tick lost: the doubled gap counts as two periods (counted as one, as 23 gaps over
        // a span of 24 periods, it would read 115).
        let mut lost = ticks.clone();
        lost.remove(12);
        let bpm = clock_bpm(&lost).unwrap();
        assert!((bpm - 120.0).abs() < 0.5, "one lost tick: {bpm}");
        assert!(clock_bpm(&ticks[..6]).is_none());
        // The first tick in the window a period late (a stalled sender), and three ticks held
        // back and then sent together with the next.
        let mut late = ticks.clone();
        late[0] += 20_833;
        for t in &mut late[10..13] {
            *t = ticks[13] - 50;
        }
        let bpm = clock_bpm(&late).unwrap();
        assert!((bpm - 120.0).abs() < 1.0, "late and bunched ticks: {bpm}");
        // A real tempo is followed: 90 BPM.
        let slow: Vec<u64> = (0..25u64).map(|k| k * 27_778).collect();
        assert!((clock_bpm(&slow).unwrap() - 90.0).abs() < 0.1);
    }

    fn map() -> Mapping {
        let spec = ParamSpec::float("gain_db", -60.0, 0.0, -6.0, "dB", "");
        Mapping::new(Source::Cc(7), None, "vol", "gain_db", &spec)
    }

    #[test]
    fn absolute_controls_follow_their_curve() {
        let mut m = map();
        assert_eq!(m.apply(0.5, 0, -6.0), Some(-30.0));
        m.curve = Curve::Exp;
        assert_eq!(m.apply(0.5, 0, -6.0), Some(-45.0));
        m.curve = Curve::Log;
        let v = m.apply(0.25, 0, -6.0).unwrap();
        assert!((v + 30.0).abs() < 1e-9, "{v}");
    }

    #[test]
    fn relative_encoders_step_from_the_current_value() {
        let mut m = map();
        m.mode = Mode::Relative;
        let step = 60.0 / 127.0;
        let v = m.apply(0.0, 2, -30.0).unwrap();
        assert!((v - (-30.0 + 2.0 * step)).abs() < 1e-9);
        let v = m.apply(0.0, -1, -30.0).unwrap();
        assert!((v - (-30.0 + step)).abs() < 1e-9, "steps accumulate on the mapping's own value");
        // Clamped at the range.
        assert_eq!(m.apply(0.0, 127 * 3, 0.0), Some(0.0));
    }

    #[test]
    fn soft_takeover_waits_until_the_control_reaches_the_value() {
        let mut m = map();
        m.takeover = Takeover::Soft;
        // The parameter sits at -30 dB (the middle); the control starts at the bottom.
        assert_eq!(m.apply(0.0, 0, -30.0), None);
        assert_eq!(m.apply(0.3, 0, -30.0), None);
        // Passing the middle catches it; from then on it follows.
        assert!(m.apply(0.55, 0, -30.0).is_some());
        assert_eq!(m.apply(0.1, 0, -30.0), Some(-54.0));
    }

    #[test]
    fn a_binding_saves_as_toml_the_settings_reader_takes() {
        let mut m = map();
        m.source = Source::Cc14(1);
        m.channel = Some(2);
        let t = m.to_toml();
        let v: toml::Value = toml::from_str(&t).unwrap();
        let e = &v["midi"]["map"][0];
        assert_eq!(e["cc14"].as_integer(), Some(1));
        assert_eq!(e["channel"].as_integer(), Some(3));
        assert_eq!(e["to"].as_str(), Some("vol.gain_db"));
    }
}
