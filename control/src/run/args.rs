//! `stagebox run`'s command line, and the OSC settings it resolves (command line over the
//! patch's `[osc]` table over defaults). Main thread (the control thread), at start.

use std::path::PathBuf;
use std::time::Duration;

use stagebox_patches::Patch;

pub use crate::audio_io::BackendArg;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Patch to run.
    #[arg(long, default_value = "patches/default.toml")]
    pub patch: PathBuf,
    /// Audio backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Device name (or a unique part of it); see `stagebox devices`.
    #[arg(long)]
    pub device: Option<String>,
    /// The JACK client's name (its ports are NAME:in_1, NAME:out_1, NAME:notes, ...).
    #[arg(long, default_value = "stagebox")]
    pub client_name: String,
    /// Buffer size in frames (ALSA; JACK uses the server's).
    #[arg(long)]
    pub buffer: Option<u32>,
    /// Sample rate (ALSA; JACK uses the server's).
    #[arg(long)]
    pub sample_rate: Option<u32>,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Write run statistics (callbacks, xruns, callback times, ...) to this JSON file on exit.
    #[arg(long)]
    pub stats_json: Option<PathBuf>,
    /// Print meter levels once a second (the default now; kept for old scripts).
    #[arg(long)]
    pub meters: bool,
    /// No status line once a second (levels, the notes played by name, late callbacks, xruns).
    #[arg(long)]
    pub quiet: bool,
    /// Do not reload the patch when its file changes.
    #[arg(long)]
    pub no_watch: bool,
    /// Name of the MIDI output port notes leave by (JACK: stagebox:NAME), when the patch makes MIDI.
    #[arg(long, default_value = "notes")]
    pub midi_port: String,
    /// Make no MIDI output port.
    #[arg(long)]
    pub no_midi_out: bool,
    /// Send notes and bends as OSC (/stagebox/note, /stagebox/bend) to HOST:PORT.
    #[arg(long)]
    pub osc_out: Option<String>,
    /// Append every MIDI event the graph emits to this file, one JSON object a line.
    #[arg(long)]
    pub events_out: Option<PathBuf>,
    /// OSC control port, UDP and TCP (SLIP); 0 = any free port (the log says which). Also
    /// `[osc] port` in the patch; default 57130.
    #[arg(long)]
    pub osc_port: Option<u16>,
    /// Address the OSC server binds (default 127.0.0.1: this machine only).
    #[arg(long)]
    pub osc_bind: Option<std::net::IpAddr>,
    /// Client networks allowed when bound wider, e.g. 192.168.1.0/24,10.0.0.7/32.
    #[arg(long, value_delimiter = ',')]
    pub osc_allow: Vec<ipnet::IpNet>,
    /// No OSC control server.
    #[arg(long)]
    pub no_osc: bool,
    /// A secret that guarded commands (quit, patch/load, patch/reload, learn/save, models/load)
    /// must carry as their last argument. Without one they are accepted from this machine only.
    /// Also `[osc] control_token`.
    #[arg(long, env = "STAGEBOX_CONTROL_TOKEN", hide_env_values = true)]
    pub control_token: Option<String>,
    /// More folders OSC and program changes may load patches from (besides the running patch's).
    #[arg(long)]
    pub patch_dir: Vec<PathBuf>,
    /// Where recorders write their takes (their `path` is relative to it); default
    /// $XDG_DATA_HOME/stagebox/takes, else ~/.local/share/stagebox/takes.
    #[arg(long)]
    pub takes_dir: Option<PathBuf>,
    /// Web origins (http://host:port) or host names whose pages may read OSCQuery, besides
    /// this machine's and the bind address.
    #[arg(long, value_delimiter = ',')]
    pub oscquery_allow_origin: Vec<String>,
    /// Seconds a TCP OSC connection may stay silent before it is closed.
    #[arg(long, default_value_t = 300.0)]
    pub osc_tcp_idle_s: f64,
    /// OSCQuery HTTP/WebSocket port; 0 = any free port. Also `[osc] oscquery_port`; default
    /// the OSC port + 1.
    #[arg(long)]
    pub oscquery_port: Option<u16>,
    /// No OSCQuery server.
    #[arg(long)]
    pub no_oscquery: bool,
    /// Advertise OSCQuery and OSC over mDNS (`_oscjson._tcp`, `_osc._udp`). Off by default:
    /// mDNS multicasts to the local network.
    #[arg(long)]
    pub oscquery_mdns: bool,
    /// No MIDI input port (controllers, program change, clock; `[midi]` in the patch).
    #[arg(long)]
    pub no_midi_in: bool,
    /// While running on a live device, keep every CPU able to wake within this many µs (PM QoS
    /// on /dev/cpu_dma_latency: no deep idle states, fewer late audio callbacks; needs root or
    /// write access to that file).
    #[arg(long, default_value_t = 0)]
    pub cpu_wake_us: u32,
    /// Do not lock the process's memory in RAM while running live (by default `mlockall`, where
    /// allowed, so the audio thread never takes a page fault).
    #[arg(long)]
    pub no_mlock: bool,
    /// Let the CPUs sleep as deeply as they like (saves power; idle CPUs may wake too late for
    /// short audio periods).
    #[arg(long)]
    pub no_cpu_wake_hold: bool,
}

/// Checks a patch's `[osc]` table (control thread; `check` and `run`).
pub fn check_osc_table(patch: &Patch) -> Result<(), String> {
    let Some(v) = &patch.osc else { return Ok(()) };
    let t = v.as_table().ok_or("[osc] is not a table")?;
    for (k, v) in t {
        match k.as_str() {
            "port" | "oscquery_port" => match v.as_integer() {
                Some(p) if (0..=65535).contains(&p) => {}
                _ => return Err(format!("[osc] {k} = {v} is not a port number (0..65535)")),
            },
            "bind" => {
                v.as_str()
                    .and_then(|b| b.parse::<std::net::IpAddr>().ok())
                    .ok_or(format!("[osc] bind = {v} is not an IP address"))?;
            }
            "allow" => {
                for e in v.as_array().ok_or("[osc] allow is not a list")? {
                    let s = e.as_str().unwrap_or_default();
                    if s.parse::<ipnet::IpNet>().is_err() && s.parse::<std::net::IpAddr>().is_err() {
                        return Err(format!("[osc] allow: {e} is not an address or network (192.168.1.0/24)"));
                    }
                }
            }
            "notify_timeout_s" => {
                if v.as_float().or_else(|| v.as_integer().map(|i| i as f64)).is_none_or(|x| x <= 0.0) {
                    return Err(format!("[osc] notify_timeout_s = {v} is not a positive number"));
                }
            }
            "enabled" => {
                v.as_bool().ok_or(format!("[osc] enabled = {v} is not true or false"))?;
            }
            "control_token" => {
                if v.as_str().is_none_or(|t| t.len() < 8) {
                    return Err("[osc] control_token is not a string of at least 8 characters".into());
                }
            }
            _ => {
                return Err(format!(
                    "[osc] has no setting `{k}` (port, oscquery_port, bind, allow, notify_timeout_s, enabled, control_token)"
                ))
            }
        }
    }
    Ok(())
}

/// The OSC server's settings: the command line over the patch's `[osc]` table over defaults;
/// None when turned off.
pub(super) fn osc_settings(a: &RunArgs, patch: &Patch) -> anyhow::Result<Option<crate::osc::OscSettings>> {
    if a.no_osc {
        return Ok(None);
    }
    check_osc_table(patch).map_err(|e| anyhow::anyhow!("{}: {e}", patch.path.display()))?;
    let t = patch.osc.as_ref().and_then(|v| v.as_table());
    let get = |k: &str| t.and_then(|t| t.get(k));
    if get("enabled").and_then(|v| v.as_bool()) == Some(false) && a.osc_port.is_none() {
        return Ok(None);
    }
    let port = match (a.osc_port, get("port").and_then(|v| v.as_integer())) {
        (Some(p), _) => p,
        (None, Some(p)) => u16::try_from(p).map_err(|_| anyhow::anyhow!("[osc] port = {p} is not a port number"))?,
        (None, None) => 57130,
    };
    let bind = match (a.osc_bind, get("bind").and_then(|v| v.as_str())) {
        (Some(b), _) => b,
        (None, Some(b)) => b.parse().map_err(|e| anyhow::anyhow!("[osc] bind = {b:?}: {e}"))?,
        (None, None) => std::net::IpAddr::from([127, 0, 0, 1]),
    };
    let mut allow = a.osc_allow.clone();
    if allow.is_empty() {
        for v in get("allow").and_then(|v| v.as_array()).into_iter().flatten() {
            let s = v.as_str().unwrap_or_default();
            let net: ipnet::IpNet = s
                .parse()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|e| anyhow::anyhow!("[osc] allow: {s:?}: {e}"))?;
            allow.push(net);
        }
    }
    let timeout = get("notify_timeout_s")
        .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
        .unwrap_or(60.0);
    let token = a
        .control_token
        .clone()
        .or_else(|| get("control_token").and_then(|v| v.as_str()).map(str::to_string));
    if !bind.is_loopback() && token.is_none() {
        tracing::warn!(
            "OSC listens beyond this machine ({bind}) without --control-token: quit, patch/load, reload, learn/save and models/load are refused from other machines"
        );
    }
    Ok(Some(crate::osc::OscSettings {
        bind,
        port,
        allow,
        notify_timeout: Duration::from_secs_f64(timeout.max(1.0)),
        patch_dirs: crate::access::PatchDirs {
            extra: a.patch_dir.clone(),
        },
        guard: crate::access::Guard { token },
        tcp_idle: Duration::from_secs_f64(a.osc_tcp_idle_s.max(0.1)),
        max_tcp: 64,
    }))
}

/// Where recorders write: `--takes-dir`, else the user's data folder.
pub fn takes_dir(a: &RunArgs) -> PathBuf {
    if let Some(d) = &a.takes_dir {
        return d.clone();
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    data.join("stagebox/takes")
}
