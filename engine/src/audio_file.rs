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
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: cannot decode: {msg}")]
    Decode { path: String, msg: String },
    #[error("{path}: cannot write WAV: {msg}")]
    Write { path: String, msg: String },
}

/// Reads a whole audio file.
pub fn read(path: &Path) -> Result<Audio, AudioFileError> {
    let p = path.display().to_string();
    // WAV through hound first: exact integer samples and the format, for bit-exact renders.
    if path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("wav"))
    {
        if let Ok(r) = hound::WavReader::open(path) {
            return read_wav(r, &p);
        }
    }
    let file = File::open(path).map_err(|source| AudioFileError::Io { path: p.clone(), source })?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let dec_err = |msg: String| AudioFileError::Decode { path: p.clone(), msg };
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| dec_err(e.to_string()))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != symphonia::core::codecs::CODEC_TYPE_NULL)
        .ok_or_else(|| dec_err("no audio track".into()))?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| dec_err(e.to_string()))?;
    let mut sample_rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut channels = track.codec_params.channels.map(|c| c.count()).unwrap_or(0);
    let mut samples = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymErr::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymErr::ResetRequired) => break,
            Err(e) => return Err(dec_err(e.to_string())),
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
            Err(e) => return Err(dec_err(e.to_string())),
        }
    }
    if sample_rate == 0 || channels == 0 {
        return Err(dec_err("unknown sample rate or channel count".into()));
    }
    Ok(Audio {
        sample_rate,
        channels,
        samples,
        wav_format: None,
    })
}

fn read_wav<R: std::io::Read>(r: hound::WavReader<R>, p: &str) -> Result<Audio, AudioFileError> {
    let spec = r.spec();
    let err = |e: hound::Error| AudioFileError::Decode {
        path: p.to_string(),
        msg: e.to_string(),
    };
    let (samples, fmt): (Vec<f32>, WavFormat) = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => (r.into_samples::<f32>().collect::<Result<_, _>>().map_err(err)?, WavFormat::Float32),
        (hound::SampleFormat::Int, 16) => (
            r.into_samples::<i16>()
                .map(|s| s.map(|v| v as f32 / 32768.0))
                .collect::<Result<_, _>>()
                .map_err(err)?,
            WavFormat::Int16,
        ),
        (hound::SampleFormat::Int, 24) => (
            r.into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 / 8388608.0))
                .collect::<Result<_, _>>()
                .map_err(err)?,
            WavFormat::Int24,
        ),
        (hound::SampleFormat::Int, 8) => (
            r.into_samples::<i8>()
                .map(|s| s.map(|v| v as f32 / 128.0))
                .collect::<Result<_, _>>()
                .map_err(err)?,
            WavFormat::Int16,
        ),
        (hound::SampleFormat::Int, 32) => (
            r.into_samples::<i32>()
                .map(|s| s.map(|v| (v as f64 / 2147483648.0) as f32))
                .collect::<Result<_, _>>()
                .map_err(err)?,
            WavFormat::Float32,
        ),
        (f, b) => {
            return Err(AudioFileError::Decode {
                path: p.to_string(),
                msg: format!("unsupported WAV format {f:?} {b} bits"),
            })
        }
    };
    Ok(Audio {
        sample_rate: spec.sample_rate,
        channels: spec.channels as usize,
        samples,
        wav_format: Some(fmt),
    })
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
