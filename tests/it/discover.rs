//! `xmpp-iot-gateway discover` against a real Mosquitto holding the retained announcements of
//! `tests/fixtures/discovery` (Tasmota, ESPHome, Shelly, a broken config, zigbee2mqtt): it
//! prints the devices discovery would create as `[[device]]` blocks, those blocks load with
//! `check` when appended to the configuration, and once pinned a device is left out of what is
//! discovered.

use crate::support;

use std::path::Path;

use support::gateway_toml::{mqtt_adapter, xmpp, Section};
use support::{Gateway, GatewayToml, Mosquitto};

/// The retained messages of the fixtures: (topic, payload).
/// The fixtures' retained messages as (topic, payload), from `retained.txt` (also used by the
/// end-to-end discovery tests).
pub(crate) fn retained() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/discovery");
    let list = std::fs::read_to_string(dir.join("retained.txt")).expect("read retained.txt");
    list.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (topic, what) = l.rsplit_once(' ').expect("`<topic> <file>`");
            let payload = match what.strip_prefix('=') {
                Some(text) => text.to_owned(),
                None => std::fs::read_to_string(dir.join(what))
                    .expect("read fixture")
                    .trim_end_matches('\n')
                    .to_owned(),
            };
            (topic.to_owned(), payload)
        })
        .collect()
}

/// The MQTT adapter `broker` on `url` with both kinds of discovery on.
fn config(url: &str) -> String {
    config_with(mqtt_adapter("broker", url).list("discovery", &["homeassistant", "zigbee2mqtt"]))
}

/// A component `[xmpp]` (never connected: `discover` and `check` do not go upstream) and
/// `adapter`.
fn config_with(adapter: Section) -> String {
    GatewayToml::upstream(xmpp(
        Section::new()
            .set("domain", "sensors.localhost")
            .set("secret", "component-secret"),
    ))
    .adapter(adapter)
    .build()
}

/// The ids of the `[[device]]` blocks in `text`.
fn ids(text: &str) -> Vec<String> {
    let mut ids: Vec<String> = text
        .split("[[device]]")
        .skip(1)
        .filter_map(|block| {
            let line = block.lines().find(|l| l.starts_with("id = "))?;
            Some(
                line.trim_start_matches("id = ")
                    .trim_matches('"')
                    .to_owned(),
            )
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn discover_prints_pastable_devices() {
    let mosquitto = Mosquitto::start().await;
    for (topic, payload) in retained() {
        mosquitto.publish(&topic, &payload, true).await;
    }
    let config = config(&mosquitto.url());
    let out = Gateway::cli(Some(&config), &["discover", "--wait", "2s"]).await;
    assert!(out.success(), "discover failed: {}", out.stderr);
    let text = out.stdout;
    assert_eq!(
        ids(&text),
        [
            "desk-plug",
            "garage-door",
            "hall-shelly-plus-1pm",
            "hallway-bulb",
            "kitchen",
            "living-room-sensor",
            "study"
        ],
        "{text}"
    );
    for want in [
        "# adapter `broker`",
        "7 device(s) discovered",
        "1 announcement(s) refused",
        r#"name = "Kitchen""#,
        r#"availability_topic = "tele/tasmota_A1B2C3/LWT""#,
        r#"availability_online = "Online""#,
        r#"topic = "tele/tasmota_A1B2C3/SENSOR""#,
        r#"value_template = "{{value_json['AM2301'].Temperature}}""#,
        r#"unit = "°C""#,
        r#"command_topic = "shellyplus1pm-a8032ab12345/rpc""#,
        r#"topic = "zigbee2mqtt/Living Room Sensor""#,
        r#"json = "/temperature""#,
        r#"command_topic = "zigbee2mqtt/Hallway Bulb/set""#,
        r#"command_template = "{\"state\":\"ON\",\"brightness\":{json}}""#,
        "min = 0\nmax = 254",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    assert!(
        out.stderr.contains("Bad discovery config"),
        "the broken config is named: {}",
        out.stderr
    );

    // Pasted into the configuration, the blocks load.
    let pinned = format!("{config}\n{text}");
    let check = Gateway::cli(Some(&pinned), &["check"]).await;
    assert!(
        check.success(),
        "check of the pasted blocks failed:\n{}\n{pinned}",
        check.stderr
    );
    for id in ["kitchen", "hallway-bulb", "hall-shelly-plus-1pm"] {
        assert!(check.stdout.contains(id), "{id} not in:\n{}", check.stdout);
    }

    // Pinned devices are configured: discovery leaves them out.
    let again = Gateway::cli(Some(&pinned), &["discover", "--wait", "1s"]).await;
    assert!(again.success(), "{}", again.stderr);
    assert!(ids(&again.stdout).is_empty(), "{}", again.stdout);
    assert!(again.stdout.contains("7 left out"), "{}", again.stdout);
}

#[tokio::test]
async fn discover_says_when_nothing_can_discover_or_the_broker_is_away() {
    let without = config_with(mqtt_adapter("broker", "mqtt://127.0.0.1:1883"));
    let out = Gateway::cli(Some(&without), &["discover"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("no adapter has discovery on"),
        "{}",
        out.stderr
    );

    let port = support::free_port();
    let out = Gateway::cli(
        Some(&config(&format!("mqtt://127.0.0.1:{port}"))),
        &["discover", "--wait", "1s"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("adapter `broker`: MQTT broker 127.0.0.1:"),
        "{}",
        out.stderr
    );
    let out = Gateway::cli(Some(&without), &["discover", "--wait", "0s"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
}

#[tokio::test]
async fn check_reports_bad_discovery_keys_where_they_are() {
    // Raw on purpose: the errors are checked at their line and column in this very text.
    let bad = r#"
[xmpp]
domain = "sensors.localhost"
secret = "component-secret"

[[adapter]]
id = "broker"
type = "mqtt"
url = "mqtt://127.0.0.1:1883"
discovery = ["homeasistant"]
discover_include = ["[kitchen"]
discover_max_devices = -1
discovry_prefix = "ha"

[[device]]
id = "plant"
adapter = "broker"
topic = "plant/state"

  [[device.field]]
  name = "moisture"
  value_template = "{{ value_json.m | round(1 }}"
"#;
    let out = Gateway::cli(Some(bad), &["check"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    // Each at its place: `PATH:LINE:COL: message`, the column at the value at fault.
    for (col, want) in [
        (
            14,
            "unknown discovery source `homeasistant`; did you mean `homeassistant`?",
        ),
        (21, "`discover_include` pattern `[kitchen`"),
        (24, "`discover_max_devices` is a number of devices"),
        (
            1,
            "unknown key `discovry_prefix` in [[adapter]]; did you mean `discovery_prefix`?",
        ),
        (20, "`value_template` does not compile"),
    ] {
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains(want))
            .unwrap_or_else(|| panic!("{want:?} missing from:\n{}", out.stderr));
        let (place, _) = line.split_once(": ").expect("PATH:LINE:COL: message");
        let mut parts = place.rsplitn(3, ':');
        assert_eq!(parts.next(), Some(col.to_string().as_str()), "{line}");
        assert!(
            parts.next().is_some_and(|l| l.parse::<u32>().is_ok()),
            "{line}"
        );
        assert!(
            parts.next().is_some_and(|p| p.ends_with("gateway.toml")),
            "{line}"
        );
    }
}
