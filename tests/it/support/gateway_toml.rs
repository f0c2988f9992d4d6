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

use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, Value};

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

/// Device `thermo` of adapter `sim`, polled every `period`: its `temperature` (°C) steps
/// through 10 to 20 once per `period`, so every poll brings a new value.
pub fn stepping_thermo(period: &str) -> Section {
    device("thermo", "sim").set("poll", period).field(
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
    xmpp: String,
    rest: DocumentMut,
    raw: String,
}

impl GatewayToml {
    /// `[gateway]` with `name`, and `xmpp` (e.g. [`super::Prosody::component_toml`]) as it is.
    pub fn new(name: &str, xmpp: impl Into<String>) -> Self {
        let mut gateway = DocumentMut::new();
        gateway["gateway"] = Item::Table(Table::new());
        gateway["gateway"]["name"] = toml_edit::value(name);
        Self {
            gateway,
            xmpp: xmpp.into(),
            rest: DocumentMut::new(),
            raw: String::new(),
        }
    }

    /// `key = value` under `[gateway]`.
    pub fn gateway(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.gateway["gateway"][key] = Item::Value(value.into());
        self
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
}
