//! A picture of a take (control thread): the notes as a piano roll over the input's spectrogram
//! (its frequency axis in semitones, so a note's bar lies on its own harmonic), each onset marked,
//! as a PNG drawn with plotters. Axis labels need a TrueType font: DejaVu Sans (Debian's
//! fonts-dejavu-core) or the file named by STAGEBOX_FONT; without one the picture has no labels.

use std::path::Path;

use plotters::prelude::*;
use realfft::RealFftPlanner;

use crate::notes::Note;
use crate::run::results::note_name;

/// Colours: note bars, their onset marks.
pub const NOTE_RGB: (u8, u8, u8) = (255, 140, 0);
pub const ONSET_RGB: (u8, u8, u8) = (255, 255, 255);

const HEIGHT_PX: u32 = 640;
const MARGIN_PX: u32 = 12;
const LABEL_PX: u32 = 48;
/// Spectrogram window (samples): 4096 at 48 kHz resolves a semitone down to about C2.
const FFT_SIZE: usize = 4096;
const FLOOR_DB: f32 = -60.0;

/// Mono audio to draw under the notes.
pub struct Spectrum<'a> {
    pub samples: &'a [f32],
    pub sample_rate: u32,
}

/// Draws `notes` (and the spectrogram of `audio`) to `path`.
pub fn draw(path: &Path, notes: &[Note], audio: Option<Spectrum>, title: &str) -> anyhow::Result<()> {
    let audio_s = audio.as_ref().map_or(0.0, |a| a.samples.len() as f64 / a.sample_rate.max(1) as f64);
    let notes_end_s = notes.iter().map(|n| n.onset_s + n.duration_s).fold(0.0, f64::max);
    let duration_s = audio_s.max(notes_end_s).max(1.0);
    let (low, high) = pitch_range(notes);
    let width_px = (200.0 + duration_s * 100.0).clamp(800.0, 6000.0) as u32;
    let labels = ensure_font();
    let root = BitMapBackend::new(path, (width_px, HEIGHT_PX)).into_drawing_area();
    root.fill(&BLACK)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(MARGIN_PX);
    if labels {
        builder
            .caption(title, ("sans-serif", 18).into_font().color(&WHITE))
            .x_label_area_size(LABEL_PX / 2 + 10)
            .y_label_area_size(LABEL_PX);
    }
    let mut chart = builder.build_cartesian_2d(0.0..duration_s, low as f64 - 0.5..high as f64 + 0.5)?;
    if labels {
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("time (s)")
            .axis_style(WHITE)
            .label_style(("sans-serif", 13).into_font().color(&WHITE))
            .y_labels((high - low) as usize + 1)
            .y_label_formatter(&|p| {
                if (*p as i64).rem_euclid(12) == 0 {
                    note_name(*p as u8)
                } else {
                    String::new()
                }
            })
            .draw()?;
    }
    if let Some(a) = audio {
        draw_spectrogram(&root, &chart, &a, duration_s, (low, high))?;
    }
    draw_notes(&mut chart, notes)?;
    root.present()?;
    Ok(())
}

/// The pitches shown: the notes' range with a few semitones around, at least two octaves.
fn pitch_range(notes: &[Note]) -> (u8, u8) {
    let (lo, hi) = notes.iter().fold((u8::MAX, 0u8), |(lo, hi), n| (lo.min(n.pitch), hi.max(n.pitch)));
    let (mut lo, mut hi) = if lo > hi {
        (48, 84)
    } else {
        (lo.saturating_sub(4), hi.saturating_add(4).min(127))
    };
    while hi - lo < 24 {
        lo = lo.saturating_sub(1);
        hi = (hi + 1).min(127);
    }
    (lo, hi)
}

type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// One STFT column a pixel: the magnitude at each pixel row's frequency, in dB under the loudest.
fn draw_spectrogram(
    root: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    chart: &Chart,
    audio: &Spectrum,
    duration_s: f64,
    (low, high): (u8, u8),
) -> anyhow::Result<()> {
    let area = chart.plotting_area();
    let (xs, ys) = area.get_pixel_range();
    let (cols, rows) = ((xs.end - xs.start).max(1) as usize, (ys.end - ys.start).max(1) as usize);
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(FFT_SIZE);
    let window: Vec<f32> = (0..FFT_SIZE)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / FFT_SIZE as f32).cos())
        .collect();
    let (mut frame, mut spec) = (fft.make_input_vec(), fft.make_output_vec());
    let sr = audio.sample_rate as f64;
    // Each pixel row's FFT bin (fractional), top row = highest pitch.
    let bins: Vec<f64> = (0..rows)
        .map(|r| {
            let pitch = high as f64 + 0.5 - (r as f64 + 0.5) / rows as f64 * ((high - low) as f64 + 1.0);
            440.0 * 2f64.powf((pitch - 69.0) / 12.0) * FFT_SIZE as f64 / sr
        })
        .collect();
    let mut columns = vec![vec![0f32; rows]; cols];
    let mut loudest = 1e-12f32;
    for (c, column) in columns.iter_mut().enumerate() {
        let centre = ((c as f64 + 0.5) / cols as f64 * duration_s * sr) as i64;
        for (i, x) in frame.iter_mut().enumerate() {
            let at = centre - FFT_SIZE as i64 / 2 + i as i64;
            *x = audio.samples.get(at.max(0) as usize).filter(|_| at >= 0).copied().unwrap_or(0.0) * window[i];
        }
        fft.process(&mut frame, &mut spec)
            .map_err(|e| anyhow::anyhow!("spectrogram: {e}"))?;
        for (v, &b) in column.iter_mut().zip(&bins) {
            let (i, frac) = (b.floor() as usize, (b - b.floor()) as f32);
            let m = |k: usize| spec.get(k).map_or(0.0, |z| z.norm());
            *v = m(i) * (1.0 - frac) + m(i + 1) * frac;
            loudest = loudest.max(*v);
        }
    }
    for (c, column) in columns.iter().enumerate() {
        for (r, &v) in column.iter().enumerate() {
            let db = 20.0 * (v / loudest).max(1e-9).log10();
            let level = ((db - FLOOR_DB) / -FLOOR_DB).clamp(0.0, 1.0);
            if level > 0.0 {
                let colour = RGBColor((level * 90.0) as u8, (level * 120.0) as u8, (level * 200.0) as u8);
                root.draw_pixel((xs.start + c as i32, ys.start + r as i32), &colour)?;
            }
        }
    }
    Ok(())
}

/// Each note a bar on its pitch, its onset a white mark at the bar's start.
fn draw_notes(chart: &mut Chart, notes: &[Note]) -> anyhow::Result<()> {
    let (r, g, b) = NOTE_RGB;
    let bar = RGBColor(r, g, b).filled();
    chart.draw_series(notes.iter().map(|n| {
        let p = n.pitch as f64;
        Rectangle::new([(n.onset_s, p - 0.4), (n.onset_s + n.duration_s, p + 0.4)], bar)
    }))?;
    let (r, g, b) = ONSET_RGB;
    let mark = RGBColor(r, g, b).stroke_width(2);
    chart.draw_series(notes.iter().map(|n| {
        let p = n.pitch as f64;
        PathElement::new(vec![(n.onset_s, p - 0.5), (n.onset_s, p + 0.5)], mark)
    }))?;
    Ok(())
}

/// Registers a sans-serif font for the labels; false when none was found.
fn ensure_font() -> bool {
    static FONT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FONT.get_or_init(|| {
        let candidates = std::env::var_os("STAGEBOX_FONT").map(std::path::PathBuf::from).into_iter().chain(
            [
                "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/TTF/DejaVuSans.ttf",
                "/usr/share/fonts/dejavu/DejaVuSans.ttf",
            ]
            .map(std::path::PathBuf::from),
        );
        for path in candidates {
            if let Ok(bytes) = std::fs::read(&path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        tracing::warn!("no TrueType font found (install fonts-dejavu-core, or set STAGEBOX_FONT): the piano roll has no labels");
        false
    })
}
