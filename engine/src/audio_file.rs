//! Audio files: decoding (WAV, FLAC, MP3, OGG/Vorbis through symphonia) and WAV writing
//! (hound). Control and worker threads only, never the audio thread.

use std::fs::File;
use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::errors::Error as SymErr;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Sample format of a WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavFormat {
    Int16,
    Int24,
    Float32,
}

/// Decoded audio: interleaved f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    pub sample_rate: u32,
    pub channels: usize,
    pub samples: Vec<f32>,
    /// The source's sample format, when it was a WAV (used to write the render back alike).
    pub wav_format: Option<WavFormat>,
}

impl Audio {
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1)
    }
    pub fn duration_secs(&self) -> f64 {
        self.frames() as f64 / self.sample_rate as f64
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AudioFileError {
    #[error("{path}: {}", io_text(.err))]
    Io { path: String, err: std::io::Error },
    #[error("{path}: {msg}")]
    Decode { path: String, msg: String },
    #[error("{path}: cannot write WAV: {msg}")]
    Write { path: String, msg: String },
}

/// What a person needs to know of an I/O error, without the OS's error number.
fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "is a folder, not a file".into(),
        _ => {
            let t = e.to_string();
            t.split(" (os error").next().unwrap_or(&t).to_string()
        }
    }
}

/// A decoded file and, when only part of it could be read, what was wrong.
#[derive(Debug)]
pub struct Decoded {
    pub audio: Audio,
    /// For example "the file ends early: read 1.04 s of the 2.00 s its header declares".
    pub warning: Option<String>,
}

/// The formats `read` knows, for messages.
const KNOWN_FORMATS: &str = "WAV, FLAC, MP3 or OGG/Vorbis";

/// Reads a whole audio file; the readable part of a truncated WAV is kept (see `decode`).
pub fn read(path: &Path) -> Result<Audio, AudioFileError> {
    decode(path).map(|d| d.audio)
}

/// Reads a whole audio file, saying what was wrong with a file that could be read only in part.
pub fn decode(path: &Path) -> Result<Decoded, AudioFileError> {
    let p = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|err| AudioFileError::Io { path: p.clone(), err })?;
    if meta.is_dir() {
        return Err(AudioFileError::Decode {
            path: p,
            msg: "is a folder, not an audio file".into(),
        });
    }
    if meta.len() == 0 {
        return Err(AudioFileError::Decode {
            path: p,
            msg: "the file is empty (0 bytes)".into(),
        });
    }
    // WAV through hound first: exact integer samples and the format, for bit-exact renders.
    if let Ok(r) = hound::WavReader::open(path) {
        return read_wav(r, &p);
    }
    read_other(path, &p).map(|audio| Decoded { audio, warning: None })
}

fn read_other(path: &Path, p: &str) -> Result<Audio, AudioFileError> {
    let file = File::open(path).map_err(|err| AudioFileError::Io { path: p.to_string(), err })?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let dec_err = |msg: String| AudioFileError::Decode { path: p.to_string(), msg };
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|_| dec_err(format!("not an audio file Stagebox can read ({KNOWN_FORMATS})")))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != symphonia::core::codecs::CODEC_TYPE_NULL)
        .ok_or_else(|| dec_err("holds no audio track".into()))?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|_| dec_err(format!("its audio is in a codec Stagebox cannot decode ({KNOWN_FORMATS})")))?;
    let mut sample_rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut channels = track.codec_params.channels.map(|c| c.count()).unwrap_or(0);
    let mut samples = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymErr::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymErr::ResetRequired) => break,
            Err(e) => return Err(dec_err(format!("damaged audio data ({e})"))),
        };
        if packet.track_id() != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                let spec = *buf.spec();
                sample_rate = spec.rate;
                channels = spec.channels.count();
                let mut sb = SampleBuffer::<f32>::new(buf.capacity() as u64, spec);
                sb.copy_interleaved_ref(buf);
                samples.extend_from_slice(sb.samples());
            }
            Err(SymErr::DecodeError(_)) => continue,
            Err(e) => return Err(dec_err(format!("damaged audio data ({e})"))),
        }
    }
    if sample_rate == 0 || channels == 0 {
        return Err(dec_err("its sample rate or channel count is unknown".into()));
    }
    Ok(Audio {
        sample_rate,
        channels,
        samples,
        wav_format: None,
    })
}

/// Reads every whole frame hound can; a file that ends before its header says is kept up to there.
fn read_wav<R: std::io::Read>(mut r: hound::WavReader<R>, p: &str) -> Result<Decoded, AudioFileError> {
    let spec = r.spec();
    let channels = spec.channels.max(1) as usize;
    let declared_frames = r.duration() as usize;
    let (mut samples, fmt, failed) = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => take_ok(r.samples::<f32>(), WavFormat::Float32),
        (hound::SampleFormat::Int, 16) => take_ok(r.samples::<i16>().map(|s| s.map(|v| v as f32 / 32768.0)), WavFormat::Int16),
        (hound::SampleFormat::Int, 24) => take_ok(r.samples::<i32>().map(|s| s.map(|v| v as f32 / 8388608.0)), WavFormat::Int24),
        (hound::SampleFormat::Int, 8) => take_ok(r.samples::<i8>().map(|s| s.map(|v| v as f32 / 128.0)), WavFormat::Int16),
        (hound::SampleFormat::Int, 32) => take_ok(
            r.samples::<i32>().map(|s| s.map(|v| (v as f64 / 2147483648.0) as f32)),
            WavFormat::Float32,
        ),
        (f, b) => {
            let kind = if f == hound::SampleFormat::Float { "float" } else { "integer" };
            return Err(AudioFileError::Decode {
                path: p.to_string(),
                msg: format!(
                    "a WAV of {b}-bit {kind} samples, which Stagebox cannot read (16, 24 or 32-bit integer, 8-bit, or 32-bit float)"
                ),
            });
        }
    };
    samples.truncate(samples.len() / channels * channels);
    let frames = samples.len() / channels;
    let warning = (failed || frames < declared_frames).then(|| {
        let sr = spec.sample_rate.max(1) as f64;
        format!(
            "the file ends early: read {:.2} s of the {:.2} s its header declares",
            frames as f64 / sr,
            declared_frames as f64 / sr
        )
    });
    Ok(Decoded {
        audio: Audio {
            sample_rate: spec.sample_rate,
            channels,
            samples,
            wav_format: Some(fmt),
        },
        warning,
    })
}

/// The samples up to the first error, and whether there was one.
fn take_ok(it: impl Iterator<Item = hound::Result<f32>>, fmt: WavFormat) -> (Vec<f32>, WavFormat, bool) {
    let mut out = Vec::new();
    for s in it {
        match s {
            Ok(x) => out.push(x),
            Err(_) => return (out, fmt, true),
        }
    }
    (out, fmt, false)
}

/// WAV spec for a format.
pub fn wav_spec(channels: usize, sample_rate: u32, format: WavFormat) -> hound::WavSpec {
    let (bits, sample_format) = match format {
        WavFormat::Int16 => (16, hound::SampleFormat::Int),
        WavFormat::Int24 => (24, hound::SampleFormat::Int),
        WavFormat::Float32 => (32, hound::SampleFormat::Float),
    };
    hound::WavSpec {
        channels: channels as u16,
        sample_rate,
        bits_per_sample: bits,
        sample_format,
    }
}

/// Writes one sample in `format` (integer formats round and clip).
#[inline]
pub fn write_sample<W: std::io::Write + std::io::Seek>(w: &mut hound::WavWriter<W>, x: f32, format: WavFormat) -> hound::Result<()> {
    match format {
        WavFormat::Int16 => w.write_sample((x * 32768.0).round().clamp(-32768.0, 32767.0) as i16),
        WavFormat::Int24 => w.write_sample((x * 8388608.0).round().clamp(-8388608.0, 8388607.0) as i32),
        WavFormat::Float32 => w.write_sample(x),
    }
}

/// Writes a whole interleaved buffer as a WAV file.
pub fn write_wav(path: &Path, audio: &Audio, format: WavFormat) -> Result<(), AudioFileError> {
    let p = path.display().to_string();
    let werr = |e: hound::Error| AudioFileError::Write {
        path: p.clone(),
        msg: e.to_string(),
    };
    let mut w = hound::WavWriter::create(path, wav_spec(audio.channels, audio.sample_rate, format)).map_err(werr)?;
    for &x in &audio.samples {
        write_sample(&mut w, x, format).map_err(werr)?;
    }
    w.finalize().map_err(werr)
}
