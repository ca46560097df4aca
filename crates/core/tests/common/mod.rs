//! Shared by the `hostile_*` tests: an allocator that records, per thread, the largest
//! single allocation and the peak of live bytes while a closure runs, and the replay of the
//! checked-in corpus (`tests/corpus/<target>/`) that every run goes through.
//!
//! "No unbounded allocation" is checked, not assumed: a parser may allocate in proportion
//! to the bytes it was given, never in proportion to a length it read from them.

#![allow(dead_code)] // each test binary uses a different part

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;

/// Counts allocations of the current thread while a probe is active; forwards to `System`.
pub struct Tracking;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn grew(size: usize) {
    let _ = ACTIVE.try_with(|active| {
        if active.get() {
            LARGEST.with(|l| l.set(l.get().max(size)));
            LIVE.with(|live| {
                let now = live.get() + size as isize;
                live.set(now);
                PEAK.with(|p| p.set(p.get().max(now)));
            });
        }
    });
}

fn shrank(size: usize) {
    let _ = ACTIVE.try_with(|active| {
        if active.get() {
            LIVE.with(|live| live.set(live.get() - size as isize));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping only
// touches const-initialised thread locals, which never allocate.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        shrank(layout.size());
        grew(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What a closure allocated on this thread.
#[derive(Debug, Clone, Copy)]
pub struct Allocations {
    /// The largest single allocation, bytes.
    pub largest: usize,
    /// Peak of bytes allocated and not yet freed, relative to the start.
    pub peak: usize,
}

/// Runs `f` and reports what it allocated on this thread.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Allocations) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    LARGEST.with(|l| l.set(0));
    ACTIVE.with(|a| a.set(true));
    let out = f();
    ACTIVE.with(|a| a.set(false));
    let allocations = Allocations {
        largest: LARGEST.with(Cell::get),
        peak: PEAK.with(Cell::get).max(0) as usize,
    };
    (out, allocations)
}

/// The bound every target must keep: memory in proportion to its input (a parsed JSON
/// tree costs a few dozen bytes per input byte at worst), plus a fixed allowance.
pub fn allowance(input_len: usize) -> usize {
    64 * input_len + (256 << 10)
}

/// Runs `f` on `input` and fails if it allocated more than `allowance(input.len())`.
pub fn bounded<'a, R>(name: &str, input: &'a [u8], f: impl FnOnce(&'a [u8]) -> R) -> R {
    let (out, a) = measure(|| f(input));
    let limit = allowance(input.len());
    assert!(
        a.largest <= limit && a.peak <= limit,
        "{name}: {} input bytes allocated {} bytes at once (peak {}), limit {limit}",
        input.len(),
        a.largest,
        a.peak,
    );
    out
}

/// Every file of `tests/corpus/<target>/` (sorted, so failures are reproducible), with
/// its name. The corpus holds seeds, adversarial cases and every input that once broke
/// something; it is replayed on every run.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            (name, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
}

/// Runs `f` on a thread with a 2 MiB stack, the size of a tokio worker thread (where a
/// Lambda handler's future runs), so a stack overflow shows here as it would there.
pub fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("spawn test thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Proptest cases for arbitrary-input targets: small by default so CI stays fast;
/// `PROPTEST_CASES=100000` for a long run by hand.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
