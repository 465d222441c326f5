//! The callback body ([`Engine`], audio thread) and its control-side handle ([`EngineHandle`],
//! control thread).
//!
//! Per callback the engine drains the control ring, applies events (sample-stamped, split at
//! their offsets), runs the current schedule (and, during a swap, the old one, crossfaded), and
//! pushes results. Retired schedules leave through basedrop: dropping an `Owned` on the audio
//! thread only links it into the collector's queue, and the control thread frees it in
//! `EngineHandle::collect`.

use std::sync::Arc;

use basedrop::{Collector, Owned};
use rtrb::{Consumer, Producer, RingBuffer};

use crate::device_midi::DeviceMidiIo;
use crate::graph::{CompiledNode, Schedule};
use crate::msg::{FromRt, ToRt, FROM_RT_CAPACITY, PENDING_CAPACITY, TO_RT_CAPACITY};
use crate::param::{Event, EventKind, ParamSpec};
use crate::stats::RtStats;
use crate::MAX_BLOCK_FRAMES;

/// Fixed facts of a running engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    pub sample_rate: f32,
    /// Interleaved channels of the hardware input given to `process`.
    pub in_channels: usize,
    /// Interleaved channels of the hardware output filled by `process`.
    pub out_channels: usize,
    /// Length of the crossfade when a schedule is swapped in.
    pub fade_ms: f32,
}

impl EngineConfig {
    pub fn new(sample_rate: f32, in_channels: usize, out_channels: usize) -> Self {
        Self {
            sample_rate,
            in_channels,
            out_channels,
            fade_ms: 30.0,
        }
    }
}

#[derive(Clone, Copy)]
struct Pending {
    at: u64,
    gen: u64,
    node: u32,
    kind: EventKind,
}

/// The audio-thread engine. Create with [`EngineHandle::new`].
pub struct Engine {
    cfg: EngineConfig,
    current: Option<Owned<Schedule>>,
    old: Option<Owned<Schedule>>,
    fade_pos: usize,
    fade_len: usize,
    from_ctl: Consumer<ToRt>,
    to_ctl: Producer<FromRt>,
    stats: Arc<RtStats>,
    hw_in: Vec<f32>,
    pending: Vec<Pending>,
    sample_time: u64,
    device_midi: DeviceMidiIo,
}

impl Engine {
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }
    pub fn sample_time(&self) -> u64 {
        self.sample_time
    }
    pub fn stats(&self) -> &Arc<RtStats> {
        &self.stats
    }

    /// Queues a message from the device's MIDI input for the next `process` call, at frame
    /// `offset_frames` of that call (a JACK port's event time). False when the call's buffer
    /// is full (the message is dropped and counted). Audio thread.
    pub fn push_device_midi(&mut self, offset_frames: u32, msg: [u8; 3]) -> bool {
        let inbox = &mut self.device_midi.inbox;
        if inbox.len() < inbox.capacity() {
            inbox.push((offset_frames, msg));
            true
        } else {
            RtStats::add(&self.stats.events_dropped, 1);
            false
        }
    }

    /// The MIDI the last `process` call sent to the device output (`Emit::note`, and note-offs
    /// of retired schedules), as (frame offset in that call, bytes). Audio thread.
    pub fn device_midi_out(&self) -> impl Iterator<Item = (u32, [u8; 3])> + '_ {
        self.device_midi.out()
    }

    /// Processes one host buffer: `input` holds `in_channels` interleaved channels (may be empty
    /// when the engine has no input), `output` `out_channels` interleaved channels. Audio thread:
    /// no allocation, no locks, no syscalls.
    pub fn process(&mut self, input: &[f32], output: &mut [f32]) {
        set_flush_to_zero();
        let out_ch = self.cfg.out_channels.max(1);
        let in_ch = self.cfg.in_channels;
        let total = output.len() / out_ch;
        self.drain_control();
        self.device_midi.begin(self.sample_time);
        self.queue_device_midi();
        let mut done = 0;
        while done < total {
            let frames = (total - done).min(MAX_BLOCK_FRAMES);
            // Deinterleave input (missing input is silence).
            for c in 0..in_ch {
                let dst = &mut self.hw_in[c * MAX_BLOCK_FRAMES..c * MAX_BLOCK_FRAMES + frames];
                for (t, d) in dst.iter_mut().enumerate() {
                    *d = input.get((done + t) * in_ch + c).copied().unwrap_or(0.0);
                }
            }
            self.release_pending(frames);
            let out = &mut output[done * out_ch..(done + frames) * out_ch];
            out.fill(0.0);
            let mut dropped = 0;
            let dm = &mut self.device_midi.outbox;
            if let Some(cur) = self.current.as_mut() {
                dropped += cur.run(frames, self.sample_time, &self.hw_in, in_ch, &mut self.to_ctl, dm);
            }
            if let Some(old) = self.old.as_mut() {
                dropped += old.run(frames, self.sample_time, &self.hw_in, in_ch, &mut self.to_ctl, dm);
            }
            self.device_midi.track();
            // Mix: current (fading in while `fade_len` > 0) plus old (fading out).
            let fading = self.fade_len > 0;
            for t in 0..frames {
                let (g_new, g_old) = if fading {
                    let x = ((self.fade_pos + t) as f32 / self.fade_len as f32).min(1.0) * std::f32::consts::FRAC_PI_2;
                    (x.sin(), x.cos())
                } else {
                    (1.0, 0.0)
                };
                if let Some(cur) = self.current.as_ref() {
                    for c in 0..out_ch.min(cur.hw_out_channels()) {
                        out[t * out_ch + c] += g_new * cur.hw_out[c * MAX_BLOCK_FRAMES + t];
                    }
                }
                if let Some(old) = self.old.as_ref() {
                    for c in 0..out_ch.min(old.hw_out_channels()) {
                        out[t * out_ch + c] += g_old * old.hw_out[c * MAX_BLOCK_FRAMES + t];
                    }
                }
            }
            if fading {
                self.fade_pos += frames;
                if self.fade_pos >= self.fade_len {
                    self.fade_len = 0;
                    self.fade_pos = 0;
                    // Retire: end its notes; dropping an Owned queues it for the collector.
                    if let Some(old) = self.old.take() {
                        let at = self.sample_time + frames as u64 - 1;
                        dropped += self.device_midi.end_notes_of(old.gen, at, &mut self.to_ctl);
                    }
                    RtStats::add(&self.stats.swaps, 1);
                    if let Some(cur) = self.current.as_ref() {
                        if self.to_ctl.push(FromRt::Swapped { gen: cur.gen }).is_err() {
                            dropped += 1;
                        }
                    }
                }
            }
            RtStats::add(&self.stats.from_rt_dropped, dropped);
            self.sample_time += frames as u64;
            done += frames;
        }
        RtStats::add(&self.stats.callbacks, 1);
        RtStats::add(&self.stats.frames, total as u64);
        self.stats
            .last_block_frames
            .store(total as u64, std::sync::atomic::Ordering::Relaxed);
    }

    fn drain_control(&mut self) {
        while let Ok(msg) = self.from_ctl.pop() {
            match msg {
                ToRt::Swap(s) => {
                    // The first schedule starts at once; later ones crossfade. A swap during a
                    // fade retires the fading-out schedule at once.
                    if let Some(fading_out) = self.old.take() {
                        let (at, gen) = (self.sample_time, fading_out.gen);
                        let lost = self.device_midi.end_notes_of(gen, at, &mut self.to_ctl);
                        RtStats::add(&self.stats.from_rt_dropped, lost);
                    }
                    self.old = self.current.take();
                    let first = self.old.is_none();
                    self.current = Some(s);
                    self.fade_pos = 0;
                    self.fade_len = if first {
                        0
                    } else {
                        ((self.cfg.fade_ms * 0.001 * self.cfg.sample_rate) as usize).max(1)
                    };
                    if first {
                        RtStats::add(&self.stats.swaps, 1);
                    }
                }
                ToRt::Event { gen, node, at, kind } => {
                    let at = if at == crate::msg::AT_ONCE { self.sample_time } else { at };
                    if self.pending.len() < self.pending.capacity() {
                        self.pending.push(Pending { at, gen, node, kind });
                    } else {
                        RtStats::add(&self.stats.events_dropped, 1);
                    }
                }
            }
        }
    }

    /// Device MIDI in for this call, as pending events for every `midi_in` node at its frame.
    fn queue_device_midi(&mut self) {
        let Some(cur) = self.current.as_ref() else {
            self.device_midi.inbox.clear();
            return;
        };
        for &(offset, msg) in &self.device_midi.inbox {
            for &node in cur.device_midi_nodes() {
                if self.pending.len() < self.pending.capacity() {
                    self.pending.push(Pending {
                        at: self.sample_time + offset as u64,
                        gen: cur.gen,
                        node,
                        kind: EventKind::Midi(msg),
                    });
                } else {
                    RtStats::add(&self.stats.events_dropped, 1);
                }
            }
        }
        self.device_midi.inbox.clear();
    }

    /// Moves events due in the next `frames` frames into their nodes, at their offsets. One
    /// pass: the events kept are compacted in place, in their order (no removal from the middle).
    fn release_pending(&mut self, frames: usize) {
        let end = self.sample_time + frames as u64;
        let mut kept = 0;
        for i in 0..self.pending.len() {
            let p = self.pending[i];
            if p.at >= end {
                self.pending[kept] = p;
                kept += 1;
                continue;
            }
            let offset = if p.at < self.sample_time {
                RtStats::add(&self.stats.events_late, 1);
                0
            } else {
                (p.at - self.sample_time) as u32
            };
            let ok = match self.current.as_mut() {
                Some(cur) if cur.gen == p.gen => cur.push_event(p.node, Event { offset, kind: p.kind }),
                _ => false,
            };
            if !ok {
                RtStats::add(&self.stats.events_dropped, 1);
            }
        }
        self.pending.truncate(kept);
    }
}

/// Control-side handle: sends schedules and events, receives results, frees what the audio
/// thread retired. Control thread.
pub struct EngineHandle {
    to_rt: Producer<ToRt>,
    from_rt: Consumer<FromRt>,
    collector: Collector,
    gen: u64,
    nodes: Vec<(CompiledNode, &'static [ParamSpec])>,
    latency_frames: u32,
    latency_text: String,
    pub stats: Arc<RtStats>,
    pub cfg: EngineConfig,
}

impl EngineHandle {
    /// Creates the rings and both halves. Control thread.
    pub fn new(cfg: EngineConfig) -> (EngineHandle, Engine) {
        Self::with_stats(cfg, Arc::new(RtStats::default()))
    }

    /// As `new`, counting into existing stats (an engine rebuilt after a device loss).
    pub fn with_stats(cfg: EngineConfig, stats: Arc<RtStats>) -> (EngineHandle, Engine) {
        let (to_rt, from_ctl) = RingBuffer::new(TO_RT_CAPACITY);
        let (to_ctl, from_rt) = RingBuffer::new(FROM_RT_CAPACITY);
        let engine = Engine {
            cfg,
            current: None,
            old: None,
            fade_pos: 0,
            fade_len: 0,
            from_ctl,
            to_ctl,
            stats: stats.clone(),
            hw_in: vec![0.0; cfg.in_channels.max(1) * MAX_BLOCK_FRAMES],
            pending: Vec::with_capacity(PENDING_CAPACITY),
            sample_time: 0,
            device_midi: DeviceMidiIo::new(),
        };
        let handle = EngineHandle {
            to_rt,
            from_rt,
            collector: Collector::new(),
            gen: 0,
            nodes: Vec::new(),
            latency_frames: 0,
            latency_text: String::new(),
            stats,
            cfg,
        };
        (handle, engine)
    }

    /// Sends a compiled schedule to the audio thread (crossfaded in). Returns its generation.
    pub fn swap(&mut self, mut schedule: Schedule) -> Result<u64, String> {
        if self.to_rt.slots() == 0 {
            return Err("the control ring is full; try again".into());
        }
        self.gen += 1;
        schedule.set_generation(self.gen);
        self.nodes = schedule.nodes().iter().map(|n| (n.clone(), n.params)).collect();
        self.latency_frames = schedule.latency_frames();
        self.latency_text = schedule.latency_text();
        let owned = Owned::new(&self.collector.handle(), schedule);
        self.to_rt
            .push(ToRt::Swap(owned))
            .map_err(|_| "the control ring is full; try again".to_string())?;
        Ok(self.gen)
    }

    /// The current graph's nodes.
    pub fn nodes(&self) -> impl Iterator<Item = &CompiledNode> {
        self.nodes.iter().map(|(n, _)| n)
    }
    /// The running patch's nodes with their parameter specs (the OSC address space's source).
    pub fn node_params(&self) -> impl Iterator<Item = (&CompiledNode, &'static [ParamSpec])> {
        self.nodes.iter().map(|(n, p)| (n, *p))
    }

    pub fn latency_frames(&self) -> u32 {
        self.latency_frames
    }
    /// Both latencies of the current graph, as a user reads them (`Schedule::latency_text`).
    pub fn latency_text(&self) -> &str {
        &self.latency_text
    }
    pub fn generation(&self) -> u64 {
        self.gen
    }

    /// Resolves `node`/`param` to indices (off the audio thread), checks the value's range.
    pub fn resolve_param(&self, node: &str, param: &str) -> Result<(u32, u16, ParamSpec), String> {
        let (i, (_, specs)) = self
            .nodes
            .iter()
            .enumerate()
            .find(|(_, (n, _))| n.id == node)
            .ok_or_else(|| format!("no node `{node}`"))?;
        let pi = specs
            .iter()
            .position(|p| p.name == param)
            .ok_or_else(|| format!("node `{node}` has no parameter `{param}`"))?;
        let spec = specs[pi];
        if !spec.is_runtime() {
            return Err(format!("`{node}.{param}` is fixed when the node is built; change it in the patch"));
        }
        Ok((i as u32, pi as u16, spec))
    }

    /// Sets a runtime parameter at engine sample time `at` (`msg::AT_ONCE`: as soon as possible).
    pub fn set_param(&mut self, node: &str, param: &str, value: f32, at: u64) -> Result<(), String> {
        let (ni, pi, spec) = self.resolve_param(node, param)?;
        let value = match spec.kind {
            crate::param::ParamKind::Float { min, max, .. } => {
                if !value.is_finite() {
                    return Err(format!("`{node}.{param}` needs a finite number"));
                }
                value.clamp(min, max)
            }
            _ => value,
        };
        self.send(ToRt::Event {
            gen: self.gen,
            node: ni,
            at,
            kind: EventKind::Param { index: pi, value },
        })
    }

    /// Sends MIDI to node `node` at engine sample time `at` (`msg::AT_ONCE`: as soon as possible).
    pub fn send_midi(&mut self, node: &str, msg: [u8; 3], at: u64) -> Result<(), String> {
        let ni = self
            .nodes
            .iter()
            .position(|(n, _)| n.id == node)
            .ok_or_else(|| format!("no node `{node}`"))? as u32;
        self.send(ToRt::Event {
            gen: self.gen,
            node: ni,
            at,
            kind: EventKind::Midi(msg),
        })
    }

    /// Sends a message from the device's MIDI input to every `midi_in` node, at engine sample
    /// time `at` (a backend without sample-accurate MIDI: ALSA through midir). Returns how many
    /// nodes it was sent to.
    pub fn send_device_midi(&mut self, msg: [u8; 3], at: u64) -> usize {
        let targets: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&i| self.nodes[i as usize].0.info.device_midi_in)
            .collect();
        for &node in &targets {
            let _ = self.send(ToRt::Event {
                gen: self.gen,
                node,
                at,
                kind: EventKind::Midi(msg),
            });
        }
        targets.len()
    }

    fn send(&mut self, msg: ToRt) -> Result<(), String> {
        self.to_rt.push(msg).map_err(|_| {
            RtStats::add(&self.stats.events_dropped, 1);
            "the control ring is full; event dropped".to_string()
        })
    }

    /// Receives everything the audio thread sent.
    pub fn drain(&mut self, mut f: impl FnMut(FromRt)) {
        while let Ok(m) = self.from_rt.pop() {
            f(m);
        }
    }

    /// Frees what the audio thread retired. Call every few tens of milliseconds.
    pub fn collect(&mut self) {
        self.collector.collect();
    }
}

/// Sets flush-to-zero and denormals-are-zero for this thread (x86_64 and aarch64).
#[inline]
pub fn set_flush_to_zero() {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: reading and writing MXCSR only changes this thread's float rounding/denormal
        // behaviour; FTZ (bit 15) and DAZ (bit 6) are supported by every x86_64 CPU with SSE2.
        unsafe {
            let mut csr: u32 = 0;
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
            csr |= (1 << 15) | (1 << 6);
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly));
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: FPCR.FZ (bit 24) only changes this thread's denormal handling.
        unsafe {
            let mut fpcr: u64;
            std::arch::asm!("mrs {}, fpcr", out(reg) fpcr);
            fpcr |= 1 << 24;
            std::arch::asm!("msr fpcr, {}", in(reg) fpcr);
        }
    }
}
