//! Paced backend: runs the engine on its own thread at real-time pace with no audio device
//! (the demo mode of `stagebox run`, and `--backend none`). Its thread plays the audio
//! thread's part: it sleeps to absolute deadlines, then calls `Engine::process` under the
//! allocation guard; input comes from a looped clip, output is measured and discarded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtrb::{Consumer, RingBuffer};

use crate::msg::TIMING_CAPACITY;
use crate::processor::Engine;
use crate::stats::RtStats;

/// A running paced engine. Dropping it stops the thread.
pub struct Paced {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Callback durations in nanoseconds.
    pub timings: Consumer<u32>,
}

impl Paced {
    /// Starts the thread. `input` is interleaved with the engine's input channel count and is
    /// looped; empty means silence.
    pub fn start(mut engine: Engine, block_frames: usize, input: Vec<f32>) -> std::io::Result<Paced> {
        let stop = Arc::new(AtomicBool::new(false));
        let (mut tx, rx) = RingBuffer::<u32>::new(TIMING_CAPACITY);
        let st = stop.clone();
        let thread = std::thread::Builder::new().name("stagebox-paced-audio".into()).spawn(move || {
            // Above the inference worker, as a device's audio thread would be; fall back quietly.
            {
                use thread_priority::*;
                let fifo = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
                let p = ThreadPriority::Crossplatform(ThreadPriorityValue::try_from(10u8).unwrap_or_default());
                if let Err(e) = set_thread_priority_and_policy(thread_native_id(), p, fifo) {
                    tracing::debug!("paced audio thread: SCHED_FIFO refused ({e:?}); normal priority");
                }
            }
            let cfg = *engine.config();
            let stats = engine.stats().clone();
            let in_ch = cfg.in_channels;
            let mut in_buf = vec![0.0f32; block_frames * in_ch];
            let mut out_buf = vec![0.0f32; block_frames * cfg.out_channels.max(1)];
            let period = Duration::from_secs_f64(block_frames as f64 / cfg.sample_rate as f64);
            let mut pos = 0usize;
            let start = Instant::now();
            let mut n: u32 = 0;
            while !st.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                crate::alloc_check::no_alloc(|| {
                    if input.is_empty() {
                        in_buf.fill(0.0);
                    } else {
                        for x in in_buf.iter_mut() {
                            *x = input[pos];
                            pos += 1;
                            if pos == input.len() {
                                pos = 0;
                            }
                        }
                    }
                    engine.process(&in_buf, &mut out_buf);
                });
                let ns = t0.elapsed().as_nanos().min(u32::MAX as u128) as u32;
                if tx.push(ns).is_err() {
                    RtStats::add(&stats.timings_dropped, 1);
                }
                n = n.wrapping_add(1);
                let deadline = start + period * n;
                let now = Instant::now();
                if deadline > now {
                    std::thread::sleep(deadline - now);
                } else if now - deadline > period {
                    // A whole block late: an xrun on a real device.
                    RtStats::add(&stats.xruns, 1);
                }
            }
        })?;
        Ok(Paced {
            stop,
            thread: Some(thread),
            timings: rx,
        })
    }
}

impl Drop for Paced {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
