//! Counters (and the core's [`Summary`]) shared between the gateway's tasks, read by logs,
//! `STATUS=`, the metrics endpoint and the gateway's XEP-0323 status readout.
//!
//! The core increments them with relaxed atomics; readers take them at scrape time
//! (`src/metrics.rs` turns them into metrics).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use gateway_api::DeviceId;

use crate::config::{Config, DeviceConfig};

/// Device and upstream state in a few numbers, published by the core every second: for
/// `STATUS=`, logs and the metrics endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub devices: usize,
    pub online: usize,
    pub upstream_up: bool,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub readings: AtomicU64,
    pub stanzas_in: AtomicU64,
    pub stanzas_out: AtomicU64,
    /// Incoming stanzas that were well-formed XML but not valid stanzas.
    pub stanzas_malformed: AtomicU64,
    /// Incoming stanzas addressed to a domain the gateway does not serve (dropped unanswered).
    pub stanzas_misrouted: AtomicU64,
    /// Presence updates folded into a later one (`min_interval`, or a busy upstream).
    pub presence_coalesced: AtomicU64,
    /// Push readings that joined a push still waiting for the upstream (a busy server).
    pub pushes_joined: AtomicU64,
    /// Replies dropped because the upstream queue was full for too long.
    pub replies_dropped: AtomicU64,
    /// Upstream sessions established: the first connection and every reconnect, every link.
    pub upstream_connects: AtomicU64,
    /// Upstream sessions established again on a link that had been up before.
    pub upstream_reconnects: AtomicU64,
    pub access_refused: AtomicU64,
    /// Alert messages (fired, reminders, cleared), counted once per alert event.
    pub alert_messages: AtomicU64,
    /// Stanzas skipped unread: above `max_stanza_size` or nested too deeply.
    pub stanzas_rejected: AtomicU64,
    /// Stanzas refused because their sender was over its budget (flood).
    pub stanzas_shed: AtomicU64,
    /// Per-device counters, in configuration order. Written by [`Stats::set_devices`] (at start
    /// and whenever the device list changes), read at scrape time.
    devices: RwLock<Vec<Arc<DeviceStats>>>,
}

/// What is counted per device. The core holds an `Arc` per device index and updates it without
/// a lock; the metrics side reads the list.
#[derive(Debug)]
pub struct DeviceStats {
    pub device: DeviceId,
    /// The `id` of the device's adapter.
    pub adapter: Arc<str>,
    /// Readings the core received for this device.
    pub readings: AtomicU64,
    /// Whether its adapter reaches it (as last reported).
    pub online: AtomicBool,
}

impl Stats {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Sets the device list from `config` and returns its counters in configuration order
    /// (the core's device index). A device that was already listed keeps its counters, so a
    /// configuration reload does not reset them; devices no longer configured are dropped.
    pub fn set_devices(&self, config: &Config) -> Vec<Arc<DeviceStats>> {
        self.set_device_list(&config.devices)
    }

    /// [`set_devices`](Self::set_devices) for a device table that also holds devices the
    /// configuration does not list (discovered ones), in the core's index order.
    pub fn set_device_list<'a>(
        &self,
        devices: impl IntoIterator<Item = &'a DeviceConfig>,
    ) -> Vec<Arc<DeviceStats>> {
        // A poisoned lock only means a reader panicked mid-read; the list itself is intact.
        let mut list = self.devices.write().unwrap_or_else(|e| e.into_inner());
        let mut old: HashMap<(DeviceId, Arc<str>), Arc<DeviceStats>> = list
            .drain(..)
            .map(|s| ((s.device.clone(), s.adapter.clone()), s))
            .collect();
        let fresh: Vec<Arc<DeviceStats>> = devices
            .into_iter()
            .map(|d| {
                old.remove(&(d.id.clone(), d.adapter.clone()))
                    .unwrap_or_else(|| {
                        Arc::new(DeviceStats {
                            device: d.id.clone(),
                            adapter: d.adapter.clone(),
                            readings: AtomicU64::new(0),
                            online: AtomicBool::new(false),
                        })
                    })
            })
            .collect();
        *list = fresh.clone();
        fresh
    }

    /// Counters for a device added after the others (a discovered one): appended to the list,
    /// whose order stays the core's index order.
    pub fn add_device(&self, device: DeviceId, adapter: Arc<str>) -> Arc<DeviceStats> {
        let stats = Arc::new(DeviceStats {
            device,
            adapter,
            readings: AtomicU64::new(0),
            online: AtomicBool::new(false),
        });
        self.devices
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(stats.clone());
        stats
    }

    /// The per-device counters, in configuration order.
    pub fn devices(&self) -> Vec<Arc<DeviceStats>> {
        self.devices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
