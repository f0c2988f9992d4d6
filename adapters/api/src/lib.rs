//! The contract between the gateway core and its bus adapters.
//!
//! An adapter owns the I/O with one bus (a serial port, a Modbus line, an MQTT broker, a simulator).
//! It is started with an [`AdapterContext`], reports what it learns as [`AdapterEvent`]s into one
//! bounded channel (so back-pressure reaches the bus, never the XMPP side), and serves
//! [`Request`]s (reads and writes that come from XMPP) through the request channel.
//!
//! This crate has no I/O of its own (but for [`rs485::enable`], the one ioctl that the serial
//! and Modbus RTU adapters both need): adapters and the core both build on it.

mod backoff;
mod device;
mod discovery;
mod event;
// Shared by the fuzz targets (built with `--cfg fuzzing`) and the crates' tests (which turn on
// the `testing` feature): not part of the release build's API.
#[cfg(any(fuzzing, test, feature = "testing"))]
pub mod fuzzing;
pub mod metrics;
mod request;
pub mod rs485;
// The harness the adapter crates' own tests run their adapter in (the `testing` feature).
pub mod serial_port;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod value;

pub use backoff::Backoff;
pub use device::{DeviceId, DeviceIdError, FieldSpec, FieldType};
pub use discovery::DiscoveredDevice;
pub use event::{AdapterContext, AdapterEvent, EventSink, Quality, Reading};
pub use metrics::{BusStats, Metric, MetricKind, MetricSample, MetricsSource};
pub use request::{Request, RequestError, RequestKind};
pub use value::{Value, ValueError};

/// A bus adapter. The core builds one per `[[adapter]]` section and spawns `run`. An adapter
/// handles its own link failures (reconnecting with [`Backoff`]) and returns only once
/// `ctx.shutdown` is cancelled.
pub trait Adapter: Send + 'static {
    fn run(self, ctx: AdapterContext) -> impl std::future::Future<Output = ()> + Send;
}
