//! `onnx`: any streaming ONNX model, described by its `manifest.toml` (docs/models.md). The
//! manifest names what each tensor is: the last `window` samples of an audio input port, the
//! value of a control input port, a parameter (declared in the manifest with its range, so it
//! appears in OSC and OSCQuery and can be MIDI-mapped), or a recurrent state paired with the
//! output that becomes it; outputs go to audio ports (`hop` samples a run) or control ports
//! (one value a run, held).
//!
//! Every `hop` samples the audio thread packs the inputs into one bridge job; the inference
//! worker runs the model with the states it keeps and returns the outputs; the audio thread
//! plays run k's outputs during hop k + 1 + `latency_frames` (+ the node's `extra_hops`), so the
//! node's declared latency is `(1 + latency_frames + extra_hops) * hop` samples: results are in
//! time while `(latency_frames + extra_hops) * hop` covers the engine's period and the run. A run not back in time plays silence on the audio
//! outputs and holds the control outputs (counted late); a run giving NaN or inf resets the
//! states and counts as failed. A model whose file is missing or damaged leaves the node silent
//! (logged; `check` says so); a manifest that is wrong, or whose tensors are not the model's,
//! refuses the patch with the manifest's file:line:col or the tensor's name and both shapes.
//! Spec and backend: control and worker threads; the processor: audio thread.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stagebox_engine::infer::{Bridge, InferBackend};
use stagebox_engine::intern::intern_specs;
use stagebox_engine::node::{BuildCtx, Built, NodeInfo, NodeType, Params, PortSpec, ProcessIo, Processor};
use stagebox_engine::param::{EventKind, ParamSpec, ParamValue};

use crate::stream_manifest::{Role, StreamManifest};
use crate::{find_model_dir, OrtModel};

const MODEL_PARAM: ParamSpec = ParamSpec::string(
    "model",
    "",
    "the model: a folder name in the models directory (STAGEBOX_MODELS, else models/), or a path to a folder holding manifest.toml (relative to the patch)",
);
const EXTRA_HOPS_PARAM: ParamSpec = ParamSpec::int(
    "extra_hops",
    0,
    64,
    0,
    "hops of latency added to the manifest's: results are in time while (latency_frames + extra_hops) * hop covers the engine's period",
);
const STATIC_PARAMS: &[ParamSpec] = &[MODEL_PARAM, EXTRA_HOPS_PARAM];
/// Where the manifest's parameters start in the node's list.
const FIRST_MODEL_PARAM: usize = STATIC_PARAMS.len();
/// Jobs in flight at most between the audio thread and the worker.
const JOBS: usize = 8;

/// The folder of model `name` (a path if it has a `/`, else a name in the models directory).
fn model_dir(name: &str, base_dir: &Path) -> Result<PathBuf, String> {
    if name.is_empty() {
        return Err("set `model` to a model's folder name or path".into());
    }
    if name.contains('/') {
        let p = PathBuf::from(name);
        return Ok(if p.is_absolute() { p } else { base_dir.join(p) });
    }
    find_model_dir(name).map_err(|e| e.to_string())
}

/// The manifest of the node's model, checked.
fn manifest_of(name: &str, base_dir: &Path) -> Result<StreamManifest, String> {
    let dir = model_dir(name, base_dir)?;
    StreamManifest::load(&dir).map_err(|e| format!("model `{name}`: {e}"))
}

/// The node's parameters: `model`, then the manifest's.
fn params_of(given: &BTreeMap<String, ParamValue>, base_dir: &Path) -> Result<&'static [ParamSpec], (String, String)> {
    let name = given.get("model").and_then(|v| v.as_str()).unwrap_or("");
    let m = manifest_of(name, base_dir).map_err(|e| ("model".to_string(), e))?;
    Ok(specs_of(&m))
}

/// The node's parameter list for manifest `m` (interned: the same list for the same manifest).
fn specs_of(m: &StreamManifest) -> &'static [ParamSpec] {
    let mut specs = STATIC_PARAMS.to_vec();
    specs.extend(m.params.iter().copied());
    intern_specs(specs)
}

/// Where each input tensor's values sit in a job, and each output's in a result.
#[derive(Clone)]
struct Layout {
    /// Per input tensor: its offset in the job (state inputs: none; the worker keeps them).
    input_at: Vec<Option<usize>>,
    job_len: usize,
    /// Per output tensor: its offset in the result (state outputs: none).
    output_at: Vec<Option<usize>>,
    result_len: usize,
}

impl Layout {
    fn new(m: &StreamManifest) -> Layout {
        let place = |list: &[crate::stream_manifest::Tensor], len: &mut usize| -> Vec<Option<usize>> {
            list.iter()
                .map(|t| {
                    (!matches!(t.role, Role::State { .. })).then(|| {
                        *len += t.values();
                        *len - t.values()
                    })
                })
                .collect()
        };
        let (mut job_len, mut result_len) = (0, 0);
        let input_at = place(&m.inputs, &mut job_len);
        let output_at = place(&m.outputs, &mut result_len);
        Layout {
            input_at,
            job_len,
            output_at,
            result_len,
        }
    }
}

/// The worker's side: the session, the states it carries between runs.
struct Backend {
    model: OrtModel,
    m: StreamManifest,
    layout: Layout,
    shapes: Vec<Vec<i64>>,
    states: Vec<Vec<f32>>,
    outs: Vec<Vec<f32>>,
}

impl Backend {
    fn new(model: OrtModel, m: StreamManifest) -> Backend {
        let states = m
            .inputs
            .iter()
            .map(|t| vec![0.0; if matches!(t.role, Role::State { .. }) { t.values() } else { 0 }])
            .collect();
        Backend {
            model,
            layout: Layout::new(&m),
            shapes: m.inputs.iter().map(|t| t.run_shape()).collect(),
            m,
            states,
            outs: Vec::new(),
        }
    }
}

impl InferBackend for Backend {
    fn infer(&mut self, _seq: u64, input: &[f32], output: &mut [f32]) -> Result<(), String> {
        let feed: Vec<(&[i64], &[f32])> = (0..self.m.inputs.len())
            .map(|k| {
                let data = match self.layout.input_at[k] {
                    Some(at) => &input[at..at + self.m.inputs[k].values()],
                    None => &self.states[k][..],
                };
                (&self.shapes[k][..], data)
            })
            .collect();
        self.model.run_many(&feed, &mut self.outs).map_err(|e| e.to_string())?;
        let good = self
            .outs
            .iter()
            .zip(&self.m.outputs)
            .all(|(o, t)| o.len() == t.values() && o.iter().all(|x| x.is_finite()));
        if !good {
            self.states.iter_mut().for_each(|s| s.fill(0.0));
            return Err("the model gave NaN, inf or a wrong length; its states start again from zeros".into());
        }
        for (k, at) in self.layout.output_at.iter().enumerate() {
            if let Some(at) = at {
                output[*at..*at + self.outs[k].len()].copy_from_slice(&self.outs[k]);
            }
        }
        for (k, t) in self.m.inputs.iter().enumerate() {
            if let Role::State { next: Some(o) } = t.role {
                self.states[k].copy_from_slice(&self.outs[o]);
            }
        }
        Ok(())
    }
}

/// Where a job's values come from.
enum Source {
    /// An audio input (its index among them): the last `window` samples.
    Audio(usize),
    /// Control input port (index among the node's input ports).
    Control(usize),
    /// Parameter (index in the node's parameter list).
    Param(usize),
}

/// Where a result's values go.
enum Sink {
    Audio { port: usize, at: usize },
    Control { port: usize, at: usize },
}

struct OnnxProc {
    bridge: Option<Bridge>,
    hop: usize,
    window: usize,
    latency_hops: u64,
    sources: Vec<Source>,
    sinks: Vec<Sink>,
    /// Per audio input: its port's index, and the last `window` samples (a ring).
    audio_ports: Vec<usize>,
    history: Vec<Vec<f32>>,
    hist_pos: usize,
    /// The current value of each input port (control ports read it).
    last_in: Vec<f32>,
    params: Vec<f32>,
    /// The result being played, and the position in the hop.
    playing: Vec<f32>,
    pos: usize,
    hops: u64,
    node: u32,
}

impl OnnxProc {
    /// The end of a hop: the inputs to the worker, the result due now fetched.
    fn hop_end(&mut self) {
        let Some(b) = &mut self.bridge else { return };
        if self.sources.is_empty() {
            // A model without inputs but its state (a generator): one value sends the run.
            b.push(0.0);
        }
        for s in &self.sources {
            match *s {
                Source::Audio(a) => {
                    let h = &self.history[a];
                    for i in 0..self.window {
                        b.push(h[(self.hist_pos + i) % self.window]);
                    }
                }
                Source::Control(p) => {
                    b.push(self.last_in[p]);
                }
                Source::Param(i) => {
                    b.push(self.params[i]);
                }
            }
        }
        self.hops += 1;
        let due = self.hops.checked_sub(1 + self.latency_hops);
        match due.and_then(|seq| b.result(seq)) {
            Some(r) => self.playing.copy_from_slice(r),
            None if due.is_some() => {
                // Late or failed: audio falls silent for the hop, control values hold.
                for s in &self.sinks {
                    if let Sink::Audio { at, .. } = *s {
                        self.playing[at..at + self.hop].fill(0.0);
                    }
                }
            }
            None => {}
        }
    }
}

impl Processor for OnnxProc {
    fn process(&mut self, io: &mut ProcessIo) {
        for i in 0..io.frames {
            for (p, x) in io.inputs.iter().enumerate() {
                let v = x[i];
                self.last_in[p] = if v.is_finite() { v } else { 0.0 };
            }
            for (a, &p) in self.audio_ports.iter().enumerate() {
                self.history[a][self.hist_pos] = self.last_in[p];
            }
            for s in &self.sinks {
                match *s {
                    Sink::Audio { port, at } => io.outputs[port][i] = self.playing[at + self.pos],
                    Sink::Control { port, at } => io.outputs[port][i] = self.playing[at],
                }
            }
            self.hist_pos = (self.hist_pos + 1) % self.window;
            self.pos += 1;
            if self.pos == self.hop {
                self.pos = 0;
                self.hop_end();
            }
        }
        if let Some(b) = &mut self.bridge {
            b.report(&mut io.emit, self.node, (48000 / io.frames.max(1)) as u32);
        }
    }

    fn event(&mut self, kind: &EventKind) {
        if let EventKind::Param { index, value } = *kind {
            if let Some(p) = (index as usize).checked_sub(FIRST_MODEL_PARAM).and_then(|i| self.params.get_mut(i)) {
                *p = value;
            }
        }
    }
}

/// The node's ports and the processor's routing, from the manifest.
struct Routing {
    info: NodeInfo,
    sources: Vec<Source>,
    sinks: Vec<Sink>,
    audio_ports: Vec<usize>,
}

fn routing(m: &StreamManifest, layout: &Layout, specs: &[ParamSpec], latency_hops: usize) -> Routing {
    let mut r = Routing {
        info: NodeInfo::default(),
        sources: Vec::new(),
        sinks: Vec::new(),
        audio_ports: Vec::new(),
    };
    for t in &m.inputs {
        let port = r.info.inputs.len();
        match &t.role {
            Role::Audio { port: name } => {
                r.sources.push(Source::Audio(r.audio_ports.len()));
                r.audio_ports.push(port);
                r.info.inputs.push(PortSpec::new(name.clone(), 1));
            }
            Role::Control { port: name } => {
                r.sources.push(Source::Control(port));
                r.info.inputs.push(PortSpec::control(name.clone()));
            }
            Role::Param { param } => {
                let i = specs.iter().position(|p| p.name == param).unwrap_or(0);
                r.sources.push(Source::Param(i.saturating_sub(FIRST_MODEL_PARAM)));
            }
            Role::State { .. } => {}
        }
    }
    for (t, at) in m.outputs.iter().zip(&layout.output_at) {
        let (port, at) = (r.info.outputs.len(), at.unwrap_or(0));
        match &t.role {
            Role::Audio { port: name } => {
                r.sinks.push(Sink::Audio { port, at });
                r.info.outputs.push(PortSpec::new(name.clone(), 1));
            }
            Role::Control { port: name } => {
                r.sinks.push(Sink::Control { port, at });
                r.info.outputs.push(PortSpec::control(name.clone()));
            }
            _ => {}
        }
    }
    r.info.latency_frames = ((1 + latency_hops) * m.hop) as u32;
    r
}

/// The session, loaded and checked against the manifest; `Ok(None)` when the model file is
/// missing or damaged (the node is then silent; `check` says so).
fn load_model(m: &StreamManifest, name: &str, dry_run: bool) -> Result<Option<OrtModel>, String> {
    if let Err(e) = m.manifest.verify() {
        if dry_run {
            return Err(format!("model `{name}`: {e} (running, the node is silent)"));
        }
        tracing::error!("onnx: model `{name}` not used ({e}); the node is silent");
        return Ok(None);
    }
    match OrtModel::load(m.manifest.clone()) {
        Ok(model) => Ok(Some(model)),
        Err(e @ crate::ModelError::Shape { .. }) | Err(e @ crate::ModelError::Ort { .. }) => Err(format!("{e} ({})", m.path.display())),
        Err(e) if dry_run => Err(format!("model `{name}`: {e} (running, the node is silent)")),
        Err(e) => {
            tracing::error!("onnx: model `{name}` not used ({e}); the node is silent");
            Ok(None)
        }
    }
}

fn build(p: &Params, ctx: &BuildCtx) -> Result<Built, String> {
    let name = p.str("model");
    let m = manifest_of(name, &ctx.base_dir)?;
    let engine_rate = ctx.sample_rate.round() as u32;
    if m.has_audio() && m.sample_rate != engine_rate {
        return Err(format!(
            "model `{name}` takes and gives audio at {} Hz; the engine runs at {engine_rate} Hz (run the engine at the model's rate)",
            m.sample_rate
        ));
    }
    let specs = specs_of(&m);
    let layout = Layout::new(&m);
    let latency_hops = m.latency_frames as usize + p.usize("extra_hops");
    let r = routing(&m, &layout, specs, latency_hops);
    let inputs = r.info.inputs.len();
    let model = load_model(&m, name, ctx.dry_run)?;
    let params = specs[FIRST_MODEL_PARAM..].iter().map(|s| param_value(p, s)).collect();
    let (job_len, result_len) = (layout.job_len.max(1), layout.result_len);
    let bridge = match model {
        Some(model) if !ctx.dry_run => Some(
            Bridge::new(
                Box::new(Backend::new(model, m.clone())),
                job_len,
                job_len,
                result_len,
                JOBS,
                ctx.offline,
            )
            .map_err(|e| format!("cannot start the inference worker: {e}"))?,
        ),
        _ => None,
    };
    Ok(Built {
        info: r.info,
        processor: Box::new(OnnxProc {
            bridge,
            hop: m.hop,
            window: m.window,
            latency_hops: latency_hops as u64,
            sources: r.sources,
            sinks: r.sinks,
            history: vec![vec![0.0; m.window]; r.audio_ports.len()],
            audio_ports: r.audio_ports,
            hist_pos: 0,
            last_in: vec![0.0; inputs],
            params,
            playing: vec![0.0; result_len],
            pos: 0,
            hops: 0,
            node: ctx.node_index,
        }),
    })
}

/// A parameter's value as the model reads it (a choice: its index).
fn param_value(p: &Params, spec: &ParamSpec) -> f32 {
    match spec.kind {
        stagebox_engine::ParamKind::Enum { options, .. } => options.iter().position(|o| *o == p.str(spec.name)).unwrap_or(0) as f32,
        _ => p.f32(spec.name),
    }
}

pub const ONNX: NodeType = NodeType {
    name: "onnx",
    doc: "Runs any streaming ONNX model described by its manifest.toml (docs/models.md): audio and control ports, parameters and recurrent states as the manifest names them, on the inference thread.",
    params: STATIC_PARAMS,
    params_of: Some(params_of),
    build,
};
