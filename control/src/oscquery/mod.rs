//! OSCQuery (the Vidvox proposal) beside the OSC server: an HTTP server answering the JSON
//! namespace (`FULL_PATH`, `CONTENTS`, `TYPE`, `RANGE`, `VALUE`, `ACCESS`, `DESCRIPTION`, and
//! `?HOST_INFO`), and on the same port a WebSocket where a client LISTENs to parameters and
//! receives their changes as binary OSC. Threads: one accepting connections, one per connection
//! (`http`: a request answered and closed; `ws`: a WebSocket that stays). Everything a client
//! can make it hold is bounded (connections, request size and time, WebSocket sizes, queues):
//! see docs/security.md. They read a snapshot the control thread publishes (`publish`,
//! `changed`); nothing here touches the engine. `advertise` announces the server over mDNS
//! (`_oscjson._tcp`, and the OSC port as `_osc._udp`), only with `--oscquery-mdns` (off by
//! default: mDNS multicasts beyond this machine).

mod http;
mod namespace;
mod ws;

pub use namespace::namespace;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rosc::OscType;
use serde_json::{json, Value};
use stagebox_engine::param::ParamValue;

use crate::access::Origins;

/// Connections served at once (HTTP and WebSocket); more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 64;

/// What OSCQuery refused or cut, for the stats.
#[derive(Debug, Default)]
pub struct Counters {
    pub refused_peer: AtomicU64,
    pub refused_host: AtomicU64,
    pub refused_origin: AtomicU64,
    pub too_many: AtomicU64,
    pub timed_out: AtomicU64,
    pub too_large: AtomicU64,
    pub malformed: AtomicU64,
    pub refused_listen: AtomicU64,
    /// WebSocket clients dropped because they did not keep up.
    pub slow_clients: AtomicU64,
}

/// Who OSCQuery answers.
#[derive(Debug, Clone)]
pub struct QuerySettings {
    pub bind: IpAddr,
    pub port: u16,
    pub osc_port: u16,
    /// The OSC allow-list (loopback is always allowed).
    pub allow: Vec<ipnet::IpNet>,
    pub origins: Vec<String>,
}

struct Shared {
    namespace: Mutex<Value>,
    host_info: Value,
    listeners: Mutex<Vec<SyncSender<(String, OscType)>>>,
    origins: Origins,
    counters: Arc<Counters>,
    stop: AtomicBool,
    /// Connections being served now.
    live: AtomicUsize,
}

pub struct OscQuery {
    shared: Arc<Shared>,
    pub local: SocketAddr,
    pub counters: Arc<Counters>,
}

impl OscQuery {
    pub fn start(s: QuerySettings) -> std::io::Result<OscQuery> {
        let listener = TcpListener::bind((s.bind, s.port))?;
        let local = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            namespace: Mutex::new(json!({"FULL_PATH": "/", "ACCESS": 0, "CONTENTS": {}})),
            host_info: host_info(s.osc_port),
            listeners: Mutex::new(Vec::new()),
            origins: Origins {
                bind: s.bind,
                allowed: s.origins.clone(),
            },
            counters: counters.clone(),
            stop: AtomicBool::new(false),
            live: AtomicUsize::new(0),
        });
        let sh = shared.clone();
        std::thread::Builder::new()
            .name("stagebox-oscquery".into())
            .spawn(move || accept_loop(listener, sh, s.allow))?;
        tracing::info!("OSCQuery on http://{local}/ (WebSocket on the same port)");
        Ok(OscQuery { shared, local, counters })
    }

    /// Publishes a new namespace (control thread).
    pub fn publish(&self, ns: Value) {
        *self.shared.namespace.lock().unwrap() = ns;
    }

    /// A parameter changed: WebSocket clients get it (control thread). A client whose queue is
    /// full is cut off (its thread sees the queue end and closes it).
    pub fn changed(&self, address: &str, v: &ParamValue) {
        let mut ls = self.shared.listeners.lock().unwrap();
        ls.retain(|tx| match tx.try_send((address.to_string(), crate::osc::to_osc(v))) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        });
    }

    /// Connections being served now (a test's view of the threads).
    #[allow(dead_code)]
    pub fn live_connections(&self) -> usize {
        self.shared.live.load(Ordering::Relaxed)
    }
}

impl Drop for OscQuery {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn host_info(osc_port: u16) -> Value {
    json!({
        "NAME": "stagebox",
        "OSC_PORT": osc_port,
        "OSC_TRANSPORT": "UDP",
        "EXTENSIONS": {
            "ACCESS": true, "VALUE": true, "RANGE": true, "DESCRIPTION": true, "UNIT": true,
            "TAGS": false, "CLIPMODE": false, "CRITICAL": false, "LISTEN": true, "PATH_CHANGED": false
        }
    })
}

/// Accepts connections: refused peers closed at once, beyond `MAX_CONNECTIONS` answered 503.
fn accept_loop(listener: TcpListener, shared: Arc<Shared>, allow: Vec<ipnet::IpNet>) {
    while !shared.stop.load(Ordering::Relaxed) {
        let (mut stream, from) = match listener.accept() {
            Ok(x) => x,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let ip = from.ip();
        if !(ip.is_loopback() || allow.is_empty() || allow.iter().any(|n| n.contains(&ip))) {
            shared.counters.refused_peer.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let _ = stream.set_nonblocking(false);
        if shared.live.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            shared.counters.too_many.fetch_add(1, Ordering::Relaxed);
            http::respond(&mut stream, "503 Service Unavailable", r#"{"error": "too many connections"}"#, None);
            continue;
        }
        shared.live.fetch_add(1, Ordering::Relaxed);
        let sh = shared.clone();
        let spawned = std::thread::Builder::new().name("stagebox-oscquery-conn".into()).spawn(move || {
            http::connection(stream, &sh);
            sh.live.fetch_sub(1, Ordering::Relaxed);
        });
        if spawned.is_err() {
            shared.live.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Announces OSCQuery (`_oscjson._tcp`) and OSC (`_osc._udp`) over mDNS (control thread; the
/// daemon runs its own thread until dropped). Only with `--oscquery-mdns`.
pub fn advertise(query_port: u16, osc_port: u16) -> Result<mdns_sd::ServiceDaemon, String> {
    let daemon = mdns_sd::ServiceDaemon::new().map_err(|e| e.to_string())?;
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "stagebox".into());
    let host = format!("{host}.local.");
    for (ty, port) in [("_oscjson._tcp.local.", query_port), ("_osc._udp.local.", osc_port)] {
        let info = mdns_sd::ServiceInfo::new(ty, "stagebox", &host, "", port, &[("txtvers", "1")][..])
            .map_err(|e| e.to_string())?
            .enable_addr_auto();
        daemon.register(info).map_err(|e| e.to_string())?;
    }
    tracing::info!("advertising OSCQuery on port {query_port} and OSC on {osc_port} over mDNS");
    Ok(daemon)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WebSocket client that LISTENs and never reads is dropped, counted, and its thread and
    /// queue are gone, while the control thread's `changed` never blocks.
    #[test]
    fn a_client_that_never_reads_is_dropped_and_freed() {
        let q = OscQuery::start(QuerySettings {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            osc_port: 9,
            allow: Vec::new(),
            origins: Vec::new(),
        })
        .unwrap();
        let path = format!("/{}", "p".repeat(1000));
        let url = format!("ws://127.0.0.1:{}/", q.local.port());
        let (mut ws, _) = tungstenite::client::client(url, std::net::TcpStream::connect(q.local).unwrap()).unwrap();
        ws.send(tungstenite::Message::Text(format!(r#"{{"COMMAND": "LISTEN", "DATA": "{path}"}}"#)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let t0 = std::time::Instant::now();
        while q.counters.slow_clients.load(Ordering::Relaxed) == 0 {
            assert!(t0.elapsed() < Duration::from_secs(20), "a client that never reads is still served");
            let call = std::time::Instant::now();
            for _ in 0..100 {
                q.changed(&path, &ParamValue::Float(0.5));
            }
            assert!(call.elapsed() < Duration::from_millis(500), "`changed` blocked");
            std::thread::sleep(Duration::from_millis(1));
        }
        let t0 = std::time::Instant::now();
        while q.live_connections() > 0 || !q.shared.listeners.lock().unwrap().is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(5), "the dropped client's thread or queue stayed");
            q.changed(&path, &ParamValue::Float(0.5));
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(ws);
    }
}
