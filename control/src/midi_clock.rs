//! MIDI clock (control thread, and the clock thread it starts for midir ports): clock out at
//! 24 ticks a quarter note from the internal tempo, and the tempo of an incoming clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stagebox_engine::device_midi::ClockShared;

/// MIDI clock out: 24 ticks a quarter note from the internal tempo. With JACK the backend sends
/// it from its process callback at exact frames (`driven`); elsewhere a thread of its own sends
/// it through a midir port.
pub struct ClockOut {
    shared: Arc<ClockShared>,
    stop: Arc<AtomicBool>,
    /// The thread keeps its port; set when the port's server died: the thread then leaks the
    /// port instead of closing it (closing a dead JACK client crashes).
    leak: Arc<AtomicBool>,
}

impl ClockOut {
    pub fn start(port: &str, bpm: f64) -> Result<ClockOut, String> {
        let out = midir::MidiOutput::new("stagebox").map_err(|e| e.to_string())?;
        use midir::os::unix::VirtualOutput;
        let mut conn = out.create_virtual(port).map_err(|e| e.to_string())?;
        let clock = ClockOut::driven(Arc::new(ClockShared::new(bpm)));
        let (sh, s, l) = (clock.shared.clone(), clock.stop.clone(), clock.leak.clone());
        std::thread::Builder::new()
            .name("stagebox-clock".into())
            .spawn(move || {
                let _ = conn.send(&[0xfa]);
                let mut next = Instant::now();
                while !s.load(Ordering::Relaxed) {
                    next += Duration::from_secs_f64(60.0 / (sh.bpm().max(1.0) * 24.0));
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else if now - next > Duration::from_millis(100) {
                        next = now;
                    }
                    if conn.send(&[0xf8]).is_ok() {
                        sh.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if l.load(Ordering::Relaxed) {
                    std::mem::forget(conn);
                } else {
                    let _ = conn.send(&[0xfc]);
                }
            })
            .map_err(|e| e.to_string())?;
        tracing::info!("MIDI clock out on port `{port}` at {bpm} BPM");
        Ok(clock)
    }

    /// A clock the backend sends from its own callback (JACK's `clock` port): no thread here;
    /// the tempo and the tick count are shared with the callback.
    pub fn driven(shared: Arc<ClockShared>) -> ClockOut {
        ClockOut {
            shared,
            stop: Arc::new(AtomicBool::new(false)),
            leak: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Ticks sent so far.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// Stops the clock after its server died: the port is let go, not closed.
    pub fn stop_without_port(self) {
        self.leak.store(true, Ordering::Relaxed);
    }

    pub fn set_tempo(&self, bpm: f64) {
        self.shared
            .bpm_milli
            .store((bpm.clamp(20.0, 400.0) * 1000.0) as u64, Ordering::Relaxed);
    }
}

impl Drop for ClockOut {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The tempo of an incoming MIDI clock from the arrival times (µs) of its last ticks (24 a
/// beat, at most 25 used): the median of the slopes between every pair of ticks (Theil–Sen), so
/// one tick that arrives late, or a few that arrive bunched after a stall of the sender, do not
/// move it, while the jitter of each tick still averages out. A gap of about two periods
/// followed by a normal one counts as two periods: a tick lost on the way (a JACK client that
/// misses a cycle never sees that cycle's events) does not slow the tempo. None below 7 ticks.
pub fn clock_bpm(times: &[u64]) -> Option<f64> {
    const MAX: usize = 25;
    if times.len() < 7 {
        return None;
    }
    let times = &times[times.len().saturating_sub(MAX)..];
    let n = times.len() - 1;
    let mut gaps = [0.0f64; MAX];
    for k in 0..n {
        gaps[k] = times[k + 1].saturating_sub(times[k]) as f64;
    }
    let mut sorted = gaps;
    sorted[..n].sort_unstable_by(f64::total_cmp);
    let median = sorted[n / 2];
    if median <= 0.0 {
        return None;
    }
    let mut index = [0.0f64; MAX];
    for k in 0..n {
        let lost = gaps[k] > 1.5 * median && gaps[k] < 2.5 * median && (k + 1 == n || gaps[k + 1] > 0.5 * median);
        index[k + 1] = index[k] + if lost { 2.0 } else { 1.0 };
    }
    let mut slopes = [0.0f64; MAX * (MAX - 1) / 2];
    let mut m = 0;
    for i in 0..=n {
        for j in i + 1..=n {
            slopes[m] = (times[j] as f64 - times[i] as f64) / (index[j] - index[i]);
            m += 1;
        }
    }
    slopes[..m].sort_unstable_by(f64::total_cmp);
    let period_us = slopes[m / 2];
    (period_us > 0.0).then(|| 60e6 / (24.0 * period_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_tempo_holds_through_jitter_and_a_lost_tick() {
        // 120 BPM: a tick every 20833 µs, each arriving up to ±1.5 ms off its time.
        let jitter = [0i64, 900, -1200, 400, 1500, -800, 0, 300, -1500, 1100, -300, 700];
        let ticks: Vec<u64> = (0..25u64)
            .map(|k| (1_000_000 + k as i64 * 20_833 + jitter[k as usize % jitter.len()]) as u64)
            .collect();
        let bpm = clock_bpm(&ticks).unwrap();
        assert!((bpm - 120.0).abs() < 0.5, "{bpm}");
        // One tick lost: the doubled gap counts as two periods (counted as one, as 23 gaps over
        // a span of 24 periods, it would read 115).
        let mut lost = ticks.clone();
        lost.remove(12);
        let bpm = clock_bpm(&lost).unwrap();
        assert!((bpm - 120.0).abs() < 0.5, "one lost tick: {bpm}");
        assert!(clock_bpm(&ticks[..6]).is_none());
        // The first tick in the window a period late (a stalled sender), and three ticks held
        // back and then sent together with the next.
        let mut late = ticks.clone();
        late[0] += 20_833;
        for t in &mut late[10..13] {
            *t = ticks[13] - 50;
        }
        let bpm = clock_bpm(&late).unwrap();
        assert!((bpm - 120.0).abs() < 1.0, "late and bunched ticks: {bpm}");
        // A real tempo is followed: 90 BPM.
        let slow: Vec<u64> = (0..25u64).map(|k| k * 27_778).collect();
        assert!((clock_bpm(&slow).unwrap() - 90.0).abs() < 0.1);
    }
}
