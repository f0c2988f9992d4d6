//! The Modbus adapters' keys (`adapters/modbus/src/config/keys.rs`) in whole configurations:
//! values parsed, every message at its position, and the request plan `check` prints.

use std::time::Duration;

use gateway_api::FieldType;
use xmpp_iot_gateway_modbus::{
    BusSettings, ByteOrder, DataType, DeviceSettings, Encoding, Framing, Parity, Point,
    RegisterKind, SerialSettings, Transport,
};

use xmpp_iot_gateway::config::testing::{errors, ok, warnings};
use xmpp_iot_gateway::config::{
    device_table, AdapterConfig, DeviceConfig, FieldConfig, XmppConfig,
};

const HEAD: &str = "[xmpp]\ndomain = \"sensors.example.org\"\nsecret = \"s\"\n\
    [[adapter]]\nid = \"rs485\"\ntype = \"modbus-rtu\"\nport = \"/dev/ttyUSB0\"\n\
    [[adapter]]\nid = \"plc\"\ntype = \"modbus-tcp\"\naddress = \"127.0.0.1:5020\"\n";
// Lines 1-11 are HEAD; a test's own text starts on line 12.

fn with(rest: &str) -> String {
    format!("{HEAD}{rest}")
}

/// The warnings, without the ones about HEAD's inline secret and its RTU port (which this
/// machine does not have).
fn own_warnings(loaded: &xmpp_iot_gateway::config::Loaded) -> Vec<String> {
    warnings(loaded)
        .into_iter()
        .filter(|w| !w.contains("inline `secret`") && !w.contains("does not exist"))
        .collect()
}

fn point(src: &str) -> Point {
    let loaded = ok(&with(src));
    pt(&loaded.config.devices[0].fields[0]).clone()
}

fn bus(a: &AdapterConfig) -> &BusSettings {
    a.settings.get::<BusSettings>().expect("a modbus adapter")
}

fn dev(d: &DeviceConfig) -> &DeviceSettings {
    d.settings.get::<DeviceSettings>().expect("a modbus device")
}

fn pt(f: &FieldConfig) -> &Point {
    f.settings.get::<Point>().expect("a modbus field")
}

#[test]
fn adapters_with_defaults_and_every_key() {
    let loaded = ok(HEAD);
    let rtu = bus(&loaded.config.adapters[0]);
    assert_eq!(
        rtu.transport,
        Transport::Rtu(SerialSettings {
            port: "/dev/ttyUSB0".into(),
            baud: 9600,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            rs485: None
        })
    );
    assert_eq!(rtu.timeout, Duration::from_secs(1));
    assert_eq!(loaded.config.adapters[0].type_name, "modbus-rtu");
    assert_eq!(loaded.config.adapters[1].type_name, "modbus-tcp");

    let src = "[xmpp]\ndomain = \"s.example.org\"\nsecret = \"s\"\n\
        [[adapter]]\nid = \"a\"\ntype = \"modbus-rtu\"\nport = \"/dev/ttyAMA0\"\nbaud = 19200\n\
        data_bits = 7\nparity = \"Even\"\nstop_bits = 2\ntimeout = \"250ms\"\ndelay_between_requests = \"20ms\"\n\
        [[adapter]]\nid = \"b\"\ntype = \"modbus-tcp\"\naddress = \"plc.local\"\nframing = \"rtu\"\n";
    let loaded = ok(src);
    let a = bus(&loaded.config.adapters[0]);
    assert_eq!(
        a.transport,
        Transport::Rtu(SerialSettings {
            port: "/dev/ttyAMA0".into(),
            baud: 19200,
            data_bits: 7,
            parity: Parity::Even,
            stop_bits: 2,
            rs485: None
        })
    );
    assert_eq!(a.timeout, Duration::from_millis(250));
    assert_eq!(a.delay_between_requests, Duration::from_millis(20));
    let b = bus(&loaded.config.adapters[1]);
    assert_eq!(
        b.transport,
        Transport::Tcp {
            address: "plc.local:502".into(),
            framing: Framing::Rtu
        }
    );
    assert!(matches!(loaded.config.xmpp, XmppConfig::Component(_)));
}

#[test]
fn adapter_errors() {
    let e = errors("[xmpp]\ndomain = \"s.example.org\"\nsecret = \"s\"\n[[adapter]]\nid = \"a\"\ntype = \"modbus-rtu\"\nbaud = 9601.5\nparity = \"evn\"\nstop_bits = 3\ntimeout = \"0s\"\n[[adapter]]\nid = \"b\"\ntype = \"modbus-tcp\"\n[[adapter]]\nid = \"c\"\ntype = \"modbus-tcp\"\naddress = \"host:port\"\nport = \"/dev/x\"\n");
    assert_eq!(
        e,
        [
            "7:8: `baud` must be an integer from 50 to 4000000",
            "8:10: unknown `parity` `evn`; did you mean `even`? (use `none`, `even` and `odd`)",
            "9:13: `stop_bits` must be an integer from 1 to 2",
            "10:11: `timeout` must be longer than zero",
            "11:1: a `modbus-tcp` adapter needs `address`, e.g. `address = \"192.168.1.20:502\"`",
            "17:11: `address` `host:port` is not `host:port` (e.g. \"192.168.1.20:502\"): `port` is not a port number (1 to 65535)",
            "18:1: `port` is a key of `modbus-rtu` and `serial` adapters, but this adapter's type is `modbus-tcp`",
        ]
    );
    let e = errors("[xmpp]\ndomain = \"s.example.org\"\nsecret = \"s\"\n[[adapter]]\nid = \"a\"\ntype = \"modbus-rtu\"\n");
    assert_eq!(
        e,
        ["4:1: a `modbus-rtu` adapter needs `port`, e.g. `port = \"/dev/ttyUSB0\"`"]
    );
}

#[test]
fn devices_and_fields_with_defaults() {
    let src = with(
        "[[device]]\nid = \"meter\"\nadapter = \"rs485\"\n\
         [[device.field]]\nname = \"v\"\nregister = \"holding\"\naddress = 3\n\
         [[device.field]]\nname = \"relay\"\nregister = \"coil\"\naddress = 0\nwritable = true\n\
         [[device.field]]\nname = \"serial\"\nregister = \"input\"\naddress = 10\ndata_type = \"STRING\"\nlength = 4\n",
    );
    let loaded = ok(&src);
    let d = &loaded.config.devices[0];
    let s = dev(d);
    assert_eq!(*s, DeviceSettings::default());
    let v = pt(&d.fields[0]);
    assert_eq!(v.encoding, Encoding::plain(DataType::Int16));
    assert_eq!(d.fields[0].spec.kind, FieldType::Numeric);
    // Bits and strings get the matching field type unless `type` says otherwise.
    assert_eq!(d.fields[1].spec.kind, FieldType::Boolean);
    assert!(d.fields[1].spec.writable);
    assert_eq!(d.fields[2].spec.kind, FieldType::String);
    let serial = pt(&d.fields[2]);
    assert_eq!(serial.encoding.length, 4);
    assert!(own_warnings(&loaded).is_empty(), "{:?}", warnings(&loaded));
}

#[test]
fn every_device_and_field_key() {
    let src = with(
        "[[device]]\nid = \"m\"\nadapter = \"plc\"\nunit_id = 0\npoll = \"250ms\"\nbyte_order = \"word\"\n\
         max_gap = 0\nmax_registers_per_request = 60\nbackoff_after = 5\n\
         [[device.field]]\nname = \"p\"\nregister = \"holding_register\"\naddress = 65534\n\
         data_type = \"FLOAT32-IEEE\"\nscale = -0.5\noffset = 2\ndecimals = 1\n\
         [[device.field]]\nname = \"q\"\nregister = \"input\"\naddress = 7\ndata_type = \"int32\"\nbyte_order = \"ABCD\"\n\
         [[device.field]]\nname = \"b\"\nregister = \"holding\"\naddress = 7\nbit = 15\nwritable = true\n",
    );
    let loaded = ok(&src);
    let d = &loaded.config.devices[0];
    let s = dev(d);
    assert_eq!(
        *s,
        DeviceSettings {
            unit: 0,
            poll: Duration::from_millis(250),
            max_gap: 0,
            max_registers_per_request: 60,
            backoff_after: 5
        }
    );
    let p = |i: usize| pt(&d.fields[i]).clone();
    assert_eq!(
        p(0),
        Point {
            kind: RegisterKind::Holding,
            address: 65534,
            encoding: Encoding {
                data_type: DataType::Float32,
                byte_order: ByteOrder::Cdab,
                length: 1,
                bit: None,
                scale: -0.5,
                offset: 2.0,
                decimals: Some(1)
            }
        }
    );
    assert_eq!(p(1).encoding.byte_order, ByteOrder::Abcd);
    assert_eq!(p(2).encoding.bit, Some(15));
    assert_eq!(p(2).encoding.data_type, DataType::Bool);
    assert_eq!(d.fields[2].spec.kind, FieldType::Boolean);
    assert_eq!(
        point("[[device]]\nid = \"m\"\nadapter = \"plc\"\n[[device.field]]\nname = \"x\"\nregister = \"discrete_input\"\naddress = 1\n").kind,
        RegisterKind::Discrete
    );
}

#[test]
fn field_errors_name_the_key() {
    let dev = "[[device]]\nid = \"m\"\nadapter = \"rs485\"\n";
    // Lines: 12 [[device]], 13 id, 14 adapter, 15 [[device.field]], 16 name, 17.. keys.
    let errs = |field: &str| {
        errors(&with(&format!(
            "{dev}[[device.field]]\nname = \"f\"\n{field}"
        )))
    };
    assert_eq!(
        errs("address = 1\n"),
        ["15:1: field `f` of device `m` needs `register` (`coil`, `discrete`, `holding` and `input`)"]
    );
    assert_eq!(
        errs("register = \"holding\"\n"),
        ["15:1: field `f` of device `m` needs `address`, the 0-based number of its first register"]
    );
    assert_eq!(
        errs("register = \"holdng\"\naddress = 1\n"),
        ["17:12: unknown `register` `holdng`; did you mean `holding`? (use `coil`, `discrete`, `holding` and `input`)"]
    );
    assert_eq!(
        errs("register = \"holding\"\naddress = 70000\n"),
        ["18:11: `address` must be an integer from 0 to 65535"]
    );
    assert_eq!(
        errs("register = \"holding\"\naddress = 1\ndata_type = \"float16\"\n"),
        ["19:13: unknown `data_type` `float16`; did you mean `float64`? (use `bool`, `int16`, `uint16`, `int32`, `uint32`, `int64`, `uint64`, `float32`, `float64` and `string`)"]
    );
    assert_eq!(
        errs("register = \"holding\"\naddress = 1\nbyte_order = \"ACBD\"\n"),
        ["19:14: unknown `byte_order` `ACBD`; did you mean `ABCD`? (use `ABCD`, `DCBA`, `BADC` and `CDAB`)"]
    );
    assert_eq!(
        errs("register = \"input\"\naddress = 1\nwritable = true\n"),
        ["19:12: field `f` of device `m` is an input, which Modbus cannot write; use a coil or a holding register, or drop `writable`"]
    );
    assert_eq!(
        errs("register = \"coil\"\naddress = 1\ndata_type = \"int16\"\n"),
        ["19:13: a coil is a single bit: `data_type` must be `bool`, not `int16`"]
    );
    assert_eq!(
        errs("register = \"holding\"\naddress = 1\ndata_type = \"string\"\n"),
        ["19:13: field `f` of device `m` is a string: give its `length` in registers (2 characters each)"]
    );
    assert_eq!(
        errs("type = \"numeric\"\nregister = \"holding\"\naddress = 1\ndata_type = \"string\"\nlength = 2\n"),
        ["17:8: field `f` of device `m` has `data_type = \"string\"`, so its `type` must be `string`"]
    );
    assert_eq!(
        errs("register = \"holding\"\naddress = 1\nbit = 16\n"),
        ["19:7: `bit` must be an integer from 0 to 15"]
    );
    assert_eq!(
        errs("register = \"holding\"\naddress = 1\nbit = 3\ndata_type = \"int16\"\n"),
        ["20:13: with `bit` the field is one bit: `data_type` must be `bool`, not `int16`"]
    );
    assert_eq!(
        errs("register = \"holding\"\naddress = 1\nscale = 0\n"),
        ["19:9: `scale` must not be zero (writes divide by it)"]
    );
    assert_eq!(
        errs("register = \"holding\"\naddress = 65535\ndata_type = \"uint32\"\n"),
        ["17:12: field `f` of device `m` starts at 65535 and takes 2 registers: past the last address, 65535"]
    );
    assert_eq!(
        errs("register = \"holding\"\naddress = 1\nvalue = 3\n"),
        ["19:1: `value` is a key of `simulated` fields, but field `f` of device `m` uses adapter `rs485` of type `modbus-rtu`"]
    );
    // Unit ids: RTU 1-247.
    let e = errors(&with("[[device]]\nid = \"m\"\nadapter = \"rs485\"\nunit_id = 0\nmax_registers_per_request = 126\n"));
    assert_eq!(
        e,
        [
            "15:11: `unit_id` must be an integer from 1 to 247",
            "16:29: `max_registers_per_request` must be an integer from 1 to 125",
        ]
    );
    let e = errors(&with("[[device]]\nid = \"m\"\nadapter = \"rs485\"\nmax_registers_per_request = 3\n[[device.field]]\nname = \"f\"\nregister = \"holding\"\naddress = 0\ndata_type = \"int64\"\n"));
    assert_eq!(
        e,
        ["18:12: field `f` of device `m` takes 4 registers, more than one request may read (`max_registers_per_request` = 3)"]
    );
}

#[test]
fn keys_without_effect_are_warned_about() {
    let loaded = ok(&with(
        "[[device]]\nid = \"m\"\nadapter = \"rs485\"\n[[device.field]]\nname = \"f\"\nregister = \"coil\"\naddress = 1\nscale = 2\n\
         [[device.field]]\nname = \"g\"\nregister = \"holding\"\naddress = 1\nlength = 3\n",
    ));
    assert_eq!(
        own_warnings(&loaded),
        [
            "19:1: `scale` has no effect on a coil",
            "24:1: `length` has no effect unless `data_type = \"string\"`",
        ]
    );
}

#[test]
fn the_example_configuration_section_is_valid() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/gateway.example.toml");
    let example = std::fs::read_to_string(&path).expect("deploy/gateway.example.toml");
    let loaded = ok(&example);
    // Files and ports of a real installation are absent here; nothing else may be off.
    let warnings: Vec<String> = own_warnings(&loaded)
        .into_iter()
        .filter(|w| !w.contains("does not exist"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    let modbus = loaded
        .config
        .devices
        .iter()
        .filter(|d| d.settings.get::<DeviceSettings>().is_some())
        .count();
    assert!(modbus >= 2);
    assert!(device_table(&loaded.config).contains("input start 0 count 12"));
}

#[test]
fn check_prints_the_request_plan() {
    let loaded = ok(&with(
        "[[device]]\nid = \"meter\"\nadapter = \"rs485\"\npoll = \"2s\"\nunit_id = 3\n\
         [[device.field]]\nname = \"a\"\nregister = \"holding\"\naddress = 0\ndata_type = \"float32\"\n\
         [[device.field]]\nname = \"b\"\nregister = \"holding\"\naddress = 10\ndata_type = \"uint64\"\n\
         [[device.field]]\nname = \"c\"\nregister = \"input\"\naddress = 100\ndata_type = \"int32\"\n\
         [[device]]\nid = \"plc\"\nadapter = \"plc\"\n\
         [[device.field]]\nname = \"on\"\nregister = \"coil\"\naddress = 4\n",
    ));
    let table = device_table(&loaded.config);
    assert!(
        table.ends_with(
            "\n\
MODBUS DEVICE  UNIT  ADAPTER  POLL  REQUEST
meter          3     rs485    2s    holding start 0 count 14
                                    input start 100 count 2
plc            1     plc      1s    coil start 4 count 1
"
        ),
        "{table}"
    );
}
