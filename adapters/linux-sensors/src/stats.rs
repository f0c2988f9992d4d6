//! What the adapter counts (good reads, retries, each kind of fault), and the rate limit on its
//! warnings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gateway_api::{Metric, MetricKind, MetricSample, MetricsSource};
use tokio::time::Instant;

use crate::read::Fault;

/// One warning per field per this interval; the rest go to debug and are counted.
pub const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Counters of one adapter. Updated from its poll tasks, read at scrape time.
#[derive(Debug)]
pub struct SensorStats {
    adapter: Arc<str>,
    /// Reads that gave a value.
    pub reads: AtomicU64,
    /// Attempts beyond the first after `EIO`/`ETIMEDOUT` and the like.
    pub retries: AtomicU64,
    /// Per kind, in the order of [`Fault::LABELS`].
    faults: [AtomicU64; 8],
}

impl SensorStats {
    pub fn new(adapter: Arc<str>) -> Arc<SensorStats> {
        Arc::new(SensorStats {
            adapter,
            reads: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            faults: Default::default(),
        })
    }

    pub fn fault(&self, fault: &Fault) {
        let i = Fault::LABELS
            .iter()
            .position(|l| *l == fault.label())
            .unwrap_or(0);
        self.faults[i].fetch_add(1, Ordering::Relaxed);
    }

    /// How many faults of the kind labelled `label` were counted.
    pub fn faults(&self, label: &str) -> u64 {
        Fault::LABELS
            .iter()
            .position(|l| *l == label)
            .map_or(0, |i| self.faults[i].load(Ordering::Relaxed))
    }
}

impl MetricsSource for SensorStats {
    fn collect(&self, out: &mut Vec<Metric>) {
        let adapter = || ("adapter", self.adapter.to_string());
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        out.push(Metric {
            name: "sensor_reads_total",
            help: "Sensor reads that gave a value.",
            kind: MetricKind::Counter,
            samples: vec![MetricSample::new(vec![adapter()], get(&self.reads))],
        });
        out.push(Metric {
            name: "sensor_read_retries_total",
            help: "Sensor reads tried again after a transient error (EIO, ETIMEDOUT).",
            kind: MetricKind::Counter,
            samples: vec![MetricSample::new(vec![adapter()], get(&self.retries))],
        });
        out.push(Metric {
            name: "sensor_faults_total",
            help: "Sensor reads that gave no value, by fault (none published a value).",
            kind: MetricKind::Counter,
            samples: Fault::LABELS
                .iter()
                .zip(&self.faults)
                .map(|(label, c)| {
                    MetricSample::new(vec![adapter(), ("fault", (*label).to_owned())], get(c))
                })
                .collect(),
        });
    }
}

/// Allows one warning per interval and counts the ones it held back.
#[derive(Debug, Clone, Default)]
pub struct RateLimit {
    last: Option<Instant>,
    held_back: u64,
}

impl RateLimit {
    /// `Some(n)` when a warning may be logged now (`n` were held back since the last one).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now < t + WARN_INTERVAL) {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_faults_by_kind() {
        let s = SensorStats::new("pi".into());
        s.fault(&Fault::Crc);
        s.fault(&Fault::Crc);
        s.fault(&Fault::Stuck);
        s.reads.fetch_add(5, Ordering::Relaxed);
        assert_eq!(s.faults("crc"), 2);
        let mut out = Vec::new();
        s.collect(&mut out);
        let faults = out
            .iter()
            .find(|m| m.name == "sensor_faults_total")
            .unwrap();
        assert_eq!(faults.samples.len(), Fault::LABELS.len());
        let crc = faults
            .samples
            .iter()
            .find(|s| s.labels[1].1 == "crc")
            .unwrap();
        assert_eq!(crc.value, 2.0);
        assert_eq!(crc.labels[0], ("adapter", "pi".to_owned()));
        assert_eq!(out[0].samples[0].value, 5.0);
    }

    #[tokio::test(start_paused = true)]
    async fn one_warning_per_interval() {
        let mut r = RateLimit::default();
        let t0 = Instant::now();
        assert_eq!(r.allow(t0), Some(0));
        assert_eq!(r.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(r.allow(t0 + Duration::from_secs(59)), None);
        assert_eq!(r.allow(t0 + WARN_INTERVAL), Some(2));
    }
}
