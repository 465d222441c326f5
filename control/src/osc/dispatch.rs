//! The control thread's side of OSC (from the run loop): the queue drained each turn, bundles
//! and their time tags, `/stagebox/sync` answers, subscriptions, the control side's view of
//! every parameter's value.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use rosc::{OscBundle, OscPacket, OscTime, OscType};
use stagebox_engine::msg::AT_ONCE;
use stagebox_engine::param::{ParamKind, ParamValue};
use stagebox_engine::EngineHandle;

use super::codec::{address_space, number};
use super::{Action, Incoming, OscServer, ParamAddr, Peer, Status, MAX_DEPTH, MAX_PACKET, QUEUE};

impl OscServer {
    /// Refreshes the address space and the control side's values after a swap.
    pub(super) fn refresh(&mut self, handle: &EngineHandle, patch: &stagebox_patches::Patch) {
        if self.gen == handle.generation() {
            return;
        }
        self.gen = handle.generation();
        self.params = address_space(handle);
        self.values.clear();
        for p in &self.params {
            let given = patch
                .graph
                .nodes
                .iter()
                .find(|n| n.id == p.node)
                .and_then(|n| n.params.get(p.spec.name))
                .cloned();
            self.values
                .insert(p.address.clone(), given.unwrap_or_else(|| p.spec.default_value()));
        }
        self.patch_path = patch.path.clone();
        self.space_changed = true;
    }

    /// What changed since the last call: whether the address space did, and the addresses
    /// whose values did (for OSCQuery).
    pub fn take_changes(&mut self) -> (bool, Vec<String>) {
        let mut c = std::mem::take(&mut self.changes);
        c.sort();
        c.dedup();
        (std::mem::replace(&mut self.space_changed, false), c)
    }

    /// The current value of each parameter address (what OSCQuery reports).
    pub fn values(&self) -> &HashMap<String, ParamValue> {
        &self.values
    }

    pub fn params(&self) -> &[ParamAddr] {
        &self.params
    }

    /// Dispatches what has arrived (control thread). Returns what the run loop must do.
    /// `status` is called (once) only when a packet or a waiting sync needs it: the loop turns
    /// every 1-3 ms and most turns have nothing to do.
    pub fn poll(&mut self, handle: &mut EngineHandle, patch: &stagebox_patches::Patch, status: &dyn Fn() -> Status) -> Vec<Action> {
        self.refresh(handle, patch);
        let mut actions = Vec::new();
        let mut st: Option<Status> = None;
        // At most one queue's worth per call, so the loop keeps its pace under a flood.
        for _ in 0..QUEUE {
            let Some(item) = self.early.take().or_else(|| self.rx.try_recv().ok()) else {
                break;
            };
            match item {
                Incoming::Malformed { from, why } => {
                    self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    self.seen.insert(from, Instant::now());
                    self.error(from, "", format!("malformed packet: {why}"));
                }
                Incoming::Packet { from, packet, arrived } => {
                    // Arrival (decoded on the socket thread) to dispatch, in microseconds.
                    if self.dispatch_us.len() < 1 << 20 {
                        self.dispatch_us.push(arrived.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    self.seen.insert(from, Instant::now());
                    let status = st.get_or_insert_with(status);
                    self.packet(from, packet, 0, None, handle, status, &mut actions);
                }
            }
        }
        self.flush(handle);
        // Syncs whose frame the audio thread has passed.
        let busy = !self.waiting.is_empty();
        let frames = if self.syncs.is_empty() {
            0
        } else {
            st.get_or_insert_with(status).frames
        };
        let mut k = 0;
        while k < self.syncs.len() {
            if !busy && frames >= self.syncs[k].2 {
                let (peer, id, _) = self.syncs.remove(k);
                self.send(peer, "/stagebox/synced", vec![id]);
            } else {
                k += 1;
            }
        }
        // Subscribers gone silent.
        let timeout = self.settings.notify_timeout;
        let seen = &self.seen;
        self.subs
            .retain(|s| seen.get(&s.peer).map_or(s.last_seen, |t| (*t).max(s.last_seen)).elapsed() < timeout);
        if self.seen.len() > 4096 {
            self.seen.retain(|_, t| t.elapsed() < timeout);
        }
        actions
    }

    /// Sends the batch's coalesced parameter sets to the engine (control thread).
    pub(super) fn flush(&mut self, handle: &mut EngineHandle) {
        for (i, v) in std::mem::take(&mut self.staged) {
            let p = &self.params[i];
            if let Err(e) = handle.set_param(&p.node, p.spec.name, v, AT_ONCE) {
                tracing::warn!("OSC {}: {e}", p.address);
            }
        }
    }

    /// Sleeps until a packet arrives or `timeout` passes (control thread: the run loop's pause,
    /// so a message is dispatched as it arrives rather than at the loop's next turn).
    pub fn wait(&mut self, timeout: Duration) {
        if self.early.is_none() {
            self.early = self.rx.recv_timeout(timeout).ok();
        }
    }

    /// Decodes and dispatches one packet as if it had arrived from `from` (the socket threads'
    /// decoding, then `poll`'s dispatch): for tests and fuzzing.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn dispatch_bytes(
        &mut self,
        from: Peer,
        bytes: &[u8],
        handle: &mut EngineHandle,
        patch: &stagebox_patches::Patch,
        status: &Status,
    ) -> Vec<Action> {
        self.refresh(handle, patch);
        let mut actions = Vec::new();
        if bytes.len() > MAX_PACKET {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            self.error(from, "", "packet over the size limit");
            return actions;
        }
        match super::codec::decode_whole(bytes) {
            Ok(packet) => {
                self.packet(from, packet, 0, None, handle, status, &mut actions);
                self.flush(handle);
            }
            Err(why) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                self.error(from, "", format!("malformed packet: {why}"));
            }
        }
        actions
    }

    /// A parameter changed elsewhere (MIDI): keep the control side's value (and OSCQuery) in step.
    pub fn note_set(&mut self, node: &str, param: &str, v: f64) {
        let addr = format!("/stagebox/node/{node}/{param}");
        if let Some(p) = self.params.iter().find(|p| p.address == addr) {
            let value = match p.spec.kind {
                ParamKind::Float { .. } => ParamValue::Float(v),
                ParamKind::Bool { .. } => ParamValue::Bool(v >= 0.5),
                _ => ParamValue::Int(v.round() as i64),
            };
            self.values.insert(addr.clone(), value);
            self.changes.push(addr);
        }
    }

    /// The run loop tells how an asynchronous command ended.
    pub fn finished(&mut self, result: &Result<(), String>) {
        for w in std::mem::take(&mut self.waiting) {
            match result {
                Ok(()) => self.send(w.peer, "/stagebox/done", vec![OscType::String(w.command)]),
                Err(e) => self.error(w.peer, &w.command, e.clone()),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn packet(
        &mut self,
        from: Peer,
        packet: OscPacket,
        depth: usize,
        at: Option<u64>,
        handle: &mut EngineHandle,
        status: &Status,
        actions: &mut Vec<Action>,
    ) {
        match packet {
            OscPacket::Message(m) => self.message(from, m, at.unwrap_or(AT_ONCE), handle, status, actions),
            OscPacket::Bundle(b) => {
                if depth >= MAX_DEPTH {
                    self.error(from, "#bundle", format!("bundles nested deeper than {MAX_DEPTH} are refused"));
                    return;
                }
                let at = at.or_else(|| self.bundle_time(&b, status));
                for p in b.content {
                    self.packet(from, p, depth + 1, at, handle, status, actions);
                }
            }
        }
    }

    /// The engine sample time a bundle's time tag names (None: at once; a time tag already
    /// past is applied at once and counted).
    pub(super) fn bundle_time(&self, b: &OscBundle, status: &Status) -> Option<u64> {
        let tt = b.timetag;
        if tt.seconds == 0 && tt.fractional <= 1 {
            return None;
        }
        let now = OscTime::try_from(SystemTime::now()).ok()?;
        let secs = |t: OscTime| t.seconds as f64 + t.fractional as f64 / 4_294_967_296.0;
        let ahead = secs(tt) - secs(now);
        if ahead <= 0.0 {
            self.counters.late_bundles.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if ahead > 3600.0 {
            return None;
        }
        // The engine's clock now is about its frame count plus one block in flight.
        Some(status.frames + status.block_size as u64 + (ahead * status.sample_rate as f64) as u64)
    }

    pub(super) fn reply_peer(&self, from: Peer, args: &[OscType], port_arg: usize) -> Peer {
        // Pure Data and Max send numbers as floats: a whole one is a port too.
        match (from, args.get(port_arg).and_then(number)) {
            (Peer::Udp(a), Some(p)) if p.fract() == 0.0 && (1.0..=65535.0).contains(&p) => Peer::Udp(SocketAddr::new(a.ip(), p as u16)),
            _ => from,
        }
    }
}
