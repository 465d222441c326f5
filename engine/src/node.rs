//! Node types (control thread: built and validated off the audio thread) and the [`Processor`]
//! trait (audio thread).
//!
//! A [`NodeType`] names a kind of node, lists its parameters and builds it: building checks the
//! parameters, allocates everything the node will need, and returns a [`Built`] node (its
//! ports, latency and processor). Only the processor crosses to the audio thread.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::msg::FromRt;
use crate::param::{Event, ParamSpec, ParamValue};

/// What a port carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// Audio, one buffer a channel.
    Audio,
    /// A control curve (like CV): one value a sample, held between the frames in which the
    /// sending node decides a new one (a pitch tracker's f0 in Hz every 4 ms, a loudness in dB),
    /// so changes are sample-stamped and block-size invariant. Always one channel.
    Control,
    /// Either (a recorder or meter takes audio or control).
    Any,
}

impl PortKind {
    /// Whether an output of kind `self` may feed an input of kind `to`.
    pub fn feeds(self, to: PortKind) -> bool {
        self == to || self == PortKind::Any || to == PortKind::Any
    }
    pub fn word(self) -> &'static str {
        match self {
            PortKind::Audio => "an audio port",
            PortKind::Control => "a control port",
            PortKind::Any => "a port",
        }
    }
}

/// One port of a node (audio or control; MIDI is the separate `midi` port).
#[derive(Debug, Clone, PartialEq)]
pub struct PortSpec {
    pub name: String,
    pub channels: usize,
    pub kind: PortKind,
}

impl PortSpec {
    /// An audio port.
    pub fn new(name: impl Into<String>, channels: usize) -> Self {
        Self {
            name: name.into(),
            channels,
            kind: PortKind::Audio,
        }
    }
    /// A control port (one channel; see [`PortKind::Control`]).
    pub fn control(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            channels: 1,
            kind: PortKind::Control,
        }
    }
    /// A port that takes audio or control.
    pub fn any(name: impl Into<String>, channels: usize) -> Self {
        Self {
            name: name.into(),
            channels,
            kind: PortKind::Any,
        }
    }
}

/// What a built node looks like from the graph: ports, MIDI, latency, hardware role.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub inputs: Vec<PortSpec>,
    pub outputs: Vec<PortSpec>,
    pub midi_in: bool,
    pub midi_out: bool,
    /// Frames by which this node's output lags its input (0 for most DSP; a model's hop and
    /// lookahead for inference nodes). The graph delays parallel paths to match.
    pub latency_frames: u32,
    /// Set on the audio input node: its outputs carry hardware input channels `first..first+n`.
    pub hw_input: Option<usize>,
    /// Set on the audio output node: its inputs go to hardware output channels `first..first+n`.
    pub hw_output: Option<usize>,
    /// Set on `midi_in` nodes: they receive the MIDI of the engine's device MIDI input (a
    /// keyboard on the JACK or ALSA `midi_in` port), sample-stamped.
    pub device_midi_in: bool,
}

/// Facts about the engine a node is built for.
#[derive(Debug, Clone)]
pub struct BuildCtx {
    pub sample_rate: f32,
    pub max_block: usize,
    /// Relative file paths in parameters resolve against this folder (the patch's).
    pub base_dir: PathBuf,
    /// Where files a node writes must stay (see `GraphDesc::takes_dir`).
    pub takes_dir: Option<PathBuf>,
    /// Index this node will have in the schedule (used in messages it sends to the control side).
    pub node_index: u32,
    /// Validation only (`stagebox check`): check everything, but create no files and start no threads.
    pub dry_run: bool,
    /// Built for the offline backend: nodes that wait on other threads (inference) may block
    /// the render thread so that renders are deterministic.
    pub offline: bool,
    /// Finds a file of a model shipped in `models/` (see `Registry::set_model_locator`).
    pub locate_model: Option<ModelLocator>,
}

/// Finds the file `data` (a `[[data]]` name in the manifest, or `""` for the model file) of the
/// model `model`, checked against its manifest; or says why not. Control thread.
pub type ModelLocator = fn(model: &str, data: &str) -> Result<PathBuf, String>;

impl BuildCtx {
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = PathBuf::from(path);
        if p.is_absolute() {
            p
        } else {
            self.base_dir.join(p)
        }
    }

    /// Where a file the node writes goes: inside the takes folder when there is one (a path
    /// that is absolute or climbs out of it with `..` is refused), else as `resolve`.
    pub fn resolve_take(&self, path: &str) -> Result<PathBuf, String> {
        let Some(dir) = &self.takes_dir else {
            return Ok(self.resolve(path));
        };
        let p = std::path::Path::new(path);
        let inside = p
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir));
        if !inside || p.as_os_str().is_empty() {
            return Err(format!(
                "`{path}` is not a path inside the takes folder (give a relative path without `..`; takes go under {})",
                dir.display()
            ));
        }
        Ok(dir.join(p))
    }
}

/// The checked parameters of one node, with defaults filled in.
#[derive(Debug, Clone, Default)]
pub struct Params(pub BTreeMap<String, ParamValue>);

impl Params {
    pub fn f32(&self, name: &str) -> f32 {
        self.0.get(name).and_then(|v| v.as_f64()).unwrap_or(0.0) as f32
    }
    pub fn usize(&self, name: &str) -> usize {
        self.0.get(name).and_then(|v| v.as_i64()).unwrap_or(0).max(0) as usize
    }
    pub fn bool(&self, name: &str) -> bool {
        self.0.get(name).and_then(|v| v.as_bool()).unwrap_or(false)
    }
    pub fn str(&self, name: &str) -> &str {
        self.0.get(name).and_then(|v| v.as_str()).unwrap_or("")
    }
}

/// A built node ready to be placed in a schedule.
pub struct Built {
    pub info: NodeInfo,
    pub processor: Box<dyn Processor>,
}

/// The parameter list of one node of a type whose parameters depend on the node (the `onnx`
/// node's come from its model's manifest): from the node's given parameters and the folder its
/// relative paths resolve against; an error names the parameter it is about. Control thread.
pub type ParamsOf = fn(&BTreeMap<String, ParamValue>, &Path) -> Result<&'static [ParamSpec], (String, String)>;

/// A kind of node: name, parameters, and how to build one.
pub struct NodeType {
    pub name: &'static str,
    pub doc: &'static str,
    /// The parameters every node of this type has (for `params_of` types: those it always has).
    pub params: &'static [ParamSpec],
    /// For types whose parameters depend on the node: its whole list (see [`ParamsOf`]).
    pub params_of: Option<ParamsOf>,
    pub build: fn(&Params, &BuildCtx) -> Result<Built, String>,
}

impl NodeType {
    /// The parameter list of a node with the given parameters (`params`, unless `params_of`).
    pub fn specs(&self, given: &BTreeMap<String, ParamValue>, base_dir: &Path) -> Result<&'static [ParamSpec], (String, String)> {
        match self.params_of {
            Some(f) => f(given, base_dir),
            None => Ok(self.params),
        }
    }

    /// Checks `given` against the node's parameter list and fills in defaults. Relative paths
    /// resolve against `base_dir` (the patch's folder).
    pub fn check_params(&self, given: &BTreeMap<String, ParamValue>, base_dir: &Path) -> Result<Params, Vec<(String, String)>> {
        let specs = self.specs(given, base_dir).map_err(|e| vec![e])?;
        self.check_against(specs, given)
    }

    /// Checks `given` against `specs` (this node's list, from `specs`) and fills in defaults.
    pub fn check_against(&self, specs: &[ParamSpec], given: &BTreeMap<String, ParamValue>) -> Result<Params, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut out = BTreeMap::new();
        for (k, v) in given {
            match specs.iter().find(|p| p.name == k) {
                None => errors.push((
                    k.clone(),
                    format!(
                        "node type `{}` has no parameter `{k}` (it has: {})",
                        self.name,
                        specs.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
                    ),
                )),
                Some(spec) => match spec.check(v) {
                    Ok(v) => {
                        out.insert(k.clone(), v);
                    }
                    Err(e) => errors.push((k.clone(), e)),
                },
            }
        }
        for spec in specs {
            out.entry(spec.name.to_string()).or_insert_with(|| spec.default_value());
        }
        if errors.is_empty() {
            Ok(Params(out))
        } else {
            Err(errors)
        }
    }
}

/// The set of node types a graph may use.
pub struct Registry {
    types: Vec<NodeType>,
    locate_model: Option<ModelLocator>,
}

impl Registry {
    /// The built-in node types.
    pub fn builtin() -> Self {
        Self {
            types: crate::nodes::builtin_types(),
            locate_model: None,
        }
    }
    pub fn empty() -> Self {
        Self {
            types: Vec::new(),
            locate_model: None,
        }
    }
    /// How nodes find the model files they load (the models crate sets it; without one, nodes
    /// that can do without their model run without it).
    pub fn set_model_locator(&mut self, f: ModelLocator) {
        self.locate_model = Some(f);
    }
    pub fn model_locator(&self) -> Option<ModelLocator> {
        self.locate_model
    }
    pub fn add(&mut self, t: NodeType) {
        self.types.retain(|x| x.name != t.name);
        self.types.push(t);
    }
    pub fn get(&self, name: &str) -> Option<&NodeType> {
        self.types.iter().find(|t| t.name == name)
    }
    pub fn types(&self) -> &[NodeType] {
        &self.types
    }
    pub fn names(&self) -> Vec<&'static str> {
        self.types.iter().map(|t| t.name).collect()
    }
}

/// One MIDI message for the engine's device MIDI output, at engine sample time `sample_time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMidi {
    pub sample_time: u64,
    pub msg: [u8; 3],
    /// Generation of the schedule that sent it (its notes are ended when it is retired).
    pub gen: u64,
}

/// Where a processor puts what it emits: MIDI for downstream nodes, messages for the control side.
pub struct Emit<'a> {
    pub(crate) midi: &'a mut Vec<Event>,
    pub(crate) to_control: &'a mut rtrb::Producer<FromRt>,
    /// MIDI for the engine's device MIDI output (JACK `notes`), by engine sample time.
    pub(crate) device_midi: &'a mut Vec<DeviceMidi>,
    pub(crate) dropped: &'a mut u64,
    /// Frame offset of the current sub-block within the block (added to MIDI offsets).
    pub(crate) base_offset: u32,
    pub(crate) gen: u64,
    pub(crate) node: u32,
}

impl Emit<'_> {
    /// Generation of the schedule this node runs in (stamped on messages to the control side).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.gen
    }
    /// Sends MIDI, stamped `offset` frames into the current sub-block, to nodes connected to this
    /// node's MIDI output. A full buffer drops the event and counts it.
    #[inline]
    pub fn midi(&mut self, offset: u32, msg: [u8; 3]) {
        if self.midi.len() < self.midi.capacity() {
            self.midi.push(Event {
                offset: self.base_offset + offset,
                kind: crate::param::EventKind::Midi(msg),
            });
        } else {
            *self.dropped += 1;
        }
    }
    /// Sends a note (or any MIDI) both to MIDI-connected nodes and to the control side (MIDI out,
    /// OSC, event logs). `origin` is the engine sample time of the sound it describes (a note's
    /// estimated onset), for latency measurements; events for the outside carry it.
    #[inline]
    pub fn note(&mut self, offset: u32, msg: [u8; 3], origin: u64, sample_time: u64) {
        self.midi(offset, msg);
        if self.device_midi.len() < self.device_midi.capacity() {
            self.device_midi.push(DeviceMidi {
                sample_time: sample_time + offset as u64,
                msg,
                gen: self.gen,
            });
        } else {
            *self.dropped += 1;
        }
        self.control(FromRt::Midi {
            gen: self.gen,
            node: self.node,
            sample_time: sample_time + offset as u64,
            origin,
            msg,
        });
    }

    /// Sends a message to the control side. A full ring drops it and counts it.
    #[inline]
    pub fn control(&mut self, msg: FromRt) {
        if self.to_control.push(msg).is_err() {
            *self.dropped += 1;
        }
    }
}

/// Buffers and timing for one process call.
pub struct ProcessIo<'a, 'b> {
    /// Frames in this call (1..=MAX_BLOCK_FRAMES).
    pub frames: usize,
    /// Engine sample time of the first frame of this call.
    pub sample_time: u64,
    pub sample_rate: f32,
    /// Input channels of all input ports, in port order, each `frames` long.
    pub inputs: &'b [&'a [f32]],
    /// Output channels of all output ports, in port order, each `frames` long.
    pub outputs: &'b mut [&'a mut [f32]],
    pub emit: Emit<'b>,
}

/// Audio-thread half of a node. Implementations must not allocate, free, lock, block or log.
pub trait Processor: Send {
    /// Processes `io.frames` frames. Events for this node were applied just before this call
    /// (the engine splits blocks at event offsets, so events are sample-accurate).
    fn process(&mut self, io: &mut ProcessIo);

    /// Applies one event (a runtime parameter or MIDI), at the current position in time.
    fn event(&mut self, _kind: &crate::param::EventKind) {}
}
