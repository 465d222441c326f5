//! Test helpers: graph builders and test node types (control thread).
#![allow(dead_code)]

use std::collections::BTreeMap;

use stagebox_engine::node::{BuildCtx, Built, NodeInfo, NodeType, Params, PortSpec, ProcessIo, Processor};
use stagebox_engine::param::ParamSpec;
use stagebox_engine::{Connection, GraphDesc, NodeDesc, ParamValue, PortRef, Registry};

pub fn node(id: &str, kind: &str, params: &[(&str, ParamValue)]) -> NodeDesc {
    NodeDesc {
        id: id.into(),
        kind: kind.into(),
        params: params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
    }
}

pub fn conn(from: &str, to: &str) -> Connection {
    Connection {
        from: PortRef::parse(from),
        to: PortRef::parse(to),
    }
}

pub fn graph(nodes: Vec<NodeDesc>, connections: Vec<Connection>) -> GraphDesc {
    GraphDesc {
        nodes,
        connections,
        base_dir: std::env::temp_dir(),
        takes_dir: None,
    }
}

pub fn f(x: f64) -> ParamValue {
    ParamValue::Float(x)
}
pub fn i(x: i64) -> ParamValue {
    ParamValue::Int(x)
}
pub fn s(x: &str) -> ParamValue {
    ParamValue::Str(x.into())
}
pub fn b(x: bool) -> ParamValue {
    ParamValue::Bool(x)
}

/// `delay`: mono, delays by `frames` and declares that as its latency.
struct DelayProc {
    buf: Vec<f32>,
    pos: usize,
}
impl Processor for DelayProc {
    fn process(&mut self, io: &mut ProcessIo) {
        for t in 0..io.frames {
            let y = self.buf[self.pos];
            self.buf[self.pos] = io.inputs[0][t];
            self.pos = (self.pos + 1) % self.buf.len();
            io.outputs[0][t] = y;
        }
    }
}
const DELAY_PARAMS: &[ParamSpec] = &[ParamSpec::int("frames", 1, 100000, 100, "delay")];
pub const TEST_DELAY: NodeType = NodeType {
    name: "test_delay",
    doc: "test: a delay that declares its latency",
    params: DELAY_PARAMS,
    params_of: None,
    build: |p: &Params, _: &BuildCtx| {
        let n = p.usize("frames");
        Ok(Built {
            info: NodeInfo {
                inputs: vec![PortSpec::new("in", 1)],
                outputs: vec![PortSpec::new("out", 1)],
                latency_frames: n as u32,
                ..Default::default()
            },
            processor: Box::new(DelayProc { buf: vec![0.0; n], pos: 0 }),
        })
    },
};

/// `test_alloc`: allocates in `process` (breaks the rules on purpose).
struct AllocProc;
impl Processor for AllocProc {
    fn process(&mut self, io: &mut ProcessIo) {
        let v: Vec<f32> = io.inputs[0].to_vec();
        io.outputs[0].copy_from_slice(&v);
    }
}
pub const TEST_ALLOC: NodeType = NodeType {
    name: "test_alloc",
    doc: "test: allocates on the audio thread",
    params: &[],
    params_of: None,
    build: |_: &Params, _: &BuildCtx| {
        Ok(Built {
            info: NodeInfo {
                inputs: vec![PortSpec::new("in", 1)],
                outputs: vec![PortSpec::new("out", 1)],
                ..Default::default()
            },
            processor: Box::new(AllocProc),
        })
    },
};

/// `test_notes`: emits a fixed MIDI pattern (note on every `every` frames, off half-way).
struct NotesProc {
    every: u64,
    t: u64,
}
impl Processor for NotesProc {
    fn process(&mut self, io: &mut ProcessIo) {
        for k in 0..io.frames {
            let t = self.t + k as u64;
            let n = 48 + ((t / self.every) % 24) as u8;
            if t.is_multiple_of(self.every) {
                io.emit.midi(k as u32, [0x90, n, 100]);
            } else if t % self.every == self.every / 2 {
                io.emit.midi(k as u32, [0x80, n, 0]);
            }
        }
        self.t += io.frames as u64;
    }
}
const NOTES_PARAMS: &[ParamSpec] = &[ParamSpec::int("every", 2, 1000000, 3001, "frames between notes")];
pub const TEST_NOTES: NodeType = NodeType {
    name: "test_notes",
    doc: "test: a MIDI pattern source",
    params: NOTES_PARAMS,
    params_of: None,
    build: |p: &Params, _: &BuildCtx| {
        Ok(Built {
            info: NodeInfo {
                midi_out: true,
                ..Default::default()
            },
            processor: Box::new(NotesProc {
                every: p.usize("every") as u64,
                t: 0,
            }),
        })
    },
};

pub fn registry() -> Registry {
    let mut r = Registry::builtin();
    r.add(TEST_DELAY);
    r.add(TEST_ALLOC);
    r.add(TEST_NOTES);
    r
}

/// Deterministic test signal: a chord of sines plus a little noise, interleaved.
pub fn test_signal(frames: usize, channels: usize, sr: f32) -> Vec<f32> {
    let mut seed = 12345u32;
    let mut out = Vec::with_capacity(frames * channels);
    for t in 0..frames {
        for c in 0..channels {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let n = (seed as f32 / u32::MAX as f32 - 0.5) * 0.02;
            let x = t as f32 / sr;
            out.push(
                0.3 * (2.0 * std::f32::consts::PI * (220.0 + 110.0 * c as f32) * x).sin()
                    + 0.2 * (2.0 * std::f32::consts::PI * 1375.0 * x).sin()
                    + n,
            );
        }
    }
    out
}
