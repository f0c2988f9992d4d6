//! One device's poll loop: read every field at once, send one event, keep presence true.
//!
//! Availability follows the sensors: a source that is not present (unplugged, driver not
//! loaded) takes the device offline at once, with the reason `1-Wire sensor … not present`; a
//! field that failed [`FAILS_BEFORE_OFFLINE`] polls in a row does too, with its last fault. A
//! single CRC error or a failed DHT read only leaves that field out of the poll's event. Once
//! every field reads again, the device is back online.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_api::{
    AdapterEvent, DeviceId, EventSink, FieldType, Quality, Reading, RequestError, Value,
};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, warn};

use crate::field::FieldReader;
use crate::read::{Fault, Retry};
use crate::stats::{RateLimit, SensorStats};
use crate::SensorDevice;

/// A field that failed this many polls in a row (other than by being absent) takes its device
/// offline: one bad read is noise, three are a broken sensor.
pub const FAILS_BEFORE_OFFLINE: u32 = 3;

/// The shortest poll honoured: sysfs reads wake sensors and buses, and a zero `poll` would spin.
pub const MIN_POLL: Duration = Duration::from_millis(100);

/// How long a poll waits for its reads: the poll interval (a read slower than that is late
/// for the next poll anyway), but at least long enough for a few 1-Wire conversions one after
/// another on one bus, and at most half a minute.
fn read_deadline(poll: Duration) -> Duration {
    poll.clamp(Duration::from_secs(2), Duration::from_secs(30))
}

/// A device, shared by its poll task and the request handler.
#[derive(Debug)]
pub struct DeviceState {
    pub id: DeviceId,
    poll: Duration,
    fields: Vec<Arc<FieldReader>>,
    /// Why the device is offline, as last announced; `None` while online. Written by the
    /// poll task.
    offline: Mutex<Option<String>>,
}

impl DeviceState {
    pub fn new(config: SensorDevice) -> Arc<DeviceState> {
        Arc::new(DeviceState {
            id: config.id,
            poll: config.poll.max(MIN_POLL),
            fields: config.fields.into_iter().map(FieldReader::new).collect(),
            offline: Mutex::new(None),
        })
    }

    pub fn field(&self, name: &str) -> Option<&Arc<FieldReader>> {
        self.fields.iter().find(|f| &*f.spec().name == name)
    }

    /// The latest good readings of `names` (all fields when empty).
    pub fn latest(&self, names: &[Arc<str>]) -> Result<Vec<Reading>, RequestError> {
        let wanted: Vec<&Arc<FieldReader>> = if names.is_empty() {
            self.fields.iter().collect()
        } else {
            names
                .iter()
                .map(|n| {
                    self.field(n)
                        .ok_or_else(|| RequestError::UnknownField(n.to_string()))
                })
                .collect::<Result<_, _>>()?
        };
        if let Some(reason) = lock(&self.offline).clone() {
            return Err(RequestError::Unreachable(reason));
        }
        let mut out = Vec::with_capacity(wanted.len());
        let mut first_fault = None;
        for f in wanted {
            match lock(&f.latest).clone() {
                Some(Ok(sample)) => out.push(reading(&self.id, f, sample.value, sample.at)),
                Some(Err(fault)) => {
                    first_fault.get_or_insert_with(|| fault_text(f, &fault));
                }
                None => {
                    first_fault.get_or_insert_with(|| "not read yet".to_owned());
                }
            }
        }
        match (out.is_empty(), first_fault) {
            (true, Some(reason)) => Err(RequestError::Unreachable(reason)),
            _ => Ok(out),
        }
    }
}

/// Locks a mutex that holds plain data (a panic elsewhere cannot leave it half-written).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn fault_text(field: &FieldReader, fault: &Fault) -> String {
    let sensor = field.config.source.describe();
    match fault {
        Fault::Absent => format!("{sensor} not present"),
        other => format!("{sensor}: {other}"),
    }
}

/// The value in the field's type; numbers from sensors are rounded for an integer field.
fn typed(kind: FieldType, value: f64) -> Value {
    match kind {
        FieldType::Numeric => Value::Float(value),
        FieldType::Integer => Value::Int(value.round() as i64),
        FieldType::Boolean => Value::Bool(value != 0.0),
        FieldType::String => Value::Text(value.to_string()),
    }
}

fn reading(
    device: &DeviceId,
    field: &FieldReader,
    value: f64,
    at: chrono::DateTime<chrono::Utc>,
) -> Reading {
    Reading {
        device: device.clone(),
        field: field.spec().name.clone(),
        value: typed(field.spec().kind, value),
        timestamp: at,
        quality: Quality::Good,
    }
}

/// Per-field bookkeeping of the poll task.
#[derive(Debug, Default)]
struct Health {
    /// Polls in a row that gave no value (other than by absence).
    failures: u32,
    warn: RateLimit,
}

/// A device's poll task and what it needs.
pub struct Poller {
    pub adapter: Arc<str>,
    pub device: Arc<DeviceState>,
    pub root: Arc<Path>,
    pub retry: Retry,
    pub stats: Arc<SensorStats>,
    /// Into the core; a send waits while the core is behind.
    pub events: EventSink,
    /// Cancelled by the core at shutdown.
    pub shutdown: CancellationToken,
}

impl Poller {
    pub async fn run(self) {
        let mut health: Vec<Health> = self
            .device
            .fields
            .iter()
            .map(|_| Health::default())
            .collect();
        // What the core was last told: `Some(None)` online, `Some(Some(reason))` offline.
        let mut announced: Option<Option<String>> = None;
        let mut ticker = tokio::time::interval(self.device.poll);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let results = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return,
                r = self.read_all() => r,
            };
            let (readings, offline) = self.account(&results, &mut health);
            let mut out = Vec::with_capacity(2);
            if announced.as_ref() != Some(&offline) {
                *lock(&self.device.offline) = offline.clone();
                out.push(match &offline {
                    None => AdapterEvent::Online {
                        device: self.device.id.clone(),
                    },
                    Some(reason) => AdapterEvent::Offline {
                        device: self.device.id.clone(),
                        reason: reason.clone(),
                    },
                });
                announced = Some(offline);
            }
            if !readings.is_empty() {
                out.push(AdapterEvent::Readings(readings));
            }
            for event in out {
                tokio::select! {
                    biased;
                    () = self.shutdown.cancelled() => return,
                    sent = self.events.send(event) => if sent.is_err() {
                        // The core closed the channel: it is stopping.
                        return;
                    }
                }
            }
        }
    }

    /// Reads every field at once and waits for them until the deadline.
    async fn read_all(&self) -> Vec<Result<crate::field::Sample, Fault>> {
        let deadline = Instant::now() + read_deadline(self.device.poll);
        let pending: Vec<_> = self
            .device
            .fields
            .iter()
            .map(|f| f.start(&self.root, self.retry))
            .collect();
        let mut results = Vec::with_capacity(pending.len());
        for (p, f) in pending.into_iter().zip(&self.device.fields) {
            let (result, retries) = p.finish(f, deadline).await;
            if retries > 0 {
                self.stats
                    .retries
                    .fetch_add(u64::from(retries), std::sync::atomic::Ordering::Relaxed);
            }
            results.push(result);
        }
        results
    }

    /// Counts and logs one poll's results; returns its readings and why the device is
    /// offline, if it is.
    fn account(
        &self,
        results: &[Result<crate::field::Sample, Fault>],
        health: &mut [Health],
    ) -> (Vec<Reading>, Option<String>) {
        let now = Instant::now();
        let mut readings = Vec::with_capacity(results.len());
        let mut absent = Vec::new();
        let mut broken = None;
        for ((result, field), h) in results.iter().zip(&self.device.fields).zip(health) {
            *lock(&field.latest) = Some(result.clone());
            match result {
                Ok(sample) => {
                    self.stats
                        .reads
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    h.failures = 0;
                    trace!(adapter = %self.adapter, device = %self.device.id,
                        field = %field.spec().name, value = sample.value, "Sensor read");
                    readings.push(reading(&self.device.id, field, sample.value, sample.at));
                }
                Err(fault) => {
                    self.stats.fault(fault);
                    let text = fault_text(field, fault);
                    if *fault == Fault::Absent {
                        h.failures = 0;
                        absent.push(text.clone());
                    } else {
                        h.failures = h.failures.saturating_add(1);
                        if h.failures >= FAILS_BEFORE_OFFLINE && broken.is_none() {
                            broken = Some(text.clone());
                        }
                    }
                    match h.warn.allow(now) {
                        Some(held_back) => warn!(adapter = %self.adapter, device = %self.device.id,
                            field = %field.spec().name, source = %field.config.source,
                            error = %text, held_back, "Sensor read gave no value"),
                        None => debug!(adapter = %self.adapter, device = %self.device.id,
                            field = %field.spec().name, error = %text, "Sensor read gave no value"),
                    }
                }
            }
        }
        let offline = if absent.is_empty() {
            broken
        } else {
            Some(absent.join("; "))
        };
        (readings, offline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::tests::put;
    use crate::SensorField;
    use gateway_api::FieldSpec;
    use tokio::sync::mpsc;

    fn device(id: &str, source: &str) -> Arc<DeviceState> {
        DeviceState::new(SensorDevice {
            id: DeviceId::new(id).unwrap(),
            poll: Duration::from_millis(100),
            fields: vec![SensorField {
                spec: FieldSpec {
                    name: "t".into(),
                    unit: "".into(),
                    kind: FieldType::Numeric,
                    writable: false,
                },
                source: source.parse().unwrap(),
                scale: 1.0,
                offset: 0.0,
            }],
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_stuck_in_the_kernel_stalls_neither_the_other_devices_nor_its_own_poll() {
        let dir = tempfile::tempdir().unwrap();
        put(dir.path(), "class/thermal/thermal_zone0/type", "a\n");
        put(dir.path(), "class/thermal/thermal_zone0/temp", "1000\n");
        put(dir.path(), "class/thermal/thermal_zone1/type", "b\n");
        put(dir.path(), "class/thermal/thermal_zone1/temp", "2000\n");
        let root: Arc<Path> = dir.path().into();
        let stuck = device("stuck", "thermal:a");
        let fine = device("fine", "thermal:b");
        // The stuck device's read cannot finish while this thread holds its location, as a
        // read waiting on a wedged bus would not.
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = {
            let field = Arc::clone(&stuck.fields[0]);
            std::thread::spawn(move || {
                let _held = field.location_for_test().lock().unwrap();
                locked_tx.send(()).unwrap();
                let _ = release_rx.recv();
            })
        };
        locked_rx.recv().unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let shutdown = CancellationToken::new();
        let stats = SensorStats::new("pi".into());
        for device in [&stuck, &fine] {
            let poller = Poller {
                adapter: "pi".into(),
                device: Arc::clone(device),
                root: Arc::clone(&root),
                retry: Retry::default(),
                stats: Arc::clone(&stats),
                events: tx.clone(),
                shutdown: shutdown.clone(),
            };
            tokio::spawn(poller.run());
        }
        drop(tx);
        let mut fine_readings = 0;
        let reason = loop {
            let event = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .expect("events in time")
                .expect("pollers running");
            match event {
                AdapterEvent::Readings(rs) => {
                    assert_eq!(rs[0].device.as_str(), "fine");
                    fine_readings += 1;
                }
                AdapterEvent::Offline { device, reason } => {
                    assert_eq!(device.as_str(), "stuck");
                    break reason;
                }
                // One failed poll is not enough to call the device offline.
                AdapterEvent::Online { .. } => {}
                other => panic!("a configured-only adapter found a device: {other:?}"),
            }
        };
        // The first poll waited for its deadline (at least 2 s) while the fine device kept its
        // 100 ms polls; the stuck read was never started twice.
        assert!(fine_readings >= 5, "{fine_readings}");
        assert_eq!(
            reason,
            "thermal zone a: the previous read has not returned yet"
        );
        assert_eq!(stats.faults("timeout"), 1);
        assert!(stats.faults("stuck") >= 2);
        release_tx.send(()).unwrap();
        holder.join().unwrap();
        // Once the read returns, the device is back.
        loop {
            let event = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .unwrap()
                .unwrap();
            if let AdapterEvent::Online { device } = event {
                assert_eq!(device.as_str(), "stuck");
                break;
            }
        }
        shutdown.cancel();
    }

    #[test]
    fn deadlines_follow_the_poll_within_bounds() {
        assert_eq!(
            read_deadline(Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        assert_eq!(
            read_deadline(Duration::from_millis(200)),
            Duration::from_secs(2)
        );
        assert_eq!(
            read_deadline(Duration::from_secs(600)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn values_take_the_fields_type() {
        assert_eq!(typed(FieldType::Numeric, 21.5), Value::Float(21.5));
        assert_eq!(typed(FieldType::Integer, 21.5), Value::Int(22));
        assert_eq!(typed(FieldType::Boolean, 0.0), Value::Bool(false));
        assert_eq!(typed(FieldType::String, 21.5), Value::Text("21.5".into()));
    }
}
