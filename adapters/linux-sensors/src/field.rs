//! One configured field at run time: its source, where that was last found, and the guard that
//! keeps a stuck read from piling up threads.
//!
//! Sysfs reads block: a 1-Wire conversion takes up to 750 ms, a DHT22 read a few hundred, and a
//! wedged bus or a misbehaving driver may never return. So every read runs on a thread of its
//! own and the poll waits for it only until a deadline. A read that misses it cannot be
//! cancelled (the thread is in the kernel); the field stays marked busy until that read returns,
//! and polls in between report the field as stuck instead of starting another read of the same
//! file. The thread is a plain detached one, not tokio's blocking pool: the runtime waits for its
//! blocking tasks when it shuts down, and a read stuck in the kernel must not keep the gateway
//! from stopping.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use gateway_api::FieldSpec;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::read::{read_source, Fault, Outcome, Retry};
use crate::resolve::Location;
use crate::units::Conversion;
use crate::SensorField;

/// A field and its run-time state; shared between the poll task and the blocking reads.
#[derive(Debug)]
pub struct FieldReader {
    pub config: SensorField,
    /// The kernel's unit to the one people read.
    conversion: Conversion,
    /// Where the source was last found; `None` until found, and again once it vanished.
    /// Only the read that holds `busy` touches it.
    location: Mutex<Option<Location>>,
    /// Set while a blocking read of this field runs, cleared by that read when it returns.
    busy: AtomicBool,
    /// The result of the latest poll, for reads from XMPP. Written by the poll task.
    pub latest: Mutex<Option<Result<Sample, Fault>>>,
}

/// A value read, in the field's unit, with the time of the read.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub value: f64,
    pub at: DateTime<Utc>,
}

/// A read under way: awaited with [`Pending::finish`].
pub struct Pending {
    /// `None` when no read was started because the previous one is still running. The reading
    /// thread sends once and drops its end; a thread that could not be started drops it unsent.
    job: Option<oneshot::Receiver<(Outcome, DateTime<Utc>)>>,
    /// When the read was started, for the message of a timeout.
    started: Instant,
}

impl FieldReader {
    pub fn new(config: SensorField) -> Arc<FieldReader> {
        Arc::new(FieldReader {
            conversion: Conversion::of(&config.source),
            config,
            location: Mutex::new(None),
            busy: AtomicBool::new(false),
            latest: Mutex::new(None),
        })
    }

    pub fn spec(&self) -> &FieldSpec {
        &self.config.spec
    }

    /// Starts a read on a blocking thread, unless the previous one has not returned.
    pub fn start(self: &Arc<Self>, root: &Arc<Path>, retry: Retry) -> Pending {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Pending {
                job: None,
                started: Instant::now(),
            };
        }
        let me = Arc::clone(self);
        let root = Arc::clone(root);
        let (tx, rx) = oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("sensor-read".into())
            .spawn(move || {
                let outcome = {
                    // A poisoned lock only means an earlier read panicked; the cached location
                    // is still a plain value.
                    let mut location = me.location.lock().unwrap_or_else(|e| e.into_inner());
                    read_source(&root, &me.config.source, &mut location, retry)
                };
                let at = Utc::now();
                me.busy.store(false, Ordering::Release);
                // The poll may have stopped waiting; the next one starts afresh.
                let _ = tx.send((outcome, at));
            });
        if spawned.is_err() {
            // No thread (the process is at its limit): `finish` reports the read as failed.
            self.busy.store(false, Ordering::Release);
        }
        Pending {
            job: Some(rx),
            started: Instant::now(),
        }
    }

    /// The cached location, for tests that hold it to make a read hang.
    #[cfg(test)]
    pub(crate) fn location_for_test(&self) -> &Mutex<Option<Location>> {
        &self.location
    }

    /// The kernel's number as people read it: ABI unit converted, then the field's own
    /// `scale` and `offset`.
    pub fn convert(&self, kernel: f64) -> f64 {
        self.conversion.apply(kernel) * self.config.scale + self.config.offset
    }
}

impl Pending {
    /// Waits for the read until `deadline`. Returns the converted sample or the fault, and the
    /// retries it took.
    pub async fn finish(
        self,
        field: &FieldReader,
        deadline: Instant,
    ) -> (Result<Sample, Fault>, u32) {
        let Some(job) = self.job else {
            return (Err(Fault::Stuck), 0);
        };
        match tokio::time::timeout_at(deadline, job).await {
            Ok(Ok((outcome, at))) => {
                let sample = outcome.value.and_then(|kernel| {
                    let value = field.convert(kernel);
                    if value.is_finite() {
                        Ok(Sample { value, at })
                    } else {
                        Err(Fault::Unparsable(format!("{kernel} gives {value}")))
                    }
                });
                (sample, outcome.retries)
            }
            // The thread could not be started, or panicked.
            Ok(Err(_)) => (
                Err(Fault::Io {
                    attempts: 1,
                    error: "the reading thread failed".into(),
                }),
                0,
            ),
            Err(_) => (
                Err(Fault::Timeout(
                    deadline.saturating_duration_since(self.started),
                )),
                0,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::tests::put;
    use std::time::Duration;

    fn field(source: &str, scale: f64, offset: f64) -> Arc<FieldReader> {
        FieldReader::new(SensorField {
            spec: FieldSpec {
                name: "f".into(),
                unit: "".into(),
                kind: gateway_api::FieldType::Numeric,
                writable: false,
            },
            source: source.parse().unwrap(),
            scale,
            offset,
        })
    }

    const QUICK: Retry = Retry {
        attempts: 1,
        pause: Duration::ZERO,
    };

    #[tokio::test]
    async fn converts_then_applies_the_fields_scale_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        put(dir.path(), "bus/iio/devices/iio:device0/name", "bme280\n");
        put(
            dir.path(),
            "bus/iio/devices/iio:device0/in_pressure_input",
            "101.325\n",
        );
        let root: Arc<Path> = dir.path().into();
        let f = field("iio:bme280/pressure", 10.0, 0.0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let (sample, retries) = f.start(&root, QUICK).finish(&f, deadline).await;
        assert_eq!(retries, 0);
        assert!((sample.unwrap().value - 1013.25).abs() < 1e-9);
        let f = field("iio:bme280/pressure", 1.0, -1.325);
        let (sample, _) = f.start(&root, QUICK).finish(&f, deadline).await;
        assert!((sample.unwrap().value - 100.0).abs() < 1e-9);
    }

    #[tokio::test]
    async fn a_read_that_does_not_return_times_out_and_is_not_started_twice() {
        let f = field("thermal:cpu-thermal", 1.0, 0.0);
        let root: Arc<Path> = Path::new("/nonexistent").into();
        // Hold the location lock as a read stuck in the kernel would hold its thread: the
        // blocking read cannot finish until it is released.
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = {
            let f = Arc::clone(&f);
            std::thread::spawn(move || {
                let _guard = f.location.lock().unwrap();
                locked_tx.send(()).unwrap();
                let _ = release_rx.recv();
            })
        };
        locked_rx.recv().unwrap();
        let first = f.start(&root, QUICK);
        let deadline = Instant::now() + Duration::from_millis(50);
        let (result, _) = first.finish(&f, deadline).await;
        assert!(matches!(result, Err(Fault::Timeout(_))), "{result:?}");
        // Still stuck: the next poll does not start a second read.
        let (result, _) = f
            .start(&root, QUICK)
            .finish(&f, Instant::now() + Duration::from_secs(10))
            .await;
        assert_eq!(result, Err(Fault::Stuck));
        release_tx.send(()).unwrap();
        holder.join().unwrap();
        // Once the stuck read returns, reads start again.
        let mut result = Err(Fault::Stuck);
        for _ in 0..1000 {
            result = f
                .start(&root, QUICK)
                .finish(&f, Instant::now() + Duration::from_secs(10))
                .await
                .0;
            if result != Err(Fault::Stuck) {
                break;
            }
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(result, Err(Fault::Absent));
    }
}
