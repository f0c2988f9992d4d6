//! Counters of one MQTT adapter, shared between its tasks and whoever reports them (logs now, the
//! metrics endpoint later). Relaxed atomics: each is a plain tally.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct MqttStats {
    /// Messages received from the broker.
    pub messages: AtomicU64,
    /// Field values handed to the core.
    pub readings: AtomicU64,
    /// Messages (per device they were for) with at least one problem: not JSON, a pointer that
    /// does not resolve, a value of the wrong type, over `max_payload`, an unknown availability
    /// payload.
    pub bad_payloads: AtomicU64,
    /// Messages on a topic no device uses (e.g. a fleet member that is not configured).
    pub unrouted: AtomicU64,
    /// Command messages the broker acknowledged.
    pub commands: AtomicU64,
    /// Successful connections (the first one and every reconnect).
    pub connects: AtomicU64,
    /// Failed connection attempts and lost connections.
    pub connection_failures: AtomicU64,
    /// Devices discovery reports now (a gauge).
    pub discovery_devices: AtomicU64,
    /// Announcements taken (a discovery config, a zigbee2mqtt device), new or changed.
    pub discovery_configs: AtomicU64,
    /// Announcements refused: not JSON, missing or invalid keys, over `max_payload`.
    pub discovery_bad_configs: AtomicU64,
    /// Discovery templates that did not compile or failed when rendered.
    pub discovery_template_errors: AtomicU64,
    /// Discovered devices not reported: excluded, over `discover_max_devices`, or configured.
    pub discovery_skipped: AtomicU64,
}

impl MqttStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn inc(counter: &AtomicU64) -> u64 {
        counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set(counter: &AtomicU64, n: u64) {
        counter.store(n, Ordering::Relaxed);
    }
}
