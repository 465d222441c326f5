//! `stagebox render` (control thread; the offline backend runs the engine on this thread).

use std::path::PathBuf;
use std::process::ExitCode;

use stagebox_engine::audio_file::{self, WavFormat};
use stagebox_engine::backend::offline::{self, RenderOptions};

#[derive(clap::Args)]
pub struct RenderArgs {
    /// Patch to render.
    #[arg(long)]
    pub patch: PathBuf,
    /// Input audio (WAV, FLAC, MP3, OGG) fed to the patch's `input` nodes.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Output WAV file.
    #[arg(long)]
    pub output: PathBuf,
    /// A Standard MIDI File played into the patch's `midi_in` nodes, at each message's exact
    /// sample (as a keyboard on the MIDI input); without --input the render lasts as long as the
    /// file, plus --tail.
    #[arg(long)]
    pub midi_in: Option<PathBuf>,
    /// Frames per process call.
    #[arg(long, default_value_t = 512)]
    pub block_size: usize,
    /// Engine sample rate (default: the patch's, else the input's, else 48000); input is resampled.
    #[arg(long)]
    pub sample_rate: Option<u32>,
    /// Length to render without input (or cut the input to), in seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Extra seconds rendered after the input ends (reverb tails, releases).
    #[arg(long, default_value_t = 0.0)]
    pub tail: f64,
    /// Output sample format (default: the input WAV's, else float32).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Keep the graph's latency at the start instead of removing it.
    #[arg(long)]
    pub no_latency_compensation: bool,
    /// Write the notes the graph emitted as a Standard MIDI File (placed at their estimated onsets).
    #[arg(long)]
    pub midi_out: Option<PathBuf>,
    /// Write every MIDI event the graph emitted, one JSON object a line (time emitted, sample rate,
    /// pitch, estimated onset).
    #[arg(long)]
    pub events_out: Option<PathBuf>,
    /// Print the notes as `time  note  velocity  duration` lines to a file, or `-` for standard output.
    #[arg(long)]
    pub notes_out: Option<PathBuf>,
    /// Draw the notes as a piano roll over the input's spectrogram, onsets marked (PNG).
    #[arg(long)]
    pub piano_roll: Option<PathBuf>,
    /// Every `recorder` node records from the first sample into DIR/<node id>.wav, aligned with
    /// the input and as long as it.
    #[arg(long)]
    pub record_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Int16,
    Int24,
    Float32,
}

pub fn render(a: RenderArgs) -> anyhow::Result<ExitCode> {
    let registry = crate::registry();
    let Some(patch) = crate::load_or_report(&a.patch, &registry) else {
        return Ok(ExitCode::FAILURE);
    };
    let input = match &a.input {
        Some(p) => Some(read_input(p)?),
        None => None,
    };
    let (midi_in, midi_end_s) = match &a.midi_in {
        Some(p) => crate::notes::smf_events(p)?,
        None => (Vec::new(), 0.0),
    };
    if input.is_none() && a.duration.is_none() && a.midi_in.is_none() {
        anyhow::bail!("give --input or --midi-in, or --duration to render without input");
    }
    let sample_rate = a
        .sample_rate
        .or(patch.engine.sample_rate)
        .or(input.as_ref().map(|i| i.sample_rate))
        .unwrap_or(48000);
    // Without input, the render lasts until the file's last message has been played (one frame
    // past its sample), then --tail.
    let midi_secs = midi_end_s + 1.5 / sample_rate as f64;
    let duration_secs = a.duration.or((input.is_none() && a.midi_in.is_some()).then_some(midi_secs));
    let opts = RenderOptions {
        sample_rate,
        block_size: a.block_size,
        duration_secs,
        device_midi: midi_in.iter().map(|&(t, m)| ((t * sample_rate as f64).round() as u64, m)).collect(),
        tail_secs: a.tail,
        compensate_latency: !a.no_latency_compensation,
        ..Default::default()
    };
    let audio_secs = input
        .as_ref()
        .map(|i| i.duration_secs())
        .unwrap_or(0.0)
        .max(duration_secs.unwrap_or(0.0))
        + a.tail;
    let bar = (audio_secs >= 20.0).then(progress_bar);
    let (graph, recorders) = match &a.record_dir {
        Some(dir) => crate::record_dir::prepare(&patch.graph, dir)?,
        None => (patch.graph.clone(), Vec::new()),
    };
    let result = offline::render(&graph, &registry, input.as_ref(), &opts, |done, total| {
        if let Some(b) = &bar {
            b.set_position((done * 1000).checked_div(total).unwrap_or(1000));
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let rendered = match result {
        Ok(r) => r,
        Err(offline::RenderError::Graph(errs)) => {
            let errs = stagebox_patches::PatchErrors(errs.into_iter().map(|e| patch.locate(e.loc, e.message)).collect());
            crate::print_patch_errors(&errs);
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    let format = match a.format {
        Some(Format::Int16) => WavFormat::Int16,
        Some(Format::Int24) => WavFormat::Int24,
        Some(Format::Float32) => WavFormat::Float32,
        None => rendered.audio.wav_format.unwrap_or(WavFormat::Float32),
    };
    audio_file::write_wav(&a.output, &rendered.audio, format)?;
    if let Some(dir) = &a.record_dir {
        crate::record_dir::finish(dir, &recorders, &rendered)?;
    }
    write_events(&a, &patch, &rendered, sample_rate, input.as_ref())?;
    report(&a, &rendered, sample_rate, opts.compensate_latency);
    Ok(ExitCode::SUCCESS)
}

/// The input file, with a warning for one that could be read only in part or holds nothing.
fn read_input(path: &std::path::Path) -> anyhow::Result<audio_file::Audio> {
    let decoded = audio_file::decode(path).map_err(|e| anyhow::anyhow!("cannot read the input: {e}"))?;
    if let Some(w) = &decoded.warning {
        tracing::warn!("{}: {w}; rendering what could be read", path.display());
    }
    if decoded.audio.frames() == 0 {
        tracing::warn!("{}: the file holds no audio (0 frames); the output will be empty", path.display());
    }
    Ok(decoded.audio)
}

fn progress_bar() -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(1000);
    b.set_style(indicatif::ProgressStyle::with_template("{spinner} rendering [{bar:40}] {percent}% eta {eta}").unwrap());
    b
}

/// The notes the graph emitted, as a MIDI file, an event log, a list and a piano roll, where asked for.
fn write_events(
    a: &RenderArgs,
    patch: &stagebox_patches::Patch,
    rendered: &offline::Rendered,
    sample_rate: u32,
    input: Option<&audio_file::Audio>,
) -> anyhow::Result<()> {
    if a.midi_out.is_none() && a.events_out.is_none() && a.notes_out.is_none() && a.piano_roll.is_none() {
        return Ok(());
    }
    let ids: Vec<String> = patch.graph.nodes.iter().map(|n| n.id.clone()).collect();
    let events = crate::events::collect(&rendered.messages, &ids);
    let end = rendered.audio.frames() as u64 + rendered.latency_frames as u64;
    if let Some(p) = &a.events_out {
        crate::events::write_jsonl(p, &events, sample_rate)?;
    }
    if let Some(p) = &a.midi_out {
        crate::events::write_smf(p, &events, sample_rate, end)?;
    }
    let notes = crate::notes::from_emitted(&events, sample_rate, end as f64 / sample_rate as f64);
    if let Some(p) = &a.notes_out {
        write_notes_list(p, &notes)?;
    }
    if let Some(p) = &a.piano_roll {
        let mono = input.map(|i| mono_mix(i));
        let spectrum = mono.as_ref().zip(input).map(|(m, i)| crate::piano_roll::Spectrum {
            samples: m,
            sample_rate: i.sample_rate,
        });
        let title = a.input.as_ref().unwrap_or(&a.patch).display().to_string();
        crate::piano_roll::draw(p, &notes, spectrum, &title)?;
        eprintln!("piano roll of {} notes drawn to {}", notes.len(), p.display());
    }
    eprintln!("{} notes emitted", notes.len());
    Ok(())
}

/// Writes the notes list to `path`, or to standard output for `-`.
pub fn write_notes_list(path: &std::path::Path, notes: &[crate::notes::Note]) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        let stdout = std::io::stdout();
        return Ok(crate::notes::write_list(&mut stdout.lock(), notes)?);
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?);
    crate::notes::write_list(&mut f, notes)?;
    Ok(())
}

/// The channels of `audio` averaged into one.
pub fn mono_mix(audio: &audio_file::Audio) -> Vec<f32> {
    let ch = audio.channels.max(1);
    audio.samples.chunks_exact(ch).map(|f| f.iter().sum::<f32>() / ch as f32).collect()
}

/// The line that says what was rendered, how fast, and with what latency.
fn report(a: &RenderArgs, rendered: &offline::Rendered, sample_rate: u32, compensated: bool) {
    let secs = rendered.audio.duration_secs();
    let speed = if secs > 0.0 && rendered.wall_secs > 0.0 {
        format!(" ({:.0}x real time)", secs / rendered.wall_secs)
    } else {
        String::new()
    };
    eprintln!(
        "rendered {:.2} s at {} Hz, {} ch to {} in {:.2} s{speed}; {}{}",
        secs,
        sample_rate,
        rendered.audio.channels,
        a.output.display(),
        rendered.wall_secs,
        rendered.latency_text,
        if compensated && rendered.latency_frames > 0 {
            " (compensated)"
        } else {
            ""
        }
    );
    if rendered.alloc_violations > 0 {
        tracing::error!(
            "{} allocations happened inside process calls (a node breaks the real-time rules)",
            rendered.alloc_violations
        );
    }
}
