//! An adapter's counters as metrics labelled with the adapter id, for `/metrics` and the
//! gateway's status readout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use gateway_api::{Metric, MetricKind, MetricSample, MetricsSource};

/// The counters of one adapter: `list` names each (metric name, help, value).
pub struct Counters<S: Send + Sync + 'static> {
    pub adapter: Arc<str>,
    pub stats: Arc<S>,
    /// (metric name, help, value) of each counter.
    pub list: fn(&S) -> Vec<(&'static str, &'static str, u64)>,
}

/// A counter's current value.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl<S: Send + Sync + 'static> MetricsSource for Counters<S> {
    fn collect(&self, out: &mut Vec<Metric>) {
        for (name, help, value) in (self.list)(&self.stats) {
            out.push(Metric {
                name,
                help,
                kind: MetricKind::Counter,
                samples: vec![MetricSample::new(
                    vec![("adapter", self.adapter.to_string())],
                    value as f64,
                )],
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dummy {
        seen: AtomicU64,
    }

    #[test]
    fn adapter_counters_are_labelled_with_the_adapter() {
        let c = Counters {
            adapter: "uart".into(),
            stats: Arc::new(Dummy { seen: 7.into() }),
            list: |d: &Dummy| vec![("dummy_seen_total", "Seen.", get(&d.seen))],
        };
        let mut out = Vec::new();
        c.collect(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name, "dummy_seen_total");
        assert_eq!(out[0].samples[0].value, 7.0);
        assert_eq!(
            out[0].samples[0].labels,
            vec![("adapter", "uart".to_owned())]
        );
    }
}
