//! `[publish] room`: devices join a MUC room on a real Prosody (creating and unlocking it),
//! post their changes there and answer commands addressed to their nick.

mod support;

use std::time::Duration;

use support::client::message_body;
use support::{Gateway, Prosody, ProsodyOpts, TestClient, TIMEOUT};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

const NS_MUC: &str = "http://jabber.org/protocol/muc";

#[tokio::test]
async fn devices_join_post_changes_and_answer_their_nick() {
    let prosody = Prosody::start(ProsodyOpts::new().random_component().muc()).await;
    prosody.register("alice", "pw").await;
    let domain = prosody.component_domain().to_owned();
    let room = format!("plant@{}", prosody.muc_domain());
    let config = format!(
        r#"
[gateway]
name = "room gateway"

{xmpp}
[access]
read = ["@localhost"]
control = ["alice@localhost"]

[publish]
min_interval = "0s"
room = "{room}"

[[adapter]]
id = "sim"
type = "simulated"

[[device]]
id = "thermo"
adapter = "sim"
poll = "300ms"

  [[device.field]]
  name = "temperature"
  unit = "°C"
  generator = "step"
  min = 10.0
  max = 20.0
  period = "300ms"

[[device]]
id = "relay"
adapter = "sim"

  [[device.field]]
  name = "level"
  type = "integer"
  generator = "constant"
  value = 1
  writable = true
"#,
        xmpp = prosody.component_toml(&domain)
    );
    let mut gw = Gateway::spawn(&config);
    assert!(
        gw.wait_upstream(TIMEOUT).await,
        "gateway connected upstream"
    );
    let mut alice = TestClient::connect(&prosody, "alice", "pw").await;

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
