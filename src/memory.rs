//! Handing freed heap memory back to the system.
//!
//! glibc keeps freed pages for reuse. After a burst of work that allocated much and freed it
//! (parsing a large configuration, a flood of messages) the process would stay at its peak
//! resident size for good; on a small board that memory belongs to everyone else.

/// Less free heap than this is not worth a trim: `malloc_trim` walks every free chunk and
/// advises the kernel page by page, a millisecond or more of the core task's time that, run on
/// a steady load every few seconds, shows in the latency tail and gives back next to nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_MIN_FREE_BYTES: usize = 1 << 20;

/// Returns free heap pages to the system (glibc's `malloc_trim`; nothing elsewhere), when
/// there is at least [`TRIM_MIN_FREE_BYTES`] of free heap to give back.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if free_heap_bytes() >= TRIM_MIN_FREE_BYTES {
        // SAFETY: malloc_trim only walks the allocator's own free lists; any argument is valid.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Free bytes held by the allocator: chunks in its bins (`fordblks`) across every arena.
/// `mallinfo`, not `mallinfo2`: the packages are built for glibc 2.31 too, which lacks it; its
/// `int` fields only wrap beyond 2 GiB, far above anything the gateway frees.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn free_heap_bytes() -> usize {
    // SAFETY: mallinfo only reads the allocator's statistics.
    #[allow(deprecated)]
    let info = unsafe { libc::mallinfo() };
    usize::try_from(info.fordblks).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn freed_heap_counts_as_free() {
        // Many small blocks, so that freeing them leaves free chunks in the heap rather than
        // unmapping one large block; the guard after them keeps the allocator from merging
        // them into the top of the heap and handing that back by itself.
        let blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 1024]).collect();
        let guard = vec![1u8; 64];
        let before = free_heap_bytes();
        drop(blocks);
        let after = free_heap_bytes();
        drop(guard);
        assert!(
            after >= before + TRIM_MIN_FREE_BYTES,
            "4 MiB freed, free heap {before} -> {after}"
        );
        trim();
    }
}
