//! The linux-sensors adapter's keys (`adapters/linux-sensors/src/config.rs`) in whole
//! configurations: values parsed, and every message at its position.

use std::time::Duration;

use xmpp_iot_gateway_linux_sensors::config::{AdapterSettings, DeviceSettings, FieldSettings};
use xmpp_iot_gateway_linux_sensors::Source;

use xmpp_iot_gateway::config::testing::{errors, ok, warnings};

/// A component head and a `linux-sensors` adapter reading `root`; the lines after it start at
/// 9 (`[[device]]`), 10 `id`, 11 `adapter`, then `device` as given.
fn config(root: &str, device: &str) -> String {
    format!(
        "[xmpp]\ndomain = \"sensors.example.org\"\nsecret_file = \"/run/s\"\n\
         [[adapter]]\nid = \"pi\"\ntype = \"linux-sensors\"\nsysfs_root = \"{root}\"\n\n\
         [[device]]\nid = \"d\"\nadapter = \"pi\"\n{device}"
    )
}

#[test]
fn keys_parse_with_their_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("UTF-8");
    std::fs::create_dir_all(dir.path().join("bus/w1/devices/28-0000075a2a2b")).expect("mkdir");
    std::fs::write(
        dir.path()
            .join("bus/w1/devices/28-0000075a2a2b/temperature"),
        "1\n",
    )
    .expect("write");
    let loaded = ok(&config(
        root,
        "[[device.field]]\nname = \"flow\"\nsource = \"w1:28-0000075a2a2b\"\n\
         [[device.field]]\nname = \"p\"\ntype = \"integer\"\nsource = \"w1:28-0000075a2a2b\"\nscale = 10\noffset = -0.5\n",
    ));
    let warned: Vec<_> = warnings(&loaded)
        .into_iter()
        .filter(|w| !w.contains("secret"))
        .collect();
    assert_eq!(warned, Vec::<String>::new());
    let adapter = &loaded.config.adapters[0];
    assert_eq!(adapter.type_name, "linux-sensors");
    let adapter_settings = |a: &xmpp_iot_gateway::config::AdapterConfig| {
        a.settings
            .get::<AdapterSettings>()
            .expect("its settings")
            .clone()
    };
    assert_eq!(adapter_settings(adapter).sysfs_root, dir.path());
    let poll = |d: &xmpp_iot_gateway::config::DeviceConfig| {
        d.settings
            .get::<DeviceSettings>()
            .expect("device settings")
            .poll
    };
    let device = &loaded.config.devices[0];
    assert_eq!(poll(device), Duration::from_secs(10));
    let field = |i: usize| {
        device.fields[i]
            .settings
            .get::<FieldSettings>()
            .expect("field settings")
            .clone()
    };
    let w1: Source = "w1:28-0000075a2a2b".parse().expect("source");
    assert_eq!(
        field(0),
        FieldSettings {
            source: w1.clone(),
            scale: 1.0,
            offset: 0.0
        }
    );
    assert_eq!(
        field(1),
        FieldSettings {
            source: w1,
            scale: 10.0,
            offset: -0.5
        }
    );

    // The default root is /sys, and a device's own poll is kept.
    let loaded = ok(
        "[xmpp]\ndomain = \"sensors.example.org\"\nsecret_file = \"/run/s\"\n\
         [[adapter]]\nid = \"pi\"\ntype = \"linux-sensors\"\n\
         [[device]]\nid = \"d\"\nadapter = \"pi\"\npoll = \"1m\"\n\
         [[device.field]]\nname = \"cpu\"\nsource = \"thermal:cpu-thermal\"\n",
    );
    assert_eq!(
        adapter_settings(&loaded.config.adapters[0]).sysfs_root,
        std::path::Path::new("/sys")
    );
    assert_eq!(poll(&loaded.config.devices[0]), Duration::from_secs(60));

    // Faster than the adapter polls: said so, not refused.
    let loaded = ok(&config(
        "/nonexistent",
        "poll = \"10ms\"\n[[device.field]]\nname = \"t\"\nsource = \"thermal:x\"\n",
    ));
    assert!(
        warnings(&loaded)
            .contains(&"12:8: `poll` is raised to the shortest honoured, 100 ms".to_owned()),
        "{:?}",
        warnings(&loaded)
    );
}

#[test]
fn mistakes_are_reported_where_they_are() {
    let errs = |device: &str| errors(&config("/sys", device));
    assert_eq!(
        errs("[[device.field]]\nname = \"t\"\n"),
        [
            "12:1: field `t` of device `d` needs a `source`: `w1:<id>`, `iio:<device>/<channel>`, \
          `hwmon:<device>/<attribute>` or `thermal:<zone type>`"
        ]
    );
    assert_eq!(
        errs("[[device.field]]\nname = \"t\"\nsource = \"w1:28-075a2a2b\"\n"),
        [
            "14:10: `source`: `28-075a2a2b` is not a 1-Wire id: two hex digits of family, `-`, \
          twelve hex digits (e.g. 28-0000075a2a2b)"
        ]
    );
    assert_eq!(
        errs("[[device.field]]\nname = \"t\"\nsource = \"therml:cpu-thermal\"\n"),
        ["14:10: `source`: unknown source kind `therml` (known: w1, iio, hwmon, thermal); did you mean `thermal`?"]
    );
    assert_eq!(
        errs("[[device.field]]\nname = \"t\"\nsource = \"hwmon:cpu_thermal/temp1_input\"\n"),
        ["14:10: `source`: write the attribute without `_input`: `hwmon:cpu_thermal/temp1`"]
    );
    assert_eq!(
        errs("[[device.field]]\nname = \"t\"\nsource = 5\n"),
        ["14:10: `source` must be a string, not an integer"]
    );
    assert_eq!(
        errs("[[device.field]]\nname = \"t\"\nwritable = true\nsource = \"thermal:x\"\n"),
        ["14:12: field `t` of device `d` reads a sensor: it cannot be writable"]
    );
    assert_eq!(
        errs("[[device.field]]\nname = \"t\"\ntype = \"boolean\"\nsource = \"thermal:x\"\n"),
        ["14:8: field `t` of device `d` reads a sensor, which gives numbers: its type is numeric or integer"]
    );
    assert_eq!(
        errs("[[device.field]]\nname = \"t\"\nsource = \"thermal:x\"\nscale = 0\n"),
        ["15:9: `scale` must not be zero (every value would be the offset)"]
    );
    assert_eq!(
        errs("poll = \"0s\"\n[[device.field]]\nname = \"t\"\nsource = \"thermal:x\"\n"),
        ["12:8: `poll` must be longer than zero"]
    );
    assert_eq!(
        errs("[[device.field]]\nname = \"t\"\nsorce = \"thermal:x\"\n"),
        [
            "12:1: field `t` of device `d` needs a `source`: `w1:<id>`, `iio:<device>/<channel>`, \
             `hwmon:<device>/<attribute>` or `thermal:<zone type>`",
            "14:1: unknown key `sorce` in [[device.field]]; did you mean `source`?"
        ]
    );
    assert_eq!(
        errors(
            "[xmpp]\ndomain = \"sensors.example.org\"\nsecret_file = \"/run/s\"\n\
             [[adapter]]\nid = \"pi\"\ntype = \"linux-sensors\"\nsysfs_root = \"\"\n"
        ),
        ["7:14: `sysfs_root` must not be empty"]
    );
}

#[test]
fn a_source_missing_now_is_a_warning_with_what_to_enable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("UTF-8");
    let loaded = ok(&config(
        root,
        "[[device.field]]\nname = \"flow\"\nsource = \"w1:28-0000075a2a2b\"\n\
         [[device.field]]\nname = \"t\"\nsource = \"iio:bme280/temp\"\n",
    ));
    let warned: Vec<_> = warnings(&loaded)
        .into_iter()
        .filter(|w| !w.contains("secret"))
        .collect();
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert!(
        warned[0].starts_with("14:10: 1-Wire sensor 28-0000075a2a2b does not exist (yet): the 1-Wire bus is not enabled")
            && warned[0]
                .contains("add `dtoverlay=w1-gpio` (data on GPIO 4) to /boot/firmware/config.txt"),
        "{warned:?}"
    );
    assert!(
        warned[1].starts_with(
            "17:10: IIO sensor bme280/temp does not exist (yet): no IIO device is present"
        ) && warned[1].contains("`dtoverlay=i2c-sensor,bme280`"),
        "{warned:?}"
    );
}
