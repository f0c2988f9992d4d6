//! Opening a serial port with the line settings the configuration names, for the adapters on
//! one (`serial`, `modbus-rtu`): `baud`, `data_bits`, `parity` and `stop_bits` become a
//! tokio-serial [`SerialPortBuilder`], without flow control (no device these adapters read
//! uses it, and a two-wire RS-485 line has no lines for it). RS-485 direction control is a
//! separate step after the open (`gateway_api::rs485::enable`): each adapter reports its
//! failure its own way.

use std::io;

use gateway_api::serial_port::Parity;
use tokio_serial::{DataBits, FlowControl, SerialPort, SerialPortBuilder, SerialStream, StopBits};

/// A port's line settings, as the adapters' configurations hold them (the loader has checked
/// the ranges: 5 to 8 data bits, 1 or 2 stop bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSettings<'a> {
    /// The device path, e.g. `/dev/ttyUSB0`.
    pub port: &'a str,
    pub baud: u32,
    pub data_bits: u8,
    pub parity: Parity,
    pub stop_bits: u8,
}

impl LineSettings<'_> {
    /// The tokio-serial builder for these settings.
    pub fn builder(&self) -> SerialPortBuilder {
        tokio_serial::new(self.port, self.baud)
            .data_bits(data_bits(self.data_bits))
            .parity(parity(self.parity))
            .stop_bits(stop_bits(self.stop_bits))
            .flow_control(FlowControl::None)
    }

    /// Opens the port. What the driver buffered before the open is stale (a late answer, half
    /// a line) and is dropped; a failure to drop it is harmless (a pseudo-terminal may not
    /// support it).
    pub fn open(&self) -> io::Result<SerialStream> {
        let port = SerialStream::open(&self.builder()).map_err(io::Error::from)?;
        let _ = port.clear(tokio_serial::ClearBuffer::Input);
        Ok(port)
    }
}

/// 5, 6 and 7 as they are; anything else is 8 (the loader allows 5 to 8).
fn data_bits(bits: u8) -> DataBits {
    match bits {
        5 => DataBits::Five,
        6 => DataBits::Six,
        7 => DataBits::Seven,
        _ => DataBits::Eight,
    }
}

fn parity(p: Parity) -> tokio_serial::Parity {
    match p {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    }
}

/// 2 is two; anything else is one (the loader allows 1 or 2).
fn stop_bits(bits: u8) -> StopBits {
    if bits == 2 {
        StopBits::Two
    } else {
        StopBits::One
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_framing_the_loader_allows_maps_to_its_own_setting() {
        let bits: Vec<DataBits> = (5..=8).map(data_bits).collect();
        assert_eq!(
            bits,
            [
                DataBits::Five,
                DataBits::Six,
                DataBits::Seven,
                DataBits::Eight
            ]
        );
        assert_eq!(stop_bits(1), StopBits::One);
        assert_eq!(stop_bits(2), StopBits::Two);
        assert_eq!(parity(Parity::None), tokio_serial::Parity::None);
        assert_eq!(parity(Parity::Even), tokio_serial::Parity::Even);
        assert_eq!(parity(Parity::Odd), tokio_serial::Parity::Odd);
    }

    #[test]
    fn a_missing_port_is_an_error_not_a_panic() {
        let s = LineSettings {
            port: "/dev/no-such-serial-port",
            baud: 9600,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
        };
        assert!(s.open().is_err());
    }
}
