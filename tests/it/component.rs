//! Component mode (XEP-0114) end to end: a real server, the gateway binary, and test users who
//! log in over c2s and talk to the devices as any XMPP client would. The interoperability tests
//! run against Prosody and ejabberd (`per_server!`).

use crate::per_server;
use crate::support;
use std::time::Duration;

use crate::support::client::{message_body, presence_status};
use crate::support::gateway_toml::{device, field, integer_setting, sim_adapter};
use crate::support::{Gateway, GatewayToml, Kind, Server, ServerOpts, TestClient, TIMEOUT};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::MessageType;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::Type as PresenceType;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::DefinedCondition;

const NS_SD: &str = "urn:xmpp:iot:sensordata";
const NS_CTL: &str = "urn:xmpp:iot:control";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";

/// A server hosting one component, three users, and a gateway with two simulated devices.
/// alice may control, bob may read, eve may do nothing.
struct Rig {
    server: Server,
    gateway: Gateway,
    domain: String,
}

impl Rig {
    async fn start(kind: Kind) -> Rig {
        let server = Server::start(kind, ServerOpts::new().random_component()).await;
        for user in ["alice", "bob", "eve"] {
            server.register(user, "pw").await;
        }
        let domain = server.component_domain().to_owned();
        let mut gateway = Gateway::spawn(&config(&server, &domain));
        assert!(
            gateway.wait_upstream(TIMEOUT).await,
            "gateway connected upstream"
        );
        Rig {
            server,
            gateway,
            domain,
        }
    }

    fn jid(&self, device: &str) -> Jid {
        Jid::new(&format!("{device}@{}", self.domain)).expect("device jid")
    }

    async fn user(&self, name: &str) -> TestClient {
        TestClient::connect(&self.server, name, "pw").await
    }
}

/// alice may control, bob may read; `Thermo` steps its temperature every 300 ms and carries a
/// label with XML specials, `relay` has a writable switch and level.
fn config(server: &Server, domain: &str) -> String {
    GatewayToml::new("test gateway", server.component_toml(domain))
        .gateway("history", "1h")
        .access("read", &["bob@localhost"])
        .access("control", &["alice@localhost"])
        .publish_every_reading()
        .adapter(sim_adapter())
        .device(
            device("Thermo", "sim")
                .set("name", "Thermometer <1> & co")
                .set("poll", "300ms")
                .field(
                    field("temperature")
                        .set("unit", "°C")
                        .set("generator", "step")
                        .set("min", 10.0)
                        .set("max", 20.0)
                        .set("period", "300ms"),
                )
                .field(
                    field("label")
                        .set("type", "string")
                        .set("generator", "constant")
                        .set("value", "a<b & 'c'"),
                ),
        )
        .device(
            device("relay", "sim")
                .set("poll", "1s")
                .field(
                    field("on")
                        .set("type", "boolean")
                        .set("generator", "constant")
                        .set("value", false)
                        .set("writable", true),
                )
                .field(integer_setting("level", 3).set("unit", "%")),
        )
        .build()
}

fn req(seqnr: &str) -> Element {
    Element::builder("req", NS_SD)
        .attr(
            xmpp_parsers::minidom::rxml::xml_ncname!("seqnr").to_owned(),
            seqnr,
        )
        .attr(
            xmpp_parsers::minidom::rxml::xml_ncname!("momentary").to_owned(),
            "true",
        )
        .build()
}

fn el(xml: &str) -> Element {
    xml.parse().expect("test XML")
}

fn condition(e: &xmpp_parsers::stanza_error::StanzaError) -> DefinedCondition {
    e.defined_condition.clone()
}

/// Waits for the `fields` message of readout `seqnr` from `from` and returns its payload.
async fn fields_message(client: &mut TestClient, from: &Jid, seqnr: &str) -> Element {
    let m = client
        .recv_message(TIMEOUT, |m| {
            m.from.as_ref() == Some(from)
                && m.payloads
                    .iter()
                    .any(|p| p.is("fields", NS_SD) && p.attr("seqnr") == Some(seqnr))
        })
        .await
        .unwrap_or_else(|| panic!("no fields message for readout {seqnr}"));
    m.payloads
        .into_iter()
        .find(|p| p.is("fields", NS_SD))
        .expect("fields payload")
}

/// The value of field `name` in a `fields` payload.
fn field_value(fields: &Element, name: &str) -> Option<(String, String)> {
    fields
        .children()
        .flat_map(|node| node.children())
        .flat_map(|ts| ts.children())
        .find(|f| f.attr("name") == Some(name))
        .map(|f| {
            (
                f.name().to_owned(),
                f.attr("value").unwrap_or("").to_owned(),
            )
        })
}

async fn subscriptions_follow_the_access_lists_and_presence_carries_values(kind: Kind) {
    let rig = Rig::start(kind).await;
    let thermo = rig.jid("thermo");
    let mut bob = rig.user("bob").await;
    let mut eve = rig.user("eve").await;

    bob.subscribe(&thermo).await;
    bob.recv_presence_from(&thermo, PresenceType::Subscribed, TIMEOUT)
        .await
        .expect("bob's subscription is approved");
    let p = bob
        .recv_presence(TIMEOUT, |p| {
            p.type_ == PresenceType::None
                && presence_status(p).is_some_and(|s| s.contains("temperature"))
        })
        .await
        .expect("bob receives the device's presence with its values");
    let status = presence_status(&p).expect("status");
    assert!(status.contains("°C"), "{status}");
    assert!(
        status.contains("a<b & 'c'"),
        "device strings reach the status intact: {status}"
    );

    // Values keep coming as the simulated temperature steps.
    let first = status.clone();
    bob.recv_presence(TIMEOUT, |p| {
        presence_status(p).is_some_and(|s| s.contains("temperature") && s != first)
    })
    .await
    .expect("a later presence carries a new value");

    eve.subscribe(&thermo).await;
    eve.recv_presence_from(&thermo, PresenceType::Unsubscribed, TIMEOUT)
        .await
        .expect("eve's subscription is refused");
    assert!(
        eve.recv_presence_from(&thermo, PresenceType::None, Duration::from_millis(500))
            .await
            .is_none(),
        "eve must never see the device's presence"
    );

    // At login the server probes bob's contacts; the gateway answers with current presence.
    bob.disconnect().await;
    let mut bob = rig.user("bob").await;
    bob.recv_presence(TIMEOUT, |p| {
        p.from
            .as_ref()
            .is_some_and(|f| f.to_bare() == thermo.to_bare())
            && p.type_ == PresenceType::None
    })
    .await
    .expect("the probe at login is answered");

    // Unsubscribing ends the updates (Prosody does not pass the device's `unsubscribed` on to a
    // user who is no longer subscribed, so the gateway's side is checked).
    bob.unsubscribe(&thermo).await;
    assert!(rig.gateway.wait_log("subscription removed", TIMEOUT).await);
    // A presence the device sent just before that may still be on its way: the answer to a
    // ping comes after it (the gateway answers in order, the server delivers in order).
    bob.iq_get(&thermo, el("<ping xmlns='urn:xmpp:ping'/>"))
        .await
        .expect("pong from the device");
    bob.drain();
    assert!(
        bob.recv_presence_from(&thermo, PresenceType::None, Duration::from_secs(1))
            .await
            .is_none(),
        "no presence after unsubscribing"
    );
}

async fn the_gateway_and_its_devices_answer_iqs(kind: Kind) {
    let rig = Rig::start(kind).await;
    let thermo = rig.jid("thermo");
    let relay = rig.jid("relay");
    let domain = Jid::new(&rig.domain).expect("domain jid");
    let mut alice = rig.user("alice").await;
    let mut eve = rig.user("eve").await;

    // disco#info on a device: identity and only the features that work.
    let info = alice
        .iq_get(&thermo, el(&format!("<query xmlns='{DISCO_INFO}'/>")))
        .await
        .expect("result")
        .expect("payload");
    let features: Vec<&str> = info
        .children()
        .filter(|c| c.name() == "feature")
        .filter_map(|c| c.attr("var"))
        .collect();
    for f in [
        DISCO_INFO,
        NS_SD,
        "urn:xmpp:ping",
        "jabber:iq:version",
        "urn:xmpp:time",
    ] {
        assert!(features.contains(&f), "missing {f} in {features:?}");
    }
    assert!(!features.contains(&NS_CTL), "thermo has no writable field");
    let identity = info.get_child("identity", DISCO_INFO).expect("identity");
    assert_eq!(identity.attr("name"), Some("Thermometer <1> & co"));
    let info = alice
        .iq_get(&relay, el(&format!("<query xmlns='{DISCO_INFO}'/>")))
        .await
        .expect("result")
        .expect("payload");
    assert!(
        info.children().any(|c| c.attr("var") == Some(NS_CTL)),
        "relay is controllable"
    );

    // An unknown node is item-not-found.
    let err = alice
        .iq_get(
            &thermo,
            el(&format!("<query xmlns='{DISCO_INFO}' node='nope'/>")),
        )
        .await
        .expect_err("error");
    assert_eq!(condition(&err), DefinedCondition::ItemNotFound);

    // disco#items on the domain lists what the requester may read.
    let items = alice
        .iq_get(&domain, el(&format!("<query xmlns='{DISCO_ITEMS}'/>")))
        .await
        .expect("result")
        .expect("payload");
    let mut jids: Vec<&str> = items.children().filter_map(|i| i.attr("jid")).collect();
    jids.sort();
    assert_eq!(jids, vec![relay.to_string(), thermo.to_string()]);
    let items = eve
        .iq_get(&domain, el(&format!("<query xmlns='{DISCO_ITEMS}'/>")))
        .await
        .expect("result")
        .expect("payload");
    assert_eq!(items.children().count(), 0, "eve may read nothing");

    // Ping, version and time, on the gateway and on a device.
    for to in [&domain, &thermo] {
        alice
            .iq_get(to, el("<ping xmlns='urn:xmpp:ping'/>"))
            .await
            .expect("pong");
        let v = alice
            .iq_get(to, el("<query xmlns='jabber:iq:version'/>"))
            .await
            .expect("result")
            .expect("payload");
        assert_eq!(
            v.get_child("name", "jabber:iq:version")
                .map(|n| n.text())
                .as_deref(),
            Some("xmpp-iot-gateway")
        );
        let t = alice
            .iq_get(to, el("<time xmlns='urn:xmpp:time'/>"))
            .await
            .expect("result")
            .expect("payload");
        assert!(t
            .get_child("utc", "urn:xmpp:time")
            .is_some_and(|u| u.text().ends_with('Z')));
    }

    // Unknown payloads and unknown JIDs.
    let err = alice
        .iq_get(&thermo, el("<query xmlns='urn:example:nothing'/>"))
        .await
        .expect_err("error");
    assert_eq!(condition(&err), DefinedCondition::ServiceUnavailable);
    let nobody = Jid::new(&format!("nobody@{}", rig.domain)).expect("jid");
    let err = alice
        .iq_get(&nobody, el("<ping xmlns='urn:xmpp:ping'/>"))
        .await
        .expect_err("error");
    assert_eq!(condition(&err), DefinedCondition::ServiceUnavailable);

    // The access lists apply to every IQ on a device.
    let err = eve
        .iq_get(&thermo, el("<ping xmlns='urn:xmpp:ping'/>"))
        .await
        .expect_err("error");
    assert_eq!(condition(&err), DefinedCondition::Forbidden);
    let err = eve.iq_get(&thermo, req("5")).await.expect_err("error");
    assert_eq!(condition(&err), DefinedCondition::Forbidden);

    // Result and error IQs are never answered: the next thing from the device is the pong.
    alice
        .send(Iq::Result {
            from: None,
            to: Some(thermo.clone()),
            id: "stray".into(),
            payload: None,
        })
        .await;
    let pong = alice
        .iq(
            Iq::from_get("after-stray", xmpp_parsers::ping::Ping).with_to(thermo.clone()),
            TIMEOUT,
        )
        .await;
    assert!(matches!(pong, Some(Iq::Result { .. })), "{pong:?}");
    assert!(
        alice
            .recv_until(
                Duration::from_millis(300),
                |s| matches!(s, Stanza::Iq(i) if i.id() == "stray")
            )
            .await
            .is_none(),
        "a result IQ got an answer"
    );
}

async fn momentary_readouts_follow_xep_0323(kind: Kind) {
    let rig = Rig::start(kind).await;
    let thermo = rig.jid("thermo");
    let relay = rig.jid("relay");
    let mut bob = rig.user("bob").await;

    let accepted = bob
        .iq_get(&thermo, req("7"))
        .await
        .expect("accepted")
        .expect("payload");
    assert!(accepted.is("accepted", NS_SD));
    assert_eq!(accepted.attr("seqnr"), Some("7"));
    let fields = fields_message(&mut bob, &thermo, "7").await;
    assert_eq!(fields.attr("done"), Some("true"));
    let node = fields.get_child("node", NS_SD).expect("node");
    assert_eq!(node.attr("nodeId"), Some("thermo"));
    let ts = node.get_child("timestamp", NS_SD).expect("timestamp");
    assert!(
        ts.attr("value").is_some_and(|v| v.ends_with('Z')),
        "UTC timestamps"
    );
    let temp = ts
        .children()
        .find(|f| f.attr("name") == Some("temperature"))
        .expect("temperature field");
    assert!(temp.is("numeric", NS_SD));
    assert_eq!(temp.attr("unit"), Some("°C"));
    let t: f64 = temp
        .attr("value")
        .expect("value")
        .parse()
        .expect("a number");
    assert!((10.0..=20.0).contains(&t), "{t}");
    assert_eq!(
        field_value(&fields, "label"),
        Some(("string".into(), "a<b & 'c'".into()))
    );

    // Integers go out as numeric (slixmpp drops int/long); writable fields say so.
    bob.iq_get(&relay, req("8")).await.expect("accepted");
    let fields = fields_message(&mut bob, &relay, "8").await;
    assert_eq!(
        field_value(&fields, "level"),
        Some(("numeric".into(), "3".into()))
    );
    let on = fields
        .children()
        .flat_map(|n| n.children())
        .flat_map(|t| t.children())
        .find(|f| f.attr("name") == Some("on"))
        .expect("on");
    assert_eq!(on.attr("writable"), Some("true"));

    // A field filter.
    bob.iq_get(
        &thermo,
        el(&format!(
            "<req xmlns='{NS_SD}' seqnr='9' momentary='true'><field name='label'/></req>"
        )),
    )
    .await
    .expect("accepted");
    let fields = fields_message(&mut bob, &thermo, "9").await;
    assert!(field_value(&fields, "temperature").is_none());
    assert!(field_value(&fields, "label").is_some());

    // Errors from the checklist.
    let err = bob
        .iq_get(
            &thermo,
            el(&format!("<req xmlns='{NS_SD}' momentary='true'/>")),
        )
        .await
        .expect_err("no seqnr");
    assert_eq!(condition(&err), DefinedCondition::BadRequest);
    let err = bob
        .iq_get(
            &thermo,
            el(&format!(
                "<req xmlns='{NS_SD}' seqnr='10'><node nodeId='other'/></req>"
            )),
        )
        .await
        .expect_err("unknown node");
    assert_eq!(condition(&err), DefinedCondition::ItemNotFound);
    let err = bob
        .iq_get(
            &thermo,
            el(&format!("<cancel xmlns='{NS_SD}' seqnr='99'/>")),
        )
        .await
        .expect_err("nothing to cancel");
    assert_eq!(condition(&err), DefinedCondition::ItemNotFound);
}

#[tokio::test]
async fn queued_readouts_start_later_and_can_be_cancelled() {
    let rig = Rig::start(Kind::Prosody).await;
    let thermo = rig.jid("thermo");
    let mut bob = rig.user("bob").await;
    let when = |secs: i64| {
        (chrono::Utc::now() + chrono::Duration::seconds(secs))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };

    let accepted = bob
        .iq_get(
            &thermo,
            el(&format!(
                "<req xmlns='{NS_SD}' seqnr='1' momentary='true' when='{}'/>",
                when(2)
            )),
        )
        .await
        .expect("accepted")
        .expect("payload");
    assert_eq!(accepted.attr("queued"), Some("true"));
    bob.recv_message(TIMEOUT, |m| {
        m.payloads
            .iter()
            .any(|p| p.is("started", NS_SD) && p.attr("seqnr") == Some("1"))
    })
    .await
    .expect("started");
    let fields = fields_message(&mut bob, &thermo, "1").await;
    assert_eq!(fields.attr("done"), Some("true"));

    bob.iq_get(
        &thermo,
        el(&format!(
            "<req xmlns='{NS_SD}' seqnr='2' momentary='true' when='{}'/>",
            when(60)
        )),
    )
    .await
    .expect("accepted");
    let cancelled = bob
        .iq_get(&thermo, el(&format!("<cancel xmlns='{NS_SD}' seqnr='2'/>")))
        .await
        .expect("cancelled")
        .expect("payload");
    assert!(cancelled.is("cancelled", NS_SD));
}

async fn chat_commands_and_control_respect_the_access_lists(kind: Kind) {
    let rig = Rig::start(kind).await;
    let thermo = rig.jid("thermo");
    let relay = rig.jid("relay");
    let mut alice = rig.user("alice").await;
    let mut bob = rig.user("bob").await;
    let mut eve = rig.user("eve").await;

    let help = bob
        .chat_and_wait(&thermo, "help", TIMEOUT)
        .await
        .expect("help answer");
    assert!(help.contains("get"), "{help}");
    let all = bob
        .chat_and_wait(&thermo, "get", TIMEOUT)
        .await
        .expect("get answer");
    assert!(
        all.contains("temperature") && all.contains("°C") && all.contains("label"),
        "{all}"
    );
    let one = bob
        .chat_and_wait(&thermo, "GET label", TIMEOUT)
        .await
        .expect("get label");
    assert!(
        one.contains("a<b & 'c'") && !one.contains("temperature"),
        "{one}"
    );
    let nope = bob
        .chat_and_wait(&thermo, "dance", TIMEOUT)
        .await
        .expect("hint");
    assert!(nope.contains("help"), "{nope}");

    // bob may read but not set; eve may not even read.
    let refused = bob
        .chat_and_wait(&relay, "set on true", TIMEOUT)
        .await
        .expect("refusal");
    assert!(refused.to_lowercase().contains("not"), "{refused}");
    eve.chat(&relay, "get").await;
    let bounced = eve
        .recv_message(TIMEOUT, |m| m.type_ == MessageType::Error)
        .await
        .expect("eve's chat bounces with an error");
    assert!(message_body(&bounced).is_none());

    // alice sets through chat, then through XEP-0325, and a readout shows the new values.
    let done = alice
        .chat_and_wait(&relay, "set on on", TIMEOUT)
        .await
        .expect("set answer");
    assert!(done.starts_with("Done"), "{done}");
    let set = el(&format!(
        "<set xmlns='{NS_CTL}'><int name='level' value='42'/></set>"
    ));
    let resp = alice
        .iq_set(&relay, set)
        .await
        .expect("setResponse")
        .expect("payload");
    assert!(resp.is("setResponse", NS_CTL));
    assert_eq!(resp.attr("responseCode"), Some("OK"));
    alice.iq_get(&relay, req("3")).await.expect("accepted");
    let fields = fields_message(&mut alice, &relay, "3").await;
    assert_eq!(field_value(&fields, "on").map(|v| v.1), Some("true".into()));
    assert_eq!(
        field_value(&fields, "level").map(|v| v.1),
        Some("42".into())
    );

    // One bad parameter: nothing is written.
    let set = el(&format!("<set xmlns='{NS_CTL}'><int name='level' value='7'/><boolean name='on' value='maybe'/></set>"));
    let err = alice.iq_set(&relay, set).await.expect_err("bad parameter");
    assert_eq!(condition(&err), DefinedCondition::BadRequest);
    assert_eq!(err.other.as_ref().and_then(|o| o.attr("var")), Some("on"));
    let err = alice
        .iq_set(
            &relay,
            el(&format!(
                "<set xmlns='{NS_CTL}'><int name='voltage' value='1'/></set>"
            )),
        )
        .await
        .expect_err("unknown");
    assert_eq!(condition(&err), DefinedCondition::ItemNotFound);
    let err = alice
        .iq_set(
            &thermo,
            el(&format!(
                "<set xmlns='{NS_CTL}'><double name='temperature' value='1'/></set>"
            )),
        )
        .await
        .expect_err("read-only");
    assert_eq!(condition(&err), DefinedCondition::ItemNotFound);
    let err = bob
        .iq_set(
            &relay,
            el(&format!(
                "<set xmlns='{NS_CTL}'><int name='level' value='1'/></set>"
            )),
        )
        .await
        .expect_err("bob");
    assert_eq!(condition(&err), DefinedCondition::Forbidden);
    alice.iq_get(&relay, req("4")).await.expect("accepted");
    let fields = fields_message(&mut alice, &relay, "4").await;
    assert_eq!(
        field_value(&fields, "level").map(|v| v.1),
        Some("42".into()),
        "nothing was written"
    );
}

async fn presence_comes_back_after_gateway_and_server_restarts(kind: Kind) {
    let mut rig = Rig::start(kind).await;
    let thermo = rig.jid("thermo");
    let mut alice = rig.user("alice").await;
    alice.subscribe(&thermo).await;
    alice
        .recv_presence_from(&thermo, PresenceType::Subscribed, TIMEOUT)
        .await
        .expect("approved");
    alice
        .recv_presence_from(&thermo, PresenceType::None, TIMEOUT)
        .await
        .expect("available");

    // SIGTERM: every device goes unavailable and the gateway exits 0.
    let status = rig.gateway.terminate().await;
    assert!(status.success(), "exit status {status}");
    let gone = alice
        .recv_presence_from(&thermo, PresenceType::Unavailable, TIMEOUT)
        .await
        .expect("unavailable at shutdown");
    assert_eq!(presence_status(&gone).as_deref(), Some("gateway stopped"));

    // Restarted, it remembers alice and tells her unprompted.
    alice.drain();
    rig.gateway.start();
    alice
        .recv_presence_from(&thermo, PresenceType::None, TIMEOUT)
        .await
        .expect("available after a gateway restart");

    // The server restarts: the gateway reconnects by itself. A fresh login sees the device again
    // (through the gateway's announcement or its answer to the server's probe: either needs the
    // gateway back on the server).
    drop(alice);
    rig.server.restart().await;
    let mut alice = rig.user("alice").await;
    alice
        .recv_presence(Duration::from_secs(30), |p| {
            p.type_ == PresenceType::None
                && p.from
                    .as_ref()
                    .is_some_and(|f| f.to_bare() == thermo.to_bare())
        })
        .await
        .expect("available after a server restart");
    assert!(
        rig.gateway
            .wait_log("component connection restored", TIMEOUT)
            .await
            || rig
                .gateway
                .log_text()
                .matches("component connected")
                .count()
                >= 2
    );
    assert!(rig.gateway.is_running());
}

#[tokio::test]
async fn a_wrong_secret_is_reported_and_retried() {
    let prosody = support::Prosody::start(support::ProsodyOpts::new().random_component()).await;
    let domain = prosody.component_domain().to_owned();
    let server = Server::Prosody(prosody);
    let toml = config(&server, &domain);
    let secret = toml
        .lines()
        .find_map(|l| l.strip_prefix("secret = "))
        .expect("secret line")
        .to_owned();
    let toml = toml.replace(&secret, "\"not-the-secret\"");
    let mut gateway = Gateway::spawn(&toml);
    assert!(
        gateway.wait_ready(TIMEOUT).await,
        "READY=1 once the first attempt finished, even a failed one"
    );
    assert!(
        gateway
            .wait_log("refused the component handshake", TIMEOUT)
            .await,
        "{}",
        gateway.log_text()
    );
    assert!(
        !gateway.log_text().contains("not-the-secret"),
        "the secret must never be logged"
    );
    assert!(
        gateway.is_running(),
        "a refused handshake is retried, not fatal"
    );
}

#[tokio::test]
async fn systemd_hears_ready_status_and_stopping() {
    let rig = Rig::start(Kind::Prosody).await;
    let mut gateway = rig.gateway;
    assert!(gateway.wait_ready(TIMEOUT).await);
    assert!(gateway.wait_notify("STATUS=", TIMEOUT).await);
    let _ = gateway.terminate().await;
    assert!(
        gateway
            .notify_messages()
            .iter()
            .any(|m| m.contains("STOPPING=1")),
        "{:?}",
        gateway.notify_messages()
    );
}

#[tokio::test]
async fn check_prints_the_table_or_positioned_errors() {
    let out = Gateway::cli(
        None,
        &[
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml"),
            "check",
        ],
    )
    .await;
    assert!(out.success(), "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("upstream: component sensors.localhost via 127.0.0.1:5347\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("greenhouse@sensors.localhost"),
        "{}",
        out.stdout
    );

    // Raw on purpose: the error must point at line 6, column 1 of this very text.
    let bad = "[gateway]\nname = \"x\"\n\n[xmpp]\ndomian = \"gw.example.org\"\n";
    let out = Gateway::cli(Some(bad), &["check"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("gateway.toml:6:1:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("did you mean `domain`"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn the_read_command_reads_a_component_device() {
    let rig = Rig::start(Kind::Prosody).await;
    let thermo = rig.jid("thermo");
    // The device answers once the gateway is connected.
    let mut bob = rig.user("bob").await;
    bob.iq_get(&thermo, el("<ping xmlns='urn:xmpp:ping'/>"))
        .await
        .expect("pong");
    let pwfile = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(pwfile.path(), "pw\n").expect("write");
    let (ca, server, pw) = (
        rig.server.ca_path().display().to_string(),
        rig.server.c2s_addr().to_string(),
        pwfile.path().display().to_string(),
    );
    let thermo_s = thermo.to_string();
    let args = [
        "read",
        &thermo_s,
        "--jid",
        "bob@localhost",
        "--password-file",
        &pw,
        "--ca-file",
        &ca,
        "--server",
        &server,
    ];
    let out = Gateway::cli(None, &args).await;
    assert!(out.success(), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("FIELD"), "{}", out.stdout);
    assert!(
        out.stdout.contains("temperature") && out.stdout.contains("label"),
        "{}",
        out.stdout
    );

    // History: the store has kept the readings of the last minutes.
    let from = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let args = [
        "read",
        &thermo_s,
        "--field",
        "temperature",
        "--from",
        &from,
        "--jid",
        "bob@localhost",
        "--password-file",
        &pw,
        "--ca-file",
        &ca,
        "--server",
        &server,
        "--json",
    ];
    let out = Gateway::cli(None, &args).await;
    assert!(out.success(), "{}{}", out.stdout, out.stderr);
    let doc: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).expect("one JSON document");
    let fields = doc["fields"].as_array().expect("fields");
    assert!(
        !fields.is_empty() && fields.iter().all(|f| f["name"] == "temperature"),
        "{doc}"
    );

    // eve may not read: exit 1 with the condition.
    let args = [
        "read",
        &thermo_s,
        "--jid",
        "eve@localhost",
        "--password-file",
        &pw,
        "--ca-file",
        &ca,
        "--server",
        &server,
    ];
    let out = Gateway::cli(None, &args).await;
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("forbidden"), "{}", out.stderr);
}

per_server!(
    subscriptions_follow_the_access_lists_and_presence_carries_values,
    the_gateway_and_its_devices_answer_iqs,
    momentary_readouts_follow_xep_0323,
    chat_commands_and_control_respect_the_access_lists,
    presence_comes_back_after_gateway_and_server_restarts,
);

/// ejabberd with the default `global_routes: true` and two domains on one listener routes both
/// to whichever component logged in: stanzas for the other domain reach this gateway. They are
/// not its to answer (an answer would come from a JID it does not serve): dropped, reported once.
#[tokio::test]
async fn stanzas_for_a_domain_the_gateway_does_not_serve_are_not_answered() {
    let server = support::Ejabberd::start(
        support::EjabberdOpts::new()
            .random_component()
            .random_component()
            .global_routes(true),
    )
    .await;
    server.register("alice", "pw").await;
    let domains = server.component_domains();
    let (ours, other) = (domains[0].to_owned(), domains[1].to_owned());
    let toml = GatewayToml::upstream(server.component_toml(&ours))
        .access("read", &["@localhost"])
        .build();
    let mut gw = Gateway::spawn(&toml);
    assert!(
        gw.wait_upstream(TIMEOUT).await,
        "gateway connected upstream"
    );
    let mut alice = TestClient::connect(&server, "alice", "pw").await;
    let stranger = Jid::new(&format!("boiler@{other}")).expect("jid");
    alice.chat(&stranger, "help").await;
    // The gateway handles its input in order: once its own domain answers, the message for the
    // other domain has been dealt with.
    alice
        .iq_get(
            Jid::new(&ours).expect("jid"),
            el("<ping xmlns='urn:xmpp:ping'/>"),
        )
        .await
        .expect("pong from the gateway");
    let answers: Vec<String> = alice
        .drain()
        .iter()
        .filter(|st| support::client::is_from(st, &stranger))
        .map(support::client::show)
        .collect();
    assert!(answers.is_empty(), "answered for {other}: {answers:?}");
    assert!(
        gw.wait_log("does not serve", TIMEOUT).await,
        "{}",
        gw.log_text()
    );
}

/// Two gateways configured with the same domain: Prosody (`kick_old`) throws the older one out
/// with `conflict`, which reconnects and throws the other out. Both back off and each says once
/// what is wrong instead of warning at every round.
#[tokio::test]
async fn two_gateways_on_one_domain_back_off_and_warn_once() {
    let server = Server::start(Kind::Prosody, ServerOpts::new().random_component()).await;
    let domain = server.component_domain().to_owned();
    let toml = config(&server, &domain);
    let first = Gateway::spawn(&toml);
    let second = Gateway::spawn(&toml);
    let connects = |gw: &Gateway| {
        let log = gw.log_text();
        log.matches("component connected").count()
            + log.matches("component connection restored").count()
    };
    assert!(
        support::eventually(Duration::from_secs(60), || connects(&first)
            + connects(&second)
            >= 6)
        .await,
        "the gateways stopped taking the domain from each other:\n{}\n{}",
        first.log_text(),
        second.log_text()
    );
    for gw in [&first, &second] {
        let log = gw.log_text();
        assert!(
            log.matches("component connection replaced;").count() <= 1,
            "{log}"
        );
        assert!(!log.contains("component connection lost"), "{log}");
    }
    let warned = [&first, &second]
        .iter()
        .filter(|gw| gw.log_text().contains("component connection replaced;"))
        .count();
    assert!(warned >= 1, "nobody said what is wrong");
}
