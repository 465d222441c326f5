//! One OSCQuery connection's HTTP side (its own thread): the request head read within a
//! deadline and a size cap and parsed by httparse; Host, Origin and the client's address
//! checked; a GET answered with JSON and the connection closed, or a WebSocket upgrade handed
//! to `ws`. Every path out of here closes the connection, so the thread always ends.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Counters, Shared};

/// The whole request head must arrive within this.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// The largest request head read.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 48;

/// What the checks need of a request.
pub struct Request {
    pub method: String,
    pub target: String,
    pub host: Option<String>,
    pub origin: Option<String>,
    pub upgrade: bool,
    /// Every byte read (the head and anything after it), for the WebSocket handshake.
    pub bytes: Vec<u8>,
}

/// Why no request came.
#[derive(Debug)]
pub enum Failed {
    Closed,
    TooSlow,
    TooLarge,
    Malformed,
}

/// Reads one request head: by `REQUEST_DEADLINE`, at most `MAX_HEAD_BYTES`.
pub fn read_request(stream: &mut TcpStream) -> Result<Request, Failed> {
    let started = Instant::now();
    let mut bytes = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let left = REQUEST_DEADLINE.checked_sub(started.elapsed()).ok_or(Failed::TooSlow)?;
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match stream.read(&mut chunk) {
            Ok(0) => return Err(Failed::Closed),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return Err(Failed::TooSlow),
            Err(_) => return Err(Failed::Closed),
        }
        if let Some(r) = parse(&bytes)? {
            return Ok(r);
        }
        if bytes.len() > MAX_HEAD_BYTES {
            return Err(Failed::TooLarge);
        }
    }
}

/// A complete head in `bytes`, None while it is partial.
fn parse(bytes: &[u8]) -> Result<Option<Request>, Failed> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(_)) => {
            let header = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
            };
            Ok(Some(Request {
                method: req.method.unwrap_or_default().to_string(),
                target: req.path.unwrap_or("/").to_string(),
                host: header("host"),
                origin: header("origin"),
                upgrade: header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")),
                bytes: bytes.to_vec(),
            }))
        }
        Err(httparse::Error::TooManyHeaders) => Err(Failed::TooLarge),
        Err(_) => Err(Failed::Malformed),
    }
}

/// An answer, with `Access-Control-Allow-Origin` naming the request's origin when it is allowed.
pub fn respond(stream: &mut TcpStream, status: &str, body: &str, origin: Option<&str>) {
    let cors = origin
        .map(|o| format!("Access-Control-Allow-Origin: {o}\r\nVary: Origin\r\n"))
        .unwrap_or_default();
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{cors}Connection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Serves one connection to its end (its own thread).
pub fn connection(mut stream: TcpStream, shared: &Shared) {
    let counters = &shared.counters;
    let req = match read_request(&mut stream) {
        Ok(r) => r,
        Err(Failed::Closed) => return,
        Err(why) => {
            let (status, counter) = match why {
                Failed::TooSlow => ("408 Request Timeout", &counters.timed_out),
                Failed::TooLarge => ("431 Request Header Fields Too Large", &counters.too_large),
                _ => ("400 Bad Request", &counters.malformed),
            };
            counter.fetch_add(1, Ordering::Relaxed);
            respond(&mut stream, status, r#"{"error": "the request was not read"}"#, None);
            return;
        }
    };
    if let Err(why) = check(&req, shared) {
        respond(&mut stream, "403 Forbidden", &json!({ "error": why }).to_string(), None);
        return;
    }
    if req.upgrade {
        super::ws::serve(stream, req, shared);
        return;
    }
    answer(&mut stream, &req, shared);
}

/// Host (against DNS rebinding) and Origin (against other sites' pages) checks.
fn check(req: &Request, shared: &Shared) -> Result<(), &'static str> {
    let c: &Counters = &shared.counters;
    if !req.host.as_deref().is_some_and(|h| shared.origins.host_ok(h)) {
        c.refused_host.fetch_add(1, Ordering::Relaxed);
        return Err("Host is not this machine (see docs/security.md)");
    }
    if !shared.origins.origin_ok(req.origin.as_deref()) {
        c.refused_origin.fetch_add(1, Ordering::Relaxed);
        return Err("this web origin may not read Stagebox (--oscquery-allow-origin widens it)");
    }
    Ok(())
}

/// A plain GET: the namespace, a node, one attribute of it, or HOST_INFO.
fn answer(stream: &mut TcpStream, req: &Request, shared: &Shared) {
    let origin = req.origin.as_deref();
    if req.method != "GET" {
        respond(stream, "405 Method Not Allowed", r#"{"error": "only GET"}"#, origin);
        return;
    }
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    if query == "HOST_INFO" {
        respond(stream, "200 OK", &shared.host_info.to_string(), origin);
        return;
    }
    let body = {
        let ns = shared.namespace.lock().unwrap();
        match super::namespace::find(&ns, path) {
            Some(node) if query.is_empty() => Some(("200 OK", node.to_string())),
            Some(node) => node.get(query).map(|v| ("200 OK", json!({ query: v }).to_string())),
            None => Some(("404 Not Found", json!({"error": format!("no {path}")}).to_string())),
        }
    };
    match body {
        Some((status, b)) => respond(stream, status, &b, origin),
        None => respond(stream, "204 No Content", "", origin),
    }
}
