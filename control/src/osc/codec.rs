//! OSC encoding details (control thread and the socket threads): SLIP framing for TCP, the
//! coercion of arguments into parameter values, and the address space generated from the
//! running patch's parameter specs.

use rosc::OscType;
use stagebox_engine::param::{ParamKind, ParamSpec, ParamValue};
use stagebox_engine::EngineHandle;

use super::{ParamAddr, MAX_PACKET};

pub(super) fn slip_encode(data: &[u8], out: &mut Vec<u8>) {
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

pub(super) fn number(a: &OscType) -> Option<f64> {
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

/// Decodes a whole datagram or frame: a packet that leaves bytes undecoded (a bundle element
/// whose size is wrong: rosc stops at it and keeps what came before) is malformed.
pub fn decode_whole(bytes: &[u8]) -> Result<rosc::OscPacket, String> {
    match rosc::decoder::decode_udp(bytes) {
        Ok(([], packet)) => Ok(packet),
        Ok((rest, _)) => Err(format!(
            "{} of its {} bytes could not be decoded (a bundle element's size is wrong)",
            rest.len(),
            bytes.len()
        )),
        Err(e) => Err(format!("{e:?}")),
    }
}
