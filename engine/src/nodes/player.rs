//! `player`: plays an audio file (WAV, FLAC, MP3, OGG), optionally looped, resampled to the
//! engine rate. Decoding and resampling happen at build (control thread); the processor (audio
//! thread) only reads the decoded buffer.

use super::SMOOTH_MS;
use crate::node::{BuildCtx, Built, NodeInfo, NodeType, Params, PortSpec, ProcessIo, Processor};
use crate::param::{db_to_gain, EventKind, ParamSpec, Smoother};

const PLAYER_PARAMS: &[ParamSpec] = &[
    ParamSpec::string("path", "", "audio file (WAV, FLAC, MP3, OGG), relative to the patch"),
    ParamSpec::boolean("loop", false, true, "start again at the end"),
    ParamSpec::boolean("playing", true, true, "play (turning it on at the end starts again)"),
    ParamSpec::float("gain_db", -120.0, 24.0, 0.0, "dB", "gain"),
    ParamSpec::int(
        "channels",
        0,
        16,
        0,
        "output channels; 0 = the file's (others repeat the file's channels)",
    ),
];

struct PlayerProc {
    data: Vec<f32>,
    file_channels: usize,
    frames: usize,
    pos: usize,
    looping: bool,
    playing: bool,
    gain: Smoother,
}

impl Processor for PlayerProc {
    fn event(&mut self, ev: &EventKind) {
        if let EventKind::Param { index, value } = *ev {
            match index {
                1 => self.looping = value >= 0.5,
                2 => {
                    let on = value >= 0.5;
                    if on && !self.playing && self.pos >= self.frames {
                        self.pos = 0;
                    }
                    self.playing = on;
                }
                3 => self.gain.set_target(db_to_gain(value)),
                _ => {}
            }
        }
    }
    fn process(&mut self, io: &mut ProcessIo) {
        let fc = self.file_channels;
        for t in 0..io.frames {
            let g = self.gain.next();
            let live = self.playing && self.pos < self.frames;
            for (c, o) in io.outputs.iter_mut().enumerate() {
                o[t] = if live { self.data[self.pos * fc + c % fc] * g } else { 0.0 };
            }
            if live {
                self.pos += 1;
                if self.pos == self.frames && self.looping {
                    self.pos = 0;
                }
            }
        }
    }
}

pub const PLAYER: NodeType = NodeType {
    name: "player",
    doc: "Plays an audio file, optionally looped, resampled to the engine rate.",
    params: PLAYER_PARAMS,
    params_of: None,
    build: |p: &Params, ctx: &BuildCtx| {
        if p.str("path").is_empty() {
            return Err("`path` is required (the audio file to play)".into());
        }
        let path = ctx.resolve(p.str("path"));
        let decoded = crate::audio_file::decode(&path).map_err(|e| e.to_string())?;
        if let Some(w) = &decoded.warning {
            tracing::warn!("player: {}: {w}; playing what could be read", path.display());
        }
        let audio = decoded.audio;
        let fc = audio.channels;
        let data = crate::dsp::resample_interleaved(&audio.samples, fc, audio.sample_rate, ctx.sample_rate as u32);
        let ch = if p.usize("channels") == 0 { fc } else { p.usize("channels") };
        let frames = data.len() / fc.max(1);
        Ok(Built {
            info: NodeInfo {
                outputs: vec![PortSpec::new("out", ch)],
                ..Default::default()
            },
            processor: Box::new(PlayerProc {
                data,
                file_channels: fc,
                frames,
                pos: 0,
                looping: p.bool("loop"),
                playing: p.bool("playing"),
                gain: Smoother::with_time(db_to_gain(p.f32("gain_db")), SMOOTH_MS, ctx.sample_rate),
            }),
        })
    },
};
