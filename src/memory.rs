//! Handing freed heap memory back to the system.
//!
//! glibc keeps freed pages for reuse. After a burst of work that allocated much and freed it
//! (parsing a large configuration, a flood of messages) the process would stay at its peak
//! resident size for good; on a small board that memory belongs to everyone else.

/// Returns free heap pages to the system (glibc's `malloc_trim`; nothing elsewhere).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; any argument is valid.
    unsafe {
        libc::malloc_trim(0);
    }
}
