//! `midi_in` and `midi_out`: the graph's doors for device MIDI. Specs on the control thread;
//! processors on the audio thread.
//!
//! `midi_in` hears the engine's device MIDI input (a keyboard on the JACK `midi_in` port, at the
//! frame it arrived; on ALSA as soon as the control thread has it; `render --midi-in` from a
//! file) and sends what passes its channel filter on its MIDI port at that same frame.
//! `midi_out` sends whatever reaches its MIDI port to the device MIDI output (JACK `notes`),
//! OSC and the event logs, at the frame it arrived.

use crate::node::{BuildCtx, Built, NodeInfo, NodeType, Params, ProcessIo, Processor};
use crate::param::{EventKind, ParamSpec};

/// Messages one node holds between an event and the sub-block that starts at it.
const HELD: usize = 64;

/// Messages applied at the start of the coming sub-block (the engine splits blocks at event
/// offsets, so they go out at the frame they came in).
struct Held {
    msgs: [[u8; 3]; HELD],
    len: usize,
    dropped: u64,
}

impl Held {
    fn new() -> Self {
        Self {
            msgs: [[0; 3]; HELD],
            len: 0,
            dropped: 0,
        }
    }
    fn push(&mut self, msg: [u8; 3]) {
        if self.len < HELD {
            self.msgs[self.len] = msg;
            self.len += 1;
        } else {
            self.dropped += 1;
        }
    }
    fn take(&mut self) -> &[[u8; 3]] {
        let n = std::mem::take(&mut self.len);
        &self.msgs[..n]
    }
}

/// Whether `msg` passes a channel filter (`channel` 1-16; 0 = every channel). System messages
/// (clock, start, stop) carry no channel and always pass.
fn on_channel(msg: [u8; 3], channel: u8) -> bool {
    channel == 0 || msg[0] >= 0xf0 || (msg[0] & 0x0f) + 1 == channel
}

pub struct MidiInProcessor {
    channel: u8,
    held: Held,
}

impl Processor for MidiInProcessor {
    fn event(&mut self, kind: &EventKind) {
        if let EventKind::Midi(msg) = kind {
            if on_channel(*msg, self.channel) {
                self.held.push(*msg);
            }
        }
    }
    fn process(&mut self, io: &mut ProcessIo) {
        for &msg in self.held.take() {
            io.emit.midi(0, msg);
        }
    }
}

pub const MIDI_IN: NodeType = NodeType {
    name: "midi_in",
    doc: "Notes from the engine's MIDI input (a keyboard on the JACK or ALSA `midi_in` port; `render --midi-in F.mid`), sample-stamped, on its MIDI port.",
    params: &[ParamSpec::int("channel", 0, 16, 0, "MIDI channel to pass (1-16); 0: every channel")],
    params_of: None,
    build: |p: &Params, _: &BuildCtx| {
        Ok(Built {
            info: NodeInfo {
                midi_out: true,
                device_midi_in: true,
                ..Default::default()
            },
            processor: Box::new(MidiInProcessor {
                channel: p.usize("channel") as u8,
                held: Held::new(),
            }),
        })
    },
};

pub struct MidiOutProcessor {
    held: Held,
}

impl Processor for MidiOutProcessor {
    fn event(&mut self, kind: &EventKind) {
        if let EventKind::Midi(msg) = kind {
            self.held.push(*msg);
        }
    }
    fn process(&mut self, io: &mut ProcessIo) {
        let t = io.sample_time;
        for &msg in self.held.take() {
            io.emit.note(0, msg, t, t);
        }
    }
}

pub const MIDI_OUT: NodeType = NodeType {
    name: "midi_out",
    doc: "Sends the MIDI reaching its port out of the engine (the JACK `notes` port, OSC, event logs), at the frame it arrived.",
    params: &[],
    params_of: None,
    build: |_: &Params, _: &BuildCtx| {
        Ok(Built {
            info: NodeInfo {
                midi_in: true,
                midi_out: true,
                ..Default::default()
            },
            processor: Box::new(MidiOutProcessor { held: Held::new() }),
        })
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_filter_passes_its_channel_and_system_messages() {
        assert!(on_channel([0x90, 60, 100], 1));
        assert!(!on_channel([0x91, 60, 100], 1));
        assert!(on_channel([0x9f, 60, 100], 16));
        assert!(on_channel([0x95, 60, 100], 0));
        assert!(on_channel([0xf8, 0, 0], 3));
    }
}
