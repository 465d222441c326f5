//! Graph description, validation and compilation (control thread), and the compiled
//! [`Schedule`] that the audio thread runs.
//!
//! `compile` (compile.rs) builds every node, resolves connections, sorts the nodes
//! topologically, aligns the latency of paths that merge (delay lines on the shorter edges),
//! assigns every buffer, and returns an immutable-shape `Schedule` that is swapped in whole.
//! Nothing in a schedule grows after compilation. run.rs is the audio thread's side.
//! This file: the descriptions, the errors, and the schedule's facts (read on any thread).

mod compile;
mod run;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::node::{NodeInfo, Registry};
use crate::param::{ParamSpec, ParamValue};
use crate::MAX_BLOCK_FRAMES;

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
    slots: Vec<run::Slot>,
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
        compile::compile(desc, registry, sample_rate, mode)
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
}
