//! Counters shared between the audio thread (writes, relaxed atomics only) and the control side
//! (reads). Callback durations travel separately through a timing ring.

use std::sync::atomic::{AtomicU64, Ordering};

/// Engine counters. All fields are monotonic counts unless noted.
#[derive(Debug, Default)]
pub struct RtStats {
    pub callbacks: AtomicU64,
    pub frames: AtomicU64,
    /// Xruns reported by the audio backend (JACK, ALSA).
    pub xruns: AtomicU64,
    /// Frames of input that were missing when the output callback needed them (filled with silence).
    pub input_underruns: AtomicU64,
    /// Frames of input discarded to keep input latency bounded.
    pub input_overruns: AtomicU64,
    /// Messages to the control side dropped because the ring was full.
    pub from_rt_dropped: AtomicU64,
    /// Events dropped (node event buffer or pending queue full, or for a retired graph).
    pub events_dropped: AtomicU64,
    /// Timestamped events that arrived after their time and were applied at once.
    pub events_late: AtomicU64,
    /// Callback timings dropped because the timing ring was full.
    pub timings_dropped: AtomicU64,
    /// Graph swaps completed.
    pub swaps: AtomicU64,
    /// Allocations or frees seen on the audio thread (needs the checked allocator).
    pub rt_allocations: AtomicU64,
    /// MIDI messages a backend wrote to the device MIDI output from its callback (JACK `notes`).
    pub device_midi_sent: AtomicU64,
    /// The audio thread's SCHED_FIFO priority once raised (0: normal priority; JACK sets its own).
    pub audio_priority: AtomicU64,
    /// Block size of the last callback, in frames (a gauge).
    pub last_block_frames: AtomicU64,
}

impl RtStats {
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        if n != 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Median, p99 and max of a set of durations in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub median_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Summary {
    /// Summarises nanosecond durations (sorts a copy).
    pub fn from_ns(ns: &[u64]) -> Self {
        if ns.is_empty() {
            return Self::default();
        }
        let mut v = ns.to_vec();
        v.sort_unstable();
        let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        Self {
            count: v.len(),
            median_us: pick(0.5),
            p99_us: pick(0.99),
            max_us: *v.last().unwrap() as f64 / 1000.0,
            mean_us: v.iter().sum::<u64>() as f64 / v.len() as f64 / 1000.0,
        }
    }
}
