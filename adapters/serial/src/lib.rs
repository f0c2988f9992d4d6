//! The serial line adapter: microcontrollers and sensor boxes that print one reading per line
//! on a UART (Arduino, ESP, weather stations, energy meters).
//!
//! One adapter owns one port. It opens the port ([`SystemPorts`], on tokio-serial), reads it
//! line by line, parses each line in the configured format (JSON, `key=value`, one XML element,
//! a regex, CSV) and routes the record to the devices whose `match` it satisfies; each of their
//! fields found in the record becomes a reading. Writes from XMPP are sent as the field's
//! `command_template` and confirmed by an optional `ack_pattern`. When the port cannot be opened
//! or is lost (USB unplugged, pty closed), every device of the port goes offline with the reason
//! and the port is reopened with the shared [`gateway_api::Backoff`]; requests are answered
//! meanwhile.
//!
//! Modules: [`config`] (validated settings), [`framer`] (bytes to bounded lines), [`parse`]
//! (one pure parser per format), [`record`] (looking values up in a parsed line), [`time`]
//! (device timestamps), [`route`] (records to readings), [`template`] (command templates),
//! [`stats`] (counters, rate-limited warnings), `input` (the read pipeline), `session` (one
//! open port: the I/O loop).

pub mod config;
pub mod framer;
mod input;
pub mod parse;
pub mod record;
pub mod route;
mod session;
pub mod stats;
pub mod template;
pub mod time;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use gateway_api::{Adapter, AdapterContext, AdapterEvent, Backoff, RequestError};
use tokio::time::Instant;
use tracing::{debug, info, warn};

pub use config::{
    Command, Format, Parity, SerialAdapterConfig, SerialDevice, SerialDeviceConfig, SerialField,
    SerialFieldConfig,
};
pub use record::Selector;
pub use session::Port;
pub use stats::{SerialStats, StatsSnapshot};
pub use template::Template;

use input::Input;
use session::{End, Link, State};

/// Opens the port, once per attempt.
pub trait Opener: Send + 'static {
    type Port: Port;
    /// Opens the port; an error is shown to people as the reason the devices are offline.
    fn open(&mut self, config: &SerialAdapterConfig) -> std::io::Result<Self::Port>;
}

/// Real serial ports, through tokio-serial.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemPorts;

impl Opener for SystemPorts {
    type Port = tokio_serial::SerialStream;

    fn open(&mut self, c: &SerialAdapterConfig) -> std::io::Result<tokio_serial::SerialStream> {
        use tokio_serial::{DataBits, FlowControl, SerialPort, SerialPortBuilderExt, StopBits};
        let data_bits = match c.data_bits {
            5 => DataBits::Five,
            6 => DataBits::Six,
            7 => DataBits::Seven,
            _ => DataBits::Eight,
        };
        let parity = match c.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        };
        let stop_bits = if c.stop_bits == 2 {
            StopBits::Two
        } else {
            StopBits::One
        };
        let port = tokio_serial::new(&c.port, c.baud)
            .data_bits(data_bits)
            .parity(parity)
            .stop_bits(stop_bits)
            .flow_control(FlowControl::None)
            .open_native_async()
            .map_err(std::io::Error::from)?;
        // What the driver buffered before we opened is stale; a failure here is harmless (a
        // pseudo-terminal may not support it).
        let _ = port.clear(tokio_serial::ClearBuffer::Input);
        Ok(port)
    }
}

/// The serial adapter: one port and the devices on it.
pub struct SerialAdapter<O = SystemPorts> {
    config: SerialAdapterConfig,
    devices: Vec<SerialDevice>,
    opener: O,
    /// Shared with whoever wants to read the counters (a metrics endpoint, tests).
    stats: Arc<SerialStats>,
}

impl SerialAdapter<SystemPorts> {
    pub fn new(config: SerialAdapterConfig, devices: Vec<SerialDevice>) -> Self {
        Self::with_opener(config, devices, SystemPorts)
    }
}

impl<O: Opener> SerialAdapter<O> {
    /// An adapter that opens its port with `opener` (tests use an in-memory one).
    pub fn with_opener(config: SerialAdapterConfig, devices: Vec<SerialDevice>, opener: O) -> Self {
        SerialAdapter {
            config,
            devices,
            opener,
            stats: Arc::new(SerialStats::default()),
        }
    }

    /// The adapter's counters; they keep counting while it runs.
    pub fn stats(&self) -> Arc<SerialStats> {
        self.stats.clone()
    }
}

impl<O: Opener> Adapter for SerialAdapter<O> {
    async fn run(self, ctx: AdapterContext) {
        let SerialAdapter {
            config,
            devices,
            mut opener,
            stats,
        } = self;
        let AdapterContext {
            adapter,
            events,
            requests,
            shutdown,
        } = ctx;
        let port: Arc<str> = Arc::from(config.port.as_str());
        debug!(adapter = %adapter, port = %port, devices = devices.len(), format = config.format.name(),
            "Serial adapter started");
        let mut link = Link {
            adapter: adapter.clone(),
            events,
            requests,
            requests_open: true,
            shutdown,
            out: VecDeque::new(),
        };
        let mut st = State {
            port: port.clone(),
            input: Input::new(adapter.clone(), &config, &devices, stats.clone()),
            last: devices.iter().map(|d| vec![None; d.fields.len()]).collect(),
            devices,
            stats,
        };
        let mut backoff = Backoff::default();
        // Why the devices are offline now (`None` while the port is open, and before the
        // first attempt).
        let mut down: Option<String> = None;
        // A warning was logged for the current outage: further failures are logged at DEBUG.
        let mut warned = false;
        loop {
            if link.shutdown.is_cancelled() {
                break;
            }
            match opener.open(&config) {
                Ok(p) => {
                    backoff.connected();
                    SerialStats::inc(&st.stats.opens);
                    if warned {
                        info!(adapter = %adapter, port = %port, "Serial port is back");
                    } else {
                        debug!(adapter = %adapter, port = %port, "Serial port open");
                    }
                    down = None;
                    for d in &st.devices {
                        link.out.push_back(AdapterEvent::Online {
                            device: d.id.clone(),
                        });
                    }
                    match session::run(p, &mut link, &mut st).await {
                        End::Stop => break,
                        End::Lost(why) => {
                            SerialStats::inc(&st.stats.losses);
                            warn!(adapter = %adapter, port = %port, error = %why,
                                "Lost the serial port; reopening it with back-off");
                            warned = true;
                            set_offline(&mut link, &st, &mut down, format!("serial port {port} lost: {why}"));
                        }
                    }
                }
                Err(e) => {
                    if warned {
                        debug!(adapter = %adapter, port = %port, error = %e, "Serial port still cannot be opened");
                    } else {
                        warn!(adapter = %adapter, port = %port, error = %e,
                            "Cannot open the serial port; retrying with back-off");
                        warned = true;
                    }
                    set_offline(&mut link, &st, &mut down, format!("cannot open serial port {port}: {e}"));
                }
            }
            let delay = backoff.failed();
            if !idle(&mut link, delay, down.as_deref().unwrap_or("the serial port is closed")).await {
                break;
            }
        }
        debug!(adapter = %adapter, port = %port, stats = ?st.stats.snapshot(), "Serial adapter stopped");
    }
}

/// Marks every device offline with `reason`, unless they already are with that very reason.
fn set_offline(link: &mut Link, st: &State, down: &mut Option<String>, reason: String) {
    if down.as_deref() == Some(reason.as_str()) {
        return;
    }
    for d in &st.devices {
        link.out.push_back(AdapterEvent::Offline {
            device: d.id.clone(),
            reason: reason.clone(),
        });
    }
    *down = Some(reason);
}

/// Waits `delay` while the port is closed: events still flow to the core and requests are
/// answered as unreachable. Returns `false` when the adapter must stop.
async fn idle(link: &mut Link, delay: Duration, reason: &str) -> bool {
    let until = Instant::now() + delay;
    loop {
        tokio::select! {
            biased;
            () = link.shutdown.cancelled() => return false,
            req = link.requests.recv(), if link.requests_open => match req {
                Some(req) => {
                    let _ = req.reply.send(Err(RequestError::Unreachable(reason.to_owned())));
                }
                None => link.requests_open = false,
            },
            permit = link.events.reserve(), if !link.out.is_empty() => match (permit, link.out.pop_front()) {
                (Ok(permit), Some(ev)) => permit.send(ev),
                _ => return false,
            },
            () = tokio::time::sleep_until(until) => return true,
        }
    }
}
