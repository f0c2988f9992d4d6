//! Discovered devices end to end: a real Mosquitto holding the retained announcements of
//! `tests/fixtures/discovery` (Tasmota, ESPHome, Shelly, a broken config, zigbee2mqtt), a real
//! Prosody, and the gateway with `discovery = ["homeassistant", "zigbee2mqtt"]` and no
//! `[[device]]` of those: the devices appear in disco#items, answer readouts with the values
//! their templates compute, take writes that publish what their command templates make, and
//! leave (unavailable presence, gone from disco#items) when their config is deleted.

use super::discover::retained;
use crate::support;

use std::time::Duration;

use support::gateway_toml::{self, device, mqtt_adapter};
use support::readout::{field, momentary};
use support::{GatewayToml, Mosquitto, MqttRig as Rig, Prosody, TestClient, TIMEOUT};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::Type as PresenceType;

const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const NS_CTL: &str = "urn:xmpp:iot:control";

/// The devices the fixtures announce (see `tests/fixtures/discovery/README.md`).
const DISCOVERED: [&str; 7] = [
    "kitchen",
    "garage-door",
    "study",
    "hall-shelly-plus-1pm",
    "living-room-sensor",
    "hallway-bulb",
    "desk-plug",
];

/// alice may read and control, bob may read; the broker adapter discovers devices, and has
/// one configured device, `boiler`.
fn config(prosody: &Prosody, domain: &str, mosquitto: &Mosquitto) -> String {
    base_config(prosody, domain, mosquitto).build()
}

fn base_config(prosody: &Prosody, domain: &str, mosquitto: &Mosquitto) -> GatewayToml {
    GatewayToml::new("discovery test", prosody.component_toml(domain))
        .access("read", &["alice@localhost", "bob@localhost"])
        .access("control", &["alice@localhost"])
        .publish_every_reading()
        .adapter(
            mqtt_adapter("broker", &mosquitto.url())
                .list("discovery", &["homeassistant", "zigbee2mqtt"]),
        )
        .device(
            device("boiler", "broker")
                .set("topic", "plant/boiler/state")
                .field(
                    gateway_toml::field("temperature")
                        .set("unit", "°C")
                        .set("json", "/temp"),
                ),
        )
}

fn el(xml: &str) -> Element {
    xml.parse().expect("test XML")
}

/// The JIDs the gateway lists in disco#items for `client`.
async fn items(client: &mut TestClient, domain: &str) -> Vec<String> {
    let domain = Jid::new(domain).expect("domain");
    let items = client
        .iq_get(&domain, el(&format!("<query xmlns='{DISCO_ITEMS}'/>")))
        .await
        .expect("result")
        .expect("payload");
    let mut jids: Vec<String> = items
        .children()
        .filter_map(|i| i.attr("jid"))
        .map(str::to_owned)
        .collect();
    jids.sort();
    jids
}

/// Asks disco#items until `done` holds for the list (announcements arrive while the gateway
/// runs: there is no event to await from outside), or panics after `timeout`.
async fn items_until(
    client: &mut TestClient,
    domain: &str,
    timeout: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let jids = items(client, domain).await;
        if done(&jids) {
            return jids;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "disco#items did not become what was expected: {jids:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The rig with the fixtures retained on its broker, `users[0]` connected, and the disco#items
/// list once every discovered device is in it.
async fn hosted(users: &[&str]) -> (Rig, TestClient, Vec<String>) {
    let rig = Rig::start(users, config).await;
    for (topic, payload) in retained() {
        rig.mosquitto.publish(&topic, &payload, true).await;
    }
    let mut client = rig.user(users[0]).await;
    let all: Vec<String> = DISCOVERED
        .iter()
        .map(|d| format!("{d}@{}", rig.domain))
        .collect();
    let listed = items_until(&mut client, &rig.domain, TIMEOUT, |jids| {
        all.iter().all(|j| jids.contains(j))
    })
    .await;
    (rig, client, listed)
}

/// Subscribes `client` to `device` and waits until it is available: its adapter has its state
/// (a readout before that is answered with a failure).
async fn wait_online(client: &mut TestClient, device: &Jid) {
    client.subscribe(device).await;
    client
        .recv_presence_from(device, PresenceType::Subscribed, TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("subscription to {device} approved"));
    client
        .recv_presence_from(device, PresenceType::None, TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("{device} available"));
}

#[tokio::test]
async fn discovered_devices_are_hosted_read_written_and_removed() {
    let (rig, mut alice, listed) = hosted(&["alice", "bob"]).await;
    let domain = rig.domain.clone();
    let jid = |d: &str| format!("{d}@{domain}");
    // The configured device is there too; the broken config made nothing.
    assert!(listed.contains(&jid("boiler")), "{listed:?}");
    assert!(
        !listed.iter().any(|j| j.starts_with("broken")),
        "{listed:?}"
    );

    // Readouts: the values the value templates compute from the retained states.
    let kitchen = rig.jid("kitchen");
    let sensor = rig.jid("living-room-sensor");
    for device in [&kitchen, &sensor, &rig.jid("study")] {
        wait_online(&mut alice, device).await;
    }
    let fields = momentary(&mut alice, &kitchen, 1).await;
    assert_eq!(field(&fields, "temperature").value, "21.6");
    assert_eq!(field(&fields, "temperature").unit, "°C");
    let fields = momentary(&mut alice, &sensor, 2).await;
    assert_eq!(field(&fields, "temperature").value, "21.35");

    // A write to the ESPHome light publishes what its JSON command schema makes.
    let mut watch = rig
        .mosquitto
        .subscriber("study/light/desk_lamp/command")
        .await;
    let set = el(&format!(
        "<set xmlns='{NS_CTL}'><int name='desk_lamp_brightness' value='77'/></set>"
    ));
    alice
        .iq_set(&rig.jid("study"), set)
        .await
        .expect("the write succeeds");
    let (topic, payload) = watch
        .next(TIMEOUT)
        .await
        .expect("a command on the light's command topic");
    assert_eq!(topic, "study/light/desk_lamp/command");
    let command: serde_json::Value = serde_json::from_str(&payload).expect("a JSON command");
    assert_eq!(command["brightness"], 77, "{payload}");

    // bob follows the kitchen; its configs are deleted (empty retained payloads): it leaves.
    let mut bob = rig.subscriber("bob", &["kitchen"]).await;
    for entity in ["temperature", "humidity"] {
        rig.mosquitto
            .publish(
                &format!("homeassistant/sensor/tasmota_A1B2C3/{entity}/config"),
                "",
                true,
            )
            .await;
    }
    bob.recv_presence_from(&kitchen, PresenceType::Unavailable, TIMEOUT)
        .await
        .expect("the kitchen says goodbye");
    let gone = jid("kitchen");
    let listed = items_until(&mut alice, &domain, TIMEOUT, |jids| !jids.contains(&gone)).await;
    // The others stay.
    for d in DISCOVERED.iter().filter(|d| **d != "kitchen") {
        assert!(listed.contains(&jid(d)), "{d} is still hosted: {listed:?}");
    }
    let fields = momentary(&mut alice, &sensor, 3).await;
    assert_eq!(field(&fields, "temperature").value, "21.35");
}

/// A SIGHUP reload keeps discovered devices (the adapter, restarted because its devices
/// changed, reports them again), and a `[[device]]` added with a discovered id takes it over.
#[tokio::test]
async fn a_reload_keeps_discovered_devices_and_a_configured_id_takes_over() {
    let (mut rig, mut alice, _) = hosted(&["alice"]).await;
    let domain = rig.domain.clone();
    let all: Vec<String> = DISCOVERED.iter().map(|d| format!("{d}@{domain}")).collect();
    let plug = rig.jid("desk-plug");
    let sensor = rig.jid("living-room-sensor");
    wait_online(&mut alice, &sensor).await;
    let switch_on = || {
        el(&format!(
            "<set xmlns='{NS_CTL}'><boolean name='state' value='true'/></set>"
        ))
    };
    alice
        .iq_set(&plug, switch_on())
        .await
        .expect("the discovered plug takes a write");

    rig.gateway.reload(
        &base_config(&rig.prosody, &rig.domain, &rig.mosquitto)
            .device(
                device("desk-plug", "broker")
                    .set("topic", "custom/plug/state")
                    .field(
                        gateway_toml::field("watts")
                            .set("unit", "W")
                            .set("json", "/power"),
                    ),
            )
            .build(),
    );
    assert!(
        rig.gateway
            .wait_log("configuration reloaded", TIMEOUT)
            .await,
        "the reload was applied"
    );
    // Every device is still listed; the configured plug has no `state` to write.
    let listed = items(&mut alice, &domain).await;
    for j in &all {
        assert!(listed.contains(j), "{j} after the reload: {listed:?}");
    }
    let err = alice
        .iq_set(&plug, switch_on())
        .await
        .expect_err("the configured plug has no field `state`");
    assert_ne!(
        err.defined_condition,
        xmpp_parsers::stanza_error::DefinedCondition::ServiceUnavailable,
        "the plug is still hosted"
    );
    let fields = momentary(&mut alice, &sensor, 1).await;
    assert_eq!(field(&fields, "temperature").value, "21.35");
}
