//! `melody`: low-latency pitch-to-MIDI for single lines (voice, flute, bass, a guitar melody).
//! A YIN pitch tracker on 16 kHz audio every 4 ms, note segmentation (a pitch held for a few
//! hops starts a note; silence or a new stable pitch ends it; a jump in level strikes it again)
//! and pitch bends from the continuous pitch. During an attack (a rise in level), a small pitch
//! network (`models/melody_net`, see `crate::pitchnet`) names the note from the attack itself,
//! 10-20 ms before YIN hears a clean period in it; YIN then follows the note as before, and
//! starts no note the network surely hears otherwise (`attack`). A note's onset is placed where
//! its sound began, not where it was recognised (`onset`, `partial_rise`). The pitch itself:
//! `yin`.
//! Its control outputs carry what it hears every hop, for nodes that play along (`timbre`):
//! `f0` (Hz; held through unvoiced hops), `voiced` (0 or 1) and `loudness` (A-weighted, dB).
//! Spec on the control thread (it loads the network); the tracker and the network run in the
//! processor on the audio thread (fixed buffers, bounded work per hop, no allocation).

use crate::dsp::Resampler;
use crate::loudness::{ALoudness, FLOOR_DB};
use crate::node::{BuildCtx, Built, NodeInfo, NodeType, Params, PortSpec, ProcessIo, Processor};
use crate::param::ParamSpec;
use crate::pitchnet::{NetRunner, PitchNet, HISTORY, RISE_BACK};

mod attack;
mod build;
mod flux;
mod onset;
mod partial_rise;
mod yin;

pub(crate) use build::build;
pub use build::MELODY;
use partial_rise::PartialRise;

const RATE: u32 = 16000;
const HOP: usize = 64;
const WIN: usize = 192;
/// Hops of level history (256 ms) kept to find where a note's attack began.
const LEVELS: usize = 64;
/// A sounding note is followed down to this fraction of the gate (-25 dB), and through YIN
/// dips this much above the threshold (decays of plucked and struck strings).
const HOLD_GATE: f32 = 0.056;
const HOLD_THRESHOLD: f32 = 1.6;
/// Semitones a hop the pitch may move and still count towards a new note (vibrato of ±0.5
/// semitone at 6 Hz moves under 0.08; a glide between notes faster).
const GLIDE_STEP: f32 = 0.15;
/// YIN reads a pitch clearly when its dip is under this times the threshold.
const CLEAR: f32 = 0.5;
/// Semitones a hop a bend may move and still be the note's own glide (a guitar's whole-tone
/// bend in 30 ms moves 0.27 a hop); a reading that jumps further is another note's or a
/// harmonic's, and does not bend the note.
const BEND_STEP: f32 = 0.3;
/// A level jump (over 16 ms) that strikes the sounding note again: 15 dB (a re-plucked or
/// re-struck note; tremolo, flutter and breath swell less: FluidR3_GM's whistle and calliope
/// swell by 12 dB and more inside one note). Mean onset F1 on the validation part, FluidR3_GM /
/// TimGM6mb: 12 dB 0.734 / 0.823; 15, 18 and 24 dB 0.745 / 0.823; never 0.745 / 0.822.
const RESTRIKE: f32 = 5.6;
/// Unvoiced hops inside a note, and the rise in level over the hop before them (6 dB), that
/// strike it again when its pitch comes back (a re-plucked string whose attack hides the period
/// for a while: with `off_hops` at 8, such a gap no longer ends the note). Validation part:
/// mean onset F1 0.764 / 0.832 with and without (4 hops and 3 dB: 0.763 / 0.832).
const REGAP_HOPS: u32 = 4;
const REGAP_RISE: f32 = 2.0;
/// Hops (4 ms) back an attack's rise is measured from, and hops after one before another can
/// be heard (32 ms).
const ATTACK_LOOK: u64 = 6;
const ATTACK_COOLDOWN: u32 = 8;
/// After the network starts a note: hops during which YIN hearing no period does not end it
/// (the rest of the attack), and hops during which YIN reading the previous note (still ringing)
/// does not bring it back.
const GRACE_HOPS: u32 = 8;
const GUARD_HOPS: u32 = 12;
/// YIN's new note waits while the network names another with at least this probability, for at
/// most `VETO_HOPS` hops (100 ms: a network wrong on an instrument it never heard delays a note,
/// never loses it). Tuned on the validation part (mean onset F1, FluidR3_GM / TimGM6mb: no veto
/// 0.702 / 0.744; 0.9: 0.706 / 0.748; 0.7: 0.710 / 0.756; 0.5: 0.714 / 0.762; 0.3: 0.717 / 0.764).
const NET_VETO: f32 = 0.5;
const VETO_HOPS: u32 = 25;
/// While a note sounds, a new note this whole-number ratio or more below it (an octave and a
/// fifth, two octaves) does not count for its first `BLEND_HOPS` hops (100 ms): in a legato
/// change a fourth or a fifth apart the two notes' common period reads for tens of ms (cello
/// D4 -> G4 reads G2). Later it counts: a real leap down is delayed, never lost. Validation
/// part (mean onset F1 FluidR3_GM / TimGM6mb): none 0.773 / 0.848; 2.5 for 25 hops 0.782 /
/// 0.852 (bowed FluidR3_GM 0.453 -> 0.489, voices 0.640 -> 0.691); for 15 hops 0.781 / 0.851,
/// 50 hops 0.782 / 0.852; 1.5 (the octave too) for 25 hops 0.783 / 0.853, not worth delaying
/// every slurred octave drop.
const BLEND_RATIO: f32 = 2.5;
const BLEND_HOPS: u32 = 25;
/// Nor does the octave above the sounding note for those hops while the sounding note's odd
/// partials (which the octave above lacks) hold within 15 dB of its even ones: YIN reads the
/// octave above a note whose fundamental weakens for a while (a synth brass's filter, a vowel,
/// a string's bow). Validation part: without 0.788 / 0.861; 10, 15, 17 and 20 dB 0.790 / 0.861,
/// 0.801 / 0.861, 0.801 / 0.861, 0.802 / 0.859 (brass FluidR3_GM 0.859 -> 0.914 at 15 dB,
/// voices 0.741 -> 0.797, plucked 0.896 -> 0.916).
const ODD_EVEN: f32 = 0.03;

/// An organ's stops sound at the key's pitch times 1/2 (16-foot), 1, 3/2, 2, 3, 4, 5, 6 and 8:
/// with the 16-foot stop out, the sound's period is an octave under the key, and YIN (and often
/// the network) reads that. Read on that lower note, such a sound has even partials above the
/// fourth (the key's 3rd, 4th, 5th... harmonics) and no odd ones (5, 7, 9, 11: 5/2, 7/2... of the
/// key, which no stop sounds), where an instrument's own note has both. So a new note whose
/// even partials 6-12 hold at least `ORGAN_EVEN` of the energy of its partials 1-4 (-20 dB) while
/// its odd partials 5-11 stay under `ORGAN_ODD` of the even ones (-15 dB) is played as the key an
/// octave above (`keyed`). Validation FluidR3_GM / TimGM6mb / MuseScore onset F1, the organs
/// view (the train part's organs 17 and 19 on validation pieces, the same three SoundFonts) and
/// the synthetic organs (train.py's drawbar organ, three registrations a line, on the same
/// pieces: `make_synth_organs.py`) (BENCHMARKS.md sixteenth round): never 0.828 / 0.904 / 0.837,
/// 0.743 / 0.752 / 0.806, 0.633; 0.01 and 0.03 (shipped) 0.828 / 0.904 / 0.838, 0.777 / 0.852 /
/// 0.859, 0.768; 0.01 and 0.01 0.828 / 0.905 / 0.839, 0.774 / 0.842 / 0.840, 0.770; 0.03 and
/// 0.03 0.828 / 0.905 / 0.838, 0.776 / 0.852 / 0.859, 0.737; 0.01 and 0.1 0.826 / 0.901 / 0.829
/// (brass, reeds and plucked read as organs); 0.003 and 0.03 0.824 / 0.902 / 0.835 (mallets).
const ORGAN_EVEN: f32 = 0.01;
const ORGAN_ODD: f32 = 0.03;

/// Where, within each `frame`-sample stretch of a node's life, the tracker's hops end (its
/// control outputs change): a hop ends on the engine sample whose push makes the resampler emit
/// the hop's last 16 kHz sample. A node that reads these outputs every 4 ms (`timbre`) frames on
/// this phase and reads each hop the sample it appears, not up to a frame later. Exact where the
/// engine's rate is a multiple of 4 kHz (48 kHz: 48 samples); elsewhere the hops drift against
/// a whole-sample frame and this is the first hop's phase.
pub fn hop_end_phase(engine_rate: u32, frame: usize) -> usize {
    let last_of_first_hop = HOP as u64 - 1;
    (Resampler::input_for_output(engine_rate, RATE, last_of_first_hop) % frame.max(1) as u64) as usize
}

/// A frequency as a (fractional) MIDI note number.
fn midi_of(hz: f32) -> f32 {
    69.0 + 12.0 * (hz / 440.0).log2()
}

struct MelodyProc {
    resampler: Resampler,
    tau_min: usize,
    tau_max: usize,
    /// Mirrored ring of the newest `span` samples: each sample is written at `pos` and
    /// `pos + span`, so `buf[pos..pos + span]` is always the window, oldest first, in O(1).
    buf: Vec<f32>,
    span: usize,
    pos: usize,
    len: usize,
    /// Samples the tracker needs before its first hop (YIN's window and longest period, the
    /// network's history); the ring keeps more, for `rise`.
    ready: usize,
    since_hop: usize,
    d: Vec<f32>,
    threshold: f32,
    gate: f32,
    confirm: u32,
    rough_hops: u32,
    off_hops: u32,
    bend_range: f32,
    channel: u8,
    engine_rate: u64,
    /// 16 kHz samples seen.
    n16: u64,
    start_time: Option<u64>,
    // segmentation
    active: Option<u8>,
    candidate: Option<u8>,
    cand_count: u32,
    cand_first: u64,
    /// Hops the candidate has been heard (centred or not).
    cand_seen: u32,
    unvoiced: u32,
    last_bend: i32,
    /// The bend the receiver holds (the last one sent).
    sent_bend: i32,
    rms_hist: [f32; 4],
    /// Level of each of the last `LEVELS` hops (ring by hop number: hop h is at 16 kHz time
    /// h * HOP) and one past the newest hop's number.
    levels: [f32; LEVELS],
    /// Pitch heard at each of those hops (NaN: none).
    pitches: [f32; LEVELS],
    hops_done: u64,
    active_hops: u32,
    /// When the last note ended for want of a pitch (16 kHz time).
    last_off16: u64,
    /// Last hop (16 kHz time) that still heard the sounding note clearly, or silence.
    last_held16: u64,
    /// Last hop (16 kHz time) that heard the sounding note clearly (silence does not count).
    last_clear16: u64,
    /// The sounding note came back louder after a gap (`REGAP_HOPS`): strike it again when its
    /// pitch is confirmed.
    regap: bool,
    /// The last note started (0 before any).
    last_note: u8,
    /// YIN hears the sounding note an octave below it, and the network names the note itself
    /// (`attack::net_verdict`): an organ's 16-foot stop under its key.
    octave_up: bool,
    /// Calls in a row on which the network named the octave above YIN's new note (over notes:
    /// an organ keeps its stop; any other answer starts the count again).
    up_count: u32,
    /// The sounding note's onset (16 kHz time) and the note it took over from (legato).
    active_onset: u64,
    active_from: Option<u8>,
    /// Events decided while resampling, emitted at the end of the engine frame.
    out: [([u8; 3], u64); 8],
    n_out: usize,
    /// The pitch network (None: YIN alone) and what it needs.
    net: Option<NetRunner>,
    net_confidence: f32,
    /// Hops in a row the network must name the same note, surely enough, to start it.
    net_agree: u32,
    lowest_note: f32,
    highest_note: f32,
    attack_left: u32,
    since_attack: u32,
    /// Whether the attack window open now was opened by `flux` alone (no rise in level).
    flux_window: bool,
    /// `flux_attacks`: whether the flux opens attack windows.
    flux_attacks: bool,
    /// Where the attack heard last began (16 kHz time, a window's centre).
    attack16: u64,
    grace_left: u32,
    guard: Option<u8>,
    guard_left: u32,
    /// The onset of the note the network started last (16 kHz time): if YIN hears another note
    /// there while the guard lasts, that note is the attack's and keeps its onset.
    fast_onset: u64,
    /// The note the network named on the last hops, and on how many in a row.
    net_note: Option<u8>,
    net_count: u32,
    /// The network's answer at hop `net_hop` (it runs once a hop at most).
    net_hop: Option<u64>,
    net_named: (Option<u8>, f32),
    /// Hops in a row the network named the octave above the sounding note (`octave_fix`).
    fix_count: u32,
    /// Whether notes go out (`melody`) or only the control curves (`features`).
    notes: bool,
    loudness: ALoudness,
    /// Where a legato note began, from its partials.
    rise: PartialRise,
    flux: flux::SpectralFlux,
    /// The newest hop's readings, written to the control outputs every sample.
    f0_hz: f32,
    voiced: f32,
    loudness_db: f32,
}

impl MelodyProc {
    fn push_event(&mut self, msg: [u8; 3], origin16: u64) {
        if self.n_out < self.out.len() {
            self.out[self.n_out] = (msg, origin16);
            self.n_out += 1;
        }
    }

    /// Ends the sounding note (if any) and starts `k` (heard at level `rms`, its onset estimated
    /// at `onset`; 16 kHz times). Returns the note that was sounding.
    fn start_note(&mut self, k: u8, rms: f32, onset: u64, now16: u64) -> Option<u8> {
        let ch = self.channel - 1;
        let old = self.active;
        if let Some(old) = old {
            self.push_event([0x80 | ch, old, 0], now16);
        }
        let db = 20.0 * rms.max(1e-6).log10();
        let vel = ((db + 50.0) / 44.0 * 107.0 + 20.0).clamp(1.0, 127.0) as u8;
        if self.sent_bend != 0 {
            // The receiver still holds the last note's bend: centre it first.
            self.push_event([0xe0 | ch, 0, 64], now16);
            self.sent_bend = 0;
        }
        self.push_event([0x90 | ch, k, vel], onset);
        self.active = Some(k);
        self.octave_up = false;
        self.fix_count = 0;
        self.active_onset = onset;
        self.active_from = old;
        self.last_note = k;
        self.active_hops = 0;
        self.last_bend = 0;
        self.unvoiced = 0;
        old
    }

    fn hop(&mut self) {
        let gate = if self.active.is_some() { self.gate * HOLD_GATE } else { self.gate };
        let (voiced, rms) = self.analyse(gate);
        self.loudness_db = self.loudness.measure(&self.buf[self.pos + self.span - WIN..self.pos + self.span]);
        let strict = if voiced && rms >= self.gate {
            self.pick(self.threshold)
        } else {
            None
        };
        let pitch = match (strict, self.active) {
            // A sounding note is followed further down its decay and through rougher periods,
            // as long as the pitch stays its own.
            (None, Some(a)) if voiced => self
                .pick(self.threshold * HOLD_THRESHOLD)
                .filter(|&(f, _)| (self.as_sounding(f) - a as f32).abs() < 0.8),
            (p, _) => p,
        }
        .map(|(f, aperiodicity)| (self.as_sounding(f), aperiodicity));
        // Hop number h is the hop at 16 kHz time h * HOP.
        let h = self.n16 / HOP as u64;
        self.levels[(h % LEVELS as u64) as usize] = rms;
        self.pitches[(h % LEVELS as u64) as usize] = pitch.map_or(f32::NAN, |(f, _)| f);
        self.hops_done = h + 1;
        self.voiced = pitch.is_some() as u8 as f32;
        if let Some((p, _)) = pitch {
            self.f0_hz = 440.0 * 2f32.powf((p - 69.0) / 12.0);
        }

        let now16 = self.n16;
        let fast = self.attack_note(h, rms, voiced, strict);
        let mut pitch = pitch;
        self.grace_left = self.grace_left.saturating_sub(1);
        if self.guard_left > 0 {
            self.guard_left -= 1;
            if let (Some((f, _)), Some(g)) = (pitch, self.guard) {
                if (f - g as f32).abs() < 0.5 {
                    pitch = None;
                }
            }
        }
        if let Some(k) = fast {
            self.start_fast(k, rms, now16);
        }
        // Level jump: a new stroke of the same note.
        let prev_rms = self.rms_hist[0];
        self.rms_hist.rotate_left(1);
        self.rms_hist[3] = rms;
        match pitch {
            None => self.unvoiced_hop(now16, rms, prev_rms),
            Some((p, aperiodicity)) => self.voiced_hop(p, aperiodicity, h, rms, prev_rms, now16),
        }
    }

    /// Starts note `k`, which the network named during an attack, at hop time `now16`.
    fn start_fast(&mut self, k: u8, rms: f32, now16: u64) {
        // Where the change began: the attack's rise, or after the last hop that still heard
        // the old state (as for notes YIN starts; at most ATTACK_LOOK hops before the rise).
        let held = (self.last_held16 + (HOP / 2) as u64).saturating_sub((WIN / 2) as u64);
        let held = held.max(self.attack16.saturating_sub(ATTACK_LOOK * HOP as u64));
        let onset = self.attack_start(self.attack16.min(held), rms);
        let onset = match self.active {
            Some(old) => self.rise_start(old, k, now16),
            None => self.after_gap(k, now16),
        }
        .map_or(onset, |r| r.min(onset));
        self.fast_onset = onset;
        let key = self.keyed(k);
        self.guard = self.start_note(key, rms, onset, now16);
        self.octave_up = key != k;
        let k = key;
        self.guard_left = GUARD_HOPS;
        self.grace_left = GRACE_HOPS;
        self.candidate = Some(k);
        self.cand_count = self.confirm;
        self.last_held16 = now16;
    }

    /// A hop with no pitch (level `rms`; `prev_rms` 16 ms before): the candidate is dropped,
    /// and the sounding note ends after `off_hops` of them (not during the grace after the
    /// network started it), not counting the hops of a decay over the hold level. Validation
    /// FluidR3_GM / TimGM6mb / MuseScore (BENCHMARKS.md fourteenth round), onset F1, raw pitch
    /// and fast-attack p90: every hop counts 0.824 / 0.888 / 0.814, 89.0 / 86.4% (FluidR3_GM and
    /// TimGM6mb together / MuseScore), 46 / 48 ms; a decay's do not 0.825 / 0.890 / 0.815, 89.4 /
    /// 86.6%, 46 / 48 ms, and nor are they hops that heard the note (as here) 0.827 / 0.892 /
    /// 0.817, 89.6 / 86.7%, 46 / 48 ms. Without that second part: a level up to 1.5 times 16 ms
    /// before 0.825 / 0.892 / 0.816, 90.0 / 87.1%, 46 / 49 ms; any level over the hold level the
    /// same, 0.817 on MuseScore, 46 / 49 ms.
    fn unvoiced_hop(&mut self, now16: u64, rms: f32, prev_rms: f32) {
        self.candidate = None;
        self.cand_count = 0;
        // A decay YIN no longer reads (a bell's, a mallet's or a string's inharmonic tail, a
        // slur's blend): the level still over the hold level and no higher than 16 ms before
        // does not count, and is not a hop that still heard the note (a note found next began
        // after the last that did).
        if self.active.is_some() && rms >= self.gate * HOLD_GATE && rms <= prev_rms {
            return;
        }
        self.last_held16 = now16;
        if let (Some(k), 0) = (self.active, self.grace_left) {
            self.unvoiced += 1;
            if self.unvoiced >= self.off_hops {
                self.push_event([0x80 | (self.channel - 1), k, 0], now16);
                self.active = None;
                self.regap = false;
                self.last_off16 = now16;
            }
        }
    }

    /// A hop with pitch `p` (fractional MIDI; `aperiodicity` YIN's dip there): counts towards a
    /// new note, starts it when it has held long enough, strikes the sounding one again on a
    /// jump in level (`rms` against `prev_rms`, 16 ms before), and bends the sounding one.
    fn voiced_hop(&mut self, p: f32, aperiodicity: f32, h: u64, rms: f32, prev_rms: f32, now16: u64) {
        let gap = self.unvoiced;
        self.unvoiced = 0;
        // Hysteresis: a sounding note holds through bends of up to 0.8 semitone.
        let k = match self.active {
            Some(a) if (p - a as f32).abs() < 0.8 => a,
            _ => p.round().clamp(0.0, 127.0) as u8,
        };
        let clear = aperiodicity < CLEAR * self.threshold;
        if self.active == Some(k) && clear {
            // Still clearly the sounding note.
            self.last_held16 = now16;
            self.last_clear16 = now16;
        }
        // Only hops near the centre of a semitone count towards a new note (a blend of
        // two notes in a transition reads in between), and only while the pitch is
        // steady: a glide (voice, wind, bowed legato) passes through the semitones on
        // its way without playing them.
        let prev = self.pitches[((h + LEVELS as u64 - 1) % LEVELS as u64) as usize];
        let steady = prev.is_nan() || (p - prev).abs() < GLIDE_STEP;
        // A new note a whole-number ratio below the last (YIN's commonest error: a period
        // multiple) must hold twice as long.
        let reference = self.active.unwrap_or(self.last_note) as f32;
        let ratio = 2f32.powf((reference - k as f32) / 12.0);
        let subharmonic = self.last_note != 0 && ratio > 1.9 && (1200.0 * (ratio / ratio.round()).log2()).abs() < 35.0;
        let seen = if self.candidate == Some(k) { self.cand_seen + 1 } else { 1 };
        self.cand_seen = seen;
        let blend = self.active.is_some() && subharmonic && ratio > BLEND_RATIO && seen <= BLEND_HOPS;
        let brighter = seen <= BLEND_HOPS && self.active.is_some_and(|a| k == a + 12 && self.still_sounds(a));
        let centred = (((p - k as f32).abs() < 0.35 && steady) || self.active == Some(k)) && !blend && !brighter;
        if self.candidate == Some(k) {
            if centred {
                self.cand_count += 1;
            }
        } else {
            self.candidate = Some(k);
            self.cand_count = centred as u32;
            // The note began after the last hop that still heard the old state (the
            // previous note, or silence): between that hop and the next, each of which
            // reads a window ending at its time, so half a window earlier; and no later
            // than this window's centre.
            self.cand_first = (self.last_held16 + (HOP / 2) as u64)
                .saturating_sub((WIN / 2) as u64)
                .min(now16.saturating_sub((WIN / 2) as u64));
        }
        self.active_hops += 1;
        // (Only on the note's own pitch: the attack of the next note in a legato line also raises
        // the level while the old pitch still reads.)
        // A gap in the pitch that comes back louder than before it: the note plucked or struck
        // again (its attack's noise hid the period), not a breath or a tremolo's dip.
        if gap >= REGAP_HOPS && (gap as usize) + 1 < LEVELS && self.active == Some(k) {
            let before = self.levels[((h + LEVELS as u64 - gap as u64 - 1) % LEVELS as u64) as usize];
            self.regap = rms > REGAP_RISE * before;
        }
        let own = self.active == Some(k) && (p - k as f32).abs() < 0.3 && self.active_hops >= 8;
        let restrike = own && ((rms > RESTRIKE * prev_rms && prev_rms > 0.0) || self.regap);
        // A leap of more than an octave straight out of a sounding note (rare in a
        // single line; a transition's blend or a period multiple reads so) must hold three
        // times as long; both, four times. After a rest, any leap is a new phrase.
        let leap = self.active.is_some() && (k as f32 - reference).abs() > 12.0;
        let needed = self.confirm * (1 + 2 * leap as u32 + subharmonic as u32) + self.rough_hops * !clear as u32;
        let disputable = self.active != Some(k) && self.guard_left == 0 && self.cand_count < needed + VETO_HOPS;
        let ready = self.cand_count >= needed && (self.active != Some(k) || restrike);
        let play = match (ready, disputable) {
            (false, _) => None,
            (true, true) => self.net_verdict(k, h),
            (true, false) => Some(k),
        };
        let play = play.map(|n| if n == k { self.keyed(k) } else { n });
        let up = play.is_some_and(|note| note == k + 12);
        if up && self.active == play {
            // YIN reads the sounding note an octave below: it goes on.
            self.octave_up = true;
            self.candidate = play;
        } else if let Some(note) = play {
            let onset = if restrike { now16 } else { self.onset_of(k, note, rms, now16) };
            self.start_note(note, rms, onset, now16);
            self.octave_up = up;
            if restrike {
                self.cand_count = 0;
            }
            self.regap = false;
        }
        self.octave_fix(h, rms, now16);
        self.send_bend(p, k, clear, now16);
    }

    /// Pitch `f` (fractional MIDI) as the sounding note's: YIN's reading an octave under the
    /// sounding note while `octave_up` is that note (and its f0, and its bends).
    fn as_sounding(&self, f: f32) -> f32 {
        match self.active {
            Some(a) if self.octave_up && (f + 12.0 - a as f32).abs() < 0.8 => f + 12.0,
            _ => f,
        }
    }

    /// The note to start where YIN (or the network) names `k`: `k`, or the key an octave above
    /// it where `k` sounds like an organ's 16-foot stop (`ORGAN_EVEN`, `ORGAN_ODD`).
    fn keyed(&mut self, k: u8) -> u8 {
        if k + 12 > 127 || (k + 12) as f32 > self.highest_note {
            return k;
        }
        let x = &self.buf[self.pos..self.pos + self.span];
        let (low, odd, even) = self.rise.upper_partials(x, k);
        if even > ORGAN_EVEN * low && odd < ORGAN_ODD * even {
            k + 12
        } else {
            k
        }
    }

    /// Whether note `a`'s odd partials still sound within `ODD_EVEN` of its even ones.
    fn still_sounds(&mut self, a: u8) -> bool {
        let x = &self.buf[self.pos..self.pos + self.span];
        self.rise.odd_over_even(x, a) > ODD_EVEN
    }

    /// Where note `note` (YIN read `k`), started now, began (16 kHz time).
    fn onset_of(&mut self, k: u8, note: u8, rms: f32, now16: u64) -> u64 {
        if self.guard_left > 0 {
            // A correction of the note the network started in this attack.
            return self.fast_onset;
        }
        let first = self.attack_start(self.cand_first, rms);
        match self.active {
            Some(old) if self.passing(old, k) => self.active_onset,
            Some(old) => {
                let glide = first.min(self.glide_start(first, old, k));
                self.rise_start(old, note, now16).map_or(glide, |r| r.min(glide))
            }
            None => {
                let first = self.after_blend(note, now16).map_or(first, |b| b.min(first));
                self.after_gap(note, now16).map_or(first, |r| r.min(first))
            }
        }
    }

    /// Bends the sounding note to pitch `p` (fractional MIDI; YIN read note `k` there, `clear`ly
    /// or not), when it moved enough. Only the note's own pitch bends it: a clear reading that
    /// holds the note (within the 0.8-semitone hysteresis) or carries on a glide from the bent
    /// pitch (at most `BEND_STEP` a hop), within the bend range. A reading that jumps away (the
    /// next note's blend, a harmonic, a period multiple) holds the last bend: it pinned the note
    /// at the range's edge for those hops (raw pitch on the validation part 87.4 -> 88.9%).
    fn send_bend(&mut self, p: f32, k: u8, clear: bool, now16: u64) {
        let Some(a) = self.active else {
            return;
        };
        if self.bend_range <= 0.0 {
            return;
        }
        let bent = a as f32 + self.last_bend as f32 / 8191.0 * self.bend_range;
        let own = k == a || (p - bent).abs() <= BEND_STEP;
        if !clear || !own || (p - a as f32).abs() > self.bend_range {
            return;
        }
        let bend = ((p - a as f32) / self.bend_range * 8191.0) as i32;
        if (bend - self.last_bend).abs() >= 41 {
            // ~1 cent steps at a 2-semitone range are inaudible; send changes of 0.5% of the range.
            let v = (bend + 8192).clamp(0, 16383) as u16;
            self.push_event([0xe0 | (self.channel - 1), (v & 0x7f) as u8, (v >> 7) as u8], now16);
            self.last_bend = bend;
            self.sent_bend = bend;
        }
    }
}

impl Processor for MelodyProc {
    fn process(&mut self, io: &mut ProcessIo) {
        let start = *self.start_time.get_or_insert(io.sample_time);
        for t in 0..io.frames {
            let mut hops = 0;
            {
                let Self {
                    resampler,
                    buf,
                    span,
                    pos,
                    len,
                    since_hop,
                    n16,
                    ..
                } = self;
                resampler.push(io.inputs[0][t], |y| {
                    buf[*pos] = y;
                    buf[*pos + *span] = y;
                    *pos += 1;
                    if *pos == *span {
                        *pos = 0;
                    }
                    *len += 1;
                    *n16 += 1;
                    *since_hop += 1;
                    if *since_hop == HOP {
                        *since_hop = 0;
                        hops += 1;
                    }
                });
            }
            for _ in 0..hops {
                if self.len >= self.ready {
                    self.hop();
                }
            }
            for k in 0..self.n_out * self.notes as usize {
                let (msg, origin16) = self.out[k];
                let origin = start + origin16 * self.engine_rate / RATE as u64;
                io.emit.note(t as u32, msg, origin, io.sample_time);
            }
            self.n_out = 0;
            if let [f0, voiced, loudness] = &mut io.outputs[..] {
                f0[t] = self.f0_hz;
                voiced[t] = self.voiced;
                loudness[t] = self.loudness_db;
            }
        }
    }
}
