//! zigbee2mqtt: its retained `<base>/bridge/devices` document lists every device with what it
//! exposes. Each device with `definition.exposes` becomes an entity named after its friendly
//! name; its numeric, binary and enum exposes (also inside the `features` of a light, switch,
//! lock, climate or composite expose) become fields. A field reads key `property` of the JSON
//! on `<base>/<friendly_name>` (when `access` has bit 1, published state), is writable when
//! `access` has bit 2 (set) with `{"<property>": value}` on `<base>/<friendly_name>/set`, and
//! the device's availability is `<base>/<friendly_name>/availability`.

use gateway_api::FieldType;
use serde_json::Value as Json;

use super::entity::{
    short, Availability, AvailabilityMode, AvailabilityTopic, DeviceInfo, Entity, EntityField,
    Limits, Read, Source, Write,
};
use super::naming;
use crate::topic;

/// `access` bit: the value is published in the device's state.
const ACCESS_STATE: u64 = 1;
/// `access` bit: the value can be set.
const ACCESS_SET: u64 = 2;
/// How deep `features` may nest before the rest is ignored.
const MAX_DEPTH: usize = 4;

/// The topic of the device list.
pub fn devices_topic(base: &str) -> String {
    format!("{base}/bridge/devices")
}

/// What one devices document says: the entities, and what was wrong with some devices
/// (`(friendly name or index, reason)`; those devices are left out).
#[derive(Debug, Default)]
pub struct Devices {
    pub entities: Vec<Entity>,
    pub problems: Vec<(String, String)>,
}

/// Parses a `bridge/devices` document. A document that is not a JSON list is an error as a
/// whole; a device that is malformed is a problem of its own.
pub fn parse(base: &str, payload: &[u8]) -> Result<Devices, String> {
    let doc: Json = serde_json::from_slice(payload)
        .map_err(|e| format!("the devices document is not JSON: {e}"))?;
    let Json::Array(list) = doc else {
        return Err("the devices document is not a JSON list".into());
    };
    let mut out = Devices::default();
    for (i, dev) in list.iter().enumerate() {
        match device(base, dev) {
            Ok(Some(e)) => out.entities.push(e),
            Ok(None) => {}
            Err(why) => {
                let who = dev
                    .get("friendly_name")
                    .and_then(Json::as_str)
                    .map_or_else(|| format!("device #{i}"), short);
                out.problems.push((who, why));
            }
        }
    }
    Ok(out)
}

fn device(base: &str, dev: &Json) -> Result<Option<Entity>, String> {
    let Some(exposes) = dev
        .get("definition")
        .and_then(|d| d.get("exposes"))
        .and_then(Json::as_array)
    else {
        // The coordinator, an unsupported or not yet interviewed device.
        return Ok(None);
    };
    if dev.get("disabled").and_then(Json::as_bool) == Some(true) {
        return Ok(None);
    }
    let name = dev
        .get("friendly_name")
        .and_then(Json::as_str)
        .filter(|n| !n.is_empty())
        .ok_or("no `friendly_name`")?;
    let ieee = dev
        .get("ieee_address")
        .and_then(Json::as_str)
        .unwrap_or(name);
    let state = format!("{base}/{name}");
    topic::check_topic(&state).map_err(|e| format!("topic {:?}: {e}", short(&state)))?;
    let set = format!("{state}/set");
    let mut fields = Vec::new();
    for e in exposes {
        collect(e, &state, &set, &mut fields, 0);
    }
    if fields.is_empty() {
        return Ok(None);
    }
    let definition = dev.get("definition");
    let text = |v: Option<&Json>| v.and_then(Json::as_str).map(str::to_owned);
    Ok(Some(Entity {
        key: format!("zigbee2mqtt:{ieee}"),
        source: Source::Zigbee2mqtt,
        device: DeviceInfo {
            key: format!("zigbee2mqtt:{ieee}"),
            name: name.to_owned(),
            manufacturer: text(definition.and_then(|d| d.get("vendor"))),
            model: text(definition.and_then(|d| d.get("model"))),
        },
        fields,
        // zigbee2mqtt says when a device is gone through its availability topic.
        expire_after: None,
        availability: Availability {
            topics: vec![AvailabilityTopic {
                topic: format!("{state}/availability"),
                online: "online".into(),
                offline: "offline".into(),
                template: None,
            }],
            mode: AvailabilityMode::Latest,
        },
    }))
}

/// zigbee2mqtt's `value_on`/`value_off` as the text a payload compares to (they may be JSON
/// strings, booleans or numbers).
fn on_off_text(v: Option<&Json>, default: &str) -> String {
    match v {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Bool(b)) => b.to_string(),
        Some(Json::Number(n)) => n.to_string(),
        _ => default.to_owned(),
    }
}

fn collect(e: &Json, state: &str, set: &str, out: &mut Vec<EntityField>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    if let Some(features) = e.get("features").and_then(Json::as_array) {
        for f in features {
            collect(f, state, set, out, depth + 1);
        }
        return;
    }
    let Some(kind) = e.get("type").and_then(Json::as_str) else {
        return;
    };
    let Some(property) = e.get("property").and_then(Json::as_str) else {
        return;
    };
    let Some(name) = naming::field_slug(property) else {
        return;
    };
    if out.iter().any(|f| f.name == name) {
        return;
    }
    let access = e
        .get("access")
        .and_then(Json::as_u64)
        .unwrap_or(ACCESS_STATE);
    let number = |k: &str| e.get(k).and_then(Json::as_f64);
    let (kind, on_off, limits) = match kind {
        "numeric" => {
            let limits = match (number("value_min"), number("value_max")) {
                (Some(min), Some(max)) if min <= max => Limits::Range {
                    min,
                    max,
                    step: number("value_step").filter(|s| *s > 0.0).unwrap_or(0.0),
                },
                _ => Limits::None,
            };
            (FieldType::Numeric, None, limits)
        }
        "binary" => (
            FieldType::Boolean,
            Some((
                on_off_text(e.get("value_on"), "ON"),
                on_off_text(e.get("value_off"), "OFF"),
            )),
            Limits::None,
        ),
        "enum" => {
            let options = e
                .get("values")
                .and_then(Json::as_array)
                .map(|v| {
                    v.iter()
                        .filter_map(|o| o.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            (FieldType::String, None, Limits::Options(options))
        }
        "text" => (FieldType::String, None, Limits::None),
        _ => return,
    };
    let readable = access & ACCESS_STATE != 0;
    let settable = access & ACCESS_SET != 0;
    if !readable && !settable {
        return;
    }
    out.push(EntityField {
        name,
        unit: e
            .get("unit")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned(),
        kind,
        state_topic: readable.then(|| state.to_owned()),
        read: Read::JsonKey(property.to_owned()),
        command_topic: settable.then(|| set.to_owned()),
        write: Write::JsonKey {
            key: property.to_owned(),
            extra: Vec::new(),
        },
        on_off,
        limits: if settable { limits } else { Limits::None },
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Vec<u8> {
        let path = format!(
            "{}/../../tests/fixtures/discovery/zigbee2mqtt_bridge_devices.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).unwrap()
    }

    fn names(e: &Entity) -> Vec<&str> {
        e.fields.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn the_documented_devices_document() {
        let d = parse("zigbee2mqtt", &fixture()).unwrap();
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        // The coordinator has no definition.
        assert_eq!(d.entities.len(), 3);
        let sensor = &d.entities[0];
        assert_eq!(sensor.device.name, "Living Room Sensor");
        assert_eq!(sensor.key, "zigbee2mqtt:0x00158d0001d82999");
        assert_eq!(sensor.device.manufacturer.as_deref(), Some("Aqara"));
        assert_eq!(
            names(sensor),
            [
                "battery",
                "temperature",
                "humidity",
                "pressure",
                "linkquality"
            ]
        );
        let t = &sensor.fields[1];
        assert_eq!((t.unit.as_str(), t.writable()), ("°C", false));
        assert_eq!(
            t.state_topic.as_deref(),
            Some("zigbee2mqtt/Living Room Sensor")
        );
        assert_eq!(
            sensor.availability.topics[0].topic,
            "zigbee2mqtt/Living Room Sensor/availability"
        );

        let bulb = &d.entities[1];
        assert_eq!(
            names(bulb),
            [
                "state",
                "brightness",
                "effect",
                "power_on_behavior",
                "linkquality"
            ]
        );
        let state = &bulb.fields[0];
        assert_eq!((state.kind, state.writable()), (FieldType::Boolean, true));
        assert_eq!(
            state.command_topic.as_deref(),
            Some("zigbee2mqtt/Hallway Bulb/set")
        );
        assert_eq!(
            bulb.fields[1].limits,
            Limits::Range {
                min: 0.0,
                max: 254.0,
                step: 0.0
            }
        );
        // Write only: nothing to read, but settable.
        let effect = &bulb.fields[2];
        assert_eq!(
            (effect.state_topic.as_ref(), effect.writable()),
            (None, true)
        );
        assert!(matches!(&effect.limits, Limits::Options(o) if o.len() == 6));

        let plug = &d.entities[2];
        assert_eq!(
            names(plug),
            [
                "state",
                "power",
                "energy",
                "voltage",
                "child_lock",
                "linkquality"
            ]
        );
        assert_eq!(plug.fields[1].unit, "W");
        assert_eq!(
            plug.fields[4].on_off,
            Some(("LOCK".into(), "UNLOCK".into()))
        );
    }

    #[test]
    fn malformed_documents_and_devices() {
        assert!(parse("z", b"{").is_err());
        assert!(parse("z", br#"{"a":1}"#).is_err());
        let d = parse(
            "z",
            br#"[{"definition":{"exposes":[{"type":"numeric","property":"t"}]}},
                 {"friendly_name":"a+b","definition":{"exposes":[{"type":"numeric","property":"t"}]}},
                 {"friendly_name":"ok","definition":{"exposes":[{"type":"numeric","property":"t"},{"type":"numeric","property":"t"},{"type":"list","property":"l"}]}}]"#,
        )
        .unwrap();
        assert_eq!(d.problems.len(), 2, "{:?}", d.problems);
        assert_eq!(d.entities.len(), 1);
        assert_eq!(names(&d.entities[0]), ["t"]);
    }
}
