//! Notes and MIDI the graph emitted, written as an event log (JSON lines) and as a Standard
//! MIDI File (control thread).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::json;
use stagebox_engine::msg::FromRt;

/// One MIDI event the graph emitted.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub node: String,
    /// Engine sample time it was emitted at.
    pub sample_time: u64,
    /// Engine sample time of the sound it describes (a note's estimated onset).
    pub origin: u64,
    pub msg: [u8; 3],
}

/// The MIDI events among `messages`, with node ids from `ids` (index = node index).
pub fn collect(messages: &[FromRt], ids: &[String]) -> Vec<Emitted> {
    messages
        .iter()
        .filter_map(|m| match *m {
            FromRt::Midi {
                node,
                sample_time,
                origin,
                msg,
                ..
            } => Some(Emitted {
                node: ids.get(node as usize).cloned().unwrap_or_default(),
                sample_time,
                origin,
                msg,
            }),
            _ => None,
        })
        .collect()
}

fn kind(msg: [u8; 3]) -> &'static str {
    match msg[0] & 0xf0 {
        0x90 if msg[2] > 0 => "note_on",
        0x80 | 0x90 => "note_off",
        0xe0 => "pitch_bend",
        0xb0 => "control_change",
        _ => "midi",
    }
}

/// One JSON object a line: time emitted, sample rate, and for notes the pitch and estimated onset.
pub fn write_jsonl(path: &Path, events: &[Emitted], sample_rate: u32) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?);
    for e in events {
        writeln!(f, "{}", json_line(e, sample_rate))?;
    }
    f.flush()?;
    Ok(())
}

/// One event as a JSON object.
pub fn json_line(e: &Emitted, sample_rate: u32) -> serde_json::Value {
    let sr = sample_rate as f64;
    {
        let mut j = json!({
            "type": kind(e.msg),
            "node": e.node,
            "sample_time": e.sample_time,
            "time_s": e.sample_time as f64 / sr,
            "sample_rate": sample_rate,
            "channel": (e.msg[0] & 0x0f) + 1,
            "bytes": e.msg,
        });
        if matches!(kind(e.msg), "note_on" | "note_off") {
            j["pitch"] = json!(e.msg[1]);
            j["velocity"] = json!(e.msg[2]);
            j["onset_sample_time"] = json!(e.origin);
            j["onset_s"] = json!(e.origin as f64 / sr);
            j["latency_s"] = json!((e.sample_time as f64 - e.origin as f64) / sr);
        }
        j
    }
}

/// A Standard MIDI File (format 0, 120 BPM, 960 ticks a beat) with each event placed at the time
/// of the sound it describes; notes still sounding at `end` are closed there.
pub fn write_smf(path: &Path, events: &[Emitted], sample_rate: u32, end: u64) -> anyhow::Result<()> {
    use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
    let tick = |s: u64| (s as f64 / sample_rate as f64 * 1920.0).round() as u64;
    let mut timed: Vec<(u64, [u8; 3])> = events.iter().map(|e| (e.origin, e.msg)).collect();
    // Close hanging notes.
    let mut on = [[false; 128]; 16];
    for (_, m) in &timed {
        let (ch, k) = ((m[0] & 0x0f) as usize, (m[1] & 0x7f) as usize);
        match kind(*m) {
            "note_on" => on[ch][k] = true,
            "note_off" => on[ch][k] = false,
            _ => {}
        }
    }
    for (ch, keys) in on.iter().enumerate() {
        for (k, &sounding) in keys.iter().enumerate() {
            if sounding {
                timed.push((end, [0x80 | ch as u8, k as u8, 0]));
            }
        }
    }
    // Stable: at equal times keep emission order (an off before its re-strike).
    timed.sort_by_key(|(t, _)| *t);
    let mut track = vec![TrackEvent {
        delta: 0.into(),
        kind: TrackEventKind::Meta(MetaMessage::Tempo(500_000.into())),
    }];
    let mut last = 0u64;
    for (t, m) in timed {
        let t = tick(t);
        let channel = (m[0] & 0x0f).into();
        let (key, val) = ((m[1] & 0x7f).into(), (m[2] & 0x7f).into());
        let message = match m[0] & 0xf0 {
            0x90 => MidiMessage::NoteOn { key, vel: val },
            0x80 => MidiMessage::NoteOff { key, vel: val },
            0xb0 => MidiMessage::Controller {
                controller: key,
                value: val,
            },
            0xe0 => MidiMessage::PitchBend {
                bend: midly::PitchBend(midly::num::u14::new(((m[2] as u16) << 7) | m[1] as u16)),
            },
            _ => continue,
        };
        track.push(TrackEvent {
            delta: ((t - last) as u32).into(),
            kind: TrackEventKind::Midi { channel, message },
        });
        last = t;
    }
    track.push(TrackEvent {
        delta: 0.into(),
        kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
    });
    let smf = Smf {
        header: Header::new(Format::SingleTrack, Timing::Metrical(960.into())),
        tracks: vec![track],
    };
    smf.save(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
