//! Offline backend: renders a graph over an input file (or silence) through the very same
//! `Engine::process` the live callback runs, block by block, as fast as the CPU allows. Runs on
//! the calling thread, which plays the audio thread's part: every process call runs under the
//! allocation guard.

use std::time::Instant;

use crate::audio_file::Audio;
use crate::graph::{GraphDesc, GraphError, Schedule};
use crate::msg::FromRt;
use crate::node::Registry;
use crate::processor::{EngineConfig, EngineHandle};

/// What an offline render does.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    pub sample_rate: u32,
    pub block_size: usize,
    /// Length when there is no input, or extra time rendered after the input ends.
    pub duration_secs: Option<f64>,
    pub tail_secs: f64,
    /// Drop the graph's latency from the start so output lines up with input.
    pub compensate_latency: bool,
    /// Events to apply at exact sample times: (sample time, node id, event).
    pub events: Vec<(u64, String, ScheduledEvent)>,
    /// MIDI for the graph's `midi_in` nodes (as a keyboard on the device's MIDI input would
    /// send it): (sample time, message), in order.
    pub device_midi: Vec<(u64, [u8; 3])>,
    /// Keep every process call's duration (for benchmarks).
    pub keep_timings: bool,
    /// `Offline` (default): model nodes wait for their results, deterministic. `Live`: nothing
    /// waits, as on an audio thread (for measuring callback time; results may be late).
    pub mode: crate::graph::CompileMode,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            sample_rate: 48000,
            block_size: 512,
            duration_secs: None,
            tail_secs: 0.0,
            compensate_latency: true,
            events: Vec::new(),
            device_midi: Vec::new(),
            keep_timings: false,
            mode: crate::graph::CompileMode::Offline,
        }
    }
}

/// An event for an offline render.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduledEvent {
    Param(String, f32),
    Midi([u8; 3]),
}

/// The result of a render.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub audio: Audio,
    pub latency_frames: u32,
    /// How both latencies read (`Schedule::latency_text`): the audio path's and the notes'.
    pub latency_text: String,
    /// Each node's id and the latency of what reaches its inputs (a recorder's pre-roll).
    pub input_latency: Vec<(String, u32)>,
    /// Frames of input rendered (or of `duration_secs` without input), tail excluded.
    pub input_frames: u64,
    /// Allocations or frees made inside process calls (0 unless a processor breaks the rules;
    /// counted only where `alloc_check::CheckedAlloc` is the global allocator).
    pub alloc_violations: u64,
    pub process_calls: u64,
    pub timings_ns: Vec<u64>,
    pub messages: Vec<FromRt>,
    pub wall_secs: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the patch does not compile")]
    Graph(Vec<GraphError>),
    #[error("{0}")]
    Event(String),
    #[error("block size must be 1..={max}", max = crate::MAX_BLOCK_FRAMES * 16)]
    BlockSize,
}

/// Renders `desc` over `input` (resampled to `opts.sample_rate` first when rates differ).
pub fn render(
    desc: &GraphDesc,
    registry: &Registry,
    input: Option<&Audio>,
    opts: &RenderOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<Rendered, RenderError> {
    if opts.block_size == 0 || opts.block_size > crate::MAX_BLOCK_FRAMES * 16 {
        return Err(RenderError::BlockSize);
    }
    let sr = opts.sample_rate;
    let schedule = Schedule::compile_with(desc, registry, sr as f32, opts.mode).map_err(RenderError::Graph)?;
    let latency = schedule.latency_frames() as u64;
    let latency_text = schedule.latency_text();
    let input_latency = schedule.nodes().iter().map(|n| (n.id.clone(), n.input_latency_frames)).collect();
    let input = input.map(|a| resampled(a, sr));
    let in_ch = input.as_ref().map_or(schedule.input_channels(), |a| a.channels);
    let out_ch = schedule.output_channels().max(1);
    let body = body_frames(input.as_ref(), opts.duration_secs, sr);
    let keep = body + (opts.tail_secs * sr as f64) as u64;
    let skip = if opts.compensate_latency { latency } else { 0 };
    let events = scheduled_events(opts, &schedule);
    let (mut handle, mut engine) = EngineHandle::new(EngineConfig::new(sr as f32, in_ch, out_ch));
    handle.swap(schedule).map_err(RenderError::Event)?;

    let mut blocks = Blocks::new(opts, in_ch, out_ch, keep, skip);
    let start = Instant::now();
    blocks.run(&mut handle, &mut engine, input.as_ref(), &events, &mut progress)?;
    let wall_secs = start.elapsed().as_secs_f64();
    // Free the engine (and its schedule) here, so writer threads finish before we return.
    drop(engine);
    handle.collect();
    Ok(Rendered {
        audio: Audio {
            sample_rate: sr,
            channels: out_ch,
            samples: blocks.out,
            wav_format: input.and_then(|a| a.wav_format),
        },
        latency_frames: latency as u32,
        latency_text,
        input_latency,
        input_frames: body,
        alloc_violations: blocks.violations,
        process_calls: blocks.calls,
        timings_ns: blocks.timings,
        messages: blocks.messages,
        wall_secs,
    })
}

/// `a` at `sr`.
fn resampled(a: &Audio, sr: u32) -> Audio {
    Audio {
        sample_rate: sr,
        channels: a.channels,
        samples: crate::dsp::resample_interleaved(&a.samples, a.channels, a.sample_rate, sr),
        wav_format: a.wav_format,
    }
}

/// Frames of the render before its tail: the input's, cut at `duration_secs` if given.
fn body_frames(input: Option<&Audio>, duration_secs: Option<f64>, sr: u32) -> u64 {
    match (input, duration_secs) {
        (Some(a), None) => a.frames() as u64,
        (Some(a), Some(d)) => (a.frames() as u64).min((d * sr as f64) as u64),
        (None, Some(d)) => (d * sr as f64) as u64,
        (None, None) => 0,
    }
}

/// The options' events and the device's MIDI (to every `midi_in` node), in time order.
fn scheduled_events(opts: &RenderOptions, schedule: &Schedule) -> Vec<(u64, String, ScheduledEvent)> {
    let mut events = opts.events.clone();
    for &i in schedule.device_midi_nodes() {
        let id = &schedule.nodes()[i as usize].id;
        events.extend(opts.device_midi.iter().map(|&(t, m)| (t, id.clone(), ScheduledEvent::Midi(m))));
    }
    events.sort_by_key(|e| e.0);
    events
}

/// The block loop's buffers and what it gathers.
struct Blocks {
    block: usize,
    in_ch: usize,
    out_ch: usize,
    /// Frames dropped from the start (the latency compensated), and rendered in all.
    skip: u64,
    total: u64,
    keep_timings: bool,
    in_buf: Vec<f32>,
    out_buf: Vec<f32>,
    out: Vec<f32>,
    timings: Vec<u64>,
    messages: Vec<FromRt>,
    violations: u64,
    calls: u64,
}

impl Blocks {
    fn new(opts: &RenderOptions, in_ch: usize, out_ch: usize, keep: u64, skip: u64) -> Self {
        let bs = opts.block_size;
        let total = keep + skip;
        Self {
            block: bs,
            in_ch,
            out_ch,
            skip,
            total,
            keep_timings: opts.keep_timings,
            in_buf: vec![0.0; bs * in_ch],
            out_buf: vec![0.0; bs * out_ch],
            out: Vec::with_capacity(keep as usize * out_ch),
            timings: Vec::with_capacity(if opts.keep_timings { (total as usize).div_ceil(bs) } else { 0 }),
            messages: Vec::new(),
            violations: 0,
            calls: 0,
        }
    }

    /// Every block: the events due in it sent, the input read, one process call under the
    /// allocation guard, the output kept after the skipped latency.
    fn run(
        &mut self,
        handle: &mut EngineHandle,
        engine: &mut crate::processor::Engine,
        input: Option<&Audio>,
        events: &[(u64, String, ScheduledEvent)],
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<(), RenderError> {
        let mut next_event = 0;
        let mut t = 0u64;
        while t < self.total {
            let n = ((self.total - t) as usize).min(self.block);
            next_event = send_due(handle, events, next_event, t + n as u64)?;
            self.read_input(input, t, n);
            self.process(engine, n);
            for f in 0..n as u64 {
                if t + f >= self.skip {
                    let at = f as usize * self.out_ch;
                    self.out.extend_from_slice(&self.out_buf[at..at + self.out_ch]);
                }
            }
            handle.drain(|m| self.messages.push(m));
            t += n as u64;
            if self.calls.is_multiple_of(256) {
                handle.collect();
                progress(t, self.total);
            }
        }
        progress(self.total, self.total);
        Ok(())
    }

    fn read_input(&mut self, input: Option<&Audio>, t: u64, n: usize) {
        let ib = &mut self.in_buf[..n * self.in_ch];
        match input {
            Some(a) => {
                for (k, x) in ib.iter_mut().enumerate() {
                    *x = a.samples.get(t as usize * self.in_ch + k).copied().unwrap_or(0.0);
                }
            }
            None => ib.fill(0.0),
        }
    }

    /// One process call of `n` frames under the allocation guard, timed.
    fn process(&mut self, engine: &mut crate::processor::Engine, n: usize) {
        let (ib, ob) = (&self.in_buf[..n * self.in_ch], &mut self.out_buf[..n * self.out_ch]);
        let before = crate::alloc_check::thread_violations();
        let t0 = Instant::now();
        crate::alloc_check::no_alloc(|| engine.process(ib, ob));
        let dt = t0.elapsed().as_nanos() as u64;
        self.violations += crate::alloc_check::thread_violations() - before;
        self.calls += 1;
        if self.keep_timings {
            self.timings.push(dt);
        }
    }
}

/// Sends the events from `next` on that are due before `end` (the engine places each at its
/// exact sample); returns the index of the first not sent.
fn send_due(handle: &mut EngineHandle, events: &[(u64, String, ScheduledEvent)], mut next: usize, end: u64) -> Result<usize, RenderError> {
    while next < events.len() && events[next].0 < end {
        let (at, node, ev) = &events[next];
        match ev {
            ScheduledEvent::Param(p, v) => handle.set_param(node, p, *v, *at),
            ScheduledEvent::Midi(m) => handle.send_midi(node, *m, *at),
        }
        .map_err(RenderError::Event)?;
        next += 1;
    }
    Ok(next)
}
