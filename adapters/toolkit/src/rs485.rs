//! The RS-485 direction keys that adapters on a serial port (`serial`, `modbus-rtu`) share,
//! next to `port`:
//! `rs485` (false), `rts_on_send` (`high`), `rts_after_send` (`low`), `delay_before_send` and
//! `delay_after_send` (`"0ms"`, whole milliseconds up to 100 ms, the most the kernel keeps).
//! The `rts_*` and `delay_*` keys without `rs485 = true` do nothing: a warning, not an error.

use std::time::Duration;

use gateway_api::rs485::{Rs485, RtsLevel, MAX_RTS_DELAY};

use crate::diagnostic::{suggestion, Report};
use crate::entry::Entry;

/// Every RS-485 key, for an adapter type's [`crate::Keys::adapter`].
pub const KEYS: &[&str] = &[
    "rs485",
    "rts_on_send",
    "rts_after_send",
    "delay_before_send",
    "delay_after_send",
];

const LEVELS: &[&str] = &["high", "low"];

/// A key was wrong; the report already says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported;

/// The RS-485 settings from an adapter's own keys: `Ok(None)` when `rs485` is off, `Err` when
/// a key was wrong (already reported).
pub fn settings(own: &[Entry<'_>], rep: &mut Report<'_>) -> Result<Option<Rs485>, Reported> {
    let mut ok = true;
    let mut enabled = false;
    let mut s = Rs485::default();
    for e in own {
        let good = match e.key {
            "rs485" => e.boolean(rep).map(|b| enabled = b.value).is_some(),
            "rts_on_send" => level(e, rep).map(|l| s.rts_on_send = l).is_some(),
            "rts_after_send" => level(e, rep).map(|l| s.rts_after_send = l).is_some(),
            "delay_before_send" => delay(e, rep).map(|d| s.delay_before_send = d).is_some(),
            "delay_after_send" => delay(e, rep).map(|d| s.delay_after_send = d).is_some(),
            _ => true,
        };
        ok &= good;
    }
    if !enabled {
        for e in own.iter().filter(|e| KEYS[1..].contains(&e.key)) {
            rep.warn(
                &e.key_span,
                format!(
                    "`{}` has no effect without `rs485 = true` (the port is not in RS-485 mode)",
                    e.key
                ),
            );
        }
    }
    if !ok {
        return Err(Reported);
    }
    Ok(enabled.then_some(s))
}

/// `"high"` or `"low"`.
fn level(e: &Entry<'_>, rep: &mut Report<'_>) -> Option<RtsLevel> {
    let s = e.string(rep)?;
    match s.value.to_ascii_lowercase().as_str() {
        "high" => Some(RtsLevel::High),
        "low" => Some(RtsLevel::Low),
        other => {
            let hint = suggestion(other, LEVELS.iter().copied());
            rep.error(
                &s.span,
                format!(
                    "`{}` must be `high` or `low`, not `{}`{hint}",
                    e.key, s.value
                ),
            );
            None
        }
    }
}

/// A duration in whole milliseconds, at most [`MAX_RTS_DELAY`].
fn delay(e: &Entry<'_>, rep: &mut Report<'_>) -> Option<Duration> {
    let d = e.duration(rep)?;
    if d.value.subsec_nanos() % 1_000_000 != 0 {
        rep.error(
            &d.span,
            format!(
                "`{}` must be whole milliseconds (the kernel counts in ms), e.g. \"1ms\"",
                e.key
            ),
        );
        return None;
    }
    if d.value > MAX_RTS_DELAY {
        rep.error(
            &d.span,
            format!(
                "`{}` must be at most {} ms (the kernel cuts longer RTS delays to that)",
                e.key,
                MAX_RTS_DELAY.as_millis()
            ),
        );
        return None;
    }
    Some(d.value)
}

/// What `check` prints about a serial port: the adapter, the device, `baud` and the framing
/// (`8N1`), and the RS-485 settings when `rs485 = true`, ending with a newline.
pub fn port_line(
    adapter: &str,
    port: &str,
    baud: u32,
    framing: (u8, char, u8),
    rs485: Option<Rs485>,
) -> String {
    let (data_bits, parity, stop_bits) = framing;
    let mut out = format!("port: {adapter} {port} {baud} {data_bits}{parity}{stop_bits}");
    if let Some(rs485) = rs485 {
        out.push_str(&format!(", {rs485}"));
    }
    out.push('\n');
    out
}
