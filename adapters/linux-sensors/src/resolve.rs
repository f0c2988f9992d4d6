//! Finding a source's files under the sysfs root, and saying what to do when they are not there.
//!
//! IIO, hwmon and thermal devices are numbered in the order their drivers bound
//! (`iio:device0`, `hwmon3`, `thermal_zone1`), and the numbers change when modules load again,
//! so a source names the device by its `name` (or `type`) file and the directory is searched for
//! it. A resolved [`Location`] remembers that file and what it said; the reader checks it before
//! each read and resolves again when it no longer matches. 1-Wire sensors have their ROM id in
//! the path, which does not change.
//!
//! All of this is blocking file-system work: it runs on the reader's blocking thread.

use std::fs;
use std::path::{Path, PathBuf};

use crate::source::Source;
use crate::units::iio_channel_type;

/// Where to read one source, as found now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file holding the reading: `temperature`, `w1_slave`, `in_<channel>_input`,
    /// `in_<channel>_raw`, `<attribute>_input` or a zone's `temp`.
    pub file: PathBuf,
    pub format: Format,
    /// The file that identified the device and its contents, to notice a renumbering.
    pub identity: Option<(PathBuf, String)>,
}

/// How the reading file is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// One number in the kernel's unit (millidegrees for 1-Wire `temperature`).
    Number,
    /// The two lines of a 1-Wire `w1_slave` file: `… crc=xx YES|NO` and `… t=<millidegrees>`.
    W1Slave,
    /// An IIO raw count: the value is `(raw + offset) × scale`, either file being optional
    /// (scale 1, offset 0 without them).
    Raw {
        scale: Option<PathBuf>,
        offset: Option<PathBuf>,
    },
}

/// The directory of 1-Wire devices.
pub fn w1_devices(root: &Path) -> PathBuf {
    root.join("bus/w1/devices")
}

fn iio_devices(root: &Path) -> PathBuf {
    root.join("bus/iio/devices")
}

fn hwmon_devices(root: &Path) -> PathBuf {
    root.join("class/hwmon")
}

fn thermal_zones(root: &Path) -> PathBuf {
    root.join("class/thermal")
}

/// Finds `source` under `root`; `None` when the sensor is not there now.
pub fn resolve(root: &Path, source: &Source) -> Option<Location> {
    match source {
        Source::W1 { id } => {
            let dir = w1_devices(root).join(id);
            // `temperature` (kernels since 5.9) holds just the number; `w1_slave` is what older
            // kernels have.
            let temperature = dir.join("temperature");
            if temperature.exists() {
                return Some(Location {
                    file: temperature,
                    format: Format::Number,
                    identity: None,
                });
            }
            let slave = dir.join("w1_slave");
            slave.exists().then_some(Location {
                file: slave,
                format: Format::W1Slave,
                identity: None,
            })
        }
        Source::Iio { device, channel } => {
            let (dir, identity) = find_named(&iio_devices(root), "iio:device", "name", device)?;
            iio_channel(&dir, channel).map(|(file, format)| Location {
                file,
                format,
                identity: Some(identity),
            })
        }
        Source::Hwmon { device, attribute } => {
            let (dir, identity) = find_named(&hwmon_devices(root), "hwmon", "name", device)?;
            let file = format!("{attribute}_input");
            // Older drivers put their attributes in the `device` directory under hwmonN.
            [dir.join(&file), dir.join("device").join(&file)]
                .into_iter()
                .find(|p| p.exists())
                .map(|file| Location {
                    file,
                    format: Format::Number,
                    identity: Some(identity),
                })
        }
        Source::Thermal { zone } => {
            let (dir, identity) = find_named(&thermal_zones(root), "thermal_zone", "type", zone)?;
            let file = dir.join("temp");
            file.exists().then_some(Location {
                file,
                format: Format::Number,
                identity: Some(identity),
            })
        }
    }
}

/// The processed `in_<channel>_input`, else `in_<channel>_raw` with its scale and offset (the
/// channel's own, else the ones its type shares, e.g. `in_voltage_scale`).
fn iio_channel(dir: &Path, channel: &str) -> Option<(PathBuf, Format)> {
    let input = dir.join(format!("in_{channel}_input"));
    if input.exists() {
        return Some((input, Format::Number));
    }
    let raw = dir.join(format!("in_{channel}_raw"));
    if !raw.exists() {
        return None;
    }
    let shared = iio_channel_type(channel);
    let find = |what: &str| {
        [
            dir.join(format!("in_{channel}_{what}")),
            dir.join(format!("in_{shared}_{what}")),
        ]
        .into_iter()
        .find(|p| p.exists())
    };
    Some((
        raw,
        Format::Raw {
            scale: find("scale"),
            offset: find("offset"),
        },
    ))
}

/// The entries `<prefix><n>` of `dir`, in the order of `n`.
fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let n = name.to_str()?.strip_prefix(prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// Reads a small identifying file (`name`, `type`), trimmed; `None` if it is not a readable
/// regular file with UTF-8 text.
pub fn read_label(file: &Path) -> Option<String> {
    let bytes = crate::read::read_page(file).ok()?;
    Some(String::from_utf8(bytes).ok()?.trim().to_owned())
}

/// Whether a device's `name` answers to `wanted`: equal, or equal before an `@` (a driver bound
/// from a device tree node may be named after the node, e.g. `dht11@4`).
pub fn label_matches(label: &str, wanted: &str) -> bool {
    label == wanted || (!wanted.contains('@') && label.split('@').next() == Some(wanted))
}

/// The first device `<prefix><n>` of `dir` whose `label_file` answers to `wanted`, with the
/// identity to check later.
fn find_named(
    dir: &Path,
    prefix: &str,
    label_file: &str,
    wanted: &str,
) -> Option<(PathBuf, (PathBuf, String))> {
    numbered(dir, prefix).into_iter().find_map(|d| {
        let file = d.join(label_file);
        let label = read_label(&file)?;
        label_matches(&label, wanted).then_some((d, (file, label)))
    })
}

/// The names of the devices of `source`'s kind present under `root` (for messages).
fn present(root: &Path, source: &Source) -> Vec<String> {
    let (dir, prefix, file) = match source {
        Source::W1 { .. } => {
            let Ok(entries) = fs::read_dir(w1_devices(root)) else {
                return Vec::new();
            };
            let mut ids: Vec<String> = entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                // The bus masters are listed next to the sensors.
                .filter(|n| !n.starts_with("w1_bus_master"))
                .collect();
            ids.sort();
            return ids;
        }
        Source::Iio { .. } => (iio_devices(root), "iio:device", "name"),
        Source::Hwmon { .. } => (hwmon_devices(root), "hwmon", "name"),
        Source::Thermal { .. } => (thermal_zones(root), "thermal_zone", "type"),
    };
    numbered(&dir, prefix)
        .iter()
        .filter_map(|d| read_label(&d.join(file)))
        .collect()
}

/// The device tree overlay that makes the kernel bind the driver of a sensor called `name`
/// (Raspberry Pi OS; the lines go in `/boot/firmware/config.txt`).
fn overlay_for(name: &str) -> Option<&'static str> {
    let base = name.split('@').next().unwrap_or(name);
    Some(match base {
        "bme280" => "dtoverlay=i2c-sensor,bme280",
        "bmp280" => "dtoverlay=i2c-sensor,bmp280",
        "bme680" => "dtoverlay=i2c-sensor,bme680",
        "sht3x" => "dtoverlay=i2c-sensor,sht3x",
        "htu21" => "dtoverlay=i2c-sensor,htu21",
        "dht11" => "dtoverlay=dht11,gpiopin=4",
        "ads1115" | "ads1015" => "dtoverlay=ads1115",
        _ => return None,
    })
}

/// ` (did you mean `x`?)` when one of `candidates` is close to `input`, else nothing.
fn close_to<'c>(input: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    gateway_toolkit::did_you_mean(input, candidates)
        .map_or_else(String::new, |c| format!(" (did you mean `{c}`?)"))
}

/// What to tell someone whose `source` is not there: which kernel support is missing and how to
/// turn it on, or which devices are there instead. For `check`.
pub fn hint(root: &Path, source: &Source) -> String {
    const CONFIG: &str = "/boot/firmware/config.txt";
    let present = present(root, source);
    // 1-Wire ids are serial numbers: one that looks like another is not a typo of it.
    let wanted = match source {
        Source::W1 { .. } => None,
        Source::Iio { device, .. } | Source::Hwmon { device, .. } => Some(device),
        Source::Thermal { zone } => Some(zone),
    };
    let listed = |what: &str| {
        if present.is_empty() {
            format!("no {what} is present")
        } else {
            format!(
                "present: {}{}",
                present.join(", "),
                wanted.map_or_else(String::new, |w| close_to(
                    w,
                    present.iter().map(String::as_str)
                ))
            )
        }
    };
    match source {
        Source::W1 { .. } => {
            if !root.join("bus/w1").exists() {
                format!(
                    "the 1-Wire bus is not enabled (no {}): add `dtoverlay=w1-gpio` (data on \
                     GPIO 4) to {CONFIG} and reboot",
                    root.join("bus/w1").display()
                )
            } else {
                format!(
                    "{}; check the wiring and the 4.7 kΩ pull-up",
                    listed("1-Wire sensor")
                )
            }
        }
        Source::Iio { device, channel } => {
            if let Some(dir) = find_named(&iio_devices(root), "iio:device", "name", device) {
                let channels = iio_channels(&dir.0);
                return format!(
                    "{device} has no channel {channel}{}; its channels: {}",
                    close_to(channel, channels.iter().map(String::as_str)),
                    channels.join(", ")
                );
            }
            let mut out = listed("IIO device");
            if let Some(overlay) = overlay_for(device) {
                out.push_str(&format!(
                    "; for a {device} add `{overlay}` to {CONFIG} and reboot"
                ));
            } else {
                out.push_str(
                    "; load the sensor's driver (a `dtoverlay=` line in the boot configuration)",
                );
            }
            out
        }
        Source::Hwmon { device, attribute } => {
            if find_named(&hwmon_devices(root), "hwmon", "name", device).is_some() {
                return format!("{device} has no {attribute}_input");
            }
            let mut out = listed("hwmon device");
            if let Some(overlay) = overlay_for(device) {
                out.push_str(&format!(
                    "; for a {device} add `{overlay}` to {CONFIG} and reboot"
                ));
            }
            out
        }
        Source::Thermal { .. } => listed("thermal zone"),
    }
}

/// The channels of an IIO device directory (`in_<channel>_input` or `_raw`), for messages.
fn iio_channels(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let inner = name.strip_prefix("in_")?;
            let ch = inner
                .strip_suffix("_input")
                .or_else(|| inner.strip_suffix("_raw"))?;
            Some(ch.to_owned())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes `contents` at `root/rel`, making the directories on the way.
    pub(crate) fn put(root: &Path, rel: &str, contents: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, contents).unwrap();
    }

    fn src(s: &str) -> Source {
        s.parse().unwrap()
    }

    #[test]
    fn finds_devices_by_their_name_not_their_number() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        put(root, "bus/iio/devices/iio:device0/name", "dht11@4\n");
        put(root, "bus/iio/devices/iio:device0/in_temp_input", "21000\n");
        put(root, "bus/iio/devices/iio:device10/name", "other\n");
        put(root, "bus/iio/devices/iio:device2/name", "bme280\n");
        put(root, "bus/iio/devices/iio:device2/in_temp_input", "21000\n");
        put(
            root,
            "bus/iio/devices/iio:device2/in_pressure_raw",
            "1000\n",
        );
        put(
            root,
            "bus/iio/devices/iio:device2/in_pressure_scale",
            "0.1\n",
        );
        put(root, "bus/iio/devices/iio:device3/name", "ads1115\n");
        put(root, "bus/iio/devices/iio:device3/in_voltage0_raw", "100\n");
        put(
            root,
            "bus/iio/devices/iio:device3/in_voltage_scale",
            "0.125\n",
        );
        put(root, "bus/iio/devices/iio:device3/in_voltage_offset", "2\n");
        put(
            root,
            "bus/iio/devices/iio:device3/in_voltage0_offset",
            "3\n",
        );

        let temp = resolve(root, &src("iio:bme280/temp")).unwrap();
        assert!(temp.file.ends_with("iio:device2/in_temp_input"));
        assert_eq!(temp.format, Format::Number);
        let (id_file, label) = temp.identity.unwrap();
        assert!(id_file.ends_with("iio:device2/name"));
        assert_eq!(label, "bme280");

        let pressure = resolve(root, &src("iio:bme280/pressure")).unwrap();
        assert!(pressure.file.ends_with("in_pressure_raw"));
        match pressure.format {
            Format::Raw { scale, offset } => {
                assert!(scale.unwrap().ends_with("in_pressure_scale"));
                assert_eq!(offset, None);
            }
            other => panic!("{other:?}"),
        }
        // The channel's own offset wins over the shared one; the shared scale is used.
        match resolve(root, &src("iio:ads1115/voltage0")).unwrap().format {
            Format::Raw { scale, offset } => {
                assert!(scale.unwrap().ends_with("in_voltage_scale"));
                assert!(offset.unwrap().ends_with("in_voltage0_offset"));
            }
            other => panic!("{other:?}"),
        }
        assert!(resolve(root, &src("iio:dht11/temp")).is_some());
        assert_eq!(resolve(root, &src("iio:bme280/humidityrelative")), None);
        assert_eq!(resolve(root, &src("iio:bme680/temp")), None);
    }

    #[test]
    fn hwmon_thermal_and_w1() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        put(root, "class/hwmon/hwmon0/name", "cpu_thermal\n");
        put(root, "class/hwmon/hwmon0/temp1_input", "45000\n");
        put(root, "class/hwmon/hwmon1/name", "sht3x\n");
        put(root, "class/hwmon/hwmon1/device/humidity1_input", "45000\n");
        put(root, "class/thermal/thermal_zone0/type", "cpu-thermal\n");
        put(root, "class/thermal/thermal_zone0/temp", "45000\n");
        put(
            root,
            "bus/w1/devices/28-0000075a2a2b/temperature",
            "21000\n",
        );
        put(root, "bus/w1/devices/28-0000075a2a2b/w1_slave", "");
        put(root, "bus/w1/devices/10-000802b4a5c6/w1_slave", "");

        assert!(resolve(root, &src("hwmon:cpu_thermal/temp1"))
            .unwrap()
            .file
            .ends_with("hwmon0/temp1_input"));
        assert!(resolve(root, &src("hwmon:sht3x/humidity1"))
            .unwrap()
            .file
            .ends_with("hwmon1/device/humidity1_input"));
        assert_eq!(resolve(root, &src("hwmon:sht3x/temp1")), None);
        assert!(resolve(root, &src("thermal:cpu-thermal"))
            .unwrap()
            .file
            .ends_with("thermal_zone0/temp"));
        let w1 = resolve(root, &src("w1:28-0000075a2a2b")).unwrap();
        assert!(w1.file.ends_with("28-0000075a2a2b/temperature"));
        assert_eq!(w1.format, Format::Number);
        let old = resolve(root, &src("w1:10-000802b4a5c6")).unwrap();
        assert_eq!(old.format, Format::W1Slave);
        assert_eq!(resolve(root, &src("w1:28-00000a1b2c3d")), None);
    }

    #[test]
    fn hints_say_what_to_enable_or_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let h = hint(root, &src("w1:28-0000075a2a2b"));
        assert!(h.contains("dtoverlay=w1-gpio"), "{h}");
        assert!(h.contains("/boot/firmware/config.txt"), "{h}");
        let h = hint(root, &src("iio:bme280/temp"));
        assert!(h.contains("dtoverlay=i2c-sensor,bme280"), "{h}");
        assert!(h.contains("no IIO device is present"), "{h}");
        assert!(hint(root, &src("iio:dht11/temp")).contains("dtoverlay=dht11,gpiopin=4"));
        assert!(hint(root, &src("hwmon:sht3x/temp1")).contains("i2c-sensor,sht3x"));

        put(root, "bus/w1/devices/w1_bus_master1/w1_master_slaves", "");
        put(root, "bus/w1/devices/28-00000a1b2c3d/temperature", "1");
        let h = hint(root, &src("w1:28-0000075a2a2b"));
        assert!(h.contains("present: 28-00000a1b2c3d;"), "{h}");
        put(root, "bus/iio/devices/iio:device0/name", "bme280\n");
        put(root, "bus/iio/devices/iio:device0/in_temp_input", "1");
        put(root, "bus/iio/devices/iio:device0/in_pressure_raw", "1");
        assert_eq!(
            hint(root, &src("iio:bme280/humidityrelative")),
            "bme280 has no channel humidityrelative; its channels: pressure, temp"
        );
        put(
            root,
            "bus/iio/devices/iio:device0/in_humidityrelative_input",
            "1",
        );
        assert_eq!(
            hint(root, &src("iio:bme280/humidity")),
            "bme280 has no channel humidity (did you mean `humidityrelative`?); its channels: \
             humidityrelative, pressure, temp"
        );
        put(root, "class/thermal/thermal_zone0/type", "cpu-thermal\n");
        assert_eq!(hint(root, &src("thermal:soc")), "present: cpu-thermal");
        assert_eq!(
            hint(root, &src("thermal:cpu_thermal")),
            "present: cpu-thermal (did you mean `cpu-thermal`?)"
        );
    }
}
