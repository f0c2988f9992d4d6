//! Devices an adapter learns of from the bus itself rather than from the configuration: Home
//! Assistant MQTT discovery, zigbee2mqtt's device list, and whatever announces itself next.
//!
//! The adapter owns the bus side (parsing announcements, naming, limits, reading and writing
//! the device). It tells the core what exists with [`AdapterEvent::DeviceFound`] and
//! [`AdapterEvent::DeviceGone`]; the core gives each found device its JID, announces it, answers
//! readouts and control for it, and routes reads and writes back to the adapter that found it.
//!
//! [`AdapterEvent::DeviceFound`]: crate::AdapterEvent::DeviceFound
//! [`AdapterEvent::DeviceGone`]: crate::AdapterEvent::DeviceGone

use std::sync::Arc;

use crate::{DeviceId, FieldSpec};

/// One device an adapter found, as complete as the adapter knows it now. A later
/// `DeviceFound` with the same id replaces it whole (an entity added or removed, a rename of a
/// field's unit); values of fields that stay are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveredDevice {
    /// Its JID localpart, already made unique among the adapter's discovered devices. A device
    /// configured with the same id wins: the core ignores the discovered one.
    pub id: DeviceId,
    /// The configured id of the adapter that found it: reads and writes for it go there.
    pub adapter: Arc<str>,
    /// Human name (Home Assistant's device name, zigbee2mqtt's friendly name).
    pub name: String,
    /// Its fields, in a stable order (never empty: a device with no fields left is gone).
    pub fields: Vec<FieldSpec>,
    /// Which announcement it came from, for logs and listings: `"homeassistant"`, `"zigbee2mqtt"`.
    pub source: Arc<str>,
    /// Maker and model where the announcement gives them, for people (disco, listings).
    pub manufacturer: Option<String>,
    pub model: Option<String>,
}
