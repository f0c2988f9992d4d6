//! Payloads both ways: a received message to field values, availability payloads to online or
//! offline, and a write to the command messages to publish.
//!
//! Decoding never panics and never gives up on a whole message because of one field: each field
//! either gets a value or a [`Problem`] that says what was wrong (the caller logs and counts it,
//! and the field keeps its last good value). A field with a JSON pointer reads from the payload
//! parsed as JSON (parsed once per message); a field without one takes the whole payload as its
//! value. The field's type decides the conversion; `scale` and `offset` apply to numbers.

use std::collections::HashMap;
use std::fmt;

use gateway_api::{FieldType, Value};
use serde_json::Value as Json;

use crate::config::{Availability, MqttDevice, MqttField, Template};

/// What was wrong with (part of) a payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    TooLarge {
        len: usize,
        max: usize,
    },
    NotJson(String),
    NotText,
    /// The pointer does not resolve in this payload.
    Missing {
        pointer: String,
    },
    /// The value found does not make a value of the field's type.
    BadValue {
        place: String,
        reason: String,
    },
    /// An availability payload that is neither the online nor the offline one.
    Availability {
        payload: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::TooLarge { len, max } => {
                write!(f, "payload of {len} bytes exceeds the limit of {max} bytes")
            }
            Problem::NotJson(e) => write!(f, "payload is not valid JSON: {e}"),
            Problem::NotText => f.write_str("payload is not UTF-8 text"),
            Problem::Missing { pointer } => write!(f, "JSON pointer `{pointer}` does not resolve"),
            Problem::BadValue { place, reason } => write!(f, "{place}: {reason}"),
            Problem::Availability { payload } => {
                write!(
                    f,
                    "availability payload {payload} is neither online nor offline"
                )
            }
        }
    }
}

/// The outcome of decoding one message for one device.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    /// (index of the field in the device, its new value), in the order asked.
    pub values: Vec<(usize, Value)>,
    pub problems: Vec<Problem>,
}

/// Decodes `payload` for the fields `wanted` (indices into `device.fields`).
pub fn decode(device: &MqttDevice, wanted: &[usize], payload: &[u8], max: usize) -> Decoded {
    let mut out = Decoded::default();
    if payload.len() > max {
        out.problems.push(Problem::TooLarge {
            len: payload.len(),
            max,
        });
        return out;
    }
    // Parsed at most once, and only when some field has a pointer.
    let mut json: Option<Result<Json, Problem>> = None;
    for &i in wanted {
        let Some(field) = device.fields.get(i) else {
            continue;
        };
        let result = match (&field.config.value_template, &field.config.json) {
            (Some(t), _) => match std::str::from_utf8(payload) {
                Err(_) => Err(Problem::NotText),
                Ok(text) => match t.render_payload(text) {
                    Ok(v) => from_text(&v, field).map_err(|reason| Problem::BadValue {
                        place: "the value template's result".to_owned(),
                        reason,
                    }),
                    Err(e) => Err(Problem::BadValue {
                        place: "the value template".to_owned(),
                        reason: e.to_string(),
                    }),
                },
            },
            (None, Some(pointer)) => {
                let doc = json.get_or_insert_with(|| {
                    serde_json::from_slice::<Json>(payload)
                        .map_err(|e| Problem::NotJson(e.to_string()))
                });
                match doc {
                    // Reported once per message, not once per field.
                    Err(e) => {
                        if !out.problems.contains(e) {
                            out.problems.push(e.clone());
                        }
                        continue;
                    }
                    Ok(doc) => match doc.pointer(pointer) {
                        None => Err(Problem::Missing {
                            pointer: pointer.clone(),
                        }),
                        Some(v) => from_json(v, field).map_err(|reason| Problem::BadValue {
                            place: if pointer.is_empty() {
                                "the JSON payload".to_owned()
                            } else {
                                format!("`{pointer}`")
                            },
                            reason,
                        }),
                    },
                }
            }
            (None, None) => match std::str::from_utf8(payload) {
                Err(_) => Err(Problem::NotText),
                Ok(text) => from_text(text, field).map_err(|reason| Problem::BadValue {
                    place: "the payload".to_owned(),
                    reason,
                }),
            },
        };
        match result.and_then(|v| {
            scaled(v, field).map_err(|reason| Problem::BadValue {
                place: field
                    .config
                    .json
                    .as_ref()
                    .map_or_else(|| "the payload".to_owned(), |p| format!("`{p}`")),
                reason,
            })
        }) {
            Ok(v) => out.values.push((i, v)),
            Err(p) => out.problems.push(p),
        }
    }
    out
}

/// A short, single-line rendering of what was found, for messages.
fn shown(text: &str) -> String {
    const MAX: usize = 40;
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() > MAX {
        let cut: String = one_line.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

fn shown_json(v: &Json) -> String {
    shown(&v.to_string())
}

/// A JSON value as a value of the field's type (before scaling).
fn from_json(v: &Json, field: &MqttField) -> Result<Value, String> {
    let kind = field.spec.kind;
    match (kind, v) {
        (_, Json::Null) => Err(format!("null is not a value of type {kind}")),
        (FieldType::String, Json::String(s)) => Ok(Value::Text(s.clone())),
        (FieldType::String, other) => Ok(Value::Text(other.to_string())),
        (_, Json::String(s)) => from_text(s, field),
        (FieldType::Numeric, Json::Number(n)) => match n.as_f64() {
            Some(f) if f.is_finite() => Ok(Value::Float(f)),
            _ => Err(format!("{n} is not a finite number")),
        },
        (FieldType::Integer, Json::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Value::Int(i)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::Int(f as i64)),
            _ => Err(format!("{n} is not an integer")),
        },
        (FieldType::Boolean, Json::Bool(b)) => Ok(Value::Bool(*b)),
        (FieldType::Boolean, Json::Number(n)) => match n.as_f64() {
            Some(0.0) => Ok(Value::Bool(false)),
            Some(1.0) => Ok(Value::Bool(true)),
            _ => Err(format!(
                "{n} is not a boolean (use true/false, on/off or 1/0)"
            )),
        },
        (FieldType::Boolean, other) => Err(format!(
            "{} is not a boolean (use true/false, on/off or 1/0)",
            shown_json(other)
        )),
        (_, other) => Err(format!("{} is not a number", shown_json(other))),
    }
}

/// Text (a whole payload, or a JSON string) as a value of the field's type (before scaling).
fn from_text(text: &str, field: &MqttField) -> Result<Value, String> {
    let t = text.trim();
    match field.spec.kind {
        FieldType::String => Ok(Value::Text(text.to_owned())),
        FieldType::Boolean => {
            let c = &field.config;
            if c.payload_on
                .as_deref()
                .is_some_and(|on| on.trim().eq_ignore_ascii_case(t))
            {
                return Ok(Value::Bool(true));
            }
            if c.payload_off
                .as_deref()
                .is_some_and(|off| off.trim().eq_ignore_ascii_case(t))
            {
                return Ok(Value::Bool(false));
            }
            Value::parse(FieldType::Boolean, t).map_err(|_| {
                format!(
                    "{:?} is not a boolean (use true/false, on/off or 1/0)",
                    shown(t)
                )
            })
        }
        FieldType::Numeric => match t.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(f)),
            Ok(_) => Err(format!("{:?} is not a finite number", shown(t))),
            Err(_) => Err(format!("{:?} is not a number", shown(t))),
        },
        FieldType::Integer => {
            if let Ok(i) = t.parse::<i64>() {
                return Ok(Value::Int(i));
            }
            match t.parse::<f64>() {
                Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::Int(f as i64)),
                _ => Err(format!("{:?} is not an integer", shown(t))),
            }
        }
    }
}

/// Applies `value = raw * scale + offset` to numbers.
fn scaled(v: Value, field: &MqttField) -> Result<Value, String> {
    let (scale, offset) = (field.config.scale, field.config.offset);
    if scale == 1.0 && offset == 0.0 {
        return Ok(v);
    }
    match v {
        Value::Float(f) => {
            let x = f * scale + offset;
            if x.is_finite() {
                Ok(Value::Float(x))
            } else {
                Err(format!("{f} scaled is not a finite number"))
            }
        }
        Value::Int(i) => {
            let x = i as f64 * scale + offset;
            if x.fract() == 0.0 && x.abs() < 9.0e15 {
                Ok(Value::Int(x as i64))
            } else {
                Err(format!("{i} scaled is {x}, not an integer"))
            }
        }
        other => Ok(other),
    }
}

/// Reads an availability payload: the configured online/offline texts (any case, surrounding
/// space ignored), or zigbee2mqtt's JSON form `{"state":"online"}`.
pub fn availability(payload: &[u8], avail: &Availability) -> Result<bool, Problem> {
    let text = std::str::from_utf8(payload).map_err(|_| Problem::NotText)?;
    let mut t = text.trim();
    let parsed;
    if t.starts_with('{') {
        if let Ok(Json::Object(map)) = serde_json::from_str::<Json>(t) {
            if let Some(Json::String(state)) = map.get("state") {
                parsed = state.clone();
                t = parsed.trim();
            }
        }
    }
    if t.eq_ignore_ascii_case(avail.online.trim()) {
        Ok(true)
    } else if t.eq_ignore_ascii_case(avail.offline.trim()) {
        Ok(false)
    } else {
        Err(Problem::Availability {
            payload: format!("{:?}", shown(text)),
        })
    }
}

/// One message to publish for a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Why a write cannot be turned into commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("field {0:?} has no command topic")]
    NoTopic(String),
    #[error("the command template of field {0:?} failed: {1}")]
    Template(String, String),
}

/// The command messages for `values` (field index, value already of the field's type), in
/// order: fields without a template that share a command topic go into one JSON object
/// `{"<field>": <value>, ...}`; a field with a template gets a message of its own.
pub fn encode(device: &MqttDevice, values: &[(usize, Value)]) -> Result<Vec<Command>, EncodeError> {
    let mut out: Vec<Command> = Vec::new();
    // Topic -> (index in `out`, the object being built).
    let mut objects: HashMap<String, (usize, serde_json::Map<String, Json>)> = HashMap::new();
    for (i, value) in values {
        let Some(field) = device.fields.get(*i) else {
            continue;
        };
        let topic = field
            .config
            .command_topic
            .as_ref()
            .or(device.config.command_topic.as_ref())
            .ok_or_else(|| EncodeError::NoTopic(field.spec.name.to_string()))?;
        let raw = unscaled(value, field);
        let template = field
            .config
            .command_template
            .as_ref()
            .or(device.config.command_template.as_ref());
        match template {
            Some(t) => out.push(Command {
                topic: topic.clone(),
                payload: render(t, &field.spec.name, &raw, field)
                    .map_err(|e| EncodeError::Template(field.spec.name.to_string(), e))?
                    .into_bytes(),
            }),
            None => {
                let entry = objects.entry(topic.clone()).or_insert_with(|| {
                    out.push(Command {
                        topic: topic.clone(),
                        payload: Vec::new(),
                    });
                    (out.len() - 1, serde_json::Map::new())
                });
                entry
                    .1
                    .insert(field.spec.name.to_string(), json_of(&raw, field));
            }
        }
    }
    for (_, (at, map)) in objects {
        out[at].payload = Json::Object(map).to_string().into_bytes();
    }
    Ok(out)
}

/// The inverse of `scale`/`offset`: what the device is sent for a value.
fn unscaled(v: &Value, field: &MqttField) -> Value {
    let (scale, offset) = (field.config.scale, field.config.offset);
    if scale == 1.0 && offset == 0.0 {
        return v.clone();
    }
    match v.as_f64() {
        Some(x) if !matches!(v, Value::Bool(_)) => {
            let raw = (x - offset) / scale;
            if raw.fract() == 0.0 && raw.abs() < 9.0e15 {
                Value::Int(raw as i64)
            } else {
                Value::Float(raw)
            }
        }
        _ => v.clone(),
    }
}

/// A value as JSON: booleans as `payload_on`/`payload_off` when set, whole numbers without `.0`.
fn json_of(v: &Value, field: &MqttField) -> Json {
    match v {
        Value::Bool(b) => match (b, &field.config.payload_on, &field.config.payload_off) {
            (true, Some(on), _) => Json::String(on.clone()),
            (false, _, Some(off)) => Json::String(off.clone()),
            _ => Json::Bool(*b),
        },
        Value::Int(i) => Json::from(*i),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Json::from(*f as i64),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Text(t) => Json::String(t.clone()),
    }
}

/// A value as bare text: booleans as `payload_on`/`payload_off` when set, else `true`/`false`.
fn text_of(v: &Value, field: &MqttField) -> String {
    match v {
        Value::Bool(true) => field
            .config
            .payload_on
            .clone()
            .unwrap_or_else(|| "true".into()),
        Value::Bool(false) => field
            .config
            .payload_off
            .clone()
            .unwrap_or_else(|| "false".into()),
        other => other.to_string(),
    }
}

fn render(t: &Template, field_name: &str, v: &Value, field: &MqttField) -> Result<String, String> {
    if let Some(j) = t.jinja() {
        // As Home Assistant passes it: a boolean as its payload, a number as a number.
        let value = match v {
            Value::Bool(_) => minijinja::Value::from(text_of(v, field)),
            Value::Int(i) => minijinja::Value::from(*i),
            Value::Float(f) => minijinja::Value::from(*f),
            Value::Text(s) => minijinja::Value::from(s.clone()),
        };
        return j.render_command(value).map_err(|e| e.to_string());
    }
    Ok(t.as_str()
        .replace("{value}", &text_of(v, field))
        .replace("{json}", &json_of(v, field).to_string())
        .replace("{field}", field_name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DeviceConfig, FieldConfig, TopicBinding, DEFAULT_OFFLINE, DEFAULT_ONLINE};
    use gateway_api::{DeviceId, FieldSpec};

    fn field(name: &str, kind: FieldType, json: Option<&str>) -> MqttField {
        MqttField {
            spec: FieldSpec {
                name: name.into(),
                unit: "".into(),
                kind,
                writable: true,
            },
            config: FieldConfig {
                json: json.map(str::to_owned),
                ..FieldConfig::default()
            },
        }
    }

    fn device(fields: Vec<MqttField>) -> MqttDevice {
        MqttDevice {
            id: DeviceId::new("d").unwrap(),
            config: DeviceConfig {
                command_topic: Some("d/set".into()),
                ..DeviceConfig::default()
            },
            fields,
        }
    }

    fn all(d: &MqttDevice) -> Vec<usize> {
        (0..d.fields.len()).collect()
    }

    #[test]
    fn json_pointers_pick_values_of_the_field_type() {
        let d = device(vec![
            field("t", FieldType::Numeric, Some("/sensors/0/temp")),
            field("n", FieldType::Integer, Some("/count")),
            field("on", FieldType::Boolean, Some("/relay")),
            field("s", FieldType::String, Some("/name")),
            field("h", FieldType::Numeric, Some("/hum")),
            field("obj", FieldType::String, Some("/sensors/0")),
            field("a~b", FieldType::Integer, Some("/a~1b")),
        ]);
        let payload = br#"{"sensors":[{"temp":21.5}],"count":4.0,"relay":"ON","name":"x","hum":"40","a/b":7}"#;
        let out = decode(&d, &all(&d), payload, 1000);
        assert_eq!(out.problems, []);
        assert_eq!(
            out.values,
            [
                (0, Value::Float(21.5)),
                (1, Value::Int(4)),
                (2, Value::Bool(true)),
                (3, Value::Text("x".into())),
                (4, Value::Float(40.0)),
                (5, Value::Text(r#"{"temp":21.5}"#.into())),
                (6, Value::Int(7)),
            ]
        );
    }

    #[test]
    fn whole_payloads_and_boolean_spellings() {
        let t = device(vec![field("t", FieldType::Numeric, None)]);
        assert_eq!(
            decode(&t, &[0], b" 21.5\n", 100).values,
            [(0, Value::Float(21.5))]
        );
        let n = device(vec![field("n", FieldType::Integer, None)]);
        assert_eq!(decode(&n, &[0], b"-3", 100).values, [(0, Value::Int(-3))]);
        assert_eq!(decode(&n, &[0], b"12.0", 100).values, [(0, Value::Int(12))]);
        let mut b = device(vec![field("b", FieldType::Boolean, None)]);
        for (p, v) in [
            ("true", true),
            ("OFF", false),
            ("1", true),
            ("0", false),
            ("on", true),
        ] {
            assert_eq!(
                decode(&b, &[0], p.as_bytes(), 100).values,
                [(0, Value::Bool(v))],
                "{p}"
            );
        }
        b.fields[0].config.payload_on = Some("OPEN".into());
        b.fields[0].config.payload_off = Some("closed".into());
        assert_eq!(
            decode(&b, &[0], b"open", 100).values,
            [(0, Value::Bool(true))]
        );
        assert_eq!(
            decode(&b, &[0], b"CLOSED", 100).values,
            [(0, Value::Bool(false))]
        );
        let s = device(vec![field("s", FieldType::String, None)]);
        assert_eq!(
            decode(&s, &[0], b"hello world", 100).values,
            [(0, Value::Text("hello world".into()))]
        );
        // A JSON document as a whole (`json = ""`).
        let j = device(vec![field("t", FieldType::Numeric, Some(""))]);
        assert_eq!(
            decode(&j, &[0], b"19", 100).values,
            [(0, Value::Float(19.0))]
        );
    }

    #[test]
    fn scale_and_offset() {
        let mut d = device(vec![
            field("t", FieldType::Numeric, Some("/t")),
            field("i", FieldType::Integer, Some("/i")),
            field("j", FieldType::Integer, Some("/j")),
        ]);
        for f in &mut d.fields {
            f.config.scale = 0.5;
            f.config.offset = -1.0;
        }
        let out = decode(&d, &all(&d), br#"{"t": 45, "i": 10, "j": 3}"#, 100);
        assert_eq!(out.values, [(0, Value::Float(21.5)), (1, Value::Int(4))]);
        assert_eq!(
            out.problems,
            [Problem::BadValue {
                place: "`/j`".into(),
                reason: "3 scaled is 0.5, not an integer".into()
            }]
        );
        // Writes apply the inverse.
        let cmds = encode(&d, &[(0, Value::Float(21.5)), (1, Value::Int(4))]).unwrap();
        assert_eq!(cmds.len(), 1);
        assert_eq!(
            String::from_utf8_lossy(&cmds[0].payload),
            r#"{"i":10,"t":45}"#
        );
    }

    #[test]
    fn problems_are_named_and_other_fields_still_decode() {
        let d = device(vec![
            field("t", FieldType::Numeric, Some("/t")),
            field("h", FieldType::Numeric, Some("/h")),
            field("b", FieldType::Boolean, Some("/b")),
            field("n", FieldType::Integer, Some("/n")),
        ]);
        let out = decode(&d, &all(&d), br#"{"t": "warm", "b": 2, "n": null}"#, 100);
        assert_eq!(out.values, []);
        let text: Vec<String> = out.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                r#"`/t`: "warm" is not a number"#,
                "JSON pointer `/h` does not resolve",
                "`/b`: 2 is not a boolean (use true/false, on/off or 1/0)",
                "`/n`: null is not a value of type integer",
            ]
        );
        let out = decode(&d, &all(&d), b"{not json", 100);
        assert_eq!(out.values, []);
        assert_eq!(out.problems.len(), 1, "one JSON error per message");
        assert!(out.problems[0]
            .to_string()
            .starts_with("payload is not valid JSON: "));
        let out = decode(&d, &all(&d), &[b'x'; 101], 100);
        assert_eq!(out.problems, [Problem::TooLarge { len: 101, max: 100 }]);
        assert_eq!(
            out.problems[0].to_string(),
            "payload of 101 bytes exceeds the limit of 100 bytes"
        );
        let bare = device(vec![field("t", FieldType::Numeric, None)]);
        assert_eq!(
            decode(&bare, &[0], &[0xff, 0xfe], 100).problems,
            [Problem::NotText]
        );
        let out = decode(&bare, &[0], b"NaN", 100);
        assert_eq!(
            out.problems[0].to_string(),
            r#"the payload: "NaN" is not a finite number"#
        );
        let long = decode(&bare, &[0], "x".repeat(80).as_bytes(), 100);
        assert!(
            long.problems[0]
                .to_string()
                .ends_with("…\" is not a number"),
            "{:?}",
            long.problems
        );
    }

    #[test]
    fn availability_payloads() {
        let a = Availability {
            topic: TopicBinding::new("a", "d", false).unwrap(),
            online: DEFAULT_ONLINE.into(),
            offline: DEFAULT_OFFLINE.into(),
        };
        assert_eq!(availability(b"online", &a), Ok(true));
        assert_eq!(availability(b"Offline\n", &a), Ok(false));
        assert_eq!(availability(br#"{"state":"online"}"#, &a), Ok(true));
        assert_eq!(availability(br#"{"state": "offline"}"#, &a), Ok(false));
        assert_eq!(
            availability(b"maybe", &a),
            Err(Problem::Availability {
                payload: "\"maybe\"".into()
            })
        );
        assert!(availability(br#"{"status":"online"}"#, &a).is_err());
        let lwt = Availability {
            online: "Online".into(),
            offline: "Offline".into(),
            ..a
        };
        assert_eq!(availability(b"Online", &lwt), Ok(true));
    }

    #[test]
    fn commands_group_by_topic_and_honour_templates() {
        let mut d = device(vec![
            field("state", FieldType::Boolean, None),
            field("brightness", FieldType::Integer, None),
            field("power", FieldType::Boolean, None),
            field("note", FieldType::String, None),
            field("level", FieldType::Numeric, None),
        ]);
        d.fields[0].config.payload_on = Some("ON".into());
        d.fields[0].config.payload_off = Some("OFF".into());
        d.fields[2].config.command_topic = Some("cmnd/d/POWER".into());
        d.fields[2].config.command_template = Some(Template::new("{value}").unwrap());
        d.fields[2].config.payload_on = Some("ON".into());
        d.fields[4].config.command_template =
            Some(Template::new(r#"{"{field}": {json}, "unit": "%"}"#).unwrap());
        let cmds = encode(
            &d,
            &[
                (0, Value::Bool(true)),
                (2, Value::Bool(true)),
                (1, Value::Int(100)),
                (3, Value::Text("a \"b\"".into())),
                (4, Value::Float(2.5)),
            ],
        )
        .unwrap();
        let shown: Vec<(String, String)> = cmds
            .iter()
            .map(|c| {
                (
                    c.topic.clone(),
                    String::from_utf8_lossy(&c.payload).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "d/set".to_owned(),
                    r#"{"brightness":100,"note":"a \"b\"","state":"ON"}"#.to_owned()
                ),
                ("cmnd/d/POWER".to_owned(), "ON".to_owned()),
                (
                    "d/set".to_owned(),
                    r#"{"level": 2.5, "unit": "%"}"#.to_owned()
                ),
            ]
        );
        let plain = device(vec![field("x", FieldType::Numeric, None)]);
        let cmds = encode(&plain, &[(0, Value::Float(20.0))]).unwrap();
        assert_eq!(String::from_utf8_lossy(&cmds[0].payload), r#"{"x":20}"#);
        let mut none = plain.clone();
        none.config.command_topic = None;
        assert_eq!(
            encode(&none, &[(0, Value::Float(1.0))]),
            Err(EncodeError::NoTopic("x".into()))
        );
    }
}
