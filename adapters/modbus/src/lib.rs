//! Modbus RTU (RS-485) and Modbus TCP for the gateway: every unit on a bus becomes a device.
//!
//! Modules, from the wire up:
//! - `link`: opening the serial port or TCP connection (tokio-modbus, tokio-serial) and
//!   sorting each transaction's result into answer, exception, timeout, garbled or link lost;
//! - [`codec`]: registers ↔ values (data types, byte orders, `bit`, scale and offset, range
//!   checks for writes), pure;
//! - [`plan`](mod@plan): a device's points → the fewest read requests, pure;
//! - `bus`: the one task per bus that polls, serves writes ahead of polls, isolates a dead
//!   unit, and reopens the link with back-off;
//! - [`stats`]: counters per bus and device, readable while the adapter runs;
//! - [`config`]: the validated settings, and the adapter's keys and registration ([`config::keys`]);
//! - [`fuzzing`]: the body of the `modbus_decode` fuzz target in `fuzz/`.
//!
//! One [`ModbusAdapter`] serves one `[[adapter]]` (one serial line or one TCP address) and all
//! the devices on it.

pub mod codec;
pub mod config;
pub mod fuzzing;
pub mod plan;
pub mod stats;

mod bus;
mod link;

use std::sync::Arc;

use gateway_api::{Adapter, AdapterContext};

pub use codec::{ByteOrder, DataType, Encoding};
pub use config::{
    BusSettings, DeviceSettings, Framing, Modbus, ModbusDevice, ModbusField, Parity, Point,
    RegisterKind, SerialSettings, Transport,
};
pub use link::exception_name;
pub use plan::{plan, Limits, ReadRequest};
pub use stats::{BusStats, Counters, Snapshot};

/// One Modbus bus and its devices.
#[derive(Debug, Clone)]
pub struct ModbusAdapter {
    settings: BusSettings,
    devices: Vec<ModbusDevice>,
    /// Shared with whoever asked for [`ModbusAdapter::stats`] before the adapter was spawned.
    stats: Arc<BusStats>,
}

impl ModbusAdapter {
    /// `name` is the adapter id (it names the bus in logs, presence reasons and stats).
    pub fn new(name: &str, settings: BusSettings, devices: Vec<ModbusDevice>) -> Self {
        let stats = Arc::new(BusStats::new(
            Arc::from(name),
            devices.iter().map(|d| d.id.clone()),
        ));
        ModbusAdapter {
            settings,
            devices,
            stats,
        }
    }

    /// The bus's counters; they keep counting while the adapter runs.
    pub fn stats(&self) -> Arc<BusStats> {
        self.stats.clone()
    }

    /// The read requests each device's poll makes, as `check` prints them.
    pub fn request_plan(device: &ModbusDevice) -> Vec<ReadRequest> {
        let points: Vec<Point> = device.fields.iter().map(|f| f.point.clone()).collect();
        plan(
            &points,
            Limits {
                max_gap: device.settings.max_gap,
                max_registers: device.settings.max_registers_per_request,
            },
            |_| true,
        )
    }
}

impl Adapter for ModbusAdapter {
    async fn run(self, ctx: AdapterContext) {
        let connector = link::RealConnector::new(
            self.settings.transport.clone(),
            ctx.adapter.clone(),
            self.stats.clone(),
        );
        bus::Bus::new(self.settings, connector, self.devices, self.stats, ctx)
            .run()
            .await;
    }
}
