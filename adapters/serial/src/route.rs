//! From a parsed record to readings: which devices it belongs to (`match`), which of their
//! fields it carries, with which type and time.
//!
//! Pure and synchronous, so every rule is unit-tested here. A record goes to every device whose
//! `match` it satisfies (a device without `match` takes every record); each field whose key is
//! in the record becomes a reading of the field's type, timestamped with the record's own time
//! when it has one that parses (`time_key`), else with the time it arrived. A value that does
//! not convert to its field's type is reported back (and counted by the caller) without
//! affecting the record's other fields or devices. Text values lose the characters XML cannot
//! carry, so nothing a device prints can break a stanza.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gateway_api::{DeviceId, FieldType, Quality, Reading, Value, ValueError};

use crate::config::SerialDevice;
use crate::record::{Record, Selector};
use crate::time;

/// What became of one record.
#[derive(Debug, Default, PartialEq)]
pub struct Routed {
    pub readings: Vec<Reading>,
    /// Values that did not convert to their field's type.
    pub bad_values: Vec<BadValue>,
    /// How many devices the record belongs to (0: it matched none).
    pub matched: usize,
}

/// A value that does not fit its field.
#[derive(Debug, Clone, PartialEq)]
pub struct BadValue {
    pub device: DeviceId,
    pub field: Arc<str>,
    pub error: ValueError,
}

#[derive(Debug, Clone)]
struct Route {
    id: DeviceId,
    matcher: Vec<(Selector, String)>,
    fields: Vec<(Arc<str>, FieldType, Selector)>,
}

/// The routing table of one adapter.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
    time_keys: Vec<Selector>,
}

impl Router {
    pub fn new(devices: &[SerialDevice], time_keys: Vec<Selector>) -> Self {
        let routes = devices
            .iter()
            .map(|d| Route {
                id: d.id.clone(),
                matcher: d.config.matcher.clone(),
                fields: d
                    .fields
                    .iter()
                    .map(|f| (f.spec.name.clone(), f.spec.kind, f.config.source.clone()))
                    .collect(),
            })
            .collect();
        Router { routes, time_keys }
    }

    /// The readings `record` carries; `now` is when it arrived.
    pub fn route(&self, record: &Record, now: DateTime<Utc>) -> Routed {
        let timestamp = self
            .time_keys
            .iter()
            .find_map(|k| record.get(k).and_then(time::from_found))
            .unwrap_or(now);
        let mut out = Routed::default();
        for route in &self.routes {
            if !matches(record, &route.matcher) {
                continue;
            }
            out.matched += 1;
            for (name, kind, source) in &route.fields {
                let Some(found) = record.get(source) else {
                    continue;
                };
                match found.to_value(*kind) {
                    Ok(value) => out.readings.push(Reading {
                        device: route.id.clone(),
                        field: name.clone(),
                        value: clean(value),
                        timestamp,
                        quality: Quality::Good,
                    }),
                    Err(error) => out.bad_values.push(BadValue {
                        device: route.id.clone(),
                        field: name.clone(),
                        error,
                    }),
                }
            }
        }
        out
    }
}

/// Whether `record` has every `match` key with its value (surrounding spaces ignored).
fn matches(record: &Record, matcher: &[(Selector, String)]) -> bool {
    matcher.iter().all(|(key, want)| {
        record
            .get(key)
            .and_then(|found| found.text())
            .is_some_and(|have| have.trim() == want.trim())
    })
}

/// XML 1.0's `Char` production: what may appear in a stanza at all.
fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\u{9}' | '\u{A}' | '\u{D}'
        | '\u{20}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

fn clean(value: Value) -> Value {
    match value {
        Value::Text(t) if !t.chars().all(is_xml_char) => {
            Value::Text(t.chars().filter(|&c| is_xml_char(c)).collect())
        }
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SerialDeviceConfig, SerialField, SerialFieldConfig, DEFAULT_TIME_KEYS};
    use chrono::TimeZone;
    use gateway_api::FieldSpec;
    use serde_json::json;

    fn field(name: &str, kind: FieldType, source: Selector) -> SerialField {
        SerialField {
            spec: FieldSpec {
                name: name.into(),
                unit: "".into(),
                kind,
                writable: false,
            },
            config: SerialFieldConfig {
                source,
                command: None,
            },
        }
    }

    fn device(id: &str, matcher: &[(&str, &str)], fields: Vec<SerialField>) -> SerialDevice {
        SerialDevice {
            id: DeviceId::new(id).unwrap(),
            config: SerialDeviceConfig {
                matcher: matcher
                    .iter()
                    .map(|(k, v)| (Selector::key_or_pointer(k), v.to_string()))
                    .collect(),
            },
            fields,
        }
    }

    fn key(k: &str) -> Selector {
        Selector::Key(k.into())
    }

    fn router(devices: &[SerialDevice]) -> Router {
        Router::new(devices, DEFAULT_TIME_KEYS.iter().map(|k| key(k)).collect())
    }

    fn pairs(p: &[(&str, &str)]) -> Record {
        Record::Pairs(
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
    }

    fn summary(r: &Routed) -> Vec<String> {
        r.readings
            .iter()
            .map(|r| format!("{}.{}={:?}", r.device, r.field, r.value))
            .collect()
    }

    #[test]
    fn xml_records_are_routed_by_their_id_attribute() {
        let r = router(&[
            device(
                "boiler",
                &[("id", "250715")],
                vec![field("temp", FieldType::Numeric, key("SensorTemp"))],
            ),
            device(
                "attic",
                &[("id", "250716")],
                vec![field("temp", FieldType::Integer, key("SensorTemp"))],
            ),
        ]);
        let rec = crate::parse::xml::parse(
            "<SensorTemp ID='250716' TimeDate='19:28:33 Jul 17 2015'> 22 </SensorTemp>",
        )
        .unwrap();
        let out = r.route(&Record::Pairs(rec), now());
        assert_eq!(summary(&out), ["attic.temp=Int(22)"]);
        assert_eq!(out.matched, 1);
        assert_eq!(
            out.readings[0].timestamp,
            time::parse("19:28:33 Jul 17 2015").unwrap()
        );
        // No ID: no device has it.
        let out = r.route(&pairs(&[("SensorTemp", "1")]), now());
        assert_eq!((out.matched, out.readings.len()), (0, 0));
        // A timestamp that does not parse: the arrival time.
        let out = r.route(
            &pairs(&[("SensorTemp", "1"), ("ID", "250715"), ("TimeDate", "never")]),
            now(),
        );
        assert_eq!(out.readings[0].timestamp, now());
    }

    #[test]
    fn json_records_by_member_or_pointer() {
        let r = router(&[
            device(
                "a",
                &[("id", "1")],
                vec![
                    field("temp", FieldType::Numeric, Selector::Pointer("/t".into())),
                    field("raw", FieldType::String, Selector::Whole),
                ],
            ),
            device(
                "b",
                &[("/meta/node", "7")],
                vec![field(
                    "on",
                    FieldType::Boolean,
                    Selector::Pointer("/relay".into()),
                )],
            ),
        ]);
        let out = r.route(&Record::Json(json!({"id": 1, "t": 21.5})), now());
        assert_eq!(
            summary(&out),
            [
                "a.temp=Float(21.5)",
                "a.raw=Text(\"{\\\"id\\\":1,\\\"t\\\":21.5}\")"
            ]
        );
        let out = r.route(
            &Record::Json(json!({"meta": {"node": "7"}, "relay": "on", "time": 1437161313})),
            now(),
        );
        assert_eq!(summary(&out), ["b.on=Bool(true)"]);
        assert_eq!(
            out.readings[0].timestamp,
            time::parse("1437161313").unwrap()
        );
    }

    #[test]
    fn devices_without_match_take_every_record() {
        let r = router(&[
            device(
                "all",
                &[],
                vec![field("temp", FieldType::Numeric, key("temp"))],
            ),
            device(
                "seven",
                &[("id", "7")],
                vec![field("hum", FieldType::Numeric, key("hum"))],
            ),
        ]);
        let out = r.route(&pairs(&[("id", "7"), ("temp", "1"), ("hum", "2")]), now());
        assert_eq!(
            summary(&out),
            ["all.temp=Float(1.0)", "seven.hum=Float(2.0)"]
        );
        assert_eq!(out.matched, 2);
        let out = r.route(&pairs(&[("hum", "2")]), now());
        assert_eq!(out.matched, 1, "matched, even without any of its fields");
        assert!(out.readings.is_empty());
    }

    #[test]
    fn several_match_keys_must_all_hold() {
        let r = router(&[device(
            "d",
            &[("bus", "2"), ("ID", "x")],
            vec![field("v", FieldType::Numeric, key("v"))],
        )]);
        assert_eq!(
            r.route(&pairs(&[("id", " x "), ("BUS", "2"), ("v", "1")]), now())
                .matched,
            1
        );
        assert_eq!(
            r.route(&pairs(&[("id", "x"), ("v", "1")]), now()).matched,
            0
        );
        assert_eq!(
            r.route(&pairs(&[("id", "X"), ("bus", "2")]), now()).matched,
            0,
            "values are exact"
        );
    }

    #[test]
    fn a_wrong_type_spoils_only_its_own_field() {
        let r = router(&[device(
            "d",
            &[],
            vec![
                field("temp", FieldType::Numeric, key("temp")),
                field("count", FieldType::Integer, key("count")),
                field("ok", FieldType::Boolean, key("ok")),
            ],
        )]);
        let out = r.route(
            &pairs(&[("temp", "warm"), ("count", "3"), ("ok", "maybe")]),
            now(),
        );
        assert_eq!(summary(&out), ["d.count=Int(3)"]);
        assert_eq!(out.bad_values.len(), 2);
        assert_eq!(&*out.bad_values[0].field, "temp");
        assert!(matches!(out.bad_values[1].error, ValueError::NotBoolean(_)));
    }

    #[test]
    fn text_values_lose_what_xml_forbids() {
        let r = router(&[device(
            "d",
            &[],
            vec![field("label", FieldType::String, key("label"))],
        )]);
        let out = r.route(&pairs(&[("label", "a\u{0}b\u{1B}[0mc\u{FFFE}<&>")]), now());
        assert_eq!(out.readings[0].value, Value::Text("ab[0mc<&>".into()));
    }
}
