//! Stagebox patch files (control thread): TOML parsed through serde, checked against the node
//! registry, compiled into an engine schedule. Every error names file, line and column.
//!
//! ```toml
//! [engine]                 # optional
//! sample_rate = 48000      # live: asks the device for this rate; offline: the render rate
//! block_size = 128         # live: asks the device for this buffer size
//! fade_ms = 30             # crossfade when this patch replaces another
//!
//! [[node]]
//! id = "in"                # letters, digits, _ and -; addresses the node (OSC, CLI)
//! type = "input"
//! channels = 2             # every other key is a parameter of the node type
//!
//! [[connect]]
//! from = "in"              # node, or node.port ("mix.in2"); the port "midi" carries MIDI
//! to = "out"
//!
//! [midi]                   # reserved: MIDI mappings
//! [osc]                    # reserved: OSC settings
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use stagebox_engine::graph::{CompileMode, ErrorLoc, Schedule};
use stagebox_engine::{Connection, GraphDesc, NodeDesc, ParamValue, PortRef, Registry};
use toml::Spanned;

/// One error in a patch, at a place in its file.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
    /// The offending source line, for display.
    pub source_line: String,
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: error: {}", self.file.display(), self.line, self.col, self.message)
    }
}

impl PatchError {
    /// The error with the source line and a caret under the column, as compilers print them.
    pub fn pretty(&self) -> String {
        if self.source_line.is_empty() {
            return self.to_string();
        }
        let pad = " ".repeat(self.line.to_string().len());
        let caret = " ".repeat(self.col.saturating_sub(1));
        format!("{self}\n{pad} |\n{} | {}\n{pad} | {caret}^", self.line, self.source_line)
    }
}

/// All errors found in a patch (never empty).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchErrors(pub Vec<PatchError>);

impl fmt::Display for PatchErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PatchErrors {}

/// Engine settings a patch may ask for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineSettings {
    pub sample_rate: Option<u32>,
    pub block_size: Option<u32>,
    pub fade_ms: Option<f32>,
}

/// A parsed, schema-checked patch.
#[derive(Debug, Clone)]
pub struct Patch {
    pub path: PathBuf,
    pub graph: GraphDesc,
    pub engine: EngineSettings,
    /// Raw `[midi]` and `[osc]` tables, kept for the control layer.
    pub midi: Option<toml::Value>,
    pub osc: Option<toml::Value>,
    src: String,
    node_spans: Vec<Range<usize>>,
    param_spans: Vec<BTreeMap<String, Range<usize>>>,
    connect_spans: Vec<Range<usize>>,
    connect_to_spans: Vec<Range<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPatch {
    #[serde(default)]
    engine: Option<RawEngine>,
    #[serde(default)]
    node: Vec<Spanned<BTreeMap<String, Spanned<toml::Value>>>>,
    #[serde(default)]
    connect: Vec<Spanned<RawConnect>>,
    #[serde(default)]
    midi: Option<toml::Value>,
    #[serde(default)]
    osc: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    sample_rate: Option<Spanned<u32>>,
    block_size: Option<Spanned<u32>>,
    fade_ms: Option<Spanned<f32>>,
    #[allow(dead_code)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnect {
    from: Spanned<String>,
    to: Spanned<String>,
}

struct Ctx<'a> {
    file: &'a Path,
    src: &'a str,
    errors: Vec<PatchError>,
}

impl Ctx<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.push(error_at(self.file, self.src, span.start, message.into()));
    }
}

/// The largest patch file read: patches are a few kilobytes.
pub const MAX_PATCH_BYTES: u64 = 1 << 20;

/// The folder a patch's relative paths resolve against: the patch file's.
fn base_dir_of(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A patch file's text: a regular file only (opened without blocking, so a FIFO or a device
/// cannot stall the reader), at most `MAX_PATCH_BYTES`, UTF-8. Errors say what is wrong
/// without quoting the file.
pub fn read_source(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "cannot read the patch: no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => "cannot read the patch: permission denied".to_string(),
            _ => "cannot read the patch".to_string(),
        })?;
    let meta = file.metadata().map_err(|_| "cannot read the patch".to_string())?;
    if !meta.is_file() {
        return Err("not a patch file (a folder, a device or a FIFO, not a regular file)".into());
    }
    if meta.len() > MAX_PATCH_BYTES {
        return Err(format!(
            "the file is {} bytes, over the {} a patch may be",
            meta.len(),
            MAX_PATCH_BYTES
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_PATCH_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| "cannot read the patch".to_string())?;
    if bytes.len() as u64 > MAX_PATCH_BYTES {
        return Err(format!("the file is over the {MAX_PATCH_BYTES} bytes a patch may be"));
    }
    String::from_utf8(bytes).map_err(|_| "not a patch file (not UTF-8 text)".to_string())
}

/// The 1-based line of byte `offset` in `src`.
fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].matches('\n').count() + 1
}

fn error_at(file: &Path, src: &str, offset: usize, message: String) -> PatchError {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = line_of(src, offset);
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = src[line_start..offset].chars().count() + 1;
    let source_line = src[line_start..].lines().next().unwrap_or("").to_string();
    PatchError {
        file: file.to_path_buf(),
        line,
        col,
        message,
        source_line,
    }
}

impl Patch {
    /// Reads and checks a patch file.
    pub fn load(path: &Path, registry: &Registry) -> Result<Patch, PatchErrors> {
        let src = read_source(path).map_err(|message| {
            PatchErrors(vec![PatchError {
                file: path.to_path_buf(),
                line: 1,
                col: 1,
                message,
                source_line: String::new(),
            }])
        })?;
        Self::parse(&src, path, registry)
    }

    /// Parses and checks patch source; `path` names it in errors and anchors relative paths.
    pub fn parse(src: &str, path: &Path, registry: &Registry) -> Result<Patch, PatchErrors> {
        let mut cx = Ctx {
            file: path,
            src,
            errors: Vec::new(),
        };
        let raw: RawPatch = match toml::from_str(src) {
            Ok(r) => r,
            Err(e) => {
                let at = e.span().map(|s| s.start).unwrap_or(0);
                let msg = e.message().trim().to_string();
                return Err(PatchErrors(vec![error_at(path, src, at, msg)]));
            }
        };
        let mut engine = EngineSettings::default();
        if let Some(e) = raw.engine {
            if let Some(sr) = e.sample_rate {
                if !(8000..=384000).contains(sr.get_ref()) {
                    cx.err(sr.span(), format!("sample_rate = {} is out of range 8000..=384000", sr.get_ref()));
                }
                engine.sample_rate = Some(*sr.get_ref());
            }
            if let Some(bs) = e.block_size {
                if !(1..=8192).contains(bs.get_ref()) {
                    cx.err(bs.span(), format!("block_size = {} is out of range 1..=8192", bs.get_ref()));
                }
                engine.block_size = Some(*bs.get_ref());
            }
            if let Some(f) = e.fade_ms {
                if !(0.0..=10000.0).contains(f.get_ref()) {
                    cx.err(f.span(), format!("fade_ms = {} is out of range 0..=10000", f.get_ref()));
                }
                engine.fade_ms = Some(*f.get_ref());
            }
        }
        let mut nodes = Vec::new();
        let mut node_spans = Vec::new();
        let mut param_spans = Vec::new();
        let mut id_lines: BTreeMap<String, usize> = BTreeMap::new();
        for table in raw.node {
            let span = table.span();
            let mut t = table.into_inner();
            let id_span = t.get("id").map(|v| v.span());
            let id = take_string(&mut cx, &mut t, "id", span.clone());
            if let (Some(id), Some(at)) = (&id, id_span) {
                match id_lines.get(id) {
                    Some(first) => cx.err(at, format!("node id `{id}` is used twice (first on line {first})")),
                    None => {
                        id_lines.insert(id.clone(), line_of(src, at.start));
                    }
                }
            }
            let kind_span = t.get("type").map(|v| v.span()).unwrap_or(span.clone());
            let kind = take_string(&mut cx, &mut t, "type", span.clone());
            let (Some(id), Some(kind)) = (id, kind) else { continue };
            let mut params = BTreeMap::new();
            let mut spans = BTreeMap::new();
            for (k, v) in t {
                let vspan = v.span();
                let pv = match v.into_inner() {
                    toml::Value::Integer(i) => ParamValue::Int(i),
                    toml::Value::Float(f) => ParamValue::Float(f),
                    toml::Value::Boolean(b) => ParamValue::Bool(b),
                    toml::Value::String(s) => ParamValue::Str(s),
                    other => {
                        cx.err(
                            vspan,
                            format!("`{k}` must be a number, boolean or string, not {}", other.type_str()),
                        );
                        continue;
                    }
                };
                params.insert(k.clone(), pv);
                spans.insert(k, vspan);
            }
            // Check type and parameters now, with exact spans.
            match registry.get(&kind) {
                None => cx.err(
                    kind_span.clone(),
                    format!("unknown node type `{kind}` (known types: {})", registry.names().join(", ")),
                ),
                Some(nt) => {
                    if let Err(errs) = nt.check_params(&params, &base_dir_of(path)) {
                        for (k, msg) in errs {
                            cx.err(spans.get(&k).cloned().unwrap_or(span.clone()), msg);
                        }
                    }
                }
            }
            nodes.push(NodeDesc { id, kind, params });
            node_spans.push(kind_span);
            param_spans.push(spans);
        }
        let mut connections = Vec::new();
        let mut connect_spans = Vec::new();
        let mut connect_to_spans = Vec::new();
        for c in raw.connect {
            let c = c.into_inner();
            let span = c.from.span();
            connect_to_spans.push(c.to.span());
            for (what, s) in [(&c.from, "from"), (&c.to, "to")] {
                let name = PortRef::parse(what.get_ref()).node;
                if !nodes.iter().any(|n| n.id == name) {
                    cx.err(what.span(), format!("`{s}` names node `{name}`, which this patch does not have"));
                }
            }
            connections.push(Connection {
                from: PortRef::parse(c.from.get_ref()),
                to: PortRef::parse(c.to.get_ref()),
            });
            connect_spans.push(span);
        }
        if nodes.is_empty() && cx.errors.is_empty() {
            cx.err(0..0, "the patch has no [[node]]");
        }
        if !cx.errors.is_empty() {
            return Err(PatchErrors(cx.errors));
        }
        let base_dir = base_dir_of(path);
        Ok(Patch {
            path: path.to_path_buf(),
            graph: GraphDesc {
                nodes,
                connections,
                base_dir,
                takes_dir: None,
            },
            engine,
            midi: raw.midi,
            osc: raw.osc,
            src: src.to_string(),
            node_spans,
            param_spans,
            connect_spans,
            connect_to_spans,
        })
    }

    /// Builds and compiles the patch for an engine at `sample_rate` (control thread).
    pub fn compile(&self, registry: &Registry, sample_rate: f32) -> Result<Schedule, PatchErrors> {
        self.compile_with(registry, sample_rate, false)
    }

    /// Full validation without side effects (no files created, no threads started).
    pub fn check(&self, registry: &Registry, sample_rate: f32) -> Result<Schedule, PatchErrors> {
        self.compile_with(registry, sample_rate, true)
    }

    fn compile_with(&self, registry: &Registry, sample_rate: f32, dry_run: bool) -> Result<Schedule, PatchErrors> {
        let mode = if dry_run { CompileMode::DryRun } else { CompileMode::Live };
        Schedule::compile_with(&self.graph, registry, sample_rate, mode)
            .map_err(|errs| PatchErrors(errs.into_iter().map(|e| self.locate(e.loc, e.message)).collect()))
    }

    /// Turns an engine error location into file:line:col.
    pub fn locate(&self, loc: ErrorLoc, message: String) -> PatchError {
        let span = match &loc {
            ErrorLoc::Graph => 0..0,
            ErrorLoc::Node(i) => self.node_spans.get(*i).cloned().unwrap_or(0..0),
            ErrorLoc::Param(i, k) => self
                .param_spans
                .get(*i)
                .and_then(|m| m.get(k))
                .cloned()
                .or_else(|| self.node_spans.get(*i).cloned())
                .unwrap_or(0..0),
            ErrorLoc::Connection(i) => self.connect_spans.get(*i).cloned().unwrap_or(0..0),
            ErrorLoc::ConnectionTo(i) => self.connect_to_spans.get(*i).cloned().unwrap_or(0..0),
        };
        error_at(&self.path, &self.src, span.start, message)
    }
}

fn take_string(cx: &mut Ctx, t: &mut BTreeMap<String, Spanned<toml::Value>>, key: &str, table_span: Range<usize>) -> Option<String> {
    match t.remove(key) {
        None => {
            cx.err(table_span, format!("this [[node]] has no `{key}`"));
            None
        }
        Some(v) => {
            let span = v.span();
            match v.into_inner() {
                toml::Value::String(s) => Some(s),
                other => {
                    cx.err(span, format!("`{key}` must be a string, not {}", other.type_str()));
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(src: &str) -> Vec<PatchError> {
        Patch::parse(src, Path::new("p.toml"), &Registry::builtin())
            .expect_err("should fail")
            .0
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let e = errs("[[node]]\nid = \"a\"\ntype = \"gain\"\ngain_db = \n");
        assert_eq!((e[0].line, e[0].col), (4, 11), "{}", e[0]);
        assert!(e[0].to_string().starts_with("p.toml:4:11: error:"));
    }

    #[test]
    fn unknown_sections_and_missing_keys_are_reported() {
        let e = errs("[nodes]\nx = 1\n");
        assert!(e[0].message.contains("unknown field `nodes`"), "{}", e[0]);
        let e = errs("[[node]]\ntype = \"gain\"\n");
        assert!(e[0].message.contains("has no `id`"), "{}", e[0]);
        let e = errs("[[node]]\nid = 3\ntype = \"gain\"\n");
        assert_eq!((e[0].line, e[0].col), (2, 6));
        assert!(e[0].message.contains("`id` must be a string"));
    }

    #[test]
    fn every_error_in_a_patch_is_reported_at_once() {
        let e = errs("[[node]]\nid = \"a\"\ntype = \"gain\"\ngain_db = 99\npan = \"left\"\n\n[[node]]\nid = \"b\"\ntype = \"nope\"\n");
        let at: Vec<(usize, usize)> = e.iter().map(|x| (x.line, x.col)).collect();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(at.contains(&(4, 11)) && at.contains(&(5, 7)) && at.contains(&(9, 8)), "{at:?}");
    }

    #[test]
    fn pretty_errors_point_at_the_column() {
        let e = errs("[[node]]\nid = \"a\"\ntype = \"gian\"\n");
        let p = e[0].pretty();
        assert!(p.contains("3 | type = \"gian\""), "{p}");
        assert!(p.ends_with("|        ^"), "{p}");
    }

    #[test]
    fn engine_settings_and_reserved_tables_parse() {
        let p = Patch::parse(
            "[engine]\nsample_rate = 44100\nblock_size = 64\n[[node]]\nid = \"t\"\ntype = \"osc\"\n[midi]\nlearn = true\n",
            Path::new("dir/p.toml"),
            &Registry::builtin(),
        )
        .unwrap();
        assert_eq!(p.engine.sample_rate, Some(44100));
        assert_eq!(p.engine.block_size, Some(64));
        assert!(p.midi.is_some());
        assert_eq!(p.graph.base_dir, PathBuf::from("dir"));
    }
}
