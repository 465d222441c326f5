//! `melody`: the pitch network's three uses. During an attack it names the note before YIN hears
//! a clean period (`attack_note`); before YIN starts a note it may hold it back, or name the
//! octave above it (`net_verdict`); early in a note YIN started it may move it up an octave
//! (`octave_fix`).
//! Runs on the audio thread, inside the processor's hop (the network runs at most once a hop,
//! its answer shared by the three; no allocation).

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

/// In a window a rise in level opened, a note the network names this surely needs one agreeing
/// hop fewer (`net_agree_hops` 2, the default: it starts on the first hop it is named).
/// Validation FluidR3_GM / TimGM6mb / MuseScore and fast-attack p90 (BENCHMARKS.md fourteenth
/// round): never 0.827 / 0.892 / 0.817, 46 / 48 ms (median 28 / 29); 0.98 the same; 0.95 0.827 /
/// 0.892 / 0.817, 46 / 47; 0.9 0.826 / 0.893 / 0.817, 46 / 46 (median 28 / 27); 0.85 0.822 /
/// 0.889 / 0.813, 46 / 45; 0.9 in the flux's windows too 0.825 / 0.892 / 0.817, 44 / 45 (a lower
/// mean: not taken).
const NET_AT_ONCE: f32 = 0.9;

/// For its first `OCTAVE_FIX_HOPS` hops (200 ms), a note YIN started (or the network, in an
/// attack) moves up an octave, its onset kept, when the network names the octave above it at
/// `OCTAVE_FIX_P` or surer on `OCTAVE_FIX_CALLS` hops in a row: an organ's 16-foot stop read as
/// the note while the network, early in the note, still named it too (`net_verdict` let it
/// play), and named the key a few hops later. Validation FluidR3_GM / TimGM6mb / MuseScore, fast
/// p90, and the organs (the train part's 17 and 19 on validation pieces, FluidR3_GM / TimGM6mb /
/// MuseScore; BENCHMARKS.md fourteenth round): without 0.824 / 0.888 / 0.814, 46 / 48 ms, 0.634
/// / 0.674 / 0.731; 25 hops, 0.8, 3 calls 0.824 / 0.890 / 0.813, 46 / 49 ms, 0.664 / 0.723 /
/// 0.776; 50 hops, 0.8, 3 calls 0.824 / 0.890 / 0.813, 46 / 49, 0.663 / 0.744 / 0.783 (a
/// tubular bell's octave: MuseScore's mallets 0.447 -> 0.438); 0.65 0.824 / 0.889 / 0.810, 0.668
/// / 0.765 / 0.780; 50 hops, 0.8, 5 calls 0.824 / 0.888 / 0.814, 46 / 48 ms, 0.660 / 0.740 /
/// 0.779. With `NET_AT_ONCE` and the decay rule: 5 calls 0.826 / 0.893 / 0.817, 46 / 46 ms,
/// 0.694 / 0.744 / 0.788; 4 calls (kept) 0.825 / 0.894 / 0.817, 46 / 46 ms, 0.693 / 0.756 /
/// 0.787; 75 hops and 5 calls 0.826 / 0.892 / 0.817, 0.687 / 0.756 / 0.774.
const OCTAVE_FIX_HOPS: u32 = 50;
const OCTAVE_FIX_P: f32 = 0.8;
const OCTAVE_FIX_CALLS: u32 = 4;

/// While the network names the octave above YIN's new note at least this surely (and at least
/// `OCTAVE_UP_P`), but not yet on `OCTAVE_UP_HOPS` calls, the note waits a hop (within the veto's
/// bound): played at once, an organ's note read by its 16-foot stop sounded an octave low for
/// 20-40 ms before the network's second naming or `octave_fix` moved it up, an extra note.
/// Validation FluidR3_GM / TimGM6mb / MuseScore, fast p90, and the organs view (BENCHMARKS.md
/// sixteenth round): never (as `NET_VETO`, 0.5) 0.828 / 0.902 / 0.836, 47 / 48 ms, 0.739 / 0.736
/// / 0.780; 0.42 0.827 / 0.902 / 0.837, 46 / 48 ms, 0.739 / 0.748 / 0.793; 0.35 0.828 / 0.904 /
/// 0.837, 46 / 48 ms, 0.743 / 0.752 / 0.806; 0.28 0.827 / 0.904 / 0.837, 46 / 46 ms, 0.741 /
/// 0.754 / 0.807; 0.2 0.825 / 0.904 / 0.834 (a tubular bell's or a music box's octave holds
/// their notes back: mallets 0.608 / 0.656 / 0.508 -> 0.577 / 0.666 / 0.482).
const OCTAVE_WAIT_P: f32 = 0.35;

/// What YIN's new note `k` becomes, given the network's answer `named` (its likeliest note and
/// that note's probability) and the calls in a row before this one on which it named the octave
/// above (`up_before`): the note to play (None: wait a hop) and the new count (`net_verdict`).
fn verdict(k: u8, named: (Option<u8>, f32), up_before: u32) -> (Option<u8>, u32) {
    let up = matches!(named, (Some(n), p) if n == k + 12 && p >= OCTAVE_UP_P);
    let up_count = if up { up_before + 1 } else { 0 };
    let play = match named {
        (Some(n), _) if up && up_count >= OCTAVE_UP_HOPS => Some(n),
        (Some(_), p) if up && p >= OCTAVE_WAIT_P => None,
        (Some(n), p) if n != k && p >= NET_VETO => None,
        _ => Some(k),
    };
    (play, up_count)
}

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
        let (note, p) = self.net_at(h)?;
        let agree = self.net_agree + FLUX_AGREE_MORE * self.flux_window as u32;
        let agree = if p >= NET_AT_ONCE && !self.flux_window { agree - 1 } else { agree }.max(1);
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
    /// organs labelled by their keys, names the key; while it names it at `OCTAVE_WAIT_P` or
    /// surer, not yet on enough calls, `k` waits). (Taking the network's note at once when it
    /// is an octave from YIN's scored lower on the validation part: 0.717 / 0.754 up an octave
    /// only, 0.702 / 0.734 either way.)
    pub(super) fn net_verdict(&mut self, k: u8, h: u64) -> Option<u8> {
        let Some(named) = self.net_at(h) else {
            return Some(k);
        };
        let (play, up_count) = verdict(k, named, self.up_count);
        self.up_count = up_count;
        play
    }

    /// The network's answer on the newest audio at hop `h` (None: no network). It runs once a
    /// hop at most: `attack_note`, `net_verdict` and `octave_fix` share the answer.
    fn net_at(&mut self, h: u64) -> Option<(Option<u8>, f32)> {
        if self.net_hop != Some(h) {
            let net = self.net.as_mut()?;
            self.net_named = net.run(&self.buf[self.pos..self.pos + self.span]);
            self.net_hop = Some(h);
        }
        Some(self.net_named)
    }

    /// Moves the sounding note up an octave (`OCTAVE_FIX_HOPS`), keeping its onset: a note-off
    /// for it and a note-on for the octave above, stamped at the note's onset. From then on
    /// YIN's reading an octave under it is that note (`octave_up`).
    pub(super) fn octave_fix(&mut self, h: u64, rms: f32, now16: u64) {
        let Some(a) = self.active.filter(|&a| a + 12 <= 127) else {
            return;
        };
        if self.octave_up || self.active_hops > OCTAVE_FIX_HOPS {
            self.fix_count = 0;
            return;
        }
        let named = self.net_at(h);
        let up = matches!(named, Some((Some(n), p)) if n == a + 12 && p >= OCTAVE_FIX_P);
        self.fix_count = if up { self.fix_count + 1 } else { 0 };
        if self.fix_count >= OCTAVE_FIX_CALLS {
            let (onset, from) = (self.active_onset, self.active_from);
            self.start_note(a + 12, rms, onset, now16);
            self.active_from = from;
            self.octave_up = true;
            self.candidate = Some(a + 12);
            self.fix_count = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_waits_while_the_octave_above_is_named_surely_but_once() {
        // YIN reads A3 (57); the network names A4 (69) at 0.4: not yet twice, so A3 waits.
        assert_eq!(verdict(57, (Some(69), 0.4), 0), (None, 1));
        // Named again: the octave above plays.
        assert_eq!(verdict(57, (Some(69), 0.4), 1), (Some(69), 2));
    }

    #[test]
    fn a_note_plays_when_the_octave_above_is_named_only_faintly_or_not_at_all() {
        // Under OCTAVE_WAIT_P the octave above counts towards OCTAVE_UP_HOPS but holds nothing.
        assert_eq!(verdict(57, (Some(69), 0.25), 0), (Some(57), 1));
        assert_eq!(verdict(57, (Some(57), 0.9), 1), (Some(57), 0));
        assert_eq!(verdict(57, (None, 0.9), 1), (Some(57), 0));
    }

    #[test]
    fn a_note_waits_while_another_is_named_surely() {
        assert_eq!(verdict(57, (Some(59), 0.6), 0), (None, 0));
        assert_eq!(verdict(57, (Some(59), 0.4), 0), (Some(57), 0));
    }
}
