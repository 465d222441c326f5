//! The OSC sockets (control thread to start and send; one thread for UDP, one accepting TCP,
//! one per TCP connection): datagrams and SLIP frames are decoded on their thread and queued
//! for the control thread; a full queue drops the packet and counts it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscPacket, OscType};

use super::codec::{slip_encode, SlipDecoder};
use super::{Incoming, OscCounters, OscServer, OscSettings, Peer, MAX_PACKET, QUEUE};

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
        let (udp, local, tcp_listener) = bind(&settings)?;
        if !settings.bind.is_loopback() && settings.allow.is_empty() {
            tracing::warn!(
                "OSC is bound to {} with no allow-list: any host that reaches it can control Stagebox",
                settings.bind
            );
        }
        let (tx, rx) = sync_channel::<Incoming>(QUEUE);
        let shared = Shared {
            tx,
            counters: Arc::new(OscCounters::default()),
            stop: Arc::new(AtomicBool::new(false)),
            settings: settings.clone(),
        };
        let tcp: Arc<Mutex<HashMap<u64, TcpStream>>> = Arc::default();
        spawn_udp(udp.try_clone()?, shared.clone())?;
        spawn_tcp(tcp_listener, shared.clone(), tcp.clone())?;
        tracing::info!("OSC control on udp://{local} and tcp://{local} (SLIP)");
        Ok(OscServer {
            rx,
            udp,
            tcp,
            counters: shared.counters,
            local,
            stop: shared.stop,
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
            Peer::Tcp(id, _) => {
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

    /// Where it listens and whom it accepts.
    pub fn settings(&self) -> &OscSettings {
        &self.settings
    }

    pub(super) fn error(&self, peer: Peer, addr: &str, why: impl Into<String>) {
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
}

/// What every socket thread holds: the queue, the counters, the stop flag, the allow-list.
#[derive(Clone)]
struct Shared {
    tx: SyncSender<Incoming>,
    counters: Arc<OscCounters>,
    stop: Arc<AtomicBool>,
    settings: OscSettings,
}

impl Shared {
    /// Decodes one datagram or frame from `from` and queues it.
    fn decode(&self, from: Peer, frame: Result<&[u8], usize>) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let item = match frame {
            Ok(f) => match super::codec::decode_whole(f) {
                Ok(packet) => Incoming::Packet {
                    from,
                    packet,
                    arrived: Instant::now(),
                },
                Err(why) => Incoming::Malformed { from, why },
            },
            Err(len) => Incoming::Malformed {
                from,
                why: format!("packet of {len}+ bytes is over the {MAX_PACKET}-byte limit"),
            },
        };
        push(&self.tx, &self.counters, item);
    }

    fn refuses(&self, ip: IpAddr) -> bool {
        let no = !allowed(&self.settings, ip);
        if no {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
        }
        no
    }
}

/// UDP and TCP on one port. Port 0: the system picks a free UDP port, which TCP may hold
/// elsewhere; pick again.
fn bind(settings: &OscSettings) -> std::io::Result<(UdpSocket, std::net::SocketAddr, TcpListener)> {
    let mut tries = 0;
    loop {
        let udp = UdpSocket::bind((settings.bind, settings.port))?;
        let local = udp.local_addr()?;
        match TcpListener::bind((settings.bind, local.port())) {
            Ok(tcp) => return Ok((udp, local, tcp)),
            Err(e) if settings.port == 0 && e.kind() == std::io::ErrorKind::AddrInUse && tries < 20 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

/// The UDP receiver thread.
fn spawn_udp(sock: UdpSocket, sh: Shared) -> std::io::Result<()> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    std::thread::Builder::new().name("stagebox-osc-udp".into()).spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while !sh.stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
            if sh.refuses(from.ip()) {
                sh.counters.received.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            sh.decode(Peer::Udp(from), Ok(&buf[..n]));
        }
    })?;
    Ok(())
}

/// The TCP acceptor thread; one thread per connection.
fn spawn_tcp(listener: TcpListener, sh: Shared, tcp: Arc<Mutex<HashMap<u64, TcpStream>>>) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new().name("stagebox-osc-tcp".into()).spawn(move || {
        let mut next_id = 0u64;
        while !sh.stop.load(Ordering::Relaxed) {
            let Ok((stream, from)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            if sh.refuses(from.ip()) {
                continue;
            }
            if tcp.lock().unwrap().len() >= sh.settings.max_tcp {
                // Full: the newcomer is closed at once (and counted), the held ones go on.
                sh.counters.refused.fetch_add(1, Ordering::Relaxed);
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
            let (sh, tcp) = (sh.clone(), tcp.clone());
            let ip = from.ip();
            let _ = std::thread::Builder::new().name("stagebox-osc-conn".into()).spawn(move || {
                serve_connection(stream, id, ip, &sh);
                tcp.lock().unwrap().remove(&id);
            });
        }
    })?;
    Ok(())
}

/// One TCP connection's thread: SLIP frames until the peer closes, stays silent for
/// `tcp_idle`, or the server stops.
fn serve_connection(mut stream: TcpStream, id: u64, ip: IpAddr, sh: &Shared) {
    let mut dec = SlipDecoder::default();
    let mut buf = vec![0u8; 16_384];
    let mut heard = Instant::now();
    while !sh.stop.load(Ordering::Relaxed) && heard.elapsed() < sh.settings.tcp_idle {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        heard = Instant::now();
        dec.feed(&buf[..n], |frame| sh.decode(Peer::Tcp(id, ip), frame));
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
