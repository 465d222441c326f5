//! Running a compiled [`Schedule`] (audio thread): for each node in order, the hardware input
//! copied in, the feeds summed into scratch inputs through their alignment delays, the node
//! processed in sub-blocks split at its events' sample offsets, its inputs summed into the
//! hardware output bus if it is an output, and its MIDI handed to the nodes downstream. Nothing
//! here allocates, locks or frees: every buffer was sized by compile.

use super::{Schedule, STRIDE};
use crate::msg::FromRt;
use crate::node::{DeviceMidi, Emit, ProcessIo, Processor};
use crate::param::Event;
use crate::MAX_NODE_CHANNELS;

/// A fixed delay of one channel, used to align paths of different latency.
pub(super) struct DelayLine {
    buf: Vec<f32>,
    pos: usize,
}

impl DelayLine {
    pub(super) fn new(frames: usize) -> Self {
        Self {
            buf: vec![0.0; frames],
            pos: 0,
        }
    }
    #[inline]
    fn tick(&mut self, x: f32) -> f32 {
        let y = self.buf[self.pos];
        self.buf[self.pos] = x;
        self.pos += 1;
        if self.pos == self.buf.len() {
            self.pos = 0;
        }
        y
    }
}

/// One summed contribution to an input channel.
pub(super) struct Feed {
    pub(super) src: usize,
    pub(super) dst: usize,
    pub(super) scale: f32,
    pub(super) delay: Option<DelayLine>,
}

/// Where an input channel reads from.
#[derive(Clone, Copy)]
pub(super) enum InSrc {
    /// Straight from another node's output buffer (one undelayed connection).
    Direct(usize),
    /// From this node's scratch buffer, filled by its feeds.
    Scratch(usize),
    /// Nothing connected: the shared zero buffer.
    Zero,
}

/// One node in the schedule: its processor, where each input channel reads, its output
/// buffers, its events for the coming block and its MIDI out.
pub(super) struct Slot {
    pub(super) desc_index: u32,
    pub(super) processor: Box<dyn Processor>,
    pub(super) inputs: Vec<InSrc>,
    pub(super) scratch: Vec<usize>,
    pub(super) feeds: Vec<Feed>,
    pub(super) outputs: Vec<usize>,
    pub(super) events: Vec<Event>,
    pub(super) midi_out: Vec<Event>,
    pub(super) midi_targets: Vec<usize>,
    pub(super) hw_input: Option<usize>,
    pub(super) hw_output: Option<usize>,
}

/// What every node of one block shares: the block's timing and the routes out of the audio thread.
struct Block<'a> {
    frames: usize,
    sample_time: u64,
    sample_rate: f32,
    gen: u64,
    to_control: &'a mut rtrb::Producer<FromRt>,
    device_midi: &'a mut Vec<DeviceMidi>,
    dropped: u64,
}

impl Schedule {
    /// Queues an event for node `node` at frame `offset` of the coming block. Audio thread.
    /// Returns false (event dropped) when the node's event buffer is full or the node unknown.
    #[inline]
    pub(crate) fn push_event(&mut self, node: u32, ev: Event) -> bool {
        let Some(&pos) = self.slot_of.get(node as usize) else {
            return false;
        };
        let evs = &mut self.slots[pos as usize].events;
        if evs.len() < evs.capacity() {
            evs.push(ev);
            true
        } else {
            false
        }
    }

    /// Runs one block of `frames` frames. `hw_in` holds `in_channels` channels of `STRIDE` frames.
    /// Fills `self.hw_out`. Returns the events dropped (full buffers). Audio thread; never allocates.
    pub(crate) fn run(
        &mut self,
        frames: usize,
        sample_time: u64,
        hw_in: &[f32],
        in_channels: usize,
        to_control: &mut rtrb::Producer<FromRt>,
        device_midi: &mut Vec<DeviceMidi>,
    ) -> u64 {
        debug_assert!(frames <= STRIDE);
        let mut block = Block {
            frames,
            sample_time,
            sample_rate: self.sample_rate,
            gen: self.gen,
            to_control,
            device_midi,
            dropped: 0,
        };
        self.hw_out.iter_mut().for_each(|x| *x = 0.0);
        for si in 0..self.slots.len() {
            let slot = &mut self.slots[si];
            if let Some(first) = slot.hw_input {
                copy_hw_input(&mut self.pool, slot, first, hw_in, in_channels, frames);
            }
            sum_feeds(&mut self.pool, slot, frames);
            sort_events(&mut slot.events);
            process_slot(&mut self.pool, self.zero_buf, slot, &mut block);
            if let Some(first) = slot.hw_output {
                sum_to_hw_out(&mut self.hw_out, &self.pool, slot, first, frames);
            }
            block.dropped += route_midi(&mut self.slots, si);
        }
        block.dropped
    }

    pub(crate) fn hw_out_channels(&self) -> usize {
        self.hw_out_channels
    }
}

/// An input node's outputs: the hardware channels from its first on (a mono device feeds every
/// channel; channels the device lacks are silent).
fn copy_hw_input(pool: &mut [f32], slot: &Slot, first: usize, hw_in: &[f32], in_channels: usize, frames: usize) {
    for (k, &b) in slot.outputs.iter().enumerate() {
        let c = first + k;
        let src = if c < in_channels {
            Some(c)
        } else if in_channels == 1 {
            Some(0)
        } else {
            None
        };
        let dst = &mut pool[b * STRIDE..b * STRIDE + frames];
        match src {
            Some(c) => dst.copy_from_slice(&hw_in[c * STRIDE..c * STRIDE + frames]),
            None => dst.fill(0.0),
        }
    }
}

/// The node's scratch inputs: the sum of their feeds, each scaled and delayed.
fn sum_feeds(pool: &mut [f32], slot: &mut Slot, frames: usize) {
    for &b in &slot.scratch {
        pool[b * STRIDE..b * STRIDE + frames].fill(0.0);
    }
    for f in &mut slot.feeds {
        let (s, d) = (f.src * STRIDE, f.dst * STRIDE);
        for t in 0..frames {
            let mut x = pool[s + t] * f.scale;
            if let Some(dl) = &mut f.delay {
                x = dl.tick(x);
            }
            pool[d + t] += x;
        }
    }
}

/// Events in time order: a stable insertion sort (few events, no allocation).
fn sort_events(evs: &mut [Event]) {
    for a in 1..evs.len() {
        let mut b = a;
        while b > 0 && evs[b - 1].offset > evs[b].offset {
            evs.swap(b - 1, b);
            b -= 1;
        }
    }
}

/// Processes the node over the block in sub-blocks that end where its next event is due; an
/// event is applied before the sample it is stamped at, those after the block at its end.
fn process_slot(pool: &mut [f32], zero_buf: usize, slot: &mut Slot, block: &mut Block) {
    let frames = block.frames;
    slot.midi_out.clear();
    let mut start = 0usize;
    let mut ei = 0usize;
    while start < frames {
        while ei < slot.events.len() && slot.events[ei].offset as usize <= start {
            slot.processor.event(&slot.events[ei].kind);
            ei += 1;
        }
        let end = slot.events.get(ei).map_or(frames, |e| (e.offset as usize).min(frames));
        process_span(pool, zero_buf, slot, block, start, end);
        start = end;
    }
    for ev in &slot.events[ei..] {
        slot.processor.event(&ev.kind);
    }
    slot.events.clear();
}

/// One call of the node's processor over frames `start..end` of the block.
fn process_span(pool: &mut [f32], zero_buf: usize, slot: &mut Slot, block: &mut Block, start: usize, end: usize) {
    let len = end - start;
    let pool_len = pool.len();
    let pool = pool.as_mut_ptr();
    let mut ins: [&[f32]; MAX_NODE_CHANNELS] = [&[]; MAX_NODE_CHANNELS];
    let mut outs: [&mut [f32]; MAX_NODE_CHANNELS] = std::array::from_fn(|_| <&mut [f32]>::default());
    for (k, src) in slot.inputs.iter().enumerate() {
        let b = match *src {
            InSrc::Direct(b) | InSrc::Scratch(b) => b,
            InSrc::Zero => zero_buf,
        };
        assert!(b * STRIDE + end <= pool_len);
        // SAFETY: `b` indexes a buffer inside `pool` (asserted above); input buffers are only
        // read during this call, and compile never gives a node one of its own output buffers
        // as an input, so no `&mut` below aliases these.
        ins[k] = unsafe { std::slice::from_raw_parts(pool.add(b * STRIDE + start), len) };
    }
    for (k, &b) in slot.outputs.iter().enumerate() {
        assert!(b * STRIDE + end <= pool_len);
        // SAFETY: each output buffer index is unique to this node and channel (compile hands
        // them out once), so these `&mut` slices are disjoint from each other and from every
        // input slice above (bounds asserted above); they live only for this call.
        outs[k] = unsafe { std::slice::from_raw_parts_mut(pool.add(b * STRIDE + start), len) };
    }
    let (n_in, n_out) = (slot.inputs.len(), slot.outputs.len());
    let mut io = ProcessIo {
        frames: len,
        sample_time: block.sample_time + start as u64,
        sample_rate: block.sample_rate,
        inputs: &ins[..n_in],
        outputs: &mut outs[..n_out],
        emit: Emit {
            midi: &mut slot.midi_out,
            to_control: block.to_control,
            device_midi: block.device_midi,
            dropped: &mut block.dropped,
            base_offset: start as u32,
            gen: block.gen,
            node: slot.desc_index,
        },
    };
    slot.processor.process(&mut io);
}

/// An output node's inputs summed into the hardware output bus from channel `first` on.
fn sum_to_hw_out(hw_out: &mut [f32], pool: &[f32], slot: &Slot, first: usize, frames: usize) {
    for (k, src) in slot.inputs.iter().enumerate() {
        let b = match *src {
            InSrc::Direct(b) | InSrc::Scratch(b) => b,
            InSrc::Zero => continue,
        };
        let c = first + k;
        for t in 0..frames {
            hw_out[c * STRIDE + t] += pool[b * STRIDE + t];
        }
    }
}

/// Slot `si`'s MIDI out appended to the events of the nodes it feeds (all later in the order);
/// returns the events a full buffer dropped.
fn route_midi(slots: &mut [Slot], si: usize) -> u64 {
    let (head, tail) = slots.split_at_mut(si + 1);
    let src = &head[si];
    let mut dropped = 0;
    for &t in &src.midi_targets {
        let target = &mut tail[t - si - 1];
        for ev in &src.midi_out {
            if target.events.len() < target.events.capacity() {
                target.events.push(*ev);
            } else {
                dropped += 1;
            }
        }
    }
    dropped
}
