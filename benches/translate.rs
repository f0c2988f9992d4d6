//! What one reading costs on its way to XMPP: the presence status line, the XEP-0323 `<fields>`
//! payload, a whole push headline serialised to bytes, and cleaning hostile device text.
//!
//! `cargo bench --bench translate`. Numbers are reported, never asserted.

use std::hint::black_box;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway_api::{FieldSpec, FieldType, Quality, Value};
use xmpp_iot_gateway::translator::{self, Sample};
use xmpp_iot_gateway::xmpp::{stanzas, wire};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::MessageType;
use xmpp_parsers::presence::Type as PresenceType;

const COMPONENT_NS: &str = "jabber:component:accept";

fn spec(name: &str, unit: &str, kind: FieldType) -> FieldSpec {
    FieldSpec {
        name: Arc::from(name),
        unit: Arc::from(unit),
        kind,
        writable: false,
    }
}

/// A typical sensor: two numbers, a boolean and a short text.
fn device() -> (Vec<FieldSpec>, Vec<Value>) {
    (
        vec![
            spec("temperature", "°C", FieldType::Numeric),
            spec("humidity", "%", FieldType::Numeric),
            spec("heater", "", FieldType::Boolean),
            spec("mode", "", FieldType::String),
        ],
        vec![
            Value::Float(21.5),
            Value::Int(40),
            Value::Bool(true),
            Value::Text("auto".into()),
        ],
    )
}

fn stanzas_bench(c: &mut Criterion) {
    let (specs, values) = device();
    let pairs: Vec<(&FieldSpec, Option<&Value>)> =
        specs.iter().zip(values.iter().map(Some)).collect();
    let ts = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
    let sample = Sample {
        timestamp: ts,
        values: specs
            .iter()
            .zip(values.iter())
            .map(|(s, v)| (s, v, Quality::Good))
            .collect(),
        momentary: true,
    };
    let from: Jid = "greenhouse@sensors.localhost".parse().unwrap();
    let to: Jid = "ops@localhost".parse().unwrap();

    let mut g = c.benchmark_group("reading_to_stanza");
    g.throughput(Throughput::Elements(1));
    g.bench_function("status_line", |b| {
        b.iter(|| translator::status_line(black_box(&pairs)))
    });
    g.bench_function("presence_bytes", |b| {
        b.iter(|| {
            let status = translator::status_line(black_box(&pairs));
            let p = stanzas::presence(&from, Some(&to), PresenceType::None, &status);
            wire::encode(&p, COMPONENT_NS)
        })
    });
    g.bench_function("fields_element", |b| {
        b.iter(|| {
            translator::fields(
                0,
                "greenhouse",
                std::slice::from_ref(black_box(&sample)),
                true,
            )
        })
    });
    g.bench_function("fields_bytes", |b| {
        b.iter(|| {
            let el = translator::fields(
                0,
                "greenhouse",
                std::slice::from_ref(black_box(&sample)),
                true,
            );
            let mut buf = Vec::with_capacity(512);
            el.write_to(&mut buf).unwrap();
            buf
        })
    });
    g.bench_function("headline_bytes", |b| {
        b.iter(|| {
            let body = translator::status_line(black_box(&pairs));
            let fields = translator::fields(0, "greenhouse", std::slice::from_ref(&sample), true);
            let mut el = stanzas::text_message(MessageType::Headline, &from, &to, &body, None);
            el.append_child(fields);
            wire::encode(&el, COMPONENT_NS)
        })
    });
    g.finish();
}

fn clean_bench(c: &mut Criterion) {
    let plain = "temperature 21.5 °C, humidity 40 %, heater on, mode auto".repeat(4);
    let hostile: String = (0u32..256)
        .filter_map(char::from_u32)
        .chain(['\u{FFFE}', '\u{FFFF}', '\u{D7FF}', '\u{10FFFF}'])
        .collect();
    let markup = "<x a='&amp;'>\"]]></x>&lt;".repeat(8);
    let mut g = c.benchmark_group("xml_clean");
    for (name, s) in [
        ("clean_text", plain.as_str()),
        ("controls_and_nonchars", hostile.as_str()),
        ("markup", markup.as_str()),
    ] {
        g.throughput(Throughput::Bytes(s.len() as u64));
        g.bench_function(format!("clean/{name}"), |b| {
            b.iter(|| translator::clean(black_box(s)))
        });
        // The whole path a hostile value takes: cleaned, put in a stanza, serialised.
        let from: Jid = "d@sensors.localhost".parse().unwrap();
        let to: Jid = "ops@localhost".parse().unwrap();
        g.bench_function(format!("headline_bytes/{name}"), |b| {
            b.iter(|| {
                let el =
                    stanzas::text_message(MessageType::Headline, &from, &to, black_box(s), None);
                wire::encode(&el, COMPONENT_NS)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, stanzas_bench, clean_bench);
criterion_main!(benches);
