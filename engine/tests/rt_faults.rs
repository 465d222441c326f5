//! Real-time faults found by a review of the live path, each with a test that fails without its
//! fix: oscillators at or above Nyquist, the allocation guard under panics and concurrent test
//! threads, device MIDI through `midi_in` and `midi_out` at its exact frame, and the notes a
//! retired schedule left sounding. The test thread plays the audio thread's part.

mod common;
use common::*;
use stagebox_engine::alloc_check::{self, CheckedAlloc};
use stagebox_engine::backend::offline::{render, RenderOptions, ScheduledEvent};
use stagebox_engine::graph::Schedule;
use stagebox_engine::msg::FromRt;
use stagebox_engine::{EngineConfig, EngineHandle, GraphDesc};

#[global_allocator]
static ALLOC: CheckedAlloc = CheckedAlloc;

fn peak(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

#[test]
fn oscillators_at_or_above_nyquist_stay_bounded_and_fall_silent() {
    // A saw at 20 kHz on a 16 kHz engine: one and a quarter cycles a sample.
    for waveform in ["saw", "square", "triangle", "sine"] {
        let g = graph(
            vec![
                node("t", "osc", &[("freq_hz", f(20000.0)), ("waveform", s(waveform))]),
                node("out", "output", &[("channels", i(1))]),
            ],
            vec![conn("t", "out")],
        );
        let opts = RenderOptions {
            sample_rate: 16000,
            duration_secs: Some(1.0),
            ..Default::default()
        };
        let r = render(&g, &registry(), None, &opts, |_, _| {}).unwrap();
        assert!(r.audio.samples.iter().all(|x| x.is_finite()), "{waveform}: not finite");
        assert_eq!(peak(&r.audio.samples), 0.0, "{waveform} above Nyquist must be silent");
    }
    // A synth note bent 48 semitones up (2637 Hz -> 42 kHz at 48 kHz): bounded, then silent.
    let g = graph(
        vec![
            node("k", "synth", &[("waveform", s("saw")), ("bend_range", f(48.0))]),
            node("out", "output", &[("channels", i(1))]),
        ],
        vec![conn("k", "out")],
    );
    let opts = RenderOptions {
        duration_secs: Some(1.0),
        events: vec![
            (100, "k".into(), ScheduledEvent::Midi([0x90, 100, 127])),
            (24000, "k".into(), ScheduledEvent::Midi([0xe0, 0x7f, 0x7f])),
        ],
        ..Default::default()
    };
    let r = render(&g, &registry(), None, &opts, |_, _| {}).unwrap();
    let y = &r.audio.samples;
    assert!(peak(&y[1000..24000]) > 0.05, "the note sounds before the bend");
    assert!(y.iter().all(|x| x.is_finite() && x.abs() <= 1.0), "peak {}", peak(y));
    assert_eq!(peak(&y[25000..]), 0.0, "bent above Nyquist: silent");
}

#[test]
fn the_allocation_guard_survives_a_panic_and_counts_per_thread() {
    let before = alloc_check::thread_violations();
    let caught = std::panic::catch_unwind(|| alloc_check::no_alloc(|| panic!("inside the guard")));
    assert!(caught.is_err());
    let counted = alloc_check::thread_violations();
    // After the unwind this thread may allocate again without it counting.
    let v = std::hint::black_box(vec![1u8; 64]);
    drop(v);
    assert_eq!(alloc_check::thread_violations(), counted, "the guard stayed on after a panic");
    assert!(counted >= before);
    // Another thread's violation is its own.
    let mine = alloc_check::thread_violations();
    let theirs = std::thread::spawn(|| {
        alloc_check::no_alloc(|| drop(std::hint::black_box(Box::new(1u32))));
        alloc_check::thread_violations()
    })
    .join()
    .unwrap();
    assert!(theirs >= 1, "the other thread's allocation was counted there");
    assert_eq!(alloc_check::thread_violations(), mine);
}

fn echo_patch(channel: i64) -> GraphDesc {
    graph(
        vec![
            node("keys", "midi_in", &[("channel", i(channel))]),
            node("echo", "midi_out", &[]),
            node("out", "output", &[("channels", i(1))]),
        ],
        vec![conn("keys.midi", "echo.midi")],
    )
}

#[test]
fn device_midi_leaves_midi_out_at_the_frame_it_reached_midi_in() {
    let reg = registry();
    for block in [1usize, 64, 128, 500] {
        let (mut handle, mut engine) = EngineHandle::new(EngineConfig::new(48000.0, 0, 1));
        handle.swap(Schedule::compile(&echo_patch(2), &reg, 48000.0).unwrap()).unwrap();
        let mut out = vec![0.0f32; block];
        let mut heard = Vec::new();
        for call in 0..40u64 {
            // Channel 2 passes the filter, channel 1 does not.
            let offset = (call as u32 * 37) % block as u32;
            assert!(engine.push_device_midi(offset, [0x91, 60 + (call % 40) as u8, 100]));
            assert!(engine.push_device_midi(offset, [0x90, 10, 100]));
            let before = alloc_check::thread_violations();
            alloc_check::no_alloc(|| engine.process(&[], &mut out));
            assert_eq!(alloc_check::thread_violations(), before, "block {block}: allocated");
            for (at, msg) in engine.device_midi_out() {
                heard.push((call * block as u64 + at as u64, msg));
            }
            let sent = call * block as u64 + offset as u64;
            assert_eq!(heard.last().map(|h| h.0), Some(sent), "block {block}, call {call}: {heard:?}");
        }
        assert_eq!(heard.len(), 40, "block {block}: only channel 2 passes");
        assert!(heard.iter().all(|(_, m)| m[0] == 0x91));
    }
}

#[test]
fn a_retired_schedule_ends_the_notes_it_left_sounding() {
    let reg = registry();
    let (mut handle, mut engine) = EngineHandle::new(EngineConfig::new(48000.0, 0, 1));
    handle.swap(Schedule::compile(&echo_patch(0), &reg, 48000.0).unwrap()).unwrap();
    let mut out = vec![0.0f32; 128];
    engine.push_device_midi(5, [0x90, 64, 90]);
    engine.push_device_midi(6, [0x93, 40, 90]);
    engine.push_device_midi(7, [0x80, 40, 0]); // ended on another channel: not this one
    engine.process(&[], &mut out);
    assert_eq!(engine.device_midi_out().count(), 3);
    // A reload: the new schedule crossfades in (30 ms), then the old one is retired.
    handle.swap(Schedule::compile(&echo_patch(0), &reg, 48000.0).unwrap()).unwrap();
    let mut offs = Vec::new();
    for _ in 0..20 {
        let before = alloc_check::thread_violations();
        alloc_check::no_alloc(|| engine.process(&[], &mut out));
        assert_eq!(alloc_check::thread_violations(), before);
        offs.extend(engine.device_midi_out().map(|(_, m)| m));
        handle.collect();
    }
    offs.sort();
    assert_eq!(offs, vec![[0x80, 64, 0], [0x83, 40, 0]], "one note-off for each note left on");
    let mut told = 0;
    handle.drain(|m| {
        if let FromRt::Midi { msg, .. } = m {
            told += (msg[0] & 0xf0 == 0x80 && msg[2] == 0) as u32;
        }
    });
    assert!(told >= 2, "the control side hears the note-offs too");
}
