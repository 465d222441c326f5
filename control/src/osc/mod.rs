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
//!
//! The pieces: `codec` (SLIP framing, argument coercion, the address space), `transport` (the
//! sockets and their threads, sending), `dispatch` (the queue drained on the control thread,
//! bundles, syncs, subscriptions) and `commands` (what each address does).

mod codec;
mod commands;
mod dispatch;
mod transport;

pub use codec::{address_space, to_osc, COMMANDS};

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rosc::{OscPacket, OscType};
use stagebox_engine::param::{ParamSpec, ParamValue};

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
    /// Where `/stagebox/patch/load` may read patches from.
    pub patch_dirs: crate::access::PatchDirs,
    /// The control token guarded commands carry.
    pub guard: crate::access::Guard,
    /// A TCP connection that sends nothing for this long is closed.
    pub tcp_idle: Duration,
    /// TCP connections held at once; more are refused (and counted).
    pub max_tcp: usize,
}

impl OscSettings {
    /// Loopback, the given port, the defaults for the rest (tests).
    #[cfg(test)]
    pub fn local(port: u16) -> OscSettings {
        OscSettings {
            bind: IpAddr::from([127, 0, 0, 1]),
            port,
            allow: Vec::new(),
            notify_timeout: Duration::from_secs(60),
            patch_dirs: Default::default(),
            guard: Default::default(),
            tcp_idle: Duration::from_secs(300),
            max_tcp: 64,
        }
    }
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
    /// A TCP connection's number, and the client's address.
    Tcp(u64, IpAddr),
}

impl Peer {
    pub fn ip(&self) -> IpAddr {
        match self {
            Peer::Udp(a) => a.ip(),
            Peer::Tcp(_, ip) => *ip,
        }
    }
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

impl OscServer {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for OscServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod fuzz;
