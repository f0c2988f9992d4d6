//! The adapter types this build knows: one line each.
//!
//! Each adapter crate implements [`gateway_toolkit::AdapterType`]: its keys, their validation,
//! its `check` lines, how it starts. Adding an adapter is a crate under `adapters/`, its
//! dependency in `Cargo.toml`, and its line in [`TYPES`] (see docs/adding-an-adapter.md). The
//! order of the list is the order in which messages name the types.

use gateway_toolkit::AdapterType;

/// Every registered adapter type.
#[rustfmt::skip] // One adapter per line, so that adding one is adding a line.
pub static TYPES: &[&dyn AdapterType] = &[
    &gateway_mqtt::Mqtt,
    &gateway_modbus::Modbus,
    &gateway_serial::Serial,
    &gateway_simulated::Simulated,
    &gateway_linux_sensors::LinuxSensors,
];

/// The registered type answering to `type = "name"`, with the name as it is spelled there.
pub fn find(name: &str) -> Option<(&'static str, &'static dyn AdapterType)> {
    TYPES.iter().find_map(|t| {
        let spelled = t.names().iter().find(|n| **n == name)?;
        Some((*spelled, *t))
    })
}
