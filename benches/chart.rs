//! `chart`: folding a long history into pixel columns, drawing the PNG, and charts through the
//! store (over its rollups, and the fold over raw rows).
//!
//! `cargo bench --bench chart`. Numbers are reported, never asserted. `CHART_SAMPLE=path.png`
//! also writes the year chart the benchmark draws (docs/chart-example.png is one).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chrono::{FixedOffset, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway_api::{DeviceId, Quality, Reading, Value};
use xmpp_iot_gateway::charts::picture::{self, Panel};
use xmpp_iot_gateway::charts::series::fill_from_store;
use xmpp_iot_gateway::charts::Series;
use xmpp_iot_gateway::store::{Store, StoreOptions};

const YEAR_S: i64 = 365 * 86_400;
const START_MS: i64 = 1_767_225_600_000; // 2026-01-01 00:00 UTC

/// A freezer over a year, one reading a second: a daily swing, seasons, defrost spikes.
fn temperature(s: i64) -> f64 {
    let day = (s % 86_400) as f64 / 86_400.0 * std::f64::consts::TAU;
    let year = s as f64 / YEAR_S as f64 * std::f64::consts::TAU;
    let defrost = if s % (7 * 86_400) < 1_200 { 9.0 } else { 0.0 };
    -18.0 + 1.5 * day.sin() + 1.0 * year.cos() + defrost
}

fn year_series() -> Series {
    let mut s = Series::new(START_MS, START_MS + YEAR_S * 1000, picture::COLUMNS);
    for i in 0..YEAR_S {
        s.add(START_MS + i * 1000, temperature(i));
    }
    s
}

fn offset() -> FixedOffset {
    FixedOffset::east_opt(3600).expect("offset")
}

fn fold_and_draw(c: &mut Criterion) {
    let mut g = c.benchmark_group("chart");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(YEAR_S as u64));
    g.bench_function("fold a year of 1 s readings into 720 columns", |b| {
        b.iter(|| black_box(year_series()))
    });
    let series = year_series();
    if let Some(path) = std::env::var_os("CHART_SAMPLE") {
        let png = picture::render(
            &[Panel {
                name: "temperature",
                unit: "°C",
                series: &series,
            }],
            offset(),
        )
        .expect("drawn");
        std::fs::write(path, png).expect("write the sample");
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("draw and encode one panel (800x260 PNG)", |b| {
        b.iter(|| {
            picture::render(
                &[Panel {
                    name: "temperature",
                    unit: "°C",
                    series: black_box(&series),
                }],
                offset(),
            )
            .expect("drawn")
        })
    });
    g.finish();
}

/// One reading of the freezer a second (`dense`) or a minute, as the store takes them.
fn record_span(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    seconds: std::ops::Range<i64>,
    step: i64,
) {
    let dev = DeviceId::new("freezer").expect("id");
    let field: Arc<str> = Arc::from("temperature");
    let all: Vec<i64> = seconds.step_by(step as usize).collect();
    rt.block_on(async {
        for chunk in all.chunks(4096) {
            while !store.has_room() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            store.record(
                chunk
                    .iter()
                    .map(|&i| Reading {
                        device: dev.clone(),
                        field: field.clone(),
                        value: Value::Float(temperature(i)),
                        timestamp: Utc
                            .timestamp_millis_opt(START_MS + i * 1000)
                            .single()
                            .expect("ts"),
                        quality: Quality::Good,
                    })
                    .collect(),
            );
        }
        store.flush().await;
    });
}

/// Charts through the store. A year of one-second readings would be 31.5 M rows (over a GB on
/// disk); the year stored here has them on its first and last day and one a minute in between.
/// Over the hourly rollups that is the same work as the full year: 8,760 buckets, and raw rows
/// only in the partial hours at the interval's two ends, which are one-second rows here too.
fn store_fold(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions {
        history: Duration::from_secs(10 * 365 * 86_400),
        batch_window: Duration::from_millis(100),
        max_bytes: None,
    };
    const DAY: i64 = 86_400;
    let (store, _thread, _) = rt
        .block_on(async { Store::open(dir.path(), opts) })
        .expect("store");
    record_span(&rt, &store, 0..DAY, 1);
    record_span(&rt, &store, DAY..YEAR_S - DAY, 60);
    record_span(&rt, &store, YEAR_S - DAY..YEAR_S, 1);
    let dev = DeviceId::new("freezer").expect("id");
    let mut g = c.benchmark_group("chart");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    // Neither end on an hour: both partial hours are folded from raw rows.
    let from = START_MS + 1_234_567;
    g.bench_function("store: a year's chart (hourly rollups)", |b| {
        b.iter(|| {
            rt.block_on(store.series(
                &dev,
                "temperature",
                Series::new(from, from + YEAR_S * 1000, picture::COLUMNS),
            ))
            .expect("series")
        })
    });
    let last_day = START_MS + (YEAR_S - DAY) * 1000;
    g.throughput(Throughput::Elements(DAY as u64));
    g.bench_function(
        "store: a day's chart of 1 s readings (minute rollups)",
        |b| {
            b.iter(|| {
                rt.block_on(store.series(
                    &dev,
                    "temperature",
                    Series::new(last_day, last_day + DAY * 1000, picture::COLUMNS),
                ))
                .expect("series")
            })
        },
    );
    // The fold over raw rows: what every chart did before the rollups (a year is 365 times
    // this), and what spans under 12 hours still do.
    let conn = rusqlite::Connection::open(dir.path().join("gateway.db")).expect("reader");
    g.bench_function("raw rows: fold a day of 1 s readings in SQL", |b| {
        b.iter(|| {
            let mut s = Series::new(last_day, last_day + DAY * 1000, picture::COLUMNS);
            let day = s.from..s.to;
            fill_from_store(&conn, "freezer", "temperature", &mut s, day).expect("fold");
            black_box(s)
        })
    });
    g.finish();
}

criterion_group!(benches, fold_and_draw, store_fold);
criterion_main!(benches);
