//! What `xmpp-iot-gateway discover` prints: discovered devices as `[[device]]` and
//! `[[device.field]]` blocks of this adapter, so that a user can paste them into
//! `gateway.toml` and pin them. A pinned device is configured: discovery then leaves its id
//! alone.
//!
//! Every field gets its own `topic`; what discovery reads through a template becomes a
//! `value_template`, a key of a JSON payload a `json` pointer, and the command a
//! `command_template` (`{value}`, `{json}`, or the announcement's Jinja template), and the limits
//! of writes `min`/`max`/`step` or `options`. What the configuration cannot say (a second
//! availability topic, an availability template) is written as a comment.

use std::fmt::Write as _;

use gateway_api::{DiscoveredDevice, FieldType};

use super::entity::{Entity, EntityField, Limits, Read, Write};

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML number: a whole number as an integer, any other as a float (Rust's `Debug` form,
/// `0.5`, `1e20`, is also TOML's).
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:?}")
    }
}

/// An RFC 6901 pointer to key `k`.
fn pointer(k: &str) -> String {
    format!("/{}", k.replace('~', "~0").replace('/', "~1"))
}

/// The fields of `device` with the entity field each comes from, in the device's order.
fn sources<'a>(device: &DiscoveredDevice, entities: &'a [Entity]) -> Vec<&'a EntityField> {
    entities
        .iter()
        .flat_map(|e| e.fields.iter())
        .take(device.fields.len())
        .collect()
}

/// The blocks of every device, for adapter `adapter`.
pub fn blocks(adapter: &str, devices: &[(DiscoveredDevice, Vec<Entity>)]) -> String {
    let mut out = String::new();
    for (device, entities) in devices {
        device_block(&mut out, adapter, device, entities);
    }
    out
}

fn device_block(out: &mut String, adapter: &str, device: &DiscoveredDevice, entities: &[Entity]) {
    let made_by: Vec<&str> = [device.manufacturer.as_deref(), device.model.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let _ = write!(out, "\n# {} ", device.name.replace('\n', " "));
    if !made_by.is_empty() {
        let _ = write!(out, "({}) ", made_by.join(" ").replace('\n', " "));
    }
    let _ = writeln!(out, "from {} discovery", device.source);
    let _ = writeln!(out, "[[device]]");
    let _ = writeln!(out, "id = {}", quote(device.id.as_str()));
    let _ = writeln!(out, "adapter = {}", quote(adapter));
    let _ = writeln!(out, "name = {}", quote(&device.name));
    let avail = entities
        .iter()
        .find(|e| !e.availability.topics.is_empty())
        .map(|e| &e.availability);
    if let Some(a) = avail {
        let first = &a.topics[0];
        let _ = writeln!(out, "availability_topic = {}", quote(&first.topic));
        let _ = writeln!(out, "availability_online = {}", quote(&first.online));
        let _ = writeln!(out, "availability_offline = {}", quote(&first.offline));
        if first.template.is_some() {
            let _ = writeln!(
                out,
                "# (announced with an availability template, not applied here)"
            );
        }
        for other in &a.topics[1..] {
            let _ = writeln!(out, "# also announced: availability on {}", other.topic);
        }
    }
    // Every value expires (Home Assistant's `expire_after`): the device is offline once none
    // came for the longest of them, which is what `stale_after` says of a configured device.
    let expire_after = entities
        .iter()
        .map(|e| e.expire_after)
        .collect::<Option<Vec<_>>>()
        .and_then(|all| all.into_iter().max());
    if let Some(after) = expire_after {
        let _ = writeln!(
            out,
            "stale_after = {}",
            quote(&format!("{}s", after.as_secs().max(1)))
        );
    }
    for (spec, f) in device.fields.iter().zip(sources(device, entities)) {
        let _ = writeln!(out, "\n[[device.field]]");
        let _ = writeln!(out, "name = {}", quote(&spec.name));
        if !spec.unit.is_empty() {
            let _ = writeln!(out, "unit = {}", quote(&spec.unit));
        }
        if spec.kind != FieldType::Numeric {
            let _ = writeln!(out, "type = {}", quote(spec.kind.as_str()));
        }
        if let Some(t) = &f.state_topic {
            let _ = writeln!(out, "topic = {}", quote(t));
            match &f.read {
                Read::Payload => {}
                Read::Template(src) => {
                    let _ = writeln!(out, "value_template = {}", quote(src));
                }
                Read::JsonKey(k) => {
                    let _ = writeln!(out, "json = {}", quote(&pointer(k)));
                }
            }
        }
        if spec.kind == FieldType::Boolean {
            if let Some((on, off)) = &f.on_off {
                let _ = writeln!(out, "payload_on = {}", quote(on));
                let _ = writeln!(out, "payload_off = {}", quote(off));
            }
        }
        let Some(command) = &f.command_topic else {
            continue;
        };
        let _ = writeln!(out, "writable = true");
        let _ = writeln!(out, "command_topic = {}", quote(command));
        let template = match &f.write {
            Write::Payload => Some("{value}".to_owned()),
            Write::Template(src) => Some(src.clone()),
            Write::JsonKey { key, extra } if extra.is_empty() && **key == *spec.name => None,
            Write::JsonKey { key, extra } => {
                let mut t = String::from("{");
                for (k, v) in extra {
                    let _ = write!(
                        t,
                        "{}:{},",
                        serde_json::Value::from(k.as_str()),
                        serde_json::Value::from(v.as_str())
                    );
                }
                let _ = write!(t, "{}:{{json}}}}", serde_json::Value::from(key.as_str()));
                Some(t)
            }
        };
        if let Some(t) = template {
            let _ = writeln!(out, "command_template = {}", quote(&t));
        }
        match &f.limits {
            Limits::None => {}
            Limits::Range { min, max, step } => {
                for (key, v) in [("min", min), ("max", max)] {
                    if v.is_finite() {
                        let _ = writeln!(out, "{key} = {}", number(*v));
                    }
                }
                if *step > 0.0 {
                    let _ = writeln!(out, "step = {}", number(*step));
                }
            }
            Limits::Options(o) => {
                let list: Vec<String> = o.iter().map(|c| quote(c)).collect();
                let _ = writeln!(out, "options = [{}]", list.join(", "));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_pointers() {
        assert_eq!(
            quote(r#"{{ value_json["a"] }}"#),
            r#""{{ value_json[\"a\"] }}""#
        );
        assert_eq!(quote("a\\b\nc"), r#""a\\b\nc""#);
        assert_eq!(pointer("a/b~c"), "/a~1b~0c");
    }

    #[test]
    fn numbers_in_toml_form() {
        for (v, text) in [(254.0, "254"), (-12.0, "-12"), (0.5, "0.5"), (1e20, "1e20")] {
            assert_eq!(number(v), text);
        }
    }
}
