//! `melody`'s spec: its parameters, and the builder that makes its processor (and
//! `features`'). Runs on the control thread (it loads the pitch network); the processor it
//! returns runs on the audio thread (`super`).

use super::*;

/// The parameters a patch sets on `melody` (`features` has its own, fewer).
pub(super) const PARAMS: &[ParamSpec] = &[
    ParamSpec::float_fixed("min_hz", 30.0, 1000.0, 60.0, "Hz", "lowest pitch tracked"),
    ParamSpec::float_fixed("max_hz", 100.0, 4000.0, 1600.0, "Hz", "highest pitch tracked"),
    // 0.18 (`features` keeps 0.15): mean onset F1 on the validation part, FluidR3_GM / TimGM6mb,
    // with `rough_hops` 3: 0.15 0.781 / 0.834, 0.18 0.773 / 0.848 (mallets, voices and pipes
    // up, plucked and brass down a little).
    ParamSpec::float_fixed("threshold", 0.02, 0.5, 0.18, "", "YIN threshold (lower = stricter voicing)"),
    ParamSpec::float_fixed("gate_db", -90.0, 0.0, -45.0, "dB", "level below which there is no note"),
    ParamSpec::int("confirm_hops", 1, 10, 3, "hops (4 ms) a pitch must hold before its note starts"),
    // A pitch YIN reads roughly now (its dip above half the threshold: breath, bow noise, the
    // blend of two notes) must hold 3 hops (12 ms) more before its note starts. Validation part,
    // threshold 0.15: 0 hops 0.766 / 0.832, 3 hops 0.781 / 0.834; threshold 0.18: 0 0.758 / 0.850,
    // 3 0.773 / 0.848, 5 0.778 / 0.847. (Counting a rough hop anywhere in the candidate's run
    // scored 0.006 higher but delays every low note from silence: its first windows are rough.)
    ParamSpec::int(
        "rough_hops",
        0,
        10,
        3,
        "more hops a pitch must hold while YIN reads it roughly (a noisy or blended period)",
    ),
    // 8 (32 ms): mean onset F1 on the validation part, FluidR3_GM / TimGM6mb: 4 hops 0.745 /
    // 0.823, 6 0.757 / 0.830, 8 0.764 / 0.832, 12 0.766 / 0.835, 16 0.767 / 0.836 (a breath, a
    // bow change or a tremolo's dip no longer ends the note; a rest ends it 32 ms late).
    ParamSpec::int("off_hops", 1, 50, 8, "unvoiced hops (4 ms) that end a note"),
    ParamSpec::float_fixed(
        "bend_range",
        0.0,
        48.0,
        2.0,
        "semitones",
        "pitch-bend range of the receiver (0 = no bends)",
    ),
    ParamSpec::int("midi_channel", 1, 16, 1, "MIDI channel"),
    ParamSpec::boolean(
        "attack_net",
        true,
        false,
        "name notes from their attack with the pitch network (models/melody_net) before YIN hears their period; off: YIN alone",
    ),
    // 0.8 with the network that reads its harmonics' rise (BENCHMARKS.md, twelfth round;
    // validation mean onset F1 FluidR3_GM / TimGM6mb / MuseScore 0.803 / 0.885 / 0.806 at 0.6,
    // 0.816 / 0.887 / 0.813 at 0.7, 0.823 / 0.888 / 0.817 at 0.8, fast-attack p90 47-50 ms).
    ParamSpec::float_fixed(
        "net_confidence",
        0.3,
        0.99,
        0.8,
        "",
        "probability the network must give a note to start it during an attack",
    ),
    // 2: the lowest latency. Validation part (BENCHMARKS.md, twelfth round), mean onset F1
    // FluidR3_GM / TimGM6mb / MuseScore and fast-attack p90, with the eleventh round's network: 1
    // hop 0.797 / 0.875 / 0.800, 53 / 63 ms; 2 hops 0.824 / 0.886 / 0.817, 62 / 64 ms; 3 hops 0.838
    // / 0.887 / 0.826, 68 / 65 ms (an electric piano's and a calliope's early misreads gone). With
    // the shipped network (it reads the rise) and `net_confidence` 0.8: 2 hops 0.822 / 0.888 /
    // 0.814, 49 / 48 ms; 3 hops 0.821 / 0.887 / 0.816, 53 / 51 ms.
    ParamSpec::int(
        "net_agree_hops",
        1,
        4,
        2,
        "hops (4 ms) in a row the network must name a note during an attack to start it, one fewer where it names it with probability 0.9 or more (more: later notes, fewer wrong ones where the network misreads attacks)",
    ),
    // On: validation FluidR3_GM / TimGM6mb / MuseScore 0.822 / 0.888 / 0.814 -> 0.824 / 0.888 /
    // 0.814, fast-attack p90 49 / 48 -> 46 / 48 ms; the test part 0.834 / 0.887 / 0.842 -> 0.833 /
    // 0.877 / 0.842, p90 53 / 49 / 48 -> 51 / 44 / 47 ms, TimGM6mb's brass 0.902 -> 0.855
    // (BENCHMARKS.md, thirteenth round).
    ParamSpec::boolean(
        "flux_attacks",
        true,
        false,
        "an attack is also where new partials rise and the level does not (a struck note under the last one, still ringing as loud: music box, harp, mallets in fast runs); off: only a rise in level (a little surer on blown and bowed lines)",
    ),
];

pub const MELODY: NodeType = NodeType {
    name: "melody",
    doc: "Low-latency single-line pitch-to-MIDI (YIN on the audio thread): notes and pitch bends; control outputs f0 (Hz), voiced, loudness (dB) every 4 ms.",
    params: PARAMS,
    params_of: None,
    build: |p: &Params, ctx: &BuildCtx| build(p, ctx, true),
};

/// The control outputs `melody` and `features` share.
fn control_outputs() -> Vec<PortSpec> {
    vec![PortSpec::control("f0"), PortSpec::control("voiced"), PortSpec::control("loudness")]
}

/// Samples (16 kHz) of audio every reader of the hop needs at once: YIN (`ready`), the legato
/// partials, the network (which reads `RISE_BACK` samples before its windows, an SBPNET03
/// network) and the spectral flux.
fn buffer_span(ready: usize) -> usize {
    ready
        .max(partial_rise::HISTORY)
        .max(HISTORY + RISE_BACK)
        .max(super::flux::FLUX_WINDOW)
}

/// The pitch network, where notes go out and `attack_net` is on (a missing or damaged file: none,
/// and the log says so). Without a model locator (an engine built without the models crate) YIN
/// works alone.
fn load_net(p: &Params, ctx: &BuildCtx, notes: bool) -> Option<NetRunner> {
    (notes && p.bool("attack_net") && !ctx.dry_run)
        .then_some(ctx.locate_model)
        .flatten()
        .and_then(|locate| {
            locate("melody_net", "")
                .and_then(|path| PitchNet::load(&path))
                .map_err(|e| tracing::warn!("melody: pitch network not used ({e}); notes start when YIN hears them"))
                .ok()
        })
        .map(|net| NetRunner::new(std::sync::Arc::new(net)))
}

/// Builds the tracker: with notes (`melody`) or only its control curves (`features`, whose
/// parameters lack the note ones: those read as 0, are clamped to valid values, and no note is
/// ever sent).
pub(crate) fn build(p: &Params, ctx: &BuildCtx, notes: bool) -> Result<Built, String> {
    let (lo, hi) = (p.f32("min_hz"), p.f32("max_hz"));
    if lo >= hi {
        return Err(format!("`min_hz` ({lo}) must be below `max_hz` ({hi})"));
    }
    let tau_max = (RATE as f32 / lo).ceil() as usize + 1;
    let ready = (WIN + tau_max + 1).max(HISTORY);
    let span = buffer_span(ready);
    let net = load_net(p, ctx, notes);
    let tau_min = ((RATE as f32 / hi).floor() as usize).max(2);
    let gate = 10f32.powf(p.f32("gate_db") / 20.0);
    Ok(Built {
        info: NodeInfo {
            inputs: vec![PortSpec::new("in", 1)],
            outputs: control_outputs(),
            midi_out: notes,
            ..Default::default()
        },
        processor: Box::new(MelodyProc {
            resampler: Resampler::new(ctx.sample_rate as u32, RATE),
            tau_min,
            tau_max,
            buf: vec![0.0; 2 * span],
            span,
            pos: 0,
            len: 0,
            ready,
            since_hop: 0,
            d: vec![0.0; tau_max + 2],
            threshold: p.f32("threshold"),
            gate,
            confirm: (p.usize("confirm_hops") as u32).max(1),
            rough_hops: p.usize("rough_hops") as u32,
            off_hops: (p.usize("off_hops") as u32).max(1),
            bend_range: p.f32("bend_range"),
            channel: (p.usize("midi_channel") as u8).max(1),
            engine_rate: ctx.sample_rate as u64,
            n16: 0,
            start_time: None,
            active: None,
            candidate: None,
            cand_count: 0,
            cand_first: 0,
            cand_seen: 0,
            unvoiced: 0,
            last_bend: 0,
            sent_bend: 0,
            rms_hist: [0.0; 4],
            levels: [0.0; LEVELS],
            pitches: [f32::NAN; LEVELS],
            hops_done: 0,
            active_hops: 0,
            last_held16: 0,
            last_clear16: 0,
            regap: false,
            last_off16: 0,
            last_note: 0,
            octave_up: false,
            up_count: 0,
            active_onset: 0,
            active_from: None,
            out: [([0; 3], 0); 8],
            n_out: 0,
            net,
            net_confidence: p.f32("net_confidence"),
            net_agree: (p.usize("net_agree_hops") as u32).max(1),
            lowest_note: midi_of(lo),
            highest_note: midi_of(hi),
            attack_left: 0,
            since_attack: ATTACK_COOLDOWN,
            flux_window: false,
            flux_attacks: p.bool("flux_attacks"),
            attack16: 0,
            grace_left: 0,
            guard: None,
            guard_left: 0,
            net_note: None,
            net_count: 0,
            net_hop: None,
            net_named: (None, 0.0),
            fix_count: 0,
            fast_onset: 0,
            notes,
            loudness: ALoudness::new(WIN, RATE as f32),
            rise: PartialRise::new(),
            flux: super::flux::SpectralFlux::new(),
            f0_hz: 0.0,
            voiced: 0.0,
            loudness_db: FLOOR_DB,
        }),
    })
}
