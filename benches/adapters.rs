//! What the adapters spend per reading before the core sees it: Modbus register decoding (every
//! data type), MQTT JSON pointer extraction, and the serial line parsers.
//!
//! `cargo bench --bench adapters`. Numbers are reported, never asserted.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway_api::{DeviceId, FieldSpec, FieldType};
use gateway_modbus::codec::{self, ByteOrder, DataType, Encoding};
use gateway_mqtt::config::{DeviceConfig, FieldConfig, MqttDevice, MqttField};
use gateway_mqtt::payload;
use gateway_serial::config::Format;
use gateway_serial::parse::csv::CsvSyntax;
use gateway_serial::parse::kv::KvSyntax;
use gateway_serial::parse::Parser;

fn modbus(c: &mut Criterion) {
    let mut g = c.benchmark_group("modbus_decode");
    g.throughput(Throughput::Elements(1));
    let cases: [(&str, Encoding, Vec<u16>); 12] = [
        ("bool", Encoding::plain(DataType::Bool), vec![1]),
        (
            "bit",
            Encoding {
                bit: Some(5),
                ..Encoding::plain(DataType::Bool)
            },
            vec![0x0020],
        ),
        ("int16", Encoding::plain(DataType::Int16), vec![0xFF38]),
        ("uint16", Encoding::plain(DataType::Uint16), vec![2300]),
        (
            "int32",
            Encoding::plain(DataType::Int32),
            vec![0xFFFF, 0x1234],
        ),
        ("uint32", Encoding::plain(DataType::Uint32), vec![1, 2]),
        ("int64", Encoding::plain(DataType::Int64), vec![0xFFFF; 4]),
        (
            "uint64",
            Encoding::plain(DataType::Uint64),
            vec![0, 1, 2, 3],
        ),
        (
            "float32_cdab",
            Encoding {
                byte_order: ByteOrder::Cdab,
                ..Encoding::plain(DataType::Float32)
            },
            vec![0x0000, 0x41AC],
        ),
        (
            "float64_scaled",
            Encoding {
                scale: 0.1,
                offset: -40.0,
                decimals: Some(2),
                ..Encoding::plain(DataType::Float64)
            },
            vec![0x4035, 0x8000, 0, 0],
        ),
        (
            "int16_scaled",
            Encoding {
                scale: 0.1,
                decimals: Some(1),
                ..Encoding::plain(DataType::Int16)
            },
            vec![215],
        ),
        (
            "string8",
            Encoding {
                length: 8,
                ..Encoding::plain(DataType::String)
            },
            b"SN-0042-AB\0\0\0\0\0\0"
                .chunks(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect(),
        ),
    ];
    for (name, enc, words) in &cases {
        assert!(codec::decode(enc, words).is_ok(), "{name}");
        g.bench_function(*name, |b| {
            b.iter(|| codec::decode(black_box(enc), black_box(words)))
        });
    }
    g.finish();
}

fn mqtt_field(name: &str, kind: FieldType, json: Option<&str>) -> MqttField {
    MqttField {
        spec: FieldSpec {
            name: Arc::from(name),
            unit: Arc::from(""),
            kind,
            writable: false,
        },
        config: FieldConfig {
            json: json.map(str::to_owned),
            ..FieldConfig::default()
        },
    }
}

fn mqtt(c: &mut Criterion) {
    let mut g = c.benchmark_group("mqtt_payload");
    g.throughput(Throughput::Elements(1));
    let tasmota = MqttDevice {
        id: DeviceId::new("plug").unwrap(),
        config: DeviceConfig::default(),
        fields: vec![
            mqtt_field("power", FieldType::Numeric, Some("/ENERGY/Power")),
            mqtt_field("voltage", FieldType::Integer, Some("/ENERGY/Voltage")),
            mqtt_field("total", FieldType::Numeric, Some("/ENERGY/Total")),
        ],
    };
    let tasmota_payload = br#"{"Time":"2026-01-02T03:04:05","ENERGY":{"TotalStartTime":"2025-01-01T00:00:00","Total":12.345,"Yesterday":0.5,"Today":0.2,"Power":42,"ApparentPower":50,"ReactivePower":10,"Factor":0.84,"Voltage":231,"Current":0.21}}"#;
    let all = [0, 1, 2];
    assert!(payload::decode(&tasmota, &all, tasmota_payload, 65536)
        .problems
        .is_empty());
    g.bench_function("json_pointer_3_fields", |b| {
        b.iter(|| payload::decode(&tasmota, &all, black_box(tasmota_payload), 65536))
    });
    let plain = MqttDevice {
        id: DeviceId::new("outdoor").unwrap(),
        config: DeviceConfig::default(),
        fields: vec![mqtt_field("temperature", FieldType::Numeric, None)],
    };
    g.bench_function("bare_number", |b| {
        b.iter(|| payload::decode(&plain, &[0], black_box(b"21.5"), 65536))
    });
    g.finish();
}

fn serial(c: &mut Criterion) {
    let mut g = c.benchmark_group("serial_parse");
    g.throughput(Throughput::Elements(1));
    let re = gateway_serial::regex::Regex::new(
        r"^T=(?P<temp>-?[0-9.]+)\s+H=(?P<hum>[0-9.]+)\s+P=(?P<pres>[0-9.]+)$",
    )
    .unwrap();
    let cases = [
        (
            "json",
            Format::Json,
            r#"{"id":"250715","temp":21.5,"hum":40,"fan":true}"#,
        ),
        (
            "kv",
            Format::Kv(KvSyntax::default()),
            "temp=21.5 hum=40 fan=1 mode=\"auto heat\"",
        ),
        (
            "xml",
            Format::Xml,
            "<SensorTemp ID='250715' TimeDate='19:28:33 Jul 17 2015'> 22 </SensorTemp>",
        ),
        ("regex", Format::Regex(re), "T=21.5 H=40.2 P=1013.2"),
        (
            "csv",
            Format::Csv(CsvSyntax {
                columns: Some(vec!["id".into(), "temp".into(), "hum".into(), "fan".into()]),
                ..CsvSyntax::default()
            }),
            "250715,21.5,40,1",
        ),
    ];
    for (name, format, line) in cases {
        let mut parser = Parser::new(&format);
        assert!(
            matches!(parser.parse(line), Ok(Some(_))),
            "{name} does not parse"
        );
        g.bench_function(name, |b| b.iter(|| parser.parse(black_box(line))));
    }
    g.finish();
}

criterion_group!(benches, modbus, mqtt, serial);
criterion_main!(benches);
