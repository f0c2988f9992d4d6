//! Diagnostics counters per bus and per device, for the metrics endpoint and status code.
//!
//! The adapter's task is the only writer; readers (a metrics exporter, a status line) hold a
//! clone of the [`BusStats`] `Arc` taken before the adapter is spawned and read the atomics at
//! any time, without locks or messages. Counters only grow; `last_rtt_us` is the round trip of
//! the latest answered request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gateway_api::DeviceId;

/// One set of counters (a bus, or one device on it).
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests sent (reads and writes).
    pub requests: AtomicU64,
    /// Requests answered with data (or a write confirmation).
    pub responses: AtomicU64,
    /// Requests that got no answer within the bus `timeout`.
    pub timeouts: AtomicU64,
    /// Modbus exception responses (the device refused the request).
    pub exceptions: AtomicU64,
    /// Answers that failed their CRC or could not be decoded.
    pub crc_errors: AtomicU64,
    /// Answers that did not belong to the request (another unit, transaction or function).
    pub protocol_errors: AtomicU64,
    /// Link failures: a connection lost or refused, a serial port that vanished.
    pub transport_errors: AtomicU64,
    /// Values the device sent that are not values (NaN, infinity).
    pub bad_values: AtomicU64,
    /// Round trip of the latest answered request, in microseconds (0 until one was answered).
    pub last_rtt_us: AtomicU64,
}

/// A plain copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub requests: u64,
    pub responses: u64,
    pub timeouts: u64,
    pub exceptions: u64,
    pub crc_errors: u64,
    pub protocol_errors: u64,
    pub transport_errors: u64,
    pub bad_values: u64,
    pub last_rtt: Duration,
}

impl Counters {
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            requests: get(&self.requests),
            responses: get(&self.responses),
            timeouts: get(&self.timeouts),
            exceptions: get(&self.exceptions),
            crc_errors: get(&self.crc_errors),
            protocol_errors: get(&self.protocol_errors),
            transport_errors: get(&self.transport_errors),
            bad_values: get(&self.bad_values),
            last_rtt: Duration::from_micros(get(&self.last_rtt_us)),
        }
    }
}

/// The counters of one bus and of each of its devices.
#[derive(Debug)]
pub struct BusStats {
    /// The adapter id.
    pub bus: Arc<str>,
    pub total: Counters,
    /// In configuration order.
    pub devices: Vec<(DeviceId, Counters)>,
    /// Times the link was (re)established.
    pub connects: AtomicU64,
    /// Opens after which the serial port could not be put into RS-485 mode (`rs485 = true`);
    /// the bus goes on without it.
    pub rs485_failures: AtomicU64,
}

/// Which counter an event bumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    Request,
    Response,
    Timeout,
    Exception,
    Crc,
    Protocol,
    Transport,
    BadValue,
}

impl BusStats {
    pub fn new(bus: Arc<str>, devices: impl IntoIterator<Item = DeviceId>) -> Self {
        BusStats {
            bus,
            total: Counters::default(),
            devices: devices
                .into_iter()
                .map(|d| (d, Counters::default()))
                .collect(),
            connects: AtomicU64::new(0),
            rs485_failures: AtomicU64::new(0),
        }
    }

    /// The counters of `device`, if it is on this bus.
    pub fn device(&self, device: &DeviceId) -> Option<&Counters> {
        self.devices
            .iter()
            .find(|(d, _)| d == device)
            .map(|(_, c)| c)
    }

    /// Bumps `what` on the bus and on device number `device` (an index into `devices`).
    pub(crate) fn count(&self, device: Option<usize>, what: Count) {
        let bump = |c: &Counters| {
            let counter = match what {
                Count::Request => &c.requests,
                Count::Response => &c.responses,
                Count::Timeout => &c.timeouts,
                Count::Exception => &c.exceptions,
                Count::Crc => &c.crc_errors,
                Count::Protocol => &c.protocol_errors,
                Count::Transport => &c.transport_errors,
                Count::BadValue => &c.bad_values,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        };
        bump(&self.total);
        if let Some((_, c)) = device.and_then(|i| self.devices.get(i)) {
            bump(c);
        }
    }

    pub(crate) fn round_trip(&self, device: Option<usize>, rtt: Duration) {
        let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        self.total.last_rtt_us.store(us, Ordering::Relaxed);
        if let Some((_, c)) = device.and_then(|i| self.devices.get(i)) {
            c.last_rtt_us.store(us, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_on_the_bus_and_the_device() {
        let a = DeviceId::new("a").unwrap();
        let b = DeviceId::new("b").unwrap();
        let s = BusStats::new("rs485".into(), [a.clone(), b.clone()]);
        s.count(Some(1), Count::Timeout);
        s.count(Some(1), Count::Request);
        s.count(None, Count::Transport);
        s.round_trip(Some(0), Duration::from_millis(12));
        assert_eq!(s.total.snapshot().timeouts, 1);
        assert_eq!(s.total.snapshot().transport_errors, 1);
        assert_eq!(s.device(&b).unwrap().snapshot().requests, 1);
        assert_eq!(s.device(&a).unwrap().snapshot().requests, 0);
        assert_eq!(
            s.device(&a).unwrap().snapshot().last_rtt,
            Duration::from_millis(12)
        );
        assert!(s.device(&DeviceId::new("c").unwrap()).is_none());
    }
}

/// The bus's figures on the gateway's `/metrics` and in its XMPP status readout: per device
/// (labels `adapter`, `device`), plus reconnects per bus.
impl gateway_api::MetricsSource for BusStats {
    fn collect(&self, out: &mut Vec<gateway_api::Metric>) {
        use gateway_api::{Metric, MetricKind, MetricSample};
        let snaps: Vec<(String, Snapshot)> = self
            .devices
            .iter()
            .map(|(d, c)| (d.to_string(), c.snapshot()))
            .collect();
        let per_device = |name: &'static str,
                          help: &'static str,
                          kind: MetricKind,
                          value: fn(&Snapshot) -> f64| Metric {
            name,
            help,
            kind,
            samples: snaps
                .iter()
                .map(|(d, s)| {
                    MetricSample::new(
                        vec![("adapter", self.bus.to_string()), ("device", d.clone())],
                        value(s),
                    )
                })
                .collect(),
        };
        out.push(per_device(
            "modbus_requests_total",
            "Modbus requests sent.",
            MetricKind::Counter,
            |s| s.requests as f64,
        ));
        out.push(per_device(
            "modbus_responses_total",
            "Modbus answers received.",
            MetricKind::Counter,
            |s| s.responses as f64,
        ));
        out.push(per_device(
            "modbus_timeouts_total",
            "Modbus requests that got no answer in time.",
            MetricKind::Counter,
            |s| s.timeouts as f64,
        ));
        out.push(per_device(
            "modbus_exceptions_total",
            "Modbus exception responses (the device refused).",
            MetricKind::Counter,
            |s| s.exceptions as f64,
        ));
        out.push(per_device(
            "modbus_crc_errors_total",
            "Modbus RTU frames with a bad CRC.",
            MetricKind::Counter,
            |s| s.crc_errors as f64,
        ));
        out.push(per_device(
            "modbus_transport_errors_total",
            "Modbus requests lost with the link.",
            MetricKind::Counter,
            |s| s.transport_errors as f64,
        ));
        out.push(per_device(
            "modbus_round_trip_seconds",
            "The last Modbus request's round-trip time.",
            MetricKind::Gauge,
            |s| s.last_rtt.as_secs_f64(),
        ));
        out.push(Metric {
            name: "modbus_connects_total",
            help: "Times the Modbus link was (re)established.",
            kind: MetricKind::Counter,
            samples: vec![MetricSample::new(
                vec![("adapter", self.bus.to_string())],
                self.connects.load(std::sync::atomic::Ordering::Relaxed) as f64,
            )],
        });
        out.push(Metric {
            name: "modbus_rs485_failures_total",
            help:
                "Opens of the serial port that could not switch it to RS-485 mode (rs485 = true).",
            kind: MetricKind::Counter,
            samples: vec![MetricSample::new(
                vec![("adapter", self.bus.to_string())],
                self.rs485_failures
                    .load(std::sync::atomic::Ordering::Relaxed) as f64,
            )],
        });
    }
}

#[cfg(test)]
mod metrics_tests {
    use super::*;
    use gateway_api::MetricsSource;

    #[test]
    fn counters_reach_the_metrics_with_their_labels() {
        let id = DeviceId::new("meter").expect("id");
        let stats = BusStats::new("rs485".into(), [id.clone()]);
        stats.devices[0]
            .1
            .requests
            .fetch_add(3, std::sync::atomic::Ordering::Relaxed);
        stats.devices[0]
            .1
            .timeouts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut out = Vec::new();
        stats.collect(&mut out);
        let find = |name: &str| out.iter().find(|m| m.name == name).expect(name);
        let req = find("modbus_requests_total");
        assert_eq!(req.samples[0].value, 3.0);
        assert_eq!(
            req.samples[0].labels,
            vec![
                ("adapter", "rs485".to_owned()),
                ("device", "meter".to_owned())
            ]
        );
        assert_eq!(find("modbus_timeouts_total").samples[0].value, 1.0);
        assert_eq!(find("modbus_connects_total").samples.len(), 1);
        assert_eq!(find("modbus_rs485_failures_total").samples.len(), 1);
    }
}
