//! DSP helpers shared by nodes. `Resampler` runs on the audio thread (model nodes, the
//! `resample` node) and on control threads (file loading); it never allocates after `new`.

/// Half-width of the sinc kernel in zero crossings.
const HALF_ZEROS: usize = 16;
const TABLE_LEN: usize = 4096;

fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..50 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < 1e-12 * sum {
            break;
        }
    }
    sum
}

/// The resampler's cutoff as a fraction of the input's Nyquist. Downsampling: a little below the
/// new Nyquist. Upsampling: the input's own Nyquist.
fn cutoff(from: u64, to: u64) -> f64 {
    if to < from {
        0.97 * to as f64 / from as f64
    } else {
        1.0
    }
}

/// Streaming band-limited resampler (Kaiser-windowed sinc, rational positions).
///
/// Output sample `j` is the input signal evaluated at input time `j * from / to` exactly (integer
/// arithmetic for the position), so results do not depend on how input is chunked. Output `j`
/// becomes available once input up to `j * from / to + lookahead_in()` has been pushed.
pub struct Resampler {
    from: u64,
    to: u64,
    fc: f64,
    half_width: f64,
    table: Vec<f32>,
    hist: Vec<f32>,
    mask: usize,
    pushed: u64,
    produced: u64,
    identity: bool,
}

impl Resampler {
    /// Resampler from rate `from` to rate `to` (Hz, integers).
    pub fn new(from: u32, to: u32) -> Self {
        let (from, to) = (from.max(1) as u64, to.max(1) as u64);
        let fc = cutoff(from, to);
        let half_width = HALF_ZEROS as f64 / fc;
        let beta = 8.0;
        let i0b = bessel_i0(beta);
        let table = (0..=TABLE_LEN)
            .map(|i| {
                let u = i as f64 / TABLE_LEN as f64;
                let x = u * HALF_ZEROS as f64;
                let sinc = if x == 0.0 {
                    1.0
                } else {
                    (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
                };
                let w = bessel_i0(beta * (1.0 - u * u).max(0.0).sqrt()) / i0b;
                (sinc * w) as f32
            })
            .collect();
        let need = (2.0 * half_width).ceil() as usize + 4;
        let size = need.next_power_of_two();
        Self {
            from,
            to,
            fc,
            half_width,
            table,
            hist: vec![0.0; size],
            mask: size - 1,
            pushed: 0,
            produced: 0,
            identity: from == to,
        }
    }

    /// Input samples needed beyond an output's position before it can be computed.
    pub fn lookahead_in(&self) -> usize {
        Self::lookahead_of(self.from as u32, self.to as u32)
    }

    /// `lookahead_in` of a resampler from rate `from` to `to`, without building one.
    pub fn lookahead_of(from: u32, to: u32) -> usize {
        if from == to {
            return 0;
        }
        (HALF_ZEROS as f64 / cutoff(from as u64, to as u64)).ceil() as usize + 1
    }

    /// The input sample (0-based) whose push makes output `j` (0-based) available.
    pub fn input_for_output(from: u32, to: u32, j: u64) -> u64 {
        j * from as u64 / to as u64 + Self::lookahead_of(from, to) as u64
    }

    /// Clears history and counters.
    pub fn reset(&mut self) {
        self.hist.fill(0.0);
        self.pushed = 0;
        self.produced = 0;
    }

    /// Pushes one input sample and calls `out` for every output sample that became available.
    #[inline]
    pub fn push(&mut self, x: f32, mut out: impl FnMut(f32)) {
        let idx = self.pushed as usize & self.mask;
        self.hist[idx] = x;
        self.pushed += 1;
        if self.identity {
            self.produced += 1;
            out(x);
            return;
        }
        let look = self.lookahead_in() as u64;
        loop {
            let num = self.produced * self.from;
            let ipart = num / self.to;
            if ipart + look >= self.pushed {
                break;
            }
            let frac = (num % self.to) as f64 / self.to as f64;
            out(self.eval(ipart, frac));
            self.produced += 1;
        }
    }

    /// Evaluates the band-limited input at `ipart + frac`.
    fn eval(&self, ipart: u64, frac: f64) -> f32 {
        if frac == 0.0 && self.fc >= 1.0 {
            // Exactly on an input sample with no band limit below its Nyquist: the sample itself.
            return self.hist[ipart as usize & self.mask];
        }
        let hw = self.half_width;
        let t = ipart as f64 + frac;
        let lo = (t - hw).ceil().max(0.0) as u64;
        let hi = ((t + hw).floor() as u64).min(self.pushed.saturating_sub(1));
        let scale = TABLE_LEN as f64 / hw;
        let mut acc = 0.0f32;
        for n in lo..=hi {
            let d = (t - n as f64).abs() * scale;
            let i = d as usize;
            if i >= TABLE_LEN {
                continue;
            }
            let f = (d - i as f64) as f32;
            let k = self.table[i] + (self.table[i + 1] - self.table[i]) * f;
            acc += k * self.hist[n as usize & self.mask];
        }
        acc * self.fc as f32
    }
}

/// Resamples a whole interleaved buffer (control thread; used when loading files).
pub fn resample_interleaved(data: &[f32], channels: usize, from: u32, to: u32) -> Vec<f32> {
    if from == to || data.is_empty() {
        return data.to_vec();
    }
    let frames = data.len() / channels;
    let out_frames = ((frames as u128 * to as u128).div_ceil(from as u128)) as usize;
    let mut out = vec![0.0f32; out_frames * channels];
    for c in 0..channels {
        let mut r = Resampler::new(from, to);
        let mut j = 0usize;
        let pad = r.lookahead_in() + 1;
        let mut sink = |y: f32| {
            if j < out_frames {
                out[j * channels + c] = y;
            }
            j += 1;
        };
        for t in 0..frames {
            r.push(data[t * channels + c], &mut sink);
        }
        for _ in 0..pad {
            r.push(0.0, &mut sink);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: f32, hz: f32, n: usize) -> Vec<f32> {
        (0..n).map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate).sin()).collect()
    }

    #[test]
    fn identity_is_exact() {
        let x = sine(48000.0, 440.0, 1000);
        assert_eq!(resample_interleaved(&x, 1, 48000, 48000), x);
    }

    #[test]
    fn sine_survives_44100_to_48000() {
        let x = sine(44100.0, 1000.0, 44100);
        let y = resample_interleaved(&x, 1, 44100, 48000);
        assert_eq!(y.len(), 48000);
        let want = sine(48000.0, 1000.0, 48000);
        let err = y[200..47800]
            .iter()
            .zip(&want[200..47800])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 2e-3, "max error {err}");
    }

    #[test]
    fn downsampling_removes_content_above_the_new_nyquist() {
        // 15 kHz at 48 kHz -> 16 kHz: must vanish (new Nyquist 8 kHz); 1 kHz must stay.
        let hi = resample_interleaved(&sine(48000.0, 15000.0, 48000), 1, 48000, 16000);
        let lo = resample_interleaved(&sine(48000.0, 1000.0, 48000), 1, 48000, 16000);
        let rms = |v: &[f32]| (v[500..15500].iter().map(|x| x * x).sum::<f32>() / 15000.0).sqrt();
        assert!(rms(&hi) < 0.01, "alias rms {}", rms(&hi));
        assert!((rms(&lo) - std::f32::consts::FRAC_1_SQRT_2).abs() < 0.02, "pass rms {}", rms(&lo));
    }

    #[test]
    fn chunking_does_not_matter() {
        let x = sine(48000.0, 3000.0, 5000);
        let mut a = Resampler::new(48000, 22050);
        let mut ya = Vec::new();
        for &s in &x {
            a.push(s, |y| ya.push(y));
        }
        let whole = resample_interleaved(&x, 1, 48000, 22050);
        assert_eq!(&whole[..ya.len()], &ya[..]);
    }

    #[test]
    fn input_for_output_names_the_push_that_makes_each_output() {
        for (from, to) in [(48000, 16000), (44100, 16000), (16000, 48000), (16000, 16000)] {
            let mut r = Resampler::new(from, to);
            let mut made = 0u64;
            for i in 0..2000u64 {
                r.push(0.0, |_| {
                    assert_eq!(Resampler::input_for_output(from, to, made), i, "{from} -> {to}, output {made}");
                    made += 1;
                });
            }
            assert!(made > 100, "{from} -> {to}: {made} outputs");
        }
    }
}
