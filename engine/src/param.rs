//! Parameters: descriptors (control thread), sample-stamped events and smoothers (audio thread).
//!
//! A node type lists its parameters once as [`ParamSpec`]s. The same list validates patches,
//! resolves names to indices off the audio thread, and (later) generates the OSC and OSCQuery
//! address space. Runtime parameters are addressed on the audio thread by their index in that
//! list, never by name.

/// The kind, range and default of one parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamKind {
    /// A continuous value, settable while running where `runtime` (smoothed where `smoothed`),
    /// else fixed when the node is built.
    Float {
        min: f32,
        max: f32,
        default: f32,
        unit: &'static str,
        smoothed: bool,
        runtime: bool,
    },
    /// An integer fixed when the node is built (channel counts, voices).
    Int { min: i64, max: i64, default: i64 },
    /// An on/off switch; settable while running when `runtime`.
    Bool { default: bool, runtime: bool },
    /// A string fixed when the node is built (file paths).
    Str { default: &'static str },
    /// One of a fixed set of names; settable while running as its index when `runtime`.
    Enum {
        options: &'static [&'static str],
        default: usize,
        runtime: bool,
    },
}

/// One parameter of a node type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    pub doc: &'static str,
}

impl ParamSpec {
    pub const fn float(name: &'static str, min: f32, max: f32, default: f32, unit: &'static str, doc: &'static str) -> Self {
        Self {
            name,
            kind: ParamKind::Float {
                min,
                max,
                default,
                unit,
                smoothed: true,
                runtime: true,
            },
            doc,
        }
    }
    /// A number fixed when the node is built (changing it rebuilds the node).
    pub const fn float_fixed(name: &'static str, min: f32, max: f32, default: f32, unit: &'static str, doc: &'static str) -> Self {
        Self {
            name,
            kind: ParamKind::Float {
                min,
                max,
                default,
                unit,
                smoothed: false,
                runtime: false,
            },
            doc,
        }
    }
    pub const fn int(name: &'static str, min: i64, max: i64, default: i64, doc: &'static str) -> Self {
        Self {
            name,
            kind: ParamKind::Int { min, max, default },
            doc,
        }
    }
    pub const fn boolean(name: &'static str, default: bool, runtime: bool, doc: &'static str) -> Self {
        Self {
            name,
            kind: ParamKind::Bool { default, runtime },
            doc,
        }
    }
    pub const fn string(name: &'static str, default: &'static str, doc: &'static str) -> Self {
        Self {
            name,
            kind: ParamKind::Str { default },
            doc,
        }
    }
    pub const fn choice(name: &'static str, options: &'static [&'static str], default: usize, runtime: bool, doc: &'static str) -> Self {
        Self {
            name,
            kind: ParamKind::Enum { options, default, runtime },
            doc,
        }
    }

    /// Whether this parameter can change while the node runs (through a `ParamEvent`).
    pub fn is_runtime(&self) -> bool {
        match self.kind {
            ParamKind::Float { runtime, .. } => runtime,
            ParamKind::Bool { runtime, .. } | ParamKind::Enum { runtime, .. } => runtime,
            ParamKind::Int { .. } | ParamKind::Str { .. } => false,
        }
    }

    /// The default as a [`ParamValue`].
    pub fn default_value(&self) -> ParamValue {
        match self.kind {
            ParamKind::Float { default, .. } => ParamValue::Float(default as f64),
            ParamKind::Int { default, .. } => ParamValue::Int(default),
            ParamKind::Bool { default, .. } => ParamValue::Bool(default),
            ParamKind::Str { default } => ParamValue::Str(default.to_string()),
            ParamKind::Enum { options, default, .. } => ParamValue::Str(options[default].to_string()),
        }
    }

    /// Checks `v` against kind and range; returns the value the node will see, or why not.
    pub fn check(&self, v: &ParamValue) -> Result<ParamValue, String> {
        match (self.kind, v) {
            (ParamKind::Float { min, max, unit, .. }, ParamValue::Float(_) | ParamValue::Int(_)) => {
                let x = v.as_f64().unwrap_or(f64::NAN);
                if !x.is_finite() {
                    return Err(format!("`{}` must be a finite number", self.name));
                }
                // Compared as f32 (the range is stored so): a bound like 0.1 is reachable.
                if (x as f32) < min || (x as f32) > max {
                    return Err(format!("`{}` = {x} is out of range {min}..={max}{}", self.name, unit_suffix(unit)));
                }
                Ok(ParamValue::Float(x))
            }
            (ParamKind::Int { min, max, .. }, ParamValue::Int(i)) => {
                if *i < min || *i > max {
                    return Err(format!("`{}` = {i} is out of range {min}..={max}", self.name));
                }
                Ok(ParamValue::Int(*i))
            }
            (ParamKind::Bool { .. }, ParamValue::Bool(b)) => Ok(ParamValue::Bool(*b)),
            (ParamKind::Str { .. }, ParamValue::Str(s)) => Ok(ParamValue::Str(s.clone())),
            (ParamKind::Enum { options, .. }, ParamValue::Str(s)) => {
                if options.contains(&s.as_str()) {
                    Ok(ParamValue::Str(s.clone()))
                } else {
                    Err(format!("`{}` = \"{s}\" is not one of {}", self.name, quoted_list(options)))
                }
            }
            (kind, other) => Err(format!("`{}` must be {}, not {}", self.name, kind_name(&kind), other.type_name())),
        }
    }

    /// The runtime value (as f32) of a checked value: floats as is, bools as 0/1, enums as index.
    pub fn runtime_value(&self, v: &ParamValue) -> Option<f32> {
        match (self.kind, v) {
            (ParamKind::Float { .. }, _) => v.as_f64().map(|x| x as f32),
            (ParamKind::Bool { .. }, ParamValue::Bool(b)) => Some(if *b { 1.0 } else { 0.0 }),
            (ParamKind::Enum { options, .. }, ParamValue::Str(s)) => options.iter().position(|o| o == s).map(|i| i as f32),
            _ => None,
        }
    }
}

fn unit_suffix(unit: &str) -> String {
    if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    }
}

fn quoted_list(items: &[&str]) -> String {
    items.iter().map(|o| format!("\"{o}\"")).collect::<Vec<_>>().join(", ")
}

fn kind_name(k: &ParamKind) -> &'static str {
    match k {
        ParamKind::Float { .. } => "a number",
        ParamKind::Int { .. } => "an integer",
        ParamKind::Bool { .. } => "true or false",
        ParamKind::Str { .. } => "a string",
        ParamKind::Enum { .. } => "a string",
    }
}

/// A parameter value as written in a patch.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Float(f64),
    Int(i64),
    Bool(bool),
    Str(String),
}

impl ParamValue {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ParamValue::Float(f) => Some(*f),
            ParamValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ParamValue::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            ParamValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ParamValue::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn type_name(&self) -> &'static str {
        match self {
            ParamValue::Float(_) => "a float",
            ParamValue::Int(_) => "an integer",
            ParamValue::Bool(_) => "a boolean",
            ParamValue::Str(_) => "a string",
        }
    }
}

/// What an event does to a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EventKind {
    /// Set runtime parameter `index` (its position in the node type's `ParamSpec` list).
    Param { index: u16, value: f32 },
    /// A short MIDI message (status, data1, data2).
    Midi([u8; 3]),
}

/// An event for one node, stamped with its frame offset within the current block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    pub offset: u32,
    pub kind: EventKind,
}

/// Linear-ramp smoother: after `set_target`, the value moves by equal steps and lands exactly on
/// the target after `ramp_frames` samples. When settled, `next` is a load and a compare.
#[derive(Debug, Clone, Copy)]
pub struct Smoother {
    current: f32,
    target: f32,
    step: f32,
    remaining: u32,
    ramp_frames: u32,
}

impl Smoother {
    pub fn new(value: f32, ramp_frames: u32) -> Self {
        Self {
            current: value,
            target: value,
            step: 0.0,
            remaining: 0,
            ramp_frames: ramp_frames.max(1),
        }
    }

    /// A smoother whose ramp lasts `ms` milliseconds at `sample_rate`.
    pub fn with_time(value: f32, ms: f32, sample_rate: f32) -> Self {
        Self::new(value, (ms * 0.001 * sample_rate).round() as u32)
    }

    pub fn set_target(&mut self, target: f32) {
        if target == self.target && self.remaining == 0 {
            return;
        }
        self.target = target;
        self.remaining = self.ramp_frames;
        self.step = (target - self.current) / self.ramp_frames as f32;
    }

    /// Jumps to `value` at once (no ramp).
    pub fn reset(&mut self, value: f32) {
        self.current = value;
        self.target = value;
        self.remaining = 0;
    }

    #[inline]
    pub fn next(&mut self) -> f32 {
        if self.remaining > 0 {
            self.remaining -= 1;
            self.current = if self.remaining == 0 {
                self.target
            } else {
                self.current + self.step
            };
        }
        self.current
    }

    #[inline]
    pub fn is_settled(&self) -> bool {
        self.remaining == 0
    }
    pub fn value(&self) -> f32 {
        self.current
    }
    pub fn target(&self) -> f32 {
        self.target
    }
}

/// One-pole exponential smoother: `y += (target - y) * coeff` each sample, reaching 1 - 1/e of a
/// step after `tau` seconds. Used where a ramp of unknown length suits better (meters, envelopes).
#[derive(Debug, Clone, Copy)]
pub struct OnePole {
    pub y: f32,
    coeff: f32,
}

impl OnePole {
    pub fn new(value: f32, tau_secs: f32, sample_rate: f32) -> Self {
        let coeff = if tau_secs <= 0.0 {
            1.0
        } else {
            1.0 - (-1.0 / (tau_secs * sample_rate)).exp()
        };
        Self { y: value, coeff }
    }
    #[inline]
    pub fn next(&mut self, target: f32) -> f32 {
        self.y += (target - self.y) * self.coeff;
        self.y
    }
    pub fn coeff(&self) -> f32 {
        self.coeff
    }
}

/// Decibels to linear gain; -120 dB and below is silence.
#[inline]
pub fn db_to_gain(db: f32) -> f32 {
    if db <= -120.0 {
        0.0
    } else {
        10f32.powf(db / 20.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ramp_lands_exactly_after_ramp_frames() {
        let mut s = Smoother::new(0.0, 4);
        s.set_target(1.0);
        let v: Vec<f32> = (0..6).map(|_| s.next()).collect();
        assert_eq!(v, vec![0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
        assert!(s.is_settled());
    }

    #[test]
    fn retarget_mid_ramp_starts_from_the_current_value() {
        let mut s = Smoother::new(0.0, 4);
        s.set_target(1.0);
        s.next();
        s.next(); // 0.5
        s.set_target(0.0);
        let v: Vec<f32> = (0..4).map(|_| s.next()).collect();
        assert_eq!(v, vec![0.375, 0.25, 0.125, 0.0]);
    }

    #[test]
    fn ramp_of_n_steps_sums_like_an_arithmetic_series() {
        // Sum over the ramp = n * (start + end) / 2 + (end - start) / 2 (discrete trapezoid).
        let n = 480;
        let mut s = Smoother::new(0.2, n);
        s.set_target(0.8);
        let sum: f64 = (0..n).map(|_| s.next() as f64).sum();
        let want = n as f64 * (0.2 + 0.8) / 2.0 + (0.8 - 0.2) / 2.0;
        assert!((sum - want).abs() < 1e-3, "{sum} vs {want}");
    }

    #[test]
    fn settled_smoother_is_constant() {
        let mut s = Smoother::with_time(0.5, 20.0, 48000.0);
        assert!((0..1000).all(|_| s.next() == 0.5));
    }

    #[test]
    fn one_pole_reaches_63_percent_after_tau() {
        let sr = 48000.0;
        let mut p = OnePole::new(0.0, 0.01, sr);
        let mut y = 0.0;
        for _ in 0..480 {
            y = p.next(1.0);
        }
        assert!((y - (1.0 - (-1.0f32).exp())).abs() < 1e-3, "{y}");
    }

    #[test]
    fn param_check_reports_range_and_type() {
        let p = ParamSpec::float("gain_db", -120.0, 24.0, 0.0, "dB", "");
        assert!(p.check(&ParamValue::Float(30.0)).unwrap_err().contains("out of range -120..=24 dB"));
        assert!(p.check(&ParamValue::Str("loud".into())).unwrap_err().contains("must be a number"));
        assert_eq!(p.check(&ParamValue::Int(3)).unwrap(), ParamValue::Float(3.0));
        let e = ParamSpec::choice("waveform", &["sine", "saw"], 0, true, "");
        assert!(e
            .check(&ParamValue::Str("tri".into()))
            .unwrap_err()
            .contains("not one of \"sine\", \"saw\""));
        assert_eq!(e.runtime_value(&ParamValue::Str("saw".into())), Some(1.0));
    }
}
