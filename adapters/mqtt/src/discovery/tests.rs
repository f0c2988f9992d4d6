//! The discovery state machine against the fixtures in `tests/fixtures/discovery`.

use super::*;

/// The retained messages of the fixtures: (topic, payload).
fn retained() -> Vec<(String, Vec<u8>)> {
    let dir = format!(
        "{}/../../tests/fixtures/discovery",
        env!("CARGO_MANIFEST_DIR")
    );
    let list = std::fs::read_to_string(format!("{dir}/retained.txt")).unwrap();
    list.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (topic, what) = l.rsplit_once(' ').unwrap();
            let payload = match what.strip_prefix('=') {
                Some(text) => text.as_bytes().to_vec(),
                None => {
                    let mut p = std::fs::read(format!("{dir}/{what}")).unwrap();
                    while p.last() == Some(&b'\n') {
                        p.pop();
                    }
                    p
                }
            };
            (topic.to_owned(), payload)
        })
        .collect()
}

fn discovery(cfg: DiscoveryConfig, configured: &[&str]) -> Discovery {
    Discovery::new(
        "broker".into(),
        cfg,
        configured.iter().map(|s| (*s).to_owned()),
        Arc::default(),
    )
}

fn both() -> DiscoveryConfig {
    DiscoveryConfig {
        homeassistant: true,
        zigbee2mqtt: true,
        ..DiscoveryConfig::default()
    }
}

/// Events as short lines.
fn lines(out: &Output) -> Vec<String> {
    out.events
        .iter()
        .flat_map(|e| match e {
            AdapterEvent::DeviceFound(d) => vec![format!(
                "found {} [{}]",
                d.id,
                d.fields
                    .iter()
                    .map(|f| format!("{}{}", f.name, if f.writable { "*" } else { "" }))
                    .collect::<Vec<_>>()
                    .join(" ")
            )],
            AdapterEvent::DeviceGone { device } => vec![format!("gone {device}")],
            AdapterEvent::Online { device } => vec![format!("{device} online")],
            AdapterEvent::Offline { device, reason } => vec![format!("{device} offline: {reason}")],
            AdapterEvent::Readings(rs) => rs
                .iter()
                .map(|r| format!("{} {}={}", r.device, r.field, r.value))
                .collect(),
        })
        .collect()
}

/// Feeds every retained message, then lets the burst settle.
fn load(d: &mut Discovery, t0: Instant) -> Output {
    let mut out = Output::default();
    for (topic, payload) in retained() {
        d.on_message(&topic, &payload, 65536, t0, &mut out);
    }
    d.on_tick(t0 + QUIET, &mut out);
    out
}

fn id(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_fixtures_make_the_devices_they_describe() {
    let mut d = discovery(both(), &[]);
    let t0 = Instant::now();
    let mut out = Output::default();
    d.set_link(LinkView::Up, &mut out);
    let out = load(&mut d, t0);
    let found: Vec<String> = lines(&out)
        .into_iter()
        .filter(|l| l.starts_with("found"))
        .collect();
    assert_eq!(
        found,
        [
            "found kitchen [humidity temperature]",
            "found garage-door [relay*]",
            "found study [desk_lamp* desk_lamp_brightness*]",
            "found hall-shelly-plus-1pm [power relay*]",
            "found living-room-sensor [battery temperature humidity pressure linkquality]",
            "found hallway-bulb [state* brightness* effect* power_on_behavior* linkquality]",
            "found desk-plug [state* power energy voltage child_lock* linkquality]",
        ]
    );
    assert_eq!(
        MqttStats::get(&d.stats.discovery_bad_configs),
        1,
        "the broken config"
    );
    assert_eq!(MqttStats::get(&d.stats.discovery_devices), 7);
    // Their topics are subscribed once.
    assert!(out
        .subscribe
        .contains(&"tele/tasmota_A1B2C3/SENSOR".to_owned()));
    assert!(out
        .subscribe
        .contains(&"zigbee2mqtt/Desk Plug/availability".to_owned()));
    assert_eq!(
        out.subscribe
            .iter()
            .filter(|t| *t == "shellyplus1pm-a8032ab12345/status/switch:0")
            .count(),
        1
    );
    // Nothing has said it is available yet.
    assert!(
        lines(&out).contains(&"kitchen offline: no word yet on tele/tasmota_A1B2C3/LWT".to_owned())
    );

    // The retained states arrive once subscribed: readings through the templates.
    let out = load(&mut d, t0 + Duration::from_secs(1));
    let got = lines(&out);
    for want in [
        "kitchen temperature=21.6",
        "kitchen humidity=49",
        "kitchen online",
        "garage-door relay=true",
        "study desk_lamp=true",
        "study desk_lamp_brightness=128",
        "hall-shelly-plus-1pm power=23.5",
        "hall-shelly-plus-1pm relay=true",
        "hall-shelly-plus-1pm online",
        "living-room-sensor temperature=21.35",
        "hallway-bulb brightness=200",
        "hallway-bulb state=true",
        "desk-plug child_lock=false",
        "desk-plug online",
    ] {
        assert!(
            got.contains(&want.to_owned()),
            "{want} missing from {got:#?}"
        );
    }
    assert!(
        !got.iter().any(|l| l.starts_with("found")),
        "the same announcements again change nothing: {got:?}"
    );
    let r = d.read(&id("kitchen"), &["temperature".into()]).unwrap();
    assert_eq!(r[0].value, Value::Float(21.6));
}

#[tokio::test(start_paused = true)]
async fn writes_publish_what_the_templates_and_exposes_make() {
    let mut d = discovery(both(), &[]);
    let t0 = Instant::now();
    let mut out = Output::default();
    d.set_link(LinkView::Up, &mut out);
    load(&mut d, t0);
    load(&mut d, t0 + Duration::from_secs(1));
    let write = |d: &mut Discovery, dev: &str, field: &str, v: Value| {
        d.write(&id(dev), vec![(field.into(), v)]).map(|(c, _)| {
            c.into_iter()
                .map(|c| format!("{} {}", c.topic, String::from_utf8(c.payload).unwrap()))
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(
        write(&mut d, "hall-shelly-plus-1pm", "relay", Value::Bool(false)).unwrap(),
        [
            r#"shellyplus1pm-a8032ab12345/rpc {"id":1,"src":"shellyplus1pm-a8032ab12345","method":"Switch.Set","params":{"id":0,"on":false}}"#
        ]
    );
    assert_eq!(
        write(&mut d, "garage-door", "relay", Value::Text("on".into())).unwrap(),
        ["garage-door/switch/relay/command ON"]
    );
    assert_eq!(
        write(&mut d, "study", "desk_lamp_brightness", Value::Int(128)).unwrap(),
        [r#"study/light/desk_lamp/command {"state":"ON","brightness":128}"#]
    );
    assert_eq!(
        write(&mut d, "hallway-bulb", "state", Value::Bool(false)).unwrap(),
        [r#"zigbee2mqtt/Hallway Bulb/set {"state":"OFF"}"#]
    );
    assert_eq!(
        write(&mut d, "desk-plug", "child_lock", Value::Bool(true)).unwrap(),
        [r#"zigbee2mqtt/Desk Plug/set {"child_lock":"LOCK"}"#]
    );
    assert!(matches!(
        write(&mut d, "hallway-bulb", "brightness", Value::Int(300)),
        Err(RequestError::OutOfRange { .. })
    ));
    assert!(matches!(
        write(
            &mut d,
            "hallway-bulb",
            "effect",
            Value::Text("disco".into())
        ),
        Err(RequestError::OutOfRange { .. })
    ));
    assert_eq!(
        write(&mut d, "kitchen", "temperature", Value::Float(1.0)),
        Err(RequestError::NotWritable("temperature".into()))
    );
    assert_eq!(
        write(&mut d, "kitchen", "nope", Value::Float(1.0)),
        Err(RequestError::UnknownField("nope".into()))
    );
    // The written value is what a read returns until the device says otherwise.
    let r = d.read(&id("desk-plug"), &["child_lock".into()]).unwrap();
    assert_eq!(r[0].value, Value::Bool(true));
    // Offline devices refuse with the reason.
    let mut out = Output::default();
    d.on_message("garage-door/status", b"offline", 65536, t0, &mut out);
    assert_eq!(
        write(&mut d, "garage-door", "relay", Value::Bool(true)),
        Err(RequestError::Unreachable(
            "garage-door/status says offline".into()
        ))
    );
}

#[tokio::test(start_paused = true)]
async fn withdrawn_configs_remove_entities_then_the_device() {
    let mut d = discovery(both(), &[]);
    let t0 = Instant::now();
    load(&mut d, t0);
    let mut out = Output::default();
    let topic = "homeassistant/sensor/tasmota_A1B2C3/humidity/config";
    d.on_message(topic, b"", 65536, t0, &mut out);
    d.on_tick(t0 + QUIET, &mut out);
    assert_eq!(lines(&out), ["found kitchen [temperature]"]);
    let mut out = Output::default();
    let topic = "homeassistant/sensor/tasmota_A1B2C3/temperature/config";
    d.on_message(topic, b"", 65536, t0, &mut out);
    d.on_tick(t0 + QUIET, &mut out);
    assert_eq!(lines(&out), ["gone kitchen"]);
    assert!(!d.has(&id("kitchen")));
    assert!(d.read(&id("kitchen"), &[]).is_err());
}

#[tokio::test(start_paused = true)]
async fn a_new_zigbee2mqtt_document_renames_and_removes() {
    let mut d = discovery(both(), &[]);
    let t0 = Instant::now();
    load(&mut d, t0);
    let doc = br#"[{"ieee_address":"0x00158d0001d82999","friendly_name":"Bedroom Sensor","definition":{"model":"WSDCGQ11LM","vendor":"Aqara","exposes":[{"type":"numeric","property":"temperature","access":1,"unit":"C"}]}}]"#;
    let mut out = Output::default();
    d.on_message("zigbee2mqtt/bridge/devices", doc, 65536, t0, &mut out);
    d.on_tick(t0 + QUIET, &mut out);
    let mut got = lines(&out);
    got.sort();
    assert_eq!(
        got,
        [
            "found bedroom-sensor [temperature]",
            "gone desk-plug",
            "gone hallway-bulb",
            "gone living-room-sensor"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn bursts_are_reported_once_they_settle() {
    let mut d = discovery(both(), &[]);
    let t0 = Instant::now();
    let mut out = Output::default();
    assert_eq!(d.next_deadline(), None);
    let cfg = |n: usize| {
        format!(r#"{{"name":"S{n}","stat_t":"s/{n}","dev":{{"ids":"x","name":"Many"}}}}"#)
    };
    // A change every 100 ms for 10 s: reported after MAX_DELAY, not once per change.
    let mut reported = 0;
    for i in 0..100 {
        let now = t0 + Duration::from_millis(100 * i as u64);
        let topic = format!("homeassistant/sensor/many/s{i}/config");
        d.on_message(&topic, cfg(i).as_bytes(), 65536, now, &mut out);
        d.on_tick(now, &mut out);
        reported = out
            .events
            .iter()
            .filter(|e| matches!(e, AdapterEvent::DeviceFound(_)))
            .count();
        if i < 50 {
            assert_eq!(reported, 0, "at {i}");
        }
    }
    assert_eq!(reported, 1, "once at MAX_DELAY");
    // The changes since are due MAX_DELAY after the first of them, though they go on.
    let last = d.next_deadline().unwrap();
    assert_eq!(last, t0 + Duration::from_millis(5100) + MAX_DELAY);
    d.on_tick(last, &mut out);
    let found: Vec<&DiscoveredDevice> = out
        .events
        .iter()
        .filter_map(|e| match e {
            AdapterEvent::DeviceFound(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 2);
    assert_eq!(found[1].fields.len(), 100);
    assert_eq!(d.next_deadline(), None);
}

#[tokio::test(start_paused = true)]
async fn include_exclude_cap_configured_ids_and_collisions() {
    let t0 = Instant::now();
    let mut d = discovery(
        DiscoveryConfig {
            exclude: vec!["*-plug".into()],
            include: vec!["*".into()],
            max_devices: 5,
            ..both()
        },
        &["kitchen"],
    );
    let out = load(&mut d, t0);
    let mut found: Vec<String> = lines(&out)
        .into_iter()
        .filter(|l| l.starts_with("found"))
        .map(|l| l.split(' ').nth(1).unwrap().to_owned())
        .collect();
    found.sort();
    // kitchen is configured, desk-plug excluded, and the cap of 5 leaves out one more.
    assert_eq!(found.len(), 5, "{found:?}");
    assert!(!found.contains(&"kitchen".to_owned()));
    assert!(!found.contains(&"desk-plug".to_owned()));
    assert_eq!(MqttStats::get(&d.stats.discovery_skipped), 2);

    // Two devices with one name: the second gets `-2`.
    let mut d = discovery(both(), &[]);
    let mut out = Output::default();
    for node in ["a", "b"] {
        let topic = format!("homeassistant/sensor/{node}/t/config");
        let cfg = format!(r#"{{"stat_t":"{node}/t","dev":{{"ids":"{node}","name":"Twin"}}}}"#);
        d.on_message(&topic, cfg.as_bytes(), 65536, t0, &mut out);
    }
    d.flush(&mut out);
    assert_eq!(lines(&out), ["found twin [t]", "found twin-2 [t]"]);
}

#[tokio::test(start_paused = true)]
async fn bad_templates_and_payloads_are_counted_and_harm_nothing_else() {
    let t0 = Instant::now();
    let mut d = discovery(both(), &[]);
    let mut out = Output::default();
    d.set_link(LinkView::Up, &mut out);
    let mut out = Output::default();
    // Does not compile: the entity is skipped.
    d.on_message(
        "homeassistant/sensor/x/bad/config",
        br#"{"stat_t":"x/s","val_tpl":"{{ value_json.t | round(1 }}","dev":{"ids":"x","name":"X"}}"#,
        65536,
        t0,
        &mut out,
    );
    // Compiles, fails at run time on the payloads below.
    d.on_message(
        "homeassistant/sensor/x/t/config",
        br#"{"stat_t":"x/s","val_tpl":"{{ value_json.a.b }}","unit_of_meas":"C","dev":{"ids":"x","name":"X"}}"#,
        65536,
        t0,
        &mut out,
    );
    d.on_message(
        "homeassistant/sensor/x/u/config",
        br#"{"stat_t":"x/s","val_tpl":"{{ value_json.u }}","unit_of_meas":"C","dev":{"ids":"x","name":"X"}}"#,
        65536,
        t0,
        &mut out,
    );
    d.flush(&mut out);
    assert_eq!(MqttStats::get(&d.stats.discovery_template_errors), 1);
    let mut out = Output::default();
    d.on_message("x/s", br#"{"u": 4}"#, 65536, t0, &mut out);
    assert_eq!(lines(&out), ["x u=4"]);
    assert_eq!(MqttStats::get(&d.stats.discovery_template_errors), 2);
    // Hostile inputs: not JSON, not an object, huge, binary.
    for payload in [&b"{"[..], b"[]", b"\xff\xfe", b"null"] {
        d.on_message(
            "homeassistant/sensor/y/z/config",
            payload,
            65536,
            t0,
            &mut out,
        );
        d.on_message("zigbee2mqtt/bridge/devices", payload, 65536, t0, &mut out);
        d.on_message("x/s", payload, 65536, t0, &mut out);
    }
    d.on_message(
        "homeassistant/sensor/y/z/config",
        &[b' '; 100],
        10,
        t0,
        &mut out,
    );
    d.flush(&mut out);
    assert!(d.has(&id("x")));
}

#[tokio::test(start_paused = true)]
async fn a_broker_full_of_configs_cannot_fill_memory() {
    let t0 = Instant::now();
    let mut d = discovery(
        DiscoveryConfig {
            max_devices: 1,
            ..both()
        },
        &[],
    );
    let mut out = Output::default();
    for i in 0..200 {
        let topic = format!("homeassistant/sensor/n{i}/t/config");
        let cfg = format!(r#"{{"stat_t":"s/{i}","dev":{{"ids":"d{i}","name":"D{i}"}}}}"#);
        d.on_message(&topic, cfg.as_bytes(), 65536, t0, &mut out);
    }
    d.flush(&mut out);
    assert_eq!(d.entities.len(), 64);
    assert_eq!(d.by_id.len(), 1);
    // 136 announcements refused, 63 devices over the cap.
    assert_eq!(MqttStats::get(&d.stats.discovery_skipped), 136 + 63);
}

#[tokio::test(start_paused = true)]
async fn values_not_renewed_within_expire_after_take_the_device_offline() {
    let t0 = Instant::now();
    let mut d = discovery(both(), &[]);
    let mut out = Output::default();
    d.set_link(LinkView::Up, &mut out);
    // Two sensors of one device, both expiring (the longer one counts); a third device's
    // sensor has no expire_after and never expires.
    for (topic, cfg) in [
        (
            "homeassistant/sensor/meter/power/config",
            r#"{"stat_t":"meter/power","exp_aft":60,"unit_of_meas":"W","dev":{"ids":"m","name":"Meter"}}"#,
        ),
        (
            "homeassistant/sensor/meter/volts/config",
            r#"{"stat_t":"meter/volts","expire_after":"90","unit_of_meas":"V","dev":{"ids":"m","name":"Meter"}}"#,
        ),
        (
            "homeassistant/sensor/probe/t/config",
            r#"{"stat_t":"probe/t","unit_of_meas":"°C","dev":{"ids":"p","name":"Probe"}}"#,
        ),
        (
            "homeassistant/sensor/bad/t/config",
            r#"{"stat_t":"bad/t","exp_aft":-5,"dev":{"ids":"b","name":"Bad"}}"#,
        ),
    ] {
        d.on_message(topic, cfg.as_bytes(), 65536, t0, &mut out);
    }
    d.on_tick(t0 + QUIET, &mut out);
    let at = |s: u64| t0 + QUIET + Duration::from_secs(s);
    // Online until its values have had the time to expire.
    assert!(
        lines(&out).contains(&"meter online".to_owned()),
        "{:?}",
        lines(&out)
    );
    assert_eq!(
        d.next_deadline(),
        None,
        "nothing expires before a first value"
    );
    for topic in ["meter/power", "meter/volts", "probe/t"] {
        d.on_message(topic, b"1", 65536, at(0), &mut out);
    }
    assert!(
        !lines(&out).iter().any(|l| l.starts_with("bad")),
        "a negative expire_after is refused"
    );
    // Renewed at 0, then only the power at 50: the device stays online until 50 + 60.
    assert_eq!(d.next_deadline(), Some(at(90)));
    d.on_message("meter/power", b"2", 65536, at(50), &mut out);
    out.events.clear();
    d.on_tick(at(90), &mut out);
    assert!(lines(&out).is_empty(), "{:?}", lines(&out));
    assert_eq!(d.next_deadline(), Some(at(140)));
    d.on_tick(at(140), &mut out);
    assert_eq!(
        lines(&out),
        ["meter offline: no new value for 90s (expire_after)"]
    );
    assert!(matches!(
        d.read(&id("meter"), &[]),
        Err(RequestError::Unreachable(_))
    ));
    assert_eq!(d.next_deadline(), None, "nothing else expires");
    // A new value brings it back.
    out.events.clear();
    d.on_message("meter/volts", b"230", 65536, at(200), &mut out);
    assert_eq!(lines(&out), ["meter volts=230", "meter online"]);
    assert_eq!(d.next_deadline(), Some(at(290)));
}
