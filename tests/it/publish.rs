//! Publishing beyond presence: push headlines to `[publish] notify` and PubSub items, against a
//! real server with a pubsub service (Prosody and ejabberd).

use crate::per_server;
use crate::support;
use std::time::Duration;

use crate::support::client::message_body;
use crate::support::gateway_toml::{field, sim_adapter, stepping_thermo, Section};
use crate::support::{Gateway, GatewayToml, Kind, Server, ServerOpts, TestClient, TIMEOUT};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::MessageType;
use xmpp_parsers::minidom::Element;

const NS_SD: &str = "urn:xmpp:iot:sensordata";
const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";

/// A gateway with the stepping thermometer `thermo`, every reading published, and the keys of
/// `publish` added to `[publish]`.
fn config(prosody: &Server, domain: &str, publish: Section, thermo: Section) -> String {
    GatewayToml::new("publishing gateway", prosody.component_toml(domain))
        .access("read", &["@localhost"])
        .publish_every_reading()
        .section("publish", publish)
        .adapter(sim_adapter())
        .device(thermo)
        .build()
}

/// `[publish]` keys: push headlines to `to`, in `format` if given.
fn notify(to: &str, format: Option<&str>) -> Section {
    let publish = Section::new().list("notify", &[to]);
    match format {
        Some(format) => publish.set("format", format),
        None => publish,
    }
}

/// Prosody, carol@localhost connected to it, a gateway that pushes to carol (in `format` if
/// given), and its device's JID. Keep the server and gateway alive for the test.
async fn carol_and_gateway(format: Option<&str>) -> (Server, TestClient, Gateway, Jid) {
    let prosody = Server::start(Kind::Prosody, ServerOpts::new().random_component()).await;
    prosody.register("carol", "pw").await;
    let domain = prosody.component_domain().to_owned();
    let carol = TestClient::connect(&prosody, "carol", "pw").await;
    let mut gw = Gateway::spawn(&config(
        &prosody,
        &domain,
        notify("carol@localhost", format),
        stepping_thermo("200ms"),
    ));
    assert!(
        gw.wait_upstream(TIMEOUT).await,
        "gateway connected upstream"
    );
    let thermo = Jid::new(&format!("thermo@{domain}")).expect("jid");
    (prosody, carol, gw, thermo)
}

#[tokio::test]
async fn every_change_is_pushed_as_a_headline() {
    let (_prosody, mut carol, _gw, thermo) = carol_and_gateway(None).await;
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

#[tokio::test]
async fn a_text_push_is_the_body_alone() {
    let (_prosody, mut carol, _gw, thermo) = carol_and_gateway(Some("text")).await;
    for _ in 0..2 {
        let m = carol
            .recv_message(TIMEOUT, |m| {
                m.type_ == MessageType::Headline && m.from.as_ref() == Some(&thermo)
            })
            .await
            .expect("a headline per change");
        assert!(m.payloads.is_empty(), "{:?}", m.payloads);
        let body = message_body(&m).expect("a readable body");
        assert!(
            body.starts_with("temperature ") && body.ends_with(" °C"),
            "{body}"
        );
    }
}

async fn readings_are_published_to_pubsub(kind: Kind) {
    let prosody = Server::start(kind, ServerOpts::new().random_component().pubsub()).await;
    prosody.register("dave", "pw").await;
    let domain = prosody.component_domain().to_owned();
    let service = Jid::new(prosody.pubsub_domain()).expect("jid");
    let mut gw = Gateway::spawn(&config(
        &prosody,
        &domain,
        Section::new().set("pubsub", service.to_string()),
        stepping_thermo("200ms"),
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

/// [`config`] with a second field, a constant string, read together with the temperature, and
/// push headlines to sink@localhost (in `format` if given).
fn two_field_config(prosody: &Server, domain: &str, format: Option<&str>) -> String {
    let thermo = stepping_thermo("200ms").field(
        field("label")
            .set("type", "string")
            .set("generator", "constant")
            .set("value", "north wall"),
    );
    config(prosody, domain, notify("sink@localhost", format), thermo)
}

/// Three pushes as slixmpp's XEP-0323 client reads them: (body, timestamps), where each timestamp
/// is the list of its fields as slixmpp reports them.
async fn pushes_read_by_slixmpp(
    format: Option<&str>,
) -> Vec<(String, Vec<Vec<serde_json::Value>>)> {
    let prosody = Server::start(Kind::Prosody, ServerOpts::new().random_component()).await;
    prosody.register("sink", "pw").await;
    let domain = prosody.component_domain().to_owned();
    let mut gw = Gateway::spawn(&two_field_config(&prosody, &domain, format));
    assert!(
        gw.wait_upstream(TIMEOUT).await,
        "gateway connected upstream:\n{}",
        gw.log_text()
    );
    let out = support::run_command(
        std::process::Command::new(support::modbus::python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/push_reader.py"
            ))
            .args(["--jid", "sink@localhost/slixmpp", "--password", "pw"])
            .args(["--server", &prosody.c2s_addr().to_string()])
            .arg("--ca")
            .arg(prosody.ca_path())
            .args(["--from", &format!("thermo@{domain}"), "--count", "3"]),
        prosody.dir(),
        Duration::from_secs(60),
    )
    .await;
    assert!(
        out.status.success(),
        "the slixmpp reader failed:\n{}\n{}\ngateway log:\n{}",
        out.stdout,
        out.stderr,
        gw.log_text()
    );
    out.stdout
        .lines()
        .map(|line| {
            let push: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let body = push["body"].as_str().expect("a body").to_owned();
            let timestamps = push["timestamps"]
                .as_array()
                .expect("timestamps")
                .iter()
                .map(|t| {
                    assert_eq!(t["nodeId"], "thermo", "{line}");
                    t["fields"].as_array().expect("fields").clone()
                })
                .collect();
            (body, timestamps)
        })
        .collect()
}

#[tokio::test]
async fn a_compact_push_reads_in_slixmpp_and_in_a_chat_client() {
    let pushes = pushes_read_by_slixmpp(None).await;
    assert_eq!(pushes.len(), 3);
    for (body, timestamps) in &pushes {
        // Both fields were read at one time: one <timestamp> holds them.
        assert_eq!(timestamps.len(), 1, "{body}: {timestamps:?}");
        let fields = &timestamps[0];
        let temperature = fields
            .iter()
            .find(|f| f["name"] == "temperature")
            .expect("temperature");
        let label = fields.iter().find(|f| f["name"] == "label").expect("label");
        assert_eq!(temperature["typename"], "numeric");
        assert_eq!(temperature["unit"], "°C");
        assert_eq!(label["typename"], "string");
        // Current values; the quality flag XEP-0323 assumes when none is set is not written.
        for f in [temperature, label] {
            assert_eq!(f["flags"], serde_json::json!({"momentary": "true"}), "{f}");
        }
        // The body is the same reading as one line of text.
        let value = temperature["value"].as_str().expect("a value");
        value.parse::<f64>().expect("a number");
        assert_eq!(
            *body,
            format!(
                "temperature {value} °C, label {}",
                label["value"].as_str().expect("a value")
            )
        );
    }
}

#[tokio::test]
async fn the_full_push_format_spells_out_every_flag() {
    let pushes = pushes_read_by_slixmpp(Some("full")).await;
    assert_eq!(pushes.len(), 3);
    for (body, timestamps) in &pushes {
        let fields: Vec<_> = timestamps.iter().flatten().collect();
        assert_eq!(fields.len(), 2, "{body}: {timestamps:?}");
        for f in fields {
            assert_eq!(
                f["flags"],
                serde_json::json!({"momentary": "true", "automaticReadout": "true"}),
                "{f}"
            );
        }
        assert!(body.starts_with("temperature "), "{body}");
    }
}
