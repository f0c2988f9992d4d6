//! One c2s login driven through tokio-xmpp's [`StanzaStream`] rather than its `Client`.
//!
//! tokio-xmpp 6.0's `Client` cannot be used safely: it splits its `StanzaStream` into a sender
//! and a receiver that share a mutex, and a background task (`ClientWorker`) polls the receiver.
//! `StanzaReceiver::poll_next` only `try_lock`s that mutex and, when `send_stanza`/`send_iq`
//! holds it, returns `Pending` without registering a waker. The worker task is then never
//! woken again: no more events reach the `Client`, the stream's own worker fills its 16-deep
//! channel and stops reading the socket, while writes still go out. Under CPU load a send and
//! an arriving stanza overlap often enough to lose a session's input within seconds of coming
//! online (docs/design.md, "Client mode sessions").
//!
//! An unsplit [`StanzaStream`] has no mutex: its `poll_next` is a plain channel receive and
//! `send` a plain bounded channel send, so both always register their wakers. This wrapper
//! gives it the few things the `Client` added: stream events as [`C2sEvent`]s and a stanza id
//! on everything sent.

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_xmpp::client_login as auth;
use tokio_xmpp::connect::ServerConnector;
use tokio_xmpp::parsers::jid::Jid;
use tokio_xmpp::parsers::message::Id as MessageId;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::stanza::Stanza;
use tokio_xmpp::parsers::stream_features::StreamFeatures;
use tokio_xmpp::stanzastream::{
    Connection, Event as StreamEventOrStanza, StanzaStream, StreamEvent,
};
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::xmlstream::{StreamHeader, XmppStream};

/// Depth of the stream's queues in each direction. The receive side is drained by the session
/// loop; the send side only fills while the link is down (stanzas wait there for the stream to
/// come back, then leave in order).
const QUEUE_DEPTH: usize = 64;

/// What a c2s stream reports.
#[derive(Debug)]
pub enum C2sEvent {
    /// Logged in and bound. `resumed`: stream management resumed the previous session, nothing
    /// was lost and nothing needs re-announcing.
    Online { resumed: bool },
    /// The connection was lost; tokio-xmpp reconnects (and tries to resume) by itself.
    Suspended,
    /// A stanza from the server (boxed: a stanza is large, the other events are not).
    Stanza(Box<Stanza>),
}

/// A c2s session: connects, authenticates, binds, reconnects and resumes in the background.
pub struct C2sStream {
    inner: StanzaStream,
}

impl C2sStream {
    /// Starts logging in as `jid` (a full JID asks for that resource) through `connector`.
    pub fn new<C: ServerConnector>(
        connector: C,
        jid: Jid,
        password: String,
        timeouts: Timeouts,
    ) -> C2sStream {
        C2sStream {
            inner: StanzaStream::new_c2s(connector, jid, password, timeouts, QUEUE_DEPTH),
        }
    }

    /// Logs in once, without reconnecting: for a short-lived command, for which a wrong
    /// password, a certificate that does not verify or a refused connection will not heal by
    /// waiting. The attempt's error goes to `failed`; a stream that came up and was lost
    /// reports [`C2sEvent::Suspended`] and is not connected again (nothing to resume for a
    /// one-shot request). The stream never ends by itself: the caller stops waiting.
    pub fn single_attempt<C: ServerConnector>(
        connector: C,
        jid: Jid,
        password: String,
        timeouts: Timeouts,
        failed: mpsc::UnboundedSender<tokio_xmpp::Error>,
    ) -> C2sStream {
        let mut attempt = Some((connector, failed));
        let reconnector = Box::new(
            move |_location: Option<String>, slot: oneshot::Sender<Connection>| {
                // Never answered, never dropped: tokio-xmpp's stream worker panics when the slot
                // for a connection is dropped (and the release build aborts on a panic). The
                // parked task ends with the command's runtime.
                let park = |slot: oneshot::Sender<Connection>| async move {
                    let _slot = slot;
                    std::future::pending::<()>().await
                };
                let Some((connector, failed)) = attempt.take() else {
                    // A reconnect: the caller already saw `Suspended`.
                    tokio::spawn(park(slot));
                    return;
                };
                let (jid, password) = (jid.clone(), password.clone());
                tokio::spawn(async move {
                    match client_auth(connector, jid.clone(), password, timeouts).await {
                        Ok((features, stream)) => {
                            let _ = slot.send(Connection {
                                stream: stream.box_stream(),
                                features,
                                identity: jid,
                            });
                        }
                        Err(e) => {
                            let _ = failed.send(e);
                            park(slot).await;
                        }
                    }
                });
            },
        );
        C2sStream {
            inner: StanzaStream::new(reconnector, QUEUE_DEPTH),
        }
    }

    /// The next event; `None` once the stream is closed for good.
    pub async fn next(&mut self) -> Option<C2sEvent> {
        Some(match self.inner.next().await? {
            StreamEventOrStanza::Stanza(st) => C2sEvent::Stanza(Box::new(st)),
            StreamEventOrStanza::Stream(StreamEvent::Reset { .. }) => {
                C2sEvent::Online { resumed: false }
            }
            StreamEventOrStanza::Stream(StreamEvent::Resumed) => C2sEvent::Online { resumed: true },
            StreamEventOrStanza::Stream(StreamEvent::Suspended) => C2sEvent::Suspended,
        })
    }

    /// Queues a stanza for sending (with an id if it has none). Returns once it is queued, not
    /// when it is written: waits only while the send queue is full (the link is down), and the
    /// stream keeps writing meanwhile, so this never deadlocks with [`next`](Self::next).
    pub async fn send(&self, mut stanza: Stanza) {
        ensure_id(&mut stanza);
        // The token would tell when the stanza is written or acked; nothing here needs that.
        let _token = self.inner.send(Box::new(stanza)).await;
    }

    /// Closes the stream cleanly (after what is queued); the caller bounds the wait.
    pub async fn close(self) {
        self.inner.close().await
    }
}

/// One connection and SASL login, without resource binding (the stream does that): what
/// tokio-xmpp does in its own reconnect loop, which it keeps private.
async fn client_auth<C: ServerConnector>(
    connector: C,
    jid: Jid,
    password: String,
    timeouts: Timeouts,
) -> Result<(StreamFeatures, XmppStream<C::Stream>), tokio_xmpp::Error> {
    // SASL needs the account name; an account JID without one cannot log in.
    let username = jid
        .node()
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{jid} has no local part (the account name)"),
            )
        })?
        .as_str()
        .to_owned();
    let (stream, channel_binding) = connector.connect(&jid, ns::JABBER_CLIENT, timeouts).await?;
    let (features, stream) = stream.recv_features().await?;
    let credentials = sasl::common::Credentials::default()
        .with_username(username)
        .with_password(password)
        .with_channel_binding(channel_binding);
    let stream = auth(stream, features.sasl_mechanisms, credentials).await?;
    let stream = stream
        .send_header(StreamHeader {
            to: Some(std::borrow::Cow::Borrowed(jid.domain().as_str())),
            from: None,
            id: None,
        })
        .await?;
    Ok(stream.recv_features().await?)
}

/// What tokio-xmpp's `Client::send_stanza` did: a random id where there is none.
fn ensure_id(stanza: &mut Stanza) {
    let make = || format!("{}", rand::random::<u64>());
    match stanza {
        Stanza::Iq(iq) => {
            let id = iq.id_mut();
            if id.is_empty() {
                *id = make();
            }
        }
        Stanza::Message(m) => {
            m.id.get_or_insert_with(|| MessageId(make()));
        }
        Stanza::Presence(p) => {
            p.id.get_or_insert_with(make);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_xmpp::parsers::iq::Iq;
    use tokio_xmpp::parsers::ping::Ping;
    use tokio_xmpp::parsers::presence::Presence;

    #[test]
    fn ids_are_added_only_where_missing() {
        let mut p: Stanza = Presence::available().into();
        ensure_id(&mut p);
        let Stanza::Presence(p) = p else { panic!() };
        assert!(p.id.as_deref().is_some_and(|id| !id.is_empty()));

        let mut iq: Stanza = Iq::from_get("mine", Ping).into();
        ensure_id(&mut iq);
        let Stanza::Iq(iq) = iq else { panic!() };
        assert_eq!(iq.id(), "mine");

        let mut iq: Stanza = Iq::from_get("", Ping).into();
        ensure_id(&mut iq);
        let Stanza::Iq(iq) = iq else { panic!() };
        assert!(!iq.id().is_empty());
    }
}
