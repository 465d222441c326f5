//! Stagebox models (control and inference-worker threads; nothing here runs on the audio
//! thread): model manifests with sha256 checks, locating and loading ONNX Runtime (`ort` with
//! `load-dynamic`), and sessions with one intra-op thread, checked against their manifest and
//! warmed up before they go live.
//!
//! ONNX Runtime is found through `ORT_DYLIB_PATH`, then the project-local install made by
//! `scripts/setup_models.sh` (`.cache/onnxruntime/libonnxruntime.so`), else a clear error.

pub mod basic_pitch;
pub mod hcqt;
pub mod onnx_node;
pub mod separate;
pub mod stream_manifest;
pub mod timbre;
pub mod timbre_model;
pub mod tracker;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// A tensor a model takes or gives; `-1` is a free dimension (the batch).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<i64>,
    /// What the tensor means to the node that uses it (e.g. `note`, `onset`, `contour`).
    #[serde(default)]
    pub role: Option<String>,
}

/// `models/<name>/manifest.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub file: String,
    pub sha256: String,
    pub licence: String,
    pub source: String,
    pub sample_rate: u32,
    pub window: usize,
    pub hop: usize,
    pub latency_frames: u32,
    pub input: Vec<TensorSpec>,
    pub output: Vec<TensorSpec>,
    /// Other files the model needs (constants, tables), checked like the model file.
    #[serde(default)]
    pub data: Vec<DataFile>,
    /// The folder the manifest was read from.
    #[serde(skip)]
    pub dir: PathBuf,
}

/// A file beside the model, with its checksum.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    pub name: String,
    pub file: String,
    pub sha256: String,
    #[serde(default)]
    pub about: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: cannot read the manifest: {msg}")]
    Manifest { path: PathBuf, msg: String },
    #[error("model file {path} is missing ({hint})")]
    MissingFile { path: PathBuf, hint: String },
    #[error("model file {path} has sha256 {actual}, but its manifest says {expected}; the file is damaged or not the one the manifest describes")]
    Sha256 { path: PathBuf, expected: String, actual: String },
    #[error("ONNX Runtime was not found (looked in: {tried}); run scripts/setup_models.sh (the README's commands do), or set ORT_DYLIB_PATH to a libonnxruntime.so")]
    RuntimeNotFound { tried: String },
    #[error("ONNX Runtime at {path} could not be loaded: {msg}")]
    RuntimeLoad { path: PathBuf, msg: String },
    #[error("model {model}: tensor `{tensor}` has shape {actual:?}, the manifest says {expected:?}")]
    Shape {
        model: String,
        tensor: String,
        expected: Vec<i64>,
        actual: Vec<i64>,
    },
    #[error("model {model}: {msg}")]
    Ort { model: String, msg: String },
}

impl Manifest {
    /// Reads `dir/manifest.toml`.
    pub fn load(dir: &Path) -> Result<Manifest, ModelError> {
        let path = dir.join("manifest.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::Manifest {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        let mut m: Manifest = toml::from_str(&text).map_err(|e| ModelError::Manifest {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        m.dir = dir.to_path_buf();
        Ok(m)
    }

    /// Index of the output with `role`.
    pub fn output_index(&self, role: &str) -> Option<usize> {
        self.output.iter().position(|o| o.role.as_deref() == Some(role))
    }

    pub fn model_path(&self) -> PathBuf {
        self.dir.join(&self.file)
    }

    /// Checks the model file and its data files exist and have the manifest's sha256.
    pub fn verify(&self) -> Result<PathBuf, ModelError> {
        for d in &self.data {
            self.check_file(&self.dir.join(&d.file), &d.sha256)?;
        }
        let path = self.model_path();
        self.check_file(&path, &self.sha256)?;
        Ok(path)
    }

    /// The path of data file `name`, checked against its sha256.
    pub fn data_path(&self, name: &str) -> Result<PathBuf, ModelError> {
        let d = self.data.iter().find(|d| d.name == name).ok_or_else(|| ModelError::Manifest {
            path: self.dir.join("manifest.toml"),
            msg: format!("no data file named `{name}`"),
        })?;
        let path = self.dir.join(&d.file);
        self.check_file(&path, &d.sha256)?;
        Ok(path)
    }

    fn check_file(&self, path: &Path, sha256: &str) -> Result<(), ModelError> {
        let bytes = std::fs::read(path).map_err(|_| ModelError::MissingFile {
            path: path.to_path_buf(),
            hint: format!("see {}/manifest.toml for where it comes from", self.dir.display()),
        })?;
        let actual = hex(&Sha256::digest(&bytes));
        if actual != sha256.to_ascii_lowercase() {
            return Err(ModelError::Sha256 {
                path: path.to_path_buf(),
                expected: sha256.to_string(),
                actual,
            });
        }
        Ok(())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Folders searched for the project's files (`models/`, `.cache/`): `STAGEBOX_HOME`, the
/// current folder and its parents, and the folders above the running binary.
pub fn project_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Ok(h) = std::env::var("STAGEBOX_HOME") {
        roots.push(PathBuf::from(h));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots
}

/// Where ONNX Runtime's library is, or why not.
pub fn find_runtime() -> Result<PathBuf, ModelError> {
    let mut tried = Vec::new();
    if let Ok(p) = std::env::var("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        if p.exists() {
            return Ok(p);
        }
        tried.push(format!("ORT_DYLIB_PATH={}", p.display()));
    }
    for root in project_roots() {
        let p = root.join(".cache/onnxruntime/libonnxruntime.so");
        if p.exists() {
            return Ok(p);
        }
        if tried.len() < 6 {
            tried.push(p.display().to_string());
        }
    }
    Err(ModelError::RuntimeNotFound { tried: tried.join(", ") })
}

static RUNTIME: OnceLock<Result<(PathBuf, ort::environment::Environment), String>> = OnceLock::new();

/// Loads ONNX Runtime once per process (any thread; the first call does the work) and returns
/// its environment, which lives as long as the process.
pub fn init_runtime() -> Result<&'static ort::environment::Environment, ModelError> {
    let r = RUNTIME.get_or_init(|| {
        let path = find_runtime().map_err(|e| e.to_string())?;
        let env = ort::init_from(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .with_name("stagebox")
            .with_telemetry(false);
        match env.build() {
            Ok(env) => {
                tracing::info!("ONNX Runtime loaded from {}", path.display());
                Ok((path, env))
            }
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    });
    match r {
        Ok((_, env)) => Ok(env),
        Err(msg) if msg.contains("ONNX Runtime was not found") => Err(ModelError::RuntimeNotFound { tried: msg.clone() }),
        Err(msg) => Err(ModelError::RuntimeLoad {
            path: PathBuf::new(),
            msg: msg.clone(),
        }),
    }
}

/// A loaded model: one session with one intra-op thread, shapes checked, warmed up.
pub struct OrtModel {
    pub manifest: Manifest,
    session: ort::session::Session,
    input_shape: Vec<i64>,
}

impl OrtModel {
    /// Verifies the file, loads the session, checks tensors against the manifest, warms up.
    pub fn load(manifest: Manifest) -> Result<OrtModel, ModelError> {
        let path = manifest.verify()?;
        let env = init_runtime()?;
        let oerr = |e: ort::Error| ModelError::Ort {
            model: manifest.name.clone(),
            msg: e.to_string(),
        };
        let session = ort::session::Session::builder(env)
            .map_err(oerr)?
            .with_intra_threads(1)
            .map_err(|e| oerr(e.into()))?
            .with_inter_threads(1)
            .map_err(|e| oerr(e.into()))?
            .commit_from_file(&path)
            .map_err(oerr)?;
        let check = |spec: &[TensorSpec], outlets: &[ort::value::Outlet]| -> Result<(), ModelError> {
            if spec.len() != outlets.len() {
                return Err(ModelError::Ort {
                    model: manifest.name.clone(),
                    msg: format!("the model has {} tensors where the manifest lists {}", outlets.len(), spec.len()),
                });
            }
            for s in spec {
                let o = outlets.iter().find(|o| o.name() == s.name).ok_or_else(|| ModelError::Ort {
                    model: manifest.name.clone(),
                    msg: format!(
                        "no tensor `{}` (it has: {})",
                        s.name,
                        outlets.iter().map(|o| o.name()).collect::<Vec<_>>().join(", ")
                    ),
                })?;
                let actual: Vec<i64> = o.dtype().tensor_shape().map(|sh| sh.to_vec()).unwrap_or_default();
                if actual != s.shape {
                    return Err(ModelError::Shape {
                        model: manifest.name.clone(),
                        tensor: s.name.clone(),
                        expected: s.shape.clone(),
                        actual,
                    });
                }
            }
            Ok(())
        };
        check(&manifest.input, session.inputs())?;
        check(&manifest.output, session.outputs())?;
        let input_shape: Vec<i64> = manifest.input[0].shape.iter().map(|&d| if d < 0 { 1 } else { d }).collect();
        let mut m = OrtModel {
            manifest,
            session,
            input_shape,
        };
        // Warm up: the first run allocates and plans; do it before going live.
        let shapes: Vec<Vec<i64>> = m
            .manifest
            .input
            .iter()
            .map(|t| t.shape.iter().map(|&d| if d < 0 { 1 } else { d }).collect())
            .collect();
        let zeros: Vec<Vec<f32>> = shapes.iter().map(|s| vec![0.0; s.iter().product::<i64>() as usize]).collect();
        let inputs: Vec<(&[i64], &[f32])> = shapes.iter().map(Vec::as_slice).zip(zeros.iter().map(Vec::as_slice)).collect();
        let mut outs = Vec::new();
        m.run_many(&inputs, &mut outs)?;
        Ok(m)
    }

    /// Runs one window (the whole input tensor, batch 1). Fills `outputs` in manifest order,
    /// reusing their allocations. Worker thread.
    pub fn run(&mut self, input: &[f32], outputs: &mut Vec<Vec<f32>>) -> Result<(), ModelError> {
        let shape = self.input_shape.clone();
        self.run_shaped(&shape, input, outputs)
    }

    /// Runs the input as a tensor of `shape` (for models with free dimensions besides the
    /// batch). Worker thread.
    pub fn run_shaped(&mut self, shape: &[i64], input: &[f32], outputs: &mut Vec<Vec<f32>>) -> Result<(), ModelError> {
        self.run_many(&[(shape, input)], outputs)
    }

    /// Runs the model on its inputs, in manifest order, each with its shape (a recurrent model's
    /// state is one of them). Fills `outputs` in manifest order. Worker thread.
    pub fn run_many(&mut self, inputs: &[(&[i64], &[f32])], outputs: &mut Vec<Vec<f32>>) -> Result<(), ModelError> {
        let name = self.manifest.name.clone();
        let oerr = |e: ort::Error| ModelError::Ort {
            model: name.clone(),
            msg: e.to_string(),
        };
        let mut feed: Vec<(String, ort::session::SessionInputValue)> = Vec::with_capacity(inputs.len());
        for (spec, (shape, data)) in self.manifest.input.iter().zip(inputs) {
            let tensor = ort::value::Tensor::from_array((shape.to_vec(), data.to_vec())).map_err(oerr)?;
            feed.push((spec.name.clone(), tensor.into()));
        }
        let result = self.session.run(feed).map_err(oerr)?;
        outputs.resize_with(self.manifest.output.len(), Vec::new);
        for (k, spec) in self.manifest.output.iter().enumerate() {
            let v = result.get(&spec.name).ok_or_else(|| ModelError::Ort {
                model: name.clone(),
                msg: format!("no output `{}`", spec.name),
            })?;
            let (_, data) = v.try_extract_tensor::<f32>().map_err(oerr)?;
            outputs[k].clear();
            outputs[k].extend_from_slice(data);
        }
        Ok(())
    }
}

/// The manifest of a model shipped in `models/<name>`, found in `STAGEBOX_MODELS` (a folder of
/// model folders) when set, else under the project roots.
pub fn find_model(name: &str) -> Result<Manifest, ModelError> {
    Manifest::load(&find_model_dir(name)?)
}

/// The folder of model `name` (one holding `manifest.toml`): in `STAGEBOX_MODELS` (a folder of
/// model folders) when set, else in `models/` under the project roots.
pub fn find_model_dir(name: &str) -> Result<PathBuf, ModelError> {
    if let Ok(dir) = std::env::var("STAGEBOX_MODELS") {
        let d = PathBuf::from(dir).join(name);
        if d.join("manifest.toml").exists() {
            return Ok(d);
        }
        return Err(ModelError::MissingFile {
            path: d.join("manifest.toml"),
            hint: "STAGEBOX_MODELS names the folder of model folders".into(),
        });
    }
    for root in project_roots() {
        let dir = root.join("models").join(name);
        if dir.join("manifest.toml").exists() {
            return Ok(dir);
        }
    }
    Err(ModelError::MissingFile {
        path: PathBuf::from(format!("models/{name}/manifest.toml")),
        hint: "run from the project folder or set STAGEBOX_HOME".into(),
    })
}

/// Adds the model node types to a registry (control thread).
pub fn register(registry: &mut stagebox_engine::Registry) {
    registry.add(basic_pitch::BASIC_PITCH);
    registry.add(separate::SEPARATE);
    registry.add(timbre::TIMBRE);
    registry.add(onnx_node::ONNX);
    registry.set_model_locator(locate);
}

/// The engine's model locator: `data` of the model `model` (`""`: the model file), its
/// manifest found and the file's sha256 checked.
fn locate(model: &str, data: &str) -> Result<PathBuf, String> {
    let manifest = find_model(model).map_err(|e| e.to_string())?;
    if data.is_empty() {
        manifest.verify().map_err(|e| e.to_string())
    } else {
        manifest.data_path(data).map_err(|e| e.to_string())
    }
}
