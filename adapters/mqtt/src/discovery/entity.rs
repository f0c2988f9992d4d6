//! What an announcement says, whatever announced it: entities (one Home Assistant discovery
//! config, or one zigbee2mqtt device) with the fields they add to a device, where each field's
//! value arrives and how it is written.

use std::time::Duration;

use gateway_api::{FieldType, Value};

/// Which announcement an entity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    HomeAssistant,
    Zigbee2mqtt,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::HomeAssistant => "homeassistant",
            Source::Zigbee2mqtt => "zigbee2mqtt",
        }
    }
}

/// The device an entity belongs to, as the announcement describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// Groups entities into one device: the first of Home Assistant's `device.identifiers`, a
    /// zigbee2mqtt IEEE address, or the entity's own key for an entity without a device.
    pub key: String,
    /// What the device id is made of.
    pub name: String,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
}

/// How a field's value is taken from a message on its state topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// The payload as text.
    Payload,
    /// A Jinja value template (its source) over `value` and `value_json`.
    Template(String),
    /// One key of a JSON object payload (zigbee2mqtt; lights of the `json` schema).
    JsonKey(String),
}

/// How a write becomes a payload on the command topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Booleans as their on/off payloads, everything else as text.
    Payload,
    /// A Jinja command template (its source) over `value`.
    Template(String),
    /// A JSON object `{"<key>": value}` (booleans as their on/off payloads), after the
    /// `extra` pairs (a `json` light's brightness goes with `"state": "ON"`).
    JsonKey {
        key: String,
        extra: Vec<(String, String)>,
    },
}

pub use crate::limits::Limits;

/// One field an entity adds to its device.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityField {
    /// Already made a field name (see `naming`).
    pub name: String,
    pub unit: String,
    pub kind: FieldType,
    /// `None`: nothing reports the value (an optimistic switch, a write-only zigbee2mqtt
    /// expose); the field knows what was last written.
    pub state_topic: Option<String>,
    pub read: Read,
    pub command_topic: Option<String>,
    pub write: Write,
    /// How a boolean is spelt: (on, off), both ways.
    pub on_off: Option<(String, String)>,
    pub limits: Limits,
}

impl EntityField {
    pub fn writable(&self) -> bool {
        self.command_topic.is_some()
    }

    /// A value read as text (a template's result, a payload) as a value of this field, `None`
    /// for what Home Assistant treats as "no value" (`unknown`, `unavailable`, `None`, empty).
    pub fn value_of_text(&self, text: &str) -> Result<Option<Value>, String> {
        let t = text.trim();
        if t.is_empty() || matches!(t, "unknown" | "unavailable" | "None" | "none") {
            return Ok(None);
        }
        match self.kind {
            FieldType::Boolean => {
                if let Some((on, off)) = &self.on_off {
                    if t == on {
                        return Ok(Some(Value::Bool(true)));
                    }
                    if t == off {
                        return Ok(Some(Value::Bool(false)));
                    }
                }
                Value::parse(FieldType::Boolean, t)
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
            FieldType::String => Ok(Some(Value::Text(t.to_owned()))),
            kind => Value::parse(kind, t).map(Some).map_err(|e| e.to_string()),
        }
    }

    /// A JSON value (one key of a JSON payload) as a value of this field.
    pub fn value_of_json(&self, v: &serde_json::Value) -> Result<Option<Value>, String> {
        use serde_json::Value as J;
        match v {
            J::Null => Ok(None),
            J::Bool(b) => match self.kind {
                FieldType::String => Ok(Some(Value::Text(b.to_string()))),
                _ => Ok(Value::Bool(*b).coerce(self.kind).ok()),
            },
            J::Number(n) => {
                let f = n.as_f64().filter(|f| f.is_finite());
                match (self.kind, f) {
                    (FieldType::Boolean, _) if self.on_off.is_some() => {
                        self.value_of_text(&n.to_string())
                    }
                    (kind, Some(f)) => Value::Float(f)
                        .coerce(kind)
                        .map(Some)
                        .map_err(|e| e.to_string()),
                    (_, None) => Err(format!("{n} is not a finite number")),
                }
            }
            J::String(s) => self.value_of_text(s),
            other => Err(format!(
                "{} is not a single value",
                short(&other.to_string())
            )),
        }
    }

    /// Checks a value about to be written against the field's limits; the value as written.
    pub fn check_write(&self, value: Value) -> Result<Value, String> {
        let value = value.coerce(self.kind).map_err(|e| e.to_string())?;
        self.limits.check(value)
    }

    /// The text a written value is sent as (before a template): a boolean's on/off payload,
    /// a whole number without `.0`, text as it is.
    pub fn payload_text(&self, value: &Value) -> String {
        match (value, &self.on_off) {
            (Value::Bool(b), Some((on, off))) => {
                if *b {
                    on.clone()
                } else {
                    off.clone()
                }
            }
            (Value::Bool(b), None) => {
                if *b {
                    "ON".into()
                } else {
                    "OFF".into()
                }
            }
            (v, _) => v.to_string(),
        }
    }
}

/// `true`/`false` of a zigbee2mqtt binary expose may be JSON booleans rather than text; this is
/// how such a boolean is written back.
pub fn json_of(field: &EntityField, value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Bool(_) => match &field.on_off {
            Some((on, off)) => {
                let text = if matches!(value, Value::Bool(true)) {
                    on
                } else {
                    off
                };
                // zigbee2mqtt's `value_on` may be a JSON boolean or number, kept as text here.
                serde_json::from_str::<J>(text)
                    .ok()
                    .filter(|j| !j.is_string() && !j.is_object() && !j.is_array())
                    .unwrap_or_else(|| J::String(text.clone()))
            }
            None => J::Bool(matches!(value, Value::Bool(true))),
        },
        Value::Int(i) => J::from(*i),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => J::from(*f as i64),
        Value::Float(f) => J::from(*f),
        Value::Text(t) => J::String(t.clone()),
    }
}

/// Availability of an entity: topics with the payloads that mean online and offline.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Availability {
    pub topics: Vec<AvailabilityTopic>,
    pub mode: AvailabilityMode,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AvailabilityTopic {
    pub topic: String,
    pub online: String,
    pub offline: String,
    /// A Jinja template (its source) whose result is compared instead of the payload.
    pub template: Option<String>,
}

/// Home Assistant's `availability_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AvailabilityMode {
    /// Online only when every topic says online.
    All,
    /// Online when any topic says online.
    Any,
    /// What the topic that spoke last says (the default).
    #[default]
    Latest,
}

/// One announced entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// Unique among all entities: source, then the config topic's parts or the IEEE address.
    pub key: String,
    pub source: Source,
    pub device: DeviceInfo,
    pub fields: Vec<EntityField>,
    pub availability: Availability,
    /// Home Assistant's `expire_after` (sensors): a value not renewed for this long has
    /// expired: it is no longer reported, and a device whose every value expired is offline.
    pub expire_after: Option<Duration>,
}

/// A short, single-line rendering of a payload part, for messages.
pub fn short(text: &str) -> String {
    const MAX: usize = 40;
    let one: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX + 1)
        .collect();
    if one.chars().count() > MAX {
        format!("{}…", one.chars().take(MAX).collect::<String>())
    } else {
        one
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(kind: FieldType, limits: Limits) -> EntityField {
        EntityField {
            name: "f".into(),
            unit: String::new(),
            kind,
            state_topic: None,
            read: Read::Payload,
            command_topic: Some("c".into()),
            write: Write::Payload,
            on_off: Some(("ON".into(), "OFF".into())),
            limits,
        }
    }

    #[test]
    fn values_as_home_assistant_reads_them() {
        let b = field(FieldType::Boolean, Limits::None);
        assert_eq!(b.value_of_text("ON"), Ok(Some(Value::Bool(true))));
        assert_eq!(b.value_of_text("OFF"), Ok(Some(Value::Bool(false))));
        assert_eq!(b.value_of_text("unavailable"), Ok(None));
        assert!(b.value_of_text("dim").is_err());
        let n = field(FieldType::Numeric, Limits::None);
        assert_eq!(n.value_of_text(" 21.6 "), Ok(Some(Value::Float(21.6))));
        assert_eq!(
            n.value_of_json(&serde_json::json!(3)),
            Ok(Some(Value::Float(3.0)))
        );
        assert!(n.value_of_json(&serde_json::json!([1])).is_err());
        assert_eq!(
            b.value_of_json(&serde_json::json!("ON")),
            Ok(Some(Value::Bool(true)))
        );
        assert_eq!(
            b.value_of_json(&serde_json::json!(true)),
            Ok(Some(Value::Bool(true)))
        );
    }

    #[test]
    fn writes_are_checked_against_limits() {
        let n = field(
            FieldType::Numeric,
            Limits::Range {
                min: 5.0,
                max: 30.0,
                step: 0.5,
            },
        );
        assert_eq!(n.check_write(Value::Float(21.5)), Ok(Value::Float(21.5)));
        assert!(n.check_write(Value::Float(31.0)).is_err());
        assert!(n.check_write(Value::Float(21.2)).is_err());
        assert!(n.check_write(Value::Text("warm".into())).is_err());
        let s = field(
            FieldType::String,
            Limits::Options(vec!["eco".into(), "comfort".into()]),
        );
        assert!(s.check_write(Value::Text("eco".into())).is_ok());
        assert!(s.check_write(Value::Text("turbo".into())).is_err());
        let b = field(FieldType::Boolean, Limits::None);
        assert_eq!(b.payload_text(&Value::Bool(false)), "OFF");
        assert_eq!(json_of(&b, &Value::Bool(true)), serde_json::json!("ON"));
        let mut lock = b.clone();
        lock.on_off = Some(("true".into(), "false".into()));
        assert_eq!(
            json_of(&lock, &Value::Bool(false)),
            serde_json::json!(false)
        );
        assert_eq!(json_of(&n, &Value::Float(128.0)), serde_json::json!(128));
    }
}
