//! What the audio thread reports, as the control thread collects it each turn (main thread):
//! callback durations (late callbacks), meters, notes (sent on to the outputs and OSC), and
//! inference counters, with node names looked up by schedule generation; the status line.

use std::collections::BTreeMap;

use stagebox_engine::device_midi::ENGINE_NODE;
use stagebox_engine::infer::InferCounts;
use stagebox_engine::msg::FromRt;
use stagebox_engine::stats::RtStats;
use stagebox_engine::EngineHandle;

use crate::events::Emitted;
use crate::histogram::Histogram;
use crate::osc::OscServer;
use crate::outputs::Outputs;

#[derive(Default, Clone)]
pub struct MeterState {
    pub reports: u64,
    pub silent_reports: u64,
    pub peak: Vec<f32>,
    pub rms: Vec<f32>,
}

/// Decibels of a linear level (-120 for silence).
pub fn db(x: f32) -> f64 {
    if x <= 1e-6 {
        -120.0
    } else {
        20.0 * (x as f64).log10()
    }
}

/// Node ids of one schedule generation.
type Names = (u64, Vec<String>);

fn names_of(h: &EngineHandle) -> Names {
    (h.generation(), h.nodes().map(|n| n.id.clone()).collect())
}

pub struct Results {
    pub hist: Histogram,
    pub late_callbacks: u64,
    /// Counters per (generation, node id): cumulative per node instance.
    pub inference: BTreeMap<(u64, String), InferCounts>,
    pub meters: BTreeMap<String, MeterState>,
    pub notes_emitted: u64,
    /// Keys of the notes started since the status line was last printed (at most 12).
    recent: Vec<u8>,
    emitted: Vec<Emitted>,
    /// The current schedule's names and the one fading out.
    ids: Names,
    prev_ids: Names,
}

impl Results {
    pub fn new(handle: &EngineHandle) -> Self {
        Self {
            hist: Histogram::new(),
            late_callbacks: 0,
            inference: BTreeMap::new(),
            meters: BTreeMap::new(),
            notes_emitted: 0,
            recent: Vec::with_capacity(12),
            emitted: Vec::with_capacity(256),
            ids: names_of(handle),
            prev_ids: names_of(handle),
        }
    }

    /// A new schedule was swapped in (the old one fades out).
    pub fn swapped(&mut self, handle: &EngineHandle) {
        self.prev_ids = std::mem::replace(&mut self.ids, names_of(handle));
    }

    /// A new engine replaced the old one (device lost or back).
    pub fn replaced(&mut self, handle: &EngineHandle) {
        self.ids = names_of(handle);
        self.prev_ids = self.ids.clone();
    }

    fn name(&self, gen: u64, node: u32) -> String {
        if node == ENGINE_NODE {
            return "engine".into();
        }
        let names = if gen == self.ids.0 { &self.ids.1 } else { &self.prev_ids.1 };
        names.get(node as usize).cloned().unwrap_or_else(|| format!("#{node}"))
    }

    /// Callback durations; one that took longer than its block's duration missed its deadline.
    pub fn take_timings(&mut self, timings: &mut rtrb::Consumer<u32>, period_ns: u64) {
        while let Ok(ns) = timings.pop() {
            self.hist.add(ns as u64);
            if period_ns > 0 && ns as u64 > period_ns {
                self.late_callbacks += 1;
            }
        }
    }

    /// Everything the audio thread sent: meters and notes go on to OSC and the outputs.
    pub fn drain(&mut self, handle: &mut EngineHandle, osc: Option<&OscServer>, outputs: &mut Outputs, sample_rate: u32) {
        handle.drain(|m| match m {
            FromRt::Meter {
                gen,
                node,
                channels,
                peak,
                rms,
                ..
            } => {
                let id = self.name(gen, node);
                self.meter(id, &peak[..channels as usize], &rms[..channels as usize], osc);
            }
            FromRt::Midi {
                gen,
                node,
                sample_time,
                origin,
                msg,
            } => {
                let node = self.name(gen, node);
                self.emitted.push(Emitted {
                    node,
                    sample_time,
                    origin,
                    msg,
                });
            }
            FromRt::Infer { gen, node, counts } => {
                let id = self.name(gen, node);
                self.inference.insert((gen, id), counts);
            }
            _ => {}
        });
        for e in self.emitted.drain(..) {
            if e.msg[0] & 0xf0 == 0x90 && e.msg[2] > 0 {
                self.notes_emitted += 1;
                if self.recent.len() < 12 {
                    self.recent.push(e.msg[1]);
                }
            }
            outputs.send(&e);
            if let Some(o) = osc {
                let (addr, args) = crate::outputs::osc_message(&e, sample_rate);
                o.broadcast(addr, args);
            }
        }
    }

    fn meter(&mut self, id: String, peak: &[f32], rms: &[f32], osc: Option<&OscServer>) {
        if let Some(o) = osc {
            let top = |v: &[f32]| v.iter().cloned().fold(0.0f32, f32::max);
            o.broadcast(
                "/stagebox/meter",
                vec![
                    rosc::OscType::String(id.clone()),
                    rosc::OscType::Float(db(top(peak)) as f32),
                    rosc::OscType::Float(db(top(rms)) as f32),
                ],
            );
        }
        let st = self.meters.entry(id).or_default();
        st.reports += 1;
        if peak.iter().all(|p| *p < 1e-4) {
            st.silent_reports += 1;
        }
        st.peak = peak.to_vec();
        st.rms = rms.to_vec();
    }

    /// Inference windows that came back late, over every model node.
    pub fn late_windows(&self) -> u64 {
        self.inference.values().map(|c| c.late).sum()
    }

    /// The once-a-second line: levels, the notes since the last line by name, the engine's late
    /// callbacks and the device's missed cycles (`paced`: no device, so blocks the paced clock
    /// ran late, not xruns).
    pub fn status_line(&mut self, stats: &RtStats, paced: bool) -> String {
        let mut s = String::new();
        for (id, m) in &self.meters {
            let levels: Vec<String> = m.peak.iter().map(|p| format!("{:.1}", db(*p))).collect();
            s.push_str(&format!("{id} {} dB  ", levels.join("/")));
        }
        let notes: Vec<String> = self.recent.drain(..).map(note_name).collect();
        s.push_str(&format!("notes: {}  ", if notes.is_empty() { "-".into() } else { notes.join(" ") }));
        s.push_str(&format!(
            "late callbacks {}  {} {}  cb {:.0}/{:.0} us (median/max)",
            self.late_callbacks,
            if paced { "late blocks (no device)" } else { "xruns" },
            RtStats::get(&stats.xruns),
            self.hist.quantile_us(0.5),
            self.hist.max_us()
        ));
        if self.late_windows() > 0 {
            s.push_str(&format!("  late model windows {}", self.late_windows()));
        }
        s
    }
}

/// A MIDI key by name: 60 is C4, 69 is A4.
pub fn note_name(key: u8) -> String {
    const NAMES: [&str; 12] = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
    format!("{}{}", NAMES[key as usize % 12], key as i32 / 12 - 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn notes_are_named_as_musicians_name_them() {
        assert_eq!(super::note_name(60), "C4");
        assert_eq!(super::note_name(69), "A4");
        assert_eq!(super::note_name(61), "C#4");
        assert_eq!(super::note_name(21), "A0");
    }
}
