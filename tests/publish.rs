//! Publishing beyond presence: push headlines to `[publish] notify` and PubSub items, against a
//! real server with a pubsub service (Prosody and ejabberd).

mod support;

use std::time::Duration;

use support::client::message_body;
use support::{Gateway, Kind, Server, ServerOpts, TestClient, TIMEOUT};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::MessageType;
use xmpp_parsers::minidom::Element;

const NS_SD: &str = "urn:xmpp:iot:sensordata";
const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";

fn config(prosody: &Server, domain: &str, publish: &str) -> String {
    format!(
        r#"
[gateway]
name = "publishing gateway"

{xmpp}
[access]
read = ["@localhost"]

[publish]
min_interval = "0s"
{publish}

[[adapter]]
id = "sim"
type = "simulated"

[[device]]
id = "thermo"
adapter = "sim"
poll = "200ms"

  [[device.field]]
  name = "temperature"
  unit = "°C"
  generator = "step"
  min = 10.0
  max = 20.0
  period = "200ms"
"#,
        xmpp = prosody.component_toml(domain)
    )
}

#[tokio::test]
async fn every_change_is_pushed_as_a_headline() {
    let prosody = Server::start(Kind::Prosody, ServerOpts::new().random_component()).await;
    prosody.register("carol", "pw").await;
    let domain = prosody.component_domain().to_owned();
    let mut carol = TestClient::connect(&prosody, "carol", "pw").await;
    let mut gw = Gateway::spawn(&config(
        &prosody,
        &domain,
        r#"notify = ["carol@localhost"]"#,
    ));
    assert!(
        gw.wait_upstream(TIMEOUT).await,
        "gateway connected upstream"
    );
    let thermo = Jid::new(&format!("thermo@{domain}")).expect("jid");
    let mut bodies = Vec::new();
    while bodies.len() < 4 {
        let m = carol
            .recv_message(TIMEOUT, |m| {
                m.type_ == MessageType::Headline && m.from.as_ref() == Some(&thermo)
            })
            .await
            .expect("a headline per change");
        let fields = m
            .payloads
            .iter()
            .find(|p| p.is("fields", NS_SD))
            .expect("the fields payload");
        assert_eq!(fields.attr("done"), Some("true"));
        let body = message_body(&m).expect("a readable body");
        assert!(
            body.starts_with("temperature ") && body.ends_with(" °C"),
            "{body}"
        );
        bodies.push(body);
    }
    // Each headline is a change: consecutive ones differ.
    assert!(bodies.windows(2).all(|w| w[0] != w[1]), "{bodies:?}");
}

async fn readings_are_published_to_pubsub(kind: Kind) {
    let prosody = Server::start(kind, ServerOpts::new().random_component().pubsub()).await;
    prosody.register("dave", "pw").await;
    let domain = prosody.component_domain().to_owned();
    let service = Jid::new(prosody.pubsub_domain()).expect("jid");
    let mut gw = Gateway::spawn(&config(
        &prosody,
        &domain,
        &format!("pubsub = \"{service}\""),
    ));
    assert!(
        gw.wait_upstream(TIMEOUT).await,
        "gateway connected upstream"
    );
    let mut dave = TestClient::connect(&prosody, "dave", "pw").await;

    // The gateway creates the node on first use; subscribe once it exists.
    let subscribe = format!(
        "<pubsub xmlns='{NS_PUBSUB}'><subscribe node='iot/thermo/sensordata' jid='{}'/></pubsub>",
        dave.bare_jid()
    );
    let mut subscribed = false;
    for _ in 0..50 {
        if dave
            .iq_set(&service, subscribe.parse::<Element>().expect("xml"))
            .await
            .is_ok()
        {
            subscribed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        subscribed,
        "node iot/thermo/sensordata never appeared:\n{}",
        gw.log_text()
    );
    let event = dave
        .recv_message(TIMEOUT, |m| {
            m.payloads.iter().any(|p| p.is("event", NS_EVENT))
        })
        .await
        .expect("an item notification");
    let ev = event
        .payloads
        .iter()
        .find(|p| p.is("event", NS_EVENT))
        .expect("event");
    let items = ev.get_child("items", NS_EVENT).expect("items");
    assert_eq!(items.attr("node"), Some("iot/thermo/sensordata"));
    let item = items.get_child("item", NS_EVENT).expect("item");
    assert_eq!(item.attr("id"), Some("current"));
    let fields = item
        .get_child("fields", NS_SD)
        .expect("XEP-0323 fields in the item");
    assert!(fields
        .children()
        .any(|n| n.attr("nodeId") == Some("thermo")));
}

per_server!(readings_are_published_to_pubsub);
