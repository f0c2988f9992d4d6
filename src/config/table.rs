//! What `check` prints on stdout: the upstream line, each adapter's summary line, then the
//! device table and what each adapter type adds after it.
//!
//! The upstream line names the mode, the gateway's address and the servers it tries, in order:
//!
//! ```text
//! upstream: component sensors.example.org via 127.0.0.1:5347
//! ```
//!
//! An adapter type may print a line per adapter (`AdapterType::check_summary`): an adapter on a
//! UART gives the port's framing, and its RS-485 direction control when `rs485 = true`:
//!
//! ```text
//! port: meters /dev/ttyAMA0 9600 8N1, RS-485: RTS high on send, low after, delays 0 ms before and 0 ms after
//! ```
//!
//! One row per field, the device's id, JID and adapter on its first row only, in columns
//! aligned for a person to read (widths count characters, so `°C` takes two columns):
//!
//! ```text
//! DEVICE  JID                         ADAPTER  FIELD        UNIT  TYPE     WRITABLE
//! boiler  boiler@sensors.example.org  sim      temperature  °C    numeric  no
//!                                              burner       -     boolean  yes
//! ```
//!
//! A field without unit shows `-`; a device without fields shows `-` in the field columns.
//! Each adapter type may add its own tables after it (`AdapterType::check_lines`: a polling
//! adapter's request plans).

use super::model::{Config, XmppConfig};

/// The mode, the gateway's XMPP address and the servers tried in turn, ending with a newline.
pub fn upstream_line(config: &Config) -> String {
    match &config.xmpp {
        XmppConfig::Component(c) => format!(
            "upstream: component {} via {}\n",
            c.domain,
            c.servers.join(", ")
        ),
        XmppConfig::Client(c) if c.servers.is_empty() => format!(
            "upstream: client {} via its domain's SRV records (port 5222 without them)\n",
            c.jid
        ),
        XmppConfig::Client(c) => {
            format!("upstream: client {} via {}\n", c.jid, c.servers.join(", "))
        }
    }
}

/// Each adapter's summary line, as its type writes it (an adapter on a UART: the device,
/// `baud`, the framing and the RS-485 settings), in file order.
pub fn port_lines(config: &Config) -> String {
    let mut out = String::new();
    for (index, adapter) in config.adapters.iter().enumerate() {
        if let Some((_, ty)) = crate::adapter_registry::find(adapter.type_name) {
            out.push_str(&ty.check_summary(&crate::adapter_start::slice(config, index)));
        }
    }
    out
}

const HEADER: [&str; 7] = [
    "DEVICE", "JID", "ADAPTER", "FIELD", "UNIT", "TYPE", "WRITABLE",
];

/// The `check` device table, ending with a newline.
pub fn device_table(config: &Config) -> String {
    if config.devices.is_empty() {
        return "no devices configured\n".to_owned();
    }
    // Two passes over borrowed cells, widths then text: with 10,000 devices of 10 fields, rows
    // of owned strings would cost more memory than the configuration they show.
    let mut widths = [0usize; 7];
    let mut bytes = 0;
    for row in rows(config) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
        bytes += 1;
    }
    let mut out = String::with_capacity(bytes * (widths.iter().sum::<usize>() + 2 * 6 + 1));
    let mut line = String::new();
    for row in rows(config) {
        line.clear();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            // Pads by characters, as `widths` counts them.
            let pad = width - cell.chars().count();
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(&registered_lines(config));
    out
}

/// The table's rows: the header, then one per field (the device's id, JID and adapter on its
/// first only), or one with `-` for a device without fields.
fn rows(config: &Config) -> impl Iterator<Item = [&str; 7]> {
    let devices = config.devices.iter().flat_map(|device| {
        let head = [device.id.as_str(), device.jid.as_str(), &*device.adapter];
        let empty = device
            .fields
            .is_empty()
            .then(|| [head[0], head[1], head[2], "-", "-", "-", "-"]);
        let fields = device.fields.iter().enumerate().map(move |(i, field)| {
            let [id, jid, adapter] = if i == 0 { head } else { [""; 3] };
            let spec = &field.spec;
            let unit = if spec.unit.is_empty() {
                "-"
            } else {
                &*spec.unit
            };
            let writable = if spec.writable { "yes" } else { "no" };
            [
                id,
                jid,
                adapter,
                &*spec.name,
                unit,
                spec.kind.as_str(),
                writable,
            ]
        });
        empty.into_iter().chain(fields)
    });
    std::iter::once(HEADER).chain(devices)
}

/// What each registered adapter type prints about its adapters, in registry order.
fn registered_lines(config: &Config) -> String {
    let slices: Vec<_> = (0..config.adapters.len())
        .map(|i| crate::adapter_start::slice(config, i))
        .collect();
    let mut out = String::new();
    for ty in crate::adapter_registry::TYPES {
        let own: Vec<_> = slices
            .iter()
            .filter(|s| ty.names().contains(&s.type_name))
            .cloned()
            .collect();
        if !own.is_empty() {
            out.push_str(&ty.check_lines(&own));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, LoadMode};
    use std::path::Path;

    const CONFIG: &str = r#"
[gateway]
name = "test"
state_dir = "/tmp/x"

[xmpp]
mode = "component"
domain = "sensors.example.org"
secret = "not-a-real-secret"

[[adapter]]
id = "sim"
type = "simulated"

[[device]]
id = "boiler"
adapter = "sim"

  [[device.field]]
  name = "temperature"
  unit = "°C"

  [[device.field]]
  name = "burner"
  type = "boolean"
  writable = true
  value = false

[[device]]
id = "empty"
adapter = "sim"
"#;

    #[test]
    fn aligned_rows_one_per_field() {
        let loaded = load_str(Path::new("/etc/gw/gateway.toml"), CONFIG, LoadMode::Check).unwrap();
        let table = device_table(&loaded.config);
        let expected = "\
DEVICE  JID                         ADAPTER  FIELD        UNIT  TYPE     WRITABLE
boiler  boiler@sensors.example.org  sim      temperature  °C    numeric  no
                                             burner       -     boolean  yes
empty   empty@sensors.example.org   sim      -            -     -        -
";
        assert_eq!(table, expected);
        // Aligned by characters: `°C` (3 bytes) still pads to the UNIT column's width.
        let lines: Vec<&str> = table.lines().collect();
        let col = |line: &str, word: &str| line.find(word).map(|b| line[..b].chars().count());
        assert_eq!(col(lines[0], "TYPE"), col(lines[1], "numeric"));
        assert_eq!(col(lines[1], "numeric"), col(lines[2], "boolean"));
    }

    #[test]
    fn the_upstream_line_lists_the_servers_in_order() {
        let loaded = load_str(Path::new("/etc/gw/gateway.toml"), CONFIG, LoadMode::Check).unwrap();
        assert_eq!(
            upstream_line(&loaded.config),
            "upstream: component sensors.example.org via 127.0.0.1:5347\n"
        );
        let src = "[xmpp]\ndomain = \"s.example.org\"\nsecret = \"x\"\n\
                   server = [\"xmpp1.example.org\", \"10.0.0.2:5348\"]\n";
        let loaded = load_str(Path::new("g.toml"), src, LoadMode::Check).unwrap();
        assert_eq!(
            upstream_line(&loaded.config),
            "upstream: component s.example.org via xmpp1.example.org:5347, 10.0.0.2:5348\n"
        );
        let src = "[xmpp]\nmode = \"client\"\njid = \"gw@example.org\"\npassword = \"x\"\n";
        let loaded = load_str(Path::new("g.toml"), src, LoadMode::Check).unwrap();
        assert!(upstream_line(&loaded.config)
            .starts_with("upstream: client gw@example.org via its domain's SRV"));
    }

    #[test]
    fn says_so_when_there_are_no_devices() {
        let src = "[xmpp]\ndomain = \"s.example.org\"\nsecret = \"x\"\n";
        let loaded = load_str(Path::new("g.toml"), src, LoadMode::Check).unwrap();
        assert_eq!(device_table(&loaded.config), "no devices configured\n");
    }

    #[test]
    fn a_line_per_serial_port_with_its_rs485_settings() {
        let src = "[xmpp]\ndomain = \"s.example.org\"\nsecret = \"x\"\n\
            [[adapter]]\nid = \"meters\"\ntype = \"modbus-rtu\"\nport = \"/dev/null\"\nparity = \"even\"\n\
            rs485 = true\ndelay_after_send = \"2ms\"\n\
            [[adapter]]\nid = \"plc\"\ntype = \"modbus-tcp\"\naddress = \"127.0.0.1\"\n\
            [[adapter]]\nid = \"uart\"\ntype = \"serial\"\nport = \"/dev/zero\"\nbaud = 115200\nformat = \"kv\"\n";
        let loaded = load_str(Path::new("g.toml"), src, LoadMode::Check).unwrap();
        assert_eq!(
            port_lines(&loaded.config),
            "port: meters /dev/null 9600 8E1, RS-485: RTS high on send, low after, delays 0 ms before and 2 ms after\n\
             port: uart /dev/zero 115200 8N1\n"
        );
        let loaded = load_str(Path::new("g.toml"), CONFIG, LoadMode::Check).unwrap();
        assert_eq!(port_lines(&loaded.config), "");
    }
}
