//! `separate`: a live mix split into `drums`, `bass`, `lead` and `other` by Stagebox's trained
//! separator (models/separator), frame-synchronous: the audio thread runs the STFT
//! (`spectral::Stft`, 1024 / 256 at 48 kHz) and hands each frame's mid magnitudes to the
//! inference worker through the bridge; the worker runs the ONNX model with its recurrent state
//! (state in, state out, kept on the worker between frames) and returns four masks. A model
//! whose manifest has the input `mag_long` (v7 on) is also given the low bins of a 4096-sample
//! window ending at the same sample (`sliding_spectrum`: finer bins, no added latency). A
//! frame's masks are applied one hop later (the node's look-ahead): a result not back by then
//! falls back to the `hpss` floor's masks for that frame, counted late, and costs no xrun. At an engine rate
//! other than 48 kHz the whole 48 kHz core is resampled around (`engine::rate_change`, its
//! latency declared: 1176 + 72 frames at 44.1 kHz). Without the model (missing, damaged) the node is the `hpss` floor, said in the log and by
//! `check`. Masks sum to one, so the stems sum to the delayed input either way.

use stagebox_engine::infer::{Bridge, InferBackend};
use stagebox_engine::node::{BuildCtx, Built, NodeType, Params, ProcessIo, Processor};
use stagebox_engine::nodes::hpss::{self, StemMasks, STEMS};
use stagebox_engine::param::ParamSpec;
use stagebox_engine::rate_change::RateChange;
use stagebox_engine::sliding_spectrum::SlidingSpectrum;
use stagebox_engine::spectral::{Spectrum, Stft, Window};

use crate::{find_model, ModelError, OrtModel};

const BINS: usize = hpss::FFT_SIZE / 2 + 1;
/// The long window's length (models/separator/train.py LONG_FFT), ending where the STFT's does.
const LONG_FFT: usize = 4096;
/// The rate the model was trained at.
pub const MODEL_RATE: f32 = 48000.0;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::int(
        "channels",
        1,
        2,
        1,
        "input channels (each stem has as many; masks come from the mid)",
    ),
    ParamSpec::string("model", "separator", "the separation model (a folder in models/ with a manifest)"),
];

/// The worker's side: the ONNX session and the recurrent state it carries between frames.
struct Backend {
    model: OrtModel,
    state: Vec<f32>,
    state_shape: Vec<i64>,
    /// The long window's bins the model takes (its `mag_long` input), 0 without one.
    long_bins: usize,
    outs: Vec<Vec<f32>>,
}

impl Backend {
    fn load(name: &str) -> Result<Backend, ModelError> {
        let model = OrtModel::load(find_model(name)?)?;
        // Inputs: mag, [mag_long,] state_in (the state last).
        let inputs = &model.manifest.input;
        let state_shape = inputs.last().map(|t| t.shape.clone()).unwrap_or_default();
        let long_bins = match inputs.iter().find(|t| t.name == "mag_long") {
            Some(t) => t.shape.iter().product::<i64>().clamp(0, (LONG_FFT / 2 + 1) as i64) as usize,
            None => 0,
        };
        let n = state_shape.iter().product::<i64>().max(0) as usize;
        Ok(Backend {
            model,
            state: vec![0.0; n],
            state_shape,
            long_bins,
            outs: Vec::new(),
        })
    }
}

impl InferBackend for Backend {
    fn infer(&mut self, _seq: u64, input: &[f32], output: &mut [f32]) -> Result<(), String> {
        let (mag, long) = input.split_at(BINS);
        let (mag_shape, long_shape) = ([BINS as i64], [self.long_bins as i64]);
        let state = (&self.state_shape[..], &self.state[..]);
        let run = if self.long_bins > 0 {
            self.model
                .run_many(&[(&mag_shape, mag), (&long_shape, long), state], &mut self.outs)
        } else {
            self.model.run_many(&[(&mag_shape, mag), state], &mut self.outs)
        };
        run.map_err(|e| e.to_string())?;
        let (masks, state) = (&self.outs[0], &self.outs[1]);
        if masks.len() != output.len() || state.len() != self.state.len() {
            return Err("the model's outputs do not have the manifest's shapes".into());
        }
        if masks.iter().chain(state).any(|v| !v.is_finite()) {
            // A model gone wrong starts again from silence; this frame takes the floor.
            self.state.fill(0.0);
            return Err("the model returned non-finite values".into());
        }
        output.copy_from_slice(masks);
        self.state.copy_from_slice(state);
        Ok(())
    }
}

struct SeparateProc {
    stft: Stft,
    floor: StemMasks,
    bridge: Option<Bridge>,
    /// The long window, where the model takes one.
    long: Option<LongWindow>,
    /// The frame whose result is due at the next hop.
    waiting: Option<u64>,
    clean: Vec<Vec<f32>>,
    /// At an engine rate other than the model's: the resampling around the 48 kHz core.
    rate: Option<RateChange>,
    node: u32,
}

/// The long window over the mid of the input channels.
struct LongWindow {
    spectrum: SlidingSpectrum,
    /// The newest hop's mid samples.
    hop: Vec<f32>,
}

impl LongWindow {
    fn new(bins: usize) -> Result<LongWindow, String> {
        Ok(LongWindow {
            spectrum: SlidingSpectrum::new(LONG_FFT, bins)?,
            hop: vec![0.0; hpss::HOP],
        })
    }

    /// Takes the newest hop from the STFT's input history (each channel's last frame, newest
    /// last); the low bins' magnitudes of the long window ending at its last sample.
    fn magnitudes(&mut self, history: &[Vec<f32>]) -> &[f32] {
        let (ch, hop) = (history.len() as f32, self.hop.len());
        for (i, m) in self.hop.iter_mut().enumerate() {
            *m = history.iter().map(|h| h[h.len() - hop + i]).sum::<f32>() / ch;
        }
        self.spectrum.push_hop(&self.hop);
        self.spectrum.magnitudes()
    }
}

/// What one hop's work needs besides the spectra.
struct FrameState<'a> {
    floor: &'a mut StemMasks,
    bridge: &'a mut Option<Bridge>,
    long: &'a mut Option<LongWindow>,
    waiting: &'a mut Option<u64>,
}

/// One hop: the model's stems for the delayed frame where it answered in time, else the floor's
/// (whose masks are computed only then; its history is kept every frame).
fn frame(st: &mut FrameState, input: &[Spectrum], history: &[Vec<f32>], out: &mut [Spectrum]) {
    let FrameState {
        floor,
        bridge,
        long,
        waiting,
    } = st;
    floor.push(input);
    let Some(b) = bridge else {
        floor.write_stems(out);
        return;
    };
    let mut sent = None;
    let long_mags: &[f32] = match long {
        Some(l) => l.magnitudes(history),
        None => &[],
    };
    for &m in floor.newest_mags().iter().chain(long_mags) {
        if let Some(seq) = b.push(m) {
            sent = Some(seq);
        }
    }
    match waiting.take().and_then(|seq| b.result(seq)) {
        Some(masks) => {
            let ch = input.len();
            for (stem, mask) in masks.chunks_exact(BINS).enumerate() {
                for (c, x) in floor.masked_frame().iter().enumerate() {
                    for ((o, v), m) in out[stem * ch + c].iter_mut().zip(x).zip(mask) {
                        *o = v * *m;
                    }
                }
            }
        }
        None => floor.write_stems(out),
    }
    **waiting = sent;
}

impl Processor for SeparateProc {
    fn process(&mut self, io: &mut ProcessIo) {
        let n = io.frames;
        if !hpss::finite_copy(&mut self.clean, io.inputs, n) {
            self.stft.reset();
            self.floor.reset();
            if let Some(l) = &mut self.long {
                l.spectrum.reset();
            }
        }
        let ins: [&[f32]; 2] = [&self.clean[0][..n], &self.clean[self.clean.len() - 1][..n]];
        let stft = &mut self.stft;
        let mut st = FrameState {
            floor: &mut self.floor,
            bridge: &mut self.bridge,
            long: &mut self.long,
            waiting: &mut self.waiting,
        };
        let mut core = |i: &[&[f32]], o: &mut [&mut [f32]], m: usize| stft.process_with_history(i, o, m, |i, h, o| frame(&mut st, i, h, o));
        match &mut self.rate {
            Some(rc) => rc.run(&ins[..self.clean.len()], io.outputs, n, core),
            None => core(&ins[..self.clean.len()], io.outputs, n),
        }
        if let Some(b) = &mut self.bridge {
            for _ in 0..n {
                b.report(&mut io.emit, self.node, 4800);
            }
        }
    }
}

/// Why the model cannot run here, if it cannot.
fn model_problem(name: &str) -> Option<String> {
    match find_model(name).and_then(|m| m.verify().map(|_| ())) {
        Ok(()) => crate::find_runtime().err().map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    }
}

pub const SEPARATE: NodeType = NodeType {
    name: "separate",
    doc: "Splits a mix into drums, bass, lead and other stems with Stagebox's separation model on the inference thread (the hpss floor without it); the stems sum to the delayed input.",
    params: PARAMS,
    params_of: None,
    build: |p: &Params, ctx: &BuildCtx| {
        let ch = p.usize("channels").clamp(1, 2);
        let mut info = hpss::stems_info(ch);
        // The model and its floor run at 48 kHz; at another engine rate, resampled around them.
        let (engine, model) = (ctx.sample_rate.round() as u32, MODEL_RATE as u32);
        let rate = (engine != model).then(|| RateChange::new(engine, model, ch, STEMS.len() * ch, ctx.max_block));
        if let Some(rc) = &rate {
            info.latency_frames = rc.buffer_frames() + RateChange::scale_latency(info.latency_frames, engine, model);
        }
        let name = p.str("model");
        if ctx.dry_run {
            if let Some(why) = model_problem(name) {
                return Err(format!("model `{name}`: {why} (running, the node falls back to the hpss floor)"));
            }
        }
        let (mut bridge, mut long) = (None, None);
        if !ctx.dry_run {
            match model_problem(name).map_or_else(|| Backend::load(name).map_err(|e| e.to_string()), Err) {
                Ok(backend) => {
                    let input = BINS + backend.long_bins;
                    long = (backend.long_bins > 0).then(|| LongWindow::new(backend.long_bins)).transpose()?;
                    bridge = Some(
                        Bridge::new(Box::new(backend), input, input, STEMS.len() * BINS, 8, ctx.offline)
                            .map_err(|e| format!("cannot start the inference worker: {e}"))?,
                    );
                }
                Err(why) => {
                    tracing::error!("separate: model `{name}` not used ({why}); the hpss floor separates instead");
                }
            }
        }
        Ok(Built {
            info,
            processor: Box::new(SeparateProc {
                stft: Stft::new(hpss::FFT_SIZE, hpss::HOP, Window::SqrtHann, ch, STEMS.len() * ch)?,
                floor: StemMasks::new(ch, MODEL_RATE),
                bridge,
                long,
                waiting: None,
                clean: vec![vec![0.0; ctx.max_block]; ch],
                rate,
                node: ctx.node_index,
            }),
        })
    },
};
