//! The audio side of inference: a bridge that hands windows of audio to a worker thread and
//! takes results back, with a declared latency (audio thread), the backend trait the worker
//! runs (worker thread), and test backends (identity, stall) so graph and scheduling tests need
//! no ONNX Runtime.
//!
//! Buffers never cross as new allocations: a fixed set of `Job`s (input and output buffers
//! allocated at build) circulates audio -> worker -> audio through two rtrb rings. A node asks
//! for window `k`'s result when it is due (its declared latency after the window's last hop);
//! a result that is not back by then is counted late (the node plays silence or holds the last
//! one) and recycled when it arrives. Offline (`BuildCtx::offline`), the audio side waits for
//! each result instead, so a render is deterministic and equals a live run without late windows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rtrb::{Consumer, Producer, RingBuffer};

/// Runs a model on one window. Worker thread; may allocate, may take time.
pub trait InferBackend: Send + 'static {
    /// `input` is window number `seq` (windows come in order; a dropped one leaves a gap);
    /// `output` receives the results, its length fixed when the bridge was built.
    fn infer(&mut self, seq: u64, input: &[f32], output: &mut [f32]) -> Result<(), String>;
}

/// Output equals the last hop of the input window.
pub struct Identity;
impl InferBackend for Identity {
    fn infer(&mut self, _seq: u64, input: &[f32], output: &mut [f32]) -> Result<(), String> {
        let n = output.len();
        output.copy_from_slice(&input[input.len() - n..]);
        Ok(())
    }
}

/// Identity that sleeps first: a model too slow for its deadline.
pub struct Stall(pub Duration);
impl InferBackend for Stall {
    fn infer(&mut self, seq: u64, input: &[f32], output: &mut [f32]) -> Result<(), String> {
        std::thread::sleep(self.0);
        Identity.infer(seq, input, output)
    }
}

struct Job {
    seq: u64,
    input: Vec<f32>,
    output: Vec<f32>,
    ok: bool,
}

/// Pins the calling inference worker to a core and raises it to SCHED_FIFO, below the audio
/// threads (JACK clients run at FIFO 5 or more by default), falling back with a logged reason.
/// `STAGEBOX_INFER_CORE` (a core number, or `none`; default: the last core) and
/// `STAGEBOX_INFER_PRIORITY` (1..99, default 2; 0 = leave the normal policy) choose.
pub fn setup_worker_thread() {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let want = std::env::var("STAGEBOX_INFER_CORE").ok();
    let core = match want.as_deref() {
        Some("none") => None,
        Some(n) => n.parse::<usize>().ok().and_then(|n| cores.iter().find(|c| c.id == n).copied()),
        None => cores.last().copied(),
    };
    if let Some(c) = core {
        if core_affinity::set_for_current(c) {
            tracing::debug!("inference worker pinned to core {}", c.id);
        } else {
            tracing::warn!("inference worker: could not pin to core {}; running unpinned", c.id);
        }
    }
    let prio: u8 = std::env::var("STAGEBOX_INFER_PRIORITY")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(2);
    if prio > 0 {
        use thread_priority::*;
        let policy = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
        let p = ThreadPriority::Crossplatform(ThreadPriorityValue::try_from(prio.min(99)).unwrap_or_default());
        match set_thread_priority_and_policy(thread_native_id(), p, policy) {
            Ok(()) => tracing::debug!("inference worker at SCHED_FIFO {prio}"),
            Err(e) => tracing::warn!("inference worker: SCHED_FIFO refused ({e:?}); running at normal priority"),
        }
    }
}

/// Counters of one bridge (audio thread writes, reported through `FromRt::Infer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InferCounts {
    pub windows: u64,
    pub late: u64,
    pub dropped: u64,
    pub failed: u64,
}

/// Audio-thread half of the bridge: windows go out as they fill, results come back by
/// sequence number.
pub struct Bridge {
    window: usize,
    hop: usize,
    offline: bool,
    history: Vec<f32>,
    hist_pos: usize,
    pushed: u64,
    spare: Vec<Job>,
    jobs_total: usize,
    to_worker: Producer<Job>,
    from_worker: Consumer<Job>,
    /// The result handed out last.
    current: Option<Job>,
    pub counts: InferCounts,
    reported: InferCounts,
    since_report: u32,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
}

impl Bridge {
    /// Builds the bridge and starts its worker thread (control thread). Every `hop` samples
    /// pushed, the last `window` samples go to `backend`, which fills `out_len` values.
    pub fn new(
        backend: Box<dyn InferBackend>,
        window: usize,
        hop: usize,
        out_len: usize,
        jobs: usize,
        offline: bool,
    ) -> std::io::Result<Bridge> {
        let window = window.max(hop);
        let (to_worker, mut worker_rx) = RingBuffer::<Job>::new(jobs);
        let (mut worker_tx, from_worker) = RingBuffer::<Job>::new(jobs);
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let mut backend = backend;
        let worker = std::thread::Builder::new().name("stagebox-infer".into()).spawn(move || {
            // Worker thread: run each window in order, send it back. Ends with the audio side.
            setup_worker_thread();
            while !st.load(Ordering::Relaxed) {
                match worker_rx.pop() {
                    Ok(mut job) => {
                        job.ok = backend.infer(job.seq, &job.input, &mut job.output).is_ok();
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
                output: vec![0.0; out_len],
                ok: false,
            })
            .collect();
        Ok(Bridge {
            window,
            hop,
            offline,
            history: vec![0.0; window],
            hist_pos: 0,
            pushed: 0,
            spare,
            jobs_total: jobs,
            to_worker,
            from_worker,
            current: None,
            counts: InferCounts::default(),
            reported: InferCounts::default(),
            since_report: 0,
            stop,
            worker: Some(worker),
        })
    }

    pub fn hop(&self) -> usize {
        self.hop
    }
    pub fn window(&self) -> usize {
        self.window
    }
    /// Counts one engine frame; every `every` frames, sends the counters to the control side if
    /// they changed. Audio thread.
    #[inline]
    pub fn report(&mut self, emit: &mut crate::node::Emit, node: u32, every: u32) {
        self.since_report += 1;
        if self.since_report >= every {
            self.since_report = 0;
            if self.counts != self.reported {
                self.reported = self.counts;
                emit.control(crate::msg::FromRt::Infer {
                    gen: emit.generation(),
                    node,
                    counts: self.reported,
                });
            }
        }
    }

    /// Samples pushed so far.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Pushes one sample (at the model's rate). Returns the sequence number of the window sent
    /// when this sample completed a hop. Audio thread.
    #[inline]
    pub fn push(&mut self, x: f32) -> Option<u64> {
        self.history[self.hist_pos] = x;
        self.hist_pos += 1;
        if self.hist_pos == self.window {
            self.hist_pos = 0;
        }
        self.pushed += 1;
        if self.pushed.is_multiple_of(self.hop as u64) {
            let seq = self.pushed / self.hop as u64 - 1;
            self.send_window(seq);
            Some(seq)
        } else {
            None
        }
    }

    fn send_window(&mut self, seq: u64) {
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

    /// The result of window `seq`, if it is back (offline: waits for it). A result asked for and
    /// not back counts late; older results are recycled. Ask for each `seq` once, in order.
    /// Audio thread.
    pub fn result(&mut self, seq: u64) -> Option<&[f32]> {
        match &self.current {
            Some(cur) if cur.seq == seq => return cur.ok.then_some(&self.current.as_ref().unwrap().output[..]),
            Some(cur) if cur.seq > seq => {
                // Window `seq` never came back (dropped); a later one waits its turn.
                self.counts.late += 1;
                return None;
            }
            _ => {}
        }
        if let Some(old) = self.current.take() {
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
                    let ok = job.ok && job.seq == seq;
                    self.current = Some(job);
                    return if ok {
                        Some(&self.current.as_ref().unwrap().output[..])
                    } else {
                        None
                    };
                }
                Err(_) if self.offline && self.spare.len() < self.jobs_total && !self.from_worker.is_abandoned() => {
                    // Offline: wait for the worker (deterministic renders), unless it has died
                    // (its end of the ring is gone): then the window failed.
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(_) if self.from_worker.is_abandoned() => {
                    self.counts.failed += 1;
                    return None;
                }
                Err(_) => {
                    self.counts.late += 1;
                    return None;
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
