//! MIDI mappings (control thread): the patch's `[midi]` table read and checked, and each
//! `[[midi.map]]` binding of a controller, note, bend or aftertouch to a parameter, with its
//! range, curve, mode (absolute or relative) and takeover.
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

use stagebox_engine::param::{ParamKind, ParamSpec};
use stagebox_engine::EngineHandle;

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
    /// The 0..1 position of this mapping's control when `source` moved to `x` (`data`: the
    /// message's last byte), or None when this mapping does not follow it. A 14-bit controller
    /// takes CC n as its MSB and CC n + 32 as the LSB that completes it.
    pub(crate) fn position(&mut self, source: Source, x: f64, data: u8) -> Option<f64> {
        match (self.source, source) {
            (Source::Cc14(n), Source::Cc(c)) if c == n => {
                self.msb = Some(data);
                Some(data as f64 / 127.0)
            }
            (Source::Cc14(n), Source::Cc(c)) if c == n + 32 => self.msb.map(|msb| ((msb as u16) << 7 | data as u16) as f64 / 16383.0),
            (a, b) if a == b => Some(x),
            _ => None,
        }
    }

    pub(crate) fn apply(&mut self, x: f64, steps: i32, current: f64) -> Option<f64> {
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
    let maps = get("map")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, m)| parse_map(m, handle).map_err(|e| format!("[[midi.map]] number {}: {e}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MidiSettings {
        port,
        programs,
        clock_out,
        tempo,
        maps,
    })
}

/// One `[[midi.map]]` table, checked against the running patch's parameters.
fn parse_map(m: &toml::Value, handle: &EngineHandle) -> Result<Mapping, String> {
    const KEYS: &[&str] = &[
        "cc",
        "cc14",
        "note",
        "bend",
        "aftertouch",
        "key_pressure",
        "channel",
        "to",
        "min",
        "max",
        "curve",
        "mode",
        "takeover",
    ];
    let m = m.as_table().ok_or("not a table")?;
    if let Some(k) = m.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("no setting `{k}`"));
    }
    let source = parse_source(m)?;
    let channel = match m.get("channel").and_then(|v| v.as_integer()) {
        None => None,
        Some(c @ 1..=16) => Some(c as u8 - 1),
        Some(c) => return Err(format!("channel = {c} is not 1..16")),
    };
    let to = m.get("to").and_then(|v| v.as_str()).ok_or("needs `to = \"node.param\"`")?;
    let (node, param) = to.split_once('.').ok_or_else(|| format!("`to = \"{to}\"` is not node.param"))?;
    let spec = handle
        .node_params()
        .find(|(n, _)| n.id == node)
        .ok_or_else(|| format!("no node `{node}`"))?
        .1
        .iter()
        .find(|p| p.name == param)
        .ok_or_else(|| format!("node `{node}` has no parameter `{param}`"))?;
    if !spec.is_runtime() {
        return Err(format!(
            "`{to}` is fixed when the node is built; map a parameter that changes while running"
        ));
    }
    let mut map = Mapping::new(source, channel, node, param, spec);
    let (lo, hi) = range(spec);
    let num = |k: &str| m.get(k).and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)));
    map.min = num("min").unwrap_or(map.min).clamp(lo, hi);
    map.max = num("max").unwrap_or(map.max).clamp(lo, hi);
    let choice = |k: &str, default: &'static str| m.get(k).and_then(|v| v.as_str()).unwrap_or(default).to_string();
    map.curve = match choice("curve", "linear").as_str() {
        "linear" => Curve::Linear,
        "exp" => Curve::Exp,
        "log" => Curve::Log,
        c => return Err(format!("curve = \"{c}\" (linear, exp, log)")),
    };
    map.mode = match choice("mode", "absolute").as_str() {
        "absolute" => Mode::Absolute,
        "relative" => Mode::Relative,
        c => return Err(format!("mode = \"{c}\" (absolute, relative)")),
    };
    map.takeover = match choice("takeover", "jump").as_str() {
        "jump" => Takeover::Jump,
        "soft" => Takeover::Soft,
        c => return Err(format!("takeover = \"{c}\" (jump, soft)")),
    };
    Ok(map)
}

/// What a mapping listens to: exactly one of cc, cc14, note, bend, aftertouch, key_pressure.
fn parse_source(m: &toml::map::Map<String, toml::Value>) -> Result<Source, String> {
    let num = |k: &str, below: i64| -> Option<Result<u8, String>> {
        let n = m.get(k)?.as_integer()?;
        Some(
            u8::try_from(n)
                .ok()
                .filter(|&v| (v as i64) < below)
                .ok_or(format!("{k} = {n} is not 0..{}", below - 1)),
        )
    };
    let flag = |k: &str| m.get(k).and_then(|v| v.as_bool()) == Some(true);
    Ok(if let Some(n) = num("cc", 128) {
        Source::Cc(n?)
    } else if let Some(n) = num("cc14", 32) {
        Source::Cc14(n?)
    } else if let Some(n) = num("note", 128) {
        Source::Note(n?)
    } else if flag("bend") {
        Source::Bend
    } else if flag("aftertouch") {
        Source::Aftertouch
    } else if let Some(n) = num("key_pressure", 128) {
        Source::KeyPressure(n?)
    } else {
        return Err("needs one of cc, cc14, note, bend, aftertouch, key_pressure".into());
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
