//! The RS-485 direction keys that a `serial` and a `modbus-rtu` adapter share, next to `port`:
//! `rs485` (false), `rts_on_send` (`high`), `rts_after_send` (`low`), `delay_before_send` and
//! `delay_after_send` (`"0ms"`, whole milliseconds up to 100 ms, the most the kernel keeps).
//! The `rts_*` and `delay_*` keys without `rs485 = true` do nothing: a warning, not an error.

use std::time::Duration;

use gateway_api::rs485::{Rs485, RtsLevel, MAX_RTS_DELAY};

use super::diagnostic::{suggestion, Report};
use super::raw::Entry;

/// Every RS-485 key, as the key lists in `raw` name them.
pub(super) const KEYS: &[&str] = &[
    "rs485",
    "rts_on_send",
    "rts_after_send",
    "delay_before_send",
    "delay_after_send",
];

const LEVELS: &[&str] = &["high", "low"];

/// The RS-485 settings from an adapter's own keys: `Ok(None)` when `rs485` is off, `Err(())`
/// when a key was wrong (already reported).
pub(super) fn settings(own: &[Entry<'_>], rep: &mut Report<'_>) -> Result<Option<Rs485>, ()> {
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
        return Err(());
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

#[cfg(test)]
mod tests {
    use crate::config::validate::tests::{errors, ok, warnings};
    use crate::config::AdapterKind;
    use gateway_api::rs485::{Rs485, RtsLevel};
    use std::time::Duration;

    const XMPP: &str = "[xmpp]\ndomain = \"s.example.org\"\nsecret = \"s\"\n";

    fn rtu(keys: &str) -> String {
        format!("{XMPP}[[adapter]]\nid = \"bus\"\ntype = \"modbus-rtu\"\nport = \"/dev/null\"\nbaud = 9600\n{keys}")
    }

    fn serial(keys: &str) -> String {
        format!("{XMPP}[[adapter]]\nid = \"uart\"\ntype = \"serial\"\nport = \"/dev/null\"\nformat = \"kv\"\n{keys}")
    }

    fn of_rtu(src: &str) -> Option<Rs485> {
        let loaded = ok(src);
        let AdapterKind::Modbus(bus) = &loaded.config.adapters[0].kind else {
            panic!("modbus")
        };
        match &bus.transport {
            gateway_modbus::Transport::Rtu(s) => s.rs485,
            other => panic!("{other:?}"),
        }
    }

    fn of_serial(src: &str) -> Option<Rs485> {
        let loaded = ok(src);
        let AdapterKind::Serial(port) = &loaded.config.adapters[0].kind else {
            panic!("serial")
        };
        port.rs485
    }

    #[test]
    fn off_unless_asked_and_defaults_when_on() {
        assert_eq!(of_rtu(&rtu("")), None);
        assert_eq!(of_serial(&serial("rs485 = false\n")), None);
        assert_eq!(of_rtu(&rtu("rs485 = true\n")), Some(Rs485::default()));
        assert_eq!(of_serial(&serial("rs485 = true\n")), Some(Rs485::default()));
    }

    #[test]
    fn every_key() {
        let keys = "rs485 = true\nrts_on_send = \"low\"\nrts_after_send = \"High\"\n\
                    delay_before_send = \"2ms\"\ndelay_after_send = \"100ms\"\n";
        let want = Some(Rs485 {
            rts_on_send: RtsLevel::Low,
            rts_after_send: RtsLevel::High,
            delay_before_send: Duration::from_millis(2),
            delay_after_send: Duration::from_millis(100),
        });
        assert_eq!(of_rtu(&rtu(keys)), want);
        assert_eq!(of_serial(&serial(keys)), want);
        let w = warnings(&ok(&rtu(keys)));
        assert!(!w.iter().any(|l| l.contains("no effect")), "{w:#?}");
    }

    #[test]
    fn bad_values_at_their_positions() {
        let keys = "rs485 = \"yes\"\nrts_on_send = \"hihg\"\nrts_after_send = 1\n\
                    delay_before_send = \"500us\"\ndelay_after_send = \"1s\"\n";
        // Lines 9 to 13 of the file, each at its value.
        for src in [rtu(keys), serial(keys)] {
            let e = errors(&src);
            let e: Vec<&str> = e.iter().map(String::as_str).collect();
            for want in [
                "9:9: `rs485` must be true or false, not a string",
                "10:15: `rts_on_send` must be `high` or `low`, not `hihg`; did you mean `high`?",
                "11:18: `rts_after_send` must be a string, not an integer",
                "12:21: `delay_before_send` must be whole milliseconds",
                "13:20: `delay_after_send` must be at most 100 ms",
            ] {
                assert!(e.iter().any(|l| l.contains(want)), "{want:?} not in {e:#?}");
            }
        }
    }

    #[test]
    fn direction_keys_without_rs485_are_warned_about() {
        let keys = "rts_on_send = \"low\"\ndelay_after_send = \"1ms\"\n";
        let w = warnings(&ok(&rtu(keys)));
        assert!(
            w.iter().any(|l| l.contains(
                "9:1: `rts_on_send` has no effect without `rs485 = true` (the port is not in RS-485 mode)"
            )),
            "{w:#?}"
        );
        assert!(
            w.iter().any(
                |l| l.contains("10:1: `delay_after_send` has no effect without `rs485 = true`")
            ),
            "{w:#?}"
        );
        assert_eq!(of_rtu(&rtu(keys)), None);
        let w = warnings(&ok(&serial("rs485 = false\nrts_after_send = \"high\"\n")));
        assert!(
            w.iter()
                .any(|l| l.contains("`rts_after_send` has no effect")),
            "{w:#?}"
        );
    }
}
