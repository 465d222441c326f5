//! `recorder`: writes its input to a WAV file. The processor (audio thread) only pushes samples
//! into a ring; a writer thread (spawned at build, control side) drains it into the file and
//! rewrites the WAV header every `flush_ms`, so the file is a valid WAV even if the process is
//! killed mid-take. An existing file is never overwritten: the take gets a numbered name.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::audio_file::{wav_spec, write_sample, WavFormat};
use crate::node::{BuildCtx, Built, NodeInfo, NodeType, Params, PortSpec, ProcessIo, Processor};
use crate::param::{EventKind, ParamSpec};

const FORMATS: &[&str] = &["int24", "int16", "float32"];
const RECORDER_PARAMS: &[ParamSpec] = &[
    ParamSpec::string(
        "path",
        "",
        "WAV file to write: in `run`, relative to the takes folder (--takes-dir); in `render`, to the patch; a numbered name if it exists",
    ),
    ParamSpec::int("channels", 1, 16, 2, "channels recorded"),
    ParamSpec::choice("format", FORMATS, 0, false, "sample format"),
    ParamSpec::boolean("record", true, true, "recording on (off pauses the take)"),
    ParamSpec::int("flush_ms", 20, 10000, 250, "how often the WAV header is brought up to date"),
    ParamSpec::float("buffer_secs", 1.0, 60.0, 8.0, "s", "ring between audio and writer thread"),
];

struct RecorderProc {
    ring: Option<rtrb::Producer<f32>>,
    record: bool,
    dropped: Arc<AtomicU64>,
    writer: Option<JoinHandle<()>>,
}

impl Processor for RecorderProc {
    fn event(&mut self, ev: &EventKind) {
        if let EventKind::Param { index: 3, value } = *ev {
            self.record = value >= 0.5;
        }
    }
    fn process(&mut self, io: &mut ProcessIo) {
        if !self.record {
            return;
        }
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        let ch = io.inputs.len();
        let need = io.frames * ch;
        match ring.write_chunk_uninit(need) {
            Ok(mut chunk) => {
                let (a, b) = chunk.as_mut_slices();
                let mut k = 0;
                for t in 0..io.frames {
                    for c in 0..ch {
                        let x = io.inputs[c][t];
                        if k < a.len() {
                            a[k].write(x);
                        } else {
                            b[k - a.len()].write(x);
                        }
                        k += 1;
                    }
                }
                // SAFETY: all `need` slots were written in the loop above.
                unsafe { chunk.commit_all() };
            }
            Err(_) => {
                self.dropped.fetch_add(need as u64, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for RecorderProc {
    // Runs where the schedule is freed (collector / control thread), never on the audio thread.
    fn drop(&mut self) {
        self.ring.take();
        let lost = self.dropped.load(Ordering::Relaxed);
        if lost > 0 {
            tracing::warn!("recorder: {lost} samples lost (writer fell behind; raise buffer_secs)");
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// `take.wav`, or `take-1.wav`, `take-2.wav`, ... when it exists.
pub fn free_take_path(path: &Path) -> PathBuf {
    if !path.exists() {
        return path.to_path_buf();
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("take").to_string();
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("wav").to_string();
    (1..)
        .map(|i| path.with_file_name(format!("{stem}-{i}.{ext}")))
        .find(|p| !p.exists())
        .unwrap()
}

fn writer_loop(
    mut ring: rtrb::Consumer<f32>,
    mut w: hound::WavWriter<std::io::BufWriter<std::fs::File>>,
    format: WavFormat,
    flush: Duration,
    path: PathBuf,
) {
    let mut last_flush = Instant::now();
    let mut dirty = false;
    loop {
        let abandoned = ring.is_abandoned();
        let n = ring.slots();
        if n > 0 {
            if let Ok(chunk) = ring.read_chunk(n) {
                let (a, b) = chunk.as_slices();
                for &x in a.iter().chain(b) {
                    if let Err(e) = write_sample(&mut w, x, format) {
                        tracing::error!("recorder {}: {e}", path.display());
                        return;
                    }
                }
                chunk.commit_all();
                dirty = true;
            }
        }
        if dirty && (abandoned || last_flush.elapsed() >= flush) {
            if let Err(e) = w.flush() {
                tracing::error!("recorder {}: {e}", path.display());
            }
            last_flush = Instant::now();
            dirty = false;
        }
        if abandoned && ring.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Err(e) = w.finalize() {
        tracing::error!("recorder {}: {e}", path.display());
    } else {
        tracing::info!("recorder: take written to {}", path.display());
    }
}

pub const RECORDER: NodeType = NodeType {
    name: "recorder",
    doc: "Records its input to a WAV file from a writer thread; the file stays valid if the engine is killed.",
    params: RECORDER_PARAMS,
    params_of: None,
    build: |p: &Params, ctx: &BuildCtx| {
        if p.str("path").is_empty() {
            return Err("`path` is required (the WAV file to write)".into());
        }
        let ch = p.usize("channels");
        let format = match p.str("format") {
            "int16" => WavFormat::Int16,
            "float32" => WavFormat::Float32,
            _ => WavFormat::Int24,
        };
        let path = free_take_path(&ctx.resolve_take(p.str("path"))?);
        let info = NodeInfo {
            inputs: vec![PortSpec::any("in", ch)],
            ..Default::default()
        };
        if ctx.dry_run {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if ctx.takes_dir.is_none() && !dir.is_dir() {
                return Err(format!("folder {} does not exist", dir.display()));
            }
            let processor = Box::new(RecorderProc {
                ring: None,
                record: false,
                dropped: Arc::new(AtomicU64::new(0)),
                writer: None,
            });
            return Ok(Built { info, processor });
        }
        if let (Some(dir), Some(parent)) = (&ctx.takes_dir, path.parent()) {
            if parent.starts_with(dir) {
                std::fs::create_dir_all(parent).map_err(|e| format!("cannot create the folder {}: {e}", parent.display()))?;
            }
        }
        let spec = wav_spec(ch, ctx.sample_rate as u32, format);
        let mut w = hound::WavWriter::create(&path, spec).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        w.flush().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let cap = (p.f32("buffer_secs") * ctx.sample_rate) as usize * ch;
        let (prod, cons) = rtrb::RingBuffer::new(cap.max(ctx.max_block * ch * 4));
        let flush = Duration::from_millis(p.usize("flush_ms") as u64);
        let thread_path = path.clone();
        let writer = std::thread::Builder::new()
            .name("stagebox-recorder".into())
            .spawn(move || writer_loop(cons, w, format, flush, thread_path))
            .map_err(|e| format!("cannot start writer thread: {e}"))?;
        tracing::info!("recorder: recording to {}", path.display());
        Ok(Built {
            info,
            processor: Box::new(RecorderProc {
                ring: Some(prod),
                record: p.bool("record"),
                dropped: Arc::new(AtomicU64::new(0)),
                writer: Some(writer),
            }),
        })
    },
};
