//! Causal note tracker for Basic Pitch activations (inference worker thread). It sees each
//! model frame once, in order, with `lookahead` frames after it available for onset peak
//! picking, and turns note and onset activations into note-on/note-off events.

/// Keys Basic Pitch covers: MIDI 21 (A0) to 108 (C8).
pub const KEYS: usize = 88;
pub const LOWEST_MIDI: u8 = 21;

/// Thresholds and timing, in model frames (86.13 per second).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerParams {
    pub onset_threshold: f32,
    pub frame_threshold: f32,
    /// Frames a note must have lasted before the same key may start again.
    pub min_frames: u32,
    /// Frames below the frame threshold that end a note (1 = the first such frame).
    pub off_frames: u32,
    /// Frames after an onset (from the lookahead) whose note activation must all reach the
    /// frame threshold for the note to start: short ghosts (harmonics, transients) are dropped
    /// without waiting any longer.
    pub sustain_frames: usize,
    /// A note may also start without an onset peak when its note activation rises through
    /// this level (and the lookahead sustains it): slow attacks (bowed strings, voice) whose
    /// onset activation stays low. 0 = only onset peaks start notes.
    pub swell_level: f32,
    /// A second look at each frame one run later, with that many more frames after it: a key
    /// whose onset peak shows only then (slow attacks) starts late, stamped at its frame.
    pub second_look: bool,
    /// An onset peak whose note activation has not yet reached the frame threshold (a slow
    /// inner voice of a chord) waits up to this many frames for it; the note then starts,
    /// stamped at its onset. 0 = an onset's note must be sustained at once.
    pub onset_wait_frames: u32,
}

impl Default for TrackerParams {
    fn default() -> Self {
        Self {
            onset_threshold: 0.5,
            frame_threshold: 0.3,
            min_frames: 6,
            off_frames: 2,
            sustain_frames: 3,
            swell_level: 0.0,
            second_look: false,
            onset_wait_frames: 0,
        }
    }
}

/// How far (activation) a waiting onset's note may fall below its level at the onset before
/// the wait ends.
const WAIT_FALL: f32 = 0.05;

/// Frames apart that two onsets count as struck together.
const STRUCK_WITH: u64 = 3;

/// A note event at model frame `frame` (the frame it describes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoteEvent {
    pub frame: u64,
    pub midi: u8,
    /// 1..=127 for a note-on, 0 for a note-off.
    pub velocity: u8,
}

#[derive(Debug, Clone, Copy, Default)]
struct Key {
    active: bool,
    start: u64,
    below: u32,
    /// Frame of the last frame above threshold (where a note-off is placed).
    last_above: u64,
    /// An onset peak waiting for its note activation: its frame and velocity (0 = none).
    waiting_frame: u64,
    waiting_velocity: u8,
    /// The note activation at the waiting onset: a slow voice's rises from there; a falling
    /// one (a plucked note's harmonic, a transient) ends the wait.
    waiting_level: f32,
}

impl Key {
    /// Starts a note stamped at `start`, decided at frame `now`.
    fn start_note(&mut self, start: u64, now: u64, velocity: u8, midi: u8, out: &mut Vec<NoteEvent>) {
        *self = Key {
            active: true,
            start,
            below: 0,
            last_above: now,
            ..Default::default()
        };
        out.push(NoteEvent {
            frame: start,
            midi,
            velocity,
        });
    }
}

/// Per-key state across frames.
pub struct Tracker {
    pub params: TrackerParams,
    keys: [Key; KEYS],
}

impl Tracker {
    pub fn new(params: TrackerParams) -> Self {
        Self {
            params,
            keys: [Key::default(); KEYS],
        }
    }

    /// Processes frame `frame` (global index), row `j` of `onset` and `note` (88-wide rows, row
    /// major); rows after `j` are lookahead. Events go to `out`.
    pub fn frame(&mut self, frame: u64, onset: &[f32], note: &[f32], j: usize, out: &mut Vec<NoteEvent>) {
        let p = self.params;
        let rows = onset.len() / KEYS;
        let at = |a: &[f32], r: usize, k: usize| if r < rows { a[r * KEYS + k] } else { 0.0 };
        for k in 0..KEYS {
            let on = at(onset, j, k);
            let prev = if j > 0 { at(onset, j - 1, k) } else { 0.0 };
            let peak = on >= p.onset_threshold && on >= prev && on >= at(onset, j + 1, k);
            let sustained = (1..=p.sustain_frames).all(|d| j + d >= rows || at(note, j + d, k) >= p.frame_threshold);
            let nt = at(note, j, k);
            let waiting = self.keys[k].waiting_velocity > 0;
            let harmonic = waiting && self.struck_with_relative(k, self.keys[k].waiting_frame);
            let key = &mut self.keys[k];
            let midi = LOWEST_MIDI + k as u8;
            if key.active {
                if nt < p.frame_threshold && !peak {
                    key.below += 1;
                    if key.below >= p.off_frames {
                        key.active = false;
                        out.push(NoteEvent {
                            frame: key.last_above + 1,
                            midi,
                            velocity: 0,
                        });
                    }
                    continue;
                }
                key.below = 0;
                key.last_above = frame;
                if peak && sustained && frame - key.start >= p.min_frames as u64 {
                    // A new onset on a sounding key: the note is struck again.
                    out.push(NoteEvent { frame, midi, velocity: 0 });
                    out.push(NoteEvent {
                        frame,
                        midi,
                        velocity: velocity(on.max(nt)),
                    });
                    key.start = frame;
                }
            } else if (peak && sustained && nt.max(on) >= p.frame_threshold)
                || (p.swell_level > 0.0 && sustained && nt >= p.swell_level && j > 0 && at(note, j - 1, k) < p.swell_level)
            {
                key.start_note(frame, frame, velocity(on.max(nt)), midi, out);
            } else if peak && p.onset_wait_frames > 0 {
                key.waiting_frame = frame;
                key.waiting_velocity = velocity(on);
                key.waiting_level = nt;
            } else if key.waiting_velocity > 0 {
                if frame - key.waiting_frame > p.onset_wait_frames as u64 || nt < key.waiting_level - WAIT_FALL || harmonic {
                    key.waiting_velocity = 0;
                } else if sustained && nt >= p.frame_threshold {
                    // The waiting onset's note has arrived: it starts where its onset was.
                    key.start_note(key.waiting_frame, frame, key.waiting_velocity, midi, out);
                }
            }
        }
    }

    /// The second look at frame `frame` (row `j`; decided before, now with more rows after it):
    /// a key that was not sounding there and is not now, whose onset activation peaks there at
    /// the onset threshold and whose note activation has stayed at the frame threshold on every
    /// row since, starts now, stamped at `frame`. `upto`: the last frame decided so far.
    pub fn late_frame(&mut self, frame: u64, onset: &[f32], note: &[f32], j: usize, upto: u64, out: &mut Vec<NoteEvent>) {
        let p = self.params;
        let rows = onset.len() / KEYS;
        if j == 0 || j + 1 >= rows {
            return;
        }
        let at = |a: &[f32], r: usize, k: usize| a[r * KEYS + k];
        for k in 0..KEYS {
            let key = &mut self.keys[k];
            if key.active || (key.start > 0 && key.last_above + 1 >= frame) {
                continue;
            }
            let on = at(onset, j, k);
            if on < p.onset_threshold || on < at(onset, j - 1, k) || on < at(onset, j + 1, k) {
                continue;
            }
            if (j..rows).any(|r| at(note, r, k) < p.frame_threshold) {
                continue;
            }
            key.start_note(frame, upto, velocity(on.max(at(note, j, k))), LOWEST_MIDI + k as u8, out);
        }
    }

    /// Whether a key an octave below or above, or a twelfth or two octaves below, key `k` was
    /// struck with an onset at `frame` (within `STRUCK_WITH` frames) and sounds: a waiting
    /// onset there is that note's partial (or its undertone), not a voice of its own.
    fn struck_with_relative(&self, k: usize, frame: u64) -> bool {
        [-12, -19, -24, 12].iter().any(|d| {
            let r = k as i64 + d;
            (0..KEYS as i64).contains(&r) && {
                let other = &self.keys[r as usize];
                other.active && other.start + STRUCK_WITH >= frame && other.start <= frame + STRUCK_WITH
            }
        })
    }

    /// Whether key `k` (0 = MIDI 21) is sounding.
    pub fn is_active(&self, k: usize) -> bool {
        self.keys[k].active
    }

    /// Marks key `k` sounding from `frame` without an event (a glide carried into it: the
    /// note is already sounding under another key).
    pub fn carry_on(&mut self, k: usize, frame: u64) {
        if !self.keys[k].active {
            self.keys[k] = Key {
                active: true,
                start: frame,
                last_above: frame,
                ..Default::default()
            };
        }
    }

    /// Ends every sounding note at `frame`.
    pub fn all_off(&mut self, frame: u64, out: &mut Vec<NoteEvent>) {
        for (k, key) in self.keys.iter_mut().enumerate() {
            if key.active {
                key.active = false;
                out.push(NoteEvent {
                    frame,
                    midi: LOWEST_MIDI + k as u8,
                    velocity: 0,
                });
            }
        }
    }
}

fn velocity(a: f32) -> u8 {
    (a.clamp(0.0, 1.0) * 127.0).round().clamp(1.0, 127.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the tracker over synthetic activations: `onset[f][k]`, `note[f][k]`.
    fn run(onset: &[[f32; KEYS]], note: &[[f32; KEYS]], params: TrackerParams) -> Vec<NoteEvent> {
        let mut t = Tracker::new(params);
        let mut out = Vec::new();
        let (on, nt): (Vec<f32>, Vec<f32>) = (onset.concat(), note.concat());
        for f in 0..onset.len() {
            t.frame(f as u64, &on, &nt, f, &mut out);
        }
        out
    }

    fn act(frames: usize, spans: &[(usize, usize, usize, f32)]) -> (Vec<[f32; KEYS]>, Vec<[f32; KEYS]>) {
        // spans: (key, start, end, level): onset peak at start, note from start to end.
        let mut onset = vec![[0.0; KEYS]; frames];
        let mut note = vec![[0.0; KEYS]; frames];
        for &(k, s, e, lvl) in spans {
            onset[s][k] = lvl;
            if s > 0 {
                onset[s - 1][k] = lvl * 0.5;
            }
            if s + 1 < frames {
                onset[s + 1][k] = lvl * 0.4;
            }
            for row in note.iter_mut().take(e).skip(s) {
                row[k] = lvl;
            }
        }
        (onset, note)
    }

    #[test]
    fn a_note_starts_at_its_onset_peak_and_ends_after_its_frames() {
        let (on, nt) = act(40, &[(48, 5, 20, 0.8)]);
        let ev = run(&on, &nt, TrackerParams::default());
        assert_eq!(
            ev,
            vec![
                NoteEvent {
                    frame: 5,
                    midi: 69,
                    velocity: 102
                },
                NoteEvent {
                    frame: 20,
                    midi: 69,
                    velocity: 0
                }
            ]
        );
    }

    #[test]
    fn weak_onsets_do_not_start_notes() {
        let (on, nt) = act(30, &[(10, 5, 20, 0.4)]);
        assert!(run(&on, &nt, TrackerParams::default()).is_empty());
    }

    #[test]
    fn chords_and_overlaps_are_tracked_per_key() {
        let (on, nt) = act(60, &[(39, 5, 30, 0.9), (43, 5, 30, 0.9), (46, 12, 50, 0.7)]);
        let ev = run(&on, &nt, TrackerParams::default());
        let ons: Vec<(u64, u8)> = ev.iter().filter(|e| e.velocity > 0).map(|e| (e.frame, e.midi)).collect();
        let offs: Vec<(u64, u8)> = ev.iter().filter(|e| e.velocity == 0).map(|e| (e.frame, e.midi)).collect();
        assert_eq!(ons, vec![(5, 60), (5, 64), (12, 67)]);
        assert_eq!(offs, vec![(30, 60), (30, 64), (50, 67)]);
    }

    #[test]
    fn short_ghost_notes_are_dropped() {
        // An onset peak whose note lasts 2 frames (a harmonic's transient) starts nothing.
        let (on, nt) = act(30, &[(60, 5, 7, 0.8), (48, 5, 20, 0.8)]);
        let ev = run(&on, &nt, TrackerParams::default());
        assert!(ev.iter().all(|e| e.midi == 69), "{ev:?}");
        assert_eq!(ev.len(), 2);
    }

    #[test]
    fn a_one_frame_dip_does_not_split_a_note() {
        let (on, mut nt) = act(40, &[(30, 5, 25, 0.8)]);
        nt[12][30] = 0.1;
        let ev = run(&on, &nt, TrackerParams::default());
        assert_eq!(ev.len(), 2, "{ev:?}");
    }

    #[test]
    fn a_repeated_note_is_struck_again() {
        let (mut on, nt) = act(50, &[(20, 5, 40, 0.8)]);
        on[20][20] = 0.9;
        on[19][20] = 0.3;
        let ev = run(&on, &nt, TrackerParams::default());
        let kinds: Vec<(u64, u8)> = ev.iter().map(|e| (e.frame, e.velocity)).collect();
        assert_eq!(kinds, vec![(5, 102), (20, 0), (20, 114), (40, 0)]);
    }

    #[test]
    fn a_swelling_note_without_an_onset_starts_only_when_swells_are_on() {
        // A bowed note: no onset peak, the note activation rising slowly to 0.8.
        let frames = 40;
        let on = vec![[0.0; KEYS]; frames];
        let mut nt = vec![[0.0; KEYS]; frames];
        for (f, row) in nt.iter_mut().enumerate().take(30).skip(5) {
            row[40] = (0.1 * (f - 4) as f32).min(0.8);
        }
        assert!(run(&on, &nt, TrackerParams::default()).is_empty());
        let ev = run(
            &on,
            &nt,
            TrackerParams {
                swell_level: 0.6,
                ..Default::default()
            },
        );
        // Starts where it crosses 0.6 (frame 10), ends after its last frame (29).
        let kinds: Vec<(u64, u8, bool)> = ev.iter().map(|e| (e.frame, e.midi, e.velocity > 0)).collect();
        assert_eq!(kinds, vec![(10, 61, true), (30, 61, false)]);
    }

    #[test]
    fn a_second_look_starts_a_note_whose_onset_showed_late() {
        // Frame 10's onset peak is there only in the later view (more frames after it); the
        // first view had it below the threshold.
        let rows = 20;
        let mut on = vec![[0.0; KEYS]; rows];
        let mut nt = vec![[0.0; KEYS]; rows];
        for row in nt.iter_mut().skip(9) {
            row[50] = 0.7;
        }
        let mut t = Tracker::new(TrackerParams::default());
        let mut ev = Vec::new();
        let flat = |a: &[[f32; KEYS]]| a.iter().flatten().copied().collect::<Vec<f32>>();
        on[10][50] = 0.3;
        for j in 0..12 {
            t.frame(j as u64, &flat(&on), &flat(&nt), j, &mut ev);
        }
        assert!(ev.is_empty(), "{ev:?}");
        on[10][50] = 0.8;
        t.late_frame(10, &flat(&on), &flat(&nt), 10, 11, &mut ev);
        assert_eq!(
            ev,
            vec![NoteEvent {
                frame: 10,
                midi: 71,
                velocity: velocity(0.8)
            }]
        );
        assert!(t.is_active(50));
        // Once: a second late look at the same frame starts nothing more.
        t.late_frame(10, &flat(&on), &flat(&nt), 10, 11, &mut ev);
        assert_eq!(ev.len(), 1);
        // A key whose activation dropped since its onset is not started late.
        let mut on2 = on.clone();
        let mut nt2 = nt.clone();
        on2[10][50] = 0.8;
        nt2[14][50] = 0.1;
        let mut t2 = Tracker::new(TrackerParams::default());
        let mut ev2 = Vec::new();
        t2.late_frame(10, &flat(&on2), &flat(&nt2), 10, 11, &mut ev2);
        assert!(ev2.is_empty(), "{ev2:?}");
    }

    #[test]
    fn an_onset_waits_for_its_slow_note_only_as_long_as_allowed() {
        // An inner voice of a chord: onset peak at frame 5, its note activation 0.2 until
        // frame 9, then 0.7 (it reaches the threshold 5 frames after its onset).
        let (on, mut nt) = act(40, &[(30, 5, 30, 0.8)]);
        for row in nt.iter_mut().take(10).skip(5) {
            row[30] = 0.2;
        }
        for row in nt.iter_mut().take(30).skip(10) {
            row[30] = 0.7;
        }
        assert!(run(&on, &nt, TrackerParams::default()).is_empty());
        let wait = |frames| TrackerParams {
            onset_wait_frames: frames,
            ..Default::default()
        };
        assert!(run(&on, &nt, wait(4)).is_empty(), "waited longer than allowed");
        let ev = run(&on, &nt, wait(6));
        let kinds: Vec<(u64, u8, bool)> = ev.iter().map(|e| (e.frame, e.midi, e.velocity > 0)).collect();
        assert_eq!(kinds, vec![(5, 51, true), (30, 51, false)], "stamped at its onset");
        // A note activation that falls after the onset (a transient's ghost) ends the wait, even
        // if the key's activation rises again later.
        for row in nt.iter_mut().take(8).skip(6) {
            row[30] = 0.1;
        }
        assert!(run(&on, &nt, wait(6)).is_empty());
    }

    #[test]
    fn a_waiting_onset_an_octave_from_a_note_struck_with_it_is_its_partial() {
        // Key 40 struck at frame 5; keys 52 (an octave up) and 47 (a fifth up) show onset
        // peaks there too, their notes arriving 4 frames later: the fifth is a voice, the
        // octave the struck note's partial.
        let (on, mut nt) = act(40, &[(40, 5, 30, 0.9), (52, 5, 30, 0.8), (47, 5, 30, 0.8)]);
        for k in [52, 47] {
            for row in nt.iter_mut().take(9).skip(5) {
                row[k] = 0.2;
            }
        }
        let params = TrackerParams {
            onset_wait_frames: 11,
            ..Default::default()
        };
        let ons: Vec<(u64, u8)> = run(&on, &nt, params)
            .iter()
            .filter(|e| e.velocity > 0)
            .map(|e| (e.frame, e.midi))
            .collect();
        assert_eq!(ons, vec![(5, 61), (5, 68)]);
    }
}
