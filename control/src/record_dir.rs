//! `stagebox render --record-dir DIR` (control thread): every `recorder` of the patch records from
//! the first sample into `DIR/<node id>.wav`; after the render each take is aligned with the
//! input (the latency of what reached the recorder removed) and made as long as the input. The
//! general way to render several files from one patch (stems, a dry and a wet mix).

use std::path::Path;

use stagebox_engine::audio_file;
use stagebox_engine::backend::offline::Rendered;
use stagebox_engine::{GraphDesc, ParamValue};

/// The graph with every recorder writing `DIR/<id>.wav`, recording from the start; and the ids.
pub fn prepare(graph: &GraphDesc, dir: &Path) -> anyhow::Result<(GraphDesc, Vec<String>)> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut g = graph.clone();
    let mut ids = Vec::new();
    for n in g.nodes.iter_mut().filter(|n| n.kind == "recorder") {
        let file = format!("{}.wav", n.id);
        // The take's name is asked for: an old one there is replaced, not numbered around.
        let _ = std::fs::remove_file(dir.join(&file));
        n.params.insert("path".into(), ParamValue::Str(file));
        n.params.insert("record".into(), ParamValue::Bool(true));
        ids.push(n.id.clone());
    }
    if ids.is_empty() {
        anyhow::bail!("--record-dir: the patch has no `recorder` node");
    }
    g.takes_dir = Some(dir.to_path_buf());
    Ok((g, ids))
}

/// Aligns each take with the input: its pre-roll cut, its length the input's.
pub fn finish(dir: &Path, ids: &[String], rendered: &Rendered) -> anyhow::Result<()> {
    for id in ids {
        let path = dir.join(format!("{id}.wav"));
        let lead = rendered.input_latency.iter().find(|(n, _)| n == id).map_or(0, |(_, l)| *l) as usize;
        let mut take = audio_file::read(&path).map_err(|e| anyhow::anyhow!("reading the take back: {e}"))?;
        let ch = take.channels.max(1);
        let frames = rendered.input_frames as usize;
        let start = (lead * ch).min(take.samples.len());
        let mut samples: Vec<f32> = take.samples[start..].to_vec();
        samples.resize(frames * ch, 0.0);
        take.samples = samples;
        let format = take.wav_format.unwrap_or(audio_file::WavFormat::Float32);
        audio_file::write_wav(&path, &take, format)?;
        eprintln!(
            "{}: {} frames, {} ch (pre-roll of {lead} frames removed)",
            path.display(),
            frames,
            ch
        );
    }
    Ok(())
}
