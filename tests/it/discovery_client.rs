//! Discovered devices in client mode: every device is a session of the gateway's account, so
//! the gateway opens one when an adapter finds a device and closes it when the device leaves
//! (the server then tells the account's subscribers it is unavailable). A device a reload adds
//! gets its session the same way.

use super::client::subscribe;
use super::discover::retained;
use crate::support;

use support::gateway_toml::{client_xmpp, device, field, mqtt_adapter};
use support::readout::{self, momentary};
use support::{
    Gateway, GatewayOpts, GatewayToml, Kind, Mosquitto, Server, ServerOpts, TestClient, TIMEOUT,
};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::Type as PresenceType;

const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const NS_CTL: &str = "urn:xmpp:iot:control";

/// The gateway's account on `server`, an mqtt adapter with discovery on, and (`boiler`) one
/// configured device on it.
fn config(server: &Server, mosquitto: &Mosquitto, boiler: bool) -> String {
    let xmpp = client_xmpp(server.c2s_addr(), server.ca_path());
    let toml = GatewayToml::new("client-mode discovery", xmpp)
        .access("read", &["alice@localhost"])
        .access("control", &["alice@localhost"])
        .publish_every_reading()
        .adapter(
            mqtt_adapter("broker", &mosquitto.url())
                .list("discovery", &["homeassistant", "zigbee2mqtt"]),
        );
    let toml = if boiler {
        toml.device(
            device("boiler", "broker")
                .set("topic", "plant/boiler/state")
                .field(field("temperature").set("json", "/temp")),
        )
    } else {
        toml
    };
    toml.build()
}

fn jid(s: &str) -> Jid {
    Jid::new(s).expect("jid")
}

fn el(xml: &str) -> Element {
    xml.parse().expect("test XML")
}

/// What the gateway's own session lists in disco#items.
async fn items(alice: &mut TestClient) -> Vec<String> {
    let list = alice
        .iq_get(
            &jid("gw@localhost/gateway"),
            el(&format!("<query xmlns='{DISCO_ITEMS}'/>")),
        )
        .await
        .expect("result")
        .expect("payload");
    list.children()
        .filter_map(|i| i.attr("jid"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn discovered_devices_get_sessions_of_their_own_in_client_mode() {
    let server = Server::start(Kind::Prosody, ServerOpts::new()).await;
    for (user, pw) in [("gw", "gw-pw"), ("alice", "pw")] {
        server.register(user, pw).await;
    }
    let mosquitto = Mosquitto::start().await;
    for (topic, payload) in retained() {
        mosquitto.publish(&topic, &payload, true).await;
    }
    let mut gw = Gateway::spawn_with(
        &config(&server, &mosquitto, false),
        GatewayOpts::new().file("gw.pass", "gw-pw\n"),
    );
    let mut alice = TestClient::connect(&server, "alice", "pw").await;

    // Found devices log in as resources of the account and are seen like configured ones.
    let kitchen = jid("gw@localhost/kitchen");
    assert!(
        alice.wait_answering(&kitchen, TIMEOUT).await,
        "the kitchen's session is online: {}",
        gw.log_text()
    );
    subscribe(&mut alice, "gw@localhost", "gw@localhost/kitchen").await;
    let fields = momentary(&mut alice, &kitchen, 1).await;
    assert_eq!(readout::field(&fields, "temperature").value, "21.6");
    let study = jid("gw@localhost/study");
    assert!(alice.wait_answering(&study, TIMEOUT).await, "the study");
    let listed = items(&mut alice).await;
    for d in ["kitchen", "study", "living-room-sensor"] {
        let want = format!("gw@localhost/{d}");
        assert!(listed.contains(&want), "{want} in {listed:?}");
    }

    // Writes go to the adapter that found the device.
    let mut watch = mosquitto.subscriber("study/light/desk_lamp/command").await;
    alice
        .iq_set(
            &study,
            el(&format!(
                "<set xmlns='{NS_CTL}'><int name='desk_lamp_brightness' value='77'/></set>"
            )),
        )
        .await
        .expect("the write succeeds");
    let (_, payload) = watch.next(TIMEOUT).await.expect("a command");
    let command: serde_json::Value = serde_json::from_str(&payload).expect("a JSON command");
    assert_eq!(command["brightness"], 77, "{payload}");

    // The kitchen's configs are deleted: its session closes and the server says goodbye.
    for entity in ["temperature", "humidity"] {
        mosquitto
            .publish(
                &format!("homeassistant/sensor/tasmota_A1B2C3/{entity}/config"),
                "",
                true,
            )
            .await;
    }
    alice
        .recv_presence_from(&kitchen, PresenceType::Unavailable, TIMEOUT)
        .await
        .expect("the kitchen goes unavailable");
    let listed = items(&mut alice).await;
    assert!(
        !listed.contains(&kitchen.to_string()),
        "the kitchen left the list: {listed:?}"
    );
    assert!(
        alice
            .iq_get(&kitchen, el("<ping xmlns='urn:xmpp:ping'/>"))
            .await
            .is_err(),
        "nothing answers for the kitchen"
    );
    // The others stay, and the gateway's own session was not touched.
    let fields = momentary(&mut alice, &jid("gw@localhost/living-room-sensor"), 2).await;
    assert_eq!(readout::field(&fields, "temperature").value, "21.35");

    // A device added by a reload gets a session too.
    gw.reload(&config(&server, &mosquitto, true));
    assert!(
        gw.wait_log("configuration reloaded", TIMEOUT).await,
        "the reload was applied"
    );
    assert!(
        alice
            .wait_answering(&jid("gw@localhost/boiler"), TIMEOUT)
            .await,
        "the added device's session is online: {}",
        gw.log_text()
    );
    assert!(
        alice.wait_answering(&study, TIMEOUT).await,
        "the study stays"
    );
    assert!(
        !gw.log_text().contains("gw-pw"),
        "passwords never reach the log"
    );
}
