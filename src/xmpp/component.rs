//! XEP-0114 component session: one plaintext stream that carries every device JID of a domain.
//!
//! The session connects (to the first configured server that answers, see `dial.rs`),
//! handshakes (lowercase hex SHA-1 of stream id + secret), then pumps stanzas both ways until
//! the stream fails, and reconnects with [`Backoff`]. A stream that the server ends with a
//! `conflict` error (another connection took the domain over) backs off like a failed attempt
//! and is reported once, with what to change, rather than at every round. It keeps an idle
//! stream alive with a ping to the server's own domain every half read-timeout and treats a
//! stream that stays silent for a whole read-timeout as dead (a half-open TCP connection never
//! reports an error by itself). It ends when the core drops the outgoing channel, after sending
//! everything queued before that and closing the stream.

use std::time::Duration;

use gateway_api::Backoff;
use minidom::Element;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dial::{self, DialError};
use super::line_ends::LineEnds;
use super::wire::{self, StanzaReader, WireError};
use super::Inbound;
use crate::config::{ComponentConfig, Secret};
use crate::xmlns;

/// How the session watches a quiet stream.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Each address of each server gets this long to accept the TCP connection.
    pub address: Duration,
    /// The handshake must finish within this once connected.
    pub connect: Duration,
    /// No bytes from the server for this long means the stream is dead. A ping goes out every half of it.
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            address: Duration::from_secs(3),
            connect: Duration::from_secs(15),
            read: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error("cannot connect: {0}")]
    Connect(#[from] DialError),
    #[error("{server} did not answer within {0:?}", .timeout)]
    Timeout { server: String, timeout: Duration },
    #[error("the server refused the component handshake for {domain}: {reason} (check component_secret and the Component block on the server)")]
    Refused { domain: String, reason: String },
    #[error("the server refused the component for {domain}: conflict: {CONFLICT_HINT}")]
    Conflict { domain: String },
    #[error("{0}")]
    Wire(#[from] WireError),
}

/// Queued stanzas are taken into one write until it holds this much (one stanza may end past it).
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// The write buffer's size at the start.
const WRITE_BUFFER_START: usize = 16 * 1024;
/// A write buffer grown beyond this (a stanza of up to a megabyte) is let go after its write.
const WRITE_BUFFER_KEEP: usize = 2 * WRITE_BATCH_BYTES;

/// The upstream link for component mode.
pub struct ComponentSession {
    pub config: ComponentConfig,
    pub timeouts: Timeouts,
}

/// Why a connected session ended.
enum End {
    /// The core is done: the stream was closed cleanly.
    Finished,
    Lost(String),
    /// The server ended the stream with `conflict`: another connection took the domain.
    Replaced(String),
}

/// What to change when another connection keeps taking the component domain over.
const CONFLICT_HINT: &str = "another connection authenticated for this component domain and \
    the server dropped this one (stream error `conflict`): each gateway needs a domain of its \
    own; on Prosody a gateway's own ghost after a network cut is replaced only with \
    `component_conflict_resolve = \"kick_old\"`; on ejabberd check `global_routes: false` and \
    that no second gateway uses this domain";

impl ComponentSession {
    /// Runs until `outgoing` is closed by the core (or `shutdown` fires while disconnected).
    pub async fn run(
        self,
        mut outgoing: mpsc::Receiver<Element>,
        inbound: mpsc::Sender<Inbound>,
        shutdown: CancellationToken,
    ) {
        let mut backoff = Backoff::default();
        let servers = self.config.servers.join(", ");
        // A `conflict` is reported once, until a session ends for another reason.
        let mut conflict_reported = false;
        loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.connect() => r,
            };
            let failure = match attempt {
                Ok((reader, writer, server)) => {
                    if backoff.failures() > 0 {
                        tracing::info!(server = %server, domain = %self.config.domain, "component connection restored");
                    } else {
                        tracing::info!(server = %server, domain = %self.config.domain, "component connected");
                    }
                    backoff.connected();
                    let _ = inbound.send(Inbound::Up).await;
                    match self.pump(reader, writer, &mut outgoing, &inbound).await {
                        End::Finished => return,
                        End::Lost(reason) => {
                            conflict_reported = false;
                            tracing::warn!(server = %server, reason = %reason, "component connection lost; reconnecting");
                            let _ = inbound.send(Inbound::Down { reason }).await;
                            None
                        }
                        End::Replaced(reason) => {
                            if !conflict_reported {
                                conflict_reported = true;
                                tracing::warn!(server = %server, domain = %self.config.domain, hint = CONFLICT_HINT, "component connection replaced; reconnecting with back-off");
                            } else {
                                tracing::debug!(server = %server, "component connection replaced again");
                            }
                            let _ = inbound.send(Inbound::Down { reason }).await;
                            None
                        }
                    }
                }
                Err(e) => Some(e.to_string()),
            };
            if let Some(error) = failure {
                if backoff.failures() == 0 {
                    tracing::warn!(servers = %servers, error = %error, "component connection failed; retrying with back-off");
                    let _ = inbound.send(Inbound::Down { reason: error }).await;
                } else {
                    tracing::debug!(servers = %servers, error = %error, "component connection failed again");
                }
            }
            // While down nothing can be sent: what the core queued is stale by the time we are back.
            while let Ok(_stale) = outgoing.try_recv() {}
            // A session that was up for less than a minute does not reset the back-off, so a
            // `conflict` round (two connections taking the domain from each other) slows down.
            let delay = backoff.failed();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
                // The core finished while we were down: nothing left to deliver.
                None = wait_closed(&mut outgoing) => return,
            }
        }
    }

    /// Connects to the first server that answers and handshakes; returns the stream halves and
    /// the server they lead to.
    async fn connect(
        &self,
    ) -> Result<
        (
            StanzaReader<BufReader<LineEnds<tokio::net::tcp::OwnedReadHalf>>>,
            OwnedWriteHalf,
            String,
        ),
        ComponentError,
    > {
        let (stream, server, _addr) =
            dial::connect_first(&self.config.servers, self.timeouts.address).await?;
        match tokio::time::timeout(self.timeouts.connect, self.handshake(stream)).await {
            Ok(Ok((reader, writer))) => Ok((reader, writer, server)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ComponentError::Timeout {
                server,
                timeout: self.timeouts.connect,
            }),
        }
    }

    async fn handshake(
        &self,
        stream: TcpStream,
    ) -> Result<
        (
            StanzaReader<BufReader<LineEnds<tokio::net::tcp::OwnedReadHalf>>>,
            OwnedWriteHalf,
        ),
        ComponentError,
    > {
        let cfg = &self.config;
        // Presence fan-out and readout answers are many small writes: Nagle would delay each.
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let mut reader = StanzaReader::new(
            BufReader::new(LineEnds::new(read)),
            xmlns::COMPONENT,
            cfg.max_stanza_size,
        );
        write
            .write_all(wire::stream_open(xmlns::COMPONENT, &cfg.domain).as_bytes())
            .await
            .map_err(WireError::Io)?;
        let header = reader.read_header().await.map_err(|e| self.refused(e))?;
        let id = header.id.ok_or_else(|| ComponentError::Refused {
            domain: cfg.domain.clone(),
            reason: "the server sent no stream id".into(),
        })?;
        let secret = cfg.secret.as_ref().map(Secret::expose).unwrap_or_default();
        let handshake = format!("<handshake>{}</handshake>", handshake_digest(&id, secret));
        write
            .write_all(handshake.as_bytes())
            .await
            .map_err(WireError::Io)?;
        let reply = reader.next().await.map_err(|e| self.refused(e))?;
        if !reply.is("handshake", xmlns::CLIENT) {
            return Err(ComponentError::Refused {
                domain: cfg.domain.clone(),
                reason: format!("unexpected <{}> instead of <handshake/>", reply.name()),
            });
        }
        Ok((reader, write))
    }

    fn refused(&self, e: WireError) -> ComponentError {
        match e {
            e if is_conflict(&e) => ComponentError::Conflict {
                domain: self.config.domain.clone(),
            },
            WireError::Stream { condition, text } => ComponentError::Refused {
                domain: self.config.domain.clone(),
                reason: match text {
                    Some(t) => format!("{condition}: {t}"),
                    None => condition,
                },
            },
            other => ComponentError::Wire(other),
        }
    }

    async fn pump(
        &self,
        mut reader: StanzaReader<BufReader<LineEnds<tokio::net::tcp::OwnedReadHalf>>>,
        mut writer: OwnedWriteHalf,
        outgoing: &mut mpsc::Receiver<Element>,
        inbound: &mpsc::Sender<Inbound>,
    ) -> End {
        // The reader runs in its own task: rxml's read future is not safe to drop mid-element.
        let (el_tx, mut el_rx) = mpsc::channel::<Result<Element, WireError>>(256);
        let read_task = tokio::spawn(async move {
            loop {
                let item = reader.next().await;
                let done = item.is_err();
                if el_tx.send(item).await.is_err() || done {
                    break;
                }
            }
        });
        let mut keepalive = tokio::time::interval(self.timeouts.read / 2);
        keepalive.tick().await;
        let mut last_heard = Instant::now();
        let mut ping_seq: u64 = 0;
        let mut buf = Vec::with_capacity(WRITE_BUFFER_START);
        let end = loop {
            tokio::select! {
                biased;
                item = el_rx.recv() => match item {
                    Some(Ok(el)) => {
                        last_heard = Instant::now();
                        if is_keepalive_reply(&el, &self.config.domain) {
                            continue;
                        }
                        // A closed core means shutdown is under way; the stream is still drained.
                        let _ = inbound.send(Inbound::Stanza(el)).await;
                    }
                    Some(Err(e)) if is_conflict(&e) => break End::Replaced(e.to_string()),
                    Some(Err(e)) => break End::Lost(e.to_string()),
                    None => break End::Lost("reader stopped".into()),
                },
                out = outgoing.recv() => {
                    let Some(first) = out else {
                        let _ = writer.write_all(wire::STREAM_CLOSE.as_bytes()).await;
                        let _ = writer.shutdown().await;
                        break End::Finished;
                    };
                    // Everything already queued goes out in one write, serialised straight
                    // into the one buffer.
                    buf.clear();
                    wire::encode_into(&first, xmlns::COMPONENT, &mut buf);
                    drop(first);
                    while buf.len() < WRITE_BATCH_BYTES {
                        match outgoing.try_recv() {
                            Ok(el) => {
                                wire::encode_into(&el, xmlns::COMPONENT, &mut buf);
                            }
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = writer.write_all(&buf).await {
                        break End::Lost(format!("write failed: {e}"));
                    }
                    if buf.capacity() > WRITE_BUFFER_KEEP {
                        // A flood grew it: give the memory back rather than keep the peak.
                        buf = Vec::with_capacity(WRITE_BUFFER_START);
                    }
                }
                _ = keepalive.tick() => {
                    if last_heard.elapsed() >= self.timeouts.read {
                        break End::Lost(format!("no data from the server for {:?}", self.timeouts.read));
                    }
                    ping_seq += 1;
                    let ping = format!(
                        "<iq xmlns='{}' type='get' id='keepalive-{ping_seq}' from='{}' to='{}'><ping xmlns='{}'/></iq>",
                        xmlns::COMPONENT, self.config.domain, self.config.ping_target, xmlns::PING
                    );
                    if let Err(e) = writer.write_all(ping.as_bytes()).await {
                        break End::Lost(format!("write failed: {e}"));
                    }
                }
            }
        };
        read_task.abort();
        end
    }
}

async fn wait_closed(rx: &mut mpsc::Receiver<Element>) -> Option<()> {
    // Discards what arrives; returns `None` once the channel is closed.
    while rx.recv().await.is_some() {}
    None
}

fn is_conflict(e: &WireError) -> bool {
    matches!(e, WireError::Stream { condition, .. } if condition == "conflict")
}

fn is_keepalive_reply(el: &Element, domain: &str) -> bool {
    el.name() == "iq"
        && matches!(el.attr("type"), Some("result" | "error"))
        && el.attr("id").is_some_and(|id| id.starts_with("keepalive-"))
        && el.attr("to").is_some_and(|to| to == domain)
}

/// XEP-0114 §3: lowercase hex SHA-1 of the stream id concatenated with the secret.
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let mut h = Sha1::new();
    h.update(stream_id.as_bytes());
    h.update(secret.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    const HEADER: &str =
        "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
        xmlns='jabber:component:accept' id='s1' from='gw.test'>";

    fn session(addr: std::net::SocketAddr, read: Duration) -> ComponentSession {
        ComponentSession {
            config: ComponentConfig {
                domain: "gw.test".into(),
                servers: vec![addr.to_string()],
                secret: Some(Secret::new("pw")),
                ping_target: "test".into(),
                max_stanza_size: wire::DEFAULT_MAX_STANZA_BYTES,
            },
            timeouts: Timeouts {
                address: Duration::from_secs(5),
                connect: Duration::from_secs(5),
                read,
            },
        }
    }

    /// Reads from `sock` until `needle` has arrived; returns everything read.
    async fn read_until(sock: &mut TcpStream, needle: &str) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains(needle) {
            let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
                .await
                .expect("data in time")
                .expect("read");
            assert!(
                n > 0,
                "connection closed before {needle:?}; got {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test]
    async fn pings_a_quiet_link_and_drops_a_dead_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (out_tx, out_rx) = mpsc::channel(8);
        let (in_tx, mut in_rx) = mpsc::channel(8);
        let stop = CancellationToken::new();
        let task = tokio::spawn(session(addr, Duration::from_millis(400)).run(
            out_rx,
            in_tx,
            stop.clone(),
        ));

        let (mut sock, _) = listener.accept().await.expect("accept");
        read_until(&mut sock, "<stream:stream").await;
        sock.write_all(HEADER.as_bytes()).await.expect("header");
        let hs = read_until(&mut sock, "</handshake>").await;
        assert!(hs.contains(&handshake_digest("s1", "pw")), "{hs}");
        sock.write_all(b"<handshake/>").await.expect("handshake ok");
        assert!(matches!(in_rx.recv().await, Some(Inbound::Up)));

        // A stanza from the core goes out in the component namespace.
        let el: Element =
            "<message xmlns='jabber:client' to='u@test' from='d@gw.test'><body>hi</body></message>"
                .parse()
                .expect("element");
        out_tx.send(el).await.expect("queue");
        let sent = read_until(&mut sock, "</message>").await;
        assert!(
            sent.contains("<message xmlns='jabber:component:accept'"),
            "{sent}"
        );

        // Silence: first a ping to the server's domain, then the link is given up.
        let ping = read_until(&mut sock, "urn:xmpp:ping").await;
        assert!(
            ping.contains("to='test'") && ping.contains("from='gw.test'"),
            "{ping}"
        );
        match tokio::time::timeout(Duration::from_secs(5), in_rx.recv()).await {
            Ok(Some(Inbound::Down { reason })) => assert!(reason.contains("no data"), "{reason}"),
            other => panic!("expected the link to be declared dead, got {other:?}"),
        }
        stop.cancel();
        drop(out_tx);
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }

    #[tokio::test]
    async fn a_conflict_is_reported_and_retried() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (out_tx, out_rx) = mpsc::channel(8);
        let (in_tx, mut in_rx) = mpsc::channel(8);
        let stop = CancellationToken::new();
        let task =
            tokio::spawn(session(addr, Duration::from_secs(30)).run(out_rx, in_tx, stop.clone()));

        let (mut sock, _) = listener.accept().await.expect("accept");
        read_until(&mut sock, "<stream:stream").await;
        sock.write_all(HEADER.as_bytes()).await.expect("header");
        read_until(&mut sock, "</handshake>").await;
        sock.write_all(
            b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>",
        )
        .await
        .expect("conflict");
        match in_rx.recv().await {
            Some(Inbound::Down { reason }) => assert!(reason.contains("conflict"), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // The next attempt comes after the back-off (about a second) and succeeds.
        let (mut sock, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("a second attempt")
            .expect("accept");
        read_until(&mut sock, "<stream:stream").await;
        sock.write_all(HEADER.as_bytes()).await.expect("header");
        read_until(&mut sock, "</handshake>").await;
        sock.write_all(b"<handshake/>").await.expect("handshake ok");
        assert!(matches!(in_rx.recv().await, Some(Inbound::Up)));

        // The core closes its channel: the session closes the stream and ends.
        drop(out_tx);
        read_until(&mut sock, "</stream:stream>").await;
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("session ends")
            .expect("no panic");
        drop(stop);
    }

    #[test]
    fn handshake_digest_matches_xep_0114_example() {
        // Checked against `printf '%s' 'abc123secret' | sha1sum`.
        assert_eq!(
            handshake_digest("abc123", "secret"),
            "b67adbb9f7287b8f2d9c809b39a804b2123fc4c0"
        );
    }
}
