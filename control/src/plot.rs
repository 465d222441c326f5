//! `stagebox plot`: the notes of an event log or a MIDI file as a piano roll, over an audio file's
//! spectrogram when one is given; or as a notes list (control thread).

use std::path::PathBuf;
use std::process::ExitCode;

use stagebox_engine::audio_file;

#[derive(clap::Args)]
pub struct PlotArgs {
    /// The notes: an event log written by `--events-out` (.jsonl) or a Standard MIDI File.
    pub notes: PathBuf,
    /// The PNG to draw.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Audio to draw the spectrogram of, under the notes (the take's input).
    #[arg(long)]
    pub audio: Option<PathBuf>,
    /// Also print the notes as `time  note  velocity  duration` lines (a file, or `-`).
    #[arg(long)]
    pub notes_out: Option<PathBuf>,
}

pub fn plot(a: PlotArgs) -> anyhow::Result<ExitCode> {
    if a.output.is_none() && a.notes_out.is_none() {
        anyhow::bail!("give --output F.png (the piano roll) or --notes-out - (the list)");
    }
    let notes = crate::notes::from_file(&a.notes)?;
    if let Some(p) = &a.notes_out {
        crate::render::write_notes_list(p, &notes)?;
    }
    if let Some(out) = &a.output {
        let audio = match &a.audio {
            Some(p) => Some(audio_file::read(p).map_err(|e| anyhow::anyhow!("cannot read the audio: {e}"))?),
            None => None,
        };
        let mono = audio.as_ref().map(crate::render::mono_mix);
        let spectrum = mono.as_ref().zip(audio.as_ref()).map(|(m, au)| crate::piano_roll::Spectrum {
            samples: m,
            sample_rate: au.sample_rate,
        });
        crate::piano_roll::draw(out, &notes, spectrum, &a.notes.display().to_string())?;
        eprintln!("piano roll of {} notes drawn to {}", notes.len(), out.display());
    }
    Ok(ExitCode::SUCCESS)
}
