//! What adapters report to the core, and the context they run in.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{DeviceId, DiscoveredDevice, Request, Value};

/// How far a reading can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quality {
    /// Read from the device as it is.
    #[default]
    Good,
    /// Read, but the device flagged it (estimate, out of range, sensor warning).
    Uncertain,
    /// The device refused or failed this point (e.g. a Modbus exception); the value is the last good one.
    Bad,
}

/// One value of one field of one device at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub device: DeviceId,
    pub field: Arc<str>,
    pub value: Value,
    pub timestamp: DateTime<Utc>,
    pub quality: Quality,
}

impl Reading {
    /// A good reading taken now.
    pub fn now(device: DeviceId, field: Arc<str>, value: Value) -> Self {
        Reading {
            device,
            field,
            value,
            timestamp: Utc::now(),
            quality: Quality::Good,
        }
    }
}

/// Everything an adapter tells the core.
#[derive(Debug, Clone, PartialEq)]
pub enum AdapterEvent {
    /// The readings of one message, record or poll of one device (never empty): they were taken
    /// together, so they are stored, published and pushed together (one headline, not one per field).
    Readings(Vec<Reading>),
    /// The adapter reaches the device (again).
    Online { device: DeviceId },
    /// The adapter cannot reach the device; `reason` is shown to people in the presence status.
    Offline { device: DeviceId, reason: String },
    /// The adapter found a device on its bus (discovery), or what it knows of one changed.
    /// Sent before any other event about that device.
    DeviceFound(DiscoveredDevice),
    /// A device the adapter found earlier no longer exists on the bus (its announcement was
    /// withdrawn): it says goodbye and leaves the gateway.
    DeviceGone { device: DeviceId },
}

impl AdapterEvent {
    /// One event per reading (a batch split up); other events as they are. For code that looks
    /// at readings one at a time, such as adapter tests.
    pub fn split(self) -> Vec<AdapterEvent> {
        match self {
            AdapterEvent::Readings(rs) => rs
                .into_iter()
                .map(|r| AdapterEvent::Readings(vec![r]))
                .collect(),
            other => vec![other],
        }
    }
}

/// The sending half of the core's event channel. Cloned freely by an adapter's tasks.
pub type EventSink = mpsc::Sender<AdapterEvent>;

/// What an adapter gets when it starts.
pub struct AdapterContext {
    /// The adapter's configured id, for logs and metrics.
    pub adapter: Arc<str>,
    /// Bounded: when the core is behind, `send().await` waits, and the wait reaches the bus.
    /// Closed by the core when it stops.
    pub events: EventSink,
    /// Reads and writes from XMPP for this adapter's devices. The core holds the sender and drops
    /// it at shutdown or when the adapter is replaced.
    pub requests: mpsc::Receiver<Request>,
    /// Cancelled by the core at shutdown; the adapter returns promptly after.
    pub shutdown: CancellationToken,
}
