//! `melody`: the pitch network's two uses. During an attack it names the note before YIN hears
//! a clean period (`attack_note`); before YIN starts a note it may hold it back, or name the
//! octave above it (`net_verdict`).
//! Runs on the audio thread, inside the processor's hop (at most two network runs a hop, no
//! allocation).

use super::{MelodyProc, ATTACK_COOLDOWN, ATTACK_LOOK, LEVELS, NET_VETO, RATE, WIN};

/// The note the network names must be a period of the sound: YIN's normalised difference at
/// its period (the best of the neighbouring lags) under this. Transients read near 1.
const NET_PERIODIC: f32 = 0.6;
/// An attack: the level rises this much over the lowest of the last `ATTACK_LOOK` hops.
const ATTACK_RISE: f32 = 1.4;
/// Hops after an attack during which the network may name its note (48 ms).
const ATTACK_HOPS: u32 = 12;
/// Calls in a row (4 ms apart while a note waits; the count runs on over notes) on which the
/// network must name the octave above YIN's new note for that octave to play. Mean onset F1 on the training part's lines (which hold the organs:
/// the validation part has none), FluidR3_GM / TimGM6mb, and on the validation part: never
/// 0.847 / 0.847 and 0.801 / 0.861; 1 call 0.865 / 0.872 and 0.796 / 0.856 (the network names
/// the octave above a bassoon's or a voice's low note now and then); 3 calls 0.865 / 0.874 and
/// 0.801 / 0.858; 5 calls 0.865 / 0.873 and 0.801 / 0.861 (keys 0.773 / 0.729 -> 0.876 / 0.882).
/// With the ninth round's network, on the organs of an unseen SoundFont (the train part's
/// programs 17 and 19 played by MuseScore's, on validation pieces: BENCHMARKS.md tenth round) and
/// the validation part: 2 calls 0.765 and 0.814 / 0.869; 3 calls 0.785 and 0.814 / 0.871; 5
/// calls 0.732 and 0.813 / 0.872; 8 calls 0.722. With the harmonic network (eleventh round) and
/// `net_confidence` 0.6, organs and validation FluidR3_GM / TimGM6mb / MuseScore: 1 call 0.794
/// and 0.818 / 0.886 / 0.817; 2 calls 0.789 and 0.824 / 0.886 / 0.817; 3 calls 0.747 and the same
/// validation; 5 calls 0.715. With the network that reads the rise (twelfth round) and
/// `net_confidence` 0.8: 1 call 0.686, 2 calls 0.685, 3 calls 0.672 (organs).
const OCTAVE_UP_HOPS: u32 = 2;
/// The probability at least which the network's likeliest note must have, as the octave above
/// YIN's, to count towards `OCTAVE_UP_HOPS`. Organs and validation FluidR3_GM / TimGM6mb /
/// MuseScore with the network that reads the rise (BENCHMARKS.md, twelfth round): 0.5 (NET_VETO,
/// as before) 0.685 and 0.823 / 0.888 / 0.817; 0.3 0.715 and 0.822 / 0.888 / 0.814; 0.2 0.730
/// and the same; 0.1 0.730 (MuseScore's mallets 0.475 -> 0.447: a tubular bell's octave).
const OCTAVE_UP_P: f32 = 0.2;

/// An attack also where new partials rise and the level does not (a music box's or a harp's note
/// struck under the last one, still ringing as loud), in a periodic sound: the spectral flux
/// (`flux.rs`) at least this. A window opened so needs `FLUX_AGREE_MORE` more agreeing hops (a
/// swell, a vibrato or a blend rises in its partials too). Validation FluidR3_GM / TimGM6mb /
/// MuseScore, fast-attack p90, organs (BENCHMARKS.md thirteenth round): without 0.822 / 0.888 /
/// 0.814, 49 / 48 ms, 0.730; 0.5 with no more hops 0.821 / 0.885 / 0.811, 43 / 46 ms, 0.728; 0.5
/// with one more 0.825 / 0.887 / 0.814, 44 / 47 ms, 0.756; 0.35 with one more 0.820 / 0.888 /
/// 0.814, 45 / 49 ms, 0.775 (all these in any sound: noise opened windows on most hops, the
/// callback's median 68 -> 170 us); 0.5 with one more, periodic sound only (shipped) 0.824 /
/// 0.888 / 0.814, 46 / 48 ms, 0.731.
const FLUX_ONSET: f32 = 0.5;
const FLUX_AGREE_MORE: u32 = 1;

impl MelodyProc {
    /// The attack detector and the pitch network, at hop `h` (level `rms`; `strict`: what YIN
    /// heard at its own threshold). Returns the note to start now, if the network names one
    /// during an attack, surely enough, that is not the sounding note and that YIN does not
    /// clearly hear otherwise.
    pub(super) fn attack_note(&mut self, h: u64, rms: f32, voiced: bool, strict: Option<(f32, f32)>) -> Option<u8> {
        self.net.as_ref()?;
        self.since_attack = self.since_attack.saturating_add(1);
        let flux = if self.flux_attacks {
            self.flux.measure(&self.buf[self.pos..self.pos + self.span])
        } else {
            0.0
        };
        if self.attack_left == 0 && self.since_attack >= ATTACK_COOLDOWN && rms >= self.gate {
            let lo = (1..=ATTACK_LOOK.min(h))
                .map(|b| self.levels[((h - b) % LEVELS as u64) as usize])
                .fold(f32::INFINITY, f32::min);
            // (Only in a periodic sound: noise, a breath or a bow's hiss, rises in its bins at random.)
            let partials = flux >= FLUX_ONSET && strict.is_some();
            if partials || rms >= ATTACK_RISE * lo {
                self.flux_window = partials;
                self.attack_left = ATTACK_HOPS;
                self.since_attack = 0;
                self.attack16 = self.n16.saturating_sub((WIN / 2) as u64);
            }
        }
        if self.attack_left == 0 {
            return None;
        }
        self.attack_left -= 1;
        if !voiced {
            // Too quiet for YIN's difference function this hop (it is not computed).
            return None;
        }
        let net = self.net.as_mut()?;
        let (note, p) = net.run(&self.buf[self.pos..self.pos + self.span]);
        let agree = self.net_agree + FLUX_AGREE_MORE * self.flux_window as u32;
        let sure = note.filter(|_| p >= self.net_confidence);
        if sure.is_some() && sure == self.net_note {
            self.net_count += 1;
        } else {
            self.net_note = sure;
            self.net_count = sure.is_some() as u32;
        }
        let k = sure?;
        if self.net_count < agree || (k as f32) < self.lowest_note || (k as f32) > self.highest_note || self.active == Some(k) {
            return None;
        }
        // YIN clearly hears another note: not this one.
        if strict.is_some_and(|(f, ap)| (f - k as f32).abs() >= 0.5 && ap < 0.5 * self.threshold) {
            return None;
        }
        // The note's period must be a period of the sound (d holds this hop's difference function).
        let tau = RATE as f32 / (440.0 * 2f32.powf((k as f32 - 69.0) / 12.0));
        let t = tau.round() as usize;
        if t < 2 || t + 1 > self.tau_max {
            return None;
        }
        let dip = |t: usize| self.d[t - 1].min(self.d[t]).min(self.d[t + 1]);
        let d = dip(t);
        if d >= NET_PERIODIC {
            return None;
        }
        // A sound periodic at a half or a third of the period is the octave or the twelfth
        // above (a period's multiples are periods too): not this note.
        for m in [2.0, 3.0] {
            let part = (tau / m).round() as usize;
            if part > self.tau_min.max(1) && dip(part) < d + 0.05 {
                return None;
            }
        }
        self.attack_left = 0;
        self.net_count = 0;
        Some(k)
    }

    /// The note to start where YIN would start `k`: `k`, unless the pitch network, on the newest
    /// audio, surely names another (the blend of two notes in a legato change reads as a pitch
    /// between them for a while, a breathy or bowed attack as a stray period: the network hears
    /// the whole spectrum): none yet; or the octave above `k` when the network has named it
    /// (`OCTAVE_UP_P`) on `OCTAVE_UP_HOPS` calls in a row (an organ's 16-foot stop sounds an octave
    /// under the key, and is the sound's true period: YIN reads it; the network, trained on
    /// organs labelled by their keys, names the key). At most two network runs a hop (this and
    /// `attack_note`). (Taking the network's note at once when it is an octave from YIN's scored
    /// lower on the validation part: 0.717 / 0.754 up an octave only, 0.702 / 0.734 either way.)
    pub(super) fn net_verdict(&mut self, k: u8) -> Option<u8> {
        let Some(net) = self.net.as_mut() else {
            return Some(k);
        };
        let named = net.run(&self.buf[self.pos..self.pos + self.span]);
        let up = matches!(named, (Some(n), p) if n == k + 12 && p >= OCTAVE_UP_P);
        self.up_count = if up { self.up_count + 1 } else { 0 };
        match named {
            (Some(n), _) if up && self.up_count >= OCTAVE_UP_HOPS => Some(n),
            (Some(n), p) if n != k && p >= NET_VETO => None,
            _ => Some(k),
        }
    }
}
