//! The control surfaces of a run (main thread; their sockets and ports have threads or callbacks
//! of their own that only forward): the OSC server, OSCQuery, MIDI in (controllers, learn,
//! program change, clock in) and MIDI clock out. Each turn the session polls them; what they ask
//! for comes back as session [`Command`]s, parameter sets go straight to the engine.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rosc::OscType;
use stagebox_engine::EngineHandle;
use stagebox_patches::Patch;

use super::args::{osc_settings, RunArgs};
use super::session::Command;
use crate::audio_io::AudioIo;
use crate::midi_in::{ClockOut, MidiAction, MidiIn, MidiSettings, NotesIn};
use crate::osc::{Action, OscServer, Peer, Status};
use crate::oscquery::OscQuery;

pub struct Surfaces {
    pub osc: Option<OscServer>,
    pub oscquery: Option<OscQuery>,
    _mdns: Option<mdns_sd::ServiceDaemon>,
    pub midi_in: Option<MidiIn>,
    /// Instrument notes from a midir port (ALSA); JACK has its own `midi_in` port.
    notes_in: Option<NotesIn>,
    pub clock_out: Option<ClockOut>,
    midi_settings: MidiSettings,
    /// Whether there is a MIDI system to open ports on without the backend (JACK or ALSA seq).
    want_midi: bool,
    pub tempo: f64,
    learn_peer: Option<Peer>,
    /// Where program changes may load patches from.
    patch_dirs: crate::access::PatchDirs,
    last_publish: Instant,
    ns_dirty: bool,
}

fn osc_error(o: &OscServer, peer: Peer, addr: &str, why: String) {
    o.send(peer, "/stagebox/error", vec![OscType::String(addr.into()), OscType::String(why)]);
}

impl Surfaces {
    /// Starts OSC and OSCQuery, and MIDI in and clock out (from the backend's own ports when
    /// it has them). Err: the patch's `[midi]` table is wrong.
    pub fn start(a: &RunArgs, patch: &Patch, patch_path: &Path, handle: &EngineHandle, audio: &mut AudioIo) -> anyhow::Result<Surfaces> {
        let osc = match osc_settings(a, patch)? {
            Some(settings) => match OscServer::start(settings.clone(), patch_path) {
                Ok(o) => Some(o),
                Err(e) => {
                    // Another instance may hold the port: the engine still runs, without OSC control.
                    tracing::error!("OSC control not started: cannot bind {}:{}: {e}", settings.bind, settings.port);
                    None
                }
            },
            None => None,
        };
        let oscquery = osc.as_ref().filter(|_| !a.no_oscquery).and_then(|o| start_oscquery(a, patch, o));
        let mdns = match (&oscquery, &osc, a.oscquery_mdns) {
            (Some(q), Some(o), true) => crate::oscquery::advertise(q.local.port(), o.local.port())
                .map_err(|e| tracing::warn!("no mDNS advertising: {e}"))
                .ok(),
            _ => None,
        };
        let midi_settings = crate::midi_in::settings(patch.midi.as_ref(), patch_path, handle)
            .map_err(|e| anyhow::anyhow!("{}: {e}", patch_path.display()))?;
        let want_midi = !a.no_midi_in && (stagebox_engine::backend::live::jack_server_running() || Path::new("/dev/snd/seq").exists());
        let mut s = Surfaces {
            osc,
            oscquery,
            _mdns: mdns,
            midi_in: None,
            notes_in: None,
            clock_out: None,
            tempo: midi_settings.tempo,
            midi_settings,
            want_midi,
            learn_peer: None,
            patch_dirs: crate::access::PatchDirs {
                extra: a.patch_dir.clone(),
            },
            last_publish: Instant::now(),
            ns_dirty: false,
        };
        s.open_midi(audio);
        Ok(s)
    }

    /// MIDI in and clock out: the backend's own ports (JACK), else midir ports where there is
    /// a MIDI system. Also after the device came back.
    pub fn open_midi(&mut self, audio: &mut AudioIo) {
        if let Some((rx, dropped)) = audio.take_control_midi() {
            self.midi_in = Some(MidiIn::from_ring(&self.midi_settings, rx, dropped, None));
            self.clock_out = audio.clock().map(ClockOut::driven);
            return;
        }
        if self.want_midi && self.midi_in.is_none() {
            self.midi_in = MidiIn::open(&self.midi_settings)
                .map_err(|e| tracing::warn!("no MIDI input: {e}"))
                .ok();
        }
        if self.want_midi && self.notes_in.is_none() {
            self.notes_in = NotesIn::open("midi_in")
                .map_err(|e| tracing::warn!("no MIDI notes input: {e}"))
                .ok();
        }
        if self.want_midi && self.midi_settings.clock_out && self.clock_out.is_none() {
            self.clock_out = ClockOut::start("clock", self.tempo)
                .map_err(|e| tracing::warn!("no MIDI clock out: {e}"))
                .ok();
        }
    }

    /// The device died with its MIDI ports: they are let go (a midir port of a dead JACK server
    /// crashes when closed, so it is leaked).
    pub fn device_lost(&mut self) {
        if let Some(m) = self.midi_in.take() {
            std::mem::forget(m);
        }
        if let Some(n) = self.notes_in.take() {
            std::mem::forget(n);
        }
        if let Some(c) = self.clock_out.take() {
            c.stop_without_port();
        }
    }

    /// The turn's pause: woken by OSC as it arrives; MIDI is polled each turn, so with a MIDI
    /// port the turns are 1 ms.
    pub fn wait(&mut self) {
        let pause = Duration::from_millis(if self.midi_in.is_some() { 1 } else { 3 });
        match &mut self.osc {
            Some(o) => o.wait(pause),
            None => std::thread::sleep(pause),
        }
    }

    /// MIDI that arrived: parameters set, learn answered, program changes as commands.
    pub fn poll_midi(&mut self, handle: &mut EngineHandle, running_patch: &Path, out: &mut Vec<Command>) {
        if let Some(n) = &mut self.notes_in {
            n.poll(handle);
        }
        let Some(m) = &mut self.midi_in else { return };
        // The values as the OSC side knows them (looked up only for a message).
        let osc_ref = self.osc.as_ref();
        let current =
            |node: &str, param: &str| -> Option<f64> { osc_ref?.values().get(&format!("/stagebox/node/{node}/{param}"))?.as_f64() };
        for action in m.poll(handle, &current) {
            match action {
                MidiAction::Load(p) => match self.patch_dirs.resolve(running_patch, &p.to_string_lossy()) {
                    Ok(p) => {
                        tracing::info!("program change: loading {}", p.display());
                        out.push(Command::Load(p));
                    }
                    Err(e) => tracing::error!("program change refused: {e}"),
                },
                MidiAction::Learned(addr, what) => {
                    tracing::info!("MIDI learn: {what} -> {addr}");
                    if let (Some(o), Some(peer)) = (&self.osc, self.learn_peer.take()) {
                        o.send(peer, "/stagebox/learned", vec![OscType::String(addr), OscType::String(what)]);
                    }
                }
            }
        }
        for (node, param, v) in m.sets.drain(..) {
            if let Some(o) = &mut self.osc {
                o.note_set(&node, &param, v);
            }
        }
    }

    /// OSC that arrived: parameters set, replies sent; what needs the session as commands.
    pub fn poll_osc(&mut self, handle: &mut EngineHandle, patch: &Patch, status: &dyn Fn() -> Status, out: &mut Vec<Command>) {
        let Some(o) = &mut self.osc else { return };
        let actions = o.poll(handle, patch, status);
        for action in actions {
            match action {
                Action::Reload => out.push(Command::Reload(Duration::ZERO)),
                Action::Load(p) => out.push(Command::Load(p)),
                Action::Quit => out.push(Command::Stop("OSC /stagebox/quit")),
                Action::Rebuild { node, param, value } => out.push(Command::Rebuild { node, param, value }),
                Action::Learn { node, param, peer } => self.arm_learn(&node, &param, peer),
                Action::SaveLearned { peer } => self.save_learned(&patch.path, peer),
                Action::Tempo { bpm: Some(b), .. } => self.set_tempo(b),
                Action::Tempo { bpm: None, peer } => self.reply_tempo(peer),
            }
        }
        self.publish_oscquery();
    }

    fn arm_learn(&mut self, node: &str, param: &str, peer: Peer) {
        let (Some(o), midi) = (&self.osc, &mut self.midi_in) else { return };
        match midi {
            Some(m) => {
                m.arm(node, param);
                self.learn_peer = Some(peer);
                tracing::info!("MIDI learn armed for {node}.{param}: move a control");
            }
            None => osc_error(o, peer, "/stagebox/learn", "no MIDI input port".into()),
        }
    }

    fn save_learned(&mut self, patch_path: &Path, peer: Peer) {
        let r = match &mut self.midi_in {
            Some(m) => m.save_learned(patch_path),
            None => Err("no MIDI input port".into()),
        };
        let Some(o) = &self.osc else { return };
        match r {
            Ok(n) => {
                tracing::info!("saved {n} learned MIDI bindings into {}", patch_path.display());
                o.send(
                    peer,
                    "/stagebox/done",
                    vec![OscType::String("/stagebox/learn/save".into()), OscType::Int(n as i32)],
                );
            }
            Err(e) => osc_error(o, peer, "/stagebox/learn/save", e),
        }
    }

    fn set_tempo(&mut self, bpm: f64) {
        self.tempo = bpm;
        if let Some(c) = &self.clock_out {
            c.set_tempo(bpm);
        }
    }

    fn reply_tempo(&self, peer: Peer) {
        let Some(o) = &self.osc else { return };
        let clock = self.midi_in.as_ref().map(|m| m.clock).unwrap_or_default();
        o.send(
            peer,
            "/stagebox/tempo.reply",
            vec![
                OscType::Float(self.tempo as f32),
                OscType::Float(clock.bpm.unwrap_or(0.0) as f32),
                OscType::Bool(clock.running),
                OscType::Float(clock.position_16ths as f32),
            ],
        );
    }

    /// Value changes to OSCQuery listeners; the namespace (with values) at most every 100 ms,
    /// and at once when the address space changed.
    fn publish_oscquery(&mut self) {
        let (Some(o), Some(q)) = (&mut self.osc, &self.oscquery) else {
            return;
        };
        let (space, changed) = o.take_changes();
        for addr in &changed {
            if let Some(v) = o.values().get(addr) {
                q.changed(addr, v);
            }
        }
        self.ns_dirty |= !changed.is_empty();
        if space || (self.ns_dirty && self.last_publish.elapsed() >= Duration::from_millis(100)) {
            q.publish(crate::oscquery::namespace(o.params(), o.values()));
            self.last_publish = Instant::now();
            self.ns_dirty = false;
        }
    }

    /// A patch loaded (or failed to): OSC waiters are answered; MIDI maps follow the patch.
    pub fn reload_finished(&mut self, result: &Result<(), String>, patch: Option<&Patch>, handle: &EngineHandle) {
        if let Some(o) = &mut self.osc {
            o.finished(result);
        }
        let (Some(m), Some(p)) = (&mut self.midi_in, patch) else { return };
        match crate::midi_in::settings(p.midi.as_ref(), &p.path, handle) {
            Ok(ms) => m.set_maps(&ms),
            Err(e) => tracing::error!("{}: {e} (the MIDI mappings stay as they were)", p.path.display()),
        }
    }

    pub fn midi_dropped(&self) -> u64 {
        let notes = self.notes_in.as_ref().map_or(0, |n| n.dropped.load(Ordering::Relaxed));
        notes + self.midi_in.as_ref().map_or(0, |m| m.dropped.load(Ordering::Relaxed))
    }
}

/// OSCQuery on its port: the command line, else the patch's `[osc] oscquery_port`, else the OSC
/// port + 1 (a free port when OSC took one).
fn start_oscquery(a: &RunArgs, patch: &Patch, o: &OscServer) -> Option<OscQuery> {
    let qp = a
        .oscquery_port
        .or_else(|| {
            patch
                .osc
                .as_ref()
                .and_then(|v| v.get("oscquery_port"))
                .and_then(|v| v.as_integer())
                .map(|p| p as u16)
        })
        .unwrap_or(if a.osc_port == Some(0) { 0 } else { o.local.port().wrapping_add(1) });
    let settings = crate::oscquery::QuerySettings {
        bind: o.local.ip(),
        port: qp,
        osc_port: o.local.port(),
        allow: o.settings().allow.clone(),
        origins: a.oscquery_allow_origin.clone(),
    };
    match OscQuery::start(settings) {
        Ok(q) => Some(q),
        Err(e) => {
            tracing::error!("OSCQuery not started: cannot bind port {qp}: {e}");
            None
        }
    }
}
