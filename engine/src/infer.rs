//! The audio side of inference: a bridge that hands windows of audio to a worker thread and
//! takes results back, with a declared latency (audio thread), the backend trait the worker
//! runs (worker thread), and test backends (identity, stall) so graph and scheduling tests need
//! no ONNX Runtime.
//!
//! Buffers never cross as new allocations: a fixed set of `Job`s (input and output buffers
//! allocated at build) circulates audio -> worker -> audio through two rtrb rings. Window `k`
//! (its last hop ends at frame `(k+1)*hop`) is due `latency` frames after that; a result that is
//! not back by then is counted late and replaced (silence, or the last result held), and is
//! recycled when it arrives. Offline (`BuildCtx`-level `offline`), the audio side waits for each
//! result instead, so a render is deterministic and equals a live run without late windows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rtrb::{Consumer, Producer, RingBuffer};

/// Runs a model on one window. Worker thread; may allocate, may take time.
pub trait InferBackend: Send + 'static {
    /// `input` is one window; `output` receives one hop of results.
    fn infer(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), String>;
}

/// Output equals the last hop of the input window.
pub struct Identity;
impl InferBackend for Identity {
    fn infer(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), String> {
        let n = output.len();
        output.copy_from_slice(&input[input.len() - n..]);
        Ok(())
    }
}

/// Identity that sleeps first: a model too slow for its deadline.
pub struct Stall(pub Duration);
impl InferBackend for Stall {
    fn infer(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), String> {
        std::thread::sleep(self.0);
        Identity.infer(input, output)
    }
}

struct Job {
    seq: u64,
    input: Vec<f32>,
    output: Vec<f32>,
    ok: bool,
}

/// What to play when a result is late.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLate {
    Silence,
    HoldLast,
}

/// Counters of one bridge (audio thread writes, reported through `FromRt::Infer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InferCounts {
    pub windows: u64,
    pub late: u64,
    pub dropped: u64,
    pub failed: u64,
}

/// Audio-thread half of the bridge.
pub struct Bridge {
    window: usize,
    hop: usize,
    latency: u64,
    offline: bool,
    on_late: OnLate,
    history: Vec<f32>,
    hist_pos: usize,
    frames_in: u64,
    spare: Vec<Job>,
    to_worker: Producer<Job>,
    from_worker: Consumer<Job>,
    /// The result being played.
    current: Option<Job>,
    last: Vec<f32>,
    have_last: bool,
    pub counts: InferCounts,
    jobs_total: usize,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
}

impl Bridge {
    /// Builds the bridge and starts its worker (control thread). `latency` counts from the end
    /// of a window's last hop to when its output starts playing; it must be at least `hop`.
    pub fn new(
        backend: Box<dyn InferBackend>,
        window: usize,
        hop: usize,
        latency: u64,
        jobs: usize,
        offline: bool,
        on_late: OnLate,
    ) -> std::io::Result<Bridge> {
        let window = window.max(hop);
        let (to_worker, mut worker_rx) = RingBuffer::<Job>::new(jobs);
        let (mut worker_tx, from_worker) = RingBuffer::<Job>::new(jobs);
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let mut backend = backend;
        let worker = std::thread::Builder::new().name("stagebox-infer".into()).spawn(move || {
            // Worker thread: run each window, send it back. Ends when the audio side is gone.
            while !st.load(Ordering::Relaxed) {
                match worker_rx.pop() {
                    Ok(mut job) => {
                        job.ok = backend.infer(&job.input, &mut job.output).is_ok();
                        let mut j = job;
                        loop {
                            match worker_tx.push(j) {
                                Ok(()) => break,
                                Err(rtrb::PushError::Full(back)) => {
                                    j = back;
                                    if st.load(Ordering::Relaxed) {
                                        return;
                                    }
                                    std::thread::sleep(Duration::from_micros(200));
                                }
                            }
                        }
                    }
                    Err(_) => {
                        if worker_rx.is_abandoned() {
                            return;
                        }
                        std::thread::sleep(Duration::from_micros(250));
                    }
                }
            }
        })?;
        let spare = (0..jobs)
            .map(|_| Job {
                seq: 0,
                input: vec![0.0; window],
                output: vec![0.0; hop],
                ok: false,
            })
            .collect();
        Ok(Bridge {
            window,
            hop,
            latency: latency.max(hop as u64),
            offline,
            on_late,
            history: vec![0.0; window],
            hist_pos: 0,
            frames_in: 0,
            spare,
            to_worker,
            from_worker,
            current: None,
            last: vec![0.0; hop],
            have_last: false,
            counts: InferCounts::default(),
            jobs_total: jobs,
            stop,
            worker: Some(worker),
        })
    }

    /// Frames from a sample entering to its result leaving (what the node declares).
    pub fn latency_frames(&self) -> u64 {
        self.latency
    }

    /// Takes one input sample, returns one output sample. Audio thread; never waits unless
    /// offline.
    #[inline]
    pub fn tick(&mut self, x: f32) -> f32 {
        self.history[self.hist_pos] = x;
        self.hist_pos = (self.hist_pos + 1) % self.window;
        self.frames_in += 1;
        if self.frames_in % self.hop as u64 == 0 {
            self.send_window();
        }
        self.next_output()
    }

    fn send_window(&mut self) {
        let seq = self.frames_in / self.hop as u64 - 1;
        self.counts.windows += 1;
        let Some(mut job) = self.spare.pop() else {
            self.counts.dropped += 1;
            return;
        };
        job.seq = seq;
        // Oldest sample first.
        let (a, b) = self.history.split_at(self.hist_pos);
        job.input[..b.len()].copy_from_slice(b);
        job.input[b.len()..].copy_from_slice(a);
        if let Err(rtrb::PushError::Full(job)) = self.to_worker.push(job) {
            self.counts.dropped += 1;
            self.spare.push(job);
        }
    }

    fn next_output(&mut self) -> f32 {
        // Output frame t plays sample (t - latency) of the stream of hops.
        let t = self.frames_in - 1;
        if t < self.latency {
            return 0.0;
        }
        let k = t - self.latency;
        let seq = k / self.hop as u64;
        let i = (k % self.hop as u64) as usize;
        if i == 0 {
            self.start_hop(seq);
        }
        match &self.current {
            Some(job) if job.seq == seq && job.ok => job.output[i],
            _ => match self.on_late {
                OnLate::HoldLast if self.have_last => self.last[i],
                _ => 0.0,
            },
        }
    }

    /// Makes window `seq`'s result current, or counts it late.
    fn start_hop(&mut self, seq: u64) {
        match &self.current {
            Some(cur) if cur.seq == seq => return,
            Some(cur) if cur.seq > seq => {
                // Window `seq` never came back (dropped); a later one waits its turn.
                self.counts.late += 1;
                return;
            }
            _ => {}
        }
        if let Some(old) = self.current.take() {
            if old.ok {
                self.last.copy_from_slice(&old.output);
                self.have_last = true;
            }
            self.spare.push(old);
        }
        loop {
            match self.from_worker.pop() {
                Ok(job) if job.seq < seq => self.spare.push(job), // arrived too late: recycle
                Ok(job) => {
                    if !job.ok {
                        self.counts.failed += 1;
                    }
                    if job.seq > seq {
                        self.counts.late += 1;
                    }
                    self.current = Some(job);
                    return;
                }
                Err(_) if self.offline && self.spare.len() < self.jobs_total => {
                    // Offline: wait for the worker (deterministic renders).
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(_) => {
                    self.counts.late += 1;
                    return;
                }
            }
        }
    }
}

impl Drop for Bridge {
    // Runs where the schedule is freed (control thread), never on the audio thread.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
