//! Keeps the process's memory resident while running live (main thread, once at start): the
//! audio thread must not take page faults, so every page, mapped now or later, stays in RAM
//! once touched (`mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`: on fault, so that thread
//! stacks and reserved address space are not locked whole). Fresh graph buffers are touched on
//! the control thread when compiled (`Schedule::compile`), not first by the audio thread.
//! Refused (not root and a low RLIMIT_MEMLOCK): it runs on and says so.

/// Locks the process's memory; true when the kernel agreed.
pub fn lock_all() -> bool {
    // SAFETY: mlockall takes two flags and touches no memory of ours; it either locks every
    // mapping of the process or fails with no effect.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) };
    if rc == 0 {
        tracing::info!("memory locked (mlockall): no page faults on the audio thread");
        true
    } else {
        let e = std::io::Error::last_os_error();
        tracing::warn!("memory not locked (mlockall: {e}); the audio thread may take page faults the first time it touches a buffer");
        false
    }
}
