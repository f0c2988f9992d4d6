//! What one Modbus bus, its devices and their points need: the adapter's own configuration
//! types, already validated by [`keys`] (so the adapter never re-checks them).

use std::fmt;
use std::time::Duration;

use gateway_api::rs485::Rs485;
use gateway_api::{DeviceId, FieldSpec};

use crate::codec::Encoding;

pub mod keys;
pub use keys::Modbus;

/// Defaults, shared with the keys ([`keys`]) and the README.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
pub const DEFAULT_BAUD: u32 = 9600;
pub const DEFAULT_TCP_PORT: u16 = 502;
pub const DEFAULT_UNIT: u8 = 1;
pub const DEFAULT_MAX_GAP: u16 = 10;
pub const DEFAULT_BACKOFF_AFTER: u32 = 3;
/// The protocol's limits for one read request (FC3/FC4 and FC1/FC2).
pub const MAX_REGISTERS: u16 = 125;
pub const MAX_BITS: u16 = 2000;
/// The protocol's limit for one FC16 write.
pub const MAX_WRITE_REGISTERS: u16 = 123;

/// The four Modbus tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RegisterKind {
    /// Read/write bits (FC1, FC5).
    Coil,
    /// Read-only bits (FC2).
    Discrete,
    /// Read/write 16-bit registers (FC3, FC6, FC16).
    Holding,
    /// Read-only 16-bit registers (FC4).
    Input,
}

impl RegisterKind {
    pub const NAMES: &'static [&'static str] = &["coil", "discrete", "holding", "input"];

    /// `coil`, `discrete` (or `discrete_input`), `holding`, `input`; case-insensitive, and the
    /// plural and `_register` forms (`coils`, `holding_register`) too.
    pub fn parse(text: &str) -> Option<RegisterKind> {
        let lower = text.trim().to_ascii_lowercase();
        let base = lower
            .strip_suffix("_registers")
            .or_else(|| lower.strip_suffix("_register"))
            .unwrap_or(&lower);
        match base {
            "coil" | "coils" => Some(RegisterKind::Coil),
            "discrete" | "discrete_input" | "discrete_inputs" => Some(RegisterKind::Discrete),
            "holding" => Some(RegisterKind::Holding),
            "input" => Some(RegisterKind::Input),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RegisterKind::Coil => "coil",
            RegisterKind::Discrete => "discrete",
            RegisterKind::Holding => "holding",
            RegisterKind::Input => "input",
        }
    }

    /// Coils and discrete inputs are bits; the others 16-bit registers.
    pub fn is_bits(self) -> bool {
        matches!(self, RegisterKind::Coil | RegisterKind::Discrete)
    }

    /// Whether the protocol lets a client write it.
    pub fn is_writable(self) -> bool {
        matches!(self, RegisterKind::Coil | RegisterKind::Holding)
    }
}

impl fmt::Display for RegisterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub use gateway_api::serial_port::Parity;

/// An RS-485 (or RS-232) line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialSettings {
    /// `/dev/ttyUSB0`, `/dev/serial/by-id/...`.
    pub port: String,
    pub baud: u32,
    /// 5 to 8.
    pub data_bits: u8,
    pub parity: Parity,
    /// 1 or 2.
    pub stop_bits: u8,
    /// `rs485 = true`: the kernel drives RTS around every request (`None`: the port is left as
    /// it is).
    pub rs485: Option<Rs485>,
}

/// How requests are framed on a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// Modbus TCP (MBAP header).
    #[default]
    Tcp,
    /// RTU frames (with CRC) over TCP, as serial device servers speak.
    Rtu,
}

/// Where the bus is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Rtu(SerialSettings),
    Tcp {
        /// `host:port`; resolved at every connect.
        address: String,
        framing: Framing,
    },
}

impl Transport {
    /// The `type = ...` of the adapter.
    pub fn type_name(&self) -> &'static str {
        match self {
            Transport::Rtu(_) => "modbus-rtu",
            Transport::Tcp { .. } => "modbus-tcp",
        }
    }

    /// The port or address, for messages.
    pub fn endpoint(&self) -> &str {
        match self {
            Transport::Rtu(s) => &s.port,
            Transport::Tcp { address, .. } => address,
        }
    }
}

/// One `[[adapter]]` of type `modbus-rtu` or `modbus-tcp`.
#[derive(Debug, Clone, PartialEq)]
pub struct BusSettings {
    pub transport: Transport,
    /// How long one request may take before it counts as unanswered.
    pub timeout: Duration,
    /// Silence kept between two requests, for slow devices (RTU also always keeps the
    /// protocol's 3.5 character times).
    pub delay_between_requests: Duration,
}

/// A device's own settings (`[[device]]` keys).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSettings {
    /// Modbus unit (slave) id: 1–247 on RTU; 0–255 on TCP.
    pub unit: u8,
    /// Interval between two reads of all its points.
    pub poll: Duration,
    /// Points of the same kind at most this many addresses apart share a request.
    pub max_gap: u16,
    /// Registers per read request (≤ 125); bits are always ≤ 2000.
    pub max_registers_per_request: u16,
    /// After this many failed polls in a row the device is polled less often.
    pub backoff_after: u32,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        DeviceSettings {
            unit: DEFAULT_UNIT,
            poll: DEFAULT_POLL,
            max_gap: DEFAULT_MAX_GAP,
            max_registers_per_request: MAX_REGISTERS,
            backoff_after: DEFAULT_BACKOFF_AFTER,
        }
    }
}

/// Where a field lives on the device and how it is encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub kind: RegisterKind,
    /// 0-based address of its first register or bit.
    pub address: u16,
    pub encoding: Encoding,
}

impl Point {
    /// Addresses it occupies: one for a bit, else the data type's registers.
    pub fn span(&self) -> u16 {
        if self.kind.is_bits() {
            1
        } else {
            self.encoding.registers()
        }
    }
}

/// One field of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusField {
    pub spec: FieldSpec,
    pub point: Point,
}

/// One device on the bus.
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusDevice {
    pub id: DeviceId,
    pub settings: DeviceSettings,
    pub fields: Vec<ModbusField>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_kind_spellings() {
        for (text, kind) in [
            ("coil", RegisterKind::Coil),
            ("Coils", RegisterKind::Coil),
            ("discrete", RegisterKind::Discrete),
            ("discrete_input", RegisterKind::Discrete),
            ("holding", RegisterKind::Holding),
            ("holding_registers", RegisterKind::Holding),
            ("INPUT", RegisterKind::Input),
            ("input_register", RegisterKind::Input),
        ] {
            assert_eq!(RegisterKind::parse(text), Some(kind), "{text}");
        }
        assert_eq!(RegisterKind::parse("register"), None);
        assert!(RegisterKind::Coil.is_bits() && RegisterKind::Coil.is_writable());
        assert!(!RegisterKind::Input.is_writable());
    }
}
