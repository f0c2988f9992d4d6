//! Alerts and native-feeling chat, end to end: a real Prosody, the gateway binary, and test
//! users who chat with the devices as a phone client would.
//!
//! The watched value is a writable simulated field (a written value sticks), so a test moves
//! it across thresholds by chatting `set`, instead of waiting for a generator to get there.

use crate::support;
use std::time::Duration;

use crate::support::client::message_body;
use crate::support::gateway_toml::{device, field, sim_adapter, Section};
use crate::support::{Gateway, GatewayToml, Prosody, ProsodyOpts, TestClient, TIMEOUT};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Id, Lang, Message, MessageType, Thread};
use xmpp_parsers::minidom::Element;

const NS_SD: &str = "urn:xmpp:iot:sensordata";
const NS_RECEIPTS: &str = "urn:xmpp:receipts";
const NS_OOB: &str = "jabber:x:oob";

/// Time for a gateway restart and reconnect, on a loaded machine.
const RESTART: Duration = Duration::from_secs(30);

fn config(prosody: &Prosody, domain: &str) -> String {
    GatewayToml::new("alert gateway", prosody.component_toml(domain))
        .gateway("history", "1h")
        .gateway("commit_interval", "100ms")
        .access("read", &["bob@localhost"])
        .access("control", &["alice@localhost"])
        .publish_every_reading()
        .adapter(sim_adapter())
        .device(
            device("freezer", "sim")
                .set("name", "Freezer")
                .set("poll", "200ms")
                .field(
                    field("temperature")
                        .set("unit", "°C")
                        .set("generator", "constant")
                        .set("value", -10.0)
                        .set("writable", true),
                ),
        )
        .device(
            device("pump", "sim")
                .set("name", "Pump")
                .set("poll", "200ms")
                .set("offline_every", "2s")
                .set("offline_for", "1s")
                .field(field("flow").set("generator", "constant").set("value", 1.0)),
        )
        .alert(
            Section::new()
                .set("id", "warm")
                .set("device", "freezer")
                .set("field", "temperature")
                .set("above", -12.0)
                .set("for", "1s")
                .set("clear", -15.0)
                .set("repeat", "3s")
                .list("to", &["bob@localhost"]),
        )
        .alert(
            Section::new()
                .set("id", "pump-gone")
                .set("device", "pump")
                .set("offline", true)
                .list("to", &["alice@localhost"])
                .set("message", "{device} stopped answering ({id})"),
        )
        .build()
}

struct Rig {
    prosody: Prosody,
    gateway: Gateway,
    freezer: Jid,
    pump: Jid,
}

impl Rig {
    async fn start() -> Rig {
        Rig::start_with(ProsodyOpts::new()).await
    }

    async fn start_with(opts: ProsodyOpts) -> Rig {
        let prosody = Prosody::start(opts.random_component()).await;
        for user in ["alice", "bob"] {
            prosody.register(user, "pw").await;
        }
        let domain = prosody.component_domain().to_owned();
        let mut gateway = Gateway::spawn(&config(&prosody, &domain));
        assert!(
            gateway.wait_upstream(TIMEOUT).await,
            "gateway connected upstream"
        );
        Rig {
            freezer: Jid::new(&format!("freezer@{domain}")).expect("jid"),
            pump: Jid::new(&format!("pump@{domain}")).expect("jid"),
            prosody,
            gateway,
        }
    }

    async fn user(&self, name: &str) -> TestClient {
        TestClient::connect(&self.prosody, name, "pw").await
    }
}

/// The next chat message from `from` whose body passes `pred`.
async fn chat_from(
    client: &mut TestClient,
    from: &Jid,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> Message {
    let from = from.clone();
    let stanza = client
        .expect(RESTART, what, |s| match s {
            xmpp_parsers::stanza::Stanza::Message(m) => {
                m.type_ == MessageType::Chat
                    && m.from
                        .as_ref()
                        .is_some_and(|f| f.to_bare() == from.to_bare())
                    && message_body(m).is_some_and(|b| pred(&b))
            }
            _ => false,
        })
        .await;
    match stanza {
        xmpp_parsers::stanza::Stanza::Message(m) => m,
        _ => unreachable!("only messages match"),
    }
}

async fn set(alice: &mut TestClient, freezer: &Jid, value: &str) {
    let done = alice
        .chat_and_wait(freezer, &format!("set temperature {value}"), TIMEOUT)
        .await
        .expect("set answer");
    assert!(done.starts_with("Done"), "{done}");
}

/// Sends `text` and returns the answer, passing over the configured alert's messages (bob is
/// told about the warm freezer while he chats with it).
async fn ask(client: &mut TestClient, device: &Jid, text: &str) -> String {
    client.chat(device, text).await;
    let m = chat_from(client, device, "an answer", |b| !is_alert(b)).await;
    message_body(&m).expect("body")
}

fn is_alert(body: &str) -> bool {
    body.contains("[alert warm]")
}

#[tokio::test]
async fn configured_alerts_fire_hold_clear_repeat_and_survive_a_restart() {
    let started = tokio::time::Instant::now();
    let mut rig = Rig::start().await;
    let freezer = rig.freezer.clone();
    let mut alice = rig.user("alice").await;
    let mut bob = rig.user("bob").await;

    // The freezer starts warm: after `for`, bob hears it, as a chat with the reading's fields.
    let fired = chat_from(&mut bob, &freezer, "the alert", is_alert).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the alert waited for `for`"
    );
    let body = message_body(&fired).expect("body");
    assert_eq!(
        body,
        "Freezer: temperature -10 °C (temperature > -12 for 1 s) [alert warm]"
    );
    let fields = fired
        .payloads
        .iter()
        .find(|p| p.is("fields", NS_SD))
        .expect("XEP-0323 fields in the alert");
    assert!(String::from(fields).contains("name='temperature'"));

    // `repeat`: a reminder while it still holds.
    let again = chat_from(&mut bob, &freezer, "a reminder", is_alert).await;
    let again = message_body(&again).expect("body");
    assert!(
        again.starts_with("Still: Freezer: temperature -10 °C"),
        "{again}"
    );

    // Hysteresis: below the threshold but not below `clear` is not "normal" yet.
    set(&mut alice, &freezer, "-14").await;
    set(&mut alice, &freezer, "-16").await;
    let cleared = chat_from(&mut bob, &freezer, "the all-clear", |b| {
        b.contains("back to normal")
    })
    .await;
    let cleared = message_body(&cleared).expect("body");
    assert!(
        cleared.starts_with("Freezer: back to normal after ")
            && cleared.ends_with("(temperature -16 °C) [alert warm]"),
        "{cleared}"
    );

    // Re-armed: warm again fires again.
    set(&mut alice, &freezer, "-5").await;
    let fired = chat_from(&mut bob, &freezer, "the second alert", |b| {
        is_alert(b) && !b.starts_with("Still")
    })
    .await;
    assert!(message_body(&fired).expect("body").contains("-5 °C"));

    // A restart (the written value is lost: the field is -10 again, still warm) does not fire
    // it again: the first word after the restart is a reminder of the alert that was firing.
    assert!(rig.gateway.terminate().await.success());
    let _ = bob.drain();
    rig.gateway.start();
    let after = chat_from(&mut bob, &freezer, "a message after the restart", is_alert).await;
    let after = message_body(&after).expect("body");
    assert!(
        after.starts_with("Still: "),
        "fired again after a restart: {after}"
    );

    // Every event is in the audit table.
    assert!(rig.gateway.terminate().await.success());
    let db = rusqlite::Connection::open(rig.gateway.state_dir().join("gateway.db")).expect("db");
    let results: Vec<String> = db
        .prepare("SELECT result FROM audit WHERE requester = 'alert warm' ORDER BY rowid")
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(results.first().map(String::as_str), Some("fired"));
    assert!(results.iter().any(|r| r == "cleared"), "{results:?}");
    assert!(results.iter().any(|r| r == "reminder"), "{results:?}");
    assert_eq!(
        results.iter().filter(|r| *r == "fired").count(),
        2,
        "{results:?}"
    );
}

/// Gateway log lines of the pump's alert with this event.
fn pump_events(gw: &Gateway, event: &str) -> usize {
    gw.log_text()
        .lines()
        .filter(|l| l.contains("alert=pump-gone") && l.contains(&format!("event=\"{event}\"")))
        .count()
}

#[tokio::test]
async fn alerts_during_an_outage_are_sent_once_when_the_server_is_back() {
    let mut rig = Rig::start().await;
    let pump = rig.pump.clone();
    let mut alice = rig.user("alice").await;
    chat_from(&mut alice, &pump, "a first alert", |b| {
        b.contains("pump-gone")
    })
    .await;

    rig.prosody.stop().await;
    // The baseline is taken once the gateway's core knows the link is down: an alert fired
    // before that went out on the dead stream (a component stream has no acknowledgements) and
    // is lost, not held; from that log line on, every alert is held for the server's return.
    assert!(
        rig.gateway
            .wait_log("upstream down; holding presence until it returns", RESTART)
            .await,
        "the gateway noticed the outage:\n{}",
        support::tail(&rig.gateway.log_text(), 40)
    );
    let (fired, cleared) = (
        pump_events(&rig.gateway, "fired"),
        pump_events(&rig.gateway, "cleared"),
    );
    // The pump drops off every 2 s for 1 s: wait for one whole flap while the server is down.
    assert!(
        support::eventually(RESTART, || pump_events(&rig.gateway, "fired") > fired
            && pump_events(&rig.gateway, "cleared") > cleared)
        .await,
        "the alert fired and cleared during the outage"
    );
    // Counted while the server is still down: an event after the gateway is back is sent live,
    // without a stamp, and must not be expected among the held ones.
    let (fired_down, cleared_down) = (
        pump_events(&rig.gateway, "fired") - fired,
        pump_events(&rig.gateway, "cleared") - cleared,
    );
    rig.prosody.start_again().await;
    assert!(alice.wait_reconnected(1, RESTART).await, "alice is back");

    // What happened meanwhile arrives first, stamped by the gateway (XEP-0203) with when it
    // happened; then live alerts again (Prosody may store those for alice: its own stamp).
    let stamp_by = |m: &Message, by: &str| {
        m.payloads
            .iter()
            .find(|p| p.is("delay", "urn:xmpp:delay") && p.attr("from") == Some(by))
            .and_then(|d| d.attr("stamp").map(str::to_owned))
    };
    let pump_name = pump.to_string();
    let stamp = |m: &Message| stamp_by(m, &pump_name);
    // The alert sent just before the outage may come back too: Prosody keeps what alice's
    // stream-managed session had not acknowledged and stores it for her, stamped with her own
    // bare JID. That one is from before the outage, not live.
    let resent = |m: &Message| stamp_by(m, "alice@localhost").is_some();
    let live = alice
        .recv_message(RESTART, |m| {
            m.from
                .as_ref()
                .is_some_and(|f| f.to_bare() == pump.to_bare())
                && stamp(m).is_none()
                && !resent(m)
        })
        .await
        .unwrap_or_else(|| panic!("no live alert after the outage"));
    assert!(
        message_body(&live).is_some(),
        "a live alert has a body: {live:?}"
    );
    let held: Vec<(String, String)> = alice
        .drain()
        .into_iter()
        .filter_map(|s| match s {
            xmpp_parsers::stanza::Stanza::Message(m) => Some((stamp(&m)?, message_body(&m)?)),
            _ => None,
        })
        .collect();
    assert!(held.len() >= fired_down + cleared_down, "{held:?}");
    assert!(
        held.iter()
            .any(|(_, b)| b == "Pump stopped answering (pump-gone)"),
        "{held:?}"
    );
    assert!(
        held.iter().any(|(_, b)| b.contains("back to normal")),
        "{held:?}"
    );
    let mut unique = held.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        held.len(),
        "each held alert was sent once: {held:?}"
    );
}

#[tokio::test]
async fn offline_alerts_use_the_template() {
    let rig = Rig::start().await;
    let mut alice = rig.user("alice").await;
    let pump = rig.pump.clone();
    chat_from(&mut alice, &pump, "the offline alert", |b| {
        b == "Pump stopped answering (pump-gone)"
    })
    .await;
    let back = chat_from(&mut alice, &pump, "the all-clear", |b| {
        b.contains("back to normal")
    })
    .await;
    assert!(message_body(&back)
        .expect("body")
        .contains("(online again) [alert pump-gone]"));
}

#[tokio::test]
async fn users_set_list_and_remove_their_own_alerts_by_chat() {
    let mut rig = Rig::start().await;
    let freezer = rig.freezer.clone();
    let mut bob = rig.user("bob").await;
    let help = ask(&mut bob, &freezer, "help").await;
    assert!(help.contains("alert <field> > <number>"), "{help}");
    let bad = ask(&mut bob, &freezer, "alert temprature > 3").await;
    assert_eq!(bad, "No field `temprature`. Fields: temperature.");
    let bad = ask(&mut bob, &freezer, "alert temperature > warm").await;
    assert_eq!(bad, "`warm` is not a number.");
    let bad = ask(&mut bob, &freezer, "alert off 7").await;
    assert_eq!(bad, "You have no alert 7. `alerts` lists yours.");

    // The freezer is at -10: an alert above -12 fires at once, to bob alone.
    let set = ask(&mut bob, &freezer, "alert temperature > -12").await;
    assert_eq!(
        set,
        "Alert 1 set: temperature > -12. `alerts` lists yours; `alert off 1` removes it."
    );
    let fired = chat_from(&mut bob, &freezer, "bob's alert", |b| {
        b.ends_with("[alert 1]")
    })
    .await;
    assert_eq!(
        message_body(&fired).expect("body"),
        "Freezer: temperature -10 °C (temperature > -12) [alert 1]"
    );
    let set = ask(&mut bob, &freezer, "alert temperature < -30 for 10m").await;
    assert!(
        set.starts_with("Alert 2 set: temperature < -30 for 10 min."),
        "{set}"
    );

    // Kept across a restart, with the configured alert that tells bob.
    assert!(rig.gateway.terminate().await.success());
    rig.gateway.start();
    assert!(
        bob.wait_answering(&freezer, RESTART).await,
        "the gateway is back"
    );
    let list = ask(&mut bob, &freezer, "alerts").await;
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines[0], "Alerts:");
    assert!(lines.contains(&"1: temperature > -12 (firing)"), "{list}");
    assert!(lines.contains(&"2: temperature < -30 for 10 min"), "{list}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[warm] temperature > -12")),
        "{list}"
    );

    let removed = ask(&mut bob, &freezer, "alert off 1").await;
    assert_eq!(removed, "Alert 1 removed.");
    let list = ask(&mut bob, &freezer, "alerts").await;
    assert!(!list.contains("1: "), "{list}");
    assert!(list.contains("2: temperature < -30"), "{list}");
}

#[tokio::test]
async fn receipts_are_answered_and_replies_stay_in_the_thread() {
    let rig = Rig::start().await;
    let freezer = rig.freezer.clone();
    let mut bob = rig.user("bob").await;
    assert!(bob.wait_answering(&freezer, TIMEOUT).await);

    let mut m = Message::new_with_type(MessageType::Chat, Some(freezer.clone()))
        .with_body(Lang::new(), "get temperature".to_owned());
    m.id = Some(Id("phone-1".into()));
    m.thread = Some(Thread {
        parent: None,
        id: "kitchen".into(),
    });
    m.payloads
        .push(Element::builder("request", NS_RECEIPTS).build());
    bob.send(m).await;

    let receipt = bob
        .recv_message(TIMEOUT, |m| {
            m.payloads.iter().any(|p| p.is("received", NS_RECEIPTS))
        })
        .await
        .expect("a delivery receipt");
    let received = receipt
        .payloads
        .iter()
        .find(|p| p.is("received", NS_RECEIPTS))
        .expect("received");
    assert_eq!(received.attr("id"), Some("phone-1"));
    assert_eq!(
        receipt.from.as_ref().map(|f| f.to_bare()),
        Some(freezer.to_bare())
    );

    let answer = chat_from(&mut bob, &freezer, "the answer", |b| {
        b.starts_with("temperature:")
    })
    .await;
    assert_eq!(
        answer.thread.as_ref().map(|t| t.id.clone()),
        Some("kitchen".into())
    );

    // A message without a request gets no receipt.
    bob.chat(&freezer, "get").await;
    chat_from(&mut bob, &freezer, "the second answer", |b| {
        b.starts_with("temperature:")
    })
    .await;
    assert!(
        !bob.drain()
            .iter()
            .any(|s| matches!(s, xmpp_parsers::stanza::Stanza::Message(m)
            if m.payloads.iter().any(|p| p.is("received", NS_RECEIPTS)))),
        "no receipt was asked for"
    );
}

#[tokio::test]
async fn chart_answers_with_a_sparkline_and_min_max_mean() {
    let rig = Rig::start().await;
    let freezer = rig.freezer.clone();
    let mut alice = rig.user("alice").await;
    assert!(alice.wait_answering(&freezer, TIMEOUT).await);
    // Two values in the history: the constant -10 and a written -20.
    set(&mut alice, &freezer, "-20").await;
    let line = ask(&mut alice, &freezer, "chart Temperature 1h").await;
    assert!(line.starts_with("temperature, last 1 h: "), "{line}");
    assert!(line.contains(" min -20 °C, max -10 °C, mean -1"), "{line}");
    assert!(line.chars().any(|c| ('▁'..='█').contains(&c)), "{line}");
    // No upload service on this server: the sparkline was the whole answer.
    assert!(
        !alice
            .drain()
            .iter()
            .any(|s| matches!(s, xmpp_parsers::stanza::Stanza::Message(m)
            if m.payloads.iter().any(|p| p.is("x", NS_OOB)))),
        "no picture without an upload service"
    );
    let bad = ask(&mut alice, &freezer, "chart pressure").await;
    assert_eq!(bad, "No field `pressure`. Fields: temperature.");
    let bad = ask(&mut alice, &freezer, "chart temperature 3 parsecs").await;
    assert_eq!(bad, "No field `3`. Fields: temperature.");
    let bad = ask(&mut alice, &freezer, "chart").await;
    assert!(bad.starts_with("Usage: chart"), "{bad}");
}

#[tokio::test]
async fn chart_uploads_a_png_through_the_servers_upload_service() {
    let rig = Rig::start_with(ProsodyOpts::new().upload()).await;
    let freezer = rig.freezer.clone();
    let mut alice = rig.user("alice").await;
    assert!(alice.wait_answering(&freezer, TIMEOUT).await);
    set(&mut alice, &freezer, "-20").await;
    alice.chat(&freezer, "chart temperature 2h").await;
    let picture = alice
        .recv_message(RESTART, |m| m.payloads.iter().any(|p| p.is("x", NS_OOB)))
        .await
        .unwrap_or_else(|| panic!("no picture; received:\n{}", alice.dump_buffer()));
    let url = message_body(&picture).expect("the URL is the body");
    let oob = picture
        .payloads
        .iter()
        .find(|p| p.is("x", NS_OOB))
        .and_then(|x| x.get_child("url", NS_OOB))
        .map(|u| u.text());
    assert_eq!(oob.as_deref(), Some(url.as_str()));
    assert!(
        url.starts_with(&format!("http://{}/", rig.prosody.http_addr())),
        "{url}"
    );
    // The text with min/max/mean follows the picture.
    let text = chat_from(&mut alice, &freezer, "the numbers", |b| {
        b.starts_with("temperature, last 2 h: ")
    })
    .await;
    assert!(message_body(&text)
        .expect("body")
        .contains("min -20 °C, max -10 °C"));

    // The file is a PNG of the documented size.
    let body = tokio::task::spawn_blocking(move || {
        let resp = ureq::get(&url).call().expect("download the chart");
        assert_eq!(resp.header("Content-Type"), Some("image/png"));
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut bytes).expect("read");
        bytes
    })
    .await
    .expect("download task");
    let decoder = png::Decoder::new(body.as_slice());
    let reader = decoder.read_info().expect("a valid PNG");
    let info = reader.info();
    assert_eq!(
        (info.width, info.height),
        xmpp_iot_gateway::charts::picture::size(1)
    );
    if let Some(dir) = std::env::var_os("CHART_SAMPLE_DIR") {
        std::fs::write(std::path::Path::new(&dir).join("chart.png"), &body).expect("keep sample");
    }
}
