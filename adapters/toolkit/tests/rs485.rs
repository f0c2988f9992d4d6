//! The RS-485 keys (`adapters/toolkit/src/rs485.rs`) of `serial` and `modbus-rtu` adapters in
//! whole configurations.

use gateway_api::rs485::{Rs485, RtsLevel};
use std::time::Duration;
use xmpp_iot_gateway::config::testing::{errors, ok, warnings};

const XMPP: &str = "[xmpp]\ndomain = \"s.example.org\"\nsecret = \"s\"\n";

fn rtu(keys: &str) -> String {
    format!("{XMPP}[[adapter]]\nid = \"bus\"\ntype = \"modbus-rtu\"\nport = \"/dev/null\"\nbaud = 9600\n{keys}")
}

fn serial(keys: &str) -> String {
    format!("{XMPP}[[adapter]]\nid = \"uart\"\ntype = \"serial\"\nport = \"/dev/null\"\nformat = \"kv\"\n{keys}")
}

fn of_rtu(src: &str) -> Option<Rs485> {
    let loaded = ok(src);
    let bus = loaded.config.adapters[0]
        .settings
        .get::<gateway_modbus::BusSettings>()
        .expect("modbus");
    match &bus.transport {
        gateway_modbus::Transport::Rtu(s) => s.rs485,
        other => panic!("{other:?}"),
    }
}

fn of_serial(src: &str) -> Option<Rs485> {
    let loaded = ok(src);
    let port = loaded.config.adapters[0]
        .settings
        .get::<gateway_serial::SerialAdapterConfig>()
        .expect("serial");
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
        w.iter()
            .any(|l| l.contains("10:1: `delay_after_send` has no effect without `rs485 = true`")),
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
