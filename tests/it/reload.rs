//! SIGHUP: the configuration is re-read without dropping the upstream session.

use std::time::Duration;

use crate::support::gateway_toml::{device, field, mqtt_adapter, sim_adapter, stepping_thermo};
use crate::support::{
    Gateway, GatewayOpts, GatewayToml, Mosquitto, Prosody, ProsodyOpts, TestClient, TIMEOUT,
};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::Type as PresenceType;

/// The stepping thermometer, and the door too when `with_door`; `read` may read them.
fn config(prosody: &Prosody, domain: &str, with_door: bool, read: &[&str]) -> String {
    let toml = GatewayToml::new("reloading gateway", prosody.component_toml(domain))
        .access("read", read)
        .publish_every_reading()
        .adapter(sim_adapter())
        .device(stepping_thermo("200ms"));
    let toml = if with_door {
        toml.device(
            device("door", "sim").field(
                field("open")
                    .set("type", "boolean")
                    .set("generator", "constant")
                    .set("value", false),
            ),
        )
    } else {
        toml
    };
    toml.build()
}

#[tokio::test]
async fn an_added_device_comes_online_and_the_others_do_not_flap() {
    let prosody = Prosody::start(ProsodyOpts::new().random_component()).await;
    prosody.register("alice", "pw").await;
    prosody.register("bob", "pw").await;
    let domain = prosody.component_domain().to_owned();
    let both = ["alice@localhost", "bob@localhost"];
    let mut gw = Gateway::spawn(&config(&prosody, &domain, false, &both));
    assert!(
        gw.wait_upstream(TIMEOUT).await,
        "gateway connected upstream"
    );
    let thermo = Jid::new(&format!("thermo@{domain}")).expect("jid");
    let door = Jid::new(&format!("door@{domain}")).expect("jid");
    let mut alice = TestClient::connect(&prosody, "alice", "pw").await;
    let mut bob = TestClient::connect(&prosody, "bob", "pw").await;
    for c in [&mut alice, &mut bob] {
        c.subscribe(&thermo).await;
        c.recv_presence_from(&thermo, PresenceType::None, TIMEOUT)
            .await
            .expect("available");
    }

    // A broken file is refused; the running configuration stays.
    // Raw on purpose: a misspelt key the builder would not write.
    gw.reload("[gateway]\nnaem = 1\n");
    assert!(
        gw.wait_log("keeping the one that runs", TIMEOUT).await,
        "{}",
        gw.log_text()
    );
    alice
        .iq_get(
            &thermo,
            "<ping xmlns='urn:xmpp:ping'/>"
                .parse::<Element>()
                .expect("xml"),
        )
        .await
        .expect("still served");

    // Add a device, and take bob off the read list.
    alice.drain();
    gw.reload(&config(&prosody, &domain, true, &["alice@localhost"]));
    assert!(
        gw.wait_log("configuration reloaded", TIMEOUT).await,
        "{}",
        gw.log_text()
    );
    alice.subscribe(&door).await;
    alice
        .recv_presence_from(&door, PresenceType::Subscribed, TIMEOUT)
        .await
        .expect("the new device accepts alice");
    alice
        .recv_presence_from(&door, PresenceType::None, TIMEOUT)
        .await
        .expect("the new device is online");
    // thermo kept going without an unavailable in between, and its values still flow.
    alice
        .recv_presence_from(&thermo, PresenceType::None, TIMEOUT)
        .await
        .expect("thermo keeps publishing");
    assert!(
        alice
            .recv_presence_from(
                &thermo,
                PresenceType::Unavailable,
                Duration::from_millis(300)
            )
            .await
            .is_none(),
        "thermo flapped during the reload"
    );
    assert!(
        gw.log_text().matches("component connected").count() == 1,
        "the upstream session was not dropped"
    );
    // bob may no longer read: he is unsubscribed.
    bob.recv_presence_from(&thermo, PresenceType::Unavailable, TIMEOUT)
        .await
        .expect("bob is told");
    let err = bob
        .iq_get(
            &thermo,
            "<ping xmlns='urn:xmpp:ping'/>"
                .parse::<Element>()
                .expect("xml"),
        )
        .await
        .expect_err("forbidden");
    assert_eq!(
        err.defined_condition,
        xmpp_parsers::stanza_error::DefinedCondition::Forbidden
    );
}

/// A simulated adapter and an MQTT adapter that logs in with a password from a file.
fn with_broker(prosody: &Prosody, domain: &str, mosquitto: &Mosquitto) -> String {
    GatewayToml::new("reloading gateway", prosody.component_toml(domain))
        .adapter(sim_adapter())
        .adapter(
            mqtt_adapter("broker", &mosquitto.url())
                .set("client_id", "reload-test")
                .set("username", "gw")
                .set("password_file", "mqtt.pass"),
        )
        .device(device("thermo", "sim").field(field("temperature")))
        .device(
            device("boiler", "broker")
                .set("topic", "plant/boiler/state")
                .field(field("temperature").set("json", "/temp")),
        )
        .build()
}

/// Waits until `needle` appears `n` times in `text()`.
async fn wait_count(text: impl Fn() -> String, needle: &str, n: usize) -> bool {
    tokio::time::timeout(TIMEOUT, async {
        while text().matches(needle).count() < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_changed_password_file_restarts_the_adapter_that_uses_it() {
    let prosody = Prosody::start(ProsodyOpts::new().random_component()).await;
    let mosquitto = Mosquitto::start().await;
    let domain = prosody.component_domain().to_owned();
    let toml = with_broker(&prosody, &domain, &mosquitto);
    let mut gw = Gateway::spawn_with(&toml, GatewayOpts::new().file("mqtt.pass", "first\n"));
    assert!(
        gw.wait_upstream(TIMEOUT).await,
        "gateway connected upstream"
    );
    // The broker logs each login with its client id and user.
    let login = "as reload-test (";
    assert!(
        wait_count(|| mosquitto.log_text(), login, 1).await,
        "{}",
        mosquitto.log_text()
    );

    // The same file and the same password: nothing restarts.
    gw.reload(&toml);
    assert!(
        wait_count(|| gw.log_text(), "configuration reloaded", 1).await,
        "{}",
        gw.log_text()
    );
    assert!(!gw.log_text().contains("(re)started"), "{}", gw.log_text());

    // Only the password file's content changes: the MQTT adapter restarts and logs in again,
    // the simulated one keeps running.
    std::fs::write(gw.dir().join("mqtt.pass"), "second\n").expect("write the new password");
    gw.reload(&toml);
    assert!(
        wait_count(|| gw.log_text(), "configuration reloaded", 2).await,
        "{}",
        gw.log_text()
    );
    let log = gw.log_text();
    let restarted: Vec<&str> = log.lines().filter(|l| l.contains("(re)started")).collect();
    assert_eq!(restarted.len(), 1, "{log}");
    assert!(restarted[0].contains("adapter=broker"), "{log}");
    assert!(
        wait_count(|| mosquitto.log_text(), login, 2).await,
        "{}",
        mosquitto.log_text()
    );
}
