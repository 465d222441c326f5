//! Notes as a person reads them: each note's onset, pitch, velocity and duration, paired from
//! the note-on and note-off events of a render, an event log (JSON lines) or a Standard MIDI File;
//! printed as a list (`render --notes-out`). Control thread.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::events::Emitted;
use crate::run::results::note_name;

/// One note, in seconds from the start of the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub onset_s: f64,
    pub duration_s: f64,
    pub pitch: u8,
    pub velocity: u8,
}

/// Pairs note-ons with their note-offs (same channel and key); a note still sounding at `end_s`
/// ends there. Sorted by onset, then pitch.
pub fn pair(events: impl IntoIterator<Item = (f64, [u8; 3])>, end_s: f64) -> Vec<Note> {
    let mut sounding: [[Option<(f64, u8)>; 128]; 16] = [[None; 128]; 16];
    let mut notes = Vec::new();
    let close = |notes: &mut Vec<Note>, started: Option<(f64, u8)>, key: u8, t: f64| {
        if let Some((onset_s, velocity)) = started {
            notes.push(Note {
                onset_s,
                duration_s: (t - onset_s).max(0.0),
                pitch: key,
                velocity,
            });
        }
    };
    for (t, m) in events {
        let (ch, key) = ((m[0] & 0x0f) as usize, m[1] & 0x7f);
        match m[0] & 0xf0 {
            0x90 if m[2] > 0 => {
                let was = sounding[ch][key as usize].replace((t, m[2]));
                close(&mut notes, was, key, t);
            }
            0x80 | 0x90 => {
                let was = sounding[ch][key as usize].take();
                close(&mut notes, was, key, t);
            }
            _ => {}
        }
    }
    for keys in sounding.iter() {
        for (key, started) in keys.iter().enumerate() {
            close(&mut notes, *started, key as u8, end_s.max(started.map_or(0.0, |s| s.0)));
        }
    }
    notes.sort_by(|a, b| a.onset_s.total_cmp(&b.onset_s).then(a.pitch.cmp(&b.pitch)));
    notes
}

/// The notes of a render: each event placed at the onset of the sound it describes.
pub fn from_emitted(events: &[Emitted], sample_rate: u32, end_s: f64) -> Vec<Note> {
    let sr = sample_rate as f64;
    pair(events.iter().map(|e| (e.origin as f64 / sr, e.msg)), end_s)
}

/// The notes of an event log written by `--events-out` (its `onset_s` and `bytes`).
pub fn from_jsonl(path: &Path) -> anyhow::Result<Vec<Note>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut events = Vec::new();
    let mut end_s = 0.0f64;
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}: not a JSON object", path.display(), i + 1))?;
        let bytes: Option<Vec<u8>> = v["bytes"]
            .as_array()
            .and_then(|a| a.iter().map(|b| b.as_u64().map(|x| x as u8)).collect());
        let (Some(b), Some(t)) = (bytes.filter(|b| b.len() == 3), v["onset_s"].as_f64().or(v["time_s"].as_f64())) else {
            anyhow::bail!("{}:{}: an event without `bytes` and `onset_s`", path.display(), i + 1);
        };
        end_s = end_s.max(v["time_s"].as_f64().unwrap_or(t));
        events.push((t, [b[0], b[1], b[2]]));
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(pair(events, end_s))
}

/// The notes of a Standard MIDI File (every track; tempo changes followed).
pub fn from_smf(path: &Path) -> anyhow::Result<Vec<Note>> {
    let (events, end_s) = smf_events(path)?;
    let notes = events.into_iter().filter(|(_, m)| matches!(m[0] & 0xf0, 0x80 | 0x90));
    Ok(pair(notes, end_s))
}

/// The channel messages of a Standard MIDI File (notes, pitch bends, controllers, aftertouch,
/// programs) at their times in seconds, in order, and the file's end in seconds.
pub fn smf_events(path: &Path) -> anyhow::Result<(Vec<(f64, [u8; 3])>, f64)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let smf = midly::Smf::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: not a Standard MIDI File ({e})", path.display()))?;
    let ticks_per_beat = match smf.header.timing {
        midly::Timing::Metrical(t) => t.as_int() as f64,
        midly::Timing::Timecode(fps, sub) => {
            // Seconds per tick are fixed: express them as a beat of one second.
            fps.as_f32() as f64 * sub as f64
        }
    };
    let mut timed: Vec<(u64, usize, midly::TrackEventKind)> = Vec::new();
    for track in &smf.tracks {
        let mut tick = 0u64;
        for ev in track {
            tick += ev.delta.as_int() as u64;
            timed.push((tick, timed.len(), ev.kind));
        }
    }
    timed.sort_by_key(|(t, i, _)| (*t, *i));
    let metrical = matches!(smf.header.timing, midly::Timing::Metrical(_));
    let (mut us_per_beat, mut last_tick, mut now_s) = (if metrical { 500_000.0 } else { 1e6 }, 0u64, 0.0f64);
    let mut events = Vec::new();
    for (tick, _, kind) in timed {
        now_s += (tick - last_tick) as f64 / ticks_per_beat * us_per_beat / 1e6;
        last_tick = tick;
        match kind {
            midly::TrackEventKind::Meta(midly::MetaMessage::Tempo(t)) if metrical => us_per_beat = t.as_int() as f64,
            midly::TrackEventKind::Midi { channel, message } => {
                let ch = channel.as_int();
                match message {
                    midly::MidiMessage::NoteOn { key, vel } => events.push((now_s, [0x90 | ch, key.as_int(), vel.as_int()])),
                    midly::MidiMessage::NoteOff { key, .. } => events.push((now_s, [0x80 | ch, key.as_int(), 0])),
                    midly::MidiMessage::PitchBend { bend } => {
                        let v = bend.0.as_int();
                        events.push((now_s, [0xe0 | ch, (v & 0x7f) as u8, (v >> 7) as u8]));
                    }
                    midly::MidiMessage::Controller { controller, value } => {
                        events.push((now_s, [0xb0 | ch, controller.as_int(), value.as_int()]))
                    }
                    midly::MidiMessage::ChannelAftertouch { vel } => events.push((now_s, [0xd0 | ch, vel.as_int(), 0])),
                    midly::MidiMessage::ProgramChange { program } => events.push((now_s, [0xc0 | ch, program.as_int(), 0])),
                    midly::MidiMessage::Aftertouch { key, vel } => events.push((now_s, [0xa0 | ch, key.as_int(), vel.as_int()])),
                }
            }
            _ => {}
        }
    }
    Ok((events, now_s))
}

/// Reads notes from an event log (`.jsonl`, `.json`) or a MIDI file (anything else).
pub fn from_file(path: &Path) -> anyhow::Result<Vec<Note>> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("jsonl" | "json" | "ndjson") => from_jsonl(path),
        _ => from_smf(path),
    }
}

/// `time  note  velocity  duration` lines, with a header, times in seconds.
pub fn write_list(w: &mut dyn Write, notes: &[Note]) -> std::io::Result<()> {
    writeln!(w, "{:>9}  {:<5} {:>8}  {:>8}", "time_s", "note", "velocity", "duration_s")?;
    for n in notes {
        writeln!(
            w,
            "{:>9.3}  {:<5} {:>8}  {:>8.3}",
            n.onset_s,
            note_name(n.pitch),
            n.velocity,
            n.duration_s
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_ons_with_offs_per_channel_and_closes_hanging_notes() {
        let ev = vec![
            (0.0, [0x90, 60, 100]),
            (0.5, [0x91, 60, 90]),
            (1.0, [0x80, 60, 0]),
            (1.2, [0x90, 64, 80]),
            (1.5, [0x91, 60, 0]),
        ];
        let notes = pair(ev, 2.0);
        assert_eq!(notes.len(), 3);
        assert_eq!((notes[0].pitch, notes[0].duration_s), (60, 1.0));
        assert_eq!((notes[1].onset_s, notes[1].duration_s, notes[1].velocity), (0.5, 1.0, 90));
        assert!((notes[2].duration_s - 0.8).abs() < 1e-9, "the hanging E4 ends at the end");
    }

    #[test]
    fn the_list_reads_as_time_note_velocity_duration() {
        let mut out = Vec::new();
        let n = Note {
            onset_s: 1.25,
            duration_s: 0.5,
            pitch: 61,
            velocity: 77,
        };
        write_list(&mut out, &[n]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row, ["1.250", "C#4", "77", "0.500"]);
    }
}
