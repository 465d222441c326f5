//! The OSC control surface. Socket threads (one for UDP, one accepting TCP, one per TCP
//! connection) receive and decode packets and hand them to the control thread through a
//! bounded queue (a full queue drops the packet and counts it: a flood never blocks anything);
//! the control thread (`OscServer::poll`, from the `run` loop) dispatches them: parameters go to
//! the audio thread as sample-stamped events through the engine's rtrb ring, replies go back
//! on the socket the request came from. Nothing here runs on the audio thread.
//!
//! The address space is generated from the running patch's nodes and their `ParamSpec`s (the
//! one source of parameter names, ranges and docs; `address_space` lists it, OSCQuery serves
//! it): see `docs/osc.md`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rosc::address::{Matcher, OscAddress};
use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};
use stagebox_engine::msg::AT_ONCE;
use stagebox_engine::param::{ParamKind, ParamSpec, ParamValue};
use stagebox_engine::EngineHandle;

/// Packets waiting for the control thread; more are dropped (and counted).
pub const QUEUE: usize = 8192;
/// The largest packet accepted (UDP datagrams and TCP frames).
pub const MAX_PACKET: usize = 65_507;
/// Bundles nested deeper than this are refused.
pub const MAX_DEPTH: usize = 8;

/// Where the server listens and whom it accepts.
#[derive(Debug, Clone)]
pub struct OscSettings {
    pub bind: IpAddr,
    /// 0: any free port (the log and the stats JSON say which).
    pub port: u16,
    /// Client networks accepted when bound beyond loopback (empty: everyone).
    pub allow: Vec<ipnet::IpNet>,
    /// A subscriber that sends nothing for this long is dropped.
    pub notify_timeout: Duration,
}

/// Counters, shared with the socket threads.
#[derive(Debug, Default)]
pub struct OscCounters {
    pub received: AtomicU64,
    /// Packets dropped because the queue to the control thread was full (a flood).
    pub dropped: AtomicU64,
    pub malformed: AtomicU64,
    pub refused: AtomicU64,
    /// Messages that got an error reply.
    pub errors: AtomicU64,
    /// Bundles whose time tag had passed on arrival (applied at once).
    pub late_bundles: AtomicU64,
}

/// Where a reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    Udp(SocketAddr),
    Tcp(u64),
}

enum Incoming {
    Packet { from: Peer, packet: OscPacket, arrived: Instant },
    Malformed { from: Peer, why: String },
}

/// What the run loop must do for a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Reload,
    Load(PathBuf),
    /// A parameter fixed when its node is built: change it in the running patch and rebuild.
    Rebuild {
        node: String,
        param: String,
        value: ParamValue,
    },
    Quit,
    /// Arm MIDI learn for a parameter; the binding is answered to `peer`.
    Learn {
        node: String,
        param: String,
        peer: Peer,
    },
    /// Save the learned bindings into the patch file.
    SaveLearned {
        peer: Peer,
    },
    /// Set the internal tempo (Some) or ask for the tempo (None).
    Tempo {
        bpm: Option<f64>,
        peer: Peer,
    },
}

/// What `/stagebox/status.reply` reports (the run loop fills it).
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub cpu_load: f32,
    pub xruns: u64,
    pub late_windows: u64,
    pub sample_rate: u32,
    pub block_size: u32,
    pub uptime_s: f64,
    pub late_callbacks: u64,
    pub notes: u64,
    pub rt_allocations: u64,
    pub frames: u64,
    pub patch: String,
    /// Inference counters per model node of the running patch.
    pub models: Vec<(String, stagebox_engine::infer::InferCounts)>,
    /// MIDI messages dropped by a full ring from the MIDI input port.
    pub midi_dropped: u64,
}

/// One parameter address.
#[derive(Debug, Clone)]
pub struct ParamAddr {
    pub address: String,
    pub node: String,
    pub kind: String,
    pub spec: ParamSpec,
}

/// The parameter addresses of the running patch: `/stagebox/node/<id>/<param>`.
pub fn address_space(handle: &EngineHandle) -> Vec<ParamAddr> {
    let mut v = Vec::new();
    for (n, specs) in handle.node_params() {
        for s in specs {
            v.push(ParamAddr {
                address: format!("/stagebox/node/{}/{}", n.id, s.name),
                node: n.id.clone(),
                kind: n.kind.clone(),
                spec: *s,
            });
        }
    }
    v
}

/// The fixed addresses, with their arguments, for the docs and OSCQuery.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("/stagebox/status", "[reply_port:i]", "answered by /stagebox/status.reply"),
    (
        "/stagebox/sync",
        "id:i [reply_port:i]",
        "answered by /stagebox/synced id once everything before it is applied",
    ),
    (
        "/stagebox/notify",
        "on:i [reply_port:i]",
        "1 subscribes the sender (or reply_port on its host) to notes, bends and meters; 0 ends it",
    ),
    (
        "/stagebox/patch/load",
        "path:s",
        "loads a patch; replies /stagebox/done or /stagebox/error",
    ),
    (
        "/stagebox/patch/reload",
        "",
        "reloads the running patch; replies /stagebox/done or /stagebox/error",
    ),
    (
        "/stagebox/patch/list",
        "[reply_port:i]",
        "answered by /stagebox/patch/list.reply with the patches beside the running one",
    ),
    (
        "/stagebox/models/list",
        "[reply_port:i]",
        "answered by /stagebox/models/list.reply with the model folders",
    ),
    (
        "/stagebox/models/status",
        "[reply_port:i]",
        "answered by /stagebox/models/status.reply node windows late dropped failed, per model node",
    ),
    (
        "/stagebox/models/load",
        "name:s",
        "checks the model's files and reloads the patch (model nodes load their models when built)",
    ),
    ("/stagebox/learn", "address:s", "arms MIDI learn: the next controller moved binds to this parameter (/stagebox/node/<id>/<param>); replies /stagebox/learned address control"),
    ("/stagebox/learn/save", "", "writes the learned bindings into the patch file as [[midi.map]] tables; done or error"),
    ("/stagebox/tempo", "[bpm:f]", "sets the internal tempo (MIDI clock out); without an argument answered by /stagebox/tempo.reply internal_bpm external_bpm running position_16ths"),
    ("/stagebox/quit", "", "stops the engine"),
];

struct Sub {
    peer: Peer,
    last_seen: Instant,
}

struct Waiting {
    peer: Peer,
    command: String,
}

/// The control thread's side.
pub struct OscServer {
    rx: Receiver<Incoming>,
    udp: UdpSocket,
    tcp: Arc<Mutex<HashMap<u64, TcpStream>>>,
    pub counters: Arc<OscCounters>,
    pub local: SocketAddr,
    stop: Arc<AtomicBool>,
    settings: OscSettings,
    subs: Vec<Sub>,
    /// Peers seen lately (for subscriptions' timeouts).
    seen: HashMap<Peer, Instant>,
    /// `/stagebox/sync` replies waiting for the audio thread to pass a frame.
    syncs: Vec<(Peer, OscType, u64)>,
    /// Asynchronous commands waiting for the run loop.
    waiting: Vec<Waiting>,
    gen: u64,
    params: Vec<ParamAddr>,
    values: HashMap<String, ParamValue>,
    patch_path: PathBuf,
    /// Addresses whose value changed since `take_changes`, and whether the address space did.
    changes: Vec<String>,
    space_changed: bool,
    /// A packet taken by `wait`, dispatched first by the next `poll`.
    early: Option<Incoming>,
    /// Immediate parameter sets of this batch, by parameter index (the last value wins).
    staged: Vec<(usize, f32)>,
    /// Arrival-to-dispatch time of each packet (µs).
    pub dispatch_us: Vec<u32>,
}

fn slip_encode(data: &[u8], out: &mut Vec<u8>) {
    out.push(0xc0);
    for &b in data {
        match b {
            0xc0 => out.extend_from_slice(&[0xdb, 0xdc]),
            0xdb => out.extend_from_slice(&[0xdb, 0xdd]),
            _ => out.push(b),
        }
    }
    out.push(0xc0);
}

/// Splits a TCP byte stream into SLIP frames (OSC 1.1 over a stream).
#[derive(Default)]
pub struct SlipDecoder {
    frame: Vec<u8>,
    escaped: bool,
    oversize: bool,
}

impl SlipDecoder {
    /// Feeds bytes; calls `f` with each whole frame (`Err` for one over `MAX_PACKET`).
    pub fn feed(&mut self, bytes: &[u8], mut f: impl FnMut(Result<&[u8], usize>)) {
        for &b in bytes {
            match (b, self.escaped) {
                (0xc0, _) => {
                    if self.oversize {
                        f(Err(self.frame.len()));
                    } else if !self.frame.is_empty() {
                        f(Ok(&self.frame));
                    }
                    self.frame.clear();
                    self.escaped = false;
                    self.oversize = false;
                }
                (0xdb, false) => self.escaped = true,
                (b, esc) => {
                    let b = match (b, esc) {
                        (0xdc, true) => 0xc0,
                        (0xdd, true) => 0xdb,
                        (b, _) => b,
                    };
                    self.escaped = false;
                    if self.frame.len() < MAX_PACKET {
                        self.frame.push(b);
                    } else {
                        self.oversize = true;
                    }
                }
            }
        }
    }
}

fn allowed(settings: &OscSettings, ip: IpAddr) -> bool {
    ip.is_loopback() || settings.allow.is_empty() || settings.allow.iter().any(|n| n.contains(&ip))
}

fn push(tx: &SyncSender<Incoming>, counters: &OscCounters, item: Incoming) {
    match tx.try_send(item) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Err(TrySendError::Disconnected(_)) => {}
    }
}

impl OscServer {
    /// Binds UDP and TCP on the same port and starts the socket threads (control thread).
    pub fn start(settings: OscSettings, patch_path: &Path) -> std::io::Result<OscServer> {
        // Port 0: the system picks a free UDP port, which TCP may hold elsewhere; pick again.
        let mut tries = 0;
        let (udp, local, tcp_listener) = loop {
            let udp = UdpSocket::bind((settings.bind, settings.port))?;
            let local = udp.local_addr()?;
            match TcpListener::bind((settings.bind, local.port())) {
                Ok(tcp) => break (udp, local, tcp),
                Err(e) if settings.port == 0 && e.kind() == std::io::ErrorKind::AddrInUse && tries < 20 => tries += 1,
                Err(e) => return Err(e),
            }
        };
        if !settings.bind.is_loopback() && settings.allow.is_empty() {
            tracing::warn!(
                "OSC is bound to {} with no allow-list: any host that reaches it can control Stagebox",
                settings.bind
            );
        }
        let (tx, rx) = sync_channel::<Incoming>(QUEUE);
        let counters = Arc::new(OscCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let tcp: Arc<Mutex<HashMap<u64, TcpStream>>> = Arc::default();
        // UDP receiver.
        {
            let sock = udp.try_clone()?;
            sock.set_read_timeout(Some(Duration::from_millis(200)))?;
            let (tx, counters, stop, settings) = (tx.clone(), counters.clone(), stop.clone(), settings.clone());
            std::thread::Builder::new().name("stagebox-osc-udp".into()).spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let (n, from) = match sock.recv_from(&mut buf) {
                        Ok(x) => x,
                        Err(_) => continue,
                    };
                    counters.received.fetch_add(1, Ordering::Relaxed);
                    if !allowed(&settings, from.ip()) {
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let from = Peer::Udp(from);
                    let item = match rosc::decoder::decode_udp(&buf[..n]) {
                        Ok((_, packet)) => Incoming::Packet {
                            from,
                            packet,
                            arrived: Instant::now(),
                        },
                        Err(e) => Incoming::Malformed {
                            from,
                            why: format!("{e:?}"),
                        },
                    };
                    push(&tx, &counters, item);
                }
            })?;
        }
        // TCP: one thread accepting, one per connection.
        {
            let (tx, counters, stop, settings, tcp) = (tx, counters.clone(), stop.clone(), settings.clone(), tcp.clone());
            tcp_listener.set_nonblocking(true)?;
            std::thread::Builder::new().name("stagebox-osc-tcp".into()).spawn(move || {
                let mut next_id = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (stream, from) = match tcp_listener.accept() {
                        Ok(x) => x,
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        }
                    };
                    if !allowed(&settings, from.ip()) {
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    next_id += 1;
                    let id = next_id;
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(20)));
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                    if let Ok(w) = stream.try_clone() {
                        tcp.lock().unwrap().insert(id, w);
                    }
                    let (tx, counters, stop, tcp) = (tx.clone(), counters.clone(), stop.clone(), tcp.clone());
                    let _ = std::thread::Builder::new().name("stagebox-osc-conn".into()).spawn(move || {
                        let mut stream = stream;
                        let mut dec = SlipDecoder::default();
                        let mut buf = vec![0u8; 16_384];
                        while !stop.load(Ordering::Relaxed) {
                            let n = match stream.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => n,
                                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                                Err(_) => break,
                            };
                            dec.feed(&buf[..n], |frame| {
                                counters.received.fetch_add(1, Ordering::Relaxed);
                                let from = Peer::Tcp(id);
                                let item = match frame {
                                    Ok(f) => match rosc::decoder::decode_udp(f) {
                                        Ok((_, packet)) => Incoming::Packet {
                                            from,
                                            packet,
                                            arrived: Instant::now(),
                                        },
                                        Err(e) => Incoming::Malformed {
                                            from,
                                            why: format!("{e:?}"),
                                        },
                                    },
                                    Err(len) => Incoming::Malformed {
                                        from,
                                        why: format!("packet of {len}+ bytes is over the {MAX_PACKET}-byte limit"),
                                    },
                                };
                                push(&tx, &counters, item);
                            });
                        }
                        tcp.lock().unwrap().remove(&id);
                    });
                }
            })?;
        }
        tracing::info!("OSC control on udp://{local} and tcp://{local} (SLIP)");
        Ok(OscServer {
            rx,
            udp,
            tcp,
            counters,
            local,
            stop,
            settings,
            subs: Vec::new(),
            seen: HashMap::new(),
            syncs: Vec::new(),
            waiting: Vec::new(),
            gen: u64::MAX,
            params: Vec::new(),
            values: HashMap::new(),
            patch_path: patch_path.to_path_buf(),
            changes: Vec::new(),
            space_changed: true,
            early: None,
            staged: Vec::new(),
            dispatch_us: Vec::new(),
        })
    }

    /// Sends one message to a peer (control thread). Errors are dropped: a client that went
    /// away must not stop the engine.
    pub fn send(&self, peer: Peer, addr: &str, args: Vec<OscType>) {
        let packet = OscPacket::Message(OscMessage {
            addr: addr.to_string(),
            args,
        });
        let Ok(bytes) = rosc::encoder::encode(&packet) else { return };
        match peer {
            Peer::Udp(to) => {
                let _ = self.udp.send_to(&bytes, to);
            }
            Peer::Tcp(id) => {
                let mut framed = Vec::with_capacity(bytes.len() + 8);
                slip_encode(&bytes, &mut framed);
                let mut map = self.tcp.lock().unwrap();
                if let Some(s) = map.get_mut(&id) {
                    if s.write_all(&framed).is_err() {
                        map.remove(&id);
                    }
                }
            }
        }
    }

    fn error(&self, peer: Peer, addr: &str, why: impl Into<String>) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.send(
            peer,
            "/stagebox/error",
            vec![OscType::String(addr.into()), OscType::String(why.into())],
        );
    }

    /// Sends a message to every subscriber.
    pub fn broadcast(&self, addr: &str, args: Vec<OscType>) {
        for s in &self.subs {
            self.send(s.peer, addr, args.clone());
        }
    }

    /// Refreshes the address space and the control side's values after a swap.
    fn refresh(&mut self, handle: &EngineHandle, patch: &stagebox_patches::Patch) {
        if self.gen == handle.generation() {
            return;
        }
        self.gen = handle.generation();
        self.params = address_space(handle);
        self.values.clear();
        for p in &self.params {
            let given = patch
                .graph
                .nodes
                .iter()
                .find(|n| n.id == p.node)
                .and_then(|n| n.params.get(p.spec.name))
                .cloned();
            self.values
                .insert(p.address.clone(), given.unwrap_or_else(|| p.spec.default_value()));
        }
        self.patch_path = patch.path.clone();
        self.space_changed = true;
    }

    /// What changed since the last call: whether the address space did, and the addresses
    /// whose values did (for OSCQuery).
    pub fn take_changes(&mut self) -> (bool, Vec<String>) {
        let mut c = std::mem::take(&mut self.changes);
        c.sort();
        c.dedup();
        (std::mem::replace(&mut self.space_changed, false), c)
    }

    /// The current value of each parameter address (what OSCQuery reports).
    pub fn values(&self) -> &HashMap<String, ParamValue> {
        &self.values
    }

    pub fn params(&self) -> &[ParamAddr] {
        &self.params
    }

    /// Dispatches what has arrived (control thread). Returns what the run loop must do.
    /// `status` is called (once) only when a packet or a waiting sync needs it: the loop turns
    /// every 1-3 ms and most turns have nothing to do.
    pub fn poll(&mut self, handle: &mut EngineHandle, patch: &stagebox_patches::Patch, status: &dyn Fn() -> Status) -> Vec<Action> {
        self.refresh(handle, patch);
        let mut actions = Vec::new();
        let mut st: Option<Status> = None;
        // At most one queue's worth per call, so the loop keeps its pace under a flood.
        for _ in 0..QUEUE {
            let Some(item) = self.early.take().or_else(|| self.rx.try_recv().ok()) else {
                break;
            };
            match item {
                Incoming::Malformed { from, why } => {
                    self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    self.seen.insert(from, Instant::now());
                    self.error(from, "", format!("malformed packet: {why}"));
                }
                Incoming::Packet { from, packet, arrived } => {
                    // Arrival (decoded on the socket thread) to dispatch, in microseconds.
                    if self.dispatch_us.len() < 1 << 20 {
                        self.dispatch_us.push(arrived.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    self.seen.insert(from, Instant::now());
                    let status = st.get_or_insert_with(status);
                    self.packet(from, packet, 0, None, handle, status, &mut actions);
                }
            }
        }
        self.flush(handle);
        // Syncs whose frame the audio thread has passed.
        let busy = !self.waiting.is_empty();
        let frames = if self.syncs.is_empty() {
            0
        } else {
            st.get_or_insert_with(status).frames
        };
        let mut k = 0;
        while k < self.syncs.len() {
            if !busy && frames >= self.syncs[k].2 {
                let (peer, id, _) = self.syncs.remove(k);
                self.send(peer, "/stagebox/synced", vec![id]);
            } else {
                k += 1;
            }
        }
        // Subscribers gone silent.
        let timeout = self.settings.notify_timeout;
        let seen = &self.seen;
        self.subs
            .retain(|s| seen.get(&s.peer).map_or(s.last_seen, |t| (*t).max(s.last_seen)).elapsed() < timeout);
        if self.seen.len() > 4096 {
            self.seen.retain(|_, t| t.elapsed() < timeout);
        }
        actions
    }

    /// Sends the batch's coalesced parameter sets to the engine (control thread).
    fn flush(&mut self, handle: &mut EngineHandle) {
        for (i, v) in std::mem::take(&mut self.staged) {
            let p = &self.params[i];
            if let Err(e) = handle.set_param(&p.node, p.spec.name, v, AT_ONCE) {
                tracing::warn!("OSC {}: {e}", p.address);
            }
        }
    }

    /// Sleeps until a packet arrives or `timeout` passes (control thread: the run loop's pause,
    /// so a message is dispatched as it arrives rather than at the loop's next turn).
    pub fn wait(&mut self, timeout: Duration) {
        if self.early.is_none() {
            self.early = self.rx.recv_timeout(timeout).ok();
        }
    }

    /// Decodes and dispatches one packet as if it had arrived from `from` (the socket threads'
    /// decoding, then `poll`'s dispatch): for tests and fuzzing.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn dispatch_bytes(
        &mut self,
        from: Peer,
        bytes: &[u8],
        handle: &mut EngineHandle,
        patch: &stagebox_patches::Patch,
        status: &Status,
    ) -> Vec<Action> {
        self.refresh(handle, patch);
        let mut actions = Vec::new();
        if bytes.len() > MAX_PACKET {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            self.error(from, "", "packet over the size limit");
            return actions;
        }
        match rosc::decoder::decode_udp(bytes) {
            Ok((_, packet)) => {
                self.packet(from, packet, 0, None, handle, status, &mut actions);
                self.flush(handle);
            }
            Err(e) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                self.error(from, "", format!("malformed packet: {e:?}"));
            }
        }
        actions
    }

    /// A parameter changed elsewhere (MIDI): keep the control side's value (and OSCQuery) in step.
    pub fn note_set(&mut self, node: &str, param: &str, v: f64) {
        let addr = format!("/stagebox/node/{node}/{param}");
        if let Some(p) = self.params.iter().find(|p| p.address == addr) {
            let value = match p.spec.kind {
                ParamKind::Float { .. } => ParamValue::Float(v),
                ParamKind::Bool { .. } => ParamValue::Bool(v >= 0.5),
                _ => ParamValue::Int(v.round() as i64),
            };
            self.values.insert(addr.clone(), value);
            self.changes.push(addr);
        }
    }

    /// The run loop tells how an asynchronous command ended.
    pub fn finished(&mut self, result: &Result<(), String>) {
        for w in std::mem::take(&mut self.waiting) {
            match result {
                Ok(()) => self.send(w.peer, "/stagebox/done", vec![OscType::String(w.command)]),
                Err(e) => self.error(w.peer, &w.command, e.clone()),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn packet(
        &mut self,
        from: Peer,
        packet: OscPacket,
        depth: usize,
        at: Option<u64>,
        handle: &mut EngineHandle,
        status: &Status,
        actions: &mut Vec<Action>,
    ) {
        match packet {
            OscPacket::Message(m) => self.message(from, m, at.unwrap_or(AT_ONCE), handle, status, actions),
            OscPacket::Bundle(b) => {
                if depth >= MAX_DEPTH {
                    self.error(from, "#bundle", format!("bundles nested deeper than {MAX_DEPTH} are refused"));
                    return;
                }
                let at = at.or_else(|| self.bundle_time(&b, status));
                for p in b.content {
                    self.packet(from, p, depth + 1, at, handle, status, actions);
                }
            }
        }
    }

    /// The engine sample time a bundle's time tag names (None: at once; a time tag already
    /// past is applied at once and counted).
    fn bundle_time(&self, b: &OscBundle, status: &Status) -> Option<u64> {
        let tt = b.timetag;
        if tt.seconds == 0 && tt.fractional <= 1 {
            return None;
        }
        let now = OscTime::try_from(SystemTime::now()).ok()?;
        let secs = |t: OscTime| t.seconds as f64 + t.fractional as f64 / 4_294_967_296.0;
        let ahead = secs(tt) - secs(now);
        if ahead <= 0.0 {
            self.counters.late_bundles.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if ahead > 3600.0 {
            return None;
        }
        // The engine's clock now is about its frame count plus one block in flight.
        Some(status.frames + status.block_size as u64 + (ahead * status.sample_rate as f64) as u64)
    }

    fn reply_peer(&self, from: Peer, args: &[OscType], port_arg: usize) -> Peer {
        // Pure Data and Max send numbers as floats: a whole one is a port too.
        match (from, args.get(port_arg).and_then(number)) {
            (Peer::Udp(a), Some(p)) if p.fract() == 0.0 && (1.0..=65535.0).contains(&p) => Peer::Udp(SocketAddr::new(a.ip(), p as u16)),
            _ => from,
        }
    }

    fn message(&mut self, from: Peer, m: OscMessage, at: u64, handle: &mut EngineHandle, status: &Status, actions: &mut Vec<Action>) {
        let addr = m.addr.as_str();
        match addr {
            "/stagebox/status" => {
                let to = self.reply_peer(from, &m.args, 0);
                let c = &self.counters;
                self.send(
                    to,
                    "/stagebox/status.reply",
                    vec![
                        OscType::Float(status.cpu_load),
                        OscType::Int(status.xruns as i32),
                        OscType::Int(status.late_windows as i32),
                        OscType::Int(status.sample_rate as i32),
                        OscType::Int(status.block_size as i32),
                        OscType::Float(status.uptime_s as f32),
                        OscType::Int(c.received.load(Ordering::Relaxed) as i32),
                        OscType::Int(c.dropped.load(Ordering::Relaxed) as i32),
                        OscType::Int(c.errors.load(Ordering::Relaxed) as i32),
                        OscType::Int(status.late_callbacks as i32),
                        OscType::Int(status.notes as i32),
                        OscType::Int(status.rt_allocations as i32),
                        OscType::String(status.patch.clone()),
                        OscType::Int(status.midi_dropped as i32),
                    ],
                );
            }
            "/stagebox/sync" => {
                let id = m.args.first().cloned().unwrap_or(OscType::Int(0));
                let to = self.reply_peer(from, &m.args, 1);
                // Applied once the audio thread has run a whole block past what is queued now
                // (events at later sample times wait for their time).
                let target = if at == AT_ONCE { status.frames } else { at } + 2 * status.block_size.max(1) as u64;
                self.syncs.push((to, id, target));
            }
            "/stagebox/notify" => {
                let on = m.args.first().and_then(number).map(|v| v != 0.0);
                let to = self.reply_peer(from, &m.args, 1);
                match on {
                    Some(true) => {
                        if let Some(s) = self.subs.iter_mut().find(|s| s.peer == to) {
                            s.last_seen = Instant::now();
                        } else {
                            self.subs.push(Sub {
                                peer: to,
                                last_seen: Instant::now(),
                            });
                        }
                        self.seen.insert(to, Instant::now());
                        self.send(to, "/stagebox/done", vec![OscType::String(addr.into())]);
                    }
                    Some(false) => {
                        self.subs.retain(|s| s.peer != to);
                        self.send(to, "/stagebox/done", vec![OscType::String(addr.into())]);
                    }
                    None => self.error(from, addr, "expects 1 (subscribe) or 0 (unsubscribe)"),
                }
            }
            "/stagebox/patch/load" => match m.args.first() {
                Some(OscType::String(p)) => {
                    let mut path = PathBuf::from(p);
                    if path.is_relative() && !path.exists() {
                        if let Some(dir) = self.patch_path.parent() {
                            path = dir.join(p);
                        }
                    }
                    self.waiting.push(Waiting {
                        peer: from,
                        command: addr.into(),
                    });
                    actions.push(Action::Load(path));
                }
                _ => self.error(from, addr, "expects the patch's path (a string)"),
            },
            "/stagebox/patch/reload" => {
                self.waiting.push(Waiting {
                    peer: from,
                    command: addr.into(),
                });
                actions.push(Action::Reload);
            }
            "/stagebox/patch/list" => {
                let to = self.reply_peer(from, &m.args, 0);
                let dir = self
                    .patch_path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let mut names: Vec<String> = std::fs::read_dir(dir)
                    .map(|r| {
                        r.filter_map(|e| e.ok())
                            .map(|e| e.path())
                            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                            .map(|p| p.display().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                names.sort();
                self.send(to, "/stagebox/patch/list.reply", names.into_iter().map(OscType::String).collect());
            }
            "/stagebox/models/list" => {
                let to = self.reply_peer(from, &m.args, 0);
                let mut names = Vec::new();
                for root in stagebox_models::project_roots() {
                    if let Ok(r) = std::fs::read_dir(root.join("models")) {
                        for e in r.flatten() {
                            if e.path().join("manifest.toml").exists() {
                                names.push(e.file_name().to_string_lossy().to_string());
                            }
                        }
                        break;
                    }
                }
                names.sort();
                self.send(to, "/stagebox/models/list.reply", names.into_iter().map(OscType::String).collect());
            }
            "/stagebox/models/status" => {
                let to = self.reply_peer(from, &m.args, 0);
                let mut args = Vec::new();
                for (node, c) in &status.models {
                    args.push(OscType::String(node.clone()));
                    for v in [c.windows, c.late, c.dropped, c.failed] {
                        args.push(OscType::Int(v as i32));
                    }
                }
                self.send(to, "/stagebox/models/status.reply", args);
            }
            "/stagebox/models/load" => match m.args.first() {
                Some(OscType::String(name)) => match stagebox_models::find_model(name).and_then(|m| m.verify().map(|_| ())) {
                    Ok(()) => {
                        self.waiting.push(Waiting {
                            peer: from,
                            command: addr.into(),
                        });
                        actions.push(Action::Reload);
                    }
                    Err(e) => self.error(from, addr, e.to_string()),
                },
                _ => self.error(from, addr, "expects the model's name (a string)"),
            },
            "/stagebox/quit" => actions.push(Action::Quit),
            "/stagebox/learn" => {
                let target = match m.args.first() {
                    Some(OscType::String(a)) => a
                        .trim_start_matches("/stagebox/node/")
                        .split_once('/')
                        .map(|(n, p)| (n.to_string(), p.to_string())),
                    _ => None,
                };
                match target {
                    Some((node, param)) if self.params.iter().any(|p| p.node == node && p.spec.name == param) => {
                        actions.push(Action::Learn { node, param, peer: from })
                    }
                    _ => self.error(from, addr, "expects a parameter's address, /stagebox/node/<id>/<param>"),
                }
            }
            "/stagebox/learn/save" => actions.push(Action::SaveLearned { peer: from }),
            "/stagebox/tempo" => match m.args.first().map(number) {
                None => actions.push(Action::Tempo { bpm: None, peer: from }),
                Some(Some(b)) if (20.0..=400.0).contains(&b) => actions.push(Action::Tempo { bpm: Some(b), peer: from }),
                Some(_) => self.error(from, addr, "expects a tempo in BPM, 20..400"),
            },
            _ if addr.starts_with("/stagebox/node/") => self.param_message(from, &m, at, handle, actions),
            _ => self.error(from, addr, "unknown address (see docs/osc.md, or the OSCQuery namespace)"),
        }
    }

    fn param_message(&mut self, from: Peer, m: &OscMessage, at: u64, handle: &mut EngineHandle, actions: &mut Vec<Action>) {
        let (pattern, norm) = match m.addr.strip_suffix("/norm") {
            Some(p) => (p, true),
            None => (m.addr.as_str(), false),
        };
        let targets: Vec<usize> = if pattern.contains(['*', '?', '[', '{']) {
            match Matcher::new(pattern) {
                Ok(matcher) => (0..self.params.len())
                    .filter(|&i| OscAddress::new(self.params[i].address.clone()).is_ok_and(|a| matcher.match_address(&a)))
                    .collect(),
                Err(e) => {
                    self.error(from, &m.addr, format!("bad address pattern: {e:?}"));
                    return;
                }
            }
        } else {
            self.params.iter().position(|p| p.address == pattern).into_iter().collect()
        };
        if targets.is_empty() {
            self.error(from, &m.addr, "no such node parameter");
            return;
        }
        let Some(arg) = m.args.first() else {
            // No value: the current one comes back.
            for i in targets {
                let p = &self.params[i];
                let v = self.values.get(&p.address).cloned().unwrap_or_else(|| p.spec.default_value());
                self.send(from, &p.address, vec![to_osc(&v)]);
            }
            return;
        };
        for i in targets {
            let p = self.params[i].clone();
            match coerce(&p.spec, arg, norm) {
                Ok((value, note)) => {
                    if p.spec.is_runtime() {
                        let f = value.as_f64().unwrap_or(0.0) as f32;
                        if at == AT_ONCE {
                            // Sets of the same parameter in one batch coalesce into the last: a
                            // flood reaches the audio thread as one event per parameter per turn.
                            match self.staged.iter_mut().find(|(k, _)| *k == i) {
                                Some(s) => s.1 = f,
                                None => self.staged.push((i, f)),
                            }
                        } else if let Err(e) = handle.set_param(&p.node, p.spec.name, f, at) {
                            self.error(from, &m.addr, e);
                            continue;
                        }
                    } else {
                        actions.push(Action::Rebuild {
                            node: p.node.clone(),
                            param: p.spec.name.to_string(),
                            value: value.clone(),
                        });
                    }
                    self.values.insert(p.address.clone(), value);
                    if self.changes.len() < 65_536 {
                        self.changes.push(p.address.clone());
                    }
                    if let Some(n) = note {
                        self.error(from, &m.addr, n);
                    }
                }
                Err(e) => self.error(from, &m.addr, e),
            }
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for OscServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn number(a: &OscType) -> Option<f64> {
    match *a {
        OscType::Int(i) => Some(i as f64),
        OscType::Long(l) => Some(l as f64),
        OscType::Float(f) => Some(f as f64),
        OscType::Double(d) => Some(d),
        OscType::Bool(b) => Some(b as u8 as f64),
        _ => None,
    }
}

/// A parameter value as an OSC argument (also OSCQuery's streamed values).
pub fn to_osc(v: &ParamValue) -> OscType {
    match v {
        ParamValue::Float(f) => OscType::Float(*f as f32),
        ParamValue::Int(i) => OscType::Int(*i as i32),
        ParamValue::Bool(b) => OscType::Bool(*b),
        ParamValue::Str(s) => OscType::String(s.clone()),
    }
}

/// An OSC argument to a parameter's value: `i`, `h`, `f`, `d`, `T`/`F` coerce into one another
/// (and a name into a choice); out-of-range numbers are clamped, with a note for the error
/// reply; `norm` maps 0..1 onto the range. Errors for wrong types and non-finite numbers.
pub fn coerce(spec: &ParamSpec, arg: &OscType, norm: bool) -> Result<(ParamValue, Option<String>), String> {
    let num = number(arg);
    if let Some(x) = num {
        if !x.is_finite() {
            return Err(format!("{x} is not a finite number"));
        }
    }
    let clamp_note = |x: f64, lo: f64, hi: f64| {
        if x < lo || x > hi {
            let c = x.clamp(lo, hi);
            (c, Some(format!("{x} is out of range {lo}..{hi}; clamped to {c}")))
        } else {
            (x, None)
        }
    };
    let need_number = || format!("expects a number (i, f, d, h or T/F), got {}", type_name(arg));
    match spec.kind {
        ParamKind::Float { min, max, .. } => {
            let x = num.ok_or_else(need_number)?;
            let x = if norm {
                min as f64 + x.clamp(0.0, 1.0) * (max - min) as f64
            } else {
                x
            };
            let (v, note) = clamp_note(x, min as f64, max as f64);
            Ok((ParamValue::Float(v), note))
        }
        ParamKind::Int { min, max, .. } => {
            let x = num.ok_or_else(need_number)?;
            let x = if norm {
                min as f64 + x.clamp(0.0, 1.0) * (max - min) as f64
            } else {
                x
            };
            let (v, note) = clamp_note(x.round(), min as f64, max as f64);
            Ok((ParamValue::Int(v as i64), note))
        }
        ParamKind::Bool { .. } => {
            let x = num.ok_or_else(need_number)?;
            Ok((ParamValue::Bool(if norm { x >= 0.5 } else { x != 0.0 }), None))
        }
        ParamKind::Enum { options, .. } => {
            if let OscType::String(s) = arg {
                return match options.iter().position(|o| o == s) {
                    Some(i) => Ok((ParamValue::Int(i as i64), None)),
                    None => Err(format!("`{s}` is not one of {}", options.join(", "))),
                };
            }
            let x = num.ok_or_else(|| format!("expects one of {} (or its index)", options.join(", ")))?;
            let n = options.len().max(1) as f64;
            let x = if norm { (x.clamp(0.0, 1.0) * (n - 1.0)).round() } else { x.round() };
            let (v, note) = clamp_note(x, 0.0, n - 1.0);
            Ok((ParamValue::Int(v as i64), note))
        }
        ParamKind::Str { .. } => match arg {
            OscType::String(s) => Ok((ParamValue::Str(s.clone()), None)),
            _ => Err(format!("expects a string, got {}", type_name(arg))),
        },
    }
}

fn type_name(a: &OscType) -> &'static str {
    match a {
        OscType::Int(_) => "i",
        OscType::Float(_) => "f",
        OscType::String(_) => "s",
        OscType::Blob(_) => "b",
        OscType::Time(_) => "t",
        OscType::Long(_) => "h",
        OscType::Double(_) => "d",
        OscType::Char(_) => "c",
        OscType::Color(_) => "r",
        OscType::Midi(_) => "m",
        OscType::Bool(_) => "T/F",
        OscType::Array(_) => "[array]",
        OscType::Nil => "N",
        OscType::Inf => "I",
    }
}

#[cfg(test)]
mod fuzz {
    //! The decoder and dispatcher against malformed, oversize, deeply nested and non-finite
    //! input (proptest): nothing panics, every packet is answered or counted, and the engine
    //! still takes a valid parameter afterwards.

    use super::*;
    use proptest::prelude::*;
    use stagebox_engine::{EngineConfig, EngineHandle};

    const PATCH: &str = r#"
[[node]]
id = "tone"
type = "osc"
[[node]]
id = "vol"
type = "gain"
channels = 1
[[node]]
id = "out"
type = "output"
channels = 1
[[connect]]
from = "tone"
to = "vol"
[[connect]]
from = "vol"
to = "out"
"#;

    struct Rig {
        server: OscServer,
        handle: EngineHandle,
        engine: stagebox_engine::Engine,
        patch: stagebox_patches::Patch,
        status: Status,
        reply: UdpSocket,
    }

    fn rig() -> Rig {
        let registry = crate::registry();
        let patch = stagebox_patches::Patch::parse(PATCH, Path::new("fuzz.toml"), &registry).unwrap();
        let (mut handle, engine) = EngineHandle::new(EngineConfig::new(48000.0, 0, 1));
        handle.swap(patch.compile(&registry, 48000.0).unwrap(), &registry).unwrap();
        let settings = OscSettings {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            allow: Vec::new(),
            notify_timeout: Duration::from_secs(60),
        };
        let server = OscServer::start(settings, Path::new("fuzz.toml")).unwrap();
        let reply = UdpSocket::bind("127.0.0.1:0").unwrap();
        reply.set_nonblocking(true).unwrap();
        Rig {
            server,
            handle,
            engine,
            patch,
            status: Status {
                sample_rate: 48000,
                block_size: 64,
                ..Default::default()
            },
            reply,
        }
    }

    impl Rig {
        fn feed(&mut self, bytes: &[u8]) {
            let from = Peer::Udp(self.reply.local_addr().unwrap());
            let _ = self.server.dispatch_bytes(from, bytes, &mut self.handle, &self.patch, &self.status);
            // The audio side keeps draining the event ring, as the callback would.
            let mut out = [0.0f32; 64];
            self.engine.process(&[], &mut out);
            self.handle.drain(|_| {});
            self.handle.collect();
            let mut buf = [0u8; 65536];
            while self.reply.recv_from(&mut buf).is_ok() {}
        }

        fn still_works(&mut self) {
            self.handle
                .set_param("vol", "gain_db", -6.0, AT_ONCE)
                .expect("the engine takes a valid parameter");
        }
    }

    fn arg() -> impl Strategy<Value = OscType> {
        prop_oneof![
            any::<i32>().prop_map(OscType::Int),
            any::<f32>().prop_map(OscType::Float),
            any::<f64>().prop_map(OscType::Double),
            any::<i64>().prop_map(OscType::Long),
            any::<bool>().prop_map(OscType::Bool),
            Just(OscType::Float(f32::NAN)),
            Just(OscType::Double(f64::INFINITY)),
            Just(OscType::Float(f32::NEG_INFINITY)),
            Just(OscType::Nil),
            Just(OscType::Inf),
            "[a-z/]{0,12}".prop_map(OscType::String),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(OscType::Blob),
        ]
    }

    fn address() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("/stagebox/node/vol/gain_db".to_string()),
            Just("/stagebox/node/vol/gain_db/norm".to_string()),
            Just("/stagebox/node/tone/waveform".to_string()),
            Just("/stagebox/node/*/gain_db".to_string()),
            Just("/stagebox/node/{vol,tone}/*".to_string()),
            Just("/stagebox/node/[".to_string()),
            Just("/stagebox/status".to_string()),
            Just("/stagebox/sync".to_string()),
            Just("/stagebox/notify".to_string()),
            Just("/stagebox/patch/list".to_string()),
            Just("/stagebox/models/status".to_string()),
            "/stagebox/node/[a-z*?{},\\[\\]]{0,10}/[a-z_*]{0,10}",
            "/[ -~]{0,24}",
        ]
    }

    fn message() -> impl Strategy<Value = OscPacket> {
        (address(), proptest::collection::vec(arg(), 0..4)).prop_map(|(addr, args)| OscPacket::Message(OscMessage { addr, args }))
    }

    fn packet() -> impl Strategy<Value = OscPacket> {
        message().prop_recursive(12, 64, 4, |inner| {
            (any::<(u32, u32)>(), proptest::collection::vec(inner, 0..4)).prop_map(|(t, content)| {
                OscPacket::Bundle(OscBundle {
                    timetag: OscTime::from(t),
                    content,
                })
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut r = rig();
            r.feed(&bytes);
            r.still_works();
        }

        #[test]
        fn well_formed_but_hostile_packets_never_panic(p in packet()) {
            let mut r = rig();
            if let Ok(bytes) = rosc::encoder::encode(&p) {
                r.feed(&bytes);
                // The same packet damaged: truncated and with a byte flipped.
                let n = bytes.len();
                r.feed(&bytes[..n / 2]);
                let mut b = bytes.clone();
                if n > 0 {
                    b[n / 3] ^= 0x5a;
                }
                r.feed(&b);
            }
            r.still_works();
        }
    }

    #[test]
    fn oversize_and_deep_packets_are_refused_not_fatal() {
        let mut r = rig();
        r.feed(&vec![0u8; MAX_PACKET + 10]);
        let mut p = OscPacket::Message(OscMessage {
            addr: "/stagebox/status".into(),
            args: vec![],
        });
        for _ in 0..200 {
            p = OscPacket::Bundle(OscBundle {
                timetag: OscTime::from((0, 1)),
                content: vec![p],
            });
        }
        r.feed(&rosc::encoder::encode(&p).unwrap());
        assert!(r.server.counters.malformed.load(Ordering::Relaxed) >= 1);
        assert!(r.server.counters.errors.load(Ordering::Relaxed) >= 2);
        r.still_works();
    }
}
