//! The `timbre` node's model side: the decoder's sizes, the instrument table (instruments.json
//! beside the model: names, embeddings, trained ranges; read on the control thread) and the
//! backend the inference worker runs, which keeps each voice's recurrent state (worker thread).

use serde::Deserialize;
use stagebox_engine::infer::InferBackend;

use crate::{Manifest, ModelError, OrtModel};

pub const HARMONICS: usize = 60;
pub const BANDS: usize = 65;
pub const EMBED: usize = 8;
/// What the decoder reads a frame: midi(f0) / 127, loudness, voiced, vibrato, the note's age
/// (seconds), the embedding.
pub const COND: usize = 5 + EMBED;
/// The vibrato input (train.py's `vibrato`, the same rule): a voice's pitch against its own
/// slow centre, which follows with this time constant and jumps to a new note at once.
const VIBRATO_TAU_S: f32 = 0.1;
const VIBRATO_JUMP: f32 = 1.0;
const VIBRATO_SCALE: f32 = 5.0;

/// A voice's f0 as a (fractional) MIDI note, as the decoder reads it (below 20 Hz: 20 Hz).
pub fn midi_of(f0_hz: f32) -> f32 {
    69.0 + 12.0 * (f0_hz.max(20.0) / 440.0).log2()
}

/// One voice's pitch centre, frame by frame (250 a second). Audio thread.
#[derive(Clone, Copy, Default)]
pub struct Vibrato {
    centre_midi: Option<f32>,
}

impl Vibrato {
    /// This frame's vibrato input for a voice at `f0_hz` (0 or less: not sounding): the pitch
    /// against the centre in semitones, times 5, within +-2.
    pub fn input(&mut self, f0_hz: f32, frame_s: f32) -> f32 {
        let midi = midi_of(f0_hz);
        let centre = match self.centre_midi {
            Some(c) if f0_hz > 20.0 && (midi - c).abs() <= VIBRATO_JUMP => c + (1.0 - (-frame_s / VIBRATO_TAU_S).exp()) * (midi - c),
            _ => midi,
        };
        self.centre_midi = Some(centre);
        (VIBRATO_SCALE * (midi - centre)).clamp(-2.0, 2.0)
    }
}

/// A new note (the note's age back to 0) at an unvoiced frame or a jump of more than this many
/// semitones from the frame before (train.py's `NOTE_JUMP`).
const NOTE_JUMP: f32 = 1.0;

/// How long one voice's note has sounded, frame by frame (250 a second): the age input, by
/// train.py's `note_age_s` (the decoder reads its age table with it). Audio thread.
#[derive(Clone, Copy, Default)]
pub struct NoteAge {
    last_midi: Option<f32>,
    age_s: f32,
}

impl NoteAge {
    /// This frame's age (seconds) for a voice at `f0_hz` (0 or less: not sounding), `voiced` (0..1).
    pub fn input(&mut self, f0_hz: f32, voiced: f32, frame_s: f32) -> f32 {
        let midi = midi_of(f0_hz);
        let same_note = f0_hz > 20.0 && voiced >= 0.5 && self.last_midi.is_some_and(|m| (midi - m).abs() <= NOTE_JUMP);
        self.age_s = if same_note { self.age_s + frame_s } else { 0.0 };
        self.last_midi = Some(midi);
        self.age_s
    }
}

/// Half the rate the decoder was trained at: its harmonics and noise stop here.
pub const MODEL_NYQUIST_HZ: f32 = 8000.0;
/// The instruments of the shipped model, in its table's order (checked when it loads).
pub const INSTRUMENT_NAMES: &[&str] = &[
    "flute",
    "flute_gm6",
    "violin",
    "violin_gm6",
    "trumpet",
    "trumpet_gm6",
    "alto_sax",
    "alto_sax_gm6",
    "cello",
    "cello_gm6",
];

#[derive(Deserialize)]
struct Row {
    name: String,
    embedding: Vec<f32>,
    lowest: u8,
    highest: u8,
}

#[derive(Deserialize)]
struct Table {
    instruments: Vec<Row>,
}

/// Each instrument's embedding and trained range, in `INSTRUMENT_NAMES` order.
pub struct Instruments {
    embeddings: Vec<[f32; EMBED]>,
    ranges: Vec<(u8, u8)>,
}

impl Instruments {
    /// Reads the model's instruments.json; its names must be `INSTRUMENT_NAMES`. Control thread.
    pub fn load(manifest: &Manifest) -> Result<Instruments, String> {
        let path = manifest.data_path("instruments").map_err(|e| e.to_string())?;
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let table: Table = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let names: Vec<&str> = table.instruments.iter().map(|r| r.name.as_str()).collect();
        if names != INSTRUMENT_NAMES {
            return Err(format!(
                "{}: the model's instruments are {names:?}; this node knows {INSTRUMENT_NAMES:?}",
                path.display()
            ));
        }
        let mut embeddings = Vec::new();
        for r in &table.instruments {
            let e: [f32; EMBED] = r.embedding.as_slice().try_into().map_err(|_| {
                format!(
                    "{}: instrument `{}` has {} embedding values, not {EMBED}",
                    path.display(),
                    r.name,
                    r.embedding.len()
                )
            })?;
            embeddings.push(e);
        }
        Ok(Instruments {
            embeddings,
            ranges: table.instruments.iter().map(|r| (r.lowest, r.highest)).collect(),
        })
    }

    /// A table for a node without its model (it is silent anyway).
    pub fn silent() -> Instruments {
        Instruments {
            embeddings: vec![[0.0; EMBED]; INSTRUMENT_NAMES.len()],
            ranges: Vec::new(),
        }
    }

    /// The MIDI range instrument `i` was trained on.
    pub fn range(&self, i: usize) -> Option<(u8, u8)> {
        self.ranges.get(i).copied()
    }

    /// Instrument `a`'s embedding moved `morph` (0..1) of the way to `b`'s. Audio thread.
    pub fn mixed(&self, a: usize, b: usize, morph: f32) -> [f32; EMBED] {
        let last = self.embeddings.len() - 1;
        let (ea, eb) = (&self.embeddings[a.min(last)], &self.embeddings[b.min(last)]);
        std::array::from_fn(|k| ea[k] + (eb[k] - ea[k]) * morph.clamp(0.0, 1.0))
    }
}

/// The worker's side: the decoder and one recurrent state a voice.
pub struct TimbreBackend {
    model: OrtModel,
    states: Vec<Vec<f32>>,
    state_shape: Vec<i64>,
    outs: Vec<Vec<f32>>,
}

impl TimbreBackend {
    pub fn load(manifest: Manifest, voices: usize) -> Result<TimbreBackend, ModelError> {
        let state_shape = manifest.input.get(1).map(|t| t.shape.clone()).unwrap_or_default();
        let n = state_shape.iter().product::<i64>().max(0) as usize;
        Ok(TimbreBackend {
            model: OrtModel::load(manifest)?,
            states: vec![vec![0.0; n]; voices],
            state_shape,
            outs: Vec::new(),
        })
    }
}

impl InferBackend for TimbreBackend {
    /// `input`: per voice, whether it sounds and its conditioning; `output`: per voice, the
    /// controls (zeros, and the state reset, for a voice that does not sound).
    fn infer(&mut self, _seq: u64, input: &[f32], output: &mut [f32]) -> Result<(), String> {
        let per_out = 1 + HARMONICS + BANDS;
        for (v, (cond, out)) in input.chunks_exact(COND + 1).zip(output.chunks_exact_mut(per_out)).enumerate() {
            let state = &mut self.states[v];
            if cond[0] < 0.5 {
                state.fill(0.0);
                out.fill(0.0);
                continue;
            }
            let cond_shape = [COND as i64];
            self.model
                .run_many(&[(&cond_shape, &cond[1..]), (&self.state_shape, state)], &mut self.outs)
                .map_err(|e| e.to_string())?;
            let (controls, next) = (&self.outs[0], &self.outs[1]);
            if controls.len() != per_out || next.len() != state.len() || controls.iter().chain(next).any(|x| !x.is_finite()) {
                state.fill(0.0);
                out.fill(0.0);
                continue;
            }
            out.copy_from_slice(controls);
            state.copy_from_slice(next);
        }
        Ok(())
    }
}
