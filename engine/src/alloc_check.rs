//! Allocation guard for the audio thread (runs on whichever thread calls it; used by the audio
//! thread and by the offline backend for every process call).
//!
//! [`CheckedAlloc`] wraps the system allocator. While a thread is inside [`no_alloc`], every
//! allocation, reallocation or free on that thread is counted as a violation (the program is not
//! aborted, so live audio keeps going; tests assert their thread's count, [`thread_violations`],
//! is zero). Install it with
//! `#[global_allocator] static A: CheckedAlloc = CheckedAlloc;` in a binary or test crate; without
//! it the guard counts nothing, and [`is_installed`] says so.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static VIOLATIONS: AtomicU64 = AtomicU64::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static FORBIDDEN: Cell<bool> = const { Cell::new(false) };
    /// This thread's violations (tests on concurrent threads each read their own).
    static MINE: Cell<u64> = const { Cell::new(0) };
}

/// Global allocator that counts allocations made inside [`no_alloc`].
pub struct CheckedAlloc;

#[inline]
fn note() {
    // `try_with` never allocates for a const-initialised Cell; it fails only during thread teardown.
    let forbidden = FORBIDDEN.try_with(|f| f.get()).unwrap_or(false);
    if forbidden {
        VIOLATIONS.fetch_add(1, Ordering::Relaxed);
        let _ = MINE.try_with(|m| m.set(m.get() + 1));
    }
}

// SAFETY: every method forwards to `System` unchanged; the only extra work is a thread-local
// read and an atomic increment, neither of which allocates or touches the returned memory.
unsafe impl GlobalAlloc for CheckedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` with allocation forbidden on this thread; any allocation or free inside counts as a
/// violation. Nested calls are fine.
#[inline]
pub fn no_alloc<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the flag back as it was, also when `f` panics (an unwinding test must not leave
    /// its thread forbidding allocation, nor a later check counting the unwind's frees).
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = FORBIDDEN.try_with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(FORBIDDEN.with(|c| c.replace(true)));
    f()
}

/// Allocations and frees seen inside [`no_alloc`] on this thread since it started: what a test
/// asserts, so that another test thread's violation is neither erased nor blamed on it.
pub fn thread_violations() -> u64 {
    MINE.try_with(|m| m.get()).unwrap_or(0)
}

/// Allocations and frees seen inside [`no_alloc`] since the process started.
pub fn violations() -> u64 {
    VIOLATIONS.load(Ordering::Relaxed)
}

/// Whether [`CheckedAlloc`] is the global allocator (tested once with a forbidden allocation).
pub fn is_installed() -> bool {
    if INSTALLED.load(Ordering::Relaxed) {
        return true;
    }
    let before = thread_violations();
    no_alloc(|| {
        let b = std::hint::black_box(Box::new(0u8));
        drop(b);
    });
    let after = thread_violations();
    if after > before {
        VIOLATIONS.fetch_sub(after - before, Ordering::Relaxed);
        let _ = MINE.try_with(|m| m.set(before));
        INSTALLED.store(true, Ordering::Relaxed);
        true
    } else {
        false
    }
}
