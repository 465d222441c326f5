//! Event sources of a run that are neither audio nor network (main thread, polled by the control
//! loop; the watcher and stdin reader have threads of their own that only forward): signals
//! (SIGINT/SIGTERM stop, SIGHUP reloads), the patch file's folder watched for changes, and
//! commands typed on standard input. Each turns what it heard into a [`Command`].

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use notify::Watcher;

pub use super::session::Command;

pub struct Sources {
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    fs_rx: mpsc::Receiver<()>,
    _watcher: Option<notify::RecommendedWatcher>,
    stdin_rx: mpsc::Receiver<String>,
}

impl Sources {
    /// Registers the signals, starts the watcher (unless `no_watch`) and the stdin reader.
    pub fn start(patch_path: &Path, no_watch: bool) -> anyhow::Result<Sources> {
        let term = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGINT, term.clone())?;
        signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone())?;
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;
        let (fs_tx, fs_rx) = mpsc::channel::<()>();
        let watcher = if no_watch { None } else { watch(patch_path, fs_tx) };
        Ok(Sources {
            term,
            hup,
            fs_rx,
            _watcher: watcher,
            stdin_rx: read_stdin()?,
        })
    }

    /// What arrived since the last turn.
    pub fn poll(&mut self) -> Vec<Command> {
        let mut out = Vec::new();
        if self.term.load(Ordering::Relaxed) {
            out.push(Command::Stop("signal"));
        }
        if self.fs_rx.try_iter().count() > 0 {
            out.push(Command::Reload(Duration::from_millis(150)));
        }
        if self.hup.swap(false, Ordering::Relaxed) {
            out.push(Command::Reload(Duration::ZERO));
        }
        for line in self.stdin_rx.try_iter() {
            match parse_line(&line) {
                Ok(Some(c)) => out.push(c),
                Ok(None) => {}
                Err(e) => tracing::warn!("{e}"),
            }
        }
        out
    }
}

/// One line typed on standard input.
pub fn parse_line(line: &str) -> Result<Option<Command>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    Ok(Some(match words.as_slice() {
        [] => return Ok(None),
        ["reload"] => Command::Reload(Duration::ZERO),
        ["load", p] => Command::Load(PathBuf::from(p)),
        ["set", node, param, value] => Command::Set {
            node: node.to_string(),
            param: param.to_string(),
            value: value.to_string(),
        },
        ["quit"] | ["exit"] => Command::Stop("quit"),
        ["status"] => Command::Status,
        _ => {
            return Err(format!(
                "unknown command `{line}` (commands: reload, load PATH, set NODE PARAM VALUE, status, quit)"
            ))
        }
    }))
}

/// Watches the patch's folder (editors replace files by renaming) for changes to the patch.
fn watch(patch_path: &Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let name = patch_path.file_name().map(|n| n.to_os_string());
    let w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            if matches!(ev.kind, notify::EventKind::Modify(_) | notify::EventKind::Create(_))
                && ev.paths.iter().any(|p| p.file_name().map(|n| n.to_os_string()) == name)
            {
                let _ = tx.send(());
            }
        }
    });
    let mut w = match w {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("no file watching: {e}");
            return None;
        }
    };
    let dir = patch_path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match w.watch(dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(w),
        Err(e) => {
            tracing::warn!("not watching {} for changes: {e}", dir.display());
            None
        }
    }
}

/// Lines of standard input, from a thread of their own.
fn read_stdin() -> anyhow::Result<mpsc::Receiver<String>> {
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::Builder::new().name("stagebox-stdin".into()).spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(l) = line else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    })?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_lines_become_commands() {
        assert_eq!(parse_line("  "), Ok(None));
        assert_eq!(parse_line("reload"), Ok(Some(Command::Reload(Duration::ZERO))));
        assert_eq!(parse_line("load a.toml"), Ok(Some(Command::Load("a.toml".into()))));
        assert_eq!(
            parse_line("set vol gain_db -6"),
            Ok(Some(Command::Set {
                node: "vol".into(),
                param: "gain_db".into(),
                value: "-6".into()
            }))
        );
        assert_eq!(parse_line("exit"), Ok(Some(Command::Stop("quit"))));
        assert!(parse_line("jump").unwrap_err().contains("unknown command `jump`"));
    }
}
