//! `[publish] room`: devices join a MUC room on a real server (creating and unlocking it),
//! post their changes there and answer commands addressed to their nick. Each test runs against
//! Prosody and ejabberd.

use std::time::Duration;

use crate::per_server;
use crate::support::client::message_body;
use crate::support::gateway_toml::{
    device, integer_setting, sim_adapter, stepping_thermo, Section,
};
use crate::support::{Gateway, GatewayToml, Kind, Server, ServerOpts, TestClient, TIMEOUT};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

const NS_MUC: &str = "http://jabber.org/protocol/muc";

async fn devices_join_post_changes_and_answer_their_nick(kind: Kind) {
    let server = Server::start(kind, ServerOpts::new().random_component().muc()).await;
    server.register("alice", "pw").await;
    let domain = server.component_domain().to_owned();
    let room = format!("plant@{}", server.muc_domain());
    let config = GatewayToml::new("room gateway", server.component_toml(&domain))
        .access("read", &["@localhost"])
        .access("control", &["alice@localhost"])
        .publish_every_reading()
        .section("publish", Section::new().set("room", room.as_str()))
        .adapter(sim_adapter())
        .device(stepping_thermo("300ms"))
        .device(device("relay", "sim").field(integer_setting("level", 1)))
        .build();
    let mut gw = Gateway::spawn(&config);
    assert!(
        gw.wait_upstream(TIMEOUT).await,
        "gateway connected upstream"
    );
    let mut alice = TestClient::connect(&server, "alice", "pw").await;

    // Join once the gateway has created and unlocked the room (a locked room says item-not-found).
    let me = Jid::new(&format!("{room}/alice")).expect("jid");
    let mut joined = false;
    for _ in 0..50 {
        let mut p = Presence::available().with_to(me.clone());
        p.payloads.push(Element::builder("x", NS_MUC).build());
        alice.send(p).await;
        let answer = alice
            .recv_presence(TIMEOUT, |p| p.from.as_ref() == Some(&me))
            .await
            .expect("an answer to the join");
        if answer.type_ != PresenceType::Error {
            joined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(joined, "alice could not join the room:\n{}", gw.log_text());
    for nick in ["thermo", "relay"] {
        let occupant = Jid::new(&format!("{room}/{nick}")).expect("jid");
        alice
            .recv_presence(TIMEOUT, |p| p.from.as_ref() == Some(&occupant))
            .await
            .unwrap_or_else(|| panic!("{nick} is in the room"));
    }

    let thermo = Jid::new(&format!("{room}/thermo")).expect("jid");
    let is_groupchat_from =
        |m: &Message, who: &Jid| m.type_ == MessageType::Groupchat && m.from.as_ref() == Some(who);
    let post = alice
        .recv_message(TIMEOUT, |m| {
            is_groupchat_from(m, &thermo)
                && message_body(m).is_some_and(|b| b.starts_with("temperature "))
        })
        .await
        .expect("thermo posts its changes");
    assert!(message_body(&post).is_some_and(|b| b.ends_with("°C")));

    let say = |body: &str| {
        Message::new_with_type(MessageType::Groupchat, Some(Jid::new(&room).expect("room")))
            .with_body(xmpp_parsers::message::Lang::new(), body.to_owned())
    };
    alice.send(say("thermo: get temperature")).await;
    let answer = alice
        .recv_message(TIMEOUT, |m| {
            is_groupchat_from(m, &thermo)
                && message_body(m).is_some_and(|b| b.starts_with("alice: "))
        })
        .await
        .expect("thermo answers alice");
    assert!(
        message_body(&answer).is_some_and(|b| b.contains("temperature:")),
        "{answer:?}"
    );

    // The device that created the room moderates it and so sees alice's real JID: she may set.
    let relay = Jid::new(&format!("{room}/relay")).expect("jid");
    alice.send(say("relay: set level 5")).await;
    let done = alice
        .recv_message(TIMEOUT, |m| {
            is_groupchat_from(m, &relay)
                && message_body(m).is_some_and(|b| b.starts_with("alice: "))
        })
        .await
        .expect("relay answers");
    assert_eq!(
        message_body(&done).as_deref(),
        Some("alice: Done: level = 5")
    );
    assert!(gw.is_running());
}

/// The room hands every occupant its own copy of a message: with three devices seated, one
/// command reaches the gateway three times and must still be answered once and written once.
async fn a_command_in_a_room_of_several_devices_is_answered_and_written_once(kind: Kind) {
    let server = Server::start(kind, ServerOpts::new().random_component().muc()).await;
    server.register("alice", "pw").await;
    let domain = server.component_domain().to_owned();
    let room = format!("plant@{}", server.muc_domain());
    let config = GatewayToml::upstream(server.component_toml(&domain))
        .access("read", &["@localhost"])
        .access("control", &["alice@localhost"])
        .section("publish", Section::new().set("room", room.as_str()))
        .adapter(sim_adapter())
        .devices(
            ["s1", "s2", "s3"].map(|id| device(id, "sim").field(integer_setting("speed", 1000))),
        )
        .build();
    let mut gw = Gateway::spawn(&config);
    assert!(
        gw.wait_upstream(TIMEOUT).await,
        "gateway connected upstream"
    );
    let mut alice = TestClient::connect(&server, "alice", "pw").await;
    join_when_unlocked(&mut alice, &room, &gw).await;
    for nick in ["s1", "s2", "s3"] {
        let occupant = Jid::new(&format!("{room}/{nick}")).expect("jid");
        alice
            .recv_presence(TIMEOUT, |p| p.from.as_ref() == Some(&occupant))
            .await
            .unwrap_or_else(|| panic!("{nick} is in the room"));
    }
    let say = |body: &str| {
        Message::new_with_type(MessageType::Groupchat, Some(Jid::new(&room).expect("room")))
            .with_body(xmpp_parsers::message::Lang::new(), body.to_owned())
    };
    alice.send(say("s1: set speed 1100")).await;
    alice
        .recv_message(TIMEOUT, |m| {
            message_body(m).as_deref() == Some("alice: Done: speed = 1100")
        })
        .await
        .expect("s1 confirms the write");
    alice.send(say("s2: help")).await;
    alice
        .recv_message(TIMEOUT, |m| answers_alice(m, "s2"))
        .await
        .expect("s2 answers help");
    // The room relays the gateway's posts in order: once this answer is in, every copy of the
    // commands above has been handled. A sentinel from another device makes sure of it.
    alice.send(say("s3: get speed")).await;
    alice
        .recv_message(TIMEOUT, |m| answers_alice(m, "s3"))
        .await
        .expect("s3 answers get");
    assert!(gw.terminate().await.success());
    let messages: Vec<Message> = alice
        .drain()
        .into_iter()
        .filter_map(|st| match st {
            xmpp_parsers::stanza::Stanza::Message(m) => Some(m),
            _ => None,
        })
        .collect();
    let extra_done = messages
        .iter()
        .filter(|m| message_body(m).as_deref() == Some("alice: Done: speed = 1100"))
        .count();
    let extra_help = messages.iter().filter(|m| answers_alice(m, "s2")).count();
    assert_eq!(extra_done, 0, "the write was confirmed more than once");
    assert_eq!(extra_help, 0, "help was answered more than once");
    let conn = rusqlite::Connection::open(gw.state_dir().join("gateway.db")).expect("store");
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
        .expect("count audit rows");
    assert_eq!(rows, 1, "one command, one write, one audit row");
}

/// A groupchat answer from occupant `nick` to alice.
fn answers_alice(m: &Message, nick: &str) -> bool {
    m.from
        .as_ref()
        .and_then(|f| f.resource())
        .is_some_and(|r| r.as_str() == nick)
        && message_body(m).is_some_and(|b| b.starts_with("alice: "))
}

/// Joins `room` as alice once the gateway has created and unlocked it (a locked room answers
/// item-not-found).
async fn join_when_unlocked(alice: &mut TestClient, room: &str, gw: &Gateway) {
    let me = Jid::new(&format!("{room}/alice")).expect("jid");
    for _ in 0..50 {
        let mut p = Presence::available().with_to(me.clone());
        p.payloads.push(Element::builder("x", NS_MUC).build());
        alice.send(p).await;
        let answer = alice
            .recv_presence(TIMEOUT, |p| p.from.as_ref() == Some(&me))
            .await
            .expect("an answer to the join");
        if answer.type_ != PresenceType::Error {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("alice could not join the room:\n{}", gw.log_text());
}

per_server!(
    devices_join_post_changes_and_answer_their_nick,
    a_command_in_a_room_of_several_devices_is_answered_and_written_once,
);
