//! Native JACK backend: one client (`--client-name`, default `stagebox`) whose single process
//! callback (JACK's real-time thread) reads the audio inputs and the MIDI inputs, runs the
//! engine, and writes the audio outputs and the MIDI outputs at their frames. `JackDevice::open`
//! and `start` run on the control thread; the notification handler (xruns, shutdown, rate) on
//! JACK's notification thread; the latency callback on whichever JACK thread asks.
//!
//! Ports: `in_1..in_N`, `out_1..out_N` (the patch's channels), `midi_in` (instrument notes to
//! the `midi_in` nodes, at their frame), `control` (controllers, program change, clock in: to
//! the control thread through a ring), `notes` (what nodes send with `Emit::note`, at the frame
//! they sent it) and `clock` (24 PPQN from the control side's tempo, at exact frames). The
//! graph's latency is reported to the server as port latency ranges.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use jack::{AudioIn, AudioOut, Client, ClientOptions, Control, LatencyType, MidiIn, MidiOut, Port, ProcessScope};
use rtrb::{Consumer, Producer, RingBuffer};

use super::live::LiveError;
use crate::device_midi::{message_len, ClockShared, PortMidi};
use crate::msg::TIMING_CAPACITY;
use crate::processor::Engine;
use crate::stats::RtStats;

/// Most frames one JACK period may have (JACK's own limit); buffers are made this long.
pub const MAX_PERIOD_FRAMES: usize = 8192;
/// Messages from the `control` port waiting for the control thread.
pub const CONTROL_RING: usize = 4096;

#[derive(Debug, Clone)]
pub struct JackOptions {
    pub client_name: String,
    pub in_channels: usize,
    pub out_channels: usize,
    /// MIDI ports to make (names); None: no such port.
    pub notes_port: Option<String>,
    pub control_port: Option<String>,
    pub midi_in_port: Option<String>,
    pub clock_port: Option<String>,
    /// Connect the audio ports to the server's physical ports.
    pub autoconnect: bool,
}

/// An open client, not yet running.
pub struct JackDevice {
    client: Client,
    opts: JackOptions,
}

/// What a running client hands the control side.
pub struct JackRunning {
    active: jack::AsyncClient<Notifications, Process>,
    /// Callback durations in nanoseconds, one per process call.
    pub timings: Consumer<u32>,
    /// Messages from the `control` port, and those a full ring dropped.
    pub control_in: Option<(Consumer<PortMidi>, Arc<AtomicU64>)>,
    /// The clock sent on the `clock` port (None without one).
    pub clock: Option<Arc<ClockShared>>,
    lost: Arc<AtomicBool>,
    latency: Box<LatencyCtx>,
}

/// Whether `msg` (from a JACK port) is a short message the engine takes (1-3 bytes, status first).
fn short(bytes: &[u8]) -> Option<(u8, [u8; 3])> {
    let n = bytes.len();
    if n == 0 || n > 3 || message_len(bytes[0]) != n {
        return None;
    }
    let mut b = [0u8; 3];
    b[..n].copy_from_slice(bytes);
    Some((n as u8, b))
}

impl JackDevice {
    /// Connects to the running server (never starts one). Control thread.
    pub fn open(opts: &JackOptions) -> Result<JackDevice, LiveError> {
        if !super::live::jack_server_running() {
            return Err(LiveError::NoDevice("no JACK server is running".into()));
        }
        let (client, _status) = Client::new(&opts.client_name, ClientOptions::NO_START_SERVER)
            .map_err(|e| LiveError::NoDevice(format!("cannot connect to the JACK server ({e:?})")))?;
        Ok(JackDevice {
            client,
            opts: opts.clone(),
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.client.sample_rate()
    }
    pub fn buffer_frames(&self) -> u32 {
        self.client.buffer_size()
    }
    pub fn client_name(&self) -> &str {
        self.client.name()
    }
    pub fn in_channels(&self) -> usize {
        self.opts.in_channels
    }
    pub fn out_channels(&self) -> usize {
        self.opts.out_channels.max(1)
    }

    /// Registers the ports, moves the engine into the process callback and activates the
    /// client; reports `latency_frames` of graph latency to the server. Control thread.
    pub fn start(self, engine: Engine, latency_frames: u32, clock_bpm: f64) -> Result<JackRunning, LiveError> {
        let err = |what: &str, e: jack::Error| LiveError::Backend(format!("JACK: {what}: {e:?}"));
        let c = &self.client;
        let ins = (1..=self.in_channels())
            .map(|k| c.register_port(&format!("in_{k}"), AudioIn::default()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err("audio input port", e))?;
        let outs = (1..=self.out_channels())
            .map(|k| c.register_port(&format!("out_{k}"), AudioOut::default()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err("audio output port", e))?;
        let midi_port_in = |name: &Option<String>| name.as_deref().map(|n| c.register_port(n, MidiIn::default())).transpose();
        let midi_port_out = |name: &Option<String>| name.as_deref().map(|n| c.register_port(n, MidiOut::default())).transpose();
        let notes = midi_port_out(&self.opts.notes_port).map_err(|e| err("MIDI port notes", e))?;
        let clock_port = midi_port_out(&self.opts.clock_port).map_err(|e| err("MIDI port clock", e))?;
        let control_port = midi_port_in(&self.opts.control_port).map_err(|e| err("MIDI port control", e))?;
        let midi_in = midi_port_in(&self.opts.midi_in_port).map_err(|e| err("MIDI port midi_in", e))?;

        let stats = engine.stats().clone();
        let lost = Arc::new(AtomicBool::new(false));
        let (timing_tx, timings) = RingBuffer::<u32>::new(TIMING_CAPACITY);
        let (control, control_in) = match control_port {
            Some(p) => {
                let (tx, rx) = RingBuffer::<PortMidi>::new(CONTROL_RING);
                let dropped = Arc::new(AtomicU64::new(0));
                (Some((p, tx, dropped.clone())), Some((rx, dropped)))
            }
            None => (None, None),
        };
        let clock = clock_port.map(|p| (p, Arc::new(ClockShared::new(clock_bpm))));
        let clock_shared = clock.as_ref().map(|(_, s)| s.clone());
        let latency = Box::new(LatencyCtx {
            ins: ins.iter().map(|p| p.clone_unowned()).collect(),
            outs: outs.iter().map(|p| p.clone_unowned()).collect(),
            frames: AtomicU32::new(latency_frames),
        });
        register_latency_callback(c, &latency)?;
        let (in_ch, out_ch) = (ins.len(), outs.len());
        let process = Process {
            engine,
            in_buf: vec![0.0; MAX_PERIOD_FRAMES * in_ch.max(1)],
            out_buf: vec![0.0; MAX_PERIOD_FRAMES * out_ch],
            ins,
            outs,
            notes,
            midi_in,
            control,
            clock: clock.map(|(port, shared)| ClockGen {
                port,
                shared,
                next_tick: 0.0,
                sample_rate: self.client.sample_rate() as f64,
                started: false,
            }),
            timing_tx,
            stats: stats.clone(),
        };
        let notifications = Notifications {
            stats,
            lost: lost.clone(),
            sample_rate: self.client.sample_rate(),
        };
        let active = self
            .client
            .activate_async(notifications, process)
            .map_err(|e| err("activating the client", e))?;
        if self.opts.autoconnect {
            autoconnect(active.as_client(), in_ch, out_ch);
        }
        Ok(JackRunning {
            active,
            timings,
            control_in,
            clock: clock_shared,
            lost,
            latency,
        })
    }
}

/// What `stagebox devices` says of JACK: the server's rate, period and physical ports, or that
/// none runs and how to start one (control thread).
pub fn describe_server() -> String {
    if !super::live::jack_server_running() {
        return "no JACK server is running (start one: `jackd -d alsa` for a sound card, or \
                `jackd -d dummy -r 48000 -p 128` to try without one)"
            .into();
    }
    let c = match Client::new("stagebox-devices", ClientOptions::NO_START_SERVER) {
        Ok((c, _)) => c,
        Err(e) => return format!("a JACK server's socket exists but it does not answer ({e:?})"),
    };
    let ports = |flags| c.ports(None, Some("32 bit float mono audio"), jack::PortFlags::IS_PHYSICAL | flags);
    let (capture, playback) = (ports(jack::PortFlags::IS_OUTPUT), ports(jack::PortFlags::IS_INPUT));
    format!(
        "server running at {} Hz, {} frames a period; physical capture: {}; playback: {}",
        c.sample_rate(),
        c.buffer_size(),
        if capture.is_empty() { "none".into() } else { capture.join(", ") },
        if playback.is_empty() { "none".into() } else { playback.join(", ") },
    )
}

/// Connects `system`-like physical ports to ours, in order (control thread).
fn autoconnect(c: &Client, in_ch: usize, out_ch: usize) {
    let me = c.name().to_string();
    let phys = |flags| c.ports(None, Some("32 bit float mono audio"), flags);
    let capture = phys(jack::PortFlags::IS_PHYSICAL | jack::PortFlags::IS_OUTPUT);
    let playback = phys(jack::PortFlags::IS_PHYSICAL | jack::PortFlags::IS_INPUT);
    for (k, src) in capture.iter().take(in_ch).enumerate() {
        let _ = c.connect_ports_by_name(src, &format!("{me}:in_{}", k + 1));
    }
    for (k, dst) in playback.iter().take(out_ch).enumerate() {
        let _ = c.connect_ports_by_name(&format!("{me}:out_{}", k + 1), dst);
    }
}

impl JackRunning {
    /// Whether the server went away (or changed its sample rate under us).
    pub fn device_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
    /// The client's name on the server (`stagebox`, or what JACK made of it).
    pub fn client_name(&self) -> &str {
        self.active.as_client().name()
    }
    /// Lets go of a client whose server died, and returns its engine if it can be had back (so
    /// its schedule, inference workers and recorders end on the control side). A deactivated
    /// client is not closed (closing a client of a dead server can crash inside libjack): its
    /// small handle is leaked. On a dead server deactivation fails, and the jack crate then
    /// closes the client itself and drops the engine with it (seen to be safe with libjack 2).
    pub fn into_engine(self) -> Option<Engine> {
        let JackRunning { active, latency, .. } = self;
        let engine = match active.deactivate() {
            Ok((client, _notifications, process)) => {
                std::mem::forget(client);
                Some(process.engine)
            }
            Err(e) => {
                tracing::info!("JACK: the lost client was closed with its engine ({e:?})");
                None
            }
        };
        // The client no longer runs callbacks: the latency callback's context can go.
        drop(latency);
        engine
    }

    /// Reports a new graph latency (after a reload) to the server. Control thread.
    pub fn set_latency(&self, frames: u32) {
        if self.latency.frames.swap(frames, Ordering::Relaxed) != frames {
            // SAFETY: the client is active and owned by `self.active`; this asks the server to
            // run the latency callbacks again, from a non-real-time thread.
            unsafe { jack::jack_sys::jack_recompute_total_latencies(self.active.as_client().raw()) };
        }
    }
}

/// What the latency callback needs: our ports and the graph's latency.
struct LatencyCtx {
    ins: Vec<Port<jack::Unowned>>,
    outs: Vec<Port<jack::Unowned>>,
    frames: AtomicU32,
}

/// JACK's latency callback: our outputs' capture latency is the most any input brings plus the
/// graph's; our inputs' playback latency is the most any output meets plus the graph's.
unsafe extern "C" fn latency_callback(mode: jack::jack_sys::jack_latency_callback_mode_t, arg: *mut std::ffi::c_void) {
    // SAFETY: `arg` is the `LatencyCtx` registered in `register_latency_callback`, boxed and kept
    // alive by `JackRunning` for as long as the client is active (it is dropped after the client).
    let ctx = unsafe { &*(arg as *const LatencyCtx) };
    let lat = ctx.frames.load(Ordering::Relaxed);
    let (from, to, kind) = if mode == jack::jack_sys::JackCaptureLatency {
        (&ctx.ins, &ctx.outs, LatencyType::Capture)
    } else {
        (&ctx.outs, &ctx.ins, LatencyType::Playback)
    };
    let (mut lo, mut hi) = (u32::MAX, 0u32);
    for p in from {
        let (a, b) = p.get_latency_range(kind);
        lo = lo.min(a);
        hi = hi.max(b);
    }
    if lo == u32::MAX {
        lo = 0;
    }
    for p in to {
        p.set_latency_range(kind, (lo + lat, hi + lat));
    }
}

fn register_latency_callback(c: &Client, ctx: &LatencyCtx) -> Result<(), LiveError> {
    // SAFETY: the client is not active yet (callbacks may only be set before activation); the
    // context outlives the client (see `latency_callback`) and is only read there.
    let rc = unsafe {
        jack::jack_sys::jack_set_latency_callback(c.raw(), Some(latency_callback), ctx as *const LatencyCtx as *mut std::ffi::c_void)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(LiveError::Backend(format!("JACK: cannot set the latency callback ({rc})")))
    }
}

/// JACK's notification thread: counts xruns, notices a server that went away.
struct Notifications {
    stats: Arc<RtStats>,
    lost: Arc<AtomicBool>,
    sample_rate: u32,
}

impl jack::NotificationHandler for Notifications {
    unsafe fn shutdown(&mut self, _status: jack::ClientStatus, _reason: &str) {
        self.lost.store(true, Ordering::Relaxed);
    }
    fn sample_rate(&mut self, _: &Client, srate: jack::Frames) -> Control {
        if srate != self.sample_rate {
            // The patch was built for another rate: go device-less and reconnect at the new one.
            self.lost.store(true, Ordering::Relaxed);
        }
        Control::Continue
    }
    fn xrun(&mut self, _: &Client) -> Control {
        RtStats::add(&self.stats.xruns, 1);
        Control::Continue
    }
}

/// MIDI clock generation on the `clock` port.
struct ClockGen {
    port: Port<MidiOut>,
    shared: Arc<ClockShared>,
    /// Frames from this cycle's start to the next tick.
    next_tick: f64,
    sample_rate: f64,
    started: bool,
}

/// The process callback's state (JACK's real-time thread).
struct Process {
    engine: Engine,
    ins: Vec<Port<AudioIn>>,
    outs: Vec<Port<AudioOut>>,
    notes: Option<Port<MidiOut>>,
    midi_in: Option<Port<MidiIn>>,
    control: Option<(Port<MidiIn>, Producer<PortMidi>, Arc<AtomicU64>)>,
    clock: Option<ClockGen>,
    in_buf: Vec<f32>,
    out_buf: Vec<f32>,
    timing_tx: Producer<u32>,
    stats: Arc<RtStats>,
}

impl jack::ProcessHandler for Process {
    fn process(&mut self, _: &Client, ps: &ProcessScope) -> Control {
        let t0 = Instant::now();
        crate::alloc_check::no_alloc(|| self.cycle(ps));
        let ns = t0.elapsed().as_nanos().min(u32::MAX as u128) as u32;
        if self.timing_tx.push(ns).is_err() {
            RtStats::add(&self.stats.timings_dropped, 1);
        }
        Control::Continue
    }
}

impl Process {
    /// One cycle: MIDI in, audio in, the engine, audio out, MIDI out. No allocation.
    fn cycle(&mut self, ps: &ProcessScope) {
        let n = ps.n_frames() as usize;
        if n > MAX_PERIOD_FRAMES {
            // A period longer than any buffer here: silence, and MIDI ports cleared (a JACK
            // MIDI output keeps last cycle's events unless its writer clears it).
            for p in &mut self.outs {
                p.as_mut_slice(ps).fill(0.0);
            }
            if let Some(p) = &mut self.notes {
                let _cleared = p.writer(ps); // taking the writer clears the buffer
            }
            if let Some(c) = &mut self.clock {
                let _cleared = c.port.writer(ps);
            }
            RtStats::add(&self.stats.xruns, 1);
            return;
        }
        self.read_midi(ps);
        let (in_ch, out_ch) = (self.ins.len(), self.outs.len());
        for (c, p) in self.ins.iter().enumerate() {
            for (t, &x) in p.as_slice(ps).iter().enumerate() {
                self.in_buf[t * in_ch + c] = x;
            }
        }
        let input = &self.in_buf[..n * in_ch];
        self.engine.process(input, &mut self.out_buf[..n * out_ch]);
        for (c, p) in self.outs.iter_mut().enumerate() {
            for (t, y) in p.as_mut_slice(ps).iter_mut().enumerate() {
                *y = self.out_buf[t * out_ch + c];
            }
        }
        self.write_notes(ps, n);
        self.write_clock(ps, n);
    }

    /// Instrument notes to the engine at their frames; control messages to the control ring.
    fn read_midi(&mut self, ps: &ProcessScope) {
        if let Some(port) = &self.midi_in {
            for ev in port.iter(ps) {
                if let Some((_, b)) = short(ev.bytes) {
                    self.engine.push_device_midi(ev.time, b);
                }
            }
        }
        if let Some((port, tx, dropped)) = &mut self.control {
            let (usecs, period_us) = match ps.cycle_times() {
                Ok(t) => (t.current_usecs, t.period_usecs as f64),
                Err(_) => (0, 0.0),
            };
            let n = ps.n_frames().max(1) as f64;
            let at = Instant::now();
            for ev in port.iter(ps) {
                let Some((len, bytes)) = short(ev.bytes) else { continue };
                let time_us = usecs + (ev.time as f64 * period_us / n) as u64;
                if tx.push(PortMidi { time_us, at, len, bytes }).is_err() {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// What nodes sent to the device output, at its frames (kept in order: JACK wants times that
    /// never go back; a schedule fading out may have sent a little later than the new one).
    fn write_notes(&mut self, ps: &ProcessScope, n: usize) {
        let Some(port) = &mut self.notes else { return };
        let mut w = port.writer(ps);
        let mut last = 0u32;
        for (offset, msg) in self.engine.device_midi_out() {
            let len = message_len(msg[0]);
            if len == 0 {
                continue;
            }
            let time = offset.min(n as u32 - 1).max(last);
            last = time;
            match w.write(&jack::RawMidi { time, bytes: &msg[..len] }) {
                Ok(()) => RtStats::add(&self.stats.device_midi_sent, 1),
                Err(_) => RtStats::add(&self.stats.from_rt_dropped, 1),
            }
        }
    }

    /// MIDI clock ticks that fall in this cycle, at their frames.
    fn write_clock(&mut self, ps: &ProcessScope, n: usize) {
        let Some(clock) = &mut self.clock else { return };
        let period = clock.sample_rate * 60.0 / (clock.shared.bpm().clamp(20.0, 400.0) * 24.0);
        let mut w = clock.port.writer(ps);
        if !clock.started {
            clock.started = w.write(&jack::RawMidi { time: 0, bytes: &[0xfa] }).is_ok();
        }
        while clock.next_tick < n as f64 {
            let time = clock.next_tick.max(0.0) as u32;
            if w.write(&jack::RawMidi { time, bytes: &[0xf8] }).is_ok() {
                clock.shared.sent.fetch_add(1, Ordering::Relaxed);
            }
            clock.next_tick += period;
        }
        clock.next_tick -= n as f64;
    }
}
