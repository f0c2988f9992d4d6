//! How a client-mode session reaches its server: TCP (to the first of the `server` list that
//! answers, see `dial.rs`, or the JID's domain through SRV), then STARTTLS with the gateway's own TLS configuration (`tls.rs`), or plaintext when
//! `tls = "none"` (loopback only; the config refuses it elsewhere).
//!
//! tokio-xmpp's client reconnects by itself and keeps the reason of a failed attempt to itself,
//! so the connector logs it: once at WARN with what to check, then quietly until a session is up.
//!
//! tokio-xmpp also reconnects at once after a session that was online ends, whatever ended it.
//! When the server replaces sessions with a `conflict` stream error (more sessions on one
//! account than it allows, or another client on the same resource), that is a login storm: each
//! new login kicks another session, which logs in again at once. The connector therefore holds
//! back an attempt that follows a session which ended soon after it came online ([`Churn`]),
//! doubling the wait each time, and says once what to change.

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use super::dial;
use futures::{SinkExt, StreamExt};
use sasl::common::ChannelBinding;
use tokio::io::{AsyncRead, AsyncWrite, BufStream, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;
use tokio_xmpp::connect::{DnsConfig, ServerConnector};
use tokio_xmpp::error::{Error, ProtocolError};
use tokio_xmpp::parsers::jid::Jid;
use tokio_xmpp::parsers::starttls;
use tokio_xmpp::xmlstream::{
    initiate_stream, PendingFeaturesRecv, ReadError, StreamHeader, Timeouts, XmppStream,
    XmppStreamElement,
};

use super::line_ends::LineEnds;

/// Where to connect.
#[derive(Debug, Clone)]
pub enum Target {
    /// `host:port` of each server, tried in turn, as configured.
    Addresses(Vec<String>),
    /// The JID's domain: SRV `_xmpp-client._tcp`, then the domain on port 5222.
    Domain,
}

#[derive(Debug, Clone)]
pub struct Connector {
    pub target: Target,
    /// `None`: plaintext (`tls = "none"`).
    pub tls: Option<Arc<ClientConfig>>,
    /// Which session this is, for logs.
    pub label: Arc<str>,
    /// Failed attempts since the session was last online; shared by the clones tokio-xmpp makes.
    pub failures: Arc<AtomicU32>,
    /// Sessions that ended soon after coming online.
    pub churn: ChurnWatch,
}

/// A session's [`Churn`], shared by the clones tokio-xmpp makes, and what it shares with the
/// other sessions of its account: one warning for all of them.
#[derive(Debug, Clone)]
pub struct ChurnWatch {
    pub state: Arc<Mutex<Churn>>,
    /// Set once the account's sessions have been reported as replaced, until one lasts.
    pub account_warned: Arc<AtomicBool>,
    /// How many sessions the gateway has open on the account (for the warning); devices come
    /// and go while it runs.
    pub sessions_on_account: Arc<AtomicUsize>,
}

impl Default for ChurnWatch {
    /// A session alone on its account.
    fn default() -> Self {
        ChurnWatch {
            state: Arc::default(),
            account_warned: Arc::default(),
            sessions_on_account: Arc::new(AtomicUsize::new(1)),
        }
    }
}

impl Connector {
    fn describe(&self, jid: &Jid) -> String {
        match &self.target {
            Target::Addresses(a) => a.join(", "),
            Target::Domain => format!("{} (SRV)", jid.domain()),
        }
    }

    async fn attempt(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<PendingFeaturesRecv<BufStream<LineEnds<MaybeTls>>>, Error> {
        let tcp = match &self.target {
            Target::Addresses(servers) => {
                dial::connect_first(servers, ADDRESS_TIMEOUT)
                    .await
                    .map_err(dial::DialError::into_io)?
                    .0
            }
            Target::Domain => {
                DnsConfig::srv_default_client(jid.domain().as_str())
                    .resolve()
                    .await?
            }
        };
        // Readings and answers are many small writes: Nagle would delay each one.
        let _ = tcp.set_nodelay(true);
        let domain = jid.domain().as_str().to_owned();
        let header = || StreamHeader {
            to: Some(Cow::Owned(domain.clone())),
            from: None,
            id: None,
        };
        let Some(tls) = &self.tls else {
            return Ok(initiate_stream(
                BufStream::new(LineEnds::new(MaybeTls::Plain(tcp))),
                ns,
                header(),
                timeouts,
            )
            .await?);
        };
        let pending = initiate_stream(BufStream::new(tcp), ns, header(), timeouts).await?;
        let (features, mut stream): (_, XmppStream<BufStream<TcpStream>>) =
            pending.recv_features().await?;
        if !features.can_starttls() {
            return Err(Error::Protocol(ProtocolError::NoTls));
        }
        stream
            .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(
                starttls::Request,
            )))
            .await?;
        loop {
            match stream
                .next()
                .await
                .map(|v| v.and_then(|v| v.into_read_error()))
            {
                Some(Ok(XmppStreamElement::Starttls(starttls::Nonza::Proceed(_)))) => break,
                Some(Ok(_) | Err(ReadError::SoftTimeout)) => {}
                Some(Err(ReadError::HardError(e))) => return Err(e.into()),
                Some(Err(ReadError::ParseError(e))) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e).into())
                }
                None | Some(Err(ReadError::StreamFooterReceived)) => {
                    return Err(Error::Disconnected)
                }
            }
        }
        let tcp = stream.into_inner().into_inner();
        let name = ServerName::try_from(domain.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = TlsConnector::from(tls.clone()).connect(name, tcp).await?;
        Ok(initiate_stream(
            BufStream::new(LineEnds::new(MaybeTls::Tls(Box::new(tls)))),
            ns,
            header(),
            timeouts,
        )
        .await?)
    }
}

impl ServerConnector for Connector {
    type Stream = BufStream<LineEnds<MaybeTls>>;

    async fn connect(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<(PendingFeaturesRecv<Self::Stream>, ChannelBinding), Error> {
        let hold = self.churn_delay();
        if let Some(delay) = hold {
            tokio::time::sleep(delay).await;
        }
        match self.attempt(jid, ns, timeouts).await {
            Ok(pending) => Ok((pending, ChannelBinding::None)),
            Err(e) => {
                let n = self.failures.fetch_add(1, Ordering::Relaxed);
                let server = self.describe(jid);
                if n == 0 {
                    tracing::warn!(session = %self.label, server = %server, error = %e, hint = hint(&e),
                        "cannot connect to the XMPP server; retrying with back-off");
                } else {
                    tracing::debug!(session = %self.label, server = %server, error = %e, "connection attempt failed again");
                }
                Err(e)
            }
        }
    }
}

impl Connector {
    /// The session came online (called by the session loop).
    pub fn online(&self) {
        self.churn
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .online(std::time::Instant::now());
    }

    /// How long to hold back this attempt, warning once when sessions keep being replaced.
    fn churn_delay(&self) -> Option<Duration> {
        let (delay, warn) = self
            .churn
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .before_attempt(std::time::Instant::now());
        if delay.is_none() {
            self.churn.account_warned.store(false, Ordering::Relaxed);
        }
        if warn && !self.churn.account_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                session = %self.label,
                sessions_on_account = self.churn.sessions_on_account.load(Ordering::Relaxed),
                "the server keeps ending this XMPP session within seconds of login (usually a `conflict`: \
                 another login replaced it); backing off up to {}s. If the account has more sessions \
                 than the server allows, raise the limit (ejabberd: `max_user_sessions`, default 10; \
                 Prosody: any session-limiting module it loads) or give devices accounts of their \
                 own; otherwise check that no other client logs in with this resource",
                CHURN_MAX_DELAY.as_secs()
            );
        }
        delay
    }
}

/// How long each address of each server gets to accept the TCP connection.
const ADDRESS_TIMEOUT: Duration = Duration::from_secs(3);
/// A session that ends sooner than this after coming online counts as replaced.
const CHURN_SHORT: Duration = Duration::from_secs(30);
/// The longest hold-back after replaced sessions.
const CHURN_MAX_DELAY: Duration = Duration::from_secs(60);
/// Replaced sessions in a row before the warning.
const CHURN_WARN_AFTER: u32 = 3;

/// Sessions in a row that ended soon after they came online.
#[derive(Debug, Default)]
pub struct Churn {
    /// When the current session came online; taken by the next attempt.
    online_since: Option<std::time::Instant>,
    /// Short sessions in a row.
    short: u32,
}

impl Churn {
    pub fn online(&mut self, now: std::time::Instant) {
        self.online_since = Some(now);
    }

    /// Before a connection attempt: how long to wait first, and whether to warn now. An attempt
    /// that does not follow an online session (the first, or a retry after a failed one) is not
    /// held back here: tokio-xmpp backs those off itself.
    pub fn before_attempt(&mut self, now: std::time::Instant) -> (Option<Duration>, bool) {
        let Some(since) = self.online_since.take() else {
            return (None, false);
        };
        if now.saturating_duration_since(since) >= CHURN_SHORT {
            self.short = 0;
            return (None, false);
        }
        self.short = self.short.saturating_add(1);
        let doubling = 1u64 << (self.short - 1).min(6);
        let delay = Duration::from_secs(doubling).min(CHURN_MAX_DELAY);
        (Some(delay), self.short == CHURN_WARN_AFTER)
    }
}

/// What an operator should check for a failure.
fn hint(e: &Error) -> &'static str {
    let text = e.to_string();
    if text.contains("certificate")
        || text.contains("Certificate")
        || text.contains("UnknownIssuer")
    {
        "the server certificate does not verify: check ca_file and that the certificate names the JID's domain"
    } else if matches!(e, Error::Protocol(ProtocolError::NoTls)) {
        "the server does not offer STARTTLS"
    } else if text.contains("refused") {
        "nothing listens there: check `server` and that the XMPP server runs"
    } else if text.contains("resolve")
        || text.contains("lookup")
        || text.contains("Name or service")
    {
        "the host name does not resolve: check `server` or the JID's domain"
    } else {
        "check `server`, the network and the server's logs"
    }
}

/// A TCP stream, with or without TLS on top.
pub enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn sessions_replaced_soon_after_login_back_off_and_warn_once() {
        let mut churn = Churn::default();
        let t0 = Instant::now();
        // The first attempt, and retries after failed ones, are tokio-xmpp's business.
        assert_eq!(churn.before_attempt(t0), (None, false));
        let mut delays = Vec::new();
        let mut warnings = 0;
        let mut now = t0;
        for _ in 0..10 {
            churn.online(now);
            now += Duration::from_millis(20);
            let (delay, warn) = churn.before_attempt(now);
            delays.push(delay.expect("held back").as_secs());
            warnings += u32::from(warn);
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(warnings, 1);
        // A session that lasted resets the streak: the next loss reconnects at once.
        churn.online(now);
        now += CHURN_SHORT;
        assert_eq!(churn.before_attempt(now), (None, false));
        churn.online(now);
        assert_eq!(
            churn.before_attempt(now + Duration::from_secs(1)),
            (Some(Duration::from_secs(1)), false)
        );
    }
}
