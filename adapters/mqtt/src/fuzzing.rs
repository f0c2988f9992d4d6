//! The body of the `mqtt_payload` fuzz target in `fuzz/`, kept in the crate so that the normal
//! test suite runs it too: on the seed corpus and on mutations of it.
//!
//! One input is a field configuration, a JSON pointer, a topic and a payload. They go through
//! the topic checks and matcher, the payload decoder and availability reader, the command
//! encoder, and the bridge (routing to fleet members whose id is a topic level, readings,
//! presence, acknowledgements), and discovery: the payload as a Home Assistant config (at the
//! topic given and at one of each component), as a zigbee2mqtt devices document, and as a state
//! of what that discovered. It asserts what must hold for any input; a panic is a bug.
//!
//! Input: byte 0 picks the field (bits 0-1: its type; bit 2: read through the pointer, else the
//! whole payload; bit 3: scaled; bit 4: booleans spelt `ON`/`OFF`; bits 5-7: the topic template
//! of the devices); the rest is `pointer NUL topic NUL payload`.

use std::sync::Arc;

use gateway_api::{AdapterEvent, DeviceId, FieldSpec, FieldType, Value};
use rumqttc::{Publish, QoS, SubAck, SubscribeReasonCode};
use tokio::time::Instant;

use crate::bridge::Bridge;
use crate::config::{
    check_pointer, Availability, BrokerConfig, BrokerUrl, DeviceConfig, FieldConfig, MqttDevice,
    MqttField, TopicBinding,
};
use crate::link::Link;
use crate::payload;
use crate::topic;

const TYPES: [FieldType; 4] = [
    FieldType::Numeric,
    FieldType::Integer,
    FieldType::Boolean,
    FieldType::String,
];

/// Device topic templates: exact, fleets (`{id}` a whole level, or part of one), wildcards.
const TEMPLATES: [&str; 8] = [
    "plant/{id}/state",
    "tele/{id}/SENSOR",
    "zigbee2mqtt/{id}",
    "home/+/temperature",
    "home/#",
    "sensor-{id}/data",
    "#",
    "$SYS/{id}/+",
];

/// Fleet members (`{id}` is theirs) and their availability topics.
const IDS: [&str; 2] = ["kitchen", "hall"];

/// Target `mqtt_payload`.
pub fn mqtt_payload(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == 0);
    let pointer = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let topic_name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();

    let kind = TYPES[usize::from(pick & 3)];
    let json = (pick & 4 != 0).then(|| {
        if check_pointer(&pointer).is_ok() {
            pointer.clone()
        } else {
            "/value".to_owned()
        }
    });
    let template = TEMPLATES[usize::from(pick >> 5)];
    let field = MqttField {
        spec: FieldSpec {
            name: "value".into(),
            unit: "".into(),
            kind,
            writable: true,
        },
        config: FieldConfig {
            json,
            scale: if pick & 8 != 0 { 0.1 } else { 1.0 },
            offset: if pick & 8 != 0 { -40.0 } else { 0.0 },
            payload_on: (pick & 16 != 0).then(|| "ON".to_owned()),
            payload_off: (pick & 16 != 0).then(|| "OFF".to_owned()),
            ..FieldConfig::default()
        },
    };
    let devices: Vec<MqttDevice> = IDS.iter().map(|id| device(id, template, &field)).collect();

    topics(&topic_name, &devices);
    decoding(&devices[0], body);
    bridge(devices, topic_name.clone(), body);
    discovery(pick, &topic_name, body);
}

/// Discovery takes any announcement: devices it reports have fields and valid ids, are found
/// before any reading of them, and reads and writes of them are answered without a panic.
fn discovery(pick: u8, topic_name: &str, body: &[u8]) {
    use crate::discovery::{homeassistant, Discovery, DiscoveryConfig, LinkView, Output};
    let cfg = DiscoveryConfig {
        homeassistant: true,
        zigbee2mqtt: true,
        max_devices: 4,
        ..DiscoveryConfig::default()
    };
    let mut d = Discovery::new(
        "broker".into(),
        cfg,
        ["configured".to_owned()],
        Arc::default(),
    );
    let now = Instant::now();
    let mut out = Output::default();
    d.set_link(LinkView::Up, &mut out);
    let component = homeassistant::COMPONENTS[usize::from(pick) % homeassistant::COMPONENTS.len()];
    d.on_message(topic_name, body, 65536, now, &mut out);
    d.on_message(
        &format!("homeassistant/{component}/n/o/config"),
        body,
        65536,
        now,
        &mut out,
    );
    d.on_message("zigbee2mqtt/bridge/devices", body, 65536, now, &mut out);
    d.flush(&mut out);
    // What was discovered hears the payload on its topics.
    for t in out.subscribe.clone() {
        d.on_message(&t, body, 65536, now, &mut out);
    }
    let mut found: Vec<DeviceId> = Vec::new();
    for ev in &out.events {
        match ev {
            AdapterEvent::DeviceFound(dev) => {
                assert!(!dev.fields.is_empty(), "a device without fields");
                assert_ne!(dev.id.as_str(), "configured", "a configured id reported");
                found.push(dev.id.clone());
            }
            AdapterEvent::Readings(rs) => {
                for r in rs {
                    assert!(found.contains(&r.device), "a reading before DeviceFound");
                }
            }
            AdapterEvent::Online { device } | AdapterEvent::Offline { device, .. } => {
                assert!(found.contains(device), "presence before DeviceFound");
            }
            AdapterEvent::DeviceGone { .. } => {}
        }
    }
    assert!(found.len() <= 4, "over discover_max_devices");
    let text = String::from_utf8_lossy(body).into_owned();
    for id in &found {
        let _ = d.read(id, &[]);
        for v in [
            Value::Bool(true),
            Value::Float(1.5),
            Value::Text(text.clone()),
        ] {
            for f in ["state", "o", "brightness", "o_brightness"] {
                let _ = d.write(id, vec![(f.into(), v.clone())]);
            }
        }
    }
    let _ = crate::discovery::pin::blocks("broker", &d.snapshot());
}

fn device(id: &str, template: &str, field: &MqttField) -> MqttDevice {
    let binding = TopicBinding::new(template, id, true).expect("the templates are valid filters");
    MqttDevice {
        id: DeviceId::new(id).expect("a valid device id"),
        config: DeviceConfig {
            topic: Some(binding),
            availability: Some(Availability {
                topic: TopicBinding::new("avail/{id}", id, true).expect("a valid filter"),
                online: "online".into(),
                offline: "offline".into(),
            }),
            command_topic: Some(format!("cmd/{id}")),
            ..DeviceConfig::default()
        },
        fields: vec![field.clone()],
    }
}

/// Topic checks and matching agree with each other for any topic.
fn topics(name: &str, devices: &[MqttDevice]) {
    let filters: Vec<String> = devices
        .iter()
        .flat_map(|d| {
            let b = d.config.topic.as_ref().expect("a topic");
            [b.filter.clone(), b.subscribe.clone()]
        })
        .chain([name.to_owned()])
        .collect();
    let reduced = topic::reduce(&filters);
    assert!(!reduced.is_empty() && reduced.len() <= filters.len());
    for f in &filters {
        assert!(reduced.contains(f) || reduced.iter().any(|r| topic::covers(r, f)));
    }
    let as_topic = topic::check_topic(name).is_ok();
    if as_topic {
        assert!(
            topic::check_filter(name).is_ok(),
            "a topic is a filter: {name:?}"
        );
        assert!(topic::matches(name, name));
        assert!(!topic::has_wildcard(name));
    }
    for f in filters.iter().filter(|f| topic::check_filter(f).is_ok()) {
        let m = topic::matches(f, name);
        if as_topic {
            // For a topic (no wildcards), "covers" is "matches".
            assert_eq!(m, topic::covers(f, name), "{f:?} vs {name:?}");
        }
        if m && !topic::has_wildcard(f) {
            assert_eq!(f, name);
        }
    }
}

/// The decoder gives each asked field a value of its type or one problem, and what it reads
/// encodes back to a command.
fn decoding(device: &MqttDevice, body: &[u8]) {
    let decoded = payload::decode(device, &[0, 1], body, 4096);
    let kind = device.fields[0].spec.kind;
    assert!(decoded.values.len() <= 1);
    assert!(decoded.values.len() + decoded.problems.len() >= 1);
    for (i, v) in &decoded.values {
        assert_eq!(*i, 0);
        check_kind(v, kind);
        let commands = payload::encode(device, &[(0, v.clone())]).expect("a command");
        assert_eq!(commands.len(), 1);
        assert_eq!(commands[0].topic, "cmd/kitchen");
    }
    for p in &decoded.problems {
        assert!(!p.to_string().is_empty());
    }
    let too_small = payload::decode(device, &[0], body, body.len().saturating_sub(1));
    if !body.is_empty() {
        assert!(too_small.values.is_empty());
    }
    if let Some(a) = &device.config.availability {
        match payload::availability(body, a) {
            Ok(online) => {
                let text = String::from_utf8_lossy(body).to_ascii_lowercase();
                assert!(text.contains(if online { "online" } else { "offline" }));
            }
            Err(p) => assert!(!p.to_string().is_empty()),
        }
    }
}

fn check_kind(v: &Value, kind: FieldType) {
    let ok = matches!(
        (kind, v),
        (FieldType::Numeric, Value::Float(f)) if f.is_finite()
    ) || matches!(
        (kind, v),
        (FieldType::Integer, Value::Int(_))
            | (FieldType::Boolean, Value::Bool(_))
            | (FieldType::String, Value::Text(_))
    );
    assert!(ok, "{v:?} for a {kind:?} field");
}

/// The bridge, connected, takes the message: readings go only to devices whose topics match,
/// and the message is acknowledged once.
fn bridge(devices: Vec<MqttDevice>, topic_name: String, body: &[u8]) {
    let wanted: Vec<(DeviceId, bool, bool)> = devices
        .iter()
        .map(|d| {
            let data = d
                .config
                .topic
                .as_ref()
                .is_some_and(|b| topic::matches(&b.filter, &topic_name));
            let avail = d
                .config
                .availability
                .as_ref()
                .is_some_and(|a| topic::matches(&a.topic.filter, &topic_name));
            (d.id.clone(), data, avail)
        })
        .collect();
    let mut broker = BrokerConfig::new(BrokerUrl::parse("mqtt://127.0.0.1:1883").expect("a URL"));
    broker.max_payload = 4096;
    let mut b = Bridge::new("broker".into(), &broker, devices, Arc::default());
    let now = Instant::now();
    b.on_link(
        Link::Up {
            session_present: false,
        },
        now,
    );
    b.on_link(Link::Subscribed(1), now);
    let codes = vec![SubscribeReasonCode::Success(QoS::AtLeastOnce); b.subscriptions().len()];
    b.on_link(Link::SubAck(SubAck::new(1, codes)), now);
    while b.pop_event().is_some() {}
    b.mqtt.clear();

    let mut publish = Publish::new(topic_name, QoS::AtLeastOnce, body.to_vec());
    publish.pkid = 7;
    b.on_link(Link::Publish(publish), now);
    let mut readings = 0;
    while let Some(ev) = b.pop_event() {
        match ev {
            AdapterEvent::Readings(rs) => {
                assert!(!rs.is_empty(), "an empty batch of readings");
                for r in rs {
                    readings += 1;
                    let (_, data, _) = wanted
                        .iter()
                        .find(|(id, _, _)| *id == r.device)
                        .expect("a reading of a known device");
                    assert!(*data, "a reading for {} off its topic", r.device);
                }
            }
            AdapterEvent::Online { device } | AdapterEvent::Offline { device, .. } => {
                let (_, data, avail) = wanted
                    .iter()
                    .find(|(id, _, _)| *id == device)
                    .expect("presence of a known device");
                assert!(
                    *data || *avail,
                    "presence of {device} changed by another topic"
                );
            }
            other => panic!("discovery is off, yet the bridge reported {other:?}"),
        }
    }
    assert!(readings <= wanted.len());
    let acks = b
        .mqtt
        .iter()
        .filter(|r| matches!(r, crate::bridge::MqttRequest::Ack(p) if p.pkid == 7))
        .count();
    assert_eq!(acks, 1, "the message is acknowledged once");
    b.close();
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use gateway_api::fuzzing::Mutator;

    #[test]
    fn every_seed_and_mutations_pass() {
        Mutator::new(0x853c_49e6_748f_ea9b).run(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
            "mqtt_payload",
            b"/+#{}\"0:.,\0 ~",
            3000,
            super::mqtt_payload,
        );
    }

    /// A fleet member's reading arrives on its own topic level, and only there.
    #[test]
    fn fleet_members_are_told_apart_by_topic() {
        // Numeric through `/ENERGY/Power`, fleet template `tele/{id}/SENSOR`.
        let mut input = vec![0b0010_0100];
        input.extend_from_slice(b"/ENERGY/Power\0tele/hall/SENSOR\0{\"ENERGY\":{\"Power\":42}}");
        super::mqtt_payload(&input);
        let f = super::TopicBinding::new("tele/{id}/SENSOR", "hall", true).expect("valid");
        assert!(super::topic::matches(&f.filter, "tele/hall/SENSOR"));
        assert!(!super::topic::matches(&f.filter, "tele/kitchen/SENSOR"));
        assert_eq!(f.subscribe, "tele/+/SENSOR");
    }
}
