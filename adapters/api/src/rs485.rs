//! RS-485 direction control: the kernel's RS-485 mode on a serial port, for transceivers (most
//! Raspberry Pi RS-485 HATs) whose driver-enable pin is wired to the UART's RTS line.
//!
//! On a half-duplex RS-485 line the transceiver must be switched to "transmit" while a frame
//! goes out and back to "receive" right after the last bit, or the device's answer is lost.
//! Timing that from user space is too coarse; the kernel's serial core does it in the driver
//! when the port is put into RS-485 mode with the `TIOCSRS485` ioctl and a `struct
//! serial_rs485` (Linux `include/uapi/linux/serial.h`). USB RS-485 adapters switch direction
//! in hardware and their drivers reject the ioctl.
//!
//! The `libc` crate has the ioctl number (`TIOCSRS485`) but neither the struct nor its flags,
//! so [`KernelRs485`] spells the struct out; its layout is checked by a unit test.
//! Both the serial adapter and the Modbus RTU transport use this module.

use std::fmt;
use std::io;
use std::time::Duration;

/// The longest RTS delay the kernel keeps: larger values are cut to this (`RS485_MAX_RTS_DELAY`
/// in the kernel's serial core, in milliseconds).
pub const MAX_RTS_DELAY: Duration = Duration::from_millis(100);

/// `SER_RS485_ENABLED`: the port is in RS-485 mode.
pub const SER_RS485_ENABLED: u32 = 1 << 0;
/// `SER_RS485_RTS_ON_SEND`: RTS is high (logical 1) while sending.
pub const SER_RS485_RTS_ON_SEND: u32 = 1 << 1;
/// `SER_RS485_RTS_AFTER_SEND`: RTS is high after sending (while receiving).
pub const SER_RS485_RTS_AFTER_SEND: u32 = 1 << 2;

/// The level of the RTS line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtsLevel {
    High,
    Low,
}

impl RtsLevel {
    /// `high` or `low`, as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            RtsLevel::High => "high",
            RtsLevel::Low => "low",
        }
    }
}

/// How the kernel drives RTS around each transmission (`rs485 = true` and the `rts_*`,
/// `delay_*` keys). The defaults suit a transceiver whose driver-enable is active high.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rs485 {
    /// RTS while a frame is sent (`rts_on_send`, default high).
    pub rts_on_send: RtsLevel,
    /// RTS after the frame, while the line receives (`rts_after_send`, default low).
    pub rts_after_send: RtsLevel,
    /// RTS is set this long before the first bit (`delay_before_send`, whole milliseconds, at
    /// most [`MAX_RTS_DELAY`]).
    pub delay_before_send: Duration,
    /// RTS is held this long after the last bit (`delay_after_send`, same bounds).
    pub delay_after_send: Duration,
}

impl Default for Rs485 {
    fn default() -> Self {
        Rs485 {
            rts_on_send: RtsLevel::High,
            rts_after_send: RtsLevel::Low,
            delay_before_send: Duration::ZERO,
            delay_after_send: Duration::ZERO,
        }
    }
}

impl Rs485 {
    /// The `flags` word of `struct serial_rs485`.
    pub fn flags(&self) -> u32 {
        let mut flags = SER_RS485_ENABLED;
        if self.rts_on_send == RtsLevel::High {
            flags |= SER_RS485_RTS_ON_SEND;
        }
        if self.rts_after_send == RtsLevel::High {
            flags |= SER_RS485_RTS_AFTER_SEND;
        }
        flags
    }

    /// The struct handed to `TIOCSRS485`. Delays are whole milliseconds; the configuration
    /// loader has already bounded them to [`MAX_RTS_DELAY`].
    pub fn to_kernel(&self) -> KernelRs485 {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        KernelRs485 {
            flags: self.flags(),
            delay_rts_before_send: ms(self.delay_before_send),
            delay_rts_after_send: ms(self.delay_after_send),
            padding: [0; 5],
        }
    }
}

/// `RS-485: RTS high on send, low after, delays 0 ms before and 0 ms after`, as `check` prints it.
impl fmt::Display for Rs485 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RS-485: RTS {} on send, {} after, delays {} ms before and {} ms after",
            self.rts_on_send.name(),
            self.rts_after_send.name(),
            self.delay_before_send.as_millis(),
            self.delay_after_send.as_millis()
        )
    }
}

/// Linux's `struct serial_rs485`: 32 bytes, three `u32` then five `u32` of padding (the kernel
/// reads the padding as addressing fields only when their flags are set, which we never do).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelRs485 {
    pub flags: u32,
    pub delay_rts_before_send: u32,
    pub delay_rts_after_send: u32,
    pub padding: [u32; 5],
}

/// Why a port could not be put into RS-485 mode.
#[derive(Debug, thiserror::Error)]
pub enum Rs485Error {
    /// The port's driver has no RS-485 mode (a pseudo-terminal, a USB adapter that switches
    /// direction in hardware, a UART driver without support).
    #[error("the port's driver has no RS-485 mode ({0})")]
    Unsupported(io::Error),
    /// Any other failure of the ioctl.
    #[error("cannot switch the port to RS-485 mode: {0}")]
    Failed(io::Error),
}

/// Puts the open serial port `port` into RS-485 mode with `settings`.
#[cfg(target_os = "linux")]
pub fn enable(port: &impl std::os::fd::AsRawFd, settings: &Rs485) -> Result<(), Rs485Error> {
    let mut conf = settings.to_kernel();
    // SAFETY: `port` is borrowed, so its descriptor stays open during the call, and `conf` is
    // a live, writable `struct serial_rs485` (the kernel writes back the settings it applied).
    let rc = unsafe {
        libc::ioctl(
            port.as_raw_fd(),
            libc::TIOCSRS485,
            &mut conf as *mut KernelRs485,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    Err(classify(error))
}

/// RS-485 mode exists only on Linux.
#[cfg(not(target_os = "linux"))]
pub fn enable(_port: &impl std::os::fd::AsRawFd, _settings: &Rs485) -> Result<(), Rs485Error> {
    Err(Rs485Error::Unsupported(io::Error::from(
        io::ErrorKind::Unsupported,
    )))
}

/// ENOTTY (no such ioctl for this driver) and EINVAL (the driver refuses RS-485) mean the port
/// cannot do it at all; anything else is a failure of this attempt.
fn classify(error: io::Error) -> Rs485Error {
    match error.raw_os_error() {
        Some(libc::ENOTTY | libc::EINVAL | libc::EOPNOTSUPP) => Rs485Error::Unsupported(error),
        _ => Rs485Error::Failed(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_struct_is_the_kernels_32_bytes() {
        assert_eq!(std::mem::size_of::<KernelRs485>(), 32);
        assert_eq!(std::mem::align_of::<KernelRs485>(), 4);
        assert_eq!(std::mem::offset_of!(KernelRs485, delay_rts_before_send), 4);
        assert_eq!(std::mem::offset_of!(KernelRs485, delay_rts_after_send), 8);
        assert_eq!(std::mem::offset_of!(KernelRs485, padding), 12);
    }

    #[test]
    fn flags_follow_the_rts_levels() {
        // The default: RTS high while sending, low after (flags 0b011).
        assert_eq!(Rs485::default().flags(), 0b011);
        let inverted = Rs485 {
            rts_on_send: RtsLevel::Low,
            rts_after_send: RtsLevel::High,
            ..Rs485::default()
        };
        assert_eq!(
            inverted.flags(),
            SER_RS485_ENABLED | SER_RS485_RTS_AFTER_SEND
        );
        let both_high = Rs485 {
            rts_after_send: RtsLevel::High,
            ..Rs485::default()
        };
        assert_eq!(both_high.flags(), 0b111);
    }

    #[test]
    fn delays_are_whole_milliseconds() {
        let s = Rs485 {
            delay_before_send: Duration::from_millis(3),
            delay_after_send: MAX_RTS_DELAY,
            ..Rs485::default()
        };
        assert_eq!(
            s.to_kernel(),
            KernelRs485 {
                flags: 0b011,
                delay_rts_before_send: 3,
                delay_rts_after_send: 100,
                padding: [0; 5],
            }
        );
    }

    #[test]
    fn describes_itself_for_check() {
        assert_eq!(
            Rs485::default().to_string(),
            "RS-485: RTS high on send, low after, delays 0 ms before and 0 ms after"
        );
    }

    #[test]
    fn unsupported_drivers_are_told_apart() {
        for errno in [libc::ENOTTY, libc::EINVAL] {
            assert!(matches!(
                classify(io::Error::from_raw_os_error(errno)),
                Rs485Error::Unsupported(_)
            ));
        }
        assert!(matches!(
            classify(io::Error::from_raw_os_error(libc::EIO)),
            Rs485Error::Failed(_)
        ));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_pseudo_terminal_has_no_rs485_mode() {
        use std::os::fd::{FromRawFd, OwnedFd};
        // SAFETY: posix_openpt returns a new descriptor we own, or -1.
        let raw = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
        assert!(raw >= 0, "{}", io::Error::last_os_error());
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let pty = unsafe { OwnedFd::from_raw_fd(raw) };
        let e = enable(&pty, &Rs485::default()).unwrap_err();
        assert!(matches!(e, Rs485Error::Unsupported(_)), "{e}");
        assert!(e
            .to_string()
            .starts_with("the port's driver has no RS-485 mode"));
    }
}
