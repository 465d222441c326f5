//! Where a legato note began, and whether a note still sounds, from partials (`melody`). Runs on
//! the audio thread, inside the `melody` processor: `onset_back` once per note that follows
//! another (at most `LOOK_STEPS` windows of `WINDOW` samples for each partial), `odd_over_even`
//! on the hops an octave-up candidate waits (one window for each of six partials); fixed tables,
//! no allocation.
//!
//! In a slurred line (bowed strings, voices, winds) the next note fades in under the last one,
//! and YIN hears it as the pitch only once it dominates, 50-150 ms after it began. Its partials
//! that are not the old note's, though, rise from nothing the moment it sounds. This walks back
//! from now over windows of the recent audio and finds where their energy was still 9 dB under
//! what it is now (15 dB for a slow swell).

/// Sample rate of the audio it reads (the tracker's 16 kHz).
const RATE: f32 = 16000.0;
/// Window (32 ms at 16 kHz: partials two semitones apart resolve from about 200 Hz).
pub(crate) const WINDOW: usize = 512;
/// Step between windows walking back (8 ms), and how many steps at most (512 ms: a slow string
/// section or a mallet's note is heard as its pitch up to 300 ms after it began). Validation part
/// (onset F1 FluidR3_GM / TimGM6mb / MuseScore, BENCHMARKS.md fifteenth round): 32 steps 0.825 /
/// 0.894 / 0.817, 48 0.826 / 0.897 / 0.819, 64 0.826 / 0.899 / 0.820, 96 as 64. The walk stops at
/// the first window under the rise's level: its worst case (no rise found: 64 windows of six
/// partials) is about 0.2 M multiply-adds, once per note.
const STEP: usize = 128;
pub(crate) const LOOK_STEPS: usize = 64;
/// Samples of history it needs.
pub(crate) const HISTORY: usize = WINDOW + STEP * LOOK_STEPS;
/// Partials of the new note looked at (1..=PARTIALS), under this frequency.
const PARTIALS: usize = 6;
const TOP_HZ: f32 = 6000.0;
/// A partial within this of any of the old note's is shared (the window's main lobe).
const SHARED_HZ: f32 = 1.5 * RATE / WINDOW as f32;
/// Energy this far under now's (9 dB) is "not yet sounding" (tuned on the validation part: 6 dB, 9
/// dB and 15 dB gave mean onset F1 0.711, 0.733 and 0.717 on FluidR3_GM).
const RISE_RATIO: f32 = 1.0 / 8.0;
/// A note found rising is followed further back, at most `SWELL_STEPS` steps (64 ms), to where
/// its partials were 15 dB under now. Validation part (mean onset F1 FluidR3_GM / TimGM6mb):
/// without 0.782 / 0.852; 15 dB and 6 / 8 / 12 / 20 steps 0.787 / 0.860, 0.789 / 0.861, 0.787 /
/// 0.861, 0.784 / 0.860; 12 and 20 dB over 12 steps 0.788 / 0.857 and 0.783 / 0.855. As kept
/// (the window found at 9 dB may itself be 15 dB under): 0.788 / 0.861.
const SWELL_RATIO: f32 = 0.0316;
const SWELL_STEPS: usize = 8;
/// How many windows (64 ms) further back a slow swell's start is extrapolated at most
/// (`swell_start`). Validation part (onset F1 FluidR3_GM / TimGM6mb / MuseScore; BENCHMARKS.md
/// fifteenth round): none 0.828 / 0.898 / 0.822; 4 windows, and 8, whatever the level there
/// 0.826 / 0.899 / 0.833, 0.826 / 0.897 / 0.831 (bowed up, plucked and voices down); 8 where the
/// partials are under -20 dB 0.829 / 0.901 / 0.834, under about -15 dB 0.829 / 0.902 / 0.836
/// (bowed 0.518 / 0.725 / 0.630 -> 0.559 / 0.772 / 0.763; plucked and voices 0.01-0.03 down), 12
/// under -20 dB as 8. Only where -9 and -15 dB lie two windows or more apart (an abrupt onset
/// crosses both within a step of the windows' own smoothing; extrapolated, a legato note that
/// enters at once was placed 9 ms early): 0.828 / 0.902 / 0.836 (bowed 0.554 / 0.772 / 0.761).
const SWELL_EXTEND: usize = 8;
/// Windows at least between a swell's -9 and -15 dB points for it to be extrapolated (above).
const SWELL_APART: usize = 2;
/// Where in the first window that hears the note (-9 dB) the note began, back from its end: a
/// Hann window holds a quarter to a third of a steady sound's amplitude when the sound fills its
/// last 37-45% (30%, 37% and 45% scored the same on the validation part).
const ONSET_IN_WINDOW: usize = WINDOW * 37 / 100;

fn hz_of(midi: u8) -> f32 {
    440.0 * 2f32.powf((midi as f32 - 69.0) / 12.0)
}

/// The Goertzel coefficient (2 cos w) of frequency `f_hz` at `RATE`.
fn goertzel_coef(f_hz: f32) -> f32 {
    2.0 * (2.0 * std::f32::consts::PI * f_hz / RATE).cos()
}

/// Where a note began by its partials' rise (`onset_back`), in samples back from now.
pub(crate) struct Rise {
    /// Where the note began.
    pub(crate) back: usize,
    /// Where the window it was found rising in begins (further back than `back`).
    pub(crate) window_back: usize,
}

pub(crate) struct PartialRise {
    hann: [f32; WINDOW],
    /// Goertzel coefficients (2 cos w) of the partials in use for the current call.
    coefs: [f32; PARTIALS],
}

impl PartialRise {
    pub(crate) fn new() -> Self {
        let mut hann = [0.0; WINDOW];
        for (k, w) in hann.iter_mut().enumerate() {
            *w = 0.5 - 0.5 * (2.0 * std::f32::consts::PI * (k as f32 + 0.5) / WINDOW as f32).cos();
        }
        Self {
            hann,
            coefs: [0.0; PARTIALS],
        }
    }

    /// Energy of the partials in `self.coefs[..n]` over the window ending at `x`'s end.
    fn energy(&self, x: &[f32], n: usize) -> f32 {
        let seg = &x[x.len() - WINDOW..];
        let mut total = 0.0;
        for &c in &self.coefs[..n] {
            let (mut s1, mut s2) = (0.0f32, 0.0f32);
            for (&v, &w) in seg.iter().zip(&self.hann) {
                let s = v * w + c * s1 - s2;
                s2 = s1;
                s1 = s;
            }
            total += s1 * s1 + s2 * s2 - c * s1 * s2;
        }
        total
    }

    /// Where, back from now (the end of `x`, 16 kHz, oldest first, at least `HISTORY` long), note
    /// `new`, which took over from `old`, began; the windows walked end at most `limit` samples
    /// back (and begin up to `WINDOW` further). None
    /// when `new` has no partial apart from `old`'s (an octave or twelfth) or nothing sounds.
    pub(crate) fn onset_back(&mut self, x: &[f32], new: u8, old: u8, limit: usize) -> Option<Rise> {
        debug_assert!(x.len() >= HISTORY);
        let (f_new, f_old) = (hz_of(new), hz_of(old));
        let mut n = 0;
        for h in 1..=PARTIALS {
            let f = f_new * h as f32;
            if f > TOP_HZ {
                break;
            }
            let k = (f / f_old).round().max(1.0);
            if (f - k * f_old).abs() > SHARED_HZ {
                self.coefs[n] = goertzel_coef(f);
                n += 1;
            }
        }
        if n == 0 {
            return None;
        }
        let now = self.energy(x, n);
        if now <= 1e-9 {
            return None;
        }
        let steps = (limit / STEP).min(LOOK_STEPS);
        let rose = (1..=steps).find(|&j| self.energy(&x[..x.len() - j * STEP], n) < now * RISE_RATIO)?;
        // A slow swell (a string section, a pad, a voice) is 9 dB under now well after it
        // began: its start is where it was 15 dB under, if that lies a little further back.
        let swell = (rose..=steps.min(rose + SWELL_STEPS)).find(|&j| self.energy(&x[..x.len() - j * STEP], n) < now * SWELL_RATIO);
        let j = match swell {
            Some(s) if s >= rose + SWELL_APART => self.swell_start(x, n, now, rose, s, steps),
            _ => swell.unwrap_or(rose),
        };
        Some(Rise {
            back: (j - 1) * STEP + ONSET_IN_WINDOW,
            window_back: j * STEP + WINDOW,
        })
    }

    /// Where a slow swell began (a window, back from now), found 9 dB under `now` at window `rose`
    /// and 15 dB under at window `swell` (further back): a swell linear in amplitude (a
    /// SoundFont's attack; most bows and voices come close) falls from 0.35 to 0.18 of its level
    /// between the two and reaches nothing as far again. So: as far again before `swell`, at most
    /// `SWELL_EXTEND` windows, where the partials are still 15 dB under `now` there (over a floor,
    /// the last note still ringing in them, they are not: `swell` then).
    fn swell_start(&self, x: &[f32], n: usize, now: f32, rose: usize, swell: usize, steps: usize) -> usize {
        let far = (swell + (swell - rose).min(SWELL_EXTEND)).min(steps);
        if self.energy(&x[..x.len() - far * STEP], n) < now * SWELL_RATIO {
            far
        } else {
            swell
        }
    }

    /// The energy of note `note`'s odd partials (1, 3, 5) over its even ones (2, 4, 6) in the
    /// newest window of `x` (16 kHz, at least `WINDOW` long). A note an octave above it has only
    /// the even ones: while the odd ones sound, `note` is still what plays.
    pub(crate) fn odd_over_even(&mut self, x: &[f32], note: u8) -> f32 {
        let mut energy = [0.0f32; 2];
        self.each_partial(x, note, PARTIALS, |h, e| energy[h % 2] += e);
        energy[1] / energy[0].max(1e-12)
    }

    /// The energy of note `note`'s partials 1-4, of its odd partials 5-11 and of its even
    /// partials 6-12 (those under `TOP_HZ`) in the newest window of `x`.
    pub(crate) fn upper_partials(&mut self, x: &[f32], note: u8) -> (f32, f32, f32) {
        let (mut low, mut odd, mut even) = (0.0f32, 0.0f32, 0.0f32);
        self.each_partial(x, note, 12, |h, e| match h {
            1..=4 => low += e,
            _ if h % 2 == 1 => odd += e,
            _ => even += e,
        });
        (low, odd, even)
    }

    /// `add(h, energy)` for each of note `note`'s partials 1..=`count` under `TOP_HZ`, in the
    /// newest window of `x`.
    fn each_partial(&mut self, x: &[f32], note: u8, count: usize, mut add: impl FnMut(usize, f32)) {
        let f = hz_of(note);
        for h in 1..=count {
            if f * h as f32 > TOP_HZ {
                break;
            }
            self.coefs[0] = goertzel_coef(f * h as f32);
            add(h, self.energy(x, 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(midi: u8, from: usize, to: usize, x: &mut [f32]) {
        let f = hz_of(midi);
        for (i, v) in x.iter_mut().enumerate().take(to).skip(from) {
            let t = i as f32 / RATE;
            for h in 1..=4 {
                *v += 0.2 / h as f32 * (2.0 * std::f32::consts::PI * f * h as f32 * t).sin();
            }
        }
    }

    /// A4 throughout, B4 from `began` samples before the end: where B4 is found to have begun,
    /// asserted within one step of `began`.
    fn assert_b4_found_under_a4(began: usize) {
        let mut x = vec![0.0; HISTORY];
        tone(69, 0, HISTORY, &mut x);
        tone(71, HISTORY - began, HISTORY, &mut x);
        let back = PartialRise::new().onset_back(&x, 71, 69, HISTORY).expect("found").back;
        assert!(
            (back as i64 - began as i64).abs() <= STEP as i64,
            "onset {back} samples back, began {began} back"
        );
    }

    #[test]
    fn finds_where_a_legato_note_began_under_the_old_one() {
        // B4 comes in 1200 samples (75 ms) before the end.
        assert_b4_found_under_a4(1200);
    }

    #[test]
    fn finds_where_a_slow_swell_began_not_where_it_was_loud() {
        // A4 throughout; B4 swells in linearly over its last 3200 samples (200 ms). Placed where
        // it was 9 dB under its end it lands 68 ms late; where it was 15 dB under, 44 ms (the
        // evaluation's tolerance is 50 ms); extrapolated as far again (`swell_start`), 4 ms.
        let mut x = vec![0.0; HISTORY];
        tone(69, 0, HISTORY, &mut x);
        let mut swell = vec![0.0; HISTORY];
        tone(71, HISTORY - 3200, HISTORY, &mut swell);
        for (k, (v, s)) in x.iter_mut().zip(&swell).enumerate().skip(HISTORY - 3200) {
            *v += s * (k + 3200 - HISTORY) as f32 / 3200.0;
        }
        let back = PartialRise::new().onset_back(&x, 71, 69, HISTORY).expect("found").back;
        assert!((back as i64 - 3200).abs() <= 300, "onset {back} samples back, began 3200 back");
    }

    #[test]
    fn finds_a_note_that_began_400_ms_before_it_was_heard() {
        // B4 from 6400 samples (400 ms) back: further than the 256 ms the walk reached before,
        // where a slow string section's note is still only just heard.
        assert_b4_found_under_a4(6400);
    }

    #[test]
    fn nothing_for_a_note_whose_partials_are_all_the_old_ones() {
        let mut x = vec![0.0; HISTORY];
        tone(57, 0, HISTORY, &mut x);
        tone(69, HISTORY - 1200, HISTORY, &mut x);
        assert!(PartialRise::new().onset_back(&x, 69, 57, HISTORY).is_none());
    }

    #[test]
    fn a_note_sounding_all_along_is_not_placed_anywhere() {
        let mut x = vec![0.0; HISTORY];
        tone(71, 0, HISTORY, &mut x);
        assert!(PartialRise::new().onset_back(&x, 71, 69, HISTORY).is_none());
    }
}
