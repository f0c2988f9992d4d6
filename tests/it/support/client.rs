//! [`TestClient`]: an XMPP user for tests, on tokio-xmpp 6 over plaintext c2s.
//!
//! A background task owns a tokio-xmpp `StanzaStream`: it forwards every received stanza into a
//! channel (so the connection is always drained, even while the test is busy elsewhere), sends
//! what the test hands it, and re-sends initial presence when the client reconnects without
//! resumption (after a Prosody restart). The `TestClient` keeps a buffer of stanzas that no wait
//! has consumed yet, so `recv_until` also finds a stanza that arrived before it was called.
//!
//! Not tokio-xmpp's `Client`: its internal worker polls a mutex-shared receiver that returns
//! `Pending` without a waker whenever a send holds the mutex, and then never delivers another
//! stanza (the gateway avoids it for the same reason; see `src/xmpp/c2s.rs`).
//!
//! Plaintext because tokio-xmpp 6 has no way to trust a custom CA short of a process-wide
//! `SSL_CERT_FILE`; Prosody is configured to allow it (see prosody.rs).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_xmpp::connect::{DnsConfig, TcpServerConnector};
use tokio_xmpp::stanzastream::{Event, StanzaStage, StanzaState, StanzaStream, StreamEvent};
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::PrintRawXml;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::{Lang, Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::StanzaError;

use super::server::C2s;
use super::{random_id, TIMEOUT};

/// How long `connect` waits for `Event::Online`. A wrong password makes tokio-xmpp retry forever
/// without telling us, so this deadline is how that shows up.
const ONLINE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long closing the stream may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Anything that names a JID; a string that is not a valid JID panics (test code).
pub trait IntoJid {
    fn into_jid(self) -> Jid;
}

impl IntoJid for Jid {
    fn into_jid(self) -> Jid {
        self
    }
}
impl IntoJid for &Jid {
    fn into_jid(self) -> Jid {
        self.clone()
    }
}
impl IntoJid for BareJid {
    fn into_jid(self) -> Jid {
        self.into()
    }
}
impl IntoJid for &BareJid {
    fn into_jid(self) -> Jid {
        self.clone().into()
    }
}
impl IntoJid for FullJid {
    fn into_jid(self) -> Jid {
        self.into()
    }
}
impl IntoJid for &FullJid {
    fn into_jid(self) -> Jid {
        self.clone().into()
    }
}
impl IntoJid for &str {
    fn into_jid(self) -> Jid {
        Jid::new(self).unwrap_or_else(|e| panic!("invalid JID {self:?}: {e}"))
    }
}
impl IntoJid for String {
    fn into_jid(self) -> Jid {
        self.as_str().into_jid()
    }
}
impl IntoJid for &String {
    fn into_jid(self) -> Jid {
        self.as_str().into_jid()
    }
}

/// Work for the background task.
enum Command {
    /// Send a stanza; the reply says whether it reached the socket.
    Send(Box<Stanza>, oneshot::Sender<Result<(), String>>),
    /// Close the stream, then acknowledge.
    Close(oneshot::Sender<()>),
}

/// One logged-in XMPP user. Dropping it closes the stream in the background.
pub struct TestClient {
    /// Our full JID (Prosody binds the resource we ask for: `test-<random>` unless one was given).
    jid: FullJid,
    /// To the background task; dropping it makes the task close the stream and exit.
    commands: mpsc::UnboundedSender<Command>,
    /// Every stanza received, from the background task, in order.
    incoming: mpsc::UnboundedReceiver<Stanza>,
    /// Count of `Event::Online` so far (1 after connect; more after reconnects).
    online: watch::Receiver<u64>,
    /// Received stanzas that no wait has taken yet, oldest first.
    buffer: VecDeque<Stanza>,
}

impl TestClient {
    /// Logs in as `user@localhost` (or `user` if it contains `@`) on `prosody`'s c2s port,
    /// fetches the roster (which makes the session "interested" so Prosody forwards subscription
    /// answers) and sends initial presence.
    pub async fn connect(server: &impl C2s, user: &str, pass: &str) -> TestClient {
        let jid = if user.contains('@') {
            user.to_owned()
        } else {
            format!("{user}@{}", server.domain())
        };
        Self::connect_to(server.c2s_addr(), &jid, pass).await
    }

    /// Like [`connect`](Self::connect) with an explicit address and JID; panics if not online
    /// within 15 s (a wrong password looks like this).
    pub async fn connect_to(c2s: SocketAddr, jid: &str, pass: &str) -> TestClient {
        match Self::try_connect_to(c2s, jid, pass, ONLINE_TIMEOUT).await {
            Some(client) => client,
            None => panic!(
                "{jid} did not come online at {c2s} within {ONLINE_TIMEOUT:?} \
                 (wrong password? not registered? see the Prosody log)"
            ),
        }
    }

    /// `None` if the login does not complete within `timeout`.
    pub async fn try_connect_to(
        c2s: SocketAddr,
        jid: &str,
        pass: &str,
        timeout: Duration,
    ) -> Option<TestClient> {
        let jid = match jid.into_jid().try_into_full() {
            Ok(full) => full,
            Err(bare) => bare
                .with_resource_str(&random_id("test-"))
                .expect("random resource is valid"),
        };
        let client = StanzaStream::new_c2s(
            TcpServerConnector::from(DnsConfig::addr(&c2s.to_string())),
            jid.clone().into(),
            pass.to_owned(),
            Timeouts::tight(),
            16,
        );
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let (online_tx, mut online) = watch::channel(0u64);
        let task = tokio::spawn(drive(client, command_rx, incoming_tx, online_tx));

        let came_online = matches!(
            tokio::time::timeout(timeout, online.wait_for(|n| *n > 0)).await,
            Ok(Ok(_))
        );
        if !came_online {
            task.abort();
            return None;
        }
        let mut client = TestClient {
            jid,
            commands,
            incoming,
            online,
            buffer: VecDeque::new(),
        };
        let roster = || Iq::Get {
            from: None,
            to: None,
            id: String::new(),
            payload: Element::builder("query", "jabber:iq:roster").build(),
        };
        if let Err(e) = client.iq_expect(roster(), TIMEOUT).await {
            panic!("roster get failed for {}: {e:?}", client.jid);
        }
        client.send(Presence::available()).await;
        // The server handles a session's stanzas in order: once this answer is in, the
        // presence above is in effect, and messages to the bare JID (headlines, which a server
        // drops while no resource is available) reach this session.
        if let Err(e) = client.iq_expect(roster(), TIMEOUT).await {
            panic!("roster get after presence failed for {}: {e:?}", client.jid);
        }
        Some(client)
    }

    pub fn full_jid(&self) -> FullJid {
        self.jid.clone()
    }

    pub fn bare_jid(&self) -> BareJid {
        self.jid.to_bare()
    }

    /// Number of times the client has come online (1 after connect).
    pub fn online_count(&self) -> u64 {
        *self.online.borrow()
    }

    /// Waits until the client has come online more than `count` times (i.e. reconnected after a
    /// Prosody restart); initial presence has been re-sent by then.
    pub async fn wait_reconnected(&mut self, count: u64, timeout: Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.online.wait_for(|n| *n > count)).await,
            Ok(Ok(_))
        )
    }

    /// Sends a stanza; panics if it cannot be written within [`TIMEOUT`].
    pub async fn send(&mut self, stanza: impl Into<Stanza>) {
        let stanza = stanza.into();
        let shown = show(&stanza);
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Send(Box::new(stanza), tx))
            .unwrap_or_else(|_| panic!("{}: client task is gone; cannot send {shown}", self.jid));
        match tokio::time::timeout(TIMEOUT + Duration::from_secs(1), rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("{}: sending {shown} failed: {e}", self.jid),
            Ok(Err(_)) | Err(_) => panic!("{}: sending {shown} did not complete", self.jid),
        }
    }

    /// The first stanza (buffered or arriving within `timeout`) for which `pred` is true. It is
    /// removed from the buffer; stanzas that do not match stay buffered for later calls.
    pub async fn recv_until(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Stanza) -> bool,
    ) -> Option<Stanza> {
        self.pull_pending();
        if let Some(pos) = self.buffer.iter().position(&mut pred) {
            return self.buffer.remove(pos);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(stanza)) => {
                    if pred(&stanza) {
                        return Some(stanza);
                    }
                    self.buffer.push_back(stanza);
                }
                // Task ended (stream closed for good) or deadline passed.
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Like [`recv_until`](Self::recv_until) but panics, naming `what` and listing what was
    /// received instead.
    pub async fn expect(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl FnMut(&Stanza) -> bool,
    ) -> Stanza {
        match self.recv_until(timeout, pred).await {
            Some(stanza) => stanza,
            None => {
                let dump = self.dump_buffer();
                panic!(
                    "{}: no {what} within {timeout:?}; received instead:\n{dump}",
                    self.jid
                )
            }
        }
    }

    /// First message matching `pred`.
    pub async fn recv_message(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Message) -> bool,
    ) -> Option<Message> {
        let st = self
            .recv_until(timeout, |s| matches!(s, Stanza::Message(m) if pred(m)))
            .await?;
        match st {
            Stanza::Message(m) => Some(m),
            _ => unreachable!("predicate only accepts messages"),
        }
    }

    /// First presence matching `pred`.
    pub async fn recv_presence(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Presence) -> bool,
    ) -> Option<Presence> {
        let st = self
            .recv_until(timeout, |s| matches!(s, Stanza::Presence(p) if pred(p)))
            .await?;
        match st {
            Stanza::Presence(p) => Some(p),
            _ => unreachable!("predicate only accepts presences"),
        }
    }

    /// First presence from `jid` (a bare JID matches any resource) of type `type_`.
    pub async fn recv_presence_from(
        &mut self,
        jid: impl IntoJid,
        type_: PresenceType,
        timeout: Duration,
    ) -> Option<Presence> {
        let jid = jid.into_jid();
        self.recv_presence(timeout, |p| {
            p.type_ == type_ && p.from.as_ref().is_some_and(|f| jid_matches(&jid, f))
        })
        .await
    }

    /// Sends a `chat` message with `body` to `to`.
    pub async fn chat(&mut self, to: impl IntoJid, body: &str) {
        let msg = Message::new_with_type(MessageType::Chat, Some(to.into_jid()))
            .with_body(Lang::new(), body.to_owned());
        self.send(msg).await;
    }

    /// Sends a chat message and returns the body of the next chat message from `to` (a bare JID
    /// matches any resource).
    pub async fn chat_and_wait(
        &mut self,
        to: impl IntoJid,
        body: &str,
        timeout: Duration,
    ) -> Option<String> {
        let to = to.into_jid();
        self.chat(&to, body).await;
        let reply = self
            .recv_message(timeout, |m| {
                m.type_ == MessageType::Chat && m.from.as_ref().is_some_and(|f| jid_matches(&to, f))
            })
            .await?;
        Some(message_body(&reply).unwrap_or_default())
    }

    /// Sends `<presence type='subscribe'/>` to `jid`.
    pub async fn subscribe(&mut self, jid: impl IntoJid) {
        self.send(Presence::subscribe().with_to(jid.into_jid()))
            .await;
    }

    /// Sends `<presence type='unsubscribe'/>` to `jid`.
    pub async fn unsubscribe(&mut self, jid: impl IntoJid) {
        self.send(Presence::unsubscribe().with_to(jid.into_jid()))
            .await;
    }

    /// Subscribes to `jid` and waits for the approval.
    pub async fn subscribe_approved(&mut self, jid: impl IntoJid) {
        let jid = jid.into_jid();
        self.subscribe(&jid).await;
        self.recv_presence_from(&jid, PresenceType::Subscribed, TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("subscription to {jid} approved"));
    }

    /// Waits for a presence from `jid` (a bare JID matches any resource) of type `type_` whose
    /// status contains `needle`, and returns the status.
    pub async fn wait_status(
        &mut self,
        jid: impl IntoJid,
        type_: PresenceType,
        needle: &str,
    ) -> String {
        let jid = jid.into_jid();
        let p = self
            .recv_presence(TIMEOUT, |p| {
                p.type_ == type_
                    && p.from.as_ref().is_some_and(|f| jid_matches(&jid, f))
                    && presence_status(p).is_some_and(|s| s.contains(needle))
            })
            .await;
        match p {
            Some(p) => presence_status(&p).unwrap_or_default(),
            None => panic!(
                "no {type_:?} presence of {jid} with {needle:?}; buffered: {}",
                self.dump_buffer()
            ),
        }
    }

    /// IQ get to `to`: the reply's payload, or its error.
    /// Panics if no reply with the same id from `to` arrives within [`TIMEOUT`].
    pub async fn iq_get(
        &mut self,
        to: impl IntoJid,
        payload: impl Into<Element>,
    ) -> Result<Option<Element>, StanzaError> {
        let iq = Iq::Get {
            from: None,
            to: Some(to.into_jid()),
            id: String::new(),
            payload: payload.into(),
        };
        self.iq_expect(iq, TIMEOUT).await
    }

    /// IQ set; see [`iq_get`](Self::iq_get).
    pub async fn iq_set(
        &mut self,
        to: impl IntoJid,
        payload: impl Into<Element>,
    ) -> Result<Option<Element>, StanzaError> {
        let iq = Iq::Set {
            from: None,
            to: Some(to.into_jid()),
            id: String::new(),
            payload: payload.into(),
        };
        self.iq_expect(iq, TIMEOUT).await
    }

    /// Sends a get/set IQ (a random id is set when empty) and returns the reply payload or error;
    /// panics when none arrives within `timeout`.
    pub async fn iq_expect(
        &mut self,
        iq: Iq,
        timeout: Duration,
    ) -> Result<Option<Element>, StanzaError> {
        let shown = show(&Stanza::Iq(iq.clone()));
        match self.iq(iq, timeout).await {
            Some(Iq::Result { payload, .. }) => Ok(payload),
            Some(Iq::Error { error, .. }) => Err(error),
            Some(other) => unreachable!("iq() returns only replies, got {other:?}"),
            None => {
                let dump = self.dump_buffer();
                panic!(
                    "{}: no reply within {timeout:?} to {shown}; received instead:\n{dump}",
                    self.jid
                )
            }
        }
    }

    /// Sends a get/set IQ and returns the `result`/`error` IQ with the same id whose `from` is
    /// the request's `to` (a reply without `from` counts as from our own account), or `None`
    /// after `timeout`. A reply from any other JID is not taken: it stays in the buffer.
    /// Pings `jid` until it answers with a result (its session or component is up), at most
    /// every 500 ms for `timeout`. Before a session is bound the server answers at once with an
    /// error, so the attempts are paced rather than counted.
    pub async fn wait_answering(&mut self, jid: &Jid, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let attempt = Instant::now();
            let ping = Iq::from_get(random_id("p-"), xmpp_parsers::ping::Ping).with_to(jid.clone());
            if let Some(Iq::Result { .. }) = self.iq(ping, Duration::from_millis(500)).await {
                return true;
            }
            tokio::time::sleep_until(attempt + Duration::from_millis(500)).await;
        }
        false
    }

    pub async fn iq(&mut self, mut iq: Iq, timeout: Duration) -> Option<Iq> {
        if iq.id().is_empty() {
            *iq.id_mut() = random_id("iq-");
        }
        let id = iq.id().to_owned();
        let own: Jid = self.bare_jid().into();
        let expected_from = iq.to().cloned().unwrap_or_else(|| own.clone());
        self.send(iq).await;
        let st = self
            .recv_until(timeout, |s| match s {
                Stanza::Iq(reply @ (Iq::Result { .. } | Iq::Error { .. })) => {
                    let from = reply.from().unwrap_or(&own);
                    reply.id() == id && *from == expected_from
                }
                _ => false,
            })
            .await?;
        match st {
            Stanza::Iq(reply) => Some(reply),
            _ => unreachable!("predicate only accepts IQs"),
        }
    }

    /// Number of received stanzas that no wait has taken yet.
    pub fn buffered(&mut self) -> usize {
        self.pull_pending();
        self.buffer.len()
    }

    /// Takes every received stanza that no wait has taken yet.
    pub fn drain(&mut self) -> Vec<Stanza> {
        self.pull_pending();
        self.buffer.drain(..).collect()
    }

    /// The buffered stanzas as XML, one per line (for failure messages).
    pub fn dump_buffer(&mut self) -> String {
        self.pull_pending();
        let mut s = String::new();
        for st in &self.buffer {
            let _ = writeln!(s, "  {}", show(st));
        }
        if s.is_empty() {
            s.push_str("  (nothing)\n");
        }
        s
    }

    /// Closes the stream (sends unavailable presence implicitly) and waits for the task.
    pub async fn disconnect(self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Close(tx)).is_ok() {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT + Duration::from_secs(1), rx).await;
        }
    }

    fn pull_pending(&mut self) {
        while let Ok(st) = self.incoming.try_recv() {
            self.buffer.push_back(st);
        }
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        // The task closes the stream when the command channel closes; if the runtime is
        // shutting down it is simply dropped.
        if std::thread::panicking() {
            let dump = self.dump_buffer();
            eprintln!("--- {}: unconsumed stanzas ---\n{dump}", self.jid);
        }
    }
}

/// Owns the tokio-xmpp client: sends commands, forwards stanzas, counts `Online` events.
async fn drive(
    mut stream: StanzaStream,
    mut commands: mpsc::UnboundedReceiver<Command>,
    incoming: mpsc::UnboundedSender<Stanza>,
    online: watch::Sender<u64>,
) {
    let close_ack = loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Send(stanza, reply)) => {
                    let mut token = stream.send(with_id(*stanza)).await;
                    // Wait for the write elsewhere, so that reading goes on meanwhile.
                    tokio::spawn(async move {
                        let res = match tokio::time::timeout(TIMEOUT, token.wait_for(StanzaStage::Sent)).await {
                            Ok(Some(StanzaState::Sent { .. } | StanzaState::Acked { .. })) => Ok(()),
                            Ok(Some(StanzaState::Failed { error })) => Err(error.to_string()),
                            Ok(_) => Err("dropped before it was written".to_owned()),
                            Err(_) => Err(format!("not written within {TIMEOUT:?}")),
                        };
                        let _ = reply.send(res);
                    });
                }
                Some(Command::Close(ack)) => break Some(ack),
                None => break None,
            },
            event = stream.next() => match event {
                Some(Event::Stream(StreamEvent::Reset { .. })) => {
                    let n = *online.borrow() + 1;
                    if n > 1 {
                        // A fresh session after a reconnect: fetch the roster again (the session
                        // is "interested" only after that; the reply lands in the buffer) and
                        // announce ourselves again.
                        let roster = Iq::Get {
                            from: None,
                            to: None,
                            id: random_id("roster-"),
                            payload: Element::builder("query", "jabber:iq:roster").build(),
                        };
                        for stanza in [roster.into(), Presence::available().into()] {
                            let _ = stream.send(with_id(stanza)).await;
                        }
                    }
                    online.send_replace(n);
                }
                Some(Event::Stream(StreamEvent::Resumed)) => {
                    online.send_modify(|n| *n += 1);
                }
                Some(Event::Stream(StreamEvent::Suspended)) => {}
                Some(Event::Stanza(stanza)) => {
                    let _ = incoming.send(stanza);
                }
                None => return,
            },
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, stream.close()).await;
    if let Some(ack) = close_ack {
        let _ = ack.send(());
    }
}

/// A random id where the stanza has none (what tokio-xmpp's `Client` did for us).
fn with_id(mut stanza: Stanza) -> Box<Stanza> {
    match &mut stanza {
        Stanza::Iq(iq) => {
            if iq.id().is_empty() {
                *iq.id_mut() = random_id("iq-");
            }
        }
        Stanza::Message(m) => {
            m.id.get_or_insert_with(|| xmpp_parsers::message::Id(random_id("m-")));
        }
        Stanza::Presence(p) => {
            p.id.get_or_insert_with(|| random_id("p-"));
        }
    }
    Box::new(stanza)
}

/// Whether `from` is `want` (a bare `want` matches every resource of it).
pub fn jid_matches(want: &Jid, from: &Jid) -> bool {
    if want.is_bare() {
        from.to_bare() == want.to_bare()
    } else {
        from == want
    }
}

/// Whether the stanza's `from` is `want` (a bare `want` matches every resource of it).
pub fn is_from(stanza: &Stanza, want: &Jid) -> bool {
    let from = match stanza {
        Stanza::Iq(iq) => iq.from(),
        Stanza::Message(m) => m.from.as_ref(),
        Stanza::Presence(p) => p.from.as_ref(),
    };
    from.is_some_and(|f| jid_matches(want, f))
}

/// A message's body (the unlabelled or English one, else any).
pub fn message_body(message: &Message) -> Option<String> {
    message
        .get_best_body_cloned(vec!["", "en"])
        .map(|(_, body)| body)
}

/// A presence's status line (the unlabelled or English one, else any).
pub fn presence_status(presence: &Presence) -> Option<String> {
    presence
        .statuses
        .get("")
        .or_else(|| presence.statuses.get("en"))
        .or_else(|| presence.statuses.values().next())
        .cloned()
}

/// The stanza as XML on one line.
pub fn show(stanza: &Stanza) -> String {
    PrintRawXml(stanza).to_string()
}
