//! Control thread. Holds the CPUs' wake-up latency low while the engine runs live: a PM QoS
//! request on `/dev/cpu_dma_latency` (the kernel's interface; the same request `tuned`'s
//! latency-performance profile and most real-time audio set-ups make). While the file stays open
//! with a bound of N µs, the kernel keeps every CPU out of idle states that take longer than N µs
//! to leave; closing it (dropping the hold) lets them sleep again.
//!
//! Why: an audio period is 2.7 ms at 128 frames and 48 kHz, and a CPU woken from a deep idle
//! state (or, in a virtual machine, a halted vCPU) can take longer than that to run the audio
//! thread. Measured on this project's VMs (BENCHMARKS.md): an idle dummy JACK server logged
//! 42-88 late wake-ups in 20 s, and 1-13 with the bound at 0 µs.
//!
//! Only root, or a user given write access to the file, may make the request; elsewhere the engine
//! runs without it and says so once.

use std::fs::File;
use std::io::Write;

const PATH: &str = "/dev/cpu_dma_latency";

/// The request, in force while this lives.
pub struct CpuWakeHold {
    _file: File,
    pub bound_us: u32,
}

impl CpuWakeHold {
    /// Asks for every CPU to wake within `bound_us`. The kernel takes the bound as a 32-bit
    /// integer in native byte order.
    pub fn request(bound_us: u32) -> Result<CpuWakeHold, String> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(PATH)
            .map_err(|e| format!("{PATH}: {e}"))?;
        let v = i32::try_from(bound_us).map_err(|_| format!("{bound_us} µs is out of range"))?;
        f.write_all(&v.to_ne_bytes()).map_err(|e| format!("{PATH}: {e}"))?;
        Ok(CpuWakeHold { _file: f, bound_us })
    }

    /// [`request`](Self::request), logging what happened; None where it was refused.
    pub fn request_logged(bound_us: u32) -> Option<CpuWakeHold> {
        match CpuWakeHold::request(bound_us) {
            Ok(h) => {
                tracing::info!("CPU wake-up latency held at {bound_us} us while running (PM QoS; --cpu-wake-us)");
                Some(h)
            }
            Err(e) => {
                tracing::warn!(
                    "cannot hold the CPU wake-up latency ({e}): idle CPUs may wake too late for the audio \
                     period (xruns); run as root or give this user write access to {PATH}"
                );
                None
            }
        }
    }
}

/// The bound the kernel enforces now, from every request (ours included), in µs.
#[cfg(test)]
fn current_bound_us() -> Option<i64> {
    let mut f = File::open(PATH).ok()?;
    let mut b = [0u8; 4];
    std::io::Read::read_exact(&mut f, &mut b).ok()?;
    Some(i32::from_ne_bytes(b) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_lowers_the_bound_until_dropped() {
        let Some(before) = current_bound_us() else {
            eprintln!("no readable {PATH} here; nothing to check");
            return;
        };
        match CpuWakeHold::request(7) {
            Ok(h) => {
                assert!(current_bound_us().unwrap() <= 7, "bound while held: {:?}", current_bound_us());
                assert_eq!(h.bound_us, 7);
                drop(h);
                assert_eq!(current_bound_us(), Some(before), "the bound came back");
            }
            Err(e) => assert!(e.contains(PATH), "{e}"),
        }
    }
}
