//! Graph description, validation and compilation (control thread), and the compiled
//! [`Schedule`] that the audio thread runs.
//!
//! `compile` builds every node, resolves connections, sorts the nodes topologically, aligns the
//! latency of paths that merge (delay lines on the shorter edges), assigns every buffer, and
//! returns an immutable-shape `Schedule` that is swapped in whole. Nothing in a schedule grows
//! after compilation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::msg::{FromRt, NODE_EVENT_CAPACITY};
use crate::node::{BuildCtx, Emit, NodeInfo, ProcessIo, Processor, Registry};
use crate::param::{Event, ParamSpec, ParamValue};
use crate::{MAX_BLOCK_FRAMES, MAX_NODE_CHANNELS};

/// One node of a graph, as a patch names it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDesc {
    pub id: String,
    pub kind: String,
    pub params: BTreeMap<String, ParamValue>,
}

/// `node` or `node.port`.
#[derive(Debug, Clone, PartialEq)]
pub struct PortRef {
    pub node: String,
    pub port: Option<String>,
}

impl PortRef {
    /// Parses `node` or `node.port`.
    pub fn parse(s: &str) -> Self {
        match s.split_once('.') {
            Some((n, p)) => Self {
                node: n.to_string(),
                port: Some(p.to_string()),
            },
            None => Self {
                node: s.to_string(),
                port: None,
            },
        }
    }
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.port {
            Some(p) => write!(f, "{}.{}", self.node, p),
            None => write!(f, "{}", self.node),
        }
    }
}

/// A connection from an output port to an input port. The port named `midi` carries MIDI.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub from: PortRef,
    pub to: PortRef,
}

/// A whole graph.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GraphDesc {
    pub nodes: Vec<NodeDesc>,
    pub connections: Vec<Connection>,
    /// Folder that relative paths in parameters resolve against.
    pub base_dir: PathBuf,
    /// Where recorders write (`stagebox run`): their paths must then be relative and stay inside
    /// it. None: relative to `base_dir`, as any other path (`render`).
    pub takes_dir: Option<PathBuf>,
}

/// What a schedule is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileMode {
    /// A live audio thread: nothing may wait.
    Live,
    /// The offline backend: inference nodes wait for their results (deterministic renders).
    Offline,
    /// Validation only: check everything, create no files, start no threads.
    DryRun,
}

/// Where a compile error belongs.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorLoc {
    Graph,
    Node(usize),
    Param(usize, String),
    /// A connection, at its `from` end (or the whole connection).
    Connection(usize),
    /// A connection, at its `to` end.
    ConnectionTo(usize),
}

/// A compile error with where it belongs (the patch layer turns this into file:line:col).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct GraphError {
    pub loc: ErrorLoc,
    pub message: String,
}

impl GraphError {
    fn new(loc: ErrorLoc, message: impl Into<String>) -> Self {
        Self {
            loc,
            message: message.into(),
        }
    }
}

/// A fixed delay of one channel, used to align paths of different latency.
struct DelayLine {
    buf: Vec<f32>,
    pos: usize,
}

impl DelayLine {
    fn new(frames: usize) -> Self {
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
struct Feed {
    src: usize,
    dst: usize,
    scale: f32,
    delay: Option<DelayLine>,
}

/// Where an input channel reads from.
#[derive(Clone, Copy)]
enum InSrc {
    /// Straight from another node's output buffer (one undelayed connection).
    Direct(usize),
    /// From this node's scratch buffer, filled by its feeds.
    Scratch(usize),
    /// Nothing connected: the shared zero buffer.
    Zero,
}

struct Slot {
    desc_index: u32,
    processor: Box<dyn Processor>,
    inputs: Vec<InSrc>,
    scratch: Vec<usize>,
    feeds: Vec<Feed>,
    outputs: Vec<usize>,
    events: Vec<Event>,
    midi_out: Vec<Event>,
    midi_targets: Vec<usize>,
    hw_input: Option<usize>,
    hw_output: Option<usize>,
}

/// Public facts about one compiled node.
#[derive(Debug, Clone)]
pub struct CompiledNode {
    pub id: String,
    pub kind: String,
    pub info: NodeInfo,
    /// Latency of the signal arriving at this node's inputs, after alignment.
    pub input_latency_frames: u32,
    /// The node's parameters (its type's, or for `params_of` types this node's own).
    pub params: &'static [ParamSpec],
}

/// A compiled graph: processors in order, buffers, alignment delays. Runs on the audio thread.
pub struct Schedule {
    pub(crate) gen: u64,
    slots: Vec<Slot>,
    /// `slot_of[desc_index]` = position in `slots`.
    slot_of: Vec<u32>,
    pool: Vec<f32>,
    zero_buf: usize,
    /// Summed hardware outputs, `hw_out_channels` x MAX_BLOCK_FRAMES.
    pub(crate) hw_out: Vec<f32>,
    hw_out_channels: usize,
    hw_in_channels: usize,
    nodes: Vec<CompiledNode>,
    latency_frames: u32,
    sample_rate: f32,
    /// Node indices of the `midi_in` nodes (they hear the device's MIDI input).
    device_midi_nodes: Vec<u32>,
}

const STRIDE: usize = MAX_BLOCK_FRAMES;

impl Schedule {
    /// Builds and compiles `desc`. Runs on the control thread; may allocate, read files, spawn threads.
    pub fn compile(desc: &GraphDesc, registry: &Registry, sample_rate: f32) -> Result<Schedule, Vec<GraphError>> {
        Self::compile_with(desc, registry, sample_rate, CompileMode::Live)
    }

    /// As `compile`, for a given mode.
    pub fn compile_with(desc: &GraphDesc, registry: &Registry, sample_rate: f32, mode: CompileMode) -> Result<Schedule, Vec<GraphError>> {
        let dry_run = mode == CompileMode::DryRun;
        let offline = mode == CompileMode::Offline;
        let mut errors = Vec::new();
        let n = desc.nodes.len();
        let mut index_of: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, nd) in desc.nodes.iter().enumerate() {
            if index_of.insert(nd.id.as_str(), i).is_some() {
                errors.push(GraphError::new(ErrorLoc::Node(i), format!("node id `{}` is used twice", nd.id)));
            }
            if !valid_id(&nd.id) {
                errors.push(GraphError::new(
                    ErrorLoc::Node(i),
                    format!(
                        "node id `{}` must start with a letter and hold only letters, digits, `_` and `-`",
                        nd.id
                    ),
                ));
            }
        }
        // Build every node.
        let mut built: Vec<Option<crate::node::Built>> = Vec::with_capacity(n);
        let mut specs: Vec<&'static [ParamSpec]> = Vec::with_capacity(n);
        for (i, nd) in desc.nodes.iter().enumerate() {
            let Some(t) = registry.get(&nd.kind) else {
                errors.push(GraphError::new(
                    ErrorLoc::Node(i),
                    format!("unknown node type `{}` (known types: {})", nd.kind, registry.names().join(", ")),
                ));
                built.push(None);
                continue;
            };
            // The node's parameter list once (a model node reads it from its manifest).
            let checked = t
                .specs(&nd.params, &desc.base_dir)
                .map_err(|e| vec![e])
                .and_then(|list| t.check_against(list, &nd.params).map(|p| (p, list)));
            let params = match checked {
                Ok((p, list)) => {
                    specs.push(list);
                    p
                }
                Err(errs) => {
                    for (k, e) in errs {
                        errors.push(GraphError::new(ErrorLoc::Param(i, k), e));
                    }
                    built.push(None);
                    continue;
                }
            };
            let ctx = BuildCtx {
                sample_rate,
                max_block: MAX_BLOCK_FRAMES,
                base_dir: desc.base_dir.clone(),
                takes_dir: desc.takes_dir.clone(),
                node_index: i as u32,
                dry_run,
                offline,
                locate_model: registry.model_locator(),
            };
            match (t.build)(&params, &ctx) {
                Ok(b) => {
                    let chans_in: usize = b.info.inputs.iter().map(|p| p.channels).sum();
                    let chans_out: usize = b.info.outputs.iter().map(|p| p.channels).sum();
                    if chans_in > MAX_NODE_CHANNELS || chans_out > MAX_NODE_CHANNELS {
                        errors.push(GraphError::new(
                            ErrorLoc::Node(i),
                            format!("node `{}` has too many channels", nd.id),
                        ));
                    }
                    built.push(Some(b));
                }
                Err(e) => {
                    errors.push(GraphError::new(ErrorLoc::Node(i), format!("node `{}`: {e}", nd.id)));
                    built.push(None);
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let infos: Vec<NodeInfo> = built.iter().map(|b| b.as_ref().unwrap().info.clone()).collect();

        // Resolve connections.
        struct Edge {
            src: usize,
            src_port: usize,
            dst: usize,
            dst_port: usize,
            midi: bool,
        }
        let mut edges = Vec::new();
        for (ci, c) in desc.connections.iter().enumerate() {
            let loc = || ErrorLoc::Connection(ci);
            let (Some(&s), Some(&d)) = (index_of.get(c.from.node.as_str()), index_of.get(c.to.node.as_str())) else {
                for (r, at) in [(&c.from, loc()), (&c.to, ErrorLoc::ConnectionTo(ci))] {
                    if !index_of.contains_key(r.node.as_str()) {
                        errors.push(GraphError::new(
                            at,
                            format!("connection names node `{}`, which the graph does not have", r.node),
                        ));
                    }
                }
                continue;
            };
            if s == d {
                errors.push(GraphError::new(loc(), format!("node `{}` is connected to itself", c.from.node)));
                continue;
            }
            let from_midi = c.from.port.as_deref() == Some("midi");
            let to_midi = c.to.port.as_deref() == Some("midi");
            if from_midi || to_midi {
                if !(from_midi && to_midi) {
                    errors.push(mixed_midi_error(ci, c, &infos[s], &infos[d], from_midi));
                } else if !infos[s].midi_out {
                    errors.push(GraphError::new(loc(), format!("node `{}` has no MIDI output", c.from.node)));
                } else if !infos[d].midi_in {
                    errors.push(GraphError::new(
                        ErrorLoc::ConnectionTo(ci),
                        format!("node `{}` has no MIDI input", c.to.node),
                    ));
                } else {
                    edges.push(Edge {
                        src: s,
                        src_port: 0,
                        dst: d,
                        dst_port: 0,
                        midi: true,
                    });
                }
                continue;
            }
            let sp = find_port(&infos[s].outputs, c.from.port.as_deref());
            let dp = find_port(&infos[d].inputs, c.to.port.as_deref());
            match (sp, dp) {
                (Ok(sp), Ok(dp)) => {
                    let (a, b) = (infos[s].outputs[sp].channels, infos[d].inputs[dp].channels);
                    let (ka, kb) = (infos[s].outputs[sp].kind, infos[d].inputs[dp].kind);
                    if !ka.feeds(kb) {
                        errors.push(GraphError::new(
                            loc(),
                            format!(
                                "`{}` is {} and `{}` is {}: connect control outputs to control inputs, audio to audio",
                                c.from,
                                ka.word(),
                                c.to,
                                kb.word()
                            ),
                        ));
                    } else if a != b && a != 1 && b != 1 {
                        errors.push(GraphError::new(
                            loc(),
                            format!(
                                "`{}` has {a} channels but `{}` has {b} (connect equal counts, or mono to anything)",
                                c.from, c.to
                            ),
                        ));
                    } else {
                        edges.push(Edge {
                            src: s,
                            src_port: sp,
                            dst: d,
                            dst_port: dp,
                            midi: false,
                        });
                    }
                }
                (sp, dp) => {
                    if let Err(e) = sp {
                        errors.push(GraphError::new(loc(), format!("node `{}` {e}", c.from.node)));
                    }
                    if let Err(e) = dp {
                        errors.push(GraphError::new(ErrorLoc::ConnectionTo(ci), format!("node `{}` {e}", c.to.node)));
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        // Topological order (Kahn), stable by declaration order.
        let mut indeg = vec![0usize; n];
        for e in &edges {
            indeg[e.dst] += 1;
        }
        let mut order = Vec::with_capacity(n);
        let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
        while let Some(&i) = ready.iter().next() {
            ready.remove(&i);
            order.push(i);
            for e in edges.iter().filter(|e| e.src == i) {
                indeg[e.dst] -= 1;
                if indeg[e.dst] == 0 {
                    ready.insert(e.dst);
                }
            }
        }
        if order.len() < n {
            let stuck: Vec<&str> = (0..n).filter(|i| indeg[*i] > 0).map(|i| desc.nodes[i].id.as_str()).collect();
            let ci = desc
                .connections
                .iter()
                .position(|c| stuck.contains(&c.to.node.as_str()))
                .map(ErrorLoc::Connection)
                .unwrap_or(ErrorLoc::Graph);
            return Err(vec![GraphError::new(
                ci,
                format!("the graph has a cycle through nodes {}", stuck.join(", ")),
            )]);
        }

        // Latency: arrival latency at each node's inputs, and at its outputs.
        let mut in_lat = vec![0u32; n];
        let mut out_lat = vec![0u32; n];
        for &i in &order {
            in_lat[i] = edges
                .iter()
                .filter(|e| e.dst == i && !e.midi)
                .map(|e| out_lat[e.src])
                .max()
                .unwrap_or(0);
            out_lat[i] = in_lat[i] + infos[i].latency_frames;
        }
        // All hardware outputs line up with the latest of them.
        let out_max = (0..n)
            .filter(|&i| infos[i].hw_output.is_some())
            .map(|i| in_lat[i])
            .max()
            .unwrap_or(0);
        for i in 0..n {
            if infos[i].hw_output.is_some() {
                in_lat[i] = out_max;
            }
        }

        // Buffers: a zero buffer, then each node's outputs and input scratch.
        let mut next_buf = 1usize;
        let mut alloc = |k: usize| {
            let v: Vec<usize> = (next_buf..next_buf + k).collect();
            next_buf += k;
            v
        };
        let out_bufs: Vec<Vec<usize>> = infos
            .iter()
            .map(|inf| alloc(inf.outputs.iter().map(|p| p.channels).sum()))
            .collect();
        let mut slots_by_desc: Vec<Option<Slot>> = Vec::with_capacity(n);
        let mut hw_in_channels = 0;
        let mut hw_out_channels = 0;
        for (i, b) in built.into_iter().enumerate() {
            let b = b.unwrap();
            let info = &infos[i];
            let n_in: usize = info.inputs.iter().map(|p| p.channels).sum();
            let port_base = |ports: &[crate::node::PortSpec], p: usize| ports[..p].iter().map(|x| x.channels).sum::<usize>();
            let mut per_channel: Vec<Vec<(usize, f32, u32)>> = vec![Vec::new(); n_in];
            for e in edges.iter().filter(|e| e.dst == i && !e.midi) {
                let sc = infos[e.src].outputs[e.src_port].channels;
                let dc = info.inputs[e.dst_port].channels;
                let sbase = port_base(&infos[e.src].outputs, e.src_port);
                let dbase = port_base(&info.inputs, e.dst_port);
                let delay = in_lat[i] - out_lat[e.src];
                for k in 0..dc {
                    if sc == dc {
                        per_channel[dbase + k].push((out_bufs[e.src][sbase + k], 1.0, delay));
                    } else if sc == 1 {
                        per_channel[dbase + k].push((out_bufs[e.src][sbase], 1.0, delay));
                    } else {
                        // Many to mono: the mean of the source channels.
                        for j in 0..sc {
                            per_channel[dbase + k].push((out_bufs[e.src][sbase + j], 1.0 / sc as f32, delay));
                        }
                    }
                }
            }
            let mut inputs = Vec::with_capacity(n_in);
            let mut scratch = Vec::new();
            let mut feeds = Vec::new();
            for ch in per_channel {
                match ch.as_slice() {
                    [] => inputs.push(InSrc::Zero),
                    [(src, s, 0)] if *s == 1.0 => inputs.push(InSrc::Direct(*src)),
                    many => {
                        let dst = alloc(1)[0];
                        scratch.push(dst);
                        inputs.push(InSrc::Scratch(dst));
                        for &(src, scale, delay) in many {
                            feeds.push(Feed {
                                src,
                                dst,
                                scale,
                                delay: (delay > 0).then(|| DelayLine::new(delay as usize)),
                            });
                        }
                    }
                }
            }
            let midi_targets: Vec<usize> = edges.iter().filter(|e| e.src == i && e.midi).map(|e| e.dst).collect();
            if let Some(first) = info.hw_input {
                hw_in_channels = hw_in_channels.max(first + out_bufs[i].len());
            }
            if let Some(first) = info.hw_output {
                hw_out_channels = hw_out_channels.max(first + n_in);
            }
            slots_by_desc.push(Some(Slot {
                desc_index: i as u32,
                processor: b.processor,
                inputs,
                scratch,
                feeds,
                outputs: out_bufs[i].clone(),
                events: Vec::with_capacity(NODE_EVENT_CAPACITY),
                midi_out: Vec::with_capacity(if info.midi_out { NODE_EVENT_CAPACITY } else { 0 }),
                midi_targets,
                hw_input: info.hw_input,
                hw_output: info.hw_output,
            }));
        }
        let mut slot_of = vec![0u32; n];
        for (pos, &i) in order.iter().enumerate() {
            slot_of[i] = pos as u32;
        }
        let mut slots: Vec<Slot> = order.iter().map(|&i| slots_by_desc[i].take().unwrap()).collect();
        for s in &mut slots {
            for t in &mut s.midi_targets {
                *t = slot_of[*t] as usize;
            }
        }
        let device_midi_nodes = (0..n).filter(|&i| infos[i].device_midi_in).map(|i| i as u32).collect();
        let nodes = (0..n)
            .map(|i| CompiledNode {
                id: desc.nodes[i].id.clone(),
                kind: desc.nodes[i].kind.clone(),
                info: infos[i].clone(),
                input_latency_frames: in_lat[i],
                params: specs[i],
            })
            .collect();
        Ok(Schedule {
            gen: 0,
            slots,
            slot_of,
            pool: touched(next_buf * STRIDE),
            zero_buf: 0,
            hw_out: touched(hw_out_channels * STRIDE),
            hw_out_channels,
            hw_in_channels,
            nodes,
            latency_frames: out_max,
            sample_rate,
            device_midi_nodes,
        })
    }

    /// Latency from hardware input to hardware output, in frames.
    pub fn latency_frames(&self) -> u32 {
        self.latency_frames
    }
    /// Hardware input channels the graph reads.
    pub fn input_channels(&self) -> usize {
        self.hw_in_channels
    }
    /// Hardware output channels the graph writes.
    pub fn output_channels(&self) -> usize {
        self.hw_out_channels
    }
    pub fn sample_rate(&self) -> f32 {
        self.sample_rate
    }
    /// Generation number given by the engine handle when it sent the schedule.
    pub fn generation(&self) -> u64 {
        self.gen
    }
    pub fn set_generation(&mut self, gen: u64) {
        self.gen = gen;
    }
    /// The compiled nodes in declaration order (index = node index in messages).
    pub fn nodes(&self) -> &[CompiledNode] {
        &self.nodes
    }
    /// Node index of `id`.
    pub fn node_index(&self, id: &str) -> Option<u32> {
        self.nodes.iter().position(|n| n.id == id).map(|i| i as u32)
    }
    /// The latency of the notes the graph emits: the most any MIDI-emitting node adds to what
    /// reaches it (a pitch tracker's declared latency), in frames. 0 without such nodes. The
    /// audio path's latency is `latency_frames`.
    pub fn notes_latency_frames(&self) -> u32 {
        self.nodes
            .iter()
            .filter(|n| n.info.midi_out)
            .map(|n| n.input_latency_frames + n.info.latency_frames)
            .max()
            .unwrap_or(0)
    }

    /// How a user reads both latencies: "latency 0 frames" for the audio path, and the notes'
    /// where a node makes notes later than that ("; notes 5222 frames (108.8 ms)").
    pub fn latency_text(&self) -> String {
        let ms = |f: u32| f as f64 * 1000.0 / self.sample_rate as f64;
        let audio = self.latency_frames;
        let mut t = format!("audio latency {audio} frames ({:.1} ms)", ms(audio));
        let notes = self.notes_latency_frames();
        if notes > audio {
            t.push_str(&format!(", notes {notes} frames ({:.1} ms)", ms(notes)));
        }
        t
    }

    /// Node indices of the nodes that hear the device's MIDI input.
    pub fn device_midi_nodes(&self) -> &[u32] {
        &self.device_midi_nodes
    }
    /// Processing order (node indices).
    pub fn order(&self) -> Vec<u32> {
        self.slots.iter().map(|s| s.desc_index).collect()
    }

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
    /// Fills `self.hw_out`. Audio thread; never allocates.
    pub(crate) fn run(
        &mut self,
        frames: usize,
        sample_time: u64,
        hw_in: &[f32],
        in_channels: usize,
        to_control: &mut rtrb::Producer<FromRt>,
        device_midi: &mut Vec<crate::node::DeviceMidi>,
    ) -> u64 {
        debug_assert!(frames <= STRIDE);
        let mut dropped = 0u64;
        let pool_len = self.pool.len();
        self.hw_out.iter_mut().for_each(|x| *x = 0.0);
        for si in 0..self.slots.len() {
            // Hardware input: copy into the input node's output buffers.
            if let Some(first) = self.slots[si].hw_input {
                for (k, &b) in self.slots[si].outputs.iter().enumerate() {
                    let c = first + k;
                    let src = if c < in_channels {
                        Some(c)
                    } else if in_channels == 1 {
                        Some(0)
                    } else {
                        None
                    };
                    let dst = &mut self.pool[b * STRIDE..b * STRIDE + frames];
                    match src {
                        Some(c) => dst.copy_from_slice(&hw_in[c * STRIDE..c * STRIDE + frames]),
                        None => dst.fill(0.0),
                    }
                }
            }
            let slot = &mut self.slots[si];
            // Sum feeds into scratch inputs (with alignment delays).
            for &b in &slot.scratch {
                self.pool[b * STRIDE..b * STRIDE + frames].fill(0.0);
            }
            for f in &mut slot.feeds {
                let (s, d) = (f.src * STRIDE, f.dst * STRIDE);
                for t in 0..frames {
                    let mut x = self.pool[s + t] * f.scale;
                    if let Some(dl) = &mut f.delay {
                        x = dl.tick(x);
                    }
                    self.pool[d + t] += x;
                }
            }
            // Events in time order (stable insertion sort; no allocation).
            let evs = &mut slot.events;
            for a in 1..evs.len() {
                let mut b = a;
                while b > 0 && evs[b - 1].offset > evs[b].offset {
                    evs.swap(b - 1, b);
                    b -= 1;
                }
            }
            slot.midi_out.clear();
            let mut start = 0usize;
            let mut ei = 0usize;
            while start < frames {
                while ei < slot.events.len() && slot.events[ei].offset as usize <= start {
                    slot.processor.event(&slot.events[ei].kind);
                    ei += 1;
                }
                let end = if ei < slot.events.len() {
                    (slot.events[ei].offset as usize).min(frames)
                } else {
                    frames
                };
                let len = end - start;
                let pool = self.pool.as_mut_ptr();
                let mut ins: [&[f32]; MAX_NODE_CHANNELS] = [&[]; MAX_NODE_CHANNELS];
                let mut outs: [&mut [f32]; MAX_NODE_CHANNELS] = std::array::from_fn(|_| <&mut [f32]>::default());
                for (k, src) in slot.inputs.iter().enumerate() {
                    let b = match *src {
                        InSrc::Direct(b) | InSrc::Scratch(b) => b,
                        InSrc::Zero => self.zero_buf,
                    };
                    debug_assert!(b * STRIDE + end <= pool_len);
                    // SAFETY: `b` indexes a buffer inside `pool` (asserted above); input buffers
                    // are only read during this call, and compile never gives a node one of its
                    // own output buffers as an input, so no `&mut` below aliases these.
                    ins[k] = unsafe { std::slice::from_raw_parts(pool.add(b * STRIDE + start), len) };
                }
                for (k, &b) in slot.outputs.iter().enumerate() {
                    debug_assert!(b * STRIDE + end <= pool_len);
                    // SAFETY: each output buffer index is unique to this node and channel
                    // (compile hands them out once), so these `&mut` slices are disjoint from
                    // each other and from every input slice above; they live only for this call.
                    outs[k] = unsafe { std::slice::from_raw_parts_mut(pool.add(b * STRIDE + start), len) };
                }
                let n_in = slot.inputs.len();
                let n_out = slot.outputs.len();
                let mut io = ProcessIo {
                    frames: len,
                    sample_time: sample_time + start as u64,
                    sample_rate: self.sample_rate,
                    inputs: &ins[..n_in],
                    outputs: &mut outs[..n_out],
                    emit: Emit {
                        midi: &mut slot.midi_out,
                        to_control,
                        device_midi,
                        dropped: &mut dropped,
                        base_offset: start as u32,
                        gen: self.gen,
                        node: slot.desc_index,
                    },
                };
                slot.processor.process(&mut io);
                start = end;
            }
            while ei < slot.events.len() {
                slot.processor.event(&slot.events[ei].kind);
                ei += 1;
            }
            slot.events.clear();
            // Hardware output: sum this node's inputs into the output bus.
            if let Some(first) = slot.hw_output {
                for (k, src) in slot.inputs.iter().enumerate() {
                    let b = match *src {
                        InSrc::Direct(b) | InSrc::Scratch(b) => b,
                        InSrc::Zero => continue,
                    };
                    let c = first + k;
                    for t in 0..frames {
                        self.hw_out[c * STRIDE + t] += self.pool[b * STRIDE + t];
                    }
                }
            }
            // MIDI to downstream nodes.
            if !slot.midi_targets.is_empty() && !slot.midi_out.is_empty() {
                let (head, tail) = self.slots.split_at_mut(si + 1);
                let src = &head[si];
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
            }
        }
        dropped
    }

    pub(crate) fn hw_out_channels(&self) -> usize {
        self.hw_out_channels
    }
}

/// A connection with `midi` at one end only: a port the other node lacks is named as such; two
/// real ports of different kinds are "a MIDI port joined to an audio port".
fn mixed_midi_error(ci: usize, c: &Connection, from: &NodeInfo, to: &NodeInfo, from_midi: bool) -> GraphError {
    let (audio_end, ports, has_midi, loc) = if from_midi {
        (&c.to, &to.inputs, to.midi_in, ErrorLoc::ConnectionTo(ci))
    } else {
        (&c.from, &from.outputs, from.midi_out, ErrorLoc::Connection(ci))
    };
    let message = match (audio_end.port.as_deref(), find_port(ports, audio_end.port.as_deref())) {
        (Some(p), Err(_)) if ports.is_empty() && has_midi => {
            format!("node `{}` has no port `{p}` (its only port on that side is `midi`)", audio_end.node)
        }
        (Some(_), Err(e)) => format!("node `{}` {e}", audio_end.node),
        _ => format!("`{}` -> `{}` joins a MIDI port to an audio port", c.from, c.to),
    };
    GraphError::new(loc, message)
}

fn find_port(ports: &[crate::node::PortSpec], name: Option<&str>) -> Result<usize, String> {
    match name {
        None if !ports.is_empty() => Ok(0),
        None => Err("has no audio port there".to_string()),
        Some(p) => ports.iter().position(|x| x.name == p).ok_or_else(|| {
            if ports.is_empty() {
                format!("has no audio port `{p}` (it has none on that side)")
            } else {
                format!(
                    "has no port `{p}` (it has: {})",
                    ports.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(", ")
                )
            }
        }),
    }
}

/// A zeroed buffer whose pages are all touched here (control thread): a zeroed allocation may be
/// fresh pages the kernel maps only on first touch, which must not be the audio thread's.
fn touched(len: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; len];
    for k in (0..len).step_by(1024) {
        // SAFETY: `k < len`, so the pointer is to an initialised element of `v`; the volatile
        // write keeps the compiler from dropping a store of the value already there.
        unsafe { std::ptr::write_volatile(v.as_mut_ptr().add(k), 0.0) };
    }
    v
}

fn valid_id(id: &str) -> bool {
    let mut c = id.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic()) && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
}
