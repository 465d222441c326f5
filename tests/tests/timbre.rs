//! The neural instrument through the real binary: a line rendered through patches/timbre.toml
//! and a MIDI file through patches/timbre-midi.toml are played at the pitches given (the output
//! transcribed back by patches/melody.toml); `render --midi-in` places each message at its exact
//! sample; `osc-space` lists the instrument's parameters; `morph` set over OSC while `run`
//! plays changes the sound; `check` refuses a control port wired to an audio port at its line.

use std::path::Path;
use std::time::Duration;

use rosc::OscType;
use stagebox_tests::osc::{client, send};
use stagebox_tests::*;

/// Writes a type-0 MIDI file (480 ticks a beat at 120 BPM: a tick is 1/960 s).
fn write_midi(path: &Path, events: &[(f64, [u8; 3])]) {
    use midly::{num::*, Format, Header, MetaMessage, MidiMessage, PitchBend, Smf, Timing, TrackEvent, TrackEventKind};
    let mut track = Vec::new();
    let mut last = 0u32;
    for (t, m) in events {
        let tick = (t * 960.0).round() as u32;
        let (key, vel) = (u7::new(m[1] & 0x7f), u7::new(m[2] & 0x7f));
        let message = match m[0] & 0xf0 {
            0x90 => MidiMessage::NoteOn { key, vel },
            0x80 => MidiMessage::NoteOff { key, vel },
            0xe0 => MidiMessage::PitchBend {
                bend: PitchBend(u14::new((m[2] as u16 & 0x7f) << 7 | (m[1] as u16 & 0x7f))),
            },
            _ => panic!("not used here"),
        };
        let kind = TrackEventKind::Midi {
            channel: u4::new(m[0] & 0x0f),
            message,
        };
        track.push(TrackEvent {
            delta: u28::new(tick - last),
            kind,
        });
        last = tick;
    }
    track.push(TrackEvent {
        delta: u28::new(0),
        kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
    });
    let smf = Smf {
        header: Header::new(Format::SingleTrack, Timing::Metrical(u15::new(480))),
        tracks: vec![track],
    };
    smf.save(path).unwrap();
}

/// A note name as `--notes-out` writes it (`C#4`, `A-1`) as a MIDI key.
fn key_of(name: &str) -> Option<u8> {
    let pc = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
    let split = name.find(|c: char| c == '-' || c.is_ascii_digit())?;
    let (letter, octave) = name.split_at(split);
    let pc = pc.iter().position(|p| *p == letter)? as i32;
    u8::try_from(12 * (octave.parse::<i32>().ok()? + 1) + pc).ok()
}

/// The notes `patches/melody.toml` hears in `wav`: (onset s, key).
fn transcribe(wav: &Path) -> Vec<(f64, u8)> {
    let out = stagebox()
        .args(["render", "--patch", "patches/melody.toml", "--input"])
        .arg(wav)
        .arg("--output")
        .arg(wav.with_extension("melody.wav"))
        .args(["--notes-out", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.parse().ok()?, key_of(f.get(1)?)?))
        })
        .collect()
}

/// Whether `heard` holds each of `played` (onset s, key) within 80 ms, on its key.
fn follows(heard: &[(f64, u8)], played: &[(f64, f64, u8)]) -> bool {
    played
        .iter()
        .all(|&(on, _, k)| heard.iter().any(|&(t, h)| h == k && (t - on).abs() < 0.08))
}

#[test]
fn a_sung_line_played_by_the_instrument_keeps_its_notes() {
    let d = tmp("timbre-line");
    let notes = [(0.2, 0.9, 67u8), (1.0, 1.7, 71), (1.8, 2.5, 74), (2.6, 3.4, 69)];
    let line = d.join("line.wav");
    write_flute_wav(&line, &notes, 3.8);
    let out_wav = d.join("violin.wav");
    let out = stagebox()
        .args(["render", "--patch", "patches/timbre.toml", "--input"])
        .arg(&line)
        .arg("--output")
        .arg(&out_wav)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let heard = transcribe(&out_wav);
    assert!(follows(&heard, &notes), "played {notes:?}, heard {heard:?}");
}

#[test]
fn a_midi_file_through_the_keyboard_patch_plays_its_notes() {
    let d = tmp("timbre-midi");
    let notes = [(0.2, 0.8, 48u8), (0.9, 1.5, 52), (1.6, 2.2, 55), (2.3, 3.0, 57)];
    let mid = d.join("line.mid");
    let mut events = Vec::new();
    for &(on, off, k) in &notes {
        events.push((on, [0x90, k, 100]));
        events.push((off, [0x80, k, 0]));
    }
    write_midi(&mid, &events);
    let out_wav = d.join("cello.wav");
    let out = stagebox()
        .args(["render", "--patch", "patches/timbre-midi.toml", "--midi-in"])
        .arg(&mid)
        .arg("--output")
        .arg(&out_wav)
        .args(["--tail", "0.5"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let heard = transcribe(&out_wav);
    assert!(follows(&heard, &notes), "played {notes:?}, heard {heard:?}");
}

#[test]
fn render_midi_in_places_every_message_at_its_exact_sample() {
    let d = tmp("midi-in-file");
    let patch = d.join("thru.toml");
    std::fs::write(
        &patch,
        "[[node]]\nid = \"keys\"\ntype = \"midi_in\"\n[[node]]\nid = \"thru\"\ntype = \"midi_out\"\n\
         [[connect]]\nfrom = \"keys.midi\"\nto = \"thru.midi\"\n",
    )
    .unwrap();
    let mid = d.join("keys.mid");
    let played = [
        (0.25, [0x90, 60, 100]),
        (0.5003125, [0x91, 64, 80]),
        (0.75, [0xe0, 0, 0x50]),
        (1.0, [0x80, 60, 0]),
    ];
    write_midi(&mid, &played);
    let events = d.join("events.jsonl");
    let out = stagebox()
        .args(["render", "--patch"])
        .arg(&patch)
        .arg("--midi-in")
        .arg(&mid)
        .arg("--output")
        .arg(d.join("out.wav"))
        .arg("--events-out")
        .arg(&events)
        .args(["--block-size", "256"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: Vec<(u64, Vec<u8>)> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let bytes = v["bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect();
            (v["sample_time"].as_u64().unwrap(), bytes)
        })
        .collect();
    let want: Vec<(u64, Vec<u8>)> = played
        .iter()
        .map(|(t, m)| (((t * 960.0_f64).round() / 960.0 * 48000.0).round() as u64, m.to_vec()))
        .collect();
    assert_eq!(seen, want);
}

#[test]
fn osc_space_lists_the_instrument_and_morph() {
    let out = stagebox().args(["osc-space", "--patch", "patches/timbre.toml"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for addr in [
        "/stagebox/node/voice/instrument",
        "/stagebox/node/voice/morph",
        "/stagebox/node/voice/transpose",
    ] {
        assert!(text.contains(addr), "{addr} missing from:\n{text}");
    }
}

#[test]
fn check_refuses_a_control_port_wired_to_audio_at_its_line() {
    let d = tmp("control-to-audio");
    let p = d.join("p.toml");
    std::fs::write(
        &p,
        "[[node]]\nid = \"in\"\ntype = \"input\"\nchannels = 1\n[[node]]\nid = \"feat\"\ntype = \"features\"\n\
         [[node]]\nid = \"out\"\ntype = \"output\"\nchannels = 1\n[[connect]]\nfrom = \"in\"\nto = \"feat\"\n\
         [[connect]]\nfrom = \"feat.f0\"\nto = \"out\"\n",
    )
    .unwrap();
    let out = stagebox().arg("check").arg(&p).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("p.toml:16:") && err.contains("`feat.f0` is a control port"), "{err}");
}

/// The spectrum's shape (unit energy, 64 bands to 8 kHz) of `x` between two times.
fn shape(x: &[f32], sr: f64, from_s: f64, to_s: f64) -> Vec<f64> {
    let seg = &x[(from_s * sr) as usize..(to_s * sr) as usize];
    let n = 2048;
    let mut bands = vec![0.0f64; 64];
    for start in (0..seg.len().saturating_sub(n)).step_by(n / 2) {
        for (b, band) in bands.iter_mut().enumerate() {
            // Goertzel-free: a direct DFT at the band's centre (coarse, enough to compare).
            let f = (b as f64 + 0.5) * 8000.0 / 64.0;
            let (mut re, mut im) = (0.0, 0.0);
            for (t, v) in seg[start..start + n].iter().enumerate() {
                let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * t as f64 / n as f64).cos();
                let ph = 2.0 * std::f64::consts::PI * f * t as f64 / sr;
                re += *v as f64 * w * ph.cos();
                im += *v as f64 * w * ph.sin();
            }
            *band += re * re + im * im;
        }
    }
    let total: f64 = bands.iter().sum::<f64>().max(1e-20);
    bands.iter().map(|b| (b / total + 1e-6).log10()).collect()
}

fn distance(a: &[f64], b: &[f64]) -> f64 {
    (a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / a.len() as f64).sqrt()
}

#[test]
fn morph_set_over_osc_while_running_changes_the_sound() {
    let d = tmp("timbre-morph");
    let patch = d.join("morph.toml");
    std::fs::write(
        &patch,
        "[[node]]\nid = \"tone\"\ntype = \"osc\"\nfreq_hz = 392.0\ngain_db = -12.0\n\
         [[node]]\nid = \"feat\"\ntype = \"features\"\n\
         [[node]]\nid = \"voice\"\ntype = \"timbre\"\ninstrument = \"trumpet\"\nmorph_to = \"flute\"\nvoices = 0\n\
         [[node]]\nid = \"take\"\ntype = \"recorder\"\nchannels = 1\nformat = \"float32\"\npath = \"voice.wav\"\n\
         [[node]]\nid = \"out\"\ntype = \"output\"\nchannels = 1\n\
         [[connect]]\nfrom = \"tone\"\nto = \"feat\"\n[[connect]]\nfrom = \"feat.f0\"\nto = \"voice.f0\"\n\
         [[connect]]\nfrom = \"feat.loudness\"\nto = \"voice.loudness\"\n[[connect]]\nfrom = \"feat.voiced\"\nto = \"voice.voiced\"\n\
         [[connect]]\nfrom = \"voice\"\nto = \"take\"\n[[connect]]\nfrom = \"voice\"\nto = \"out\"\n",
    )
    .unwrap();
    let takes = d.join("takes");
    let (mut child, log) = spawn_logged(&mut paced_run(&patch, 4.0, &takes));
    let port = log_ports(&log, &["udp://"])[0];
    std::thread::sleep(Duration::from_millis(2000));
    send(&client(), port, "/stagebox/node/voice/morph", vec![OscType::Float(1.0)]);
    assert!(child.wait().unwrap().success());
    let r = hound::WavReader::open(takes.join("voice.wav")).unwrap();
    let sr = r.spec().sample_rate as f64;
    let x: Vec<f32> = r.into_samples::<f32>().map(|s| s.unwrap()).collect();
    let x = &x;
    assert!(x.len() as f64 > 3.8 * sr, "the take is {} s", x.len() as f64 / sr);
    let (a, b, c) = (shape(x, sr, 0.6, 1.1), shape(x, sr, 1.2, 1.7), shape(x, sr, 3.2, 3.8));
    let (same, morphed) = (distance(&a, &b), distance(&a, &c));
    assert!(
        morphed > 3.0 * same && morphed > 0.1,
        "before vs before {same:.3}, before vs morphed {morphed:.3}"
    );
}
