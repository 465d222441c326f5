//! The manifest of a user's streaming model, as the `onnx` node reads it (control thread):
//! `manifest.toml` in the model's folder, with what the node needs beyond the shipped models'
//! manifests: what each tensor is to the node (an audio or control port, a parameter, a
//! recurrent state and the output that becomes it), and the parameters the model takes, with
//! ranges (they appear in OSC and OSCQuery and can be MIDI-mapped). Every error names the
//! manifest's file:line:col. The format is documented in docs/models.md.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use stagebox_engine::intern::{intern_options, intern_str};
use stagebox_engine::param::{ParamKind, ParamSpec};
use toml::Spanned;

use crate::{DataFile, Manifest, TensorSpec};

/// Largest window or hop, in samples.
pub const MAX_WINDOW: usize = 1 << 16;
/// Largest control or parameter tensor (values).
const MAX_TENSOR: i64 = 1 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    file: String,
    sha256: String,
    licence: String,
    source: String,
    sample_rate: u32,
    window: Spanned<usize>,
    hop: Spanned<usize>,
    latency_frames: u32,
    input: Vec<Spanned<RawTensor>>,
    output: Vec<Spanned<RawTensor>>,
    #[serde(default)]
    param: Vec<Spanned<RawParam>>,
    #[serde(default)]
    data: Vec<DataFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTensor {
    name: String,
    shape: Vec<i64>,
    role: String,
    #[serde(default)]
    port: Option<String>,
    #[serde(default)]
    param: Option<String>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    name: String,
    #[serde(default)]
    min: f64,
    #[serde(default = "one")]
    max: f64,
    #[serde(default)]
    default: Option<toml::Value>,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    doc: String,
    #[serde(default)]
    choices: Vec<String>,
}

fn one() -> f64 {
    1.0
}

/// What one tensor is to the node.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    /// Input: the last `window` samples of audio port `port`. Output: `hop` samples for audio
    /// port `port`.
    Audio { port: String },
    /// Input: the value of control port `port` at the end of the hop. Output: one value, held
    /// on control port `port` for the hop.
    Control { port: String },
    /// Input: the current value of parameter `param` (a choice's index).
    Param { param: String },
    /// Input: the recurrent state, zeros at first, then output `next` of the previous run.
    /// Output: the next run's state.
    State { next: Option<usize> },
}

/// One tensor: its name, shape (`-1` is a batch of 1), values and role.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub role: Role,
}

impl Tensor {
    /// Values in the tensor (a `-1` dimension counts 1; never 0: shapes are checked).
    pub fn values(&self) -> usize {
        self.shape.iter().map(|&d| d.max(1)).product::<i64>() as usize
    }
    /// The shape with `-1` replaced by 1.
    pub fn run_shape(&self) -> Vec<i64> {
        self.shape.iter().map(|&d| if d < 0 { 1 } else { d }).collect()
    }
}

/// A checked streaming-model manifest.
#[derive(Debug, Clone)]
pub struct StreamManifest {
    pub path: PathBuf,
    pub sample_rate: u32,
    pub window: usize,
    pub hop: usize,
    /// Hops the worker is given beyond the hop itself: the node's latency is `(1 + this) * hop`.
    pub latency_frames: u32,
    pub inputs: Vec<Tensor>,
    pub outputs: Vec<Tensor>,
    /// The model's parameters (interned: they go into the node's parameter list).
    pub params: Vec<ParamSpec>,
    /// The same, as the shipped models' manifest (for loading and checking the ONNX file).
    pub manifest: Manifest,
}

/// `path:line:col: msg` for the byte offset `at` of `text`.
fn located(path: &Path, text: &str, at: usize, msg: &str) -> String {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{}:{line}:{col}: {msg}", path.display())
}

impl StreamManifest {
    /// Reads and checks `dir/manifest.toml`.
    pub fn load(dir: &Path) -> Result<StreamManifest, String> {
        let path = dir.join("manifest.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: cannot read it: {e}", path.display()))?;
        Self::parse(&text, &path)
    }

    /// Checks the manifest text `text` read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<StreamManifest, String> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            located(path, text, at, e.message())
        })?;
        let err = |at: usize, msg: String| located(path, text, at, &msg);
        let (window, hop) = (*raw.window.get_ref(), *raw.hop.get_ref());
        if hop == 0 || hop > MAX_WINDOW {
            return Err(err(raw.hop.span().start, format!("`hop` = {hop} must be 1..={MAX_WINDOW} samples")));
        }
        if window < hop || window > MAX_WINDOW {
            return Err(err(
                raw.window.span().start,
                format!("`window` = {window} must be at least `hop` ({hop}) and at most {MAX_WINDOW} samples"),
            ));
        }
        let params = raw
            .param
            .iter()
            .map(|p| param_spec(p.get_ref()).map_err(|m| err(p.span().start, m)))
            .collect::<Result<Vec<_>, _>>()?;
        let inputs = raw
            .input
            .iter()
            .map(|t| input_tensor(t.get_ref(), window, &params, &raw.output).map_err(|m| err(t.span().start, m)))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = raw
            .output
            .iter()
            .map(|t| output_tensor(t.get_ref(), hop, &raw.input).map_err(|m| err(t.span().start, m)))
            .collect::<Result<Vec<_>, _>>()?;
        let whole = |m: String| err(0, m);
        check_ports(&inputs, &outputs).map_err(whole)?;
        let manifest = Manifest {
            name: raw.name,
            file: raw.file,
            sha256: raw.sha256,
            licence: raw.licence,
            source: raw.source,
            sample_rate: raw.sample_rate,
            window,
            hop,
            latency_frames: raw.latency_frames,
            input: inputs.iter().map(spec_of).collect(),
            output: outputs.iter().map(spec_of).collect(),
            data: raw.data,
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        Ok(StreamManifest {
            path: path.to_path_buf(),
            sample_rate: raw.sample_rate,
            window,
            hop,
            latency_frames: raw.latency_frames,
            inputs,
            outputs,
            params,
            manifest,
        })
    }

    /// Whether any port is audio (then the engine must run at the model's rate).
    pub fn has_audio(&self) -> bool {
        self.inputs
            .iter()
            .chain(&self.outputs)
            .any(|t| matches!(t.role, Role::Audio { .. }))
    }
}

fn spec_of(t: &Tensor) -> TensorSpec {
    TensorSpec {
        name: t.name.clone(),
        shape: t.shape.clone(),
        role: None,
    }
}

fn check_shape(t: &RawTensor) -> Result<(), String> {
    if t.shape.is_empty() || t.shape.iter().any(|&d| d == 0 || d < -1) || t.shape.iter().filter(|&&d| d == -1).count() > 1 {
        return Err(format!(
            "tensor `{}` has shape {:?}: give its dimensions (at least one; each positive, or -1 once for the batch)",
            t.name, t.shape
        ));
    }
    let n: i64 = t.shape.iter().map(|&d| d.max(1)).product();
    if n > MAX_TENSOR {
        return Err(format!("tensor `{}` has {n} values; at most {MAX_TENSOR}", t.name));
    }
    Ok(())
}

fn tensor(t: &RawTensor, role: Role) -> Tensor {
    Tensor {
        name: t.name.clone(),
        shape: t.shape.clone(),
        role,
    }
}

/// Checks that tensor `t` holds `want` values for its role.
fn expect_len(t: &RawTensor, want: usize, why: &str) -> Result<(), String> {
    let n = t.shape.iter().map(|&d| d.max(1)).product::<i64>() as usize;
    if n != want {
        return Err(format!(
            "tensor `{}` ({}) has {n} values; it must have {want} ({why})",
            t.name, t.role
        ));
    }
    Ok(())
}

fn input_tensor(t: &RawTensor, window: usize, params: &[ParamSpec], outputs: &[Spanned<RawTensor>]) -> Result<Tensor, String> {
    check_shape(t)?;
    let port = || {
        t.port
            .clone()
            .unwrap_or_else(|| if t.role == "audio" { "in".into() } else { t.name.clone() })
    };
    match t.role.as_str() {
        "audio" => {
            expect_len(t, window, "`window` samples")?;
            Ok(tensor(t, Role::Audio { port: port() }))
        }
        "control" => {
            expect_len(t, 1, "a control port's value")?;
            Ok(tensor(t, Role::Control { port: port() }))
        }
        "param" => {
            expect_len(t, 1, "a parameter's value")?;
            let param = t.param.clone().unwrap_or_else(|| t.name.clone());
            if !params.iter().any(|p| p.name == param) {
                return Err(format!(
                    "tensor `{}` reads parameter `{param}`, which no [[param]] declares",
                    t.name
                ));
            }
            Ok(tensor(t, Role::Param { param }))
        }
        "state" => {
            let next = t
                .next
                .as_deref()
                .ok_or_else(|| format!("state tensor `{}` needs `next`: the output that becomes it on the next run", t.name))?;
            let k = outputs
                .iter()
                .position(|o| o.get_ref().name == next)
                .ok_or_else(|| format!("state tensor `{}`: `next` = \"{next}\" is not an output of this manifest", t.name))?;
            let o = outputs[k].get_ref();
            if o.role != "state" || o.shape != t.shape {
                return Err(format!(
                    "state tensor `{}` (shape {:?}) pairs with output `{next}`, which must have role \"state\" and the same shape (it has role \"{}\", shape {:?})",
                    t.name, t.shape, o.role, o.shape
                ));
            }
            Ok(tensor(t, Role::State { next: Some(k) }))
        }
        other => Err(format!(
            "input `{}` has role \"{other}\"; an input's role is \"audio\", \"control\", \"param\" or \"state\"",
            t.name
        )),
    }
}

fn output_tensor(t: &RawTensor, hop: usize, inputs: &[Spanned<RawTensor>]) -> Result<Tensor, String> {
    check_shape(t)?;
    let port = || {
        t.port
            .clone()
            .unwrap_or_else(|| if t.role == "audio" { "out".into() } else { t.name.clone() })
    };
    match t.role.as_str() {
        "audio" => {
            expect_len(t, hop, "`hop` samples")?;
            Ok(tensor(t, Role::Audio { port: port() }))
        }
        "control" => {
            expect_len(t, 1, "a control port's value")?;
            Ok(tensor(t, Role::Control { port: port() }))
        }
        "state" => {
            if !inputs.iter().any(|i| i.get_ref().next.as_deref() == Some(t.name.as_str())) {
                return Err(format!("state output `{}` is no state input's `next`", t.name));
            }
            Ok(tensor(t, Role::State { next: None }))
        }
        other => Err(format!(
            "output `{}` has role \"{other}\"; an output's role is \"audio\", \"control\" or \"state\"",
            t.name
        )),
    }
}

/// Port names are valid and distinct on each side, and the model gives something to hear or use.
fn check_ports(inputs: &[Tensor], outputs: &[Tensor]) -> Result<(), String> {
    for (side, list) in [("input", inputs), ("output", outputs)] {
        let mut seen: Vec<&str> = Vec::new();
        for t in list {
            let (Role::Audio { port } | Role::Control { port }) = &t.role else {
                continue;
            };
            if !valid_name(port) || port == "midi" {
                return Err(format!(
                    "{side} `{}`: port name `{port}` must start with a letter and hold only letters, digits, `_` and `-` (and not be `midi`)",
                    t.name
                ));
            }
            if seen.contains(&port.as_str()) {
                return Err(format!("two {side}s use port `{port}`"));
            }
            seen.push(port);
        }
    }
    if !outputs.iter().any(|t| matches!(t.role, Role::Audio { .. } | Role::Control { .. })) {
        return Err("the model has no audio or control output: nothing would come out of the node".into());
    }
    Ok(())
}

fn valid_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A `[[param]]` as the node's parameter (runtime: it can change while the node runs).
fn param_spec(p: &RawParam) -> Result<ParamSpec, String> {
    if !valid_name(&p.name) || p.name == "model" || p.name == "extra_hops" {
        return Err(format!(
            "parameter name `{}` must start with a letter and hold only letters, digits, `_` and `-` (and not be `model` or `extra_hops`: the node's own)",
            p.name
        ));
    }
    let name = intern_str(&p.name);
    let doc = intern_str(&p.doc);
    if !p.choices.is_empty() {
        let options: Vec<&str> = p.choices.iter().map(String::as_str).collect();
        let default = match &p.default {
            None => 0,
            Some(toml::Value::String(s)) => options
                .iter()
                .position(|o| o == s)
                .ok_or_else(|| format!("parameter `{}`: default \"{s}\" is not one of its choices {options:?}", p.name))?,
            Some(v) => {
                return Err(format!(
                    "parameter `{}` has choices: its default is one of them (a string), not {v}",
                    p.name
                ))
            }
        };
        return Ok(ParamSpec::choice(name, intern_options(&options), default, true, doc));
    }
    let default = match &p.default {
        None => p.min,
        Some(toml::Value::Float(f)) => *f,
        Some(toml::Value::Integer(i)) => *i as f64,
        Some(v) => return Err(format!("parameter `{}`: default must be a number, not {v}", p.name)),
    };
    if !(p.min.is_finite() && p.max.is_finite() && p.min < p.max) {
        return Err(format!("parameter `{}`: `min` ({}) must be below `max` ({})", p.name, p.min, p.max));
    }
    if !(p.min..=p.max).contains(&default) {
        return Err(format!(
            "parameter `{}`: default {default} is outside {}..={}",
            p.name, p.min, p.max
        ));
    }
    let mut spec = ParamSpec::float(name, p.min as f32, p.max as f32, default as f32, intern_str(&p.unit), doc);
    if let ParamKind::Float { smoothed, .. } = &mut spec.kind {
        *smoothed = false; // read once a hop by the model
    }
    Ok(spec)
}
