//! The linux-sensors adapter end to end: the gateway binary reads a directory tree laid out as
//! the kernel lays out `/sys` (1-Wire sensors with `temperature` and `w1_slave`, an IIO BME280
//! with processed and raw channels, a hwmon chip, a thermal zone), which the test changes while
//! the gateway runs; an XMPP user on a private Prosody sees what arrives. Faults are written the
//! way the kernel shows them (`crc=.. NO`, the DS18B20's 85 °C power-on value, files that vanish,
//! a directory or a FIFO where a file should be); the metrics endpoint shows that each was
//! counted, and the readouts that none published a value.

use std::net::SocketAddr;
use std::path::Path;

use crate::support::client::show;
use crate::support::gateway_toml::{self, adapter, device, Section};
use crate::support::metrics::{http_get, sample};
use crate::support::readout::{field, momentary};
use crate::support::{free_port, Gateway, GatewayToml, Prosody, ProsodyOpts, TestClient, TIMEOUT};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::presence::Type as PresenceType;

const FLOW: &str = "bus/w1/devices/28-0000075a2a2b";
const RETURN: &str = "bus/w1/devices/28-00000a1b2c3d";
const BME280: &str = "bus/iio/devices/iio:device0";
const HWMON: &str = "class/hwmon/hwmon0";
const ZONE: &str = "class/thermal/thermal_zone0";

/// Writes `contents` at `root/rel`, making the directories on the way.
fn put(root: &Path, rel: &str, contents: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, contents).expect("write sysfs file");
}

/// A `w1_slave` file with the CRC verdict and the temperature in millidegrees.
fn w1_slave(crc_ok: bool, milli: i64) -> String {
    let verdict = if crc_ok { "YES" } else { "NO" };
    format!("72 01 4b 46 7f ff 0e 10 57 : crc=57 {verdict}\n72 01 4b 46 7f ff 0e 10 57 t={milli}\n")
}

/// The kernel's layout with every sensor present and healthy.
fn sysfs(root: &Path) {
    put(root, &format!("{FLOW}/temperature"), "61250\n");
    put(root, &format!("{FLOW}/w1_slave"), &w1_slave(true, 61250));
    // An older kernel's sensor: `w1_slave` only.
    put(root, &format!("{RETURN}/w1_slave"), &w1_slave(true, 42125));
    put(root, "bus/w1/devices/w1_bus_master1/w1_master_slaves", "");
    put(root, &format!("{BME280}/name"), "bme280\n");
    put(root, &format!("{BME280}/in_temp_input"), "21340\n");
    put(
        root,
        &format!("{BME280}/in_humidityrelative_input"),
        "45678\n",
    );
    // Pressure as a raw count: (raw + offset) × scale kPa.
    put(root, &format!("{BME280}/in_pressure_raw"), "101000\n");
    put(root, &format!("{BME280}/in_pressure_offset"), "325\n");
    put(root, &format!("{BME280}/in_pressure_scale"), "0.001\n");
    put(root, &format!("{HWMON}/name"), "cpu_thermal\n");
    put(root, &format!("{HWMON}/temp1_input"), "47000\n");
    put(root, &format!("{ZONE}/type"), "cpu-thermal\n");
    put(root, &format!("{ZONE}/temp"), "48312\n");
}

/// The gateway's configuration: `xmpp` (the `[xmpp]` section), the adapter reading `root`, and
/// the devices `boiler` (two 1-Wire sensors), `room` (a BME280), `board` (the CPU's thermal
/// zone) and `soc` (a hwmon attribute), all polled every 200 ms.
fn config(xmpp: &str, root: &Path, metrics: SocketAddr) -> String {
    config_with(xmpp, root, metrics, "thermal:cpu-thermal", 10.0)
}

/// [`config`] with `board`'s CPU temperature read from `board_cpu` and `room`'s pressure scaled
/// by `pressure_scale`: what a reload changes.
fn config_with(
    xmpp: &str,
    root: &Path,
    metrics: SocketAddr,
    board_cpu: &str,
    pressure_scale: f64,
) -> String {
    let polled = |id: &str| device(id, "pi").set("poll", "200ms");
    GatewayToml::new("sensors test", xmpp)
        .access("read", &["bob@localhost"])
        .publish_every_reading()
        .metrics(metrics)
        .adapter(adapter("pi", "linux-sensors").set("sysfs_root", root.display().to_string()))
        .device(
            polled("boiler")
                .field(sensor("flow", "°C", "w1:28-0000075a2a2b"))
                .field(sensor("return", "°C", "w1:28-00000a1b2c3d")),
        )
        .device(
            polled("room")
                .field(sensor("temperature", "°C", "iio:bme280/temp"))
                .field(sensor("humidity", "%", "iio:bme280/humidityrelative"))
                .field(
                    sensor("pressure", "hPa", "iio:bme280/pressure").set("scale", pressure_scale),
                ),
        )
        .device(polled("board").field(sensor("cpu", "°C", board_cpu)))
        .device(polled("soc").field(sensor("temp", "°C", "hwmon:cpu_thermal/temp1")))
        .build()
}

/// A `[[device.field]]` named `name` in `unit`, read from `source`.
fn sensor(name: &str, unit: &str, source: &str) -> Section {
    gateway_toml::field(name)
        .set("unit", unit)
        .set("source", source)
}

fn jid(device: &str, domain: &str) -> Jid {
    Jid::new(&format!("{device}@{domain}")).expect("device JID")
}

/// `device`'s field `name` in a readout.
async fn value(client: &mut TestClient, device: &Jid, seqnr: u32, name: &str) -> String {
    field(&momentary(client, device, seqnr).await, name)
        .value
        .clone()
}

/// Waits until the adapter has counted at least `n` faults of kind `fault`.
async fn wait_faults(metrics: SocketAddr, fault: &str, n: f64) {
    let key = format!("xmpp_iot_gateway_sensor_faults_total{{adapter=\"pi\",fault=\"{fault}\"}}");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (_, text) = http_get(metrics, "/metrics").await;
        if sample(&text, &key).is_some_and(|v| v >= n) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key} did not reach {n}:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

struct Rig {
    prosody: Prosody,
    gateway: Gateway,
    bob: TestClient,
    domain: String,
    metrics: SocketAddr,
    sys: tempfile::TempDir,
}

async fn rig() -> Rig {
    let prosody = Prosody::start(ProsodyOpts::new().random_component()).await;
    prosody.register("bob", "pw").await;
    let domain = prosody.component_domain().to_owned();
    let sys = tempfile::tempdir().expect("sysfs dir");
    sysfs(sys.path());
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut gateway = Gateway::spawn(&config(
        &prosody.component_toml(&domain),
        sys.path(),
        metrics,
    ));
    assert!(
        gateway.wait_upstream(TIMEOUT * 2).await,
        "gateway connected upstream"
    );
    let mut bob = TestClient::connect(&prosody, "bob", "pw").await;
    for d in ["boiler", "room", "board", "soc"] {
        bob.subscribe_approved(&jid(d, &domain)).await;
    }
    Rig {
        prosody,
        gateway,
        bob,
        domain,
        metrics,
        sys,
    }
}

#[tokio::test]
async fn a_readout_of_the_room_gives_temperature_humidity_and_pressure_in_their_units() {
    let mut r = rig().await;
    let room = jid("room", &r.domain);
    r.bob.wait_status(&room, PresenceType::None, "").await;
    let fields = momentary(&mut r.bob, &room, 1).await;
    let find = |name: &str| {
        let f = field(&fields, name);
        (f.kind.as_str(), f.value.as_str(), f.unit.as_str())
    };
    // Millidegrees and milli-percent from the kernel; (101000 + 325) × 0.001 kPa, × 10 for hPa.
    assert_eq!(find("temperature"), ("numeric", "21.34", "°C"));
    assert_eq!(find("humidity"), ("numeric", "45.678", "%"));
    assert_eq!(find("pressure"), ("numeric", "1013.25", "hPa"));
    let boiler = jid("boiler", &r.domain);
    let fields = momentary(&mut r.bob, &boiler, 2).await;
    assert_eq!(
        (
            field(&fields, "flow").value.as_str(),
            field(&fields, "return").value.as_str()
        ),
        ("61.25", "42.125")
    );
    assert_eq!(
        value(&mut r.bob, &jid("board", &r.domain), 3, "cpu").await,
        "48.312"
    );
    assert_eq!(
        value(&mut r.bob, &jid("soc", &r.domain), 4, "temp").await,
        "47"
    );

    // The files change while the gateway runs: the next poll reports it.
    put(r.sys.path(), &format!("{BME280}/in_temp_input"), "-5250\n");
    r.bob.wait_status(&room, PresenceType::None, "-5.25").await;
    assert!(r.gateway.is_running());
    r.gateway.terminate().await;
}

#[tokio::test]
async fn faults_publish_nothing_and_sensors_that_vanish_come_back_by_themselves() {
    let mut r = rig().await;
    let root = r.sys.path().to_owned();
    let boiler = jid("boiler", &r.domain);
    let room = jid("room", &r.domain);
    r.bob.wait_status(&boiler, PresenceType::None, "").await;

    // The DS18B20 lost power mid-conversion (85 °C), and a CRC failure on the old-style sensor:
    // neither value is published. A fault that lasts three polls makes the device unavailable
    // with it (the first field's, as `flow` started failing first).
    put(&root, &format!("{FLOW}/temperature"), "85000\n");
    put(
        &root,
        &format!("{RETURN}/w1_slave"),
        &w1_slave(false, 99999),
    );
    let status = r
        .bob
        .wait_status(&boiler, PresenceType::Unavailable, "1-Wire")
        .await;
    assert_eq!(
        status,
        "1-Wire sensor 28-0000075a2a2b: 85 °C power-on value: the sensor lost power during the conversion"
    );
    wait_faults(r.metrics, "crc", 3.0).await;
    wait_faults(r.metrics, "power_on", 3.0).await;
    let seen: Vec<String> = r.bob.drain().iter().map(show).collect();
    assert!(
        seen.iter()
            .all(|s| !s.contains("flow 85 ") && !s.contains("99.999")),
        "a faulty value was published: {seen:#?}"
    );
    // Good again: available with the new values.
    put(&root, &format!("{FLOW}/temperature"), "60125\n");
    put(&root, &format!("{RETURN}/w1_slave"), &w1_slave(true, 40500));
    r.bob
        .wait_status(
            &boiler,
            PresenceType::None,
            "flow 60.125 °C, return 40.5 °C",
        )
        .await;
    assert_eq!(value(&mut r.bob, &boiler, 1, "return").await, "40.5");

    // Unplugged: unavailable with the sensor named, then back when the sensor is.
    r.bob.drain();
    std::fs::remove_dir_all(root.join(FLOW)).expect("unplug");
    let status = r
        .bob
        .wait_status(&boiler, PresenceType::Unavailable, "not present")
        .await;
    assert!(
        status.contains("1-Wire sensor 28-0000075a2a2b not present"),
        "{status}"
    );
    put(&root, &format!("{FLOW}/temperature"), "59000\n");
    r.bob.wait_status(&boiler, PresenceType::None, "59").await;

    // The IIO module reloaded under another number: found again by its name.
    r.bob.drain();
    std::fs::rename(root.join(BME280), root.join("bus/iio/devices/iio:device3")).expect("renumber");
    put(
        &root,
        "bus/iio/devices/iio:device3/in_temp_input",
        "19500\n",
    );
    r.bob.wait_status(&room, PresenceType::None, "19.5").await;

    // A value that does not parse is not published either.
    put(
        &root,
        "bus/iio/devices/iio:device3/in_humidityrelative_input",
        "ERR\n",
    );
    let status = r
        .bob
        .wait_status(&room, PresenceType::Unavailable, "parse")
        .await;
    assert_eq!(
        status,
        "IIO sensor bme280/humidityrelative: value does not parse: \"ERR\\n\""
    );
    wait_faults(r.metrics, "unparsable", 3.0).await;
    put(
        &root,
        "bus/iio/devices/iio:device3/in_humidityrelative_input",
        "50000\n",
    );
    r.bob
        .wait_status(&room, PresenceType::None, "humidity 50 %")
        .await;
    assert!(r.gateway.is_running());
    r.gateway.terminate().await;
}

#[tokio::test]
async fn a_directory_or_a_fifo_in_place_of_a_file_is_a_fault_and_the_others_keep_reporting() {
    let mut r = rig().await;
    let root = r.sys.path().to_owned();
    let board = jid("board", &r.domain);
    let soc = jid("soc", &r.domain);
    let room = jid("room", &r.domain);
    r.bob.wait_status(&board, PresenceType::None, "").await;
    r.bob.wait_status(&soc, PresenceType::None, "").await;

    // A FIFO that nobody writes where the zone's `temp` was: no read may hang on it.
    let temp = root.join(ZONE).join("temp");
    std::fs::remove_file(&temp).expect("rm temp");
    let path = std::ffi::CString::new(temp.to_str().expect("UTF-8 path")).expect("path");
    // SAFETY: a valid NUL-terminated path; mkfifo touches nothing else.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    // A directory where the hwmon attribute was.
    let input = root.join(HWMON).join("temp1_input");
    std::fs::remove_file(&input).expect("rm temp1_input");
    std::fs::create_dir(&input).expect("mkdir temp1_input");

    // Three bad polls in a row make each device unavailable with the fault.
    let status = r
        .bob
        .wait_status(&board, PresenceType::Unavailable, "not a regular file")
        .await;
    assert!(status.contains("thermal zone cpu-thermal"), "{status}");
    let status = r
        .bob
        .wait_status(&soc, PresenceType::Unavailable, "not a regular file")
        .await;
    assert!(
        status.contains("hwmon sensor cpu_thermal/temp1"),
        "{status}"
    );
    wait_faults(r.metrics, "not_a_file", 6.0).await;

    // Meanwhile the other devices keep reporting.
    put(&root, &format!("{BME280}/in_temp_input"), "23000\n");
    r.bob.wait_status(&room, PresenceType::None, "23").await;

    // The files are back: so are the devices.
    std::fs::remove_file(&temp).expect("rm fifo");
    put(&root, &format!("{ZONE}/temp"), "50000\n");
    std::fs::remove_dir(&input).expect("rmdir");
    put(&root, &format!("{HWMON}/temp1_input"), "49000\n");
    r.bob.wait_status(&board, PresenceType::None, "50").await;
    r.bob.wait_status(&soc, PresenceType::None, "49").await;
    assert!(r.gateway.is_running());
    r.gateway.terminate().await;
}

#[tokio::test]
async fn check_lists_each_fields_file_and_warns_about_what_is_missing() {
    let sys = tempfile::tempdir().expect("sysfs dir");
    let root = sys.path();
    put(root, &format!("{BME280}/name"), "bme280\n");
    put(root, &format!("{BME280}/in_temp_input"), "21340\n");
    put(root, &format!("{ZONE}/type"), "cpu-thermal\n");
    put(root, &format!("{ZONE}/temp"), "48312\n");
    let xmpp = gateway_toml::xmpp(
        Section::new()
            .set("mode", "component")
            .set("domain", "sensors.localhost")
            .set("secret", "s3cret"),
    );
    let metrics: SocketAddr = "127.0.0.1:9108".parse().expect("addr");
    let config = config(&xmpp, root, metrics);
    let out = Gateway::cli(Some(&config), &["check"]).await;
    let all = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.status.code(), Some(0), "{all}");
    // One line per field, `device.field -> file`, the arrows aligned.
    let line_of = |field: &str| {
        out.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{field} ")))
            .unwrap_or_else(|| panic!("no line for {field} in:\n{all}"))
            .to_owned()
    };
    for (field, file) in [
        ("room.temperature", format!("{BME280}/in_temp_input")),
        ("board.cpu", format!("{ZONE}/temp")),
    ] {
        let line = line_of(field);
        assert!(
            line.ends_with(&format!("-> {}", root.join(&file).display())),
            "{line}"
        );
    }
    assert_eq!(
        line_of("board.cpu").find("->"),
        line_of("room.temperature").find("->")
    );
    assert!(line_of("boiler.flow").ends_with("-> w1:28-0000075a2a2b (not present now)"));
    // Missing now: warnings with what to enable, not errors.
    assert!(
        all.contains("1-Wire sensor 28-0000075a2a2b does not exist (yet)"),
        "{all}"
    );
    assert!(all.contains("dtoverlay=w1-gpio"), "{all}");
    assert!(all.contains("/boot/firmware/config.txt"), "{all}");
    assert!(
        all.contains("bme280 has no channel humidityrelative"),
        "{all}"
    );
    assert!(!all.contains("error"), "{all}");
}

#[tokio::test]
async fn a_reload_with_another_source_or_scale_takes_effect_without_a_restart() {
    let mut r = rig().await;
    let root = r.sys.path().to_owned();
    let room = jid("room", &r.domain);
    let board = jid("board", &r.domain);
    r.bob
        .wait_status(&room, PresenceType::None, "pressure 1013.25 hPa")
        .await;
    r.bob
        .wait_status(&board, PresenceType::None, "cpu 48.312 °C")
        .await;
    // The CPU's temperature from its hwmon attribute instead of the thermal zone, and the
    // pressure in kPa: the adapter's settings changed, so it restarts with them.
    let changed = config_with(
        &r.prosody.component_toml(&r.domain),
        &root,
        r.metrics,
        "hwmon:cpu_thermal/temp1",
        1.0,
    );
    assert_ne!(changed, r.gateway.config_text());
    let pid = r.gateway.pid();
    r.gateway.reload(&changed);
    r.bob
        .wait_status(&board, PresenceType::None, "cpu 47 °C")
        .await;
    r.bob
        .wait_status(&room, PresenceType::None, "pressure 101.325 hPa")
        .await;
    // And it reads the files as they change after the reload.
    put(&root, &format!("{HWMON}/temp1_input"), "46500\n");
    r.bob
        .wait_status(&board, PresenceType::None, "cpu 46.5 °C")
        .await;
    assert_eq!(r.gateway.pid(), pid, "the same process");
    r.gateway.terminate().await;
}
