//! One OSCQuery WebSocket (its own thread): the client sends `{"COMMAND": "LISTEN", "DATA":
//! "/path"}` (or `IGNORE`) and receives that parameter's changes as binary OSC messages. Every
//! size is bounded: incoming messages and frames, LISTEN paths and how many, the queue of
//! changes waiting for this client and what waits to be written to it. A client that does not
//! keep up is dropped (counted) and its memory freed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::time::Duration;

use rosc::{OscMessage, OscPacket, OscType};
use serde_json::Value;
use tungstenite::protocol::WebSocketConfig;

use super::http::Request;
use super::Shared;

/// Changes waiting for one client; when full, the client is dropped.
pub const QUEUE_PER_CLIENT: usize = 1024;
/// The largest message and frame a client may send (a LISTEN is a few dozen bytes).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The longest path a client may LISTEN to, and how many.
pub const MAX_PATH_BYTES: usize = 1024;
pub const MAX_LISTENS: usize = 4096;
/// Bytes waiting to be written to a client that does not read; beyond, it is dropped.
const MAX_WRITE_BUFFER: usize = 1 << 20;

/// The request's bytes replayed to the handshake, then the socket.
struct Replay {
    head: std::io::Cursor<Vec<u8>>,
    stream: TcpStream,
}

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.head.read(buf)? {
            0 => self.stream.read(buf),
            n => Ok(n),
        }
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

fn config() -> WebSocketConfig {
    let mut c = WebSocketConfig::default();
    c.write_buffer_size = 0;
    c.max_write_buffer_size = MAX_WRITE_BUFFER;
    c.max_message_size = Some(MAX_MESSAGE_BYTES);
    c.max_frame_size = Some(MAX_MESSAGE_BYTES);
    c
}

/// Completes the handshake and serves the client until it leaves, lags or the server stops.
pub fn serve(stream: TcpStream, req: Request, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let replay = Replay {
        head: std::io::Cursor::new(req.bytes),
        stream,
    };
    let Ok(mut ws) = tungstenite::accept_with_config(replay, Some(config())) else {
        return;
    };
    let (tx, rx) = sync_channel(QUEUE_PER_CLIENT);
    shared.listeners.lock().unwrap().push(tx);
    let mut listening: Vec<String> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                if !command(&t, &mut listening) {
                    shared.counters.refused_listen.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(tungstenite::Message::Close(_)) => return,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
        if !forward(&mut ws, &rx, &listening) {
            shared.counters.slow_clients.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
}

/// A LISTEN or IGNORE; false when refused (a path too long, too many).
fn command(text: &str, listening: &mut Vec<String>) -> bool {
    let cmd: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let data = cmd.get("DATA").and_then(|d| d.as_str()).unwrap_or_default();
    match cmd.get("COMMAND").and_then(|c| c.as_str()) {
        Some("LISTEN") if data.len() > MAX_PATH_BYTES || listening.len() >= MAX_LISTENS => false,
        Some("LISTEN") => {
            if !listening.iter().any(|p| p == data) {
                listening.push(data.to_string());
            }
            true
        }
        Some("IGNORE") => {
            listening.retain(|p| p != data);
            true
        }
        _ => true,
    }
}

/// Sends the changes this client listens to; false when it must go (it lags, or its queue was
/// cut by the control thread because it was full).
fn forward(ws: &mut tungstenite::WebSocket<Replay>, rx: &Receiver<(String, OscType)>, listening: &[String]) -> bool {
    loop {
        let (addr, v) = match rx.try_recv() {
            Ok(x) => x,
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Disconnected) => return false,
        };
        if !listening.contains(&addr) {
            continue;
        }
        let packet = OscPacket::Message(OscMessage { addr, args: vec![v] });
        let Ok(bytes) = rosc::encoder::encode(&packet) else { continue };
        match ws.send(tungstenite::Message::Binary(bytes)) {
            Ok(()) => {}
            // The socket is full: the frame waits in the write buffer, up to its cap.
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return false,
        }
    }
}
