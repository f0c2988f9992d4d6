//! Checks the test rig itself (tests/support): a private Prosody starts, accounts register, two
//! test clients talk through it, IQs are matched, and a restart keeps the ports. No gateway here.

use std::net::TcpStream;

use crate::support::client::{message_body, TestClient};
use crate::support::{Ejabberd, EjabberdOpts, Prosody, ProsodyOpts, TIMEOUT};
use xmpp_parsers::message::MessageType;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::Type as PresenceType;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::DefinedCondition;

#[tokio::test]
async fn prosody_starts_and_relays_chat_between_two_users() {
    let prosody = Prosody::start(ProsodyOpts::new().random_component().muc().pubsub()).await;
    prosody.register("alice", "alice-pw").await;
    prosody.register("bob", "bob-pw").await;

    let mut alice = TestClient::connect(&prosody, "alice", "alice-pw").await;
    let mut bob = TestClient::connect(&prosody, "bob", "bob-pw").await;
    assert_eq!(alice.bare_jid().to_string(), "alice@localhost");

    alice.chat(bob.full_jid(), "hello bob").await;
    let msg = bob
        .recv_message(TIMEOUT, |m| m.type_ == MessageType::Chat)
        .await
        .expect("bob receives alice's chat");
    assert_eq!(msg.from.as_ref(), Some(&alice.full_jid().into()));
    assert_eq!(message_body(&msg).as_deref(), Some("hello bob"));

    // A stanza that arrived while the test was waiting for something else stays available.
    alice.chat(bob.bare_jid(), "first").await;
    alice.chat(bob.bare_jid(), "second").await;
    let second = bob
        .recv_message(TIMEOUT, |m| message_body(m).as_deref() == Some("second"))
        .await
        .expect("second message");
    assert_eq!(message_body(&second).as_deref(), Some("second"));
    let first = bob
        .recv_message(TIMEOUT, |m| message_body(m).as_deref() == Some("first"))
        .await
        .expect("first message was buffered");
    assert_eq!(message_body(&first).as_deref(), Some("first"));

    // IQ replies are matched by id and sender: disco#info on the server itself.
    let info = alice
        .iq_get(
            "localhost",
            Element::builder("query", "http://jabber.org/protocol/disco#info").build(),
        )
        .await
        .expect("disco#info result")
        .expect("disco#info payload");
    assert!(info.is("query", "http://jabber.org/protocol/disco#info"));

    // The component domain is configured: while no component is connected Prosody answers for it
    // with an error rather than item-not-found for an unknown host.
    let ping = Element::builder("ping", "urn:xmpp:ping").build();
    let err = alice
        .iq_get(prosody.component_domain(), ping)
        .await
        .expect_err("component is offline");
    assert_eq!(
        err.defined_condition,
        DefinedCondition::RemoteServerTimeout,
        "{err:?}"
    );

    // MUC and pubsub services exist.
    for service in [prosody.muc_domain(), prosody.pubsub_domain()] {
        let info = alice
            .iq_get(
                service,
                Element::builder("query", "http://jabber.org/protocol/disco#info").build(),
            )
            .await
            .unwrap_or_else(|e| panic!("disco#info on {service}: {e:?}"));
        assert!(info.is_some());
    }

    // Presence subscription between two users goes through the roster.
    bob.subscribe(alice.bare_jid()).await;
    let request = alice
        .recv_presence_from(bob.bare_jid(), PresenceType::Subscribe, TIMEOUT)
        .await
        .expect("alice gets bob's subscription request");
    assert!(request.from.is_some());

    alice.disconnect().await;
    bob.disconnect().await;
}

#[tokio::test]
async fn prosody_restart_keeps_ports_accounts_and_clients_reconnect() {
    let mut prosody = Prosody::start(ProsodyOpts::new().random_component()).await;
    prosody.register("carol", "carol-pw").await;
    prosody.register("dave", "dave-pw").await;
    let (c2s, component) = (prosody.c2s_addr(), prosody.component_addr());
    let secret = prosody
        .component_secret(prosody.component_domain())
        .to_owned();
    assert!(prosody
        .component_toml(prosody.component_domain())
        .contains(&secret));

    let mut carol = TestClient::connect(&prosody, "carol", "carol-pw").await;
    let before = carol.online_count();
    let first_pid = prosody.pid();

    prosody.restart().await;
    assert_ne!(prosody.pid(), first_pid, "a new process");
    assert_eq!(prosody.c2s_addr(), c2s);
    assert_eq!(prosody.component_addr(), component);
    TcpStream::connect(c2s).expect("c2s port accepts after restart");
    TcpStream::connect(component).expect("component port accepts after restart");

    // Accounts live in the data dir and survive; the old client reconnects by itself.
    let mut dave = TestClient::connect(&prosody, "dave", "dave-pw").await;
    assert!(
        carol
            .wait_reconnected(before, std::time::Duration::from_secs(40))
            .await,
        "carol reconnects after the restart"
    );
    dave.chat(carol.bare_jid(), "after restart").await;
    let got = carol
        .recv_until(TIMEOUT, |s| {
            matches!(s, Stanza::Message(m) if message_body(m).as_deref() == Some("after restart"))
        })
        .await;
    assert!(got.is_some(), "carol receives a message after the restart");

    prosody.stop().await;
    assert!(!prosody.is_running());
    assert!(TcpStream::connect(c2s).is_err(), "stopped: port closed");
}

#[tokio::test]
async fn wrong_password_does_not_come_online() {
    let prosody = Prosody::start(ProsodyOpts::new()).await;
    prosody.register("erin", "right").await;
    let client = TestClient::try_connect_to(
        prosody.c2s_addr(),
        "erin@localhost",
        "wrong",
        std::time::Duration::from_secs(3),
    )
    .await;
    assert!(client.is_none());
    assert!(prosody.ca_path().exists());
}

#[tokio::test]
async fn ejabberd_starts_from_the_documented_snippet_and_relays_chat() {
    let mut server = Ejabberd::start(EjabberdOpts::new().random_component()).await;
    server.register("alice", "alice-pw").await;
    server.register("bob", "bob-pw").await;
    let mut alice = TestClient::connect(&server, "alice", "alice-pw").await;
    let mut bob = TestClient::connect(&server, "bob", "bob-pw").await;
    alice.chat(bob.full_jid(), "hello bob").await;
    let msg = bob
        .recv_message(TIMEOUT, |m| m.type_ == MessageType::Chat)
        .await
        .expect("bob receives alice's chat");
    assert_eq!(message_body(&msg).as_deref(), Some("hello bob"));
    // The snippet's MUC and pubsub services are there.
    for service in [server.muc_domain(), server.pubsub_domain()] {
        let info = alice
            .iq_get(
                service,
                Element::builder("query", "http://jabber.org/protocol/disco#info").build(),
            )
            .await
            .unwrap_or_else(|e| panic!("disco#info on {service}: {e:?}"));
        assert!(info.is_some());
    }
    // As with Debian's configuration, SCRAM-SHA-1 is the strongest mechanism on offer (the
    // README says which one the gateway ends up with).
    let features = stream_features(server.c2s_addr()).await;
    assert!(
        features.contains("<mechanism>SCRAM-SHA-1</mechanism>")
            && !features.contains("SCRAM-SHA-256"),
        "{features}"
    );
    // A restart keeps ports and accounts; clients log in again.
    alice.disconnect().await;
    bob.disconnect().await;
    server.restart().await;
    TestClient::connect(&server, "alice", "alice-pw").await;
    server.stop().await;
    assert!(!server.is_running());
}

/// The server's first `<stream:features/>` to a client that opens a stream and does nothing else.
async fn stream_features(c2s: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(c2s).await.expect("connect");
    sock.write_all(
        b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' \
          xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
    )
    .await
    .expect("stream header");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("</stream:features>") {
        let n = tokio::time::timeout(TIMEOUT, sock.read(&mut buf))
            .await
            .expect("features in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before the features: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}
