//! Helpers for the integration tests: the real `stagebox` binary (built once per test run),
//! temporary folders, WAV helpers, and a named dummy JACK server started and stopped by tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Path of the `stagebox` binary, built (or brought up to date) on first use.
pub fn bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("STAGEBOX_BIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-q", "-p", "stagebox"])
            .current_dir(root())
            .status()
            .expect("running cargo build");
        assert!(st.success(), "building stagebox failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root().join("target"));
        target.join("debug").join("stagebox")
    })
    .clone()
}

/// A `stagebox` command run from the workspace root.
pub fn stagebox() -> Command {
    let mut c = Command::new(bin());
    c.current_dir(root());
    c
}

/// A fresh temporary folder for one test.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stagebox-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes interleaved i16 samples as a WAV.
pub fn write_wav_i16(path: &Path, sr: u32, channels: u16, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: sr,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// A deterministic stereo test clip: two sines and noise, in i16.
pub fn test_clip(frames: usize, sr: u32) -> Vec<i16> {
    let mut seed = 99u32;
    let mut v = Vec::with_capacity(frames * 2);
    for t in 0..frames {
        for c in 0..2 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let x = t as f64 / sr as f64;
            let y = 0.4 * (2.0 * std::f64::consts::PI * (261.63 * (c + 1) as f64) * x).sin() + 0.05 * (seed as f64 / u32::MAX as f64 - 0.5);
            v.push((y * 32767.0) as i16);
        }
    }
    v
}

/// A dummy-driver JACK server with its own name, stopped on drop.
pub struct JackServer {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl JackServer {
    /// Starts `jackd -n NAME -d dummy -r RATE -p PERIOD` and waits for its socket.
    pub fn start(rate: u32, period: u32) -> JackServer {
        clean_stale_jack_state();
        Self::start_named(&format!("stagebox-test-{}", std::process::id()), rate, period)
    }

    /// As `start`, with a given server name, and without clearing leftovers of dead servers
    /// (a client still running keeps its view of them; see `clean_stale_jack_state`).
    pub fn start_named(name: &str, rate: u32, period: u32) -> JackServer {
        let name = name.to_string();
        let log = std::env::temp_dir().join(format!("{name}.jackd.log"));
        let child = Command::new("jackd")
            .args(["-n", &name, "-d", "dummy", "-r", &rate.to_string(), "-p", &period.to_string()])
            .env("JACK_NO_AUDIO_RESERVATION", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("jackd must be installed (Debian package jackd2; the README's test command installs it)");
        let uid = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap_or(0);
        let sock = PathBuf::from(format!("/dev/shm/jack_{name}_{uid}_0"));
        let t0 = Instant::now();
        while !sock.exists() {
            assert!(t0.elapsed() < Duration::from_secs(10), "jackd did not start; see {}", log.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        JackServer { name, child, log }
    }

    /// What the server printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl JackServer {
    /// Stops the server (SIGTERM, then SIGKILL after 3 s) and waits for it.
    pub fn kill(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for JackServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// JACK allows a few servers at a time and counts those killed without cleaning up; when no
/// jackd runs on this machine, their leftovers in /dev/shm are removed.
fn clean_stale_jack_state() {
    let running = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten().any(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .map(|c| c.trim() == "jackd")
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false);
    if running {
        return;
    }
    if let Ok(d) = std::fs::read_dir("/dev/shm") {
        for e in d.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.starts_with("jack") {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
}

/// Reads a stats JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A monophonic line of flute-like tones (soft attack, vibrato, breath noise), mono f64.
pub fn flute_line(sr: u32, notes: &[(f64, f64, u8)], secs: f64) -> Vec<f64> {
    let n = (secs * sr as f64) as usize;
    let mut x = vec![0.0f64; n];
    let mut seed = 7u32;
    for &(on, off, k) in notes {
        let f = 440.0 * 2f64.powf((k as f64 - 69.0) / 12.0);
        let mut ph = 0.0;
        for t in (on * sr as f64) as usize..((off * sr as f64) as usize).min(n) {
            let age = t as f64 / sr as f64 - on;
            let env = (age / 0.03).min(1.0) * ((off - on - age) / 0.02).clamp(0.0, 1.0);
            ph += f * (1.0 + 0.004 * (2.0 * std::f64::consts::PI * 5.0 * age).sin()) / sr as f64;
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let breath = (seed as f64 / u32::MAX as f64 - 0.5) * 0.03;
            x[t] += env * (0.5 * (2.0 * std::f64::consts::PI * ph).sin() + 0.1 * (4.0 * std::f64::consts::PI * ph).sin() + breath);
        }
    }
    x
}

/// Note-ons (seconds, key) in the first track of a Standard MIDI File written at 120 BPM (as
/// `stagebox render --midi-out` writes them).
pub fn smf_note_ons(path: &Path) -> Vec<(f64, u8)> {
    let bytes = std::fs::read(path).unwrap();
    let smf = midly::Smf::parse(&bytes).unwrap();
    let midly::Timing::Metrical(tpb) = smf.header.timing else {
        panic!("metrical timing expected")
    };
    let mut t = 0u64;
    let mut ons = Vec::new();
    for e in &smf.tracks[0] {
        t += e.delta.as_int() as u64;
        if let midly::TrackEventKind::Midi {
            message: midly::MidiMessage::NoteOn { key, vel },
            ..
        } = e.kind
        {
            if vel.as_int() > 0 {
                ons.push((t as f64 / (tpb.as_int() as f64 * 2.0), key.as_int()));
            }
        }
    }
    ons
}
