//! The MQTT tests' setting: a private Prosody with users, a private Mosquitto, and the gateway
//! connected to both, its subscriptions acknowledged by the broker.

use xmpp_parsers::jid::Jid;
use xmpp_parsers::presence::Type as PresenceType;

use super::{Gateway, Mosquitto, Prosody, ProsodyOpts, TestClient, TIMEOUT};

/// Waits until `gateway` is connected upstream and its broker acknowledged its subscriptions:
/// messages published before that would not reach it.
pub async fn wait_linked(gateway: &mut Gateway) {
    assert!(
        gateway.wait_upstream(TIMEOUT).await,
        "gateway connected upstream"
    );
    assert!(
        gateway
            .wait_log("Subscriptions acknowledged", TIMEOUT)
            .await,
        "the broker acknowledged the gateway's subscriptions"
    );
}

pub struct MqttRig {
    pub prosody: Prosody,
    pub mosquitto: Mosquitto,
    pub gateway: Gateway,
    /// The gateway's component domain: device `d` is `d@domain`.
    pub domain: String,
}

impl MqttRig {
    /// Registers `users` (password `pw`), starts the broker and the gateway with the config
    /// `config(prosody, component domain, broker)` makes, and waits until the gateway is
    /// connected upstream and subscribed at the broker.
    pub async fn start(
        users: &[&str],
        config: impl FnOnce(&Prosody, &str, &Mosquitto) -> String,
    ) -> MqttRig {
        let prosody = Prosody::start(ProsodyOpts::new().random_component()).await;
        for user in users {
            prosody.register(user, "pw").await;
        }
        let mosquitto = Mosquitto::start().await;
        let domain = prosody.component_domain().to_owned();
        let mut gateway = Gateway::spawn(&config(&prosody, &domain, &mosquitto));
        wait_linked(&mut gateway).await;
        MqttRig {
            prosody,
            mosquitto,
            gateway,
            domain,
        }
    }

    pub fn jid(&self, device: &str) -> Jid {
        Jid::new(&format!("{device}@{}", self.domain)).expect("device jid")
    }

    pub async fn user(&self, name: &str) -> TestClient {
        TestClient::connect(&self.prosody, name, "pw").await
    }

    /// `name` subscribed to `devices` (each approved).
    pub async fn subscriber(&self, name: &str, devices: &[&str]) -> TestClient {
        let mut c = self.user(name).await;
        for d in devices {
            let jid = self.jid(d);
            c.subscribe(&jid).await;
            c.recv_presence_from(&jid, PresenceType::Subscribed, TIMEOUT)
                .await
                .unwrap_or_else(|| panic!("subscription to {d} approved"));
        }
        c
    }

    pub async fn publish(&self, topic: &str, payload: &str) {
        self.mosquitto.publish(topic, payload, false).await;
    }
}
