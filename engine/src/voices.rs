//! Notes to control curves (audio thread; built on the control thread): MIDI notes, velocity
//! and pitch bend become, per voice, an f0 in Hz and a loudness in dB with a shaped attack and
//! release, advanced one frame at a time. What a keyboard gives a node that is played by f0
//! and loudness (`timbre`). Notes outside the range the instrument knows are moved by octaves
//! into it. A new note takes a free voice, else the one released longest ago, else the oldest.

/// Loudness of a voice that is not sounding.
pub const SILENT_DB: f32 = -100.0;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Stage {
    Off,
    Held,
    Released,
}

#[derive(Clone, Copy, Debug)]
struct Voice {
    stage: Stage,
    channel: u8,
    note: u8,
    /// The note that sounds (moved into range).
    playing: u8,
    target_db: f32,
    level_db: f32,
    /// dB the release falls a frame (from the level at note-off to silence in the release time).
    fall_db: f32,
    age: u64,
}

/// What one voice plays this frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VoiceControl {
    pub f0_hz: f32,
    pub loudness_db: f32,
    /// Sounding (held, or released and not yet silent).
    pub active: bool,
}

pub struct NoteVoices {
    voices: Vec<Voice>,
    /// Per channel, the bend in semitones.
    bend: [f32; 16],
    bend_range: f32,
    attack_db_per_frame: f32,
    release_frames: f32,
    lowest: u8,
    highest: u8,
    clock: u64,
    /// Notes moved by octaves into range since the last `take_moved`.
    moved: u32,
}

impl NoteVoices {
    /// `voices` voices; the attack rises from silence to full level (0 dB) in `attack_ms`, the
    /// release falls from the note's level to silence in `release_ms`, at `frames_per_s`
    /// frames a second.
    pub fn new(voices: usize, attack_ms: f32, release_ms: f32, frames_per_s: f32) -> Self {
        let frames = |ms: f32| (ms * frames_per_s / 1000.0).max(1.0);
        Self {
            voices: vec![
                Voice {
                    stage: Stage::Off,
                    channel: 0,
                    note: 0,
                    playing: 0,
                    target_db: SILENT_DB,
                    level_db: SILENT_DB,
                    fall_db: 0.0,
                    age: 0,
                };
                voices
            ],
            bend: [0.0; 16],
            bend_range: 2.0,
            attack_db_per_frame: -SILENT_DB / frames(attack_ms),
            release_frames: frames(release_ms),
            lowest: 0,
            highest: 127,
            clock: 0,
            moved: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.voices.len()
    }
    pub fn is_empty(&self) -> bool {
        self.voices.is_empty()
    }

    /// The MIDI range notes are moved into (by octaves).
    pub fn set_range(&mut self, lowest: u8, highest: u8) {
        self.lowest = lowest.min(highest);
        self.highest = highest.max(lowest);
    }
    pub fn set_bend_range(&mut self, semitones: f32) {
        self.bend_range = semitones;
    }

    /// How many notes were moved into range since the last call.
    pub fn take_moved(&mut self) -> u32 {
        std::mem::take(&mut self.moved)
    }

    /// Applies one MIDI message (notes, bend, all notes off).
    pub fn midi(&mut self, msg: [u8; 3]) {
        let ch = msg[0] & 0x0f;
        match msg[0] & 0xf0 {
            0x90 if msg[2] > 0 => self.note_on(ch, msg[1] & 0x7f, msg[2] & 0x7f),
            0x80 | 0x90 => self.note_off(ch, msg[1] & 0x7f),
            0xe0 => {
                let v = ((msg[2] as i32 & 0x7f) << 7 | (msg[1] as i32 & 0x7f)) - 8192;
                self.bend[ch as usize] = v as f32 / 8192.0;
            }
            0xb0 if msg[1] == 120 || msg[1] == 123 => {
                for v in self.voices.iter_mut().filter(|v| v.stage == Stage::Held) {
                    v.stage = Stage::Released;
                    v.fall_db = (v.level_db - SILENT_DB) / self.release_frames;
                }
            }
            _ => {}
        }
    }

    fn moved_into_range(&mut self, note: u8) -> u8 {
        let mut n = note as i32;
        while n < self.lowest as i32 {
            n += 12;
        }
        while n > self.highest as i32 {
            n -= 12;
        }
        let n = n.clamp(0, 127) as u8;
        if n != note {
            self.moved += 1;
        }
        n
    }

    fn note_on(&mut self, channel: u8, note: u8, velocity: u8) {
        self.clock += 1;
        let playing = self.moved_into_range(note);
        // A free voice, else the one released longest ago, else the oldest held.
        let pick = |v: &Voice| match v.stage {
            Stage::Off => (0, 0),
            Stage::Released => (1, v.age),
            Stage::Held => (2, v.age),
        };
        let Some(v) = self.voices.iter_mut().min_by_key(|v| pick(v)) else {
            return;
        };
        let fresh = v.stage == Stage::Off;
        *v = Voice {
            stage: Stage::Held,
            channel,
            note,
            playing,
            // Velocity 127 is -10 dB, 64 about -30 dB, 1 -50 dB: the loudness of a line played
            // at that dynamic, as `features` measures it.
            target_db: -50.0 + 40.0 * velocity as f32 / 127.0,
            level_db: if fresh { SILENT_DB } else { v.level_db },
            fall_db: 0.0,
            age: self.clock,
        };
    }

    fn note_off(&mut self, channel: u8, note: u8) {
        for v in self.voices.iter_mut() {
            if v.stage == Stage::Held && v.channel == channel && v.note == note {
                v.stage = Stage::Released;
                v.fall_db = (v.level_db - SILENT_DB) / self.release_frames;
            }
        }
    }

    /// Advances every voice one frame and returns voice `i`'s controls through `each`, f0
    /// moved by `transpose` semitones.
    pub fn frame(&mut self, transpose: f32, mut each: impl FnMut(usize, VoiceControl)) {
        for (i, v) in self.voices.iter_mut().enumerate() {
            match v.stage {
                Stage::Off => {}
                Stage::Held => v.level_db = (v.level_db + self.attack_db_per_frame).min(v.target_db),
                Stage::Released => {
                    v.level_db -= v.fall_db.max(0.01);
                    if v.level_db <= SILENT_DB {
                        v.level_db = SILENT_DB;
                        v.stage = Stage::Off;
                    }
                }
            }
            let semis = v.playing as f32 - 69.0 + self.bend[v.channel as usize] * self.bend_range + transpose;
            each(
                i,
                VoiceControl {
                    f0_hz: 440.0 * 2f32.powf(semis / 12.0),
                    loudness_db: v.level_db,
                    active: v.stage != Stage::Off,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controls(v: &mut NoteVoices) -> Vec<VoiceControl> {
        let mut out = vec![];
        v.frame(0.0, |_, c| out.push(c));
        out
    }

    #[test]
    fn a_note_rises_holds_and_falls_on_its_pitch() {
        let mut v = NoteVoices::new(2, 20.0, 40.0, 250.0);
        v.midi([0x90, 69, 127]);
        let first = controls(&mut v)[0];
        assert!(first.active && (first.f0_hz - 440.0).abs() < 0.01);
        assert!(first.loudness_db < -10.0, "the attack starts low: {}", first.loudness_db);
        for _ in 0..5 {
            controls(&mut v);
        }
        assert!(
            (controls(&mut v)[0].loudness_db + 10.0).abs() < 1e-3,
            "held at the velocity's level"
        );
        v.midi([0x80, 69, 0]);
        let mut frames = 0;
        while controls(&mut v)[0].active {
            frames += 1;
            assert!(frames < 20);
        }
        assert!((9..=11).contains(&frames), "a 40 ms release is 10 frames: {frames}");
    }

    #[test]
    fn bends_chords_and_range() {
        let mut v = NoteVoices::new(4, 5.0, 5.0, 250.0);
        v.set_range(55, 100);
        v.midi([0x90, 60, 100]);
        v.midi([0x90, 64, 100]);
        v.midi([0x90, 31, 100]); // G1: moved up two octaves to G3, the lowest G in range
        v.midi([0xe0, 0x00, 0x60]); // bend +0.5 of 2 semitones
        let c = controls(&mut v);
        let hz = |n: f32| 440.0 * 2f32.powf((n - 69.0) / 12.0);
        assert!((c[0].f0_hz - hz(61.0)).abs() < 0.05 && (c[1].f0_hz - hz(65.0)).abs() < 0.05);
        assert!((c[2].f0_hz - hz(56.0)).abs() < 0.05, "{}", c[2].f0_hz);
        assert_eq!(v.take_moved(), 1);
        assert!(!c[3].active);
    }
}
