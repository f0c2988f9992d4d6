//! The MQTT adapter end to end: a private Mosquitto, a private Prosody, the gateway binary, and
//! XMPP users who see what devices publish (presence, XEP-0323 readouts) and control them
//! (XEP-0325, chat). Messages are published with `mosquitto_pub`; commands are watched with an
//! MQTT subscriber.

use crate::support;
use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::client::presence_status;
use crate::support::gateway_toml::{device, field, mqtt_adapter, Section};
use crate::support::{
    Gateway, GatewayToml, Mosquitto, MqttRig as Rig, Prosody, ProsodyOpts, TestClient, TIMEOUT,
};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

const NS_SD: &str = "urn:xmpp:iot:sensordata";
const NS_CTL: &str = "urn:xmpp:iot:control";

/// Reconnecting after a broker outage can take a few back-off steps.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The users alice and bob, and the gateway running [`config`].
async fn rig() -> Rig {
    Rig::start(&["alice", "bob"], config).await
}

/// The configuration the README's MQTT section describes: a plain JSON sensor, a bare numeric
/// topic, a fleet of Tasmota plugs, a zigbee2mqtt lamp, a wildcard topic, a device that goes
/// stale, and a counter.
fn config(prosody: &Prosody, domain: &str, mosquitto: &Mosquitto) -> String {
    GatewayToml::new("mqtt test", prosody.component_toml(domain))
        .gateway("history", "1h")
        .access("read", &["bob@localhost", "alice@localhost"])
        .access("control", &["alice@localhost"])
        .publish_every_reading()
        .adapter(
            mqtt_adapter("broker", &mosquitto.url())
                .set("keep_alive", "5s")
                .set("max_payload", 1024_i64),
        )
        .device(
            device("boiler", "broker")
                .set("topic", "plant/boiler/state")
                .set("availability_topic", "plant/boiler/status")
                .set("command_topic", "plant/boiler/set")
                .field(field("temperature").set("unit", "°C").set("json", "/temp"))
                .field(
                    field("setpoint")
                        .set("unit", "°C")
                        .set("json", "/setpoint")
                        .set("writable", true),
                )
                .field(
                    field("pump")
                        .set("type", "boolean")
                        .set("json", "/pump")
                        .set("writable", true),
                ),
        )
        .device(
            device("outdoor", "broker")
                .set("topic", "weather/outdoor/temperature")
                .field(field("temperature").set("unit", "°C")),
        )
        .device(
            Section::new()
                .list("fleet", &["plug-kitchen", "plug-hall"])
                .set("name", "Tasmota {id}")
                .set("adapter", "broker")
                .set("topic", "tele/{id}/SENSOR")
                .set("availability_topic", "tele/{id}/LWT")
                .set("availability_online", "Online")
                .set("availability_offline", "Offline")
                .set("command_topic", "cmnd/{id}/POWER")
                .field(field("power").set("unit", "W").set("json", "/ENERGY/Power"))
                .field(
                    field("relay")
                        .set("type", "boolean")
                        .set("topic", "stat/{id}/POWER")
                        .set("payload_on", "ON")
                        .set("payload_off", "OFF")
                        .set("command_template", "{value}")
                        .set("writable", true),
                ),
        )
        .device(
            device("lamp", "broker")
                .set("topic", "zigbee2mqtt/lamp")
                .set("availability_topic", "zigbee2mqtt/lamp/availability")
                .set("command_topic", "zigbee2mqtt/lamp/set")
                .field(
                    field("state")
                        .set("type", "boolean")
                        .set("json", "/state")
                        .set("payload_on", "ON")
                        .set("payload_off", "OFF")
                        .set("writable", true),
                )
                .field(
                    field("brightness")
                        .set("type", "integer")
                        .set("json", "/brightness")
                        .set("writable", true)
                        .set("min", 0_i64)
                        .set("max", 254_i64),
                ),
        )
        .device(
            device("anyroom", "broker")
                .set("topic", "rooms/+/temperature")
                .field(field("temperature").set("unit", "°C")),
        )
        .device(
            device("heartbeat", "broker")
                .set("topic", "hb/value")
                .set("stale_after", "2s")
                .field(field("beat").set("type", "integer")),
        )
        .device(
            device("counter", "broker")
                .set("topic", "counter/state")
                .field(field("seq").set("type", "integer").set("json", "/seq")),
        )
        .build()
}

fn el(xml: &str) -> Element {
    xml.parse().expect("test XML")
}

fn from_device(p: &Presence, jid: &Jid) -> bool {
    p.from
        .as_ref()
        .is_some_and(|f| f.to_bare() == jid.to_bare())
}

/// The next presence from `device` whose type is `type_` and whose status contains `needle`.
async fn wait_presence(
    client: &mut TestClient,
    device: &Jid,
    type_: PresenceType,
    needle: &str,
    timeout: Duration,
) -> String {
    let p = client
        .recv_presence(timeout, |p| {
            from_device(p, device)
                && p.type_ == type_
                && presence_status(p).is_some_and(|s| s.contains(needle))
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "no {type_:?} presence from {device} with {needle:?}; buffered:\n{}",
                client.dump_buffer()
            )
        });
    presence_status(&p).unwrap_or_default()
}

/// Every `fields` payload of readout `seqnr` from `from`, up to the one marked `done`.
async fn readout(client: &mut TestClient, from: &Jid, req: Element, seqnr: &str) -> Vec<Element> {
    client
        .iq_get(from, req)
        .await
        .unwrap_or_else(|e| panic!("readout of {from} refused: {e:?}"));
    let mut out = Vec::new();
    loop {
        let m = client
            .recv_message(TIMEOUT, |m| {
                m.from
                    .as_ref()
                    .is_some_and(|f| f.to_bare() == from.to_bare())
                    && m.payloads.iter().any(|p| {
                        (p.is("fields", NS_SD) || p.is("failure", NS_SD))
                            && p.attr("seqnr") == Some(seqnr)
                    })
            })
            .await
            .unwrap_or_else(|| panic!("no data for readout {seqnr} of {from}"));
        let Some(fields) = m.payloads.into_iter().find(|p| p.is("fields", NS_SD)) else {
            panic!("readout {seqnr} of {from} failed");
        };
        let done = fields.attr("done") == Some("true");
        out.push(fields);
        if done {
            return out;
        }
    }
}

/// Momentary values of `device`: (field name, value).
async fn momentary(client: &mut TestClient, device: &Jid, seqnr: &str) -> Vec<(String, String)> {
    let req = el(&format!(
        "<req xmlns='{NS_SD}' seqnr='{seqnr}' momentary='true'/>"
    ));
    values(&readout(client, device, req, seqnr).await)
}

/// Every value in `fields` payloads: (field name, value), in order.
fn values(payloads: &[Element]) -> Vec<(String, String)> {
    payloads
        .iter()
        .flat_map(|f| f.children())
        .flat_map(|node| node.children())
        .flat_map(|ts| ts.children())
        .map(|f| {
            (
                f.attr("name").unwrap_or("").to_owned(),
                f.attr("value").unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn value_of<'a>(values: &'a [(String, String)], name: &str) -> Option<&'a str> {
    values
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn readings_reach_presence_and_readouts_through_every_kind_of_mapping() {
    let rig = rig().await;
    let boiler = rig.jid("boiler");
    let outdoor = rig.jid("outdoor");
    let kitchen = rig.jid("plug-kitchen");
    let hall = rig.jid("plug-hall");
    let anyroom = rig.jid("anyroom");
    let mut bob = rig
        .subscriber(
            "bob",
            &["boiler", "outdoor", "plug-kitchen", "plug-hall", "anyroom"],
        )
        .await;

    // A plain JSON sensor with an availability topic.
    rig.publish("plant/boiler/status", "online").await;
    rig.publish(
        "plant/boiler/state",
        r#"{"temp": 61.5, "setpoint": 60, "pump": true}"#,
    )
    .await;
    let status = wait_presence(
        &mut bob,
        &boiler,
        PresenceType::None,
        "temperature 61.5 °C",
        TIMEOUT,
    )
    .await;
    assert!(status.contains("pump on"), "{status}");
    let v = momentary(&mut bob, &boiler, "1").await;
    assert_eq!(value_of(&v, "temperature"), Some("61.5"));
    assert_eq!(value_of(&v, "setpoint"), Some("60"));
    assert_eq!(value_of(&v, "pump"), Some("true"));

    // A bare numeric topic.
    rig.publish("weather/outdoor/temperature", "-3.5").await;
    wait_presence(
        &mut bob,
        &outdoor,
        PresenceType::None,
        "temperature -3.5 °C",
        TIMEOUT,
    )
    .await;

    // A fleet: one subscription (`tele/+/SENSOR`) serves both plugs, each gets its own values.
    rig.publish("tele/plug-kitchen/LWT", "Online").await;
    rig.publish("tele/plug-kitchen/SENSOR", r#"{"ENERGY": {"Power": 40}}"#)
        .await;
    rig.publish("tele/plug-hall/SENSOR", r#"{"ENERGY": {"Power": 7.5}}"#)
        .await;
    rig.publish("stat/plug-hall/POWER", "ON").await;
    // A plug that is not configured is ignored.
    rig.publish("tele/plug-garage/SENSOR", r#"{"ENERGY": {"Power": 99}}"#)
        .await;
    wait_presence(
        &mut bob,
        &kitchen,
        PresenceType::None,
        "power 40 W",
        TIMEOUT,
    )
    .await;
    wait_presence(&mut bob, &hall, PresenceType::None, "relay on", TIMEOUT).await;
    let v = momentary(&mut bob, &hall, "2").await;
    assert_eq!(value_of(&v, "power"), Some("7.5"));
    assert_eq!(value_of(&v, "relay"), Some("true"));
    let v = momentary(&mut bob, &kitchen, "3").await;
    assert_eq!(value_of(&v, "power"), Some("40"));
    assert_eq!(value_of(&v, "relay"), None, "the kitchen plug never said");

    // A wildcard topic: any room's message is this device's.
    rig.publish("rooms/cellar/temperature", "11").await;
    wait_presence(
        &mut bob,
        &anyroom,
        PresenceType::None,
        "temperature 11 °C",
        TIMEOUT,
    )
    .await;
    rig.publish("rooms/attic/temperature", "24.25").await;
    wait_presence(
        &mut bob,
        &anyroom,
        PresenceType::None,
        "temperature 24.25 °C",
        TIMEOUT,
    )
    .await;
    let log = rig.gateway.log_text();
    assert!(
        log.contains("Message on a topic no device uses")
            && log.contains("tele/plug-garage/SENSOR"),
        "the unconfigured plug is noted at debug level"
    );
}

#[tokio::test]
async fn availability_and_staleness_drive_presence() {
    let rig = rig().await;
    let lamp = rig.jid("lamp");
    let heartbeat = rig.jid("heartbeat");
    let mut bob = rig.subscriber("bob", &["lamp", "heartbeat"]).await;

    // zigbee2mqtt's JSON availability, then its state.
    rig.publish("zigbee2mqtt/lamp/availability", r#"{"state":"online"}"#)
        .await;
    rig.publish("zigbee2mqtt/lamp", r#"{"state":"ON","brightness":180}"#)
        .await;
    wait_presence(
        &mut bob,
        &lamp,
        PresenceType::None,
        "brightness 180",
        TIMEOUT,
    )
    .await;
    rig.publish("zigbee2mqtt/lamp/availability", r#"{"state":"offline"}"#)
        .await;
    let reason = wait_presence(
        &mut bob,
        &lamp,
        PresenceType::Unavailable,
        "zigbee2mqtt/lamp/availability says offline",
        TIMEOUT,
    )
    .await;
    assert!(!reason.is_empty());
    // A readout of an unavailable device fails with the reason; the plain payload brings it back.
    rig.publish("zigbee2mqtt/lamp/availability", "online").await;
    wait_presence(&mut bob, &lamp, PresenceType::None, "state on", TIMEOUT).await;

    // A device that stops sending goes unavailable after `stale_after`, and data brings it back.
    rig.publish("hb/value", "1").await;
    wait_presence(&mut bob, &heartbeat, PresenceType::None, "beat 1", TIMEOUT).await;
    wait_presence(
        &mut bob,
        &heartbeat,
        PresenceType::Unavailable,
        "no data for 2 s",
        TIMEOUT,
    )
    .await;
    rig.publish("hb/value", "2").await;
    wait_presence(&mut bob, &heartbeat, PresenceType::None, "beat 2", TIMEOUT).await;
}

#[tokio::test]
async fn writes_publish_commands_acknowledged_by_the_broker() {
    let rig = rig().await;
    let boiler = rig.jid("boiler");
    let hall = rig.jid("plug-hall");
    let lamp = rig.jid("lamp");
    let mut alice = rig
        .subscriber("alice", &["boiler", "plug-hall", "lamp"])
        .await;
    rig.publish("plant/boiler/status", "online").await;
    rig.publish(
        "plant/boiler/state",
        r#"{"temp": 50, "setpoint": 45, "pump": false}"#,
    )
    .await;
    rig.publish("tele/plug-hall/LWT", "Online").await;
    rig.publish("zigbee2mqtt/lamp/availability", "online").await;
    wait_presence(
        &mut alice,
        &boiler,
        PresenceType::None,
        "setpoint 45",
        TIMEOUT,
    )
    .await;
    alice
        .recv_presence(TIMEOUT, |p| {
            from_device(p, &hall) && p.type_ == PresenceType::None
        })
        .await
        .expect("the plug is available");
    alice
        .recv_presence(TIMEOUT, |p| {
            from_device(p, &lamp) && p.type_ == PresenceType::None
        })
        .await
        .expect("the lamp is available");

    // XEP-0325: `{"<field>": value}` on the device's command topic.
    let mut watch = rig.mosquitto.subscriber("plant/boiler/set").await;
    let set = el(&format!(
        "<set xmlns='{NS_CTL}'><double name='setpoint' value='55.5'/></set>"
    ));
    let resp = alice
        .iq_set(&boiler, set)
        .await
        .expect("the write succeeds")
        .expect("setResponse");
    assert!(resp.is("setResponse", NS_CTL));
    assert_eq!(
        watch.next(TIMEOUT).await,
        Some(("plant/boiler/set".into(), r#"{"setpoint":55.5}"#.into()))
    );
    // Chat `set`, same topic.
    let done = alice
        .chat_and_wait(&boiler, "set pump on", TIMEOUT)
        .await
        .expect("chat answer");
    assert!(done.starts_with("Done"), "{done}");
    assert_eq!(
        watch.next(TIMEOUT).await,
        Some(("plant/boiler/set".into(), r#"{"pump":true}"#.into()))
    );
    // The written value shows at once.
    let v = momentary(&mut alice, &boiler, "1").await;
    assert_eq!(value_of(&v, "setpoint"), Some("55.5"));

    // A per-field template and topic (Tasmota: `ON` on cmnd/<name>/POWER).
    let mut power = rig.mosquitto.subscriber("cmnd/+/POWER").await;
    let set = el(&format!(
        "<set xmlns='{NS_CTL}'><boolean name='relay' value='true'/></set>"
    ));
    alice.iq_set(&hall, set).await.expect("relay set");
    assert_eq!(
        power.next(TIMEOUT).await,
        Some(("cmnd/plug-hall/POWER".into(), "ON".into()))
    );

    // Two fields on one topic go in one message (zigbee2mqtt), booleans spelt as configured.
    let mut z2m = rig.mosquitto.subscriber("zigbee2mqtt/lamp/set").await;
    let set = el(&format!(
        "<set xmlns='{NS_CTL}'><boolean name='state' value='true'/><int name='brightness' value='100'/></set>"
    ));
    alice.iq_set(&lamp, set).await.expect("lamp set");
    assert_eq!(
        z2m.next(TIMEOUT).await,
        Some((
            "zigbee2mqtt/lamp/set".into(),
            r#"{"brightness":100,"state":"ON"}"#.into()
        ))
    );
    // Outside the field's `min`/`max`: refused with the reason, by XEP-0325 and by chat, and
    // nothing is published.
    let set = el(&format!(
        "<set xmlns='{NS_CTL}'><int name='brightness' value='300'/></set>"
    ));
    let err = alice.iq_set(&lamp, set).await.expect_err("out of range");
    let text = err.texts.values().next().cloned().unwrap_or_default();
    assert!(text.contains("300 is outside 0 to 254"), "{err:?}");
    let answer = alice
        .chat_and_wait(&lamp, "set brightness -1", TIMEOUT)
        .await
        .expect("chat answer");
    assert!(answer.contains("-1 is outside 0 to 254"), "{answer}");
    assert!(
        z2m.next(Duration::from_millis(500)).await.is_none(),
        "nothing was published"
    );

    // An unavailable device refuses commands with its reason.
    rig.publish("plant/boiler/status", "offline").await;
    wait_presence(
        &mut alice,
        &boiler,
        PresenceType::Unavailable,
        "says offline",
        TIMEOUT,
    )
    .await;
    let set = el(&format!(
        "<set xmlns='{NS_CTL}'><double name='setpoint' value='40'/></set>"
    ));
    let err = alice.iq_set(&boiler, set).await.expect_err("refused");
    let text = err.texts.values().next().cloned().unwrap_or_default();
    assert!(text.contains("says offline"), "{err:?}");
    assert!(
        watch.next(Duration::from_millis(500)).await.is_none(),
        "nothing was published"
    );
}

#[tokio::test]
async fn a_broker_restart_is_survived_without_restarting_the_gateway() {
    let mut rig = rig().await;
    let outdoor = rig.jid("outdoor");
    let mut bob = rig.subscriber("bob", &["outdoor"]).await;
    let pid = rig.gateway.pid();
    rig.publish("weather/outdoor/temperature", "1").await;
    wait_presence(
        &mut bob,
        &outdoor,
        PresenceType::None,
        "temperature 1 °C",
        TIMEOUT,
    )
    .await;

    // Down for a few seconds: the device is unavailable with the reason, and the gateway keeps
    // trying (with back-off) until the broker is back.
    rig.mosquitto.stop().await;
    let port = rig.mosquitto.port();
    wait_presence(
        &mut bob,
        &outdoor,
        PresenceType::Unavailable,
        &format!("MQTT broker 127.0.0.1:{port} unreachable"),
        TIMEOUT,
    )
    .await;
    assert!(
        rig.gateway
            .wait_log("MQTT broker still unreachable", TIMEOUT)
            .await,
        "a second attempt failed while the broker was down"
    );
    rig.mosquitto.start_again().await;
    wait_presence(
        &mut bob,
        &outdoor,
        PresenceType::None,
        "temperature 1 °C",
        RECONNECT_TIMEOUT,
    )
    .await;
    rig.publish("weather/outdoor/temperature", "2").await;
    wait_presence(
        &mut bob,
        &outdoor,
        PresenceType::None,
        "temperature 2 °C",
        TIMEOUT,
    )
    .await;

    // Again, but the broker forgets every session: the gateway subscribes anew.
    rig.mosquitto.stop().await;
    rig.mosquitto.forget_sessions();
    wait_presence(
        &mut bob,
        &outdoor,
        PresenceType::Unavailable,
        "unreachable",
        TIMEOUT,
    )
    .await;
    rig.mosquitto.start_again().await;
    wait_presence(
        &mut bob,
        &outdoor,
        PresenceType::None,
        "temperature 2 °C",
        RECONNECT_TIMEOUT,
    )
    .await;
    rig.publish("weather/outdoor/temperature", "3").await;
    wait_presence(
        &mut bob,
        &outdoor,
        PresenceType::None,
        "temperature 3 °C",
        TIMEOUT,
    )
    .await;

    assert_eq!(rig.gateway.pid(), pid);
    assert!(rig.gateway.is_running(), "the gateway was never restarted");
    let log = rig.gateway.log_text();
    assert_eq!(
        log.matches("MQTT broker unreachable; retrying with back-off")
            .count(),
        2,
        "one warning per outage"
    );
    assert_eq!(log.matches("MQTT broker reachable again").count(), 2);
}

#[tokio::test]
async fn messages_published_while_the_gateway_is_stopped_all_arrive() {
    const N: usize = 50;
    let mut rig = rig().await;
    let counter = rig.jid("counter");
    let mut bob = rig.subscriber("bob", &["counter"]).await;
    rig.publish("counter/state", r#"{"seq": 0}"#).await;
    wait_presence(&mut bob, &counter, PresenceType::None, "seq 0", TIMEOUT).await;

    let status = rig.gateway.terminate().await;
    assert!(status.success(), "graceful stop: {status:?}");
    // The broker queues these for the gateway's persistent session.
    let lines: Vec<String> = (1..=N).map(|i| format!(r#"{{"seq": {i}}}"#)).collect();
    rig.mosquitto.publish_lines("counter/state", &lines).await;

    rig.gateway.start();
    assert!(rig.gateway.wait_ready(TIMEOUT).await);
    wait_presence(
        &mut bob,
        &counter,
        PresenceType::None,
        &format!("seq {N}"),
        TIMEOUT,
    )
    .await;
    // Every reading is in the store: a historical readout counts them.
    let req = el(&format!(
        "<req xmlns='{NS_SD}' seqnr='9' historical='true' from='2000-01-01T00:00:00Z'/>"
    ));
    let history = values(&readout(&mut bob, &counter, req, "9").await);
    let seen: Vec<usize> = history
        .iter()
        .filter(|(name, _)| name == "seq")
        .filter_map(|(_, v)| v.parse().ok())
        .filter(|v| (1..=N).contains(v))
        .collect();
    let distinct: BTreeSet<usize> = seen.iter().copied().collect();
    assert_eq!(
        distinct,
        (1..=N).collect::<BTreeSet<_>>(),
        "every message published while the gateway was stopped arrived: {seen:?}"
    );

    // Stopped in the middle of a stream: what the gateway acknowledged is stored, the rest waits
    // at the broker. Nothing is lost either way.
    const FIRST: usize = 1001;
    const LAST: usize = 1400;
    let lines: Vec<String> = (FIRST..=LAST)
        .map(|i| format!(r#"{{"seq": {i}}}"#))
        .collect();
    bob.drain();
    let mut publisher = rig.mosquitto.spawn_publish_lines("counter/state", &lines);
    // The stream has reached the gateway (any presence from now on carries a value >= FIRST).
    wait_presence(&mut bob, &counter, PresenceType::None, "seq 1", TIMEOUT).await;
    let status = rig.gateway.terminate().await;
    assert!(status.success(), "graceful stop: {status:?}");
    let published = support::wait_child(&mut publisher, TIMEOUT)
        .await
        .expect("the publisher finishes");
    assert!(published.success());
    rig.gateway.start();
    assert!(rig.gateway.wait_ready(TIMEOUT).await);
    // The stream may have ended before the stop; a last message, delivered after whatever the
    // broker kept for the gateway (QoS 1 keeps the order), says when everything is in.
    rig.publish("counter/state", &format!(r#"{{"seq": {}}}"#, LAST + 1))
        .await;
    wait_presence(
        &mut bob,
        &counter,
        PresenceType::None,
        &format!("seq {}", LAST + 1),
        TIMEOUT,
    )
    .await;
    let req = el(&format!(
        "<req xmlns='{NS_SD}' seqnr='10' historical='true' from='2000-01-01T00:00:00Z'/>"
    ));
    let history = values(&readout(&mut bob, &counter, req, "10").await);
    let distinct: BTreeSet<usize> = history
        .iter()
        .filter(|(name, _)| name == "seq")
        .filter_map(|(_, v)| v.parse().ok())
        .filter(|v| (FIRST..=LAST).contains(v))
        .collect();
    let missing: Vec<usize> = (FIRST..=LAST).filter(|v| !distinct.contains(v)).collect();
    assert!(missing.is_empty(), "lost across the stop: {missing:?}");
    let log = rig.gateway.log_text();
    let before_stop = log
        .split("=== rig: start #3 ===")
        .next()
        .unwrap_or_default()
        .rsplit("=== rig: start #2 ===")
        .next()
        .unwrap_or_default()
        .to_owned();
    eprintln!(
        "stopped mid-stream: {}",
        before_stop
            .lines()
            .find(|l| l.contains("MQTT adapter stopped"))
            .unwrap_or("(no counters)")
    );
}

#[tokio::test]
async fn malformed_payloads_are_logged_counted_and_harm_no_one_else() {
    let mut rig = rig().await;
    let boiler = rig.jid("boiler");
    let outdoor = rig.jid("outdoor");
    let mut bob = rig.subscriber("bob", &["boiler", "outdoor"]).await;
    rig.publish("plant/boiler/status", "online").await;
    rig.publish(
        "plant/boiler/state",
        r#"{"temp": 50, "setpoint": 45, "pump": false}"#,
    )
    .await;
    wait_presence(
        &mut bob,
        &boiler,
        PresenceType::None,
        "temperature 50 °C",
        TIMEOUT,
    )
    .await;

    // Not JSON; a value of the wrong type; a pointer that does not resolve; over max_payload
    // (1024 bytes); an availability payload that means nothing.
    rig.publish("plant/boiler/state", "{oops").await;
    rig.publish(
        "plant/boiler/state",
        r#"{"temp": "hot", "setpoint": 45, "pump": false}"#,
    )
    .await;
    rig.publish("plant/boiler/state", r#"{"setpoint": 45, "pump": false}"#)
        .await;
    let big = format!(r#"{{"temp": 1, "pad": "{}"}}"#, "x".repeat(2000));
    rig.publish("plant/boiler/state", &big).await;
    rig.publish("plant/boiler/status", "dunno").await;
    // Other devices go on.
    rig.publish("weather/outdoor/temperature", "5").await;
    wait_presence(
        &mut bob,
        &outdoor,
        PresenceType::None,
        "temperature 5 °C",
        TIMEOUT,
    )
    .await;
    assert!(
        rig.gateway.wait_log("bad_payloads=5", TIMEOUT).await,
        "five bad payloads counted"
    );

    // The boiler keeps its last good temperature and stays available.
    let v = momentary(&mut bob, &boiler, "1").await;
    assert_eq!(value_of(&v, "temperature"), Some("50"));

    let log = rig.gateway.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("Bad MQTT payload"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning a minute per device: {warnings:#?}"
    );
    let w = warnings[0];
    assert!(
        w.contains("device=boiler") && w.contains("topic=plant/boiler/state"),
        "{w}"
    );
    assert!(w.contains("payload is not valid JSON"), "{w}");
    for problem in [
        "is not a number",
        "JSON pointer `/temp` does not resolve",
        "payload of 2",
        "availability payload \"dunno\" is neither online nor offline",
    ] {
        assert!(log.contains(problem), "{problem:?} logged at debug level");
    }
    let status = rig.gateway.terminate().await;
    assert!(status.success());
    let log = rig.gateway.log_text();
    let stopped = log
        .lines()
        .find(|l| l.contains("MQTT adapter stopped"))
        .expect("the adapter reports its counters at shutdown");
    assert!(stopped.contains("bad_payloads=5"), "{stopped}");
}

#[tokio::test]
async fn mqtts_trusts_the_configured_ca_and_only_that() {
    let prosody = Prosody::start(ProsodyOpts::new().random_component()).await;
    prosody.register("bob", "pw").await;
    // The broker presents the rig's `localhost` certificate, signed by the rig's test CA.
    let certs = prosody.dir().join("certs");
    let mosquitto =
        Mosquitto::start_tls(&certs.join("localhost.crt"), &certs.join("localhost.key")).await;
    let domain = prosody.component_domain().to_owned();
    // `secure` trusts the rig's CA, `untrusted` only the system's; both read the same topic.
    let tls = mosquitto.tls_url();
    let probe_device = |id: &str, adapter: &str| {
        device(id, adapter)
            .set("topic", "probe/temperature")
            .field(field("temperature"))
    };
    let config = GatewayToml::new("tls test", prosody.component_toml(&domain))
        .access("read", &["bob@localhost"])
        .publish_every_reading()
        .adapter(
            mqtt_adapter("secure", &tls).set("ca_file", prosody.ca_path().display().to_string()),
        )
        .adapter(mqtt_adapter("untrusted", &tls))
        .device(probe_device("probe", "secure"))
        .device(probe_device("stranger", "untrusted"))
        .build();
    let mut gateway = Gateway::spawn(&config);
    // The TLS link came up.
    support::mqtt_rig::wait_linked(&mut gateway).await;
    let probe = Jid::new(&format!("probe@{domain}")).expect("jid");
    let stranger = Jid::new(&format!("stranger@{domain}")).expect("jid");
    let mut bob = TestClient::connect(&prosody, "bob", "pw").await;
    for jid in [&probe, &stranger] {
        bob.subscribe(jid).await;
        bob.recv_presence_from(jid, PresenceType::Subscribed, TIMEOUT)
            .await
            .expect("subscribed");
    }
    mosquitto.publish("probe/temperature", "19.5", false).await;
    wait_presence(
        &mut bob,
        &probe,
        PresenceType::None,
        "temperature 19.5",
        TIMEOUT,
    )
    .await;
    // Without the CA the broker's certificate is not trusted: unavailable, and says why.
    let reason = wait_presence(
        &mut bob,
        &stranger,
        PresenceType::Unavailable,
        "certificate",
        TIMEOUT,
    )
    .await;
    assert!(reason.contains("unreachable"), "{reason}");
}

/// With `min_interval = "0s"` every message is news: a burst of two-field messages reaches the
/// recipient whole, every message once and in order with both its fields, as a line of a push's
/// body and as a `<timestamp>` of its XEP-0323 fields. Messages that reach the gateway together
/// leave together: one push then carries several, which a chat client shows line by line and
/// slixmpp's XEP-0323 client reads reading by reading.
#[tokio::test]
async fn a_burst_reaches_chat_and_xep0323_clients_whole_and_in_order() {
    const MESSAGES: i64 = 400;
    let rig = Rig::start(&["carol"], |prosody, domain, mosquitto| {
        GatewayToml::new("burst test", prosody.component_toml(domain))
            .access("read", &["carol@localhost"])
            .publish_every_reading()
            .section(
                "publish",
                Section::new().list("notify", &["carol@localhost"]),
            )
            .adapter(mqtt_adapter("broker", &mosquitto.url()))
            .device(
                device("pair", "broker")
                    .set("topic", "burst/pair")
                    .field(field("a").set("type", "integer").set("json", "/a"))
                    .field(field("b").set("type", "integer").set("json", "/b")),
            )
            .build()
    })
    .await;
    let mut carol = rig.user("carol").await;
    let pair = rig.jid("pair");
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("a {i}, b {}", -i)).collect();
    let lines: Vec<String> = (0..MESSAGES)
        .map(|i| format!(r#"{{"a":{i},"b":{}}}"#, -i))
        .collect();
    // A headline to carol's bare JID reaches each of her online sessions: this client and
    // slixmpp's, which logs in as carol/slixmpp.
    let mut reader = std::process::Command::new(support::modbus::python());
    reader
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/push_reader.py"
        ))
        .args(["--jid", "carol@localhost/slixmpp", "--password", "pw"])
        .args(["--server", &rig.prosody.c2s_addr().to_string()])
        .arg("--ca")
        .arg(rig.prosody.ca_path())
        .args(["--from", &pair.to_string()])
        .args(["--readings", &MESSAGES.to_string(), "--timeout", "60"]);
    let read_by_slixmpp =
        support::run_command(&mut reader, rig.prosody.dir(), Duration::from_secs(90));
    let read_by_carol = async {
        let slixmpp = Jid::new("carol@localhost/slixmpp").expect("jid");
        assert!(
            carol
                .recv_presence_from(&slixmpp, PresenceType::None, Duration::from_secs(30))
                .await
                .is_some(),
            "slixmpp's session came online"
        );
        rig.mosquitto.publish_lines("burst/pair", &lines).await;
        let (mut got, mut stanzas) = (Vec::new(), 0);
        while got.len() < MESSAGES as usize {
            let m = carol
                .recv_message(TIMEOUT, |m| {
                    m.type_ == xmpp_parsers::message::MessageType::Headline
                        && m.from.as_ref().is_some_and(|f| f.to_bare() == pair)
                })
                .await
                .unwrap_or_else(|| panic!("reading {} of {MESSAGES}", got.len() + 1));
            let body = m.bodies.values().next().map(|b| b.as_str()).unwrap_or("");
            got.extend(body.lines().map(str::to_owned));
            stanzas += 1;
        }
        (got, stanzas)
    };
    let (out, (got, stanzas)) = tokio::join!(read_by_slixmpp, read_by_carol);
    assert_eq!(got, expected);
    // The burst reached the gateway faster than one push per message could leave.
    assert!(
        stanzas < MESSAGES,
        "{stanzas} pushes for {MESSAGES} messages"
    );
    assert!(
        out.status.success(),
        "the slixmpp reader failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    let (mut bodies, mut readings) = (Vec::new(), Vec::new());
    for line in out.stdout.lines() {
        let push: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        bodies.extend(
            push["body"]
                .as_str()
                .expect("a body")
                .lines()
                .map(str::to_owned),
        );
        for t in push["timestamps"].as_array().expect("timestamps") {
            assert_eq!(t["nodeId"], "pair", "{line}");
            let value = |name: &str| {
                t["fields"]
                    .as_array()
                    .and_then(|fs| fs.iter().find(|f| f["name"] == name))
                    .and_then(|f| f["value"].as_str())
                    .unwrap_or_else(|| panic!("{name} in {line}"))
                    .to_owned()
            };
            readings.push(format!("a {}, b {}", value("a"), value("b")));
        }
    }
    assert_eq!(bodies, expected);
    assert_eq!(readings, expected);
}
