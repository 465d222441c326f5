//! `synth`: a small polyphonic synthesizer played by MIDI events (from the control side or from
//! other nodes' MIDI outputs). Spec on the control thread, processor on the audio thread.

use super::basic::wave;
use super::SMOOTH_MS;
use crate::node::{BuildCtx, Built, NodeInfo, NodeType, Params, PortSpec, ProcessIo, Processor};
use crate::param::{db_to_gain, EventKind, ParamSpec, Smoother};

const SYNTH_WAVES: &[&str] = &["sine", "saw", "square", "triangle"];
const SYNTH_PARAMS: &[ParamSpec] = &[
    ParamSpec::float("gain_db", -120.0, 12.0, -6.0, "dB", "level"),
    ParamSpec::choice("waveform", SYNTH_WAVES, 1, true, "waveform"),
    ParamSpec::float("attack_ms", 0.0, 5000.0, 5.0, "ms", "attack time"),
    ParamSpec::float("decay_ms", 0.0, 5000.0, 150.0, "ms", "decay time"),
    ParamSpec::float("sustain", 0.0, 1.0, 0.6, "", "sustain level"),
    ParamSpec::float("release_ms", 0.0, 10000.0, 250.0, "ms", "release time"),
    ParamSpec::int("voices", 1, 64, 16, "polyphony (the oldest voice is stolen)"),
    ParamSpec::int("midi_channel", 0, 16, 0, "MIDI channel 1-16; 0 = all"),
    ParamSpec::int("channels", 1, 2, 2, "output channels"),
    ParamSpec::float("bend_range", 0.0, 48.0, 2.0, "semitones", "pitch-bend range"),
];

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    Off,
    Attack,
    Decay,
    Sustain,
    Release,
}

#[derive(Clone, Copy)]
struct Voice {
    note: u8,
    hz: f64,
    vel: f32,
    phase: f64,
    stage: Stage,
    env: f32,
    age: u64,
    held_by_pedal: bool,
    /// MIDI channel (0-15) that started it: pitch bend is per channel, so MPE notes bend alone.
    ch: u8,
}

struct SynthProc {
    voices: Vec<Voice>,
    gain: Smoother,
    waveform: u8,
    attack_ms: f32,
    decay_ms: f32,
    sustain: f32,
    release_ms: f32,
    channel: u8,
    /// Pitch bend per MIDI channel (-1..1) and its frequency ratio.
    bend: [f32; 16],
    bend_mul: [f64; 16],
    bend_range: f32,
    pedal: bool,
    clock: u64,
    noise: u32,
    sr: f32,
}

fn rate(ms: f32, sr: f32) -> f32 {
    if ms <= 0.0 {
        1.0
    } else {
        1.0 / (ms * 0.001 * sr)
    }
}

impl SynthProc {
    fn update_bend(&mut self, ch: usize) {
        self.bend_mul[ch] = (2.0f64).powf((self.bend[ch] * self.bend_range) as f64 / 12.0);
    }

    fn note_on(&mut self, ch: u8, note: u8, vel: u8) {
        self.clock += 1;
        let idx = match self.voices.iter().position(|v| v.stage == Stage::Off) {
            Some(i) => i,
            None => self
                .voices
                .iter()
                .enumerate()
                .min_by_key(|(_, v)| v.age)
                .map(|(i, _)| i)
                .unwrap_or(0),
        };
        let v = &mut self.voices[idx];
        let retrigger = v.stage != Stage::Off;
        *v = Voice {
            note,
            hz: 440.0 * (2.0f64).powf((note as f64 - 69.0) / 12.0),
            vel: vel as f32 / 127.0,
            phase: if retrigger { v.phase } else { 0.0 },
            stage: Stage::Attack,
            env: if retrigger { v.env } else { 0.0 },
            age: self.clock,
            held_by_pedal: false,
            ch,
        };
    }
    fn note_off(&mut self, ch: u8, note: u8) {
        for v in self
            .voices
            .iter_mut()
            .filter(|v| v.note == note && v.ch == ch && matches!(v.stage, Stage::Attack | Stage::Decay | Stage::Sustain))
        {
            if self.pedal {
                v.held_by_pedal = true;
            } else {
                v.stage = Stage::Release;
            }
        }
    }
}

impl Processor for SynthProc {
    fn event(&mut self, ev: &EventKind) {
        match *ev {
            EventKind::Param { index, value } => match index {
                0 => self.gain.set_target(db_to_gain(value)),
                1 => self.waveform = value as u8,
                2 => self.attack_ms = value,
                3 => self.decay_ms = value,
                4 => self.sustain = value,
                5 => self.release_ms = value,
                9 => {
                    self.bend_range = value;
                    for ch in 0..16 {
                        self.update_bend(ch);
                    }
                }
                _ => {}
            },
            EventKind::Midi([status, d1, d2]) => {
                let ch = status & 0x0f;
                if self.channel != 0 && ch + 1 != self.channel {
                    return;
                }
                match status & 0xf0 {
                    0x90 if d2 > 0 => self.note_on(ch, d1 & 0x7f, d2 & 0x7f),
                    0x80 | 0x90 => self.note_off(ch, d1 & 0x7f),
                    0xe0 => {
                        self.bend[ch as usize] = ((((d2 & 0x7f) as i32) << 7 | (d1 & 0x7f) as i32) - 8192) as f32 / 8192.0;
                        self.update_bend(ch as usize);
                    }
                    0xb0 if d1 == 64 => {
                        self.pedal = d2 >= 64;
                        if !self.pedal {
                            for v in self.voices.iter_mut().filter(|v| v.held_by_pedal) {
                                v.held_by_pedal = false;
                                v.stage = Stage::Release;
                            }
                        }
                    }
                    0xb0 if d1 == 120 || d1 == 123 => {
                        for v in self.voices.iter_mut().filter(|v| v.stage != Stage::Off) {
                            v.stage = Stage::Release;
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn process(&mut self, io: &mut ProcessIo) {
        let sr = self.sr;
        let (ra, rd, rr) = (rate(self.attack_ms, sr), rate(self.decay_ms, sr), rate(self.release_ms, sr));
        for t in 0..io.frames {
            let mut y = 0.0f32;
            for v in self.voices.iter_mut() {
                match v.stage {
                    Stage::Off => continue,
                    Stage::Attack => {
                        v.env += ra;
                        if v.env >= 1.0 {
                            v.env = 1.0;
                            v.stage = Stage::Decay;
                        }
                    }
                    Stage::Decay => {
                        v.env -= rd * (1.0 - self.sustain).max(1e-3);
                        if v.env <= self.sustain {
                            v.env = self.sustain;
                            v.stage = Stage::Sustain;
                        }
                    }
                    Stage::Sustain => v.env = self.sustain,
                    Stage::Release => {
                        v.env -= rr;
                        if v.env <= 0.0 {
                            v.env = 0.0;
                            v.stage = Stage::Off;
                            continue;
                        }
                    }
                }
                let hz = v.hz * self.bend_mul[v.ch as usize];
                let dt = hz / sr as f64;
                y += wave(self.waveform, v.phase, dt, &mut self.noise) * v.env * v.vel;
                v.phase = super::basic::advance(v.phase, dt);
            }
            let y = y * self.gain.next() * 0.25;
            for o in io.outputs.iter_mut() {
                o[t] = y;
            }
        }
    }
}

pub const SYNTH: NodeType = NodeType {
    name: "synth",
    doc: "Polyphonic synthesizer played by MIDI (notes, pitch bend, sustain pedal), to hear MIDI made in the graph.",
    params: SYNTH_PARAMS,
    params_of: None,
    build: |p: &Params, ctx: &BuildCtx| {
        let wf = SYNTH_WAVES.iter().position(|w| *w == p.str("waveform")).unwrap_or(1) as u8;
        let off = Voice {
            note: 0,
            hz: 0.0,
            vel: 0.0,
            phase: 0.0,
            stage: Stage::Off,
            env: 0.0,
            age: 0,
            held_by_pedal: false,
            ch: 0,
        };
        Ok(Built {
            info: NodeInfo {
                outputs: vec![PortSpec::new("out", p.usize("channels"))],
                midi_in: true,
                ..Default::default()
            },
            processor: Box::new(SynthProc {
                voices: vec![off; p.usize("voices")],
                gain: Smoother::with_time(db_to_gain(p.f32("gain_db")), SMOOTH_MS, ctx.sample_rate),
                waveform: wf,
                attack_ms: p.f32("attack_ms"),
                decay_ms: p.f32("decay_ms"),
                sustain: p.f32("sustain"),
                release_ms: p.f32("release_ms"),
                channel: p.usize("midi_channel") as u8,
                bend: [0.0; 16],
                bend_mul: [1.0; 16],
                bend_range: p.f32("bend_range"),
                pedal: false,
                clock: 0,
                noise: 1,
                sr: ctx.sample_rate,
            }),
        })
    },
};
