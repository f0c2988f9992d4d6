//! From the kernel's sysfs units to the units people read.
//!
//! The kernel's ABI fixes the unit of every attribute, mostly in thousandths so that it can print
//! integers: 1-Wire `temperature`/`w1_slave` and thermal `temp` in millidegrees Celsius; IIO
//! (`in_<channel>_input`, or `(raw + offset) × scale`) in millidegrees Celsius for `temp`,
//! milli-percent for `humidityrelative`, kilopascal for `pressure`, millivolts for `voltage`,
//! milliamperes for `current`, milliwatts for `power`; hwmon `*_input` in millidegrees (`temp`),
//! millivolts (`in`), milliamperes (`curr`), microwatts (`power`), microjoules (`energy`),
//! milli-percent (`humidity`), RPM (`fan`). The adapter divides by the prefix, so a field reads
//! °C, %, kPa, V, A, W, J; the field's own `scale` and `offset` come after that.

use crate::source::{hwmon_kind, Source};

/// How a number read from sysfs becomes the value people see.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conversion {
    /// The kernel's number divided by this is in `unit`.
    pub divisor: f64,
    /// The unit after the division; empty where the kernel's unit is kept (an IIO channel type
    /// this table does not list, e.g. `illuminance` in lux).
    pub unit: &'static str,
}

const MILLI_CELSIUS: Conversion = Conversion {
    divisor: 1000.0,
    unit: "°C",
};

impl Conversion {
    /// The conversion for `source`.
    pub fn of(source: &Source) -> Conversion {
        match source {
            Source::W1 { .. } | Source::Thermal { .. } => MILLI_CELSIUS,
            Source::Iio { channel, .. } => iio(channel),
            Source::Hwmon { attribute, .. } => hwmon(attribute),
        }
    }

    pub fn apply(self, kernel: f64) -> f64 {
        kernel / self.divisor
    }
}

/// The type of an IIO channel: the letters before an index or modifier (`voltage0` ->
/// `voltage`, `temp_ambient` -> `temp`).
pub fn iio_channel_type(channel: &str) -> &str {
    let end = channel
        .find(|c: char| !c.is_ascii_lowercase())
        .unwrap_or(channel.len());
    &channel[..end]
}

fn iio(channel: &str) -> Conversion {
    let (divisor, unit) = match iio_channel_type(channel) {
        "temp" => (1000.0, "°C"),
        "humidityrelative" => (1000.0, "%"),
        "pressure" => (1.0, "kPa"),
        "voltage" => (1000.0, "V"),
        "current" => (1000.0, "A"),
        "power" => (1000.0, "W"),
        _ => (1.0, ""),
    };
    Conversion { divisor, unit }
}

fn hwmon(attribute: &str) -> Conversion {
    let (divisor, unit) = match hwmon_kind(attribute) {
        Some("temp") => (1000.0, "°C"),
        Some("in") => (1000.0, "V"),
        Some("curr") => (1000.0, "A"),
        Some("power") => (1_000_000.0, "W"),
        Some("energy") => (1_000_000.0, "J"),
        Some("humidity") => (1000.0, "%"),
        Some("fan") => (1.0, "RPM"),
        // The parser accepts only the kinds above.
        _ => (1.0, ""),
    };
    Conversion { divisor, unit }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(s: &str) -> Conversion {
        Conversion::of(&s.parse().unwrap())
    }

    #[test]
    fn the_abi_units_become_the_documented_ones() {
        assert_eq!(conv("w1:28-0000075a2a2b").apply(21_125.0), 21.125);
        assert_eq!(conv("thermal:cpu-thermal").apply(48_312.0), 48.312);
        assert_eq!(conv("iio:bme280/temp").apply(23_450.0), 23.45);
        assert_eq!(conv("iio:bme280/humidityrelative").apply(45_678.0), 45.678);
        assert_eq!(conv("iio:bme280/pressure").apply(101.325), 101.325);
        assert_eq!(conv("iio:bme280/pressure").unit, "kPa");
        assert_eq!(conv("iio:ads1115/voltage0").apply(1_650.0), 1.65);
        assert_eq!(conv("iio:ads1115/voltage0").unit, "V");
        assert_eq!(conv("iio:tsl2561/illuminance0").unit, "");
        assert_eq!(conv("hwmon:sht3x/humidity1").apply(52_000.0), 52.0);
        assert_eq!(conv("hwmon:ina219/power1").apply(2_500_000.0), 2.5);
        assert_eq!(conv("hwmon:pwmfan/fan1").apply(2_400.0), 2_400.0);
    }

    #[test]
    fn channel_types() {
        assert_eq!(iio_channel_type("voltage0-voltage1"), "voltage");
        assert_eq!(iio_channel_type("temp_ambient"), "temp");
        assert_eq!(iio_channel_type("humidityrelative"), "humidityrelative");
    }
}
