//! Messages between the control side and the audio thread, and the fixed ring capacities.
//! Produced on one side, consumed on the other; see each variant.

use basedrop::Owned;

use crate::graph::Schedule;
use crate::param::EventKind;

/// Capacity of the control -> audio ring.
pub const TO_RT_CAPACITY: usize = 4096;
/// Capacity of the audio -> control ring.
pub const FROM_RT_CAPACITY: usize = 8192;
/// Capacity of the callback-timing ring (audio -> control), in callbacks.
pub const TIMING_CAPACITY: usize = 16384;
/// Events one node may receive in one block (external plus MIDI from upstream nodes).
pub const NODE_EVENT_CAPACITY: usize = 512;
/// Timestamped events waiting for their block.
pub const PENDING_CAPACITY: usize = 4096;
/// Most channels a meter reports.
pub const METER_CHANNELS: usize = 8;

/// `at` value meaning: at the start of the next block.
pub const AT_ONCE: u64 = u64::MAX;

/// Control thread -> audio thread.
pub enum ToRt {
    /// An event for node `node` of schedule generation `gen`, applied at engine sample time `at`
    /// (or at the start of the next block if `at` is `AT_ONCE` or has passed, counted late). Events for another generation
    /// are dropped and counted.
    Event { gen: u64, node: u32, at: u64, kind: EventKind },
    /// A new compiled graph: crossfade to it. The old one is retired through basedrop.
    Swap(Owned<Schedule>),
}

/// Audio thread -> control thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FromRt {
    /// Peak and RMS (linear) of a meter node over its last interval.
    Meter {
        gen: u64,
        node: u32,
        sample_time: u64,
        channels: u8,
        peak: [f32; METER_CHANNELS],
        rms: [f32; METER_CHANNELS],
    },
    /// MIDI a node emitted (notes from pitch-to-MIDI): `sample_time` when it was emitted,
    /// `origin` the engine time of the sound it describes (a note's estimated onset).
    Midi {
        gen: u64,
        node: u32,
        sample_time: u64,
        origin: u64,
        msg: [u8; 3],
    },
    /// Inference counters of a model node (sent when they change, at most every 100 ms).
    Infer {
        gen: u64,
        node: u32,
        counts: crate::infer::InferCounts,
    },
    /// The crossfade to schedule `gen` finished; the previous one was retired.
    Swapped { gen: u64 },
}
