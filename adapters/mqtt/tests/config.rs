//! The MQTT adapter's keys (`adapters/mqtt/src/config/keys.rs`) in whole configurations:
//! values parsed, fleets expanded, and every message at its position.

use std::time::Duration;
use xmpp_iot_gateway::config::testing::{errors, ok, warnings};
use xmpp_iot_gateway::config::Loaded;
use xmpp_iot_gateway_mqtt::config::{BrokerConfig, DeviceConfig, FieldConfig};

/// `[xmpp]` and an mqtt adapter `bus`; tests' own lines start at line 8.
fn mqtt(rest: &str) -> String {
    format!(
        "[xmpp]\ndomain = \"sensors.example.org\"\nsecret = \"s\"\n[[adapter]]\nid = \"bus\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\n{rest}"
    )
}

fn broker(loaded: &Loaded) -> BrokerConfig {
    let settings = &loaded.config.adapters[0].settings;
    settings.get::<BrokerConfig>().expect("mqtt").clone()
}

fn dev(loaded: &Loaded, i: usize) -> DeviceConfig {
    let settings = &loaded.config.devices[i].settings;
    settings.get::<DeviceConfig>().expect("mqtt").clone()
}

fn fld(loaded: &Loaded, d: usize, f: usize) -> FieldConfig {
    let settings = &loaded.config.devices[d].fields[f].settings;
    settings.get::<FieldConfig>().expect("mqtt").clone()
}

#[test]
fn adapter_keys_and_defaults() {
    let loaded = ok(&mqtt(""));
    let b = broker(&loaded);
    assert_eq!(b.url.to_string(), "mqtt://127.0.0.1:1883");
    assert_eq!(b.client_id, None);
    assert_eq!(b.keep_alive, Duration::from_secs(30));
    assert_eq!(b.max_payload, 65_536);
    let loaded = ok(&mqtt(
        "client_id = \"gw-1\"\nusername = \"gw\"\npassword = \"pw\"\nkeep_alive = \"10s\"\nmax_payload = 1024\n",
    ));
    let b = broker(&loaded);
    assert_eq!(
        (
            b.client_id.as_deref(),
            b.username.as_deref(),
            b.password.as_ref().map(|p| p.expose()),
            b.keep_alive,
            b.max_payload
        ),
        (
            Some("gw-1"),
            Some("gw"),
            Some("pw"),
            Duration::from_secs(10),
            1024
        )
    );
    assert!(warnings(&loaded)
        .iter()
        .any(|w| w.contains("inline `password`")));

    let e = errors(
        "[xmpp]\ndomain = \"sensors.example.org\"\nsecret = \"s\"\n[[adapter]]\nid = \"bus\"\ntype = \"mqtt\"\n",
    );
    assert_eq!(e, ["4:1: an `mqtt` adapter needs `url`, e.g. `url = \"mqtt://127.0.0.1:1883\"` (or `mqtts://` for TLS)"]);
    let e = errors(&mqtt(
        "keep_alive = \"500ms\"\nmax_payload = 0\npassword = \"x\"\nclient_id = \"\"\n",
    ));
    assert_eq!(
        e,
        [
            "8:14: `keep_alive` must be between 1 s and 65535 s (about 18 h)",
            "9:15: `max_payload` is a size in bytes from 1 to 268435455",
            "10:1: a broker password needs a `username` too",
            "11:13: `client_id` must not be empty",
        ]
    );
    let e = errors(
        "[xmpp]\ndomain = \"sensors.example.org\"\nsecret = \"s\"\n[[adapter]]\nid = \"bus\"\ntype = \"mqtt\"\nurl = \"tcp://h\"\nmax_payload = \"64KiB\"\n",
    );
    assert_eq!(
        e,
        [
            "7:7: `url` `tcp://h`: the URL must start with `mqtt://` or `mqtts://` (TLS)",
            "8:15: `max_payload` must be an integer (a number of bytes)",
        ]
    );
    let loaded = ok(&mqtt("ca_file = \"/nonexistent/ca.pem\"\n"));
    let w = warnings(&loaded);
    assert!(
        w.iter()
            .any(|w| w.contains("`ca_file` has no effect with `mqtt://`")),
        "{w:?}"
    );
}

#[test]
fn devices_and_fields() {
    let loaded = ok(&mqtt(
        r#"[[device]]
id = "Boiler"
adapter = "bus"
topic = "plant/{id}/state"
availability_topic = "plant/{id}/status"
availability_online = "Online"
availability_offline = "Offline"
command_topic = "plant/{id}/set"
stale_after = "1m"
  [[device.field]]
  name = "temperature"
  json = "/temp"
  scale = 0.1
  offset = -5
  [[device.field]]
  name = "pump"
  type = "boolean"
  json = "/pump"
  payload_on = "ON"
  payload_off = "OFF"
  writable = true
  [[device.field]]
  name = "power"
  type = "boolean"
  topic = "stat/{id}/POWER"
  command_topic = "cmnd/{id}/POWER"
  command_template = "{value}"
  payload_on = "ON"
  payload_off = "OFF"
  writable = true
"#,
    ));
    let d = dev(&loaded, 0);
    assert_eq!(d.topic.as_ref().unwrap().filter, "plant/Boiler/state");
    let a = d.availability.as_ref().unwrap();
    assert_eq!(
        (
            a.topic.filter.as_str(),
            a.online.as_str(),
            a.offline.as_str()
        ),
        ("plant/Boiler/status", "Online", "Offline")
    );
    assert_eq!(d.command_topic.as_deref(), Some("plant/Boiler/set"));
    assert_eq!(d.stale_after, Some(Duration::from_secs(60)));
    let t = fld(&loaded, 0, 0);
    assert_eq!(
        (t.json.as_deref(), t.scale, t.offset),
        (Some("/temp"), 0.1, -5.0)
    );
    let p = fld(&loaded, 0, 2);
    assert_eq!(p.topic.as_ref().unwrap().filter, "stat/Boiler/POWER");
    assert_eq!(p.command_topic.as_deref(), Some("cmnd/Boiler/POWER"));
    assert_eq!(p.payload_on.as_deref(), Some("ON"));
}

#[test]
fn device_and_field_errors() {
    let e = errors(&mqtt(
        r#"[[device]]
id = "d"
adapter = "bus"
topic = "a/#/b"
command_topic = "a/+"
stale_after = "0s"
command_template = "{valeu}"
availability_online = "up"
  [[device.field]]
  name = "t"
  json = "temp"
  payload_on = "1"
  scale = 0
  [[device.field]]
  name = "s"
  type = "string"
  scale = 2
"#,
    ));
    assert_eq!(
        e,
        [
            "11:9: `topic` `a/#/b`: `#` must be the whole last level of a filter, as in `home/#`",
            "12:17: `command_topic` `a/+`: wildcards (`+`, `#`) are only allowed where the gateway subscribes, not where it publishes",
            "13:15: `stale_after` must be longer than zero",
            "14:20: `command_template`: unknown placeholder `{valeu}` (placeholders: `{value}`, `{json}`, `{field}`)",
            "18:10: `json` `temp`: a JSON pointer starts with `/` (RFC 6901), e.g. `/temperature` or `/sensors/0/value`; `\"\"` is the whole document",
            "19:3: `payload_on` applies to boolean fields, but field `t` of device `d` is numeric",
            "20:11: `scale` must not be zero (writes divide by it)",
            "24:3: `scale` and `offset` apply to numbers, but field `s` of device `d` is string",
        ]
    );
    let loaded = ok(&mqtt("[[device]]\nid = \"d\"\nadapter = \"bus\"\ntopic = \"t\"\navailability_online = \"up\"\n[[device.field]]\nname = \"t\"\n"));
    assert!(
        warnings(&loaded).contains(&"12:1: has no effect without `availability_topic`".to_owned())
    );
    let e = errors(&mqtt(
        "[[device]]\nid = \"d\"\nadapter = \"bus\"\n[[device.field]]\nname = \"t\"\n[[device.field]]\nname = \"w\"\nwritable = true\n",
    ));
    assert_eq!(
        e,
        [
            "11:1: field `t` of device `d` has no topic to read: give the device a `topic` or the field its own",
            "15:1: field `w` of device `d` is writable, but neither it nor the device has a `command_topic`",
        ]
    );
    let e = errors(&mqtt(
        "[[device]]\nid = \"d\"\nadapter = \"bus\"\ntopic = \"t\"\navailability_topic = \"a\"\navailability_offline = \"ONLINE\"\n",
    ));
    assert_eq!(e, ["13:24: `availability_online` and `availability_offline` must be different and not empty"]);
}

#[test]
fn fleets_expand_into_one_device_per_member() {
    let loaded = ok(&mqtt(
        r#"[[device]]
fleet = ["Kitchen", "hall"]
name = "Plug {id}"
adapter = "bus"
topic = "tele/{id}/SENSOR"
availability_topic = "tele/{id}/LWT"
command_topic = "cmnd/{id}/POWER"
  [[device.field]]
  name = "power"
  json = "/ENERGY/Power"
  [[device.field]]
  name = "relay"
  type = "boolean"
  topic = "stat/{id}/POWER"
  command_template = "{value}"
  writable = true
"#,
    ));
    let devices = &loaded.config.devices;
    assert_eq!(devices.len(), 2);
    assert_eq!(
        (devices[0].id.as_str(), devices[0].name.as_str()),
        ("kitchen", "Plug Kitchen")
    );
    assert_eq!(devices[1].jid, "hall@sensors.example.org");
    let k = dev(&loaded, 0);
    let t = k.topic.unwrap();
    assert_eq!(
        (t.filter.as_str(), t.subscribe.as_str()),
        ("tele/Kitchen/SENSOR", "tele/+/SENSOR")
    );
    assert_eq!(k.command_topic.as_deref(), Some("cmnd/Kitchen/POWER"));
    let relay = fld(&loaded, 1, 1).topic.unwrap();
    assert_eq!(
        (relay.filter.as_str(), relay.subscribe.as_str()),
        ("stat/hall/POWER", "stat/+/POWER")
    );

    let e = errors(&mqtt(
        "[[device]]\nfleet = [\"a/b\", \"ok\", \"OK\"]\nadapter = \"bus\"\ntopic = \"t/{id}\"\n[[device.field]]\nname = \"v\"\n",
    ));
    assert_eq!(
        e,
        ["9:10: fleet member `a/b` cannot stand for `{id}` in a topic: it contains `/`"]
    );
    let e = errors(&mqtt(
        "[[device]]\nfleet = [\"ok\", \"OK\", \"no way\"]\nadapter = \"bus\"\ntopic = \"t/{id}\"\n[[device.field]]\nname = \"v\"\n",
    ));
    assert_eq!(
        e,
        [
            "9:16: device id `OK` is the same as `ok` (line 9) once lower-cased, as the XMPP server folds it",
            "9:22: device id `no way` is not valid: a device id may only contain a-z, 0-9, '.', '_' and '-' (found ' ')",
        ]
    );
    let e = errors(&mqtt(
        "[[device]]\nid = \"x\"\nfleet = []\nadapter = \"bus\"\n",
    ));
    assert_eq!(
        e,
        ["9:1: a [[device]] with `fleet` takes its ids from that list: remove `id`"]
    );
    // `fleet` belongs to mqtt devices.
    let e = errors(
        "[xmpp]\ndomain = \"sensors.example.org\"\nsecret = \"s\"\n\
         [[adapter]]\nid = \"sim\"\ntype = \"simulated\"\n\
         [[device]]\nfleet = [\"a\"]\nadapter = \"sim\"\n",
    );
    assert!(
        e.iter()
            .any(|l| l.contains("`fleet` is a key of `mqtt` devices")),
        "{e:?}"
    );
}

#[test]
fn limits_of_writes() {
    let loaded = ok(&mqtt(
        r#"[[device]]
id = "t"
adapter = "bus"
topic = "t/state"
command_topic = "t/set"
  [[device.field]]
  name = "setpoint"
  json = "/sp"
  writable = true
  min = 5
  max = 30.5
  step = 0.5
  [[device.field]]
  name = "mode"
  type = "string"
  json = "/mode"
  writable = true
  options = ["eco", "comfort"]
  [[device.field]]
  name = "floor"
  json = "/floor"
  writable = true
  min = 0
"#,
    ));
    use xmpp_iot_gateway_mqtt::limits::Limits;
    assert_eq!(
        fld(&loaded, 0, 0).limits,
        Limits::Range {
            min: 5.0,
            max: 30.5,
            step: 0.5
        }
    );
    assert_eq!(
        fld(&loaded, 0, 1).limits,
        Limits::Options(vec!["eco".into(), "comfort".into()])
    );
    assert_eq!(
        fld(&loaded, 0, 2).limits,
        Limits::Range {
            min: 0.0,
            max: f64::INFINITY,
            step: 0.0
        }
    );

    let e = errors(&mqtt(
        r#"[[device]]
id = "t"
adapter = "bus"
topic = "t/state"
command_topic = "t/set"
  [[device.field]]
  name = "a"
  writable = true
  min = 10
  max = 5
  step = 0
  [[device.field]]
  name = "b"
  type = "string"
  writable = true
  min = 1
  options = []
  [[device.field]]
  name = "c"
  writable = true
  options = ["x"]
"#,
    ));
    assert_eq!(
        e,
        [
            "17:9: `max` 5 is below `min` 10",
            "18:10: `step` must be more than zero",
            "23:3: `min` limits numbers, but field `b` of device `t` is string (a text's choices are `options`)",
            "24:13: `options` must list at least one choice",
            "28:3: `options` are the choices of a text, but field `c` of device `t` is numeric (a number's range is `min`/`max`)",
        ]
    );

    let loaded = ok(&mqtt(
        "[[device]]\nid = \"t\"\nadapter = \"bus\"\ntopic = \"t/state\"\n[[device.field]]\nname = \"a\"\nmax = 3\n",
    ));
    assert!(
        warnings(&loaded)
            .contains(&"14:1: `max` has no effect: field `a` is not writable".to_owned()),
        "{:?}",
        warnings(&loaded)
    );
}
