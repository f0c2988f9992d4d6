//! How a client-mode session reaches its server: TCP (to `server`, or the JID's domain through
//! SRV), then STARTTLS with the gateway's own TLS configuration (`tls.rs`), or plaintext when
//! `tls = "none"` (loopback only; the config refuses it elsewhere).
//!
//! tokio-xmpp's client reconnects by itself and keeps the reason of a failed attempt to itself,
//! so the connector logs it: once at WARN with what to check, then quietly until a session is up.

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

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
    /// `host:port` as configured.
    Address(String),
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
}

impl Connector {
    fn describe(&self, jid: &Jid) -> String {
        match &self.target {
            Target::Address(a) => a.clone(),
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
            Target::Address(addr) => TcpStream::connect(addr.as_str()).await?,
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
                Some(Ok(_)) | Some(Err(ReadError::SoftTimeout)) => {}
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
