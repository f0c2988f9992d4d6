//! Sensors the Linux kernel exposes under `/sys`, as devices: 1-Wire temperature probes
//! (DS18B20), IIO sensors (BME280, DHT22, ADS1115, …), hwmon chips (SHT3x, the CPU's own) and
//! thermal zones.
//!
//! With the kernel's driver bound (on a Raspberry Pi a `dtoverlay=` line), a sensor is a file,
//! and reading it is all the adapter does: every device polls its fields at its `poll`
//! interval, reading them concurrently on threads of their own (a 1-Wire conversion takes up to
//! 750 ms) and sending one event with all of them. Values are converted from the kernel's ABI
//! units (millidegrees, milli-percent) into °C, % and kPa before the field's `scale` and
//! `offset`. The faults real sensors have — CRC errors, a DS18B20's 85 °C power-on value, DHT
//! reads failing with `EIO`, sensors unplugged and modules unloaded — never publish a value;
//! they are counted, logged (rate-limited), and a sensor that is gone takes its device offline
//! until it is back.
//!
//! Modules: [`config`] (the keys and the registration with the gateway), [`source`] (the
//! `source` syntax), [`resolve`] (finding a source's files, hints for `check`), [`read`] (one
//! blocking read with its faults and retries), [`units`] (ABI units), `field` (a field's read on
//! its own thread, with a deadline), `poll` (a device's poll loop and availability), [`stats`]
//! (metrics).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gateway_api::{
    Adapter, AdapterContext, DeviceId, FieldSpec, Request, RequestError, RequestKind,
};
use tokio::task::JoinSet;
use tracing::debug;

pub mod config;
mod field;
mod poll;
pub mod read;
pub mod resolve;
pub mod source;
pub mod stats;
pub mod units;

pub use config::LinuxSensors;
pub use poll::MIN_POLL;
pub use read::{Fault, Retry};
pub use source::{Source, SourceError};
pub use stats::SensorStats;

/// The `poll` of a device that does not set one.
pub const DEFAULT_POLL: Duration = Duration::from_secs(10);

/// The `sysfs_root` of an adapter that does not set one.
pub const DEFAULT_SYSFS_ROOT: &str = "/sys";

/// One field of a device: where its value comes from and how it is scaled.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorField {
    pub spec: FieldSpec,
    pub source: Source,
    /// Applied after the conversion from the kernel's unit: `value = converted × scale + offset`.
    pub scale: f64,
    pub offset: f64,
}

/// One device: fields read together at one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorDevice {
    pub id: DeviceId,
    pub poll: Duration,
    pub fields: Vec<SensorField>,
}

/// Everything the adapter is started with (built from its slice of the configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct SensorSettings {
    /// Where sysfs is mounted: `/sys`, or a directory with the same layout (tests).
    pub sysfs_root: PathBuf,
    pub devices: Vec<SensorDevice>,
}

/// The adapter: one poll task per device.
#[derive(Debug)]
pub struct LinuxSensorsAdapter {
    settings: SensorSettings,
    retry: Retry,
    stats: Arc<SensorStats>,
}

impl LinuxSensorsAdapter {
    pub fn new(adapter: Arc<str>, settings: SensorSettings) -> Self {
        LinuxSensorsAdapter {
            settings,
            retry: Retry::default(),
            stats: SensorStats::new(adapter),
        }
    }

    /// Changes how reads that fail with a transient error are retried (tests make it quick).
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The adapter's counters, for the metrics registry.
    pub fn stats(&self) -> Arc<SensorStats> {
        Arc::clone(&self.stats)
    }
}

/// The file `check` shows for `source` (the one read now), or why there is none: a warning
/// with what to enable or what is there instead. Sensors may appear after start-up, so this is
/// never an error.
pub fn describe(root: &Path, source: &Source) -> Result<PathBuf, String> {
    match resolve::resolve(root, source) {
        Some(location) => Ok(location.file),
        None => Err(format!(
            "{} does not exist (yet): {}; the gateway keeps looking for it",
            source.describe(),
            resolve::hint(root, source)
        )),
    }
}

impl Adapter for LinuxSensorsAdapter {
    async fn run(self, ctx: AdapterContext) {
        let AdapterContext {
            adapter,
            events,
            mut requests,
            shutdown,
        } = ctx;
        let root: Arc<Path> = self.settings.sysfs_root.into();
        debug!(adapter = %adapter, root = %root.display(),
            devices = self.settings.devices.len(), "Linux sensors adapter started");
        let devices: Vec<Arc<poll::DeviceState>> = self
            .settings
            .devices
            .into_iter()
            .map(poll::DeviceState::new)
            .collect();
        let mut tasks = JoinSet::new();
        for device in &devices {
            let poller = poll::Poller {
                adapter: Arc::clone(&adapter),
                device: Arc::clone(device),
                root: Arc::clone(&root),
                retry: self.retry,
                stats: Arc::clone(&self.stats),
                events: events.clone(),
                shutdown: shutdown.clone(),
            };
            tasks.spawn(poller.run());
        }
        drop(events);
        // The core closes `requests` when it replaces the adapter; the polls go on until
        // shutdown all the same.
        let mut requests_open = true;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                req = requests.recv(), if requests_open => match req {
                    Some(req) => answer(&devices, req),
                    None => requests_open = false,
                },
                // A poll task ends when the core closes the event channel: it is stopping.
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                    if tasks.is_empty() {
                        break;
                    }
                }
            }
        }
        tasks.shutdown().await;
        debug!(adapter = %adapter, "Linux sensors adapter stopped");
    }
}

/// Answers a request from what the latest polls read: sensors are read-only, and a fresh read
/// would wait for the bus (or find the poll's read of the same file still running).
fn answer(devices: &[Arc<poll::DeviceState>], req: Request) {
    let result = match devices.iter().find(|d| d.id == req.device) {
        None => Err(RequestError::Refused(format!(
            "no device {} on this adapter",
            req.device
        ))),
        Some(device) => match req.kind {
            RequestKind::Read { fields } => device.latest(&fields),
            RequestKind::Write { values } => Err(match values.first() {
                Some((name, _)) if device.field(name).is_none() => {
                    RequestError::UnknownField(name.to_string())
                }
                Some((name, _)) => RequestError::NotWritable(name.to_string()),
                None => RequestError::Refused("nothing to write".into()),
            }),
        },
    };
    // The core may have given up waiting; nothing to do about it then.
    let _ = req.reply.send(result);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::tests::put;
    use gateway_api::testing::AdapterHarness;
    use gateway_api::{AdapterEvent, FieldType, Value};
    use tokio::time::timeout;

    const W1: &str = "bus/w1/devices/28-0000075a2a2b";

    fn field(name: &str, source: &str, scale: f64) -> SensorField {
        SensorField {
            spec: FieldSpec {
                name: name.into(),
                unit: "".into(),
                kind: FieldType::Numeric,
                writable: false,
            },
            source: source.parse().unwrap(),
            scale,
            offset: 0.0,
        }
    }

    /// A tree with a 1-Wire sensor, a BME280 on IIO and the CPU's thermal zone; devices
    /// `boiler` (the 1-Wire sensor) and `room` (the rest); the tree is in the returned folder.
    fn start() -> (AdapterHarness, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        put(root, &format!("{W1}/temperature"), "61250\n");
        put(root, "bus/iio/devices/iio:device0/name", "bme280\n");
        put(root, "bus/iio/devices/iio:device0/in_temp_input", "21340\n");
        put(
            root,
            "bus/iio/devices/iio:device0/in_humidityrelative_input",
            "45678\n",
        );
        put(
            root,
            "bus/iio/devices/iio:device0/in_pressure_input",
            "101.325000000\n",
        );
        put(root, "class/thermal/thermal_zone0/type", "cpu-thermal\n");
        put(root, "class/thermal/thermal_zone0/temp", "48312\n");
        let poll = Duration::from_millis(100);
        let settings = SensorSettings {
            sysfs_root: root.to_owned(),
            devices: vec![
                SensorDevice {
                    id: DeviceId::new("boiler").unwrap(),
                    poll,
                    fields: vec![field("flow", "w1:28-0000075a2a2b", 1.0)],
                },
                SensorDevice {
                    id: DeviceId::new("room").unwrap(),
                    poll,
                    fields: vec![
                        field("temperature", "iio:bme280/temp", 1.0),
                        field("humidity", "iio:bme280/humidityrelative", 1.0),
                        field("pressure", "iio:bme280/pressure", 10.0),
                        field("cpu", "thermal:cpu-thermal", 1.0),
                    ],
                },
            ],
        };
        let adapter = LinuxSensorsAdapter::new("pi".into(), settings).with_retry(Retry {
            attempts: 3,
            pause: Duration::ZERO,
        });
        (AdapterHarness::start("pi", 16, |ctx| adapter.run(ctx)), dir)
    }

    /// Readings of `device` only, skipping the other device's events.
    async fn readings_of(h: &mut AdapterHarness, device: &str) -> Vec<(String, Value)> {
        loop {
            match h.next().await {
                AdapterEvent::Readings(rs) if rs[0].device.as_str() == device => {
                    return rs
                        .into_iter()
                        .map(|r| (r.field.to_string(), r.value))
                        .collect();
                }
                _ => {}
            }
        }
    }

    /// The next availability event of `device`.
    async fn availability_of(h: &mut AdapterHarness, device: &str) -> Result<(), String> {
        loop {
            match h.next().await {
                AdapterEvent::Online { device: d } if d.as_str() == device => return Ok(()),
                AdapterEvent::Offline { device: d, reason } if d.as_str() == device => {
                    return Err(reason)
                }
                _ => {}
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_event_per_device_per_poll_with_every_field_in_its_unit() {
        let (mut h, dir) = start();
        assert_eq!(availability_of(&mut h, "room").await, Ok(()));
        let room = readings_of(&mut h, "room").await;
        assert_eq!(
            room,
            [
                ("temperature".to_owned(), Value::Float(21.34)),
                ("humidity".to_owned(), Value::Float(45.678)),
                ("pressure".to_owned(), Value::Float(1013.25)),
                ("cpu".to_owned(), Value::Float(48.312)),
            ]
        );
        assert_eq!(
            readings_of(&mut h, "boiler").await,
            [("flow".to_owned(), Value::Float(61.25))]
        );
        // A change in the file is the next poll's value.
        put(dir.path(), &format!("{W1}/temperature"), "-1062\n");
        loop {
            let r = readings_of(&mut h, "boiler").await;
            if r[0].1 == Value::Float(-1.062) {
                break;
            }
        }
        // Reads from XMPP get the latest values; sensors cannot be written.
        let latest = h
            .request(
                "room",
                RequestKind::Read {
                    fields: vec!["cpu".into()],
                },
            )
            .await
            .unwrap();
        assert_eq!(latest[0].value, Value::Float(48.312));
        assert_eq!(
            h.request(
                "room",
                RequestKind::Write {
                    values: vec![("cpu".into(), Value::Float(1.0))]
                }
            )
            .await,
            Err(RequestError::NotWritable("cpu".into()))
        );
        assert_eq!(
            h.request(
                "room",
                RequestKind::Read {
                    fields: vec!["nope".into()]
                }
            )
            .await,
            Err(RequestError::UnknownField("nope".into()))
        );
        h.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn faults_publish_no_value_and_a_vanished_sensor_takes_its_device_offline_until_it_returns(
    ) {
        let (mut h, dir) = start();
        let root = dir.path().to_owned();
        assert_eq!(availability_of(&mut h, "boiler").await, Ok(()));
        readings_of(&mut h, "boiler").await;

        // The 85 °C power-on value and an unparsable one are left out: the room goes on.
        put(&root, &format!("{W1}/temperature"), "85000\n");
        put(&root, "bus/iio/devices/iio:device0/in_temp_input", "warm\n");
        let mut room_without_temperature = false;
        for _ in 0..50 {
            match h.next().await {
                AdapterEvent::Readings(rs) => {
                    assert!(
                        rs.iter().all(|r| r.value != Value::Float(85.0)),
                        "85 °C was published: {rs:?}"
                    );
                    if rs[0].device.as_str() == "room" {
                        room_without_temperature =
                            rs.iter().all(|r| &*r.field != "temperature") && rs.len() == 3;
                        if room_without_temperature {
                            break;
                        }
                    }
                }
                // Three bad polls in a row make the boiler offline with the fault.
                AdapterEvent::Offline { device, reason } => {
                    assert_eq!(device.as_str(), "boiler");
                    assert!(reason.contains("85 °C power-on value"), "{reason}");
                }
                AdapterEvent::Online { .. } => {}
                other => panic!("a configured-only adapter found a device: {other:?}"),
            }
        }
        assert!(room_without_temperature);

        // Unplugged: offline at once, with the sensor named.
        std::fs::remove_dir_all(root.join(W1)).unwrap();
        loop {
            if let Err(reason) = availability_of(&mut h, "boiler").await {
                if reason.contains("not present") {
                    assert_eq!(reason, "1-Wire sensor 28-0000075a2a2b not present");
                    break;
                }
            }
        }
        assert_eq!(
            h.request("boiler", RequestKind::Read { fields: vec![] })
                .await,
            Err(RequestError::Unreachable(
                "1-Wire sensor 28-0000075a2a2b not present".into()
            ))
        );
        // Plugged in again: back by itself.
        put(&root, &format!("{W1}/temperature"), "60000\n");
        assert_eq!(availability_of(&mut h, "boiler").await, Ok(()));
        assert_eq!(
            readings_of(&mut h, "boiler").await,
            [("flow".to_owned(), Value::Float(60.0))]
        );
        h.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stops_when_the_core_closes_the_event_channel() {
        let (h, _dir) = start();
        drop(h.events);
        timeout(Duration::from_secs(5), h.task)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn describe_names_the_file_or_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        put(dir.path(), &format!("{W1}/temperature"), "1\n");
        let found = describe(dir.path(), &"w1:28-0000075a2a2b".parse().unwrap()).unwrap();
        assert_eq!(found, dir.path().join(W1).join("temperature"));
        let missing = describe(dir.path(), &"iio:bme280/temp".parse().unwrap()).unwrap_err();
        assert!(
            missing.starts_with("IIO sensor bme280/temp does not exist (yet): no IIO device"),
            "{missing}"
        );
    }
}
