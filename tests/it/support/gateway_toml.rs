//! The gateway's configuration file, built in code: a test sets the keys it is about and takes
//! the common sections (`[gateway]`, the server's `[xmpp]`, a simulated adapter, the usual
//! thermometer) from here, instead of carrying a TOML template of its own.
//!
//! ```ignore
//! let toml = GatewayToml::new("store gateway", prosody.component_toml(&domain))
//!     .gateway("history", "1h")
//!     .access("control", &["alice@localhost"])
//!     .adapter(sim_adapter())
//!     .device(device("thermo", "sim").set("poll", "50ms").field(field("temperature")))
//!     .build();
//! ```
//!
//! Values are TOML values (`"1h"` is a string, `5_i64` an integer, `10.0` a float), so the
//! gateway reads exactly what a hand-written file with the same keys would give it. Text the
//! builder does not model (a section a test reloads in and out) goes in with [`GatewayToml::raw`].
//!
//! The adapters the tests run on real buses have their own starting points: [`mqtt_adapter`],
//! [`modbus_tcp_adapter`], [`modbus_rtu_adapter`] and [`serial_adapter`], with
//! [`register_field`] for a Modbus point; [`client_xmpp`] is the client-mode `[xmpp]` of the
//! gateway's account `gw@localhost`.

use std::net::SocketAddr;
use std::path::Path;

use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

/// The keys of one `[section]`, `[[adapter]]`, `[[device]]`, `[[device.field]]` or `[[alert]]`,
/// in the order they are set.
#[derive(Clone, Debug, Default)]
pub struct Section(Table);

impl Section {
    pub fn new() -> Self {
        Self::default()
    }

    /// `key = value`.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key, Item::Value(value.into()));
        self
    }

    /// `key = ["a", "b"]`.
    pub fn list(self, key: &str, values: &[&str]) -> Self {
        self.set(key, values.iter().copied().collect::<Array>())
    }

    /// `key = { … }`, an inline table (a device's `match`, say).
    pub fn inline(self, key: &str, table: Section) -> Self {
        let mut inline = InlineTable::new();
        for (k, item) in table.0 {
            let value = item
                .into_value()
                .expect("an inline table holds values only");
            inline.insert(&k, value);
        }
        self.set(key, inline)
    }

    /// A `[[device.field]]` of this device.
    pub fn field(mut self, field: Section) -> Self {
        self.0
            .entry("field")
            .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()))
            .as_array_of_tables_mut()
            .expect("`field` is an array of tables")
            .push(field.0);
        self
    }
}

/// `[[adapter]]` with its `id` and `type`.
pub fn adapter(id: &str, kind: &str) -> Section {
    Section::new().set("id", id).set("type", kind)
}

/// An MQTT adapter on the broker at `url` (e.g. [`super::Mosquitto::url`]).
pub fn mqtt_adapter(id: &str, url: &str) -> Section {
    adapter(id, "mqtt").set("url", url)
}

/// A Modbus TCP adapter on the server at `address` (`host:port`).
pub fn modbus_tcp_adapter(id: &str, address: &str) -> Section {
    adapter(id, "modbus-tcp").set("address", address)
}

/// A Modbus RTU adapter on the serial `port` (e.g. one end of a [`super::PtyPair`]).
pub fn modbus_rtu_adapter(id: &str, port: &Path) -> Section {
    adapter(id, "modbus-rtu").set("port", port.display().to_string())
}

/// A serial adapter on `port` reading lines in `format` (`json`, `kv`, `xml`, …).
pub fn serial_adapter(id: &str, port: &Path, format: &str) -> Section {
    adapter(id, "serial")
        .set("port", port.display().to_string())
        .set("format", format)
}

/// The simulated adapter `sim` most tests take their devices from.
pub fn sim_adapter() -> Section {
    adapter("sim", "simulated")
}

/// `[[device]]` with its `id` and `adapter`.
pub fn device(id: &str, adapter: &str) -> Section {
    Section::new().set("id", id).set("adapter", adapter)
}

/// `[[device.field]]` with its `name`.
pub fn field(name: &str) -> Section {
    Section::new().set("name", name)
}

/// A writable simulated integer `name` that holds `value` until it is written (a written value
/// sticks).
pub fn integer_setting(name: &str, value: i64) -> Section {
    field(name)
        .set("type", "integer")
        .set("generator", "constant")
        .set("value", value)
        .set("writable", true)
}

/// A Modbus `[[device.field]]`: `name` at `address` in the `register` table (`holding`,
/// `input`, `coil`, `discrete`).
pub fn register_field(name: &str, register: &str, address: u16) -> Section {
    field(name)
        .set("register", register)
        .set("address", i64::from(address))
}

/// `[xmpp]` with `keys`, as text for [`GatewayToml::new`].
pub fn xmpp(keys: Section) -> String {
    let mut doc = DocumentMut::new();
    doc.insert("xmpp", Item::Table(keys.0));
    doc.to_string()
}

/// Client mode as the gateway's account `gw@localhost` (its password in the file `gw.pass`,
/// which the test writes with [`super::GatewayOpts::file`]), on the server's c2s listener
/// `server`, trusting only `ca_file`.
pub fn client_xmpp(server: SocketAddr, ca_file: impl AsRef<Path>) -> String {
    xmpp(
        Section::new()
            .set("mode", "client")
            .set("jid", "gw@localhost")
            .set("password_file", "gw.pass")
            .set("server", server.to_string())
            .set("ca_file", ca_file.as_ref().display().to_string()),
    )
}

/// Device `thermo` of adapter `sim`, polled every `period`: its `temperature` (°C) steps
/// through 10 to 20 once per `period`, so every poll brings a new value.
pub fn stepping_thermo(period: &str) -> Section {
    stepping_thermometer("thermo", period)
}

/// Like [`stepping_thermo`], as device `id`.
pub fn stepping_thermometer(id: &str, period: &str) -> Section {
    device(id, "sim").set("poll", period).field(
        field("temperature")
            .set("unit", "°C")
            .set("generator", "step")
            .set("min", 10.0)
            .set("max", 20.0)
            .set("period", period),
    )
}

/// A whole configuration file: `[gateway]`, the server's `[xmpp]` text, then the other
/// sections in the order they were added.
#[derive(Clone, Debug)]
pub struct GatewayToml {
    gateway: DocumentMut,
    xmpp: DocumentMut,
    rest: DocumentMut,
    raw: String,
}

impl GatewayToml {
    /// `[gateway]` with `name`, and `xmpp` (e.g. [`super::Prosody::component_toml`]) as it is.
    pub fn new(name: &str, xmpp: impl Into<String>) -> Self {
        Self::upstream(xmpp).gateway("name", name)
    }

    /// Only `xmpp` as it is, with no `[gateway]` section until a key is set in it: for a test of
    /// what the gateway does with its defaults.
    pub fn upstream(xmpp: impl Into<String>) -> Self {
        let xmpp: String = xmpp.into();
        Self {
            gateway: DocumentMut::new(),
            xmpp: xmpp
                .parse()
                .unwrap_or_else(|e| panic!("the [xmpp] text is TOML: {e}\n{xmpp}")),
            rest: DocumentMut::new(),
            raw: String::new(),
        }
    }

    /// `key = value` under `[gateway]`.
    pub fn gateway(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.gateway
            .entry("gateway")
            .or_insert_with(|| Item::Table(Table::new()))
            .as_table_mut()
            .expect("a plain table")
            .insert(key, Item::Value(value.into()));
        self
    }

    /// `key = value` added to `[xmpp]`.
    pub fn xmpp(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.xmpp
            .entry("xmpp")
            .or_insert_with(|| Item::Table(Table::new()))
            .as_table_mut()
            .expect("a plain table")
            .insert(key, Item::Value(value.into()));
        self
    }

    /// `[metrics]` with `listen = "addr"`.
    pub fn metrics(self, listen: SocketAddr) -> Self {
        self.section("metrics", Section::new().set("listen", listen.to_string()))
    }

    /// `role = [jids…]` under `[access]` (`read`, `control`, …).
    pub fn access(self, role: &str, jids: &[&str]) -> Self {
        self.section("access", Section::new().list(role, jids))
    }

    /// The keys of `section` added to the top-level table `[name]` (made if missing).
    pub fn section(mut self, name: &str, section: Section) -> Self {
        let table = self
            .rest
            .entry(name)
            .or_insert_with(|| Item::Table(Table::new()))
            .as_table_mut()
            .expect("a plain table");
        for (key, item) in section.0 {
            table.insert(&key, item);
        }
        self
    }

    /// `[publish]` with `min_interval = "0s"`: every reading is published, so a test need not
    /// wait out the rate limit.
    pub fn publish_every_reading(self) -> Self {
        self.section("publish", Section::new().set("min_interval", "0s"))
    }

    pub fn adapter(self, adapter: Section) -> Self {
        self.push("adapter", adapter)
    }

    pub fn device(self, device: Section) -> Self {
        self.push("device", device)
    }

    pub fn devices(self, devices: impl IntoIterator<Item = Section>) -> Self {
        devices.into_iter().fold(self, Self::device)
    }

    pub fn alert(self, alert: Section) -> Self {
        self.push("alert", alert)
    }

    /// TOML text appended as it is, after everything else.
    pub fn raw(mut self, text: &str) -> Self {
        self.raw.push_str(text);
        self
    }

    fn push(mut self, array: &str, entry: Section) -> Self {
        self.rest
            .entry(array)
            .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()))
            .as_array_of_tables_mut()
            .expect("an array of tables")
            .push(entry.0);
        self
    }

    pub fn build(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}",
            self.gateway, self.xmpp, self.rest, self.raw
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_come_out_as_a_hand_written_file_would_have_them() {
        let text = GatewayToml::new("g", "[xmpp]\nmode = \"component\"\n")
            .gateway("history", "1h")
            .access("read", &["a@localhost", "b@localhost"])
            .publish_every_reading()
            .adapter(sim_adapter())
            .device(
                device("relay", "sim")
                    .field(field("level").set("value", 5_i64).set("writable", true)),
            )
            .raw("# tail\n")
            .build();
        let parsed: toml::Table = toml::from_str(&text).expect(&text);
        let want: toml::Table = toml::from_str(
            r#"
            [gateway]
            name = "g"
            history = "1h"
            [xmpp]
            mode = "component"
            [access]
            read = ["a@localhost", "b@localhost"]
            [publish]
            min_interval = "0s"
            [[adapter]]
            id = "sim"
            type = "simulated"
            [[device]]
            id = "relay"
            adapter = "sim"
              [[device.field]]
              name = "level"
              value = 5
              writable = true
            "#,
        )
        .unwrap();
        assert_eq!(parsed, want, "{text}");
        assert!(text.ends_with("# tail\n"), "{text}");
        assert!(text.find("[gateway]") < text.find("[xmpp]"), "{text}");
    }

    #[test]
    fn xmpp_keys_inline_tables_and_no_gateway_section() {
        let server: SocketAddr = "127.0.0.1:5222".parse().unwrap();
        let text = GatewayToml::upstream(client_xmpp(server, "/tmp/ca.pem"))
            .xmpp("max_stanza_size", 4096_i64)
            .metrics("127.0.0.1:9100".parse().unwrap())
            .adapter(serial_adapter("uart", Path::new("/dev/ttyUSB0"), "kv"))
            .device(
                device("probe", "uart")
                    .inline("match", Section::new().set("id", 7_i64))
                    .field(register_field("t", "holding", 14)),
            )
            .build();
        let parsed: toml::Table = toml::from_str(&text).expect(&text);
        let want: toml::Table = toml::from_str(
            r#"
            [xmpp]
            mode = "client"
            jid = "gw@localhost"
            password_file = "gw.pass"
            server = "127.0.0.1:5222"
            ca_file = "/tmp/ca.pem"
            max_stanza_size = 4096
            [metrics]
            listen = "127.0.0.1:9100"
            [[adapter]]
            id = "uart"
            type = "serial"
            port = "/dev/ttyUSB0"
            format = "kv"
            [[device]]
            id = "probe"
            adapter = "uart"
            match = { id = 7 }
              [[device.field]]
              name = "t"
              register = "holding"
              address = 14
            "#,
        )
        .unwrap();
        assert_eq!(parsed, want, "{text}");
    }
}
