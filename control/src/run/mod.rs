//! `stagebox run` (main thread = the control thread). The pieces, one file each:
//! - `args`: the command line and the OSC settings it resolves;
//! - `session`: the [`session::Session`] (engine handle, patch, device, outputs) and its
//!   control loop, a short dispatcher of [`session::Command`]s;
//! - `device`: opening the audio device, its loss and return;
//! - `results`: what the audio thread reports (timings, meters, notes, inference counters);
//! - `surfaces`: OSC, OSCQuery, MIDI in and clock out;
//! - `sources`: signals, the patch file watcher, commands on standard input;
//! - `stats_doc`: the `--stats-json` document.
//!
//! The audio thread's side is in the engine crate (`Engine::process`, the backends).

mod args;
mod device;
pub(crate) mod results;
mod session;
mod sources;
mod stats_doc;
mod surfaces;

use std::process::ExitCode;

use anyhow::Context;

pub use args::{check_osc_table, RunArgs};

pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let Some(mut session) = session::Session::start(&a)? else {
        return Ok(ExitCode::FAILURE);
    };
    let mut sources = sources::Sources::start(&a.patch, a.no_watch)?;
    session.run(&mut sources)?;
    drop(sources);
    let elapsed = session.finish();
    if let Some(path) = &a.stats_json {
        let doc = stats_doc::build(&session, elapsed);
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
