//! Reading one source: open, check, parse, retry — blocking, on a blocking thread.
//!
//! Sysfs attributes are regular files of at most one page; anything else at a sensor's path (a
//! directory, a FIFO left by a test or a mistake) is refused without reading it. Files are opened
//! with `O_NONBLOCK`, so even opening a FIFO that nobody writes does not wait. Reads that fail
//! with `EIO`, `ETIMEDOUT`, `EAGAIN` or `EBUSY` are what flaky buses do (a DHT22 misses its
//! timing, a 1-Wire read fails its CRC inside the kernel): they are tried again a few times.
//! `ENOENT`/`ENODEV`/`ENXIO` mean the sensor is gone: the location is resolved again once (a
//! reloaded module renumbers its devices) before the sensor counts as not present.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use crate::resolve::{read_label, resolve, Format, Location};
use crate::source::Source;

/// The most a sysfs attribute holds (one page on every Linux the gateway runs on).
const MAX_ATTRIBUTE: u64 = 4096;

/// The DS18B20's power-on reset value, in millidegrees: what its scratchpad holds when it lost
/// power before a conversion finished. A real 85.000 °C cannot be told from it.
pub const DS18B20_POWER_ON: f64 = 85_000.0;

/// Why a field has no value this time. None of these publishes a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Fault {
    /// The sensor's directory or file is not there (unplugged, module not loaded).
    #[error("not present")]
    Absent,
    #[error("CRC check failed (crc=.. NO)")]
    Crc,
    #[error("85 °C power-on value: the sensor lost power during the conversion")]
    PowerOn,
    #[error("read failed{}: {error}", after(*.attempts))]
    Io { attempts: u32, error: String },
    #[error("not a regular file")]
    NotAFile,
    #[error("value does not parse: {0}")]
    Unparsable(String),
    #[error("no answer within {} s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("the previous read has not returned yet")]
    Stuck,
}

fn after(attempts: u32) -> String {
    if attempts > 1 {
        format!(" after {attempts} attempts")
    } else {
        String::new()
    }
}

impl Fault {
    /// The `fault` label of the metric that counts it.
    pub fn label(&self) -> &'static str {
        match self {
            Fault::Absent => "absent",
            Fault::Crc => "crc",
            Fault::PowerOn => "power_on",
            Fault::Io { .. } => "io",
            Fault::NotAFile => "not_a_file",
            Fault::Unparsable(_) => "unparsable",
            Fault::Timeout(_) => "timeout",
            Fault::Stuck => "stuck",
        }
    }

    /// Every label, for metrics that list zeros too.
    pub const LABELS: &'static [&'static str] = &[
        "absent",
        "crc",
        "power_on",
        "io",
        "not_a_file",
        "unparsable",
        "timeout",
        "stuck",
    ];
}

/// How often, and how far apart, a read that failed with a transient error is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Pause between attempts (a DHT22 needs a moment before it answers again).
    pub pause: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 3,
            pause: Duration::from_millis(200),
        }
    }
}

/// What one read of one source came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// In the kernel's unit (not yet converted).
    pub value: Result<f64, Fault>,
    /// Attempts beyond the first.
    pub retries: u32,
}

/// Why one attempt failed.
#[derive(Debug)]
enum Failure {
    /// The file or its device is gone (or the device at the path is another one now).
    Gone,
    /// Worth another attempt.
    Transient(io::Error),
    Fault(Fault),
}

/// Reads `source`, using and updating the `cached` location.
pub fn read_source(
    root: &Path,
    source: &Source,
    cached: &mut Option<Location>,
    retry: Retry,
) -> Outcome {
    let mut retries = 0;
    let mut resolved_now = false;
    loop {
        let location = match cached {
            Some(l) => l.clone(),
            None => {
                resolved_now = true;
                match resolve(root, source) {
                    Some(l) => cached.insert(l).clone(),
                    None => {
                        return Outcome {
                            value: Err(Fault::Absent),
                            retries,
                        }
                    }
                }
            }
        };
        let (result, attempt) = with_retries(retry, || read_location(&location, source));
        retries += attempt - 1;
        let value = match result {
            Ok(v) => Ok(v),
            Err(Failure::Gone) => {
                *cached = None;
                if resolved_now {
                    Err(Fault::Absent)
                } else {
                    // Found at another place now (a renumbered device), or gone.
                    continue;
                }
            }
            Err(Failure::Transient(e)) => Err(Fault::Io {
                attempts: attempt,
                error: e.to_string(),
            }),
            Err(Failure::Fault(f)) => Err(f),
        };
        return Outcome { value, retries };
    }
}

/// Runs `attempt` until it succeeds, fails for good, or `retry.attempts` are used up; returns
/// the last result and the number of attempts made.
fn with_retries(
    retry: Retry,
    mut attempt: impl FnMut() -> Result<f64, Failure>,
) -> (Result<f64, Failure>, u32) {
    let mut made = 1;
    loop {
        match attempt() {
            Err(Failure::Transient(e)) if made < retry.attempts.max(1) => {
                tracing::trace!(error = %e, "Retrying a sensor read");
                made += 1;
                std::thread::sleep(retry.pause);
            }
            other => return (other, made),
        }
    }
}

/// One attempt at `location`, in the kernel's unit.
fn read_location(location: &Location, source: &Source) -> Result<f64, Failure> {
    if let Some((file, label)) = &location.identity {
        if read_label(file).as_deref() != Some(label.as_str()) {
            return Err(Failure::Gone);
        }
    }
    let value = match &location.format {
        Format::Number => number(&read_attribute(&location.file)?)?,
        Format::W1Slave => w1_slave(&read_attribute(&location.file)?)?,
        Format::Raw { scale, offset } => {
            let raw = number(&read_attribute(&location.file)?)?;
            let optional = |p: &Option<std::path::PathBuf>, default: f64| match p {
                Some(p) => number(&read_attribute(p)?),
                None => Ok(default),
            };
            let offset = optional(offset, 0.0)?;
            let scale = optional(scale, 1.0)?;
            (raw + offset) * scale
        }
    };
    if matches!(source, Source::W1 { .. }) && value == DS18B20_POWER_ON {
        return Err(Failure::Fault(Fault::PowerOn));
    }
    Ok(value)
}

fn classify(e: io::Error) -> Failure {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO | libc::ENOTDIR) => Failure::Gone,
        Some(libc::EIO | libc::ETIMEDOUT | libc::EAGAIN | libc::EBUSY | libc::EINTR) => {
            Failure::Transient(e)
        }
        _ => Failure::Fault(Fault::Io {
            attempts: 1,
            error: e.to_string(),
        }),
    }
}

/// Why [`read_page`] gave no text.
#[derive(Debug)]
pub(crate) enum PageError {
    Io(io::Error),
    /// A directory, FIFO, device node or socket.
    NotAFile,
    /// More than a sysfs attribute can hold; the first page and one byte.
    TooLong(Vec<u8>),
}

/// The bytes of the regular file at `path`, at most one page. Opened with `O_NONBLOCK`, so that
/// not even the open waits on a FIFO, and checked before anything is read.
pub(crate) fn read_page(path: &Path) -> Result<Vec<u8>, PageError> {
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(PageError::Io)?;
    if !file.metadata().map_err(PageError::Io)?.is_file() {
        return Err(PageError::NotAFile);
    }
    let mut bytes = Vec::with_capacity(64);
    file.take(MAX_ATTRIBUTE + 1)
        .read_to_end(&mut bytes)
        .map_err(PageError::Io)?;
    if bytes.len() as u64 > MAX_ATTRIBUTE {
        return Err(PageError::TooLong(bytes));
    }
    Ok(bytes)
}

/// The text of one sysfs attribute.
fn read_attribute(path: &Path) -> Result<String, Failure> {
    let bytes = read_page(path).map_err(|e| match e {
        PageError::Io(e) => classify(e),
        PageError::NotAFile => Failure::Fault(Fault::NotAFile),
        PageError::TooLong(bytes) => unparsable(&bytes),
    })?;
    String::from_utf8(bytes).map_err(|e| unparsable(e.as_bytes()))
}

/// The start of what was read, escaped, for the message.
fn unparsable(bytes: &[u8]) -> Failure {
    const PREVIEW: usize = 40;
    let mut text = bytes[..bytes.len().min(PREVIEW)].escape_ascii().to_string();
    if bytes.len() > PREVIEW {
        text.push('…');
    }
    Failure::Fault(Fault::Unparsable(format!("\"{text}\"")))
}

/// One finite number (sysfs writes integers, or decimals such as `101.325000000`).
fn number(text: &str) -> Result<f64, Failure> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(unparsable(text.as_bytes())),
    }
}

/// The temperature in a `w1_slave` file:
/// `72 01 4b 46 7f ff 0e 10 57 : crc=57 YES` then `72 01 4b 46 7f ff 0e 10 57 t=23125`.
fn w1_slave(text: &str) -> Result<f64, Failure> {
    let mut lines = text.lines();
    let (Some(check), Some(data)) = (lines.next(), lines.next()) else {
        return Err(unparsable(text.as_bytes()));
    };
    if !check.contains("crc=") {
        return Err(unparsable(text.as_bytes()));
    }
    match check.split_whitespace().last() {
        Some("YES") => {}
        Some("NO") => return Err(Failure::Fault(Fault::Crc)),
        _ => return Err(unparsable(text.as_bytes())),
    }
    let Some((_, t)) = data.rsplit_once("t=") else {
        return Err(unparsable(text.as_bytes()));
    };
    match t.trim().parse::<i64>() {
        Ok(milli) => Ok(milli as f64),
        Err(_) => Err(unparsable(text.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::tests::put;

    const QUICK: Retry = Retry {
        attempts: 3,
        pause: Duration::ZERO,
    };

    fn read(root: &Path, source: &str, cached: &mut Option<Location>) -> Result<f64, Fault> {
        read_source(root, &source.parse().unwrap(), cached, QUICK).value
    }

    #[test]
    fn w1_slave_lines() {
        let ok = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n";
        assert_eq!(w1_slave(ok).unwrap(), 23125.0);
        let neg = "5e ff 4b 46 7f ff 02 10 c1 : crc=c1 YES\n5e ff 4b 46 7f ff 02 10 c1 t=-10125\n";
        assert_eq!(w1_slave(neg).unwrap(), -10125.0);
        let bad = "72 01 4b 46 7f ff 0e 10 57 : crc=a0 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n";
        assert!(matches!(w1_slave(bad), Err(Failure::Fault(Fault::Crc))));
        for garbage in [
            "",
            "crc=57 YES\n",
            "x\ny\n",
            "crc=57 MAYBE\nt=1\n",
            "crc=1 YES\nt=warm\n",
        ] {
            assert!(
                matches!(w1_slave(garbage), Err(Failure::Fault(Fault::Unparsable(_)))),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn reads_values_and_reports_faults_without_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let w1 = "bus/w1/devices/28-0000075a2a2b";
        put(root, &format!("{w1}/temperature"), "21125\n");
        let mut cache = None;
        assert_eq!(read(root, "w1:28-0000075a2a2b", &mut cache), Ok(21125.0));
        assert!(cache.is_some());
        put(root, &format!("{w1}/temperature"), "85000\n");
        assert_eq!(
            read(root, "w1:28-0000075a2a2b", &mut cache),
            Err(Fault::PowerOn)
        );
        put(root, &format!("{w1}/temperature"), "85062\n");
        assert_eq!(read(root, "w1:28-0000075a2a2b", &mut cache), Ok(85062.0));
        put(root, &format!("{w1}/temperature"), "\u{fffd}\n");
        assert!(matches!(
            read(root, "w1:28-0000075a2a2b", &mut cache),
            Err(Fault::Unparsable(_))
        ));
        put(root, &format!("{w1}/temperature"), &"1".repeat(5000));
        assert!(matches!(
            read(root, "w1:28-0000075a2a2b", &mut cache),
            Err(Fault::Unparsable(_))
        ));

        // Raw IIO: (raw + offset) × scale.
        let iio = "bus/iio/devices/iio:device0";
        put(root, &format!("{iio}/name"), "bme280\n");
        put(root, &format!("{iio}/in_temp_raw"), "1000\n");
        put(root, &format!("{iio}/in_temp_offset"), "-500\n");
        put(root, &format!("{iio}/in_temp_scale"), "42.5\n");
        let mut cache = None;
        assert_eq!(read(root, "iio:bme280/temp", &mut cache), Ok(21250.0));
        put(root, &format!("{iio}/in_temp_scale"), "nan\n");
        assert!(matches!(
            read(root, "iio:bme280/temp", &mut cache),
            Err(Fault::Unparsable(_))
        ));
    }

    #[test]
    fn a_directory_or_a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let zone = root.join("class/thermal/thermal_zone0");
        put(root, "class/thermal/thermal_zone0/type", "cpu-thermal\n");
        std::fs::create_dir_all(zone.join("temp")).unwrap();
        let mut cache = None;
        assert_eq!(
            read(root, "thermal:cpu-thermal", &mut cache),
            Err(Fault::NotAFile)
        );
        std::fs::remove_dir(zone.join("temp")).unwrap();
        let fifo = std::ffi::CString::new(zone.join("temp").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo touches nothing else.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert_eq!(
            read(root, "thermal:cpu-thermal", &mut cache),
            Err(Fault::NotAFile)
        );
    }

    #[test]
    fn a_vanished_sensor_is_absent_and_a_renumbered_one_is_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        put(root, "bus/iio/devices/iio:device0/name", "bme280\n");
        put(root, "bus/iio/devices/iio:device0/in_temp_input", "20000\n");
        let mut cache = None;
        assert_eq!(read(root, "iio:bme280/temp", &mut cache), Ok(20000.0));
        // The module is reloaded after another driver: device0 is someone else now, and it has
        // a temperature channel too. It must not be read as the bme280.
        put(root, "bus/iio/devices/iio:device0/name", "dht11\n");
        put(root, "bus/iio/devices/iio:device1/name", "bme280\n");
        put(root, "bus/iio/devices/iio:device1/in_temp_input", "21000\n");
        assert_eq!(read(root, "iio:bme280/temp", &mut cache), Ok(21000.0));
        assert!(cache
            .as_ref()
            .unwrap()
            .file
            .ends_with("iio:device1/in_temp_input"));
        std::fs::remove_dir_all(root.join("bus/iio/devices/iio:device1")).unwrap();
        assert_eq!(
            read(root, "iio:bme280/temp", &mut cache),
            Err(Fault::Absent)
        );
        assert_eq!(cache, None);
        assert_eq!(
            read(root, "iio:bme280/temp", &mut cache),
            Err(Fault::Absent)
        );
        put(root, "bus/iio/devices/iio:device2/name", "bme280\n");
        put(root, "bus/iio/devices/iio:device2/in_temp_input", "22000\n");
        assert_eq!(read(root, "iio:bme280/temp", &mut cache), Ok(22000.0));

        let w1 = root.join("bus/w1/devices/28-0000075a2a2b");
        put(root, "bus/w1/devices/28-0000075a2a2b/temperature", "1000\n");
        assert_eq!(read(root, "w1:28-0000075a2a2b", &mut None), Ok(1000.0));
        std::fs::remove_dir_all(&w1).unwrap();
        assert_eq!(
            read(root, "w1:28-0000075a2a2b", &mut None),
            Err(Fault::Absent)
        );
    }

    #[test]
    fn transient_errors_are_retried_a_few_times() {
        let mut calls = 0;
        let (result, made) = with_retries(QUICK, || {
            calls += 1;
            if calls < 3 {
                Err(Failure::Transient(io::Error::from_raw_os_error(
                    libc::ETIMEDOUT,
                )))
            } else {
                Ok(1.0)
            }
        });
        assert_eq!((result.unwrap(), made), (1.0, 3));
        let (result, made) = with_retries(QUICK, || {
            Err(Failure::Transient(io::Error::from_raw_os_error(libc::EIO)))
        });
        assert!(matches!(result, Err(Failure::Transient(_))));
        assert_eq!(made, 3);
        // A fault that another attempt cannot cure is not retried.
        let mut calls = 0;
        let (result, made) = with_retries(QUICK, || {
            calls += 1;
            Err(Failure::Fault(Fault::Crc))
        });
        assert!(matches!(result, Err(Failure::Fault(Fault::Crc))));
        assert_eq!((made, calls), (1, 1));
    }

    #[test]
    fn transient_errors_are_classified_for_retry() {
        assert!(matches!(
            classify(io::Error::from_raw_os_error(libc::EIO)),
            Failure::Transient(_)
        ));
        assert!(matches!(
            classify(io::Error::from_raw_os_error(libc::ETIMEDOUT)),
            Failure::Transient(_)
        ));
        assert!(matches!(
            classify(io::Error::from_raw_os_error(libc::ENODEV)),
            Failure::Gone
        ));
        assert!(matches!(
            classify(io::Error::from_raw_os_error(libc::EACCES)),
            Failure::Fault(Fault::Io { attempts: 1, .. })
        ));
    }
}
