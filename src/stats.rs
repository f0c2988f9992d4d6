//! Counters shared between the gateway's tasks, read by logs, `STATUS=` and the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Stats {
    pub readings: AtomicU64,
    pub stanzas_in: AtomicU64,
    pub stanzas_out: AtomicU64,
    /// Incoming stanzas that were well-formed XML but not valid stanzas.
    pub stanzas_malformed: AtomicU64,
    /// Presence updates folded into a later one (`min_interval`, or a busy upstream).
    pub presence_coalesced: AtomicU64,
    /// Replies dropped because the upstream queue was full for too long.
    pub replies_dropped: AtomicU64,
    pub upstream_connects: AtomicU64,
    pub access_refused: AtomicU64,
}

impl Stats {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
