//! A take's notes as a person reads them: `--notes-out -` prints `time note velocity duration`
//! lines, and `--piano-roll` / `stagebox plot` draw the notes as a PNG, read back here.

use std::path::Path;

use stagebox_tests::*;

/// The orange of the note bars (control/src/piano_roll.rs NOTE_RGB).
const NOTE_RGB: [u8; 3] = [255, 140, 0];

/// Width, height and the pixels of the note bars of a PNG.
fn note_pixels(path: &Path) -> (u32, u32, Vec<(u32, u32)>) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let mut hits = Vec::new();
    for y in 0..info.height {
        for x in 0..info.width {
            let i = (y * info.width + x) as usize * px;
            if buf[i..i + 3] == NOTE_RGB {
                hits.push((x, y));
            }
        }
    }
    (info.width, info.height, hits)
}

/// A MIDI file of C4 from 0 to 1 s and G5 from 2 to 4 s (120 BPM, 480 ticks a beat).
fn two_notes(path: &Path) {
    use midly::{Format, Header, MidiMessage as M, Smf, Timing, TrackEvent, TrackEventKind as K};
    let ev = |delta: u32, message| TrackEvent {
        delta: delta.into(),
        kind: K::Midi {
            channel: 0.into(),
            message,
        },
    };
    let track = vec![
        ev(
            0,
            M::NoteOn {
                key: 60.into(),
                vel: 100.into(),
            },
        ),
        ev(
            960,
            M::NoteOff {
                key: 60.into(),
                vel: 0.into(),
            },
        ),
        ev(
            960,
            M::NoteOn {
                key: 79.into(),
                vel: 80.into(),
            },
        ),
        ev(
            1920,
            M::NoteOff {
                key: 79.into(),
                vel: 0.into(),
            },
        ),
        TrackEvent {
            delta: 0.into(),
            kind: K::Meta(midly::MetaMessage::EndOfTrack),
        },
    ];
    let smf = Smf {
        header: Header::new(Format::SingleTrack, Timing::Metrical(480.into())),
        tracks: vec![track],
    };
    smf.save(path).unwrap();
}

#[test]
fn plot_draws_each_note_at_its_time_and_pitch() {
    let dir = tmp("plot");
    let mid = dir.join("two.mid");
    two_notes(&mid);
    let png = dir.join("two.png");
    let out = stagebox().arg("plot").arg(&mid).arg("--output").arg(&png).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (w, h, hits) = note_pixels(&png);
    assert!(w >= 800 && h >= 400, "{w}x{h}");
    // Two bars: split the hits at the widest empty column gap.
    let mut xs: Vec<u32> = hits.iter().map(|p| p.0).collect();
    xs.sort();
    xs.dedup();
    let gap = xs.windows(2).max_by_key(|p| p[1] - p[0]).expect("note pixels");
    let (first, second): (Vec<_>, Vec<_>) = hits.iter().partition(|p| p.0 <= gap[0]);
    let span =
        |v: &[&(u32, u32)], f: fn(&(u32, u32)) -> u32| (v.iter().map(|p| f(p)).min().unwrap(), v.iter().map(|p| f(p)).max().unwrap());
    let (x1, y1) = (span(&first, |p| p.0), span(&first, |p| p.1));
    let (x2, y2) = (span(&second, |p| p.0), span(&second, |p| p.1));
    // Time: the second note starts at 2 s, twice as far as the first ends (1 s), and lasts twice as long.
    let (len1, len2) = ((x1.1 - x1.0) as f64, (x2.1 - x2.0) as f64);
    assert!((len2 / len1 - 2.0).abs() < 0.1, "bar lengths {len1} and {len2}");
    let start_gap = (x2.0 - x1.0) as f64;
    assert!(
        (start_gap / len1 - 2.0).abs() < 0.1,
        "G5 starts {start_gap} px after C4, which is {len1} px long"
    );
    // Pitch: G5 is 19 semitones above C4, higher in the picture.
    let row = |y: (u32, u32)| (y.0 + y.1) as f64 / 2.0;
    let semitone_px = (y1.1 - y1.0 + 1) as f64 / 0.8;
    let rise = (row(y1) - row(y2)) / semitone_px;
    assert!((rise - 19.0).abs() < 1.0, "G5 drawn {rise} semitones above C4");
}

#[test]
fn render_prints_the_notes_and_draws_them_over_the_spectrogram() {
    let dir = tmp("roll");
    let png = dir.join("roll.png");
    let mid = dir.join("notes.mid");
    let out = stagebox()
        .args([
            "render",
            "--patch",
            "patches/transcribe.toml",
            "--input",
            "assets/demo.wav",
            "--output",
        ])
        .arg(dir.join("out.wav"))
        .arg("--piano-roll")
        .arg(&png)
        .arg("--midi-out")
        .arg(&mid)
        .args(["--notes-out", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list = String::from_utf8_lossy(&out.stdout);
    let mut lines = list.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["time_s", "note", "velocity", "duration_s"]
    );
    let rows: Vec<(f64, String)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 4, "{l}");
            assert!(f[2].parse::<u8>().unwrap() > 0 && f[3].parse::<f64>().unwrap() > 0.0, "{l}");
            (f[0].parse().unwrap(), f[1].to_string())
        })
        .collect();
    let ons = smf_note_ons(&mid);
    assert!(!ons.is_empty());
    assert_eq!(rows.len(), ons.len(), "the list and the MIDI file hold the same notes");
    const NAMES: [&str; 12] = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
    for (t, key) in &ons {
        let name = format!("{}{}", NAMES[*key as usize % 12], *key as i32 / 12 - 1);
        assert!(
            rows.iter().any(|(rt, n)| (rt - t).abs() < 0.002 && *n == name),
            "{name} at {t} s not listed:\n{list}"
        );
    }
    let (w, _, hits) = note_pixels(&png);
    assert!(hits.len() > 100, "no note bars drawn");
    // The spectrogram: the demo's energy shows as coloured (non-black) pixels beyond the bars.
    let decoder = png::Decoder::new(std::fs::File::open(&png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    reader.next_frame(&mut buf).unwrap();
    let lit = buf.chunks(3).filter(|p| p[2] > 60 && p[0] < 200).count();
    assert!(lit > (w as usize) * 50, "no spectrogram under the notes ({lit} lit pixels)");
}
