//! Stagebox real-time core. Threads: see each module's header; the audio thread runs only
//! `processor::Engine::process` and the `Processor` implementations it calls.
//!
//! Layout:
//! - [`node`]: node types (spec, built off the audio thread) and the [`node::Processor`] trait (audio thread).
//! - [`graph`]: graph description, validation, latency alignment, compile into an immutable [`graph::Schedule`].
//! - [`processor`]: the callback body ([`processor::Engine`]) and the control-side handle ([`processor::EngineHandle`]).
//! - [`msg`]: messages between control and audio threads, fixed ring capacities.
//! - [`param`]: parameter descriptors, sample-stamped events, smoothers.
//! - [`nodes`]: the built-in nodes.
//! - [`backend`]: offline render (always built) and live audio through cpal (feature `live`).
//! - [`alloc_check`]: the allocation guard every audio-thread process call runs under.

pub mod alloc_check;
pub mod audio_file;
pub mod backend;
pub mod ddsp;
pub mod device_midi;
pub mod dsp;
pub mod graph;
pub mod infer;
pub mod intern;
pub mod loudness;
pub mod msg;
pub mod node;
pub mod nodes;
pub mod param;
pub mod pitchnet;
pub mod processor;
pub mod rate_change;
pub mod sliding_spectrum;
pub mod spectral;
pub mod stats;
pub mod voices;

/// The engine's own unit tests run under the checked allocator, so that they can assert that
/// code meant for the audio thread neither allocates nor frees.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOC: alloc_check::CheckedAlloc = alloc_check::CheckedAlloc;

pub use graph::{Connection, GraphDesc, GraphError, NodeDesc, PortRef, Schedule};
pub use node::{NodeType, Registry};
pub use param::{ParamKind, ParamSpec, ParamValue};
pub use processor::{Engine, EngineConfig, EngineHandle};

/// Most frames one `Processor::process` call sees; larger host blocks are split.
pub const MAX_BLOCK_FRAMES: usize = 1024;
/// Most channels a single port may carry.
pub const MAX_PORT_CHANNELS: usize = 16;
/// Most input (or output) channels one node may have across all its ports.
pub const MAX_NODE_CHANNELS: usize = 64;
