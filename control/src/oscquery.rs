//! OSCQuery (the Vidvox proposal) beside the OSC server: an HTTP server answering the JSON
//! namespace (`FULL_PATH`, `CONTENTS`, `TYPE`, `RANGE`, `VALUE`, `ACCESS`, `DESCRIPTION`, and
//! `?HOST_INFO`), and on the same port a WebSocket where a client sends
//! `{"COMMAND": "LISTEN", "DATA": "/path"}` (or `IGNORE`) and receives that parameter's changes as
//! binary OSC messages. Threads: one accepting connections, one per connection (HTTP requests
//! are answered and closed; WebSockets stay). They read a snapshot the control thread publishes
//! (`publish`, `changed`); nothing here touches the engine. `advertise` announces the server
//! over mDNS (`_oscjson._tcp`, and the OSC port as `_osc._udp`), only with `--oscquery-mdns`
//! (off by default: mDNS multicasts beyond this machine).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rosc::{OscMessage, OscPacket, OscType};
use serde_json::{json, Value};
use stagebox_engine::param::{ParamKind, ParamValue};

use crate::osc::{ParamAddr, COMMANDS};

struct Shared {
    namespace: Mutex<Value>,
    host_info: Value,
    listeners: Mutex<Vec<Sender<(String, OscType)>>>,
}

pub struct OscQuery {
    shared: Arc<Shared>,
    pub local: SocketAddr,
    stop: Arc<AtomicBool>,
}

fn json_value(v: &ParamValue) -> Value {
    match v {
        ParamValue::Float(f) => json!(f),
        ParamValue::Int(i) => json!(i),
        ParamValue::Bool(b) => json!(b),
        ParamValue::Str(s) => json!(s),
    }
}

/// The namespace as OSCQuery JSON (control thread): every parameter of the running patch with
/// its type, range, value and doc, its `/norm` form, and the fixed commands.
pub fn namespace(params: &[ParamAddr], values: &HashMap<String, ParamValue>) -> Value {
    let mut root = json!({"FULL_PATH": "/", "ACCESS": 0, "CONTENTS": {}});
    let mut insert = |path: &str, leaf: Value| {
        let mut node = &mut root;
        let mut full = String::new();
        for part in path.trim_start_matches('/').split('/') {
            full.push('/');
            full.push_str(part);
            let contents = node.as_object_mut().unwrap().entry("CONTENTS").or_insert_with(|| json!({}));
            node = contents
                .as_object_mut()
                .unwrap()
                .entry(part.to_string())
                .or_insert_with(|| json!({"FULL_PATH": full.clone(), "ACCESS": 0}));
        }
        let obj = node.as_object_mut().unwrap();
        for (k, v) in leaf.as_object().unwrap() {
            obj.insert(k.clone(), v.clone());
        }
    };
    for p in params {
        let v = values.get(&p.address).cloned().unwrap_or_else(|| p.spec.default_value());
        let (ty, range, unit) = match p.spec.kind {
            ParamKind::Float { min, max, unit, .. } => ("f", json!([{"MIN": min, "MAX": max}]), unit),
            ParamKind::Int { min, max, .. } => ("i", json!([{"MIN": min, "MAX": max}]), ""),
            ParamKind::Bool { .. } => ("T", json!([{"MIN": 0, "MAX": 1}]), ""),
            ParamKind::Enum { options, .. } => (
                "i",
                json!([{"MIN": 0, "MAX": options.len().saturating_sub(1), "VALS": (0..options.len()).collect::<Vec<_>>()}]),
                "",
            ),
            ParamKind::Str { .. } => ("s", json!([null]), ""),
        };
        let mut desc = p.spec.doc.to_string();
        if let ParamKind::Enum { options, .. } = p.spec.kind {
            desc.push_str(&format!(
                " ({})",
                options
                    .iter()
                    .enumerate()
                    .map(|(i, o)| format!("{i} = {o}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !p.spec.is_runtime() {
            desc.push_str(" [fixed when the node is built: setting it rebuilds the node]");
        }
        let mut leaf = json!({
            "TYPE": ty,
            "RANGE": range,
            "VALUE": [json_value(&v)],
            "ACCESS": 3,
            "DESCRIPTION": desc,
        });
        if !unit.is_empty() {
            leaf["UNIT"] = json!([unit]);
        }
        insert(&p.address, leaf);
        insert(
            &format!("/stagebox/node/{}", p.node),
            json!({"DESCRIPTION": format!("`{}` node of the running patch", p.kind)}),
        );
        if !matches!(p.spec.kind, ParamKind::Str { .. }) {
            insert(
                &format!("{}/norm", p.address),
                json!({"TYPE": "f", "RANGE": [{"MIN": 0.0, "MAX": 1.0}], "ACCESS": 2,
                       "DESCRIPTION": format!("{} as 0..1 over its range", p.spec.name)}),
            );
        }
    }
    for (addr, args, doc) in COMMANDS {
        insert(
            addr,
            json!({"ACCESS": 2, "DESCRIPTION": format!("{args} {doc}").trim().to_string()}),
        );
    }
    root
}

fn find<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = root;
    for part in path.trim_matches('/').split('/').filter(|p| !p.is_empty()) {
        node = node.get("CONTENTS")?.get(part)?;
    }
    Some(node)
}

impl OscQuery {
    pub fn start(bind: IpAddr, port: u16, osc_port: u16) -> std::io::Result<OscQuery> {
        let listener = TcpListener::bind((bind, port))?;
        let local = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let host_info = json!({
            "NAME": "stagebox",
            "OSC_PORT": osc_port,
            "OSC_TRANSPORT": "UDP",
            "EXTENSIONS": {
                "ACCESS": true, "VALUE": true, "RANGE": true, "DESCRIPTION": true, "UNIT": true,
                "TAGS": false, "CLIPMODE": false, "CRITICAL": false, "LISTEN": true, "PATH_CHANGED": false
            }
        });
        let shared = Arc::new(Shared {
            namespace: Mutex::new(json!({"FULL_PATH": "/", "ACCESS": 0, "CONTENTS": {}})),
            host_info,
            listeners: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, st) = (shared.clone(), stop.clone());
        std::thread::Builder::new().name("stagebox-oscquery".into()).spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (sh, st) = (sh.clone(), st.clone());
                        let _ = std::thread::Builder::new()
                            .name("stagebox-oscquery-conn".into())
                            .spawn(move || connection(stream, &sh, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })?;
        tracing::info!("OSCQuery on http://{local}/ (WebSocket on the same port)");
        Ok(OscQuery { shared, local, stop })
    }

    /// Publishes a new namespace (control thread).
    pub fn publish(&self, ns: Value) {
        *self.shared.namespace.lock().unwrap() = ns;
    }

    /// A parameter changed: WebSocket listeners get it (control thread).
    pub fn changed(&self, address: &str, v: &ParamValue) {
        let mut ls = self.shared.listeners.lock().unwrap();
        ls.retain(|tx| tx.send((address.to_string(), crate::osc::to_osc(v))).is_ok());
    }
}

impl Drop for OscQuery {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn connection(mut stream: TcpStream, shared: &Shared, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    // Peek at the request to tell a WebSocket upgrade from a plain GET.
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    loop {
        match stream.peek(&mut buf) {
            Ok(k) if k > n => {
                n = k;
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") || n == buf.len() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(0) | Err(_) => return,
            Ok(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    if head.to_ascii_lowercase().contains("upgrade: websocket") {
        websocket(stream, shared, stop);
        return;
    }
    // A plain request: consume it and answer.
    let mut sink = vec![0u8; n];
    let _ = stream.read_exact(&mut sink);
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or("/"));
    if method != "GET" {
        respond(&mut stream, "405 Method Not Allowed", r#"{"error": "only GET"}"#);
        return;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if query == "HOST_INFO" {
        respond(&mut stream, "200 OK", &shared.host_info.to_string());
        return;
    }
    let ns = shared.namespace.lock().unwrap();
    match find(&ns, path) {
        Some(node) if query.is_empty() => respond(&mut stream, "200 OK", &node.to_string()),
        Some(node) => match node.get(query) {
            Some(v) => respond(&mut stream, "200 OK", &json!({ query: v }).to_string()),
            None => respond(&mut stream, "204 No Content", ""),
        },
        None => respond(&mut stream, "404 Not Found", &json!({"error": format!("no {path}")}).to_string()),
    }
}

fn websocket(stream: TcpStream, shared: &Shared, stop: &AtomicBool) {
    let Ok(mut ws) = tungstenite::accept(stream) else { return };
    let _ = ws.get_mut().set_read_timeout(Some(Duration::from_millis(20)));
    let (tx, rx): (Sender<(String, OscType)>, Receiver<(String, OscType)>) = channel();
    shared.listeners.lock().unwrap().push(tx);
    let mut listening: Vec<String> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let cmd: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                let data = cmd.get("DATA").and_then(|d| d.as_str()).unwrap_or_default().to_string();
                match cmd.get("COMMAND").and_then(|c| c.as_str()) {
                    Some("LISTEN") if !listening.contains(&data) => listening.push(data),
                    Some("IGNORE") => listening.retain(|p| *p != data),
                    _ => {}
                }
            }
            Ok(tungstenite::Message::Close(_)) => return,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
        for (addr, v) in rx.try_iter() {
            if listening.contains(&addr) {
                let packet = OscPacket::Message(OscMessage { addr, args: vec![v] });
                if let Ok(bytes) = rosc::encoder::encode(&packet) {
                    if ws.send(tungstenite::Message::Binary(bytes)).is_err() {
                        return;
                    }
                }
            }
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
