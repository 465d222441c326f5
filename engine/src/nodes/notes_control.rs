//! `notes_to_control`: MIDI notes, velocity and pitch bend as control curves (f0 in Hz,
//! loudness in dB, voiced), attack and release shaped, every 4 ms: what a keyboard gives any node
//! that is played by f0 and loudness (the `timbre` node's control inputs, a filter's cutoff).
//! One voice, the newest note wins (legato: a new note while one is held glides without a new
//! attack). Spec on the control thread; the processor on the audio thread.

use crate::node::{BuildCtx, Built, NodeInfo, NodeType, Params, PortSpec, ProcessIo, Processor};
use crate::param::{EventKind, ParamSpec};
use crate::voices::{NoteVoices, VoiceControl, SILENT_DB};

const FRAMES_PER_S: f32 = 250.0;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::float_fixed("attack_ms", 1.0, 1000.0, 25.0, "ms", "time to rise from silence to full level"),
    ParamSpec::float_fixed(
        "release_ms",
        1.0,
        5000.0,
        150.0,
        "ms",
        "time to fall from the note's level to silence",
    ),
    ParamSpec::float_fixed("bend_range", 0.0, 48.0, 2.0, "semitones", "pitch-bend range"),
    ParamSpec::int("channel", 0, 16, 0, "MIDI channel to follow (1-16); 0: every channel"),
];

struct NotesControlProc {
    notes: NoteVoices,
    channel: u8,
    hop: usize,
    since: usize,
    now: VoiceControl,
}

impl Processor for NotesControlProc {
    fn event(&mut self, kind: &EventKind) {
        if let EventKind::Midi(msg) = *kind {
            if self.channel == 0 || msg[0] >= 0xf0 || (msg[0] & 0x0f) + 1 == self.channel {
                self.notes.midi(msg);
            }
        }
    }

    fn process(&mut self, io: &mut ProcessIo) {
        for t in 0..io.frames {
            if self.since == 0 {
                let now = &mut self.now;
                self.notes.frame(0.0, |_, c| *now = c);
            }
            self.since = (self.since + 1) % self.hop;
            if let [f0, loudness, voiced] = &mut io.outputs[..] {
                f0[t] = self.now.f0_hz;
                loudness[t] = self.now.loudness_db;
                voiced[t] = self.now.active as u8 as f32;
            }
        }
    }
}

pub const NOTES_TO_CONTROL: NodeType = NodeType {
    name: "notes_to_control",
    doc: "MIDI notes, velocity and bend as control curves: f0 (Hz), loudness (dB, attack and release shaped), voiced; one voice, newest note wins, every 4 ms.",
    params: PARAMS,
    params_of: None,
    build: |p: &Params, ctx: &BuildCtx| {
        let mut notes = NoteVoices::new(1, p.f32("attack_ms"), p.f32("release_ms"), FRAMES_PER_S);
        notes.set_bend_range(p.f32("bend_range"));
        Ok(Built {
            info: NodeInfo {
                outputs: vec![PortSpec::control("f0"), PortSpec::control("loudness"), PortSpec::control("voiced")],
                midi_in: true,
                ..Default::default()
            },
            processor: Box::new(NotesControlProc {
                notes,
                channel: p.usize("channel") as u8,
                hop: (ctx.sample_rate / FRAMES_PER_S).round().max(1.0) as usize,
                since: 0,
                now: VoiceControl {
                    f0_hz: 0.0,
                    loudness_db: SILENT_DB,
                    active: false,
                },
            }),
        })
    },
};
