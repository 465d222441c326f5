//! Runs a processing core that works at a fixed rate (a model's) inside an engine at another:
//! each input channel resampled to the core's rate, the core run on what arrived, each output
//! channel resampled back, with an exact, declared latency. Built on the control thread; `run`
//! on the audio thread (all buffers made at build; no allocation).
//!
//! The resamplers (`dsp::Resampler`) are zero-phase: output sample j is the input at time
//! j * from / to exactly. So the round trip adds no delay of its own, only buffering (the two
//! look-aheads); a core that delays by `core_latency` samples at its rate delays by
//! `core_latency * engine / core` at the engine's, which is whole at the usual rates (1280 at
//! 48 kHz is 1176 at 44.1 kHz, 2560 at 96 kHz) and rounded otherwise.

use crate::dsp::Resampler;

pub struct RateChange {
    down: Vec<Resampler>,
    up: Vec<Resampler>,
    /// The core's input and output for one engine block, at the core's rate.
    core_in: Vec<Vec<f32>>,
    core_out: Vec<Vec<f32>>,
    /// Per output channel: the resampled-back output, read `buffer` samples after it was due.
    rings: Vec<Vec<f32>>,
    mask: usize,
    produced: u64,
    pos: u64,
    buffer: u64,
}

impl RateChange {
    /// `inputs` and `outputs` channels between an engine at `engine_rate` and a core at
    /// `core_rate`, for blocks of at most `max_block` engine frames.
    pub fn new(engine_rate: u32, core_rate: u32, inputs: usize, outputs: usize, max_block: usize) -> Self {
        let probe_down = Resampler::new(engine_rate, core_rate);
        let probe_up = Resampler::new(core_rate, engine_rate);
        let buffer =
            probe_down.lookahead_in() as u64 + (probe_up.lookahead_in() as u64 * engine_rate as u64).div_ceil(core_rate as u64) + 2;
        let size = (2 * buffer as usize + 2 * max_block + 64).next_power_of_two();
        let core_block = (max_block as u64 * core_rate as u64).div_ceil(engine_rate as u64) as usize + 2;
        Self {
            down: (0..inputs).map(|_| Resampler::new(engine_rate, core_rate)).collect(),
            up: (0..outputs).map(|_| Resampler::new(core_rate, engine_rate)).collect(),
            core_in: vec![vec![0.0; core_block]; inputs],
            core_out: vec![vec![0.0; core_block]; outputs],
            rings: vec![vec![0.0; size]; outputs],
            mask: size - 1,
            produced: 0,
            pos: 0,
            buffer,
        }
    }

    /// Engine frames the round trip adds (buffering; the core's own latency comes on top).
    pub fn buffer_frames(&self) -> u32 {
        self.buffer as u32
    }

    /// `core_latency` core samples in engine frames (rounded).
    pub fn scale_latency(core_latency: u32, engine_rate: u32, core_rate: u32) -> u32 {
        ((core_latency as u64 * engine_rate as u64 + core_rate as u64 / 2) / core_rate as u64) as u32
    }

    /// Runs `frames` engine frames of `inputs` through `core` (given its inputs, outputs and
    /// frame count at its rate) into `outputs`. Audio thread.
    pub fn run(
        &mut self,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
        frames: usize,
        core: impl FnOnce(&[&[f32]], &mut [&mut [f32]], usize),
    ) {
        let mut n_core = 0;
        for (c, (rs, buf)) in self.down.iter_mut().zip(&mut self.core_in).enumerate() {
            let mut k = 0;
            for &x in &inputs[c][..frames] {
                rs.push(x, |y| {
                    buf[k] = y;
                    k += 1;
                });
            }
            n_core = k;
        }
        {
            let (n_in, n_out) = (self.core_in.len(), self.core_out.len());
            let mut ins: [&[f32]; 8] = [&[]; 8];
            for (s, b) in ins.iter_mut().zip(&self.core_in) {
                *s = &b[..n_core];
            }
            let mut outs: [&mut [f32]; 16] = Default::default();
            for (s, b) in outs.iter_mut().zip(&mut self.core_out) {
                *s = &mut b[..n_core];
            }
            core(&ins[..n_in], &mut outs[..n_out], n_core);
        }
        let mut produced = self.produced;
        for (k, (rs, ring)) in self.up.iter_mut().zip(&mut self.rings).enumerate() {
            let mask = self.mask;
            let mut p = self.produced;
            for &x in &self.core_out[k][..n_core] {
                rs.push(x, |y| {
                    ring[p as usize & mask] = y;
                    p += 1;
                });
            }
            produced = p;
        }
        self.produced = produced;
        for t in 0..frames {
            let pos = self.pos + t as u64;
            for (out, ring) in outputs.iter_mut().zip(&self.rings) {
                out[t] = if pos >= self.buffer {
                    ring[(pos - self.buffer) as usize & self.mask]
                } else {
                    0.0
                };
            }
        }
        self.pos += frames as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core that delays by `d` samples at its rate, through 44.1 kHz: the output is the input
    /// delayed by the declared latency (a low tone, so the round trip's band limit leaves it).
    #[test]
    fn a_delaying_core_comes_back_delayed_by_the_declared_latency_at_any_block_size() {
        let (e, c, d) = (44100u32, 48000u32, 1280usize);
        let x: Vec<f32> = (0..20000)
            .map(|t| (2.0 * std::f32::consts::PI * 440.0 * t as f32 / e as f32).sin() * 0.5)
            .collect();
        let mut results = Vec::new();
        for block in [1usize, 64, 333, 512] {
            let mut rc = RateChange::new(e, c, 1, 1, 512);
            let latency = rc.buffer_frames() + RateChange::scale_latency(d as u32, e, c);
            let mut line = vec![0.0f32; d];
            let mut at = 0usize;
            let mut y = vec![0.0f32; x.len()];
            for (xs, ys) in x.chunks(block).zip(y.chunks_mut(block)) {
                let n = xs.len();
                rc.run(&[xs], &mut [ys], n, |i, o, m| {
                    for t in 0..m {
                        o[0][t] = line[at];
                        line[at] = i[0][t];
                        at = (at + 1) % d;
                    }
                });
            }
            let l = latency as usize;
            let err = (l + 2000..x.len()).map(|t| (y[t] - x[t - l]).abs()).fold(0.0, f32::max);
            assert!(err < 2e-3, "block {block}: latency {latency}, error {err}");
            results.push(y);
        }
        assert!(results.iter().all(|r| r == &results[0]), "block size changes the output");
    }
}
