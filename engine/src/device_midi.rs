//! The engine's device MIDI, both ways (audio thread; buffers made on the control thread).
//!
//! In: a backend that reads a MIDI port inside its process callback (JACK) hands each message
//! with its frame offset to [`crate::Engine::push_device_midi`] before `process`; the engine
//! delivers it to every `midi_in` node at that exact frame. Out: every note a node sends with
//! `Emit::note` is also kept here with its sample time, for the backend to write at its frame
//! (`Engine::device_midi_out`) after `process`. The notes each schedule left sounding are
//! tracked, so a schedule that is retired (a reload, a swap) ends its notes instead of leaving
//! them hanging on the MIDI output.

use crate::msg::FromRt;
use crate::node::DeviceMidi;

/// Device MIDI messages one process call may take in, and send out.
pub const DEVICE_MIDI_CAPACITY: usize = 1024;

/// Node index stamped on messages the engine itself sends (note-offs of a retired schedule).
pub const ENGINE_NODE: u32 = u32::MAX;

pub(crate) struct DeviceMidiIo {
    /// Messages for the next process call: (frame offset in that call, bytes).
    pub(crate) inbox: Vec<(u32, [u8; 3])>,
    /// Messages sent during the last process call.
    pub(crate) outbox: Vec<DeviceMidi>,
    /// Engine sample time of the first frame of the last process call.
    pub(crate) call_start: u64,
    /// Generation of the schedule holding each (channel, key) on; 0 = off.
    sounding: Vec<u64>,
    /// Outbox entries already looked at by `track`.
    tracked: usize,
}

impl DeviceMidiIo {
    pub(crate) fn new() -> Self {
        Self {
            inbox: Vec::with_capacity(DEVICE_MIDI_CAPACITY),
            outbox: Vec::with_capacity(DEVICE_MIDI_CAPACITY),
            call_start: 0,
            sounding: vec![0; 16 * 128],
            tracked: 0,
        }
    }

    /// Starts a process call at engine time `sample_time`: the last call's output is dropped.
    pub(crate) fn begin(&mut self, sample_time: u64) {
        self.outbox.clear();
        self.tracked = 0;
        self.call_start = sample_time;
    }

    /// Records the note-ons and note-offs sent since the last look.
    pub(crate) fn track(&mut self) {
        for m in &self.outbox[self.tracked..] {
            let key = ((m.msg[0] & 0x0f) as usize) * 128 + (m.msg[1] & 0x7f) as usize;
            match m.msg[0] & 0xf0 {
                0x90 if m.msg[2] > 0 => self.sounding[key] = m.gen,
                0x80 | 0x90 if self.sounding[key] == m.gen => self.sounding[key] = 0,
                _ => {}
            }
        }
        self.tracked = self.outbox.len();
    }

    /// Ends every note schedule `gen` left sounding, at engine time `sample_time`: a note-off on
    /// the device output and to the control side (OSC, logs). Returns the messages dropped.
    pub(crate) fn end_notes_of(&mut self, gen: u64, sample_time: u64, to_ctl: &mut rtrb::Producer<FromRt>) -> u64 {
        self.track();
        let mut dropped = 0;
        for key in 0..self.sounding.len() {
            if self.sounding[key] != gen || gen == 0 {
                continue;
            }
            self.sounding[key] = 0;
            let msg = [0x80 | (key / 128) as u8, (key % 128) as u8, 0];
            if self.outbox.len() < self.outbox.capacity() {
                self.outbox.push(DeviceMidi { sample_time, msg, gen });
            } else {
                dropped += 1;
            }
            let m = FromRt::Midi {
                gen,
                node: ENGINE_NODE,
                sample_time,
                origin: sample_time,
                msg,
            };
            if to_ctl.push(m).is_err() {
                dropped += 1;
            }
        }
        self.tracked = self.outbox.len();
        dropped
    }

    /// The last call's output as (frame offset in that call, bytes), in the order sent.
    pub(crate) fn out(&self) -> impl Iterator<Item = (u32, [u8; 3])> + '_ {
        let start = self.call_start;
        self.outbox.iter().map(move |m| (m.sample_time.saturating_sub(start) as u32, m.msg))
    }
}

/// One short MIDI message as a port callback received it, for the control thread (controllers,
/// program change, clock): `time_us` on the backend's clock, `at` when the callback had it (a
/// vDSO clock read, no system call), for the latency figures.
#[derive(Debug, Clone, Copy)]
pub struct PortMidi {
    pub time_us: u64,
    pub at: std::time::Instant,
    pub len: u8,
    pub bytes: [u8; 3],
}

/// Bytes in a MIDI message that starts with `status` (0 for a data byte or SysEx).
pub fn message_len(status: u8) -> usize {
    match status {
        0x80..=0xbf | 0xe0..=0xef | 0xf2 => 3,
        0xc0..=0xdf | 0xf1 | 0xf3 => 2,
        0xf6 | 0xf8..=0xff => 1,
        _ => 0,
    }
}

/// The MIDI clock a backend sends from its own callback (24 ticks a quarter note): the tempo
/// (set by the control thread) and the ticks sent.
#[derive(Debug)]
pub struct ClockShared {
    pub bpm_milli: std::sync::atomic::AtomicU64,
    pub sent: std::sync::atomic::AtomicU64,
}

impl ClockShared {
    pub fn new(bpm: f64) -> Self {
        Self {
            bpm_milli: std::sync::atomic::AtomicU64::new((bpm * 1000.0) as u64),
            sent: std::sync::atomic::AtomicU64::new(0),
        }
    }
    pub fn bpm(&self) -> f64 {
        self.bpm_milli.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0
    }
}
