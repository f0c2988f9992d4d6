//! Peak heap of loading a configuration file, as `bench/config-memory.sh` reports it.
//!
//! ```sh
//! cargo run --release --example config-memory -- gateway.toml
//! ```
//!
//! Loads the file as `check` does (`LoadMode::Check`) under a global allocator that counts the
//! bytes in use, and prints the file's size, the heap in use before loading, the peak while
//! loading, what stays once it is loaded (the validated configuration), the peak over the text
//! in bytes per byte of TOML, and the time the load took. heaptrack gives the same peak, with
//! where it comes from, but takes minutes on a large file; this takes the load's own time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The system allocator, keeping count of the bytes in use and of the most ever in use.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = IN_USE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed on to `System` unchanged; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` and `layout` come from this allocator, that is from `System`.
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                IN_USE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() -> anyhow::Result<()> {
    use anyhow::Context as _;
    use xmpp_iot_gateway::config::{load, LoadMode};

    let path = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .context("usage: config-memory FILE")?;
    let bytes = std::fs::metadata(&path)
        .with_context(|| format!("{}", path.display()))?
        .len();
    let before = IN_USE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = Instant::now();
    let loaded = load(&path, LoadMode::Check).map_err(|e| anyhow::anyhow!("{e}"))?;
    let took = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let kept = IN_USE.load(Ordering::Relaxed) - before;
    println!(
        "{bytes} bytes of TOML, {} devices: peak heap {peak} bytes ({:.1} bytes per byte of TOML), \
         {kept} bytes kept after loading ({:.1} per byte), load {:.0} ms",
        loaded.config.devices.len(),
        peak as f64 / bytes as f64,
        kept as f64 / bytes as f64,
        took.as_secs_f64() * 1000.0
    );
    Ok(())
}
