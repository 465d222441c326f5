//! Compiling a graph description into a [`Schedule`] (control thread; may allocate, read files,
//! spawn threads). In order: check the node ids, build every node, resolve the connections into
//! edges, sort the nodes topologically, compute each node's arrival latency (aligning the paths
//! that merge), then wire every input (direct, or a scratch buffer summing feeds through
//! alignment delays) and hand out the buffers. Every error found in a phase is reported, with
//! where it belongs, before the next phase starts.

use std::collections::{BTreeMap, BTreeSet};

use super::run::{DelayLine, Feed, InSrc, Slot};
use super::{CompileMode, CompiledNode, Connection, ErrorLoc, GraphDesc, GraphError, Schedule, STRIDE};
use crate::msg::NODE_EVENT_CAPACITY;
use crate::node::{BuildCtx, Built, NodeInfo, PortSpec, Registry};
use crate::param::ParamSpec;
use crate::{MAX_BLOCK_FRAMES, MAX_NODE_CHANNELS};

/// A resolved connection between two nodes (indices in declaration order).
struct Edge {
    src: usize,
    src_port: usize,
    dst: usize,
    dst_port: usize,
    midi: bool,
}

/// Arrival latency at each node's inputs and outputs, in frames; the hardware outputs' common one.
struct Latencies {
    input: Vec<u32>,
    output: Vec<u32>,
    hw_out: u32,
}

pub(super) fn compile(desc: &GraphDesc, registry: &Registry, sample_rate: f32, mode: CompileMode) -> Result<Schedule, Vec<GraphError>> {
    let mut errors = Vec::new();
    let index_of = index_ids(desc, &mut errors);
    let (built, specs) = build_nodes(desc, registry, sample_rate, mode, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let built: Vec<Built> = built.into_iter().map(|b| b.expect("every node built: no errors")).collect();
    let infos: Vec<NodeInfo> = built.iter().map(|b| b.info.clone()).collect();
    let edges = resolve_edges(desc, &index_of, &infos, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let order = topological_order(desc, &edges).map_err(|e| vec![e])?;
    let lat = latencies(&order, &edges, &infos);
    Ok(assemble(desc, built, specs, &infos, &edges, &order, &lat, sample_rate))
}

/// Node index by id; reports ids used twice or not well formed.
fn index_ids<'a>(desc: &'a GraphDesc, errors: &mut Vec<GraphError>) -> BTreeMap<&'a str, usize> {
    let mut index_of = BTreeMap::new();
    for (i, nd) in desc.nodes.iter().enumerate() {
        if index_of.insert(nd.id.as_str(), i).is_some() {
            errors.push(GraphError::new(ErrorLoc::Node(i), format!("node id `{}` is used twice", nd.id)));
        }
        if !valid_id(&nd.id) {
            errors.push(GraphError::new(
                ErrorLoc::Node(i),
                format!(
                    "node id `{}` must start with a letter and hold only letters, digits, `_` and `-`",
                    nd.id
                ),
            ));
        }
    }
    index_of
}

/// Builds every node (None where it failed, with the errors pushed) and its parameter list.
fn build_nodes(
    desc: &GraphDesc,
    registry: &Registry,
    sample_rate: f32,
    mode: CompileMode,
    errors: &mut Vec<GraphError>,
) -> (Vec<Option<Built>>, Vec<&'static [ParamSpec]>) {
    let mut built = Vec::with_capacity(desc.nodes.len());
    let mut specs = Vec::with_capacity(desc.nodes.len());
    for (i, nd) in desc.nodes.iter().enumerate() {
        let Some(t) = registry.get(&nd.kind) else {
            errors.push(GraphError::new(
                ErrorLoc::Node(i),
                format!("unknown node type `{}` (known types: {})", nd.kind, registry.names().join(", ")),
            ));
            built.push(None);
            continue;
        };
        // The node's parameter list once (a model node reads it from its manifest).
        let checked = t
            .specs(&nd.params, &desc.base_dir)
            .map_err(|e| vec![e])
            .and_then(|list| t.check_against(list, &nd.params).map(|p| (p, list)));
        let params = match checked {
            Ok((p, list)) => {
                specs.push(list);
                p
            }
            Err(errs) => {
                errors.extend(errs.into_iter().map(|(k, e)| GraphError::new(ErrorLoc::Param(i, k), e)));
                built.push(None);
                continue;
            }
        };
        let ctx = BuildCtx {
            sample_rate,
            max_block: MAX_BLOCK_FRAMES,
            base_dir: desc.base_dir.clone(),
            takes_dir: desc.takes_dir.clone(),
            node_index: i as u32,
            dry_run: mode == CompileMode::DryRun,
            offline: mode == CompileMode::Offline,
            locate_model: registry.model_locator(),
        };
        match (t.build)(&params, &ctx) {
            Ok(b) => {
                let chans_in: usize = b.info.inputs.iter().map(|p| p.channels).sum();
                let chans_out: usize = b.info.outputs.iter().map(|p| p.channels).sum();
                if chans_in > MAX_NODE_CHANNELS || chans_out > MAX_NODE_CHANNELS {
                    errors.push(GraphError::new(
                        ErrorLoc::Node(i),
                        format!("node `{}` has too many channels", nd.id),
                    ));
                }
                built.push(Some(b));
            }
            Err(e) => {
                errors.push(GraphError::new(ErrorLoc::Node(i), format!("node `{}`: {e}", nd.id)));
                built.push(None);
            }
        }
    }
    (built, specs)
}

/// Every connection as an edge; the errors of those that cannot be.
fn resolve_edges(desc: &GraphDesc, index_of: &BTreeMap<&str, usize>, infos: &[NodeInfo], errors: &mut Vec<GraphError>) -> Vec<Edge> {
    let mut edges = Vec::new();
    for (ci, c) in desc.connections.iter().enumerate() {
        let (Some(&s), Some(&d)) = (index_of.get(c.from.node.as_str()), index_of.get(c.to.node.as_str())) else {
            for (r, at) in [(&c.from, ErrorLoc::Connection(ci)), (&c.to, ErrorLoc::ConnectionTo(ci))] {
                if !index_of.contains_key(r.node.as_str()) {
                    errors.push(GraphError::new(
                        at,
                        format!("connection names node `{}`, which the graph does not have", r.node),
                    ));
                }
            }
            continue;
        };
        if s == d {
            errors.push(GraphError::new(
                ErrorLoc::Connection(ci),
                format!("node `{}` is connected to itself", c.from.node),
            ));
            continue;
        }
        let from_midi = c.from.port.as_deref() == Some("midi");
        let to_midi = c.to.port.as_deref() == Some("midi");
        let edge = if from_midi || to_midi {
            midi_edge(ci, c, s, d, infos, from_midi, to_midi)
        } else {
            audio_edge(ci, c, s, d, infos)
        };
        match edge {
            Ok(e) => edges.push(e),
            Err(errs) => errors.extend(errs),
        }
    }
    edges
}

/// A connection with `midi` at either end: both ends must be MIDI ports that exist.
fn midi_edge(
    ci: usize,
    c: &Connection,
    s: usize,
    d: usize,
    infos: &[NodeInfo],
    from_midi: bool,
    to_midi: bool,
) -> Result<Edge, Vec<GraphError>> {
    if !(from_midi && to_midi) {
        Err(vec![mixed_midi_error(ci, c, &infos[s], &infos[d], from_midi)])
    } else if !infos[s].midi_out {
        Err(vec![GraphError::new(
            ErrorLoc::Connection(ci),
            format!("node `{}` has no MIDI output", c.from.node),
        )])
    } else if !infos[d].midi_in {
        Err(vec![GraphError::new(
            ErrorLoc::ConnectionTo(ci),
            format!("node `{}` has no MIDI input", c.to.node),
        )])
    } else {
        Ok(Edge {
            src: s,
            src_port: 0,
            dst: d,
            dst_port: 0,
            midi: true,
        })
    }
}

/// An audio or control connection: the ports exist, are of kinds that connect, and have
/// channel counts that do (equal, or one side mono).
fn audio_edge(ci: usize, c: &Connection, s: usize, d: usize, infos: &[NodeInfo]) -> Result<Edge, Vec<GraphError>> {
    let loc = ErrorLoc::Connection(ci);
    let sp = find_port(&infos[s].outputs, c.from.port.as_deref());
    let dp = find_port(&infos[d].inputs, c.to.port.as_deref());
    let (sp, dp) = match (sp, dp) {
        (Ok(sp), Ok(dp)) => (sp, dp),
        (sp, dp) => {
            let mut errs = Vec::new();
            if let Err(e) = sp {
                errs.push(GraphError::new(loc, format!("node `{}` {e}", c.from.node)));
            }
            if let Err(e) = dp {
                errs.push(GraphError::new(ErrorLoc::ConnectionTo(ci), format!("node `{}` {e}", c.to.node)));
            }
            return Err(errs);
        }
    };
    let (a, b) = (infos[s].outputs[sp].channels, infos[d].inputs[dp].channels);
    let (ka, kb) = (infos[s].outputs[sp].kind, infos[d].inputs[dp].kind);
    if !ka.feeds(kb) {
        let message = format!(
            "`{}` is {} and `{}` is {}: connect control outputs to control inputs, audio to audio",
            c.from,
            ka.word(),
            c.to,
            kb.word()
        );
        return Err(vec![GraphError::new(loc, message)]);
    }
    if a != b && a != 1 && b != 1 {
        let message = format!(
            "`{}` has {a} channels but `{}` has {b} (connect equal counts, or mono to anything)",
            c.from, c.to
        );
        return Err(vec![GraphError::new(loc, message)]);
    }
    Ok(Edge {
        src: s,
        src_port: sp,
        dst: d,
        dst_port: dp,
        midi: false,
    })
}

/// Kahn's order, stable by declaration order; a cycle is an error at a connection into it.
fn topological_order(desc: &GraphDesc, edges: &[Edge]) -> Result<Vec<usize>, GraphError> {
    let n = desc.nodes.len();
    let mut indeg = vec![0usize; n];
    for e in edges {
        indeg[e.dst] += 1;
    }
    let mut order = Vec::with_capacity(n);
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for e in edges.iter().filter(|e| e.src == i) {
            indeg[e.dst] -= 1;
            if indeg[e.dst] == 0 {
                ready.insert(e.dst);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    let stuck: Vec<&str> = (0..n).filter(|i| indeg[*i] > 0).map(|i| desc.nodes[i].id.as_str()).collect();
    let loc = desc
        .connections
        .iter()
        .position(|c| stuck.contains(&c.to.node.as_str()))
        .map(ErrorLoc::Connection)
        .unwrap_or(ErrorLoc::Graph);
    Err(GraphError::new(
        loc,
        format!("the graph has a cycle through nodes {}", stuck.join(", ")),
    ))
}

/// Arrival latencies along the order: a node's inputs arrive with the latest of its audio
/// sources; every hardware output lines up with the latest of them.
fn latencies(order: &[usize], edges: &[Edge], infos: &[NodeInfo]) -> Latencies {
    let n = infos.len();
    let mut input = vec![0u32; n];
    let mut output = vec![0u32; n];
    for &i in order {
        input[i] = edges
            .iter()
            .filter(|e| e.dst == i && !e.midi)
            .map(|e| output[e.src])
            .max()
            .unwrap_or(0);
        output[i] = input[i] + infos[i].latency_frames;
    }
    let hw_out = (0..n)
        .filter(|&i| infos[i].hw_output.is_some())
        .map(|i| input[i])
        .max()
        .unwrap_or(0);
    for i in 0..n {
        if infos[i].hw_output.is_some() {
            input[i] = hw_out;
        }
    }
    Latencies { input, output, hw_out }
}

/// Hands out buffer indices in the pool (0 is the shared zero buffer).
struct Buffers {
    next: usize,
}

impl Buffers {
    fn take(&mut self, k: usize) -> Vec<usize> {
        let v: Vec<usize> = (self.next..self.next + k).collect();
        self.next += k;
        v
    }
}

/// What feeds each input channel of node `i`: (source buffer, scale, alignment delay in frames).
fn sources_per_channel(
    i: usize,
    edges: &[Edge],
    infos: &[NodeInfo],
    lat: &Latencies,
    out_bufs: &[Vec<usize>],
) -> Vec<Vec<(usize, f32, u32)>> {
    let info = &infos[i];
    let n_in: usize = info.inputs.iter().map(|p| p.channels).sum();
    let port_base = |ports: &[PortSpec], p: usize| ports[..p].iter().map(|x| x.channels).sum::<usize>();
    let mut per_channel: Vec<Vec<(usize, f32, u32)>> = vec![Vec::new(); n_in];
    for e in edges.iter().filter(|e| e.dst == i && !e.midi) {
        let sc = infos[e.src].outputs[e.src_port].channels;
        let dc = info.inputs[e.dst_port].channels;
        let sbase = port_base(&infos[e.src].outputs, e.src_port);
        let dbase = port_base(&info.inputs, e.dst_port);
        let delay = lat.input[i] - lat.output[e.src];
        for k in 0..dc {
            let ch = &mut per_channel[dbase + k];
            if sc == dc {
                ch.push((out_bufs[e.src][sbase + k], 1.0, delay));
            } else if sc == 1 {
                ch.push((out_bufs[e.src][sbase], 1.0, delay));
            } else {
                // Many to mono: the mean of the source channels.
                ch.extend((0..sc).map(|j| (out_bufs[e.src][sbase + j], 1.0 / sc as f32, delay)));
            }
        }
    }
    per_channel
}

/// Node `i`'s slot: its inputs wired (one undelayed source read directly, anything else summed
/// into a scratch buffer through its feeds), its output buffers, its event buffers.
fn slot_for(i: usize, b: Built, edges: &[Edge], infos: &[NodeInfo], lat: &Latencies, out_bufs: &[Vec<usize>], bufs: &mut Buffers) -> Slot {
    let info = &infos[i];
    let mut inputs = Vec::new();
    let mut scratch = Vec::new();
    let mut feeds = Vec::new();
    for ch in sources_per_channel(i, edges, infos, lat, out_bufs) {
        match ch.as_slice() {
            [] => inputs.push(InSrc::Zero),
            [(src, s, 0)] if *s == 1.0 => inputs.push(InSrc::Direct(*src)),
            many => {
                let dst = bufs.take(1)[0];
                scratch.push(dst);
                inputs.push(InSrc::Scratch(dst));
                feeds.extend(many.iter().map(|&(src, scale, delay)| Feed {
                    src,
                    dst,
                    scale,
                    delay: (delay > 0).then(|| DelayLine::new(delay as usize)),
                }));
            }
        }
    }
    Slot {
        desc_index: i as u32,
        processor: b.processor,
        inputs,
        scratch,
        feeds,
        outputs: out_bufs[i].clone(),
        events: Vec::with_capacity(NODE_EVENT_CAPACITY),
        midi_out: Vec::with_capacity(if info.midi_out { NODE_EVENT_CAPACITY } else { 0 }),
        midi_targets: edges.iter().filter(|e| e.src == i && e.midi).map(|e| e.dst).collect(),
        hw_input: info.hw_input,
        hw_output: info.hw_output,
    }
}

/// The schedule: slots in processing order (MIDI targets renumbered to slot positions), the
/// buffer pool, the hardware buses, the public facts about each node.
#[allow(clippy::too_many_arguments)]
fn assemble(
    desc: &GraphDesc,
    built: Vec<Built>,
    specs: Vec<&'static [ParamSpec]>,
    infos: &[NodeInfo],
    edges: &[Edge],
    order: &[usize],
    lat: &Latencies,
    sample_rate: f32,
) -> Schedule {
    let n = infos.len();
    let mut bufs = Buffers { next: 1 };
    let out_bufs: Vec<Vec<usize>> = infos
        .iter()
        .map(|inf| bufs.take(inf.outputs.iter().map(|p| p.channels).sum()))
        .collect();
    let (mut hw_in_channels, mut hw_out_channels) = (0, 0);
    let mut slots_by_desc: Vec<Option<Slot>> = Vec::with_capacity(n);
    for (i, b) in built.into_iter().enumerate() {
        if let Some(first) = infos[i].hw_input {
            hw_in_channels = hw_in_channels.max(first + out_bufs[i].len());
        }
        if let Some(first) = infos[i].hw_output {
            hw_out_channels = hw_out_channels.max(first + infos[i].inputs.iter().map(|p| p.channels).sum::<usize>());
        }
        slots_by_desc.push(Some(slot_for(i, b, edges, infos, lat, &out_bufs, &mut bufs)));
    }
    let mut slot_of = vec![0u32; n];
    for (pos, &i) in order.iter().enumerate() {
        slot_of[i] = pos as u32;
    }
    let mut slots: Vec<Slot> = order.iter().map(|&i| slots_by_desc[i].take().expect("each node once")).collect();
    for s in &mut slots {
        for t in &mut s.midi_targets {
            *t = slot_of[*t] as usize;
        }
    }
    let nodes = (0..n)
        .map(|i| CompiledNode {
            id: desc.nodes[i].id.clone(),
            kind: desc.nodes[i].kind.clone(),
            info: infos[i].clone(),
            input_latency_frames: lat.input[i],
            params: specs[i],
        })
        .collect();
    Schedule {
        gen: 0,
        slots,
        slot_of,
        pool: touched(bufs.next * STRIDE),
        zero_buf: 0,
        hw_out: touched(hw_out_channels * STRIDE),
        hw_out_channels,
        hw_in_channels,
        nodes,
        latency_frames: lat.hw_out,
        sample_rate,
        device_midi_nodes: (0..n).filter(|&i| infos[i].device_midi_in).map(|i| i as u32).collect(),
    }
}

/// A connection with `midi` at one end only: a port the other node lacks is named as such; two
/// real ports of different kinds are "a MIDI port joined to an audio port".
fn mixed_midi_error(ci: usize, c: &Connection, from: &NodeInfo, to: &NodeInfo, from_midi: bool) -> GraphError {
    let (audio_end, ports, has_midi, loc) = if from_midi {
        (&c.to, &to.inputs, to.midi_in, ErrorLoc::ConnectionTo(ci))
    } else {
        (&c.from, &from.outputs, from.midi_out, ErrorLoc::Connection(ci))
    };
    let message = match (audio_end.port.as_deref(), find_port(ports, audio_end.port.as_deref())) {
        (Some(p), Err(_)) if ports.is_empty() && has_midi => {
            format!("node `{}` has no port `{p}` (its only port on that side is `midi`)", audio_end.node)
        }
        (Some(_), Err(e)) => format!("node `{}` {e}", audio_end.node),
        _ => format!("`{}` -> `{}` joins a MIDI port to an audio port", c.from, c.to),
    };
    GraphError::new(loc, message)
}

fn find_port(ports: &[PortSpec], name: Option<&str>) -> Result<usize, String> {
    match name {
        None if !ports.is_empty() => Ok(0),
        None => Err("has no audio port there".to_string()),
        Some(p) => ports.iter().position(|x| x.name == p).ok_or_else(|| {
            if ports.is_empty() {
                format!("has no audio port `{p}` (it has none on that side)")
            } else {
                format!(
                    "has no port `{p}` (it has: {})",
                    ports.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(", ")
                )
            }
        }),
    }
}

/// A zeroed buffer whose pages are all touched here (control thread): a zeroed allocation may be
/// fresh pages the kernel maps only on first touch, which must not be the audio thread's.
fn touched(len: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; len];
    for k in (0..len).step_by(1024) {
        // SAFETY: `k < len`, so the pointer is to an initialised element of `v`; the volatile
        // write keeps the compiler from dropping a store of the value already there.
        unsafe { std::ptr::write_volatile(v.as_mut_ptr().add(k), 0.0) };
    }
    v
}

fn valid_id(id: &str) -> bool {
    let mut c = id.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic()) && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
}
