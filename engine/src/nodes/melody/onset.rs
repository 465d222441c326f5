//! `melody`: where a note began. A note is heard (YIN's period, the network's name for it) some
//! hops after it began; these place its onset back where its sound did: the attack's rise in
//! level, a legato glide's first hop, the rise of its own partials under the last note, the
//! passage before it. Runs on the audio thread, inside the processor's hop (bounded work, no
//! allocation).

use super::{MelodyProc, HOP, LEVELS, WIN};

/// A note heard this many hops or fewer (200 ms) may be the passage into the next (`passing`).
const PASSING_HOPS: u32 = 50;
/// An attack's rise counts from no lower than this under the note's level now (-30 dB): noise
/// and dither in a rest flicker by more than the 6 dB that mark a rise (a harp note was placed
/// 90 ms before its sound). Mean onset F1 on the larger validation part, FluidR3_GM / TimGM6mb:
/// no floor 0.672 / 0.728, -30 dB 0.680 / 0.734 (-50 dB and -30 dB scored the same).
const RISE_FLOOR: f32 = 0.03;
/// A note that starts at most this long (16 kHz samples: 100 ms) after the last ended is legato.
const GAP_LEGATO: u64 = 1600;
/// A note that takes over from a sounding one began no earlier than this (16 kHz samples: 30
/// ms) before the last hop that still heard the old note clearly: a tremolo's dip before that
/// is the old note's, not the new one's attack (FluidR3_GM's calliope was placed 35-115 ms
/// early). Mean onset F1 on the validation part, FluidR3_GM / TimGM6mb: no bound 0.716 /
/// 0.820; 0 ms 0.732 / 0.819; 15 ms 0.732 / 0.820; 30 ms 0.732 / 0.821; 60 ms 0.730 / 0.821.
const LEGATO_BACK: u64 = 480;

/// A rise found only in a window that reaches back over the old note's onset places the new note
/// at that onset only when the old note began at most this long ago (16 kHz samples: 256 ms): a
/// short note there was a misreading of the new one's attack (a bell's), while over a longer one
/// whose partials the new note's do not part from (A2 under C#3: the new note's own partials
/// never rose, the old note's attack reads as their rise out of the silence before it) the old
/// note was a note of its own. Validation part (onset F1 FluidR3_GM / TimGM6mb / MuseScore, with
/// `LOOK_STEPS` 64 and notes after any gap): never 0.825 / 0.898 / 0.817, 200 ms 0.827 / 0.898 /
/// 0.821, 256 ms 0.828 / 0.898 / 0.822, always 0.829 / 0.900 / 0.824 (but a slurred C#3 placed at
/// the onset of the A2 before it, 356 ms early).
const RISE_AT_OLD_ONSET_MAX: usize = 4096;

impl MelodyProc {
    /// Where the attack of a note confirmed now began (16 kHz time): a slow attack (bowed,
    /// blown, sung) is heard as a pitch only well after its sound starts rising. Looks back from
    /// `first` (when the pitch was first heard) up to 160 ms for the quietest hop; if the level
    /// has risen 12 dB or more since, the attack began where it last rose 6 dB above that
    /// (mean onset F1 on the larger validation part, FluidR3_GM / TimGM6mb: first rise 0.689 /
    /// 0.740, last rise 0.698 / 0.739).
    pub(super) fn attack_start(&self, first: u64, now_rms: f32) -> u64 {
        let first_hop = first / HOP as u64;
        let newest = self.hops_done.saturating_sub(1);
        let oldest = newest.saturating_sub(LEVELS as u64 - 1).max(first_hop.saturating_sub(40));
        if first_hop <= oldest || first_hop > newest {
            return first;
        }
        let level = |h: u64| self.levels[(h % LEVELS as u64) as usize];
        let (mut lo_hop, mut lo) = (first_hop, level(first_hop));
        for h in oldest..=first_hop {
            if level(h) < lo {
                (lo_hop, lo) = (h, level(h));
            }
        }
        if now_rms < 4.0 * lo.max(1e-5) {
            return first;
        }
        // A flicker of the rest's noise far under the note is not its attack.
        let floor = lo.max(1e-5).max(now_rms * RISE_FLOOR);
        // The attack is the last rise out of the quiet: a tremolo's or an articulation's dip
        // inside the last note, earlier, is not this one's (a calliope's notes were placed up
        // to 140 ms early from the first rise after the quietest hop).
        let mut rise = first_hop;
        while rise > lo_hop && level(rise - 1) > 2.0 * floor {
            rise -= 1;
        }
        // A hop's level is that of the window ending at it: the rise sits half a window back.
        let start = (rise * HOP as u64).saturating_sub((WIN / 2) as u64).min(first);
        match self.active {
            // Legato: a dip inside the sounding note is not the next one's attack.
            Some(_) => start.max(self.last_held16.saturating_sub(LEGATO_BACK)).min(first),
            None => start,
        }
    }

    /// Where a legato change from note `old` to note `new` began (16 kHz time): wind, voice and
    /// bowed strings glide from one pitch to the next, and the new note is only heard as itself
    /// at the end of the glide. Walks back from `first` (at most 100 ms) over the hops whose
    /// pitch lies between the two notes, away from the old one; the change began at the first.
    pub(super) fn glide_start(&self, first: u64, old: u8, new: u8) -> u64 {
        let newest = self.hops_done.saturating_sub(1);
        let mut h = (first / HOP as u64).min(newest);
        let limit = h.saturating_sub(25).max(newest.saturating_sub(LEVELS as u64 - 1));
        let (lo, hi) = if new > old {
            (old as f32 + 0.15, new as f32 + 0.5)
        } else {
            (new as f32 - 0.5, old as f32 - 0.15)
        };
        let mut start = None;
        while h > limit {
            let p = self.pitches[(h % LEVELS as u64) as usize];
            if !(p > lo && p < hi) {
                break;
            }
            start = Some(h);
            h -= 1;
        }
        match start {
            // The hop's window ends at its time: the change sits half a window back.
            Some(h) => (h * HOP as u64).saturating_sub((WIN / 2) as u64).min(first),
            None => first,
        }
    }

    /// Where legato note `new` began under the sounding `old` (16 kHz time), by its own partials
    /// (`partial_rise`); no earlier than `old`'s onset, and there only when `old` was short
    /// (`RISE_AT_OLD_ONSET_MAX`).
    pub(super) fn rise_start(&mut self, old: u8, new: u8, now16: u64) -> Option<u64> {
        let limit = now16.saturating_sub(self.active_onset) as usize;
        let x = &self.buf[self.pos..self.pos + self.span];
        let rise = self.rise.onset_back(x, new, old, limit)?;
        if rise.window_back > limit && limit > RISE_AT_OLD_ONSET_MAX {
            // Heard rising only in a window that reaches back over `old`'s onset.
            return None;
        }
        Some(now16.saturating_sub(rise.back as u64))
    }

    /// A note that starts after the last one ended, at another pitch: placed by its partials like
    /// `rise_start` (out of the last note's release, or out of the rest). Whatever the gap: a slow
    /// string's or a voice's slur read as no pitch for longer than `GAP_LEGATO` ended the old note
    /// (FluidR3_GM's slow strings: a note found 290 ms after it began, 110 ms after the last
    /// ended, was placed where YIN first heard it), and a mallet's note after its last one's tail
    /// was given up rises out of it all the same. Validation part (onset F1 FluidR3_GM / TimGM6mb /
    /// MuseScore, with `LOOK_STEPS` 64, before `RISE_AT_OLD_ONSET_MAX`): gaps up to 100 ms 0.826 /
    /// 0.899 / 0.820, 300 ms 0.827 / 0.899 / 0.822, 500 ms 0.827 / 0.900 / 0.823, 1 s 0.828 /
    /// 0.900 / 0.823, any 0.829 / 0.900 / 0.824 (mallets 0.594 / 0.643 / 0.463 -> 0.621 / 0.680 /
    /// 0.518); with it, any gap: 0.828 / 0.898 / 0.822.
    pub(super) fn after_gap(&mut self, new: u8, now16: u64) -> Option<u64> {
        if self.last_note == 0 || self.last_note == new {
            return None;
        }
        self.rise_start(self.last_note, new, now16)
    }

    /// Where a note that starts just after the last one ended, at another pitch, began (16 kHz
    /// time): the blend of the two read as no pitch for a few hops and ended the old note, and
    /// the new one began about where the old one was last heard clearly (`LEGATO_BACK` before
    /// it), not after the blend. Mean onset F1 on the validation part, FluidR3_GM / TimGM6mb:
    /// without 0.732 / 0.821; at the last clear hop + 30 ms 0.731 / 0.820, + 0 0.734 / 0.822,
    /// - 30 ms 0.734 / 0.823 (bowed strings on FluidR3_GM 0.412 -> 0.436).
    pub(super) fn after_blend(&self, new: u8, now16: u64) -> Option<u64> {
        let gap = now16.saturating_sub(self.last_off16);
        if self.last_note == 0 || self.last_note == new || gap > GAP_LEGATO || self.last_clear16 == 0 {
            return None;
        }
        // A rest (the level fell 12 dB or more since the old note was heard) is no blend: the new
        // note's own attack places it.
        let level = |h: u64| self.levels[(h % LEVELS as u64) as usize];
        let newest = self.hops_done.saturating_sub(1);
        let from = (self.last_clear16 / HOP as u64).max(newest.saturating_sub(LEVELS as u64 - 1));
        let quietest = (from..=newest).map(level).fold(f32::INFINITY, f32::min);
        if quietest < 0.25 * level(newest) {
            return None;
        }
        Some(self.last_clear16.saturating_sub(LEGATO_BACK))
    }

    /// Whether the sounding note `old`, which note `new` now takes over from, was only the
    /// passage between its predecessor and `new`: short, taken over from another note, and an
    /// octave from either (a slow attack's blend under a bow change or a slur reads an octave
    /// off for a while). Then `new` began when `old` did.
    pub(super) fn passing(&self, old: u8, new: u8) -> bool {
        let octave = |a: u8, b: u8| matches!(a.abs_diff(b), 12 | 24);
        self.active_hops <= PASSING_HOPS && self.active_from.is_some_and(|from| octave(old, from) || octave(old, new))
    }
}
