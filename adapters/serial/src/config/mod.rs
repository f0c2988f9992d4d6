//! What one serial adapter, device and field are configured with, already validated.
//!
//! [`keys`] builds these from the adapter's keys in `gateway.toml` and reports every mistake
//! with its position; the adapter takes them as they are.

use std::time::Duration;

use gateway_api::rs485::Rs485;
use gateway_api::{DeviceId, FieldSpec};

use crate::parse::csv::CsvSyntax;
use crate::parse::kv::KvSyntax;
use crate::record::Selector;
use crate::template::Template;

pub mod keys;
pub use keys::Serial;

/// Default `max_line`: 4 KiB.
pub const DEFAULT_MAX_LINE: usize = 4096;
/// Default `baud`.
pub const DEFAULT_BAUD: u32 = 9600;
/// Default `ack_timeout`.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// The keys tried for a record's timestamp when `time_key` is not set (case-insensitive).
pub const DEFAULT_TIME_KEYS: &[&str] = &["TimeDate", "Timestamp", "Time", "DateTime"];

/// Parity, as `parity = "none" | "even" | "odd"`.
pub use gateway_api::serial_port::Parity;

/// One `[[adapter]]` of `type = "serial"`.
#[derive(Debug, Clone, PartialEq)]
pub struct SerialAdapterConfig {
    /// The device path, e.g. `/dev/ttyACM0` or `/dev/serial/by-id/usb-...`.
    pub port: String,
    pub baud: u32,
    /// 5 to 8.
    pub data_bits: u8,
    pub parity: Parity,
    /// 1 or 2.
    pub stop_bits: u8,
    /// The line ending bytes (`\n` unless configured); never empty.
    pub line_ending: Vec<u8>,
    /// The longest line kept, in bytes; longer ones are dropped and counted.
    pub max_line: usize,
    pub format: Format,
    /// Where a record's timestamp is looked for, in order; the first that parses wins.
    pub time_keys: Vec<Selector>,
    /// `rs485 = true`: the kernel drives RTS around every write (`None`: the port is left as
    /// it is).
    pub rs485: Option<Rs485>,
}

impl SerialAdapterConfig {
    /// A configuration with the defaults for everything but the port and the format.
    pub fn new(port: impl Into<String>, format: Format) -> Self {
        SerialAdapterConfig {
            port: port.into(),
            baud: DEFAULT_BAUD,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            line_ending: b"\n".to_vec(),
            max_line: DEFAULT_MAX_LINE,
            format,
            time_keys: DEFAULT_TIME_KEYS
                .iter()
                .map(|k| Selector::Key((*k).to_owned()))
                .collect(),
            rs485: None,
        }
    }
}

/// How each line is parsed (`format = ...`).
#[derive(Debug, Clone)]
pub enum Format {
    Json,
    Kv(KvSyntax),
    Xml,
    /// `pattern`, compiled.
    Regex(regex::Regex),
    Csv(CsvSyntax),
}

/// Equal formats parse every line alike: a `pattern` is compared by its text.
impl PartialEq for Format {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Format::Json, Format::Json) | (Format::Xml, Format::Xml) => true,
            (Format::Kv(a), Format::Kv(b)) => a == b,
            (Format::Regex(a), Format::Regex(b)) => a.as_str() == b.as_str(),
            (Format::Csv(a), Format::Csv(b)) => a == b,
            _ => false,
        }
    }
}

impl Format {
    /// The `format = ...` spelling.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Kv(_) => "kv",
            Format::Xml => "xml",
            Format::Regex(_) => "regex",
            Format::Csv(_) => "csv",
        }
    }
}

/// The serial settings of one `[[device]]`: which records are its own.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SerialDeviceConfig {
    /// `match = { key = "value", ... }`: a record is the device's when every key has that value
    /// (keys compared ignoring ASCII case, values exactly). Empty: every record is.
    pub matcher: Vec<(Selector, String)>,
}

/// The serial settings of one `[[device.field]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SerialFieldConfig {
    /// Where the field's value is in a record (`json` pointer, or `key`; default: the name).
    pub source: Selector,
    /// How a write is sent, for writable fields.
    pub command: Option<Command>,
}

/// A write: the line sent, and how the device confirms it.
#[derive(Debug, Clone)]
pub struct Command {
    pub template: Template,
    /// `ack_pattern`: a line matching it confirms the write; without, the write is confirmed
    /// once its bytes are written.
    pub ack: Option<regex::Regex>,
    /// How long to wait for the acknowledgement.
    pub ack_timeout: Duration,
}

/// Equal commands send the same line and wait for the same answer: an `ack_pattern` is
/// compared by its text.
impl PartialEq for Command {
    fn eq(&self, other: &Self) -> bool {
        self.template == other.template
            && self.ack.as_ref().map(regex::Regex::as_str)
                == other.ack.as_ref().map(regex::Regex::as_str)
            && self.ack_timeout == other.ack_timeout
    }
}

/// One device of the adapter, as the adapter runs it.
#[derive(Debug, Clone)]
pub struct SerialDevice {
    pub id: DeviceId,
    pub config: SerialDeviceConfig,
    pub fields: Vec<SerialField>,
}

/// One field of a device, as the adapter runs it.
#[derive(Debug, Clone)]
pub struct SerialField {
    pub spec: FieldSpec,
    pub config: SerialFieldConfig,
}
