//! What each OSC address does (control thread): the `/stagebox/...` commands and the node
//! parameters, `/stagebox/node/<id>/<param>` (patterns, `/norm`, get with no argument).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rosc::address::{Matcher, OscAddress};
use rosc::{OscMessage, OscType};
use stagebox_engine::msg::AT_ONCE;
use stagebox_engine::param::ParamValue;
use stagebox_engine::EngineHandle;

use super::codec::{coerce, number, to_osc};
use super::{Action, OscServer, Peer, Status, Sub, Waiting};

impl OscServer {
    /// Dispatches one message by its address.
    pub(super) fn message(
        &mut self,
        from: Peer,
        m: OscMessage,
        at: u64,
        handle: &mut EngineHandle,
        status: &Status,
        actions: &mut Vec<Action>,
    ) {
        let addr = m.addr.as_str();
        let mut args = &m.args[..];
        if crate::access::GUARDED.contains(&addr) {
            let last = match args.last() {
                Some(OscType::String(s)) => Some(s.as_str()),
                _ => None,
            };
            if let Err(why) = self.settings.guard.allows(from.ip(), last) {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                return self.error(from, addr, why);
            }
            if self.settings.guard.token.is_some() {
                args = &args[..args.len() - 1];
            }
        }
        match addr {
            "/stagebox/status" => self.status_reply(self.reply_peer(from, args, 0), status),
            "/stagebox/sync" => self.sync(from, args, at, status),
            "/stagebox/notify" => self.notify(from, args),
            "/stagebox/patch/load" => self.patch_load(from, args, actions),
            "/stagebox/patch/reload" => self.wait_for(from, addr, Action::Reload, actions),
            "/stagebox/patch/list" => self.patch_list(self.reply_peer(from, args, 0)),
            "/stagebox/models/list" => self.models_list(self.reply_peer(from, args, 0)),
            "/stagebox/models/status" => self.models_status(self.reply_peer(from, args, 0), status),
            "/stagebox/models/load" => self.models_load(from, args, actions),
            "/stagebox/quit" => actions.push(Action::Quit),
            "/stagebox/learn" => self.learn(from, args, actions),
            "/stagebox/learn/save" => actions.push(Action::SaveLearned { peer: from }),
            "/stagebox/tempo" => match args.first().map(number) {
                None => actions.push(Action::Tempo { bpm: None, peer: from }),
                Some(Some(b)) if (20.0..=400.0).contains(&b) => actions.push(Action::Tempo { bpm: Some(b), peer: from }),
                Some(_) => self.error(from, addr, "expects a tempo in BPM, 20..400"),
            },
            _ if addr.starts_with("/stagebox/node/") => self.param_message(from, &m, at, handle, actions),
            _ => self.error(from, addr, "unknown address (see docs/osc.md, or the OSCQuery namespace)"),
        }
    }

    /// An asynchronous command: `action` for the run loop, answered when it tells `finished`.
    fn wait_for(&mut self, peer: Peer, addr: &str, action: Action, actions: &mut Vec<Action>) {
        self.waiting.push(Waiting {
            peer,
            command: addr.into(),
        });
        actions.push(action);
    }

    fn status_reply(&self, to: Peer, status: &Status) {
        let c = &self.counters;
        let count = |a: &std::sync::atomic::AtomicU64| OscType::Int(a.load(Ordering::Relaxed) as i32);
        self.send(
            to,
            "/stagebox/status.reply",
            vec![
                OscType::Float(status.cpu_load),
                OscType::Int(status.xruns as i32),
                OscType::Int(status.late_windows as i32),
                OscType::Int(status.sample_rate as i32),
                OscType::Int(status.block_size as i32),
                OscType::Float(status.uptime_s as f32),
                count(&c.received),
                count(&c.dropped),
                count(&c.errors),
                OscType::Int(status.late_callbacks as i32),
                OscType::Int(status.notes as i32),
                OscType::Int(status.rt_allocations as i32),
                OscType::String(status.patch.clone()),
                OscType::Int(status.midi_dropped as i32),
            ],
        );
    }

    /// Answered once the audio thread has run a whole block past what is queued now (events at
    /// later sample times wait for their time).
    fn sync(&mut self, from: Peer, args: &[OscType], at: u64, status: &Status) {
        let id = args.first().cloned().unwrap_or(OscType::Int(0));
        let to = self.reply_peer(from, args, 1);
        let target = if at == AT_ONCE { status.frames } else { at } + 2 * status.block_size.max(1) as u64;
        self.syncs.push((to, id, target));
    }

    fn notify(&mut self, from: Peer, args: &[OscType]) {
        let addr = "/stagebox/notify";
        let to = self.reply_peer(from, args, 1);
        match args.first().and_then(number).map(|v| v != 0.0) {
            Some(true) => {
                match self.subs.iter_mut().find(|s| s.peer == to) {
                    Some(s) => s.last_seen = Instant::now(),
                    None => self.subs.push(Sub {
                        peer: to,
                        last_seen: Instant::now(),
                    }),
                }
                self.seen.insert(to, Instant::now());
                self.send(to, "/stagebox/done", vec![OscType::String(addr.into())]);
            }
            Some(false) => {
                self.subs.retain(|s| s.peer != to);
                self.send(to, "/stagebox/done", vec![OscType::String(addr.into())]);
            }
            None => self.error(from, addr, "expects 1 (subscribe) or 0 (unsubscribe)"),
        }
    }

    fn patch_load(&mut self, from: Peer, args: &[OscType], actions: &mut Vec<Action>) {
        let addr = "/stagebox/patch/load";
        let Some(OscType::String(p)) = args.first() else {
            return self.error(from, addr, "expects the patch's path (a string)");
        };
        match self.settings.patch_dirs.resolve(&self.patch_path, p) {
            Ok(path) => self.wait_for(from, addr, Action::Load(path), actions),
            Err(e) => self.error(from, addr, e),
        }
    }

    /// The patches beside the running one.
    fn patch_list(&self, to: Peer) {
        let dir = self
            .patch_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .map(|p| p.display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        self.send(to, "/stagebox/patch/list.reply", names.into_iter().map(OscType::String).collect());
    }

    /// The model folders (those with a manifest) in `STAGEBOX_MODELS` when set, else in the
    /// first project root that has `models/`.
    fn models_list(&self, to: Peer) {
        let dirs: Vec<std::path::PathBuf> = match std::env::var_os("STAGEBOX_MODELS") {
            Some(d) => vec![d.into()],
            None => stagebox_models::project_roots().into_iter().map(|r| r.join("models")).collect(),
        };
        let mut names = Vec::new();
        for dir in dirs {
            if let Ok(r) = std::fs::read_dir(&dir) {
                for e in r.flatten() {
                    if e.path().join("manifest.toml").exists() {
                        names.push(e.file_name().to_string_lossy().to_string());
                    }
                }
                break;
            }
        }
        names.sort();
        self.send(to, "/stagebox/models/list.reply", names.into_iter().map(OscType::String).collect());
    }

    fn models_status(&self, to: Peer, status: &Status) {
        let mut args = Vec::new();
        for (node, c) in &status.models {
            args.push(OscType::String(node.clone()));
            for v in [c.windows, c.late, c.dropped, c.failed] {
                args.push(OscType::Int(v as i32));
            }
        }
        self.send(to, "/stagebox/models/status.reply", args);
    }

    fn models_load(&mut self, from: Peer, args: &[OscType], actions: &mut Vec<Action>) {
        let addr = "/stagebox/models/load";
        let Some(OscType::String(name)) = args.first() else {
            return self.error(from, addr, "expects the model's name (a string)");
        };
        match stagebox_models::find_model(name).and_then(|m| m.verify().map(|_| ())) {
            Ok(()) => self.wait_for(from, addr, Action::Reload, actions),
            Err(e) => self.error(from, addr, e.to_string()),
        }
    }

    fn learn(&mut self, from: Peer, args: &[OscType], actions: &mut Vec<Action>) {
        let target = match args.first() {
            Some(OscType::String(a)) => a
                .trim_start_matches("/stagebox/node/")
                .split_once('/')
                .map(|(n, p)| (n.to_string(), p.to_string())),
            _ => None,
        };
        match target {
            Some((node, param)) if self.params.iter().any(|p| p.node == node && p.spec.name == param) => {
                actions.push(Action::Learn { node, param, peer: from })
            }
            _ => self.error(
                from,
                "/stagebox/learn",
                "expects a parameter's address, /stagebox/node/<id>/<param>",
            ),
        }
    }

    /// `/stagebox/node/<id>/<param>` (a pattern matches several; `/norm` takes 0..1): sets
    /// each parameter, or with no argument answers its value.
    pub(super) fn param_message(&mut self, from: Peer, m: &OscMessage, at: u64, handle: &mut EngineHandle, actions: &mut Vec<Action>) {
        let (pattern, norm) = match m.addr.strip_suffix("/norm") {
            Some(p) => (p, true),
            None => (m.addr.as_str(), false),
        };
        let targets = match self.param_targets(pattern) {
            Ok(t) if t.is_empty() => return self.error(from, &m.addr, "no such node parameter"),
            Ok(t) => t,
            Err(e) => return self.error(from, &m.addr, e),
        };
        let Some(arg) = m.args.first() else {
            // No value: the current one comes back.
            for i in targets {
                let p = &self.params[i];
                let v = self.values.get(&p.address).cloned().unwrap_or_else(|| p.spec.default_value());
                self.send(from, &p.address, vec![to_osc(&v)]);
            }
            return;
        };
        for i in targets {
            match coerce(&self.params[i].spec, arg, norm) {
                Ok((value, note)) => {
                    let rebuilds = !self.params[i].spec.is_runtime();
                    if let Err(e) = self.set_param(i, value, at, handle, actions) {
                        self.error(from, &m.addr, e);
                    } else if let Some(n) = note {
                        self.error(from, &m.addr, n);
                    } else if rebuilds {
                        // Answered when the rebuilt patch runs, or with why it could not.
                        self.waiting.push(Waiting {
                            peer: from,
                            command: m.addr.clone(),
                        });
                    }
                }
                Err(e) => self.error(from, &m.addr, e),
            }
        }
    }

    /// Indices of the parameters an address or address pattern names.
    fn param_targets(&self, pattern: &str) -> Result<Vec<usize>, String> {
        if !pattern.contains(['*', '?', '[', '{']) {
            return Ok(self.params.iter().position(|p| p.address == pattern).into_iter().collect());
        }
        let matcher = Matcher::new(pattern).map_err(|e| format!("bad address pattern: {e:?}"))?;
        Ok((0..self.params.len())
            .filter(|&i| OscAddress::new(self.params[i].address.clone()).is_ok_and(|a| matcher.match_address(&a)))
            .collect())
    }

    /// Sets parameter `i`: a runtime one goes to the engine (at once, coalesced per batch, or
    /// at sample time `at`), a build-time one asks the run loop to rebuild.
    fn set_param(
        &mut self,
        i: usize,
        value: ParamValue,
        at: u64,
        handle: &mut EngineHandle,
        actions: &mut Vec<Action>,
    ) -> Result<(), String> {
        let p = &self.params[i];
        if p.spec.is_runtime() {
            let f = value.as_f64().unwrap_or(0.0) as f32;
            if at == AT_ONCE {
                // Sets of the same parameter in one batch coalesce into the last: a flood
                // reaches the audio thread as one event per parameter per turn.
                match self.staged.iter_mut().find(|(k, _)| *k == i) {
                    Some(s) => s.1 = f,
                    None => self.staged.push((i, f)),
                }
            } else {
                handle.set_param(&p.node, p.spec.name, f, at)?;
            }
        } else {
            actions.push(Action::Rebuild {
                node: p.node.clone(),
                param: p.spec.name.to_string(),
                value: value.clone(),
            });
        }
        let address = p.address.clone();
        if self.changes.len() < 65_536 {
            self.changes.push(address.clone());
        }
        self.values.insert(address, value);
        Ok(())
    }
}
