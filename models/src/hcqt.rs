//! Basic Pitch's front end, computed incrementally (inference worker thread).
//!
//! The model's front end is a CQT in the CQT2010v2 style: one octave of 36 complex kernels of
//! 256 taps, applied at 22050 Hz every 256 samples, then to the signal decimated by 2 (a 256-tap
//! low-pass, stride 2) every 128 samples, and so on for 9 octaves; 309 bins from A0 (27.5 Hz),
//! 3 a semitone, are kept. Then a log power in dB, normalised by the minimum and maximum over
//! the window (172 frames), a scalar batch norm and harmonic stacking (the spectrum shifted for
//! harmonics 0.5, 1, 2 .. 7) into `[frames][264][8]`, the CNN's input
//! (`models/basic_pitch_stream/make.py` splits the original model there).
//!
//! Here each decimated signal and each CQT frame is computed once it is final (all the input
//! it depends on has arrived); the newest ones, whose kernels reach past the newest sample, are
//! recomputed on each call with the future taken as silence (the original zero-pads its window
//! the same way; it reflects at the CQT's own edge, the one difference). The normalisation runs
//! over the last 172 frames, as the original's window does. Interior frames equal the
//! original's front end (models/tests/frontend.rs checks them against it).

use std::path::Path;

pub const TAPS: usize = 256;
/// Bins per octave (3 per semitone).
pub const BPO: usize = 36;
pub const OCTAVES: usize = 9;
/// Bins kept, from A0 upward.
pub const BINS: usize = 309;
const ALL_BINS: usize = OCTAVES * BPO;
const DROPPED: usize = ALL_BINS - BINS;
/// Bins of the CNN's input (and of the contour output).
pub const CONTOUR_BINS: usize = 264;
pub const HARMONICS: usize = 8;
/// Bin shifts of harmonics 0.5, 1, 2, 3, 4, 5, 6, 7 (36 * log2 h, rounded).
pub const SHIFTS: [isize; HARMONICS] = [-36, 0, 36, 57, 72, 84, 93, 101];
/// Input samples (22050 Hz) per frame.
pub const FRAME_HOP: usize = 256;
/// Frames the level normalisation spans (the original's 2 s window).
pub const NORM_FRAMES: i64 = 172;
/// dB of silence: 10 log10(1e-10).
pub const SILENT_DB: f32 = -100.0;
/// One frame of the CNN's input.
pub const FRAME_LEN: usize = CONTOUR_BINS * HARMONICS;

/// Zeros kept before index 0 and after the support of each stage.
const PAD: usize = 256;
/// Samples a stage keeps behind its newest final one after compacting, and when it compacts.
const KEEP: usize = 1 << 15;
const COMPACT_AT: usize = 1 << 16;
/// Frames whose powers are cached (at least NORM_FRAMES and the largest context).
const FRAME_RING: usize = 256;
/// The largest context one call may ask for.
pub const MAX_CONTEXT: usize = 64;

/// The front end's constants (`models/basic_pitch_stream/frontend.bin`).
pub struct FrontEndConsts {
    pub lowpass: Vec<f32>,
    /// `[36][256]` each: the two quadrature parts of the CQT kernels.
    pub ka: Vec<f32>,
    pub kb: Vec<f32>,
    /// Per kept bin magnitude scale.
    pub scale: Vec<f32>,
    pub bn_mul: f32,
    pub bn_add: f32,
}

impl FrontEndConsts {
    pub const LEN: usize = TAPS + 2 * BPO * TAPS + BINS + 2;

    pub fn from_bytes(b: &[u8]) -> Result<Self, String> {
        if b.len() != Self::LEN * 4 {
            return Err(format!(
                "front-end constants: {} bytes where {} were expected",
                b.len(),
                Self::LEN * 4
            ));
        }
        let f: Vec<f32> = b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let mut at = 0;
        let mut take = |n: usize| {
            let v = f[at..at + n].to_vec();
            at += n;
            v
        };
        let lowpass = take(TAPS);
        let ka = take(BPO * TAPS);
        let kb = take(BPO * TAPS);
        let scale = take(BINS);
        let bn = take(2);
        if f.iter().any(|x| !x.is_finite()) {
            return Err("front-end constants: not all finite".into());
        }
        Ok(Self {
            lowpass,
            ka,
            kb,
            scale,
            bn_mul: bn[0],
            bn_add: bn[1],
        })
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_bytes(&b).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Dot product of two 256-tap slices, in 8 lanes so it vectorises.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// One signal of the decimation chain (stage 0: the input; stage k: decimated k times).
struct Stage {
    /// Values from absolute index `base`: final ones (below `fin`), provisional ones (below
    /// `sup`), then `PAD` zeros. Indices below 0 are zeros.
    buf: Vec<f32>,
    base: i64,
    fin: i64,
    sup: i64,
}

impl Stage {
    fn new() -> Self {
        Self {
            buf: vec![0.0; 2 * PAD],
            base: -(PAD as i64),
            fin: 0,
            sup: 0,
        }
    }

    #[inline]
    fn slice(&self, at: i64, len: usize) -> &[f32] {
        let s = (at - self.base) as usize;
        &self.buf[s..s + len]
    }

    fn truncate_to_final(&mut self) {
        self.buf.truncate((self.fin - self.base) as usize);
    }

    fn compact(&mut self) {
        if self.buf.len() > COMPACT_AT {
            let drop = self.buf.len() - KEEP;
            self.buf.drain(..drop);
            self.base += drop as i64;
        }
    }
}

#[derive(Clone)]
struct FrameSlot {
    id: i64,
    /// Octaves whose powers are final.
    final_mask: u16,
    pow: [f32; ALL_BINS],
    min_db: f32,
    max_db: f32,
}

/// The incremental front end.
pub struct Hcqt {
    c: FrontEndConsts,
    stages: Vec<Stage>,
    frames: Vec<FrameSlot>,
    db: Vec<f32>,
    /// Octave-frames computed, for the benchmark.
    pub octave_frames: u64,
}

impl Hcqt {
    pub fn new(c: FrontEndConsts) -> Self {
        Self {
            c,
            stages: (0..OCTAVES).map(|_| Stage::new()).collect(),
            frames: vec![
                FrameSlot {
                    id: i64::MIN,
                    final_mask: 0,
                    pow: [0.0; ALL_BINS],
                    min_db: SILENT_DB,
                    max_db: SILENT_DB,
                };
                FRAME_RING
            ],
            db: vec![0.0; MAX_CONTEXT * BINS],
            octave_frames: 0,
        }
    }

    /// Samples (22050 Hz) received so far.
    pub fn samples(&self) -> i64 {
        self.stages[0].fin
    }

    /// The newest frame whose top-octave kernel the input covers (frame f is centred on sample
    /// 256 f); -1 before there is one.
    pub fn newest_frame(&self) -> i64 {
        (self.samples() - 128).div_euclid(FRAME_HOP as i64)
    }

    /// Appends input samples and brings every stage up to date.
    pub fn push(&mut self, x: &[f32]) {
        let s0 = &mut self.stages[0];
        s0.truncate_to_final();
        s0.buf.extend_from_slice(x);
        s0.fin += x.len() as i64;
        s0.sup = s0.fin;
        s0.buf.resize(s0.buf.len() + PAD, 0.0);
        s0.compact();
        for k in 1..OCTAVES {
            let (lo, hi) = self.stages.split_at_mut(k);
            let prev = &lo[k - 1];
            let st = &mut hi[0];
            // y_k[n] = sum_j h[j] y_{k-1}[2n + j - 127]: final once 2n + 128 < fin_{k-1};
            // possibly non-zero while 2n - 127 < sup_{k-1}.
            let fin = if prev.fin >= 129 { (prev.fin - 129) / 2 + 1 } else { 0 };
            let sup = (prev.sup + 128) / 2;
            st.truncate_to_final();
            for n in st.fin..sup {
                st.buf.push(dot(&self.c.lowpass, prev.slice(2 * n - 127, TAPS)));
            }
            st.fin = fin;
            st.sup = sup;
            st.buf.resize(st.buf.len() + PAD, 0.0);
            st.compact();
        }
    }

    fn octave_powers(&mut self, slot: usize, f: i64, k: usize) {
        let stride = (FRAME_HOP >> k) as i64;
        let st = &self.stages[k];
        let y = st.slice(stride * f - 128, TAPS);
        let at = (OCTAVES - 1 - k) * BPO;
        let pow = &mut self.frames[slot].pow;
        for b in 0..BPO {
            let re = dot(&self.c.ka[b * TAPS..(b + 1) * TAPS], y);
            let im = dot(&self.c.kb[b * TAPS..(b + 1) * TAPS], y);
            pow[at + b] = re * re + im * im;
        }
        if stride * f + 127 < st.fin {
            self.frames[slot].final_mask |= 1 << k;
        }
        self.octave_frames += 1;
    }

    /// Log power (dB) of the 309 kept bins of frames `first .. first + n`, into `out`
    /// (`[n][309]`); frames before the start are silence.
    pub fn db_frames(&mut self, first: i64, n: usize, out: &mut [f32]) {
        for i in 0..n {
            let f = first + i as i64;
            let row = &mut out[i * BINS..(i + 1) * BINS];
            if f < 0 {
                row.fill(SILENT_DB);
                continue;
            }
            let slot = f.rem_euclid(FRAME_RING as i64) as usize;
            if self.frames[slot].id != f {
                self.frames[slot].id = f;
                self.frames[slot].final_mask = 0;
            }
            for k in 0..OCTAVES {
                if self.frames[slot].final_mask & (1 << k) == 0 {
                    self.octave_powers(slot, f, k);
                }
            }
            let fs = &mut self.frames[slot];
            let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
            for (b, v) in row.iter_mut().enumerate() {
                let s = self.c.scale[b];
                let d = 10.0 * (s * s * fs.pow[b + DROPPED] + 1e-10).log10();
                *v = d;
                lo = lo.min(d);
                hi = hi.max(d);
            }
            fs.min_db = lo;
            fs.max_db = hi;
        }
    }

    /// The level range over the `NORM_FRAMES` frames ending at `last` (frames never computed
    /// count as silence).
    fn range(&self, last: i64) -> (f32, f32) {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for f in last - NORM_FRAMES + 1..=last {
            let (a, b) = if f < 0 {
                (SILENT_DB, SILENT_DB)
            } else {
                let s = &self.frames[f.rem_euclid(FRAME_RING as i64) as usize];
                if s.id == f {
                    (s.min_db, s.max_db)
                } else {
                    (SILENT_DB, SILENT_DB)
                }
            };
            lo = lo.min(a);
            hi = hi.max(b);
        }
        (lo, hi)
    }

    /// The CNN's input for frames `first .. first + n` (`n` at most `MAX_CONTEXT`): `[n][264][8]`
    /// into `out`, normalised over the 172 frames ending at the last one.
    pub fn context(&mut self, first: i64, n: usize, out: &mut [f32]) {
        assert!(n <= MAX_CONTEXT && out.len() >= n * FRAME_LEN);
        let mut db = std::mem::take(&mut self.db);
        self.db_frames(first, n, &mut db);
        let (lo, hi) = self.range(first + n as i64 - 1);
        for i in 0..n {
            stack(
                &self.c,
                &db[i * BINS..(i + 1) * BINS],
                lo,
                hi,
                &mut out[i * FRAME_LEN..(i + 1) * FRAME_LEN],
            );
        }
        self.db = db;
    }
}

/// One frame of dB values to the CNN's input: normalised by the range `lo..hi`, batch norm,
/// harmonic stacking (`out`: `[264][8]`).
pub fn stack(c: &FrontEndConsts, db: &[f32], lo: f32, hi: f32, out: &mut [f32]) {
    let span = hi - lo;
    let norm = |d: f32| {
        let v = if span == 0.0 { 0.0 } else { (d - lo) / span };
        v * c.bn_mul + c.bn_add
    };
    for b in 0..CONTOUR_BINS {
        for (h, &s) in SHIFTS.iter().enumerate() {
            let src = b as isize + s;
            out[b * HARMONICS + h] = if (0..BINS as isize).contains(&src) {
                norm(db[src as usize])
            } else {
                0.0
            };
        }
    }
}

/// Stage lengths and reads of the original (batch) front end on a window of `len` samples,
/// for tests: the range of frames whose octave-`k` values do not touch its reflected edges.
pub fn batch_interior(len: usize, frames: usize, k: usize) -> std::ops::Range<usize> {
    let mut l = len;
    for _ in 0..k {
        l = (l - 2) / 2 + 1;
    }
    let stride = FRAME_HOP >> k;
    let first = 128usize.div_ceil(stride);
    let mut end = first;
    while end < frames && stride * end + 127 < l {
        end += 1;
    }
    first..end
}
