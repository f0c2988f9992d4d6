//! Where a field's value comes from: the `source` key, parsed once at configuration time.
//!
//! Four kinds, one per kernel subsystem, each naming the sensor the way the kernel does, not by
//! a path that changes when modules load in another order:
//! `w1:<id>` (a 1-Wire sensor by its ROM id, as in `/sys/bus/w1/devices/<id>`),
//! `iio:<name>/<channel>` (an IIO device by the contents of its `name` file, then the channel,
//! as in `in_<channel>_input`), `hwmon:<name>/<attribute>` (a hwmon device by its `name` file,
//! then the attribute without `_input`, e.g. `temp1`), `thermal:<type>` (a thermal zone by the
//! contents of its `type` file).

use std::fmt;
use std::str::FromStr;

/// A parsed `source`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// A 1-Wire temperature sensor (w1_therm driver), id in lower case.
    W1 { id: String },
    /// A channel of an IIO device.
    Iio { device: String, channel: String },
    /// An attribute of a hwmon device.
    Hwmon { device: String, attribute: String },
    /// A thermal zone.
    Thermal { zone: String },
}

/// The source kinds, as written before the colon (for messages and did-you-mean).
pub const KINDS: &[&str] = &["w1", "iio", "hwmon", "thermal"];

/// The hwmon attribute kinds this adapter knows the units of (`<kind><n>_input`).
pub const HWMON_KINDS: &[&str] = &["temp", "in", "curr", "power", "energy", "humidity", "fan"];

/// Why a `source` text is not a source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error(
        "a source is `w1:<id>`, `iio:<device>/<channel>`, `hwmon:<device>/<attribute>` or `thermal:<zone type>`"
    )]
    NoKind,
    #[error("unknown source kind `{0}` (known: w1, iio, hwmon, thermal)")]
    UnknownKind(String),
    #[error("`{0}` is not a 1-Wire id: two hex digits of family, `-`, twelve hex digits (e.g. 28-0000075a2a2b)")]
    BadW1Id(String),
    #[error("`{kind}:` needs `<device>/<{what}>` (e.g. {example})")]
    MissingPart {
        kind: &'static str,
        what: &'static str,
        example: &'static str,
    },
    #[error("the device name must not be empty")]
    EmptyDevice,
    #[error("`{0}` is not an IIO channel name (letters, digits, `_` and `-`, e.g. temp, humidityrelative, voltage0)")]
    BadChannel(String),
    #[error("write the attribute without `_input`: `{0}`")]
    InputSuffix(String),
    #[error(
        "`{0}` is not a hwmon attribute: a kind (temp, in, curr, power, energy, humidity, fan) and its number, e.g. temp1"
    )]
    BadAttribute(String),
    #[error("the thermal zone type must not be empty (e.g. thermal:cpu-thermal)")]
    EmptyZone,
}

impl FromStr for Source {
    type Err = SourceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let Some((kind, rest)) = text.split_once(':') else {
            return Err(SourceError::NoKind);
        };
        match kind {
            "w1" => parse_w1(rest),
            "iio" => {
                let (device, channel) = device_and(rest, "iio", "channel", "iio:bme280/temp")?;
                if !channel
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(SourceError::BadChannel(channel.to_owned()));
                }
                if let Some(stem) = channel
                    .strip_suffix("_input")
                    .or(channel.strip_suffix("_raw"))
                {
                    return Err(SourceError::InputSuffix(format!("iio:{device}/{stem}")));
                }
                Ok(Source::Iio {
                    device: device.to_owned(),
                    channel: channel.to_owned(),
                })
            }
            "hwmon" => {
                let (device, attribute) =
                    device_and(rest, "hwmon", "attribute", "hwmon:cpu_thermal/temp1")?;
                if let Some(stem) = attribute.strip_suffix("_input") {
                    return Err(SourceError::InputSuffix(format!("hwmon:{device}/{stem}")));
                }
                if hwmon_kind(attribute).is_none() {
                    return Err(SourceError::BadAttribute(attribute.to_owned()));
                }
                Ok(Source::Hwmon {
                    device: device.to_owned(),
                    attribute: attribute.to_owned(),
                })
            }
            "thermal" => {
                if rest.is_empty() {
                    return Err(SourceError::EmptyZone);
                }
                Ok(Source::Thermal {
                    zone: rest.to_owned(),
                })
            }
            "" => Err(SourceError::NoKind),
            other => Err(SourceError::UnknownKind(other.to_owned())),
        }
    }
}

fn parse_w1(id: &str) -> Result<Source, SourceError> {
    let lower = id.to_ascii_lowercase();
    let ok = match lower.split_once('-') {
        Some((family, serial)) => {
            family.len() == 2
                && serial.len() == 12
                && family
                    .bytes()
                    .chain(serial.bytes())
                    .all(|b| b.is_ascii_hexdigit())
        }
        None => false,
    };
    if !ok {
        return Err(SourceError::BadW1Id(id.to_owned()));
    }
    Ok(Source::W1 { id: lower })
}

/// Splits `<device>/<part>`; the device is matched against a `name` file, so it may hold
/// anything but `/`.
fn device_and<'a>(
    rest: &'a str,
    kind: &'static str,
    what: &'static str,
    example: &'static str,
) -> Result<(&'a str, &'a str), SourceError> {
    let missing = SourceError::MissingPart {
        kind,
        what,
        example,
    };
    let (device, part) = rest.rsplit_once('/').ok_or(missing.clone())?;
    if device.is_empty() {
        return Err(SourceError::EmptyDevice);
    }
    if part.is_empty() || device.contains('/') {
        return Err(missing);
    }
    Ok((device, part))
}

/// The kind of a hwmon attribute (`temp1` -> `temp`), if it is `<known kind><digits>`.
pub fn hwmon_kind(attribute: &str) -> Option<&'static str> {
    let digits = attribute.trim_start_matches(|c: char| c.is_ascii_lowercase());
    let kind = &attribute[..attribute.len() - digits.len()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    HWMON_KINDS.iter().copied().find(|k| *k == kind)
}

impl Source {
    /// How people call this sensor in messages: the first half of `… not present`.
    pub fn describe(&self) -> String {
        match self {
            Source::W1 { id } => format!("1-Wire sensor {id}"),
            Source::Iio { device, channel } => format!("IIO sensor {device}/{channel}"),
            Source::Hwmon { device, attribute } => format!("hwmon sensor {device}/{attribute}"),
            Source::Thermal { zone } => format!("thermal zone {zone}"),
        }
    }

    /// The kind before the colon, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::W1 { .. } => "w1",
            Source::Iio { .. } => "iio",
            Source::Hwmon { .. } => "hwmon",
            Source::Thermal { .. } => "thermal",
        }
    }
}

impl fmt::Display for Source {
    /// The configuration syntax (parses back to the same source).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::W1 { id } => write!(f, "w1:{id}"),
            Source::Iio { device, channel } => write!(f, "iio:{device}/{channel}"),
            Source::Hwmon { device, attribute } => write!(f, "hwmon:{device}/{attribute}"),
            Source::Thermal { zone } => write!(f, "thermal:{zone}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Source, SourceError> {
        s.parse()
    }

    #[test]
    fn parses_the_four_kinds_and_prints_them_back() {
        for (text, want) in [
            (
                "w1:28-0000075A2A2B",
                Source::W1 {
                    id: "28-0000075a2a2b".into(),
                },
            ),
            (
                "iio:bme280/humidityrelative",
                Source::Iio {
                    device: "bme280".into(),
                    channel: "humidityrelative".into(),
                },
            ),
            (
                "iio:ads1115/voltage0-voltage1",
                Source::Iio {
                    device: "ads1115".into(),
                    channel: "voltage0-voltage1".into(),
                },
            ),
            (
                "hwmon:cpu_thermal/temp1",
                Source::Hwmon {
                    device: "cpu_thermal".into(),
                    attribute: "temp1".into(),
                },
            ),
            (
                "thermal:cpu-thermal",
                Source::Thermal {
                    zone: "cpu-thermal".into(),
                },
            ),
        ] {
            let got = parse(text).unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(parse(&got.to_string()).unwrap(), got);
        }
        assert_eq!(
            parse("w1:28-0000075a2a2b").unwrap().describe(),
            "1-Wire sensor 28-0000075a2a2b"
        );
    }

    #[test]
    fn refuses_what_could_escape_the_sysfs_tree_or_is_mistyped() {
        assert_eq!(parse("28-0000075a2a2b"), Err(SourceError::NoKind));
        assert_eq!(
            parse("onewire:28-0000075a2a2b"),
            Err(SourceError::UnknownKind("onewire".into()))
        );
        for bad in [
            "w1:../../etc",
            "w1:28-0000075a2a2",
            "w1:28-0000075a2a2bb",
            "w1:zz-0000075a2a2b",
        ] {
            assert!(matches!(parse(bad), Err(SourceError::BadW1Id(_))), "{bad}");
        }
        assert!(matches!(
            parse("iio:bme280"),
            Err(SourceError::MissingPart { .. })
        ));
        assert!(matches!(
            parse("iio:bme280/"),
            Err(SourceError::MissingPart { .. })
        ));
        assert_eq!(parse("iio:/temp"), Err(SourceError::EmptyDevice));
        assert!(matches!(
            parse("iio:a/b/temp"),
            Err(SourceError::MissingPart { .. })
        ));
        assert_eq!(
            parse("iio:bme280/.."),
            Err(SourceError::BadChannel("..".into()))
        );
        assert_eq!(
            parse("iio:bme280/temp_input"),
            Err(SourceError::InputSuffix("iio:bme280/temp".into()))
        );
        assert_eq!(
            parse("hwmon:cpu_thermal/temp1_input"),
            Err(SourceError::InputSuffix("hwmon:cpu_thermal/temp1".into()))
        );
        for bad in ["temp", "pwm1", "temp1x", "1", "../temp1"] {
            assert!(
                matches!(
                    parse(&format!("hwmon:x/{bad}")),
                    Err(SourceError::BadAttribute(_) | SourceError::MissingPart { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(parse("thermal:"), Err(SourceError::EmptyZone));
    }

    #[test]
    fn hwmon_kinds() {
        assert_eq!(hwmon_kind("temp1"), Some("temp"));
        assert_eq!(hwmon_kind("in0"), Some("in"));
        assert_eq!(hwmon_kind("humidity12"), Some("humidity"));
        assert_eq!(hwmon_kind("temp"), None);
        assert_eq!(hwmon_kind("pwm1"), None);
    }
}
