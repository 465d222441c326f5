//! Live backend through cpal: ALSA (JACK has its own native client, `backend::jack`). `LiveDevice::open`
//! (control thread) picks host, device and configuration; `start` moves the engine into the
//! output callback (audio thread). The input stream's callback (its own audio thread) only
//! pushes samples into a ring that the output callback drains (cpal has no duplex ALSA
//! stream). Callback durations go to the control side through a timing ring.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use rtrb::{Consumer, RingBuffer};

use crate::msg::TIMING_CAPACITY;
use crate::processor::Engine;
use crate::stats::RtStats;

/// Which audio system to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostChoice {
    /// JACK when a server is running (and the feature is built), else ALSA.
    Auto,
    Alsa,
    Jack,
}

#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub host: HostChoice,
    pub device: Option<String>,
    pub buffer_frames: Option<u32>,
    pub sample_rate: Option<u32>,
    pub in_channels: usize,
    pub out_channels: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("no audio device: {0}")]
    NoDevice(String),
    #[error("{0}")]
    Backend(String),
}

/// A chosen device and configuration, not yet running.
pub struct LiveDevice {
    host_name: String,
    out_device: cpal::Device,
    in_device: Option<cpal::Device>,
    config: cpal::StreamConfig,
    in_config: Option<cpal::StreamConfig>,
}

/// Runs `f` with standard error sent to /dev/null (control thread): libasound prints its own
/// search for a card ("ALSA lib confmisc.c: cannot find card '0'", a dozen lines) straight to
/// stderr, which says nothing a user can act on; Stagebox says what it found instead.
pub fn quiet_stderr<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: dup/open/dup2/close on file descriptors only; fd 2 is restored before returning,
    // and a failure at any step leaves stderr as it was.
    unsafe {
        let saved = libc::dup(2);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if saved < 0 || null < 0 || libc::dup2(null, 2) < 0 {
            if null >= 0 {
                libc::close(null);
            }
            if saved >= 0 {
                libc::close(saved);
            }
            return f();
        }
        libc::close(null);
        let r = f();
        libc::dup2(saved, 2);
        libc::close(saved);
        r
    }
}

/// Whether this machine has any ALSA sound card (a PCM device node).
pub fn alsa_card_present() -> bool {
    std::fs::read_dir("/dev/snd")
        .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("pcm")))
        .unwrap_or(false)
}

/// Hosts this build can use, with their devices (control thread).
pub fn list() -> Vec<(String, Result<Vec<(String, String)>, String>)> {
    quiet_stderr(list_loud)
}

fn list_loud() -> Vec<(String, Result<Vec<(String, String)>, String>)> {
    let mut out = Vec::new();
    for id in cpal::available_hosts() {
        let entry = match cpal::host_from_id(id) {
            Err(e) => Err(e.to_string()),
            Ok(host) => match host.devices() {
                Err(e) => Err(e.to_string()),
                Ok(devs) => Ok(devs
                    .map(|d| {
                        let name = d.name().unwrap_or_else(|_| "?".into());
                        let mut what = Vec::new();
                        if let Ok(c) = d.default_input_config() {
                            what.push(format!("in {} ch {} Hz", c.channels(), c.sample_rate().0));
                        }
                        if let Ok(c) = d.default_output_config() {
                            what.push(format!("out {} ch {} Hz", c.channels(), c.sample_rate().0));
                        }
                        (name, what.join(", "))
                    })
                    .collect()),
            },
        };
        out.push((id.name().to_string(), entry));
    }
    out
}

fn pick_host(choice: HostChoice) -> Result<cpal::Host, LiveError> {
    match choice {
        HostChoice::Jack => Err(LiveError::Backend(
            "JACK runs through the native client (backend::jack), not cpal".into(),
        )),
        HostChoice::Alsa | HostChoice::Auto => Ok(cpal::default_host()),
    }
}

/// Whether a JACK server (named by `JACK_DEFAULT_SERVER`, else `default`) has its socket up,
/// checked without connecting (which would make libjack print errors when there is none).
pub fn jack_server_running() -> bool {
    use std::os::unix::fs::MetadataExt;
    let name = std::env::var("JACK_DEFAULT_SERVER").unwrap_or_else(|_| "default".into());
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    std::path::Path::new(&format!("/dev/shm/jack_{name}_{uid}_0")).exists()
}

impl LiveDevice {
    /// Chooses host, devices and stream configuration.
    pub fn open(opts: &LiveOptions) -> Result<LiveDevice, LiveError> {
        if !alsa_card_present() {
            return Err(LiveError::NoDevice("no ALSA sound card (nothing in /dev/snd)".into()));
        }
        quiet_stderr(|| Self::open_loud(opts))
    }

    fn open_loud(opts: &LiveOptions) -> Result<LiveDevice, LiveError> {
        let host = pick_host(opts.host)?;
        let host_name = host.id().name().to_string();
        let find = |output: bool| -> Result<Option<cpal::Device>, LiveError> {
            match &opts.device {
                Some(name) => {
                    let devs = host.devices().map_err(|e| LiveError::Backend(e.to_string()))?;
                    let mut names = Vec::new();
                    for d in devs {
                        let n = d.name().unwrap_or_default();
                        let ok = if output {
                            d.default_output_config().is_ok()
                        } else {
                            d.default_input_config().is_ok()
                        };
                        if ok && (n == *name || n.contains(name.as_str())) {
                            return Ok(Some(d));
                        }
                        names.push(n);
                    }
                    if output {
                        Err(LiveError::NoDevice(format!(
                            "no output device named `{name}` on {host_name} (have: {})",
                            names.join(", ")
                        )))
                    } else {
                        Ok(None)
                    }
                }
                None => Ok(if output {
                    host.default_output_device()
                } else {
                    host.default_input_device()
                }),
            }
        };
        let out_device = find(true)?.ok_or_else(|| LiveError::NoDevice(format!("{host_name} has no output device")))?;
        let default = out_device
            .default_output_config()
            .map_err(|e| LiveError::NoDevice(format!("{host_name}: {e}")))?;
        let sample_rate = opts.sample_rate.unwrap_or(default.sample_rate().0);
        let buffer_size = match opts.buffer_frames {
            Some(n) if host_name != "JACK" => cpal::BufferSize::Fixed(n),
            _ => cpal::BufferSize::Default,
        };
        let channels = if host_name == "JACK" {
            opts.out_channels.max(1)
        } else {
            (default.channels() as usize).max(opts.out_channels.min(default.channels() as usize))
        };
        let config = cpal::StreamConfig {
            channels: channels as u16,
            sample_rate: cpal::SampleRate(sample_rate),
            buffer_size,
        };
        let (in_device, in_config) = if opts.in_channels > 0 {
            match find(false)? {
                Some(d) => {
                    let ch = if host_name == "JACK" {
                        opts.in_channels
                    } else {
                        d.default_input_config().map(|c| c.channels() as usize).unwrap_or(opts.in_channels)
                    };
                    (
                        Some(d),
                        Some(cpal::StreamConfig {
                            channels: ch as u16,
                            sample_rate: cpal::SampleRate(sample_rate),
                            buffer_size,
                        }),
                    )
                }
                None => (None, None),
            }
        } else {
            (None, None)
        };
        Ok(LiveDevice {
            host_name,
            out_device,
            in_device,
            config,
            in_config,
        })
    }

    pub fn host_name(&self) -> &str {
        &self.host_name
    }
    pub fn device_name(&self) -> String {
        self.out_device.name().unwrap_or_default()
    }
    pub fn sample_rate(&self) -> u32 {
        self.config.sample_rate.0
    }
    pub fn out_channels(&self) -> usize {
        self.config.channels as usize
    }
    /// Input channels the engine will receive (0 when there is no input device).
    pub fn in_channels(&self) -> usize {
        self.in_config.as_ref().map(|c| c.channels as usize).unwrap_or(0)
    }

    /// Starts the streams; the engine moves into the output callback.
    pub fn start(self, mut engine: Engine) -> Result<Running, LiveError> {
        let stats = engine.stats().clone();
        let lost = Arc::new(AtomicBool::new(false));
        let in_ch = self.in_channels();
        let out_ch = self.out_channels();
        let (mut timing_tx, timing_rx) = RingBuffer::<u32>::new(TIMING_CAPACITY);
        // cpal calls the error callbacks on its audio thread: the error (and its String) leaves
        // through these rings and is read and freed on the control thread.
        let (in_err_tx, in_err_rx) = RingBuffer::<cpal::StreamError>::new(ERROR_RING);
        let (mut out_err_tx, out_err_rx) = RingBuffer::<cpal::StreamError>::new(ERROR_RING);
        let berr = |e: &dyn std::fmt::Display| LiveError::Backend(e.to_string());

        // Input: its own callback pushes into a ring the output callback reads.
        let ring_frames = 16384usize;
        let (in_tx, mut in_rx) = RingBuffer::<f32>::new(ring_frames * in_ch.max(1));
        let input_stream = match (self.in_device, self.in_config) {
            (Some(dev), Some(cfg)) => Some(build_input(&dev, &cfg, in_ch, in_tx, in_err_tx, &stats)?),
            _ => None,
        };

        let err_stats = stats.clone();
        let st = stats.clone();
        let mut in_buf = vec![0.0f32; ring_frames * in_ch.max(1)];
        let mut raised = false;
        let mut clock = CallbackClock::new(self.config.sample_rate.0);
        let output_stream = self
            .out_device
            .build_output_stream(
                &self.config,
                move |data: &mut [f32], info: &cpal::OutputCallbackInfo| {
                    if !raised {
                        raised = true;
                        raise_audio_thread(&st);
                    }
                    let t0 = Instant::now();
                    crate::alloc_check::no_alloc(|| {
                        let frames = data.len() / out_ch;
                        // cpal recovers ALSA xruns without telling: a gap in the callback clock
                        // longer than the last buffer is one.
                        if clock.tick(info.timestamp().callback, frames) {
                            RtStats::add(&st.xruns, 1);
                        }
                        let need = (frames * in_ch).min(in_buf.len());
                        if in_ch > 0 {
                            read_input(&mut in_rx, &mut in_buf[..need], in_ch, &st);
                        }
                        engine.process(&in_buf[..need], data);
                    });
                    let ns = t0.elapsed().as_nanos().min(u32::MAX as u128) as u32;
                    if timing_tx.push(ns).is_err() {
                        RtStats::add(&st.timings_dropped, 1);
                    }
                },
                move |e| pass_error(&mut out_err_tx, e, &err_stats),
                None,
            )
            .map_err(|e| berr(&e))?;
        output_stream.play().map_err(|e| berr(&e))?;
        if let Some(s) = &input_stream {
            s.play().map_err(|e| berr(&e))?;
        }
        Ok(Running {
            _output: output_stream,
            _input: input_stream,
            timings: timing_rx,
            errors: [out_err_rx, in_err_rx],
            lost,
        })
    }
}

/// Audio thread (the input stream's callback, built on the control thread): pushes whole
/// frames of input into `in_tx` for the output callback; what does not fit counts as overrun.
fn build_input(
    dev: &cpal::Device,
    cfg: &cpal::StreamConfig,
    in_ch: usize,
    mut in_tx: rtrb::Producer<f32>,
    mut in_err_tx: rtrb::Producer<cpal::StreamError>,
    stats: &Arc<RtStats>,
) -> Result<cpal::Stream, LiveError> {
    let st = stats.clone();
    let err_stats = stats.clone();
    let mut raised = false;
    dev.build_input_stream(
        cfg,
        move |data: &[f32], _: &cpal::InputCallbackInfo| {
            if !raised {
                raised = true;
                raise_audio_thread(&st);
            }
            crate::alloc_check::no_alloc(|| {
                // Whole frames only: a partial frame would rotate every later
                // frame by a channel (left and right swapped for the rest of the run).
                let n = whole_frames(data.len().min(in_tx.slots()), in_ch);
                if let Ok(mut chunk) = in_tx.write_chunk_uninit(n) {
                    let (a, b) = chunk.as_mut_slices();
                    for (d, s) in a.iter_mut().chain(b.iter_mut()).zip(data) {
                        d.write(*s);
                    }
                    // SAFETY: the zip above wrote all n = a.len() + b.len() slots
                    // (data has at least n samples).
                    unsafe { chunk.commit_all() };
                }
                RtStats::add(&st.input_overruns, ((data.len() - n) / in_ch.max(1)) as u64);
            })
        },
        move |e| pass_error(&mut in_err_tx, e, &err_stats),
        None,
    )
    .map_err(|e| LiveError::Backend(e.to_string()))
}

/// Audio thread (the output callback): fills `buf` (whole frames of `in_ch`) from the input
/// ring, silence where it runs short (counted); what is beyond four buffers is dropped first
/// (counted), so the input's latency stays bounded.
fn read_input(in_rx: &mut rtrb::Consumer<f32>, buf: &mut [f32], in_ch: usize, st: &RtStats) {
    let need = buf.len();
    let excess = in_rx.slots().saturating_sub(need * 4);
    let excess = excess - excess % in_ch;
    if excess > 0 {
        if let Ok(c) = in_rx.read_chunk(excess) {
            c.commit_all();
        }
        RtStats::add(&st.input_overruns, (excess / in_ch) as u64);
    }
    let have = in_rx.slots().min(need);
    if let Ok(c) = in_rx.read_chunk(have) {
        let (a, b) = c.as_slices();
        buf[..a.len()].copy_from_slice(a);
        buf[a.len()..a.len() + b.len()].copy_from_slice(b);
        c.commit_all();
    }
    buf[have..need].fill(0.0);
    RtStats::add(&st.input_underruns, ((need - have) / in_ch) as u64);
}

/// `samples` rounded down to whole frames of `channels` interleaved channels.
fn whole_frames(samples: usize, channels: usize) -> usize {
    samples - samples % channels.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(text: &str) -> cpal::StreamError {
        cpal::StreamError::BackendSpecific {
            err: cpal::BackendSpecificError { description: text.into() },
        }
    }

    #[test]
    fn alsa_errors_are_read_as_xruns_or_a_lost_device() {
        assert_eq!(
            meaning(&backend("ALSA function 'snd_pcm_writei' failed: Broken pipe")),
            ErrorMeaning::Xrun
        );
        assert_eq!(
            meaning(&backend("snd_pcm_poll_descriptors_revents: No such device (19)")),
            ErrorMeaning::Lost
        );
        assert_eq!(meaning(&backend("File descriptor in bad state")), ErrorMeaning::Lost);
        assert_eq!(meaning(&cpal::StreamError::DeviceNotAvailable), ErrorMeaning::Lost);
        assert_eq!(meaning(&backend("something else")), ErrorMeaning::Other);
    }

    #[test]
    fn an_error_callback_neither_allocates_nor_frees() {
        let (mut tx, mut rx) = RingBuffer::<cpal::StreamError>::new(1);
        let stats = RtStats::default();
        let (a, b) = (backend("Broken pipe"), backend("Broken pipe"));
        assert!(crate::alloc_check::is_installed());
        let before = crate::alloc_check::thread_violations();
        crate::alloc_check::no_alloc(|| {
            pass_error(&mut tx, a, &stats);
            pass_error(&mut tx, b, &stats); // full: leaked and counted, not freed here
        });
        assert_eq!(crate::alloc_check::thread_violations(), before);
        assert_eq!(RtStats::get(&stats.from_rt_dropped), 1);
        assert!(rx.pop().is_ok());
    }

    #[test]
    fn a_gap_in_the_callback_clock_is_an_xrun() {
        let mut c = CallbackClock::new(48000);
        let at = |us: u64| cpal::StreamInstant::new((us / 1_000_000) as i64, ((us % 1_000_000) * 1000) as u32);
        assert!(!c.tick(at(0), 128));
        assert!(!c.tick(at(2667), 128), "one period later");
        assert!(!c.tick(at(5400), 128), "a little late");
        assert!(c.tick(at(10_000), 128), "two periods late: ALSA ran dry");
    }

    #[test]
    fn the_input_ring_takes_whole_frames_only() {
        assert_eq!(super::whole_frames(7, 2), 6);
        assert_eq!(super::whole_frames(9, 3), 9);
        assert_eq!(super::whole_frames(5, 0), 5);
    }
}

/// Errors waiting for the control thread.
const ERROR_RING: usize = 64;

/// Error callback (cpal's audio thread): the error goes to the control thread. A full ring
/// leaks it rather than free on the audio thread (counted).
fn pass_error(tx: &mut rtrb::Producer<cpal::StreamError>, e: cpal::StreamError, stats: &RtStats) {
    if let Err(rtrb::PushError::Full(e)) = tx.push(e) {
        std::mem::forget(e);
        RtStats::add(&stats.from_rt_dropped, 1);
    }
}

/// What an error from cpal means.
#[derive(Debug, PartialEq, Eq)]
enum ErrorMeaning {
    Xrun,
    Lost,
    Other,
}

/// Reads an error (control thread). ALSA words a lost card many ways (ENODEV, EBADFD after
/// POLLERR, a disconnected device); none of them says "shut down".
fn meaning(e: &cpal::StreamError) -> ErrorMeaning {
    let cpal::StreamError::BackendSpecific { err } = e else {
        return ErrorMeaning::Lost;
    };
    let d = err.description.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| d.contains(w));
    if any(&["xrun", "underrun", "overrun", "broken pipe"]) {
        ErrorMeaning::Xrun
    } else if any(&[
        "no such device",
        "disconnect",
        "not available",
        "bad state",
        "pollerr",
        "shut down",
        "unplugged",
        "enodev",
        "ebadfd",
    ]) {
        ErrorMeaning::Lost
    } else {
        ErrorMeaning::Other
    }
}

/// The output callback's clock: a callback later than the last buffer's length (and a half)
/// after the one before means ALSA ran dry and recovered (an xrun). Audio thread.
struct CallbackClock {
    sample_rate: f64,
    last: Option<(cpal::StreamInstant, usize)>,
}

impl CallbackClock {
    fn new(sample_rate: u32) -> Self {
        Self {
            sample_rate: sample_rate.max(1) as f64,
            last: None,
        }
    }
    /// Records a callback at `now` for `frames` frames; true when it came after a gap.
    fn tick(&mut self, now: cpal::StreamInstant, frames: usize) -> bool {
        let gap = match self.last {
            Some((t, n)) => now
                .duration_since(&t)
                .is_some_and(|d| d.as_secs_f64() > 1.5 * n as f64 / self.sample_rate),
            None => false,
        };
        self.last = Some((now, frames));
        gap
    }
}

/// Puts the calling audio thread above the inference workers (SCHED_FIFO, priority
/// `STAGEBOX_AUDIO_PRIORITY`, default 10; the workers run at 2), once, at its first callback,
/// before it processes anything. Refused (not root, no rtprio limit): it runs on at normal
/// priority, and the control side says so (`RtStats::audio_priority` stays 0).
fn raise_audio_thread(stats: &RtStats) {
    use thread_priority::*;
    let prio: u8 = std::env::var("STAGEBOX_AUDIO_PRIORITY")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(10);
    let policy = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
    let p = ThreadPriority::Crossplatform(ThreadPriorityValue::try_from(prio.min(99)).unwrap_or_default());
    if set_thread_priority_and_policy(thread_native_id(), p, policy).is_ok() {
        stats.audio_priority.store(prio as u64, Ordering::Relaxed);
    }
}

/// Running streams. Dropping this stops audio.
pub struct Running {
    _output: cpal::Stream,
    _input: Option<cpal::Stream>,
    /// Callback durations in nanoseconds, one per output callback.
    pub timings: Consumer<u32>,
    /// Errors from the output and the input stream's callbacks.
    errors: [Consumer<cpal::StreamError>; 2],
    lost: Arc<AtomicBool>,
}

impl Running {
    /// Whether the backend reported the device gone (reads and frees the errors cpal reported;
    /// control thread).
    pub fn device_lost(&mut self) -> bool {
        for rx in &mut self.errors {
            while let Ok(e) = rx.pop() {
                match meaning(&e) {
                    ErrorMeaning::Lost => {
                        tracing::error!("audio device: {e}");
                        self.lost.store(true, Ordering::Relaxed);
                    }
                    ErrorMeaning::Xrun => tracing::debug!("audio device: {e}"),
                    ErrorMeaning::Other => tracing::warn!("audio device: {e}"),
                }
            }
        }
        self.lost.load(Ordering::Relaxed)
    }
}
