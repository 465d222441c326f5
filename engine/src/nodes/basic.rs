//! `gain`, `pan`, `mixer`, `osc`: small DSP nodes. Specs on the control thread, processors on
//! the audio thread.

use super::SMOOTH_MS;
use crate::node::{BuildCtx, Built, NodeInfo, NodeType, Params, PortSpec, ProcessIo, Processor};
use crate::param::{db_to_gain, EventKind, ParamSpec, Smoother};

// ---------------------------------------------------------------- gain
const GAIN_PARAMS: &[ParamSpec] = &[
    ParamSpec::float("gain_db", -120.0, 24.0, 0.0, "dB", "gain; -120 dB is silence"),
    ParamSpec::float(
        "pan",
        -1.0,
        1.0,
        0.0,
        "",
        "stereo balance (-1 left, 1 right); ignored unless 2 channels",
    ),
    ParamSpec::boolean("mute", false, true, "silence the output (smoothed)"),
    ParamSpec::int("channels", 1, 16, 2, "number of channels"),
];

struct GainProc {
    gain_db: f32,
    mute: bool,
    gain: Smoother,
    pan: Smoother,
}

impl GainProc {
    fn target(&self) -> f32 {
        if self.mute {
            0.0
        } else {
            db_to_gain(self.gain_db)
        }
    }
}

impl Processor for GainProc {
    fn event(&mut self, ev: &EventKind) {
        if let EventKind::Param { index, value } = *ev {
            match index {
                0 => self.gain_db = value,
                1 => self.pan.set_target(value),
                2 => self.mute = value >= 0.5,
                _ => {}
            }
            self.gain.set_target(self.target());
        }
    }
    fn process(&mut self, io: &mut ProcessIo) {
        let n = io.outputs.len();
        for t in 0..io.frames {
            let g = self.gain.next();
            let p = self.pan.next();
            if n == 2 {
                io.outputs[0][t] = io.inputs[0][t] * g * (1.0 - p).min(1.0);
                io.outputs[1][t] = io.inputs[1][t] * g * (1.0 + p).min(1.0);
            } else {
                for c in 0..n {
                    io.outputs[c][t] = io.inputs[c][t] * g;
                }
            }
        }
    }
}

pub const GAIN: NodeType = NodeType {
    name: "gain",
    doc: "Gain in dB with smoothing, mute, and stereo balance.",
    params: GAIN_PARAMS,
    params_of: None,
    build: |p: &Params, ctx: &BuildCtx| {
        let ch = p.usize("channels");
        let mut g = GainProc {
            gain_db: p.f32("gain_db"),
            mute: p.bool("mute"),
            gain: Smoother::with_time(0.0, SMOOTH_MS, ctx.sample_rate),
            pan: Smoother::with_time(p.f32("pan"), SMOOTH_MS, ctx.sample_rate),
        };
        g.gain.reset(g.target());
        Ok(Built {
            info: NodeInfo {
                inputs: vec![PortSpec::new("in", ch)],
                outputs: vec![PortSpec::new("out", ch)],
                ..Default::default()
            },
            processor: Box::new(g),
        })
    },
};

// ---------------------------------------------------------------- pan
const PAN_PARAMS: &[ParamSpec] = &[ParamSpec::float(
    "pan",
    -1.0,
    1.0,
    0.0,
    "",
    "position (-1 left, 0 centre at -3 dB, 1 right)",
)];

struct PanProc {
    pan: Smoother,
}

impl Processor for PanProc {
    fn event(&mut self, ev: &EventKind) {
        if let EventKind::Param { index: 0, value } = *ev {
            self.pan.set_target(value);
        }
    }
    fn process(&mut self, io: &mut ProcessIo) {
        for t in 0..io.frames {
            let a = (self.pan.next() + 1.0) * std::f32::consts::FRAC_PI_4;
            let x = io.inputs[0][t];
            io.outputs[0][t] = x * a.cos();
            io.outputs[1][t] = x * a.sin();
        }
    }
}

pub const PAN: NodeType = NodeType {
    name: "pan",
    doc: "Mono to stereo, equal-power pan.",
    params: PAN_PARAMS,
    params_of: None,
    build: |p: &Params, ctx: &BuildCtx| {
        Ok(Built {
            info: NodeInfo {
                inputs: vec![PortSpec::new("in", 1)],
                outputs: vec![PortSpec::new("out", 2)],
                ..Default::default()
            },
            processor: Box::new(PanProc {
                pan: Smoother::with_time(p.f32("pan"), SMOOTH_MS, ctx.sample_rate),
            }),
        })
    },
};

// ---------------------------------------------------------------- mixer
pub const MIXER_MAX_INPUTS: usize = 8;
const MIXER_PARAMS: &[ParamSpec] = &[
    ParamSpec::float("gain_db", -120.0, 24.0, 0.0, "dB", "master gain"),
    ParamSpec::float("gain_db_1", -120.0, 24.0, 0.0, "dB", "gain of in1"),
    ParamSpec::float("gain_db_2", -120.0, 24.0, 0.0, "dB", "gain of in2"),
    ParamSpec::float("gain_db_3", -120.0, 24.0, 0.0, "dB", "gain of in3"),
    ParamSpec::float("gain_db_4", -120.0, 24.0, 0.0, "dB", "gain of in4"),
    ParamSpec::float("gain_db_5", -120.0, 24.0, 0.0, "dB", "gain of in5"),
    ParamSpec::float("gain_db_6", -120.0, 24.0, 0.0, "dB", "gain of in6"),
    ParamSpec::float("gain_db_7", -120.0, 24.0, 0.0, "dB", "gain of in7"),
    ParamSpec::float("gain_db_8", -120.0, 24.0, 0.0, "dB", "gain of in8"),
    ParamSpec::int("inputs", 1, MIXER_MAX_INPUTS as i64, 2, "number of input ports (in1, in2, ...)"),
    ParamSpec::int("channels", 1, 16, 2, "channels of every port"),
];

struct MixerProc {
    inputs: usize,
    channels: usize,
    /// [master, in1..in8]
    gains: [Smoother; MIXER_MAX_INPUTS + 1],
}

impl Processor for MixerProc {
    fn event(&mut self, ev: &EventKind) {
        if let EventKind::Param { index, value } = *ev {
            if (index as usize) <= MIXER_MAX_INPUTS {
                self.gains[index as usize].set_target(db_to_gain(value));
            }
        }
    }
    fn process(&mut self, io: &mut ProcessIo) {
        for t in 0..io.frames {
            let master = self.gains[0].next();
            for c in 0..self.channels {
                io.outputs[c][t] = 0.0;
            }
            for i in 0..self.inputs {
                let g = self.gains[i + 1].next() * master;
                for c in 0..self.channels {
                    io.outputs[c][t] += io.inputs[i * self.channels + c][t] * g;
                }
            }
        }
    }
}

pub const MIXER: NodeType = NodeType {
    name: "mixer",
    doc: "Sums up to 8 inputs (in1..in8), each with its own gain, then a master gain.",
    params: MIXER_PARAMS,
    params_of: None,
    build: |p: &Params, ctx: &BuildCtx| {
        let (n, ch) = (p.usize("inputs"), p.usize("channels"));
        let names = [
            "gain_db",
            "gain_db_1",
            "gain_db_2",
            "gain_db_3",
            "gain_db_4",
            "gain_db_5",
            "gain_db_6",
            "gain_db_7",
            "gain_db_8",
        ];
        let gains = std::array::from_fn(|i| Smoother::with_time(db_to_gain(p.f32(names[i])), SMOOTH_MS, ctx.sample_rate));
        Ok(Built {
            info: NodeInfo {
                inputs: (1..=n).map(|i| PortSpec::new(format!("in{i}"), ch)).collect(),
                outputs: vec![PortSpec::new("out", ch)],
                ..Default::default()
            },
            processor: Box::new(MixerProc {
                inputs: n,
                channels: ch,
                gains,
            }),
        })
    },
};

// ---------------------------------------------------------------- osc
const WAVEFORMS: &[&str] = &["sine", "saw", "square", "triangle", "noise"];
const OSC_PARAMS: &[ParamSpec] = &[
    ParamSpec::float("freq_hz", 1.0, 20000.0, 440.0, "Hz", "frequency"),
    ParamSpec::float("gain_db", -120.0, 0.0, -12.0, "dB", "level"),
    ParamSpec::choice("waveform", WAVEFORMS, 0, true, "waveform"),
    ParamSpec::int("channels", 1, 16, 1, "channels (all carry the same signal)"),
];

/// Band-limited step correction (PolyBLEP).
#[inline]
pub(crate) fn poly_blep(t: f64, dt: f64) -> f64 {
    if t < dt {
        let x = t / dt;
        x + x - x * x - 1.0
    } else if t > 1.0 - dt {
        let x = (t - 1.0) / dt;
        x * x + x + x + 1.0
    } else {
        0.0
    }
}

/// The phase `dt` after `ph`, wrapped into 0..1 however large `dt` is (a frequency at or
/// above the sample rate must not ramp the phase without bound).
#[inline]
pub(crate) fn advance(ph: f64, dt: f64) -> f64 {
    let p = ph + dt;
    p - p.floor()
}

/// One sample of `waveform` at phase `ph` (0..1) with phase increment `dt`. A tone at or above
/// Nyquist (`dt` >= 0.5) cannot be made without aliasing: it is silent.
#[inline]
pub(crate) fn wave(waveform: u8, ph: f64, dt: f64, noise: &mut u32) -> f32 {
    if waveform < 4 && dt.abs() >= 0.5 {
        return 0.0;
    }
    match waveform {
        0 => (ph * std::f64::consts::TAU).sin() as f32,
        1 => (2.0 * ph - 1.0 - poly_blep(ph, dt)) as f32,
        2 => {
            let sq = if ph < 0.5 { 1.0 } else { -1.0 };
            (sq + poly_blep(ph, dt) - poly_blep((ph + 0.5) % 1.0, dt)) as f32
        }
        3 => (1.0 - 4.0 * (ph - 0.5).abs()) as f32,
        _ => {
            // xorshift32: deterministic white noise.
            *noise ^= *noise << 13;
            *noise ^= *noise >> 17;
            *noise ^= *noise << 5;
            (*noise as f32 / u32::MAX as f32) * 2.0 - 1.0
        }
    }
}

struct OscProc {
    freq: Smoother,
    gain: Smoother,
    waveform: u8,
    phase: f64,
    noise: u32,
}

impl Processor for OscProc {
    fn event(&mut self, ev: &EventKind) {
        if let EventKind::Param { index, value } = *ev {
            match index {
                0 => self.freq.set_target(value),
                1 => self.gain.set_target(db_to_gain(value)),
                2 => self.waveform = value as u8,
                _ => {}
            }
        }
    }
    fn process(&mut self, io: &mut ProcessIo) {
        let sr = io.sample_rate as f64;
        for t in 0..io.frames {
            let dt = self.freq.next() as f64 / sr;
            let y = wave(self.waveform, self.phase, dt, &mut self.noise) * self.gain.next();
            self.phase = advance(self.phase, dt);
            for o in io.outputs.iter_mut() {
                o[t] = y;
            }
        }
    }
}

pub const OSC: NodeType = NodeType {
    name: "osc",
    doc: "Test tone: sine, saw, square, triangle or white noise.",
    params: OSC_PARAMS,
    params_of: None,
    build: |p: &Params, ctx: &BuildCtx| {
        let wf = WAVEFORMS.iter().position(|w| *w == p.str("waveform")).unwrap_or(0) as u8;
        Ok(Built {
            info: NodeInfo {
                outputs: vec![PortSpec::new("out", p.usize("channels"))],
                ..Default::default()
            },
            processor: Box::new(OscProc {
                freq: Smoother::with_time(p.f32("freq_hz"), SMOOTH_MS, ctx.sample_rate),
                gain: Smoother::with_time(db_to_gain(p.f32("gain_db")), SMOOTH_MS, ctx.sample_rate),
                waveform: wf,
                phase: 0.0,
                noise: 0x9E37_79B9,
            }),
        })
    },
};
