//! Metrics: what the core and the adapters count, in a form both the Prometheus endpoint
//! (`[metrics] listen`) and the gateway's XEP-0323 status readout can show.
//!
//! A [`MetricsSource`] is asked for its current figures at scrape time (no background task,
//! no registry lock on the hot path: sources keep atomics and read them in
//! [`collect`](MetricsSource::collect)). An adapter that counts bus traffic either uses the
//! ready-made [`BusStats`] or implements [`MetricsSource`] on its own counters, and hands an
//! `Arc` of it to the gateway when it is built (see `src/adapter_start.rs`).
//!
//! Names carry no prefix: the gateway prepends `xmpp_iot_gateway_` on the Prometheus side.
//! Follow Prometheus conventions (`_total` for counters, base units such as `_seconds`), and
//! label every sample of an adapter's metrics with `adapter`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What kind of figure a metric is (Prometheus `# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (until the process restarts).
    Counter,
    /// Goes up and down (a queue depth, a number of devices online).
    Gauge,
    /// A `_sum` and a `_count` sample (e.g. round-trip times: the mean is sum / count).
    Summary,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Summary => "summary",
        }
    }
}

/// One metric (a Prometheus metric family) and its current samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Without the gateway's prefix, e.g. `bus_requests_total`.
    pub name: &'static str,
    /// One sentence for `# HELP`.
    pub help: &'static str,
    pub kind: MetricKind,
    pub samples: Vec<MetricSample>,
}

/// One value of a metric, with its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    /// Appended to the metric's name: empty, or `_sum` / `_count` for a summary.
    pub suffix: &'static str,
    /// (label name, value); label names are fixed identifiers, values anything.
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl MetricSample {
    /// A sample without suffix.
    pub fn new(labels: Vec<(&'static str, String)>, value: f64) -> Self {
        MetricSample {
            suffix: "",
            labels,
            value,
        }
    }
}

impl Metric {
    /// A metric with one unlabelled sample.
    pub fn single(name: &'static str, help: &'static str, kind: MetricKind, value: f64) -> Self {
        Metric {
            name,
            help,
            kind,
            samples: vec![MetricSample::new(Vec::new(), value)],
        }
    }
}

/// Something that can report metrics at scrape time. Called from the metrics endpoint's task
/// and the core task: keep `collect` quick and non-blocking (read atomics, a snapshot).
pub trait MetricsSource: Send + Sync + 'static {
    /// Appends the current figures to `out`. Several sources may report the same metric name
    /// (e.g. two adapters of one type): the gateway merges their samples under one `# HELP`.
    fn collect(&self, out: &mut Vec<Metric>);
}

/// Counters every bus adapter can use: requests, timeouts, device refusals (e.g. Modbus
/// exceptions), link errors, reconnects and round-trip times, labelled with the adapter id.
/// Cheap to update from any task (relaxed atomics).
#[derive(Debug)]
pub struct BusStats {
    adapter: Arc<str>,
    requests: AtomicU64,
    timeouts: AtomicU64,
    exceptions: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
    /// Sum of round-trip times, in microseconds.
    round_trip_micros: AtomicU64,
    round_trips: AtomicU64,
}

impl BusStats {
    pub fn new(adapter: Arc<str>) -> Arc<BusStats> {
        Arc::new(BusStats {
            adapter,
            requests: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            exceptions: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            round_trip_micros: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
        })
    }

    /// A request was sent on the bus.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A request got no answer in time.
    pub fn timeout(&self) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// The device answered with a refusal (the link is fine).
    pub fn exception(&self) {
        self.exceptions.fetch_add(1, Ordering::Relaxed);
    }

    /// A transport error (the link is dropped and reconnected).
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The link was established again after a loss.
    pub fn reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was answered after `rtt`.
    pub fn round_trip(&self, rtt: Duration) {
        let micros = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        self.round_trip_micros.fetch_add(micros, Ordering::Relaxed);
        self.round_trips.fetch_add(1, Ordering::Relaxed);
    }
}

impl MetricsSource for BusStats {
    fn collect(&self, out: &mut Vec<Metric>) {
        let label = || vec![("adapter", self.adapter.to_string())];
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let counter = |name, help, c: &AtomicU64| Metric {
            name,
            help,
            kind: MetricKind::Counter,
            samples: vec![MetricSample::new(label(), get(c))],
        };
        out.push(counter(
            "bus_requests_total",
            "Requests sent on the bus.",
            &self.requests,
        ));
        out.push(counter(
            "bus_timeouts_total",
            "Bus requests that got no answer in time.",
            &self.timeouts,
        ));
        out.push(counter(
            "bus_exceptions_total",
            "Bus requests the device refused (e.g. Modbus exceptions).",
            &self.exceptions,
        ));
        out.push(counter(
            "bus_errors_total",
            "Transport errors on the bus link.",
            &self.errors,
        ));
        out.push(counter(
            "bus_reconnects_total",
            "Times the bus link was established again after a loss.",
            &self.reconnects,
        ));
        out.push(Metric {
            name: "bus_round_trip_seconds",
            help: "Time from a bus request to its answer.",
            kind: MetricKind::Summary,
            samples: vec![
                MetricSample {
                    suffix: "_sum",
                    labels: label(),
                    value: get(&self.round_trip_micros) / 1e6,
                },
                MetricSample {
                    suffix: "_count",
                    labels: label(),
                    value: get(&self.round_trips),
                },
            ],
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_stats_report_what_was_counted() {
        let bus = BusStats::new("rs485".into());
        bus.request();
        bus.request();
        bus.timeout();
        bus.round_trip(Duration::from_millis(20));
        bus.round_trip(Duration::from_millis(30));
        let mut out = Vec::new();
        bus.collect(&mut out);
        let find = |name: &str| {
            out.iter()
                .find(|m| m.name == name)
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        let requests = find("bus_requests_total");
        assert_eq!(requests.kind, MetricKind::Counter);
        assert_eq!(requests.samples[0].value, 2.0);
        assert_eq!(
            requests.samples[0].labels,
            vec![("adapter", "rs485".to_owned())]
        );
        assert_eq!(find("bus_timeouts_total").samples[0].value, 1.0);
        assert_eq!(find("bus_exceptions_total").samples[0].value, 0.0);
        let rtt = find("bus_round_trip_seconds");
        assert_eq!(rtt.kind, MetricKind::Summary);
        assert_eq!(rtt.samples[0].suffix, "_sum");
        assert!((rtt.samples[0].value - 0.05).abs() < 1e-9);
        assert_eq!(
            (rtt.samples[1].suffix, rtt.samples[1].value),
            ("_count", 2.0)
        );
    }
}
