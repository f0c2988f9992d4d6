//! The history store: committing a batch of readings, and a historical readout's query.
//!
//! `cargo bench --bench store`. The store lives in a temporary directory (on this machine's disk,
//! WAL mode, `synchronous = NORMAL`, as in production). Numbers are reported, never asserted.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gateway_api::{DeviceId, Quality, Reading, Value};
use xmpp_iot_gateway::store::{HistoryQuery, Store, StoreOptions};

const DEVICES: usize = 10;
const FIELDS: [&str; 4] = ["temperature", "humidity", "pressure", "state"];

fn readings(start_ms: i64, n: usize) -> Vec<Reading> {
    let ids: Vec<DeviceId> = (0..DEVICES)
        .map(|d| DeviceId::new(&format!("dev{d}")).unwrap())
        .collect();
    let fields: Vec<Arc<str>> = FIELDS.iter().map(|f| Arc::from(*f)).collect();
    (0..n)
        .map(|i| Reading {
            device: ids[i % DEVICES].clone(),
            field: fields[(i / DEVICES) % FIELDS.len()].clone(),
            value: if i % 5 == 4 {
                Value::Text("auto".into())
            } else {
                Value::Float(20.0 + (i % 100) as f64 / 10.0)
            },
            timestamp: Utc
                .timestamp_millis_opt(start_ms + i as i64)
                .single()
                .unwrap(),
            quality: Quality::Good,
        })
        .collect()
}

fn store_bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, _thread, _) = Store::open(
        dir.path(),
        StoreOptions {
            history: Duration::from_secs(3650 * 86400),
            // Commits happen on `flush`, as they would at the end of a batch window.
            batch_window: Duration::from_secs(3600),
            max_bytes: None,
        },
    )
    .unwrap();
    // A week of one reading per device and field every 10 s would be 2.4 M rows; a day of it at
    // 1 reading/s over 10 devices × 4 fields is 3.5 M. Start from 200 k rows so the indexes matter.
    let base = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp_millis();
    for chunk in readings(base, 200_000).chunks(10_000) {
        // Ten readings per adapter event, as a device with ten fields sends them.
        for event in chunk.chunks(10) {
            store.record(event.to_vec());
        }
        rt.block_on(store.flush());
    }

    let mut g = c.benchmark_group("store");
    g.sample_size(20);
    let mut next = base + 200_000;
    for batch in [100usize, 1000] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("batch_insert_{batch}"), |b| {
            b.iter_batched(
                || {
                    let rs = readings(next, batch);
                    next += batch as i64;
                    rs
                },
                |rs| {
                    for event in rs.chunks(10) {
                        store.record(event.to_vec());
                    }
                    rt.block_on(store.flush());
                },
                BatchSize::SmallInput,
            )
        });
    }
    // A historical readout: one device, one field, a 10,000 ms window (250 rows).
    let device = DeviceId::new("dev3").unwrap();
    for (name, fields) in [
        ("history_one_field_250_rows", vec!["humidity".to_owned()]),
        ("history_all_fields_1000_rows", vec![]),
    ] {
        let q = HistoryQuery {
            device: device.clone(),
            fields,
            from: Utc.timestamp_millis_opt(base + 100_000).single(),
            to: Utc.timestamp_millis_opt(base + 110_000 - 1).single(),
            limit: 10_000,
        };
        let rows = rt.block_on(store.history(q.clone())).unwrap().len();
        g.throughput(Throughput::Elements(rows as u64));
        g.bench_function(format!("{name} ({rows})"), |b| {
            b.iter(|| rt.block_on(store.history(black_box(q.clone()))).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, store_bench);
criterion_main!(benches);
