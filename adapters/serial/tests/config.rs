//! The serial adapter's keys (`adapters/serial/src/config/keys.rs`) in whole configurations:
//! values parsed, and every message at its position.

use std::time::Duration;
use xmpp_iot_gateway::config::testing::{errors, ok, warnings};

use xmpp_iot_gateway_serial::config::DEFAULT_ACK_TIMEOUT;
use xmpp_iot_gateway_serial::{
    Format, Parity, Selector, SerialAdapterConfig, SerialDeviceConfig, SerialFieldConfig,
};

/// A valid head with one serial adapter `uart` (keys `adapter_keys`) and one device `d` on
/// it (keys `device`); the device's keys start on line 9 + lines of `adapter_keys`.
fn config(adapter_keys: &str, device: &str) -> String {
    format!(
        "[xmpp]\ndomain = \"sensors.example.org\"\nsecret = \"s\"\n\
         [[adapter]]\nid = \"uart\"\ntype = \"serial\"\nport = \"/dev/null\"\n{adapter_keys}\
         [[device]]\nid = \"d\"\nadapter = \"uart\"\n{device}"
    )
}

fn adapter_of(src: &str) -> SerialAdapterConfig {
    let loaded = ok(src);
    loaded.config.adapters[0]
        .settings
        .get::<SerialAdapterConfig>()
        .expect("a serial adapter")
        .clone()
}

fn serial_device(loaded: &xmpp_iot_gateway::config::Loaded) -> SerialDeviceConfig {
    loaded.config.devices[0]
        .settings
        .get::<SerialDeviceConfig>()
        .expect("serial")
        .clone()
}

fn field_of(src: &str, i: usize) -> SerialFieldConfig {
    let loaded = ok(src);
    loaded.config.devices[0].fields[i]
        .settings
        .get::<SerialFieldConfig>()
        .expect("a serial field")
        .clone()
}

#[test]
fn adapter_defaults_and_keys() {
    let c = adapter_of(&config(
        "format = \"json\"\n",
        "[[device.field]]\nname = \"t\"\njson = \"/t\"\n",
    ));
    assert_eq!(c.port, "/dev/null");
    assert_eq!(
        (c.baud, c.data_bits, c.stop_bits, c.parity),
        (9600, 8, 1, Parity::None)
    );
    assert_eq!((c.line_ending.as_slice(), c.max_line), (&b"\n"[..], 4096));
    assert_eq!(c.format.name(), "json");
    assert_eq!(c.time_keys.len(), 4);

    let c = adapter_of(&config(
        "baud = 115200\ndata_bits = 7\nparity = \"even\"\nstop_bits = 2\nformat = \"kv\"\n\
         separator = \",\"\nkv_separator = \":\"\nline_ending = \"\\r\\n\"\nmax_line = 128\ntime_key = \"ts\"\n",
        "",
    ));
    assert_eq!(
        (c.baud, c.data_bits, c.stop_bits, c.parity),
        (115200, 7, 2, Parity::Even)
    );
    assert_eq!((c.line_ending.as_slice(), c.max_line), (&b"\r\n"[..], 128));
    let Format::Kv(kv) = &c.format else {
        panic!("kv")
    };
    assert_eq!(
        (kv.separator.as_deref(), kv.kv_separator.as_str()),
        (Some(","), ":")
    );
    assert_eq!(c.time_keys, [Selector::Key("ts".into())]);

    let c = adapter_of(&config(
        "format = \"csv\"\ncolumns = [\"id\", \"temp\"]\nseparator = \";\"\n",
        "",
    ));
    let Format::Csv(csv) = &c.format else {
        panic!("csv")
    };
    assert_eq!(
        csv.columns.as_deref(),
        Some(&["id".to_string(), "temp".to_string()][..])
    );
    assert_eq!(csv.separator, ";");
}

#[test]
fn adapter_errors() {
    let head = "[xmpp]\ndomain = \"sensors.example.org\"\nsecret = \"s\"\n[[adapter]]\nid = \"uart\"\ntype = \"serial\"\n";
    assert_eq!(
        errors(&format!("{head}format = \"json\"\n")),
        ["4:1: a serial adapter needs `port`, e.g. `port = \"/dev/ttyACM0\"`"]
    );
    assert_eq!(
        errors(&format!("{head}port = \"/dev/null\"\n")),
        ["4:1: a serial adapter needs `format`, how each line is written: `json`, `kv`, `xml`, `regex` and `csv`"]
    );
    let e = errors(&format!(
        "{head}port = \"/dev/null\"\nformat = \"jsno\"\nbaud = 0\ndata_bits = 9\nparity = \"evn\"\nstop_bits = 1.5\nmax_line = 0\n"
    ));
    assert_eq!(
        e,
        [
            "8:10: unknown format `jsno`; did you mean `json`? (formats: `json`, `kv`, `xml`, `regex` and `csv`)",
            "9:8: `baud` must be between 1 and 4000000, not 0",
            "10:13: `data_bits` must be between 5 and 8, not 9",
            "11:10: unknown parity `evn`; did you mean `even`? (parities: `none`, `even` and `odd`)",
            "12:13: `stop_bits` must be a whole number",
            "13:12: `max_line` must be between 1 and 1048576, not 0",
        ]
    );
    let e = errors(&format!(
        "{head}port = \"/dev/null\"\nformat = \"json\"\nline_ending = \"{}\"\n",
        "x".repeat(17)
    ));
    assert_eq!(e, ["9:15: `line_ending` must be at most 16 bytes"]);
    let loaded = ok(&format!(
        "{head}port = \"/dev/null\"\nformat = \"json\"\npattern = \"(?P<a>x)\"\nkv_separator = \":\"\ncolumns = [\"a\"]\nseparator = \",\"\n"
    ));
    assert_eq!(
        warnings(&loaded)[2..],
        [
            "9:1: `pattern` has no effect with `format = \"json\"` (it applies to format `regex`)",
            "10:1: `kv_separator` has no effect with `format = \"json\"` (it applies to format `kv`)",
            "11:1: `columns` has no effect with `format = \"json\"` (it applies to format `csv`)",
            "12:1: `separator` has no effect with `format = \"json\"` (it applies to format `kv` and `csv`)",
        ]
    );
    assert_eq!(
        errors(&format!("{head}port = \"/dev/null\"\nformat = \"regex\"\n"))[0],
        "8:10: `format = \"regex\"` needs a `pattern` whose named groups become keys, e.g. `pattern = '^(?P<id>\\w+) (?P<temp>[-\\d.]+)$'`"
    );
    assert_eq!(
        errors(&format!(
            "{head}port = \"/dev/null\"\nformat = \"regex\"\npattern = '(?P<a'\n"
        )),
        ["9:11: `pattern` is not a valid regex: unclosed capture group name"]
    );
    assert_eq!(
        errors(&format!(
            "{head}port = \"/dev/null\"\nformat = \"regex\"\npattern = '(\\d+)'\n"
        )),
        ["9:11: `pattern` has no named group: write `(?P<name>...)` for each value"]
    );
    assert_eq!(
        errors(&format!("{head}port = \"/dev/null\"\nformat = \"kv\"\nseparator = \":\"\nkv_separator = \":\"\n")),
        ["10:16: `kv_separator` must differ from `separator`"]
    );
    assert_eq!(
        errors(&format!(
            "{head}port = \"/dev/null\"\nformat = \"csv\"\ncolumns = [\"a\", \" a \", \"\"]\n"
        )),
        [
            "9:17: column `a` is listed twice",
            "9:24: a column name must not be empty"
        ]
    );
}

#[test]
fn the_example_configuration_loads() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/gateway.example.toml");
    let source = std::fs::read_to_string(&path).unwrap();
    let loaded = xmpp_iot_gateway::config::testing::check(&source)
        .unwrap_or_else(|e| panic!("{} does not load:\n{e}", path.display()));
    let serial = loaded
        .config
        .adapters
        .iter()
        .filter(|a| a.type_name == "serial")
        .count();
    assert_eq!(serial, 2);
    for w in &loaded.warnings {
        // Only what a machine without the hardware and the secret lacks.
        assert!(
            w.message.contains("does not exist"),
            "unexpected warning: {w}"
        );
    }
}

#[test]
fn a_missing_port_is_only_a_warning() {
    let src = "[xmpp]\ndomain = \"sensors.example.org\"\nsecret = \"s\"\n[[adapter]]\nid = \"uart\"\ntype = \"serial\"\nport = \"/dev/ttyNOPE9\"\nformat = \"xml\"\n";
    let loaded = ok(src);
    assert_eq!(
        warnings(&loaded)[2],
        "7:8: serial port `/dev/ttyNOPE9` does not exist (yet): the gateway will keep trying to open it"
    );
}

#[test]
fn device_match() {
    let loaded = ok(&config(
        "format = \"xml\"\n",
        "match = { id = \"250715\", bus = 2 }\n[[device.field]]\nname = \"SensorTemp\"\n",
    ));
    let d = serial_device(&loaded);
    assert_eq!(
        d.matcher,
        [
            (Selector::Key("id".into()), "250715".into()),
            (Selector::Key("bus".into()), "2".into())
        ]
    );
    // JSON pointers in match keys.
    let loaded = ok(&config(
        "format = \"json\"\n",
        "match = { \"/meta/id\" = \"a\" }\n",
    ));
    let d = serial_device(&loaded);
    assert_eq!(
        d.matcher,
        [(Selector::Pointer("/meta/id".into()), "a".into())]
    );

    let e = errors(&config("format = \"xml\"\n", "match = \"250715\"\n"));
    assert_eq!(
        e,
        ["12:9: `match` must be a table, e.g. `match = { id = \"250715\" }`"]
    );
    let e = errors(&config("format = \"xml\"\n", "match = { id = [1] }\n"));
    assert_eq!(
        e,
        ["12:16: `match` value of `id` must be a string or a number"]
    );
    let e = errors(&config("format = \"xml\"\n", "match = {}\n"));
    assert_eq!(e, ["12:9: `match` must name at least one key"]);
    let e = errors(&config(
        "format = \"regex\"\npattern = '(?P<id>\\w+) (?P<t>\\d+)'\n",
        "match = { idx = \"1\" }\n",
    ));
    assert_eq!(e, ["13:11: `match` key `idx` is not a named group of the adapter's `pattern`; did you mean `id`? (keys: `id` and `t`)"]);
}

#[test]
fn field_sources() {
    let src = config(
        "format = \"json\"\n",
        "[[device.field]]\nname = \"t\"\njson = \"/a/0\"\n[[device.field]]\nname = \"all\"\n\
         [[device.field]]\nname = \"member\"\nkey = \"Temp\"\n",
    );
    assert_eq!(field_of(&src, 0).source, Selector::Pointer("/a/0".into()));
    assert_eq!(field_of(&src, 1).source, Selector::Whole);
    assert_eq!(field_of(&src, 2).source, Selector::Key("Temp".into()));
    let src = config("format = \"xml\"\n", "[[device.field]]\nname = \"temp\"\nkey = \"SensorTemp\"\n[[device.field]]\nname = \"ID\"\ntype = \"string\"\n");
    assert_eq!(field_of(&src, 0).source, Selector::Key("SensorTemp".into()));
    assert_eq!(field_of(&src, 1).source, Selector::Key("ID".into()));

    let e = errors(&config(
        "format = \"kv\"\n",
        "[[device.field]]\nname = \"t\"\njson = \"/t\"\n",
    ));
    assert_eq!(e, ["14:1: `json` only applies to `format = \"json\"`, but this adapter's format is `kv`: use `key`"]);
    let e = errors(&config(
        "format = \"json\"\n",
        "[[device.field]]\nname = \"t\"\njson = \"t\"\nkey = \"t\"\n",
    ));
    assert_eq!(
        e,
        ["15:1: give either `json` (a pointer) or `key`, not both"]
    );
    let e = errors(&config(
        "format = \"json\"\n",
        "[[device.field]]\nname = \"t\"\njson = \"t\"\n",
    ));
    assert_eq!(
        e,
        ["14:8: `json` must be an RFC 6901 pointer starting with `/`, e.g. `\"/t\"`"]
    );
    let e = errors(&config(
        "format = \"csv\"\ncolumns = [\"id\", \"temp\"]\n",
        "[[device.field]]\nname = \"tmp\"\n[[device.field]]\nname = \"x\"\nkey = \"TEMP\"\n[[device.field]]\nname = \"y\"\nkey = \"hum\"\n",
    ));
    assert_eq!(e, [
        "13:1: the field name (its default `key`) `tmp` is not one of the adapter's `columns`; did you mean `temp`? (keys: `id` and `temp`)",
        "20:7: `key` `hum` is not one of the adapter's `columns` (keys: `id` and `temp`)",
    ]);
}

#[test]
fn field_commands() {
    let src = config(
        "format = \"kv\"\n",
        "[[device.field]]\nname = \"relay\"\ntype = \"boolean\"\nwritable = true\n\
         command_template = \"SET {field} {value}\\n\"\nack_pattern = \"^OK\"\nack_timeout = \"500ms\"\n\
         [[device.field]]\nname = \"label\"\ntype = \"string\"\nwritable = true\ncommand_template = \"L {value}\\n\"\n",
    );
    let f = field_of(&src, 0);
    let c = f.command.unwrap();
    assert_eq!(c.template.to_string(), "SET {field} {value}\\n");
    assert_eq!(c.ack.unwrap().as_str(), "^OK");
    assert_eq!(c.ack_timeout, Duration::from_millis(500));
    let c = field_of(&src, 1).command.unwrap();
    assert!(c.ack.is_none());
    assert_eq!(c.ack_timeout, DEFAULT_ACK_TIMEOUT);

    let e = errors(&config(
        "format = \"kv\"\n",
        "[[device.field]]\nname = \"r\"\nwritable = true\n",
    ));
    assert_eq!(e, ["12:1: field `r` of device `d` is writable, so it needs a `command_template`: the line written to the port, e.g. `command_template = \"SET {field} {value}\\n\"`"]);
    let e = errors(&config(
        "format = \"kv\"\n",
        "[[device.field]]\nname = \"r\"\nwritable = true\ncommand_template = \"SET {name}\"\nack_pattern = \"(\"\nack_timeout = \"0s\"\n",
    ));
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].starts_with("15:20: `command_template`: unknown placeholder `{name}`"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("16:15: `ack_pattern` is not a valid regex: "),
        "{e:?}"
    );
    assert_eq!(e[2], "17:15: `ack_timeout` must be longer than zero");

    let loaded = ok(&config(
        "format = \"kv\"\n",
        "[[device.field]]\nname = \"r\"\ncommand_template = \"X\"\nack_timeout = \"1s\"\n",
    ));
    let w = warnings(&loaded);
    assert!(
        w.contains(
            &"14:1: `command_template` has no effect unless the field is `writable = true`"
                .to_owned()
        ),
        "{w:?}"
    );
    assert!(
        w.contains(&"15:1: `ack_timeout` has no effect without `ack_pattern`".to_owned()),
        "{w:?}"
    );
}
