//! Where notes leave a live run (control thread): a MIDI output port through midir (JACK), OSC
//! messages to a configured host and port, and an event log (JSON lines).

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;

use anyhow::Context;

use crate::events::Emitted;

pub struct Outputs {
    midi: Option<midir::MidiOutputConnection>,
    osc: Option<(UdpSocket, SocketAddr)>,
    log: Option<std::io::BufWriter<std::fs::File>>,
    sample_rate: u32,
    pub midi_sent: u64,
    pub osc_sent: u64,
    pub errors: u64,
}

impl Outputs {
    /// Opens what was asked for. A MIDI port that cannot be made is a warning, not an error:
    /// the engine runs on without it.
    pub fn open(midi_port: Option<&str>, osc: Option<&str>, events: Option<&Path>, sample_rate: u32) -> anyhow::Result<Outputs> {
        let jack = stagebox_engine::backend::live::jack_server_running();
        if midi_port.is_some() && !jack {
            tracing::info!("no MIDI output port: it needs a JACK server, and none is running; notes still go to OSC and the event log");
        }
        let midi = midi_port.filter(|_| jack).and_then(|name| match open_midi(name) {
            Ok(c) => {
                tracing::info!("MIDI out: JACK port stagebox:{name}");
                Some(c)
            }
            Err(e) => {
                tracing::warn!("MIDI out unavailable ({e}); notes still go to OSC and the event log");
                None
            }
        });
        let osc = match osc {
            Some(addr) => {
                let to: SocketAddr = addr.parse().with_context(|| format!("--osc-out `{addr}` is not HOST:PORT"))?;
                let bind = if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
                let sock = UdpSocket::bind(bind)?;
                sock.set_nonblocking(true)?;
                tracing::info!("OSC out: notes to {to}");
                Some((sock, to))
            }
            None => None,
        };
        let log = match events {
            Some(p) => Some(std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            )),
            None => None,
        };
        Ok(Outputs {
            midi,
            osc,
            log,
            sample_rate,
            midi_sent: 0,
            osc_sent: 0,
            errors: 0,
        })
    }

    /// Sends one event everywhere.
    pub fn send(&mut self, e: &Emitted) {
        if let Some(m) = &mut self.midi {
            match m.send(&e.msg) {
                Ok(()) => self.midi_sent += 1,
                Err(_) => self.errors += 1,
            }
        }
        if let Some((sock, to)) = &self.osc {
            let (addr, args) = osc_message(e, self.sample_rate);
            let packet = rosc::OscPacket::Message(rosc::OscMessage {
                addr: addr.to_string(),
                args,
            });
            match rosc::encoder::encode(&packet).map(|b| sock.send_to(&b, to)) {
                Ok(Ok(_)) => self.osc_sent += 1,
                _ => self.errors += 1,
            }
        }
        if let Some(log) = &mut self.log {
            if writeln!(log, "{}", crate::events::json_line(e, self.sample_rate)).is_err() {
                self.errors += 1;
            }
        }
    }

    pub fn flush(&mut self) {
        if let Some(log) = &mut self.log {
            let _ = log.flush();
        }
    }
}

fn open_midi(port: &str) -> Result<midir::MidiOutputConnection, String> {
    let out = midir::MidiOutput::new("stagebox").map_err(|e| e.to_string())?;
    use midir::os::unix::VirtualOutput;
    out.create_virtual(port).map_err(|e| e.to_string())
}

/// The OSC message for an event a node emitted (`--osc-out`, and OSC subscribers):
/// `/stagebox/note node channel key velocity onset_s emitted_s` (times as `f`, which every
/// client reads, Pure Data's `oscparse` included; 1 ms resolution for the first 4.6 hours of a
/// run, coarser later: exact sample times are in `--events-out`), `/stagebox/bend node channel
/// bend(-1..1)`, else `/stagebox/midi node m`.
pub fn osc_message(e: &Emitted, sample_rate: u32) -> (&'static str, Vec<rosc::OscType>) {
    let sr = sample_rate as f64;
    match e.msg[0] & 0xf0 {
        0x90 | 0x80 => (
            "/stagebox/note",
            vec![
                rosc::OscType::String(e.node.clone()),
                rosc::OscType::Int((e.msg[0] & 0x0f) as i32 + 1),
                rosc::OscType::Int(e.msg[1] as i32),
                rosc::OscType::Int(if e.msg[0] & 0xf0 == 0x90 { e.msg[2] as i32 } else { 0 }),
                rosc::OscType::Float((e.origin as f64 / sr) as f32),
                rosc::OscType::Float((e.sample_time as f64 / sr) as f32),
            ],
        ),
        0xe0 => (
            "/stagebox/bend",
            vec![
                rosc::OscType::String(e.node.clone()),
                rosc::OscType::Int((e.msg[0] & 0x0f) as i32 + 1),
                rosc::OscType::Float((((e.msg[2] as i32) << 7 | e.msg[1] as i32) - 8192) as f32 / 8192.0),
            ],
        ),
        _ => (
            "/stagebox/midi",
            vec![
                rosc::OscType::String(e.node.clone()),
                rosc::OscType::Midi(rosc::OscMidiMessage {
                    port: 0,
                    status: e.msg[0],
                    data1: e.msg[1],
                    data2: e.msg[2],
                }),
            ],
        ),
    }
}
