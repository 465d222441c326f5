//! The stats document `run --stats-json` writes on exit, built in one place (main thread).

use std::sync::atomic::Ordering;

use serde_json::{json, Value};
use stagebox_engine::stats::RtStats;

use super::results::db;
use super::session::Session;

/// Median, p99, max and count of durations in µs.
fn summary(us: &[u32]) -> Value {
    let mut v = us.to_vec();
    v.sort_unstable();
    let q = |f: f64| v.get(((v.len() as f64 - 1.0) * f).round() as usize).copied().unwrap_or(0);
    json!({"count": v.len(), "median": q(0.5), "p99": q(0.99), "max": v.last().copied().unwrap_or(0)})
}

fn meters(s: &Session) -> Value {
    let m: serde_json::Map<String, Value> = s
        .results
        .meters
        .iter()
        .map(|(k, m)| {
            let v = json!({
                "reports": m.reports,
                "silent_reports": m.silent_reports,
                "last_peak_db": m.peak.iter().map(|x| db(*x)).collect::<Vec<_>>(),
                "last_rms_db": m.rms.iter().map(|x| db(*x)).collect::<Vec<_>>(),
            });
            (k.clone(), v)
        })
        .collect();
    Value::Object(m)
}

/// The audio side: device, callbacks, rings, allocations, inference.
fn audio(s: &Session, elapsed_secs: f64) -> Value {
    let st = &s.stats;
    let hist = &s.results.hist;
    let inference = &s.results.inference;
    json!({
        "backend": s.device.backend_name,
        "device": s.device.device_name,
        "demo": s.device.demo,
        "patch": s.patch_path.display().to_string(),
        "sample_rate": s.device.sample_rate,
        "block_size": RtStats::get(&st.last_block_frames),
        "in_channels": s.device.in_channels,
        "out_channels": s.device.out_channels,
        "duration_secs": elapsed_secs,
        "callbacks": RtStats::get(&st.callbacks),
        "frames": RtStats::get(&st.frames),
        "xruns": RtStats::get(&st.xruns),
        "late_callbacks": s.results.late_callbacks,
        "callback_us": {
            "count": hist.count(),
            "median": hist.quantile_us(0.5),
            "p99": hist.quantile_us(0.99),
            "max": hist.max_us(),
            "mean": hist.mean_us(),
        },
        "input_underrun_frames": RtStats::get(&st.input_underruns),
        "input_overrun_frames": RtStats::get(&st.input_overruns),
        "events_dropped": RtStats::get(&st.events_dropped),
        "events_late": RtStats::get(&st.events_late),
        "from_rt_dropped": RtStats::get(&st.from_rt_dropped),
        "timings_dropped": RtStats::get(&st.timings_dropped),
        "swaps": RtStats::get(&st.swaps),
        "reloads_ok": s.reloads_ok,
        "reloads_failed": s.reloads_failed,
        "device_losses": s.device.losses,
        "device_recoveries": s.device.recoveries,
        "rt_allocations": stagebox_engine::alloc_check::violations() - s.alloc_before,
        "alloc_check_installed": stagebox_engine::alloc_check::is_installed(),
        "cpu_wake_us": s.cpu_wake.as_ref().map(|h| h.bound_us),
        "audio_priority": RtStats::get(&st.audio_priority),
        "memory_locked": s.memory_locked,
        "latency_frames": s.handle.latency_frames(),
        "meters": meters(s),
        "late_windows": s.results.late_windows(),
        "dropped_windows": inference.values().map(|c| c.dropped).sum::<u64>(),
        "inference": inference.iter().map(|((g, id), c)| json!({
            "node": id, "generation": g, "windows": c.windows, "late": c.late, "dropped": c.dropped, "failed": c.failed,
        })).collect::<Vec<_>>(),
    })
}

/// The control side: notes out, OSC and MIDI counters.
fn control(s: &Session) -> Value {
    let osc = s.surfaces.osc.as_ref();
    let midi = s.surfaces.midi_in.as_ref();
    let count = |f: fn(&crate::osc::OscCounters) -> &std::sync::atomic::AtomicU64| osc.map(|o| f(&o.counters).load(Ordering::Relaxed));
    json!({
        "notes_emitted": s.results.notes_emitted,
        "midi_sent": s.outputs.midi_sent + RtStats::get(&s.stats.device_midi_sent),
        "osc_sent": s.outputs.osc_sent,
        "osc_port": osc.map(|o| o.local.port()),
        "oscquery_port": s.surfaces.oscquery.as_ref().map(|q| q.local.port()),
        "midi_in_received": midi.map(|m| m.received),
        "midi_dispatch_us": midi.map(|m| summary(&m.dispatch_us)),
        "midi_in_dropped": midi.map(|m| m.dropped.load(Ordering::Relaxed)),
        "midi_clock_in_bpm": midi.and_then(|m| m.clock.bpm),
        "midi_clock_out_ticks": s.surfaces.clock_out.as_ref().map(|c| c.sent()),
        "osc_received": count(|c| &c.received),
        "osc_dropped": count(|c| &c.dropped),
        "osc_errors": count(|c| &c.errors),
        "osc_malformed": count(|c| &c.malformed),
        "osc_refused": count(|c| &c.refused),
        "osc_late_bundles": count(|c| &c.late_bundles),
        "osc_dispatch_us": osc.map(|o| summary(&o.dispatch_us)),
        "oscquery": s.surfaces.oscquery.as_ref().map(|q| oscquery(&q.counters)),
    })
}

/// What OSCQuery refused or cut.
fn oscquery(c: &crate::oscquery::Counters) -> Value {
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    json!({
        "refused_peer": n(&c.refused_peer),
        "refused_host": n(&c.refused_host),
        "refused_origin": n(&c.refused_origin),
        "too_many_connections": n(&c.too_many),
        "timed_out": n(&c.timed_out),
        "too_large": n(&c.too_large),
        "malformed": n(&c.malformed),
        "refused_listen": n(&c.refused_listen),
        "slow_clients_dropped": n(&c.slow_clients),
    })
}

/// The whole document.
pub fn build(s: &Session, elapsed_secs: f64) -> Value {
    let mut doc = audio(s, elapsed_secs);
    if let (Value::Object(d), Value::Object(c)) = (&mut doc, control(s)) {
        d.extend(c);
    }
    doc
}
