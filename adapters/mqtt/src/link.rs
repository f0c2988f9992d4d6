//! The connection to the broker: rumqttc's options (persistent session, QoS 1 with manual
//! acknowledgements, TCP_NODELAY, TLS on ring) and the task that drives its event loop.
//!
//! rumqttc's `EventLoop` reconnects on the next `poll()` after an error but has no back-off of its
//! own, so the poller sleeps with [`Backoff`] after every failure: a broker that is down costs
//! one attempt per back-off step, never a tight loop. The poller owns the event loop alone and is
//! never cancelled mid-poll (only at shutdown); what it learns goes to the adapter task as
//! [`Link`] messages through a bounded channel, so a busy adapter slows the reading of the socket
//! and the broker queues for us.
//!
//! Logging follows the gateway's rule for links: the first failure after being up warns (a
//! refused login is an error: an operator must act), later attempts are debug, the recovery is
//! info.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gateway_api::Backoff;
use rumqttc::{
    ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing,
    Packet, Publish, Request, StateError, SubAck, TlsConfiguration, Transport,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::BrokerConfig;
use crate::stats::MqttStats;

/// Seconds rumqttc may take to connect (TCP, TLS and CONNACK together).
const CONNECT_TIMEOUT_SECS: u64 = 10;
/// Packets of this size are always read, so that a payload over `max_payload` is refused as bad
/// input instead of breaking the connection (the broker would resend it after every reconnect).
const READ_CAP: usize = 16 * 1024 * 1024;
/// Room for the topic and headers of an outgoing packet beyond the payload limit.
const HEADER_ROOM: usize = 70 * 1024;
/// After this many failures in a row on a message too large to read even so, the session is
/// dropped once (see [`drive`]).
const OVERSIZE_LIMIT: u32 = 3;

/// What the poller tells the adapter task.
#[derive(Debug)]
pub enum Link {
    /// Connected (again); `session_present`: the broker kept our session and subscriptions.
    Up {
        session_present: bool,
    },
    /// The connection failed or was lost; `reason` is short and meant for people.
    Down {
        reason: String,
    },
    /// A message to us, to be acknowledged once handled.
    Publish(Publish),
    /// The broker acknowledged our publish with this packet id.
    PubAck(u16),
    SubAck(SubAck),
    /// One of our publishes left with this packet id (in the order they were queued).
    Published(u16),
    /// One of our subscribe requests left with this packet id.
    Subscribed(u16),
}

/// Why the client cannot even be set up (a configuration that `check` could not catch, such as
/// a CA file removed since).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read the CA file `{path}`: {error}")]
    CaFile { path: String, error: String },
    #[error("no trusted CA certificate: the system has none and no `ca_file` is given")]
    NoRoots,
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error(
        "mqtts:// needs a host name or IPv4 address; an IPv6 literal is not supported with TLS"
    )]
    Ipv6Tls,
}

/// The client options and socket options for `broker`.
pub fn options(
    broker: &BrokerConfig,
    client_id: &str,
) -> Result<(MqttOptions, NetworkOptions), SetupError> {
    let url = &broker.url;
    // rumqttc joins host and port with ':' to resolve them, so an IPv6 address needs brackets.
    let host = if url.host.contains(':') {
        if url.tls {
            return Err(SetupError::Ipv6Tls);
        }
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let mut o = MqttOptions::new(client_id, host, url.port);
    // A persistent session: what is published at QoS 1 while the gateway is away waits for it.
    o.set_clean_session(false);
    // Acknowledged only once handed to the core, so a stop in between loses nothing.
    o.set_manual_acks(true);
    // Clamped to what MQTT (and rumqttc) accept: 1 s to 18 h.
    o.set_keep_alive(
        broker
            .keep_alive
            .clamp(Duration::from_secs(1), Duration::from_secs(65_535)),
    );
    o.set_max_packet_size(
        READ_CAP.max(broker.max_payload + HEADER_ROOM),
        broker.max_payload + HEADER_ROOM,
    );
    if let Some(user) = &broker.username {
        let pass = broker.password.as_ref().map_or("", |p| p.expose());
        o.set_credentials(user.clone(), pass);
    }
    if url.tls {
        let tls = tls_config(broker.ca_file.as_deref())?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    }
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(CONNECT_TIMEOUT_SECS);
    Ok((o, net))
}

/// A rustls client configuration on ring, trusting the system's roots and `ca_file`.
///
/// The provider is given explicitly rather than installed process-wide, so the MQTT link works
/// whatever else in the process has (or has not) installed a default provider.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, SetupError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let shown = path.display().to_string();
        let ca_error = |error: String| SetupError::CaFile {
            path: shown.clone(),
            error,
        };
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))?;
        let mut found = 0;
        for cert in certs {
            let cert = cert.map_err(|e| ca_error(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| ca_error(format!("not a usable CA certificate: {e}")))?;
            found += 1;
        }
        if found == 0 {
            return Err(ca_error("it holds no PEM certificate".into()));
        }
    }
    if roots.is_empty() {
        return Err(SetupError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A short, human description of a connection failure (shown in device presence).
pub fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::Io(e) => io_reason(e),
        ConnectionError::ConnectionRefused(code) => match code {
            ConnectReturnCode::BadUserNamePassword => {
                "the broker refused the login: bad user name or password".into()
            }
            ConnectReturnCode::NotAuthorized => {
                "the broker refused the login: not authorized".into()
            }
            ConnectReturnCode::BadClientId => "the broker refused the client id".into(),
            ConnectReturnCode::ServiceUnavailable => "the broker is unavailable".into(),
            ConnectReturnCode::RefusedProtocolVersion => {
                "the broker does not accept MQTT 3.1.1".into()
            }
            ConnectReturnCode::Success => "connection refused".into(),
        },
        ConnectionError::NetworkTimeout => "no answer from the broker".into(),
        ConnectionError::FlushTimeout => "sending to the broker timed out".into(),
        ConnectionError::Tls(rumqttc::TlsError::Io(e)) => format!("TLS: {e}"),
        ConnectionError::Tls(e) => format!("TLS: {e}"),
        ConnectionError::MqttState(StateError::Io(e)) => {
            format!("connection lost: {}", io_reason(e))
        }
        ConnectionError::MqttState(StateError::ConnectionAborted) => {
            "the broker closed the connection".into()
        }
        ConnectionError::MqttState(StateError::AwaitPingResp) => {
            "the broker stopped answering pings".into()
        }
        ConnectionError::MqttState(other) => format!("protocol error: {other}"),
        other => other.to_string(),
    }
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::TimedOut => "timed out".into(),
        io::ErrorKind::UnexpectedEof => "the broker closed the connection".into(),
        _ => e.to_string(),
    }
}

/// Whether an operator must act: the broker refused our credentials or client id.
fn is_refusal(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword
                | ConnectReturnCode::NotAuthorized
                | ConnectReturnCode::BadClientId
        )
    )
}

fn is_oversize(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::Error::PayloadSizeLimitExceeded(_)
        ))
    )
}

/// For logs.
pub struct LinkInfo {
    pub adapter: Arc<str>,
    pub url: String,
    pub client_id: String,
}

/// Drives `el` until `stop` fires or our DISCONNECT has gone out, reporting to `tx`.
///
/// After an error, our own publishes and subscribes still waiting in rumqttc for the next
/// connection are dropped: the adapter has already answered those writes as failed (a command
/// must not go out minutes later) and resubscribes itself when the session was lost.
///
/// A message larger than even [`READ_CAP`] cannot be read; the broker would resend it after
/// every reconnect and the link would never work again. After [`OVERSIZE_LIMIT`] such failures
/// in a row the poller connects once with a clean session (the broker drops what it queued for
/// us), then goes back to a persistent one; the adapter then resubscribes.
pub async fn drive(
    mut el: EventLoop,
    tx: mpsc::Sender<Link>,
    stop: CancellationToken,
    info: LinkInfo,
    stats: Arc<MqttStats>,
) {
    let LinkInfo {
        adapter,
        url,
        client_id,
    } = info;
    let mut backoff = Backoff::default();
    let mut ever_up = false;
    let mut oversize = 0u32;
    let mut cleaning = false;
    loop {
        let polled = tokio::select! {
            () = stop.cancelled() => return,
            r = el.poll() => r,
        };
        let link = match polled {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                stats.connects.fetch_add(1, Ordering::Relaxed);
                if cleaning {
                    // The poisoned session is gone; reconnect at once with a persistent one.
                    cleaning = false;
                    el.mqtt_options.set_clean_session(false);
                    el.clean();
                    el.pending.clear();
                    info!(adapter = %adapter, url = %url, "Started a new MQTT session");
                    continue;
                }
                let failures = backoff.failures();
                backoff.connected();
                if failures > 0 {
                    info!(adapter = %adapter, url = %url, failures, "MQTT broker reachable again");
                } else if !ever_up {
                    info!(adapter = %adapter, url = %url, client_id = %client_id,
                        session_present = ack.session_present, "Connected to the MQTT broker");
                } else {
                    info!(adapter = %adapter, url = %url, "Reconnected to the MQTT broker");
                }
                ever_up = true;
                oversize = 0;
                Link::Up {
                    session_present: ack.session_present,
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => Link::Publish(p),
            Ok(Event::Incoming(Packet::PubAck(a))) => Link::PubAck(a.pkid),
            Ok(Event::Incoming(Packet::SubAck(s))) => Link::SubAck(s),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Link::Published(pkid),
            Ok(Event::Outgoing(Outgoing::Subscribe(pkid))) => Link::Subscribed(pkid),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                debug!(adapter = %adapter, "Disconnected from the MQTT broker");
                return;
            }
            Ok(_) => continue,
            Err(e) => {
                stats.connection_failures.fetch_add(1, Ordering::Relaxed);
                el.pending
                    .retain(|r| !matches!(r, Request::Publish(_) | Request::Subscribe(_)));
                let reason = describe(&e);
                let first = backoff.failures() == 0;
                if is_refusal(&e) {
                    if first {
                        error!(adapter = %adapter, url = %url, client_id = %client_id, error = %reason,
                            "The MQTT broker refused the gateway; check username, password_file and client_id");
                    } else {
                        debug!(adapter = %adapter, error = %reason, "MQTT broker still refuses the gateway");
                    }
                } else if first {
                    warn!(adapter = %adapter, url = %url, error = %reason,
                        "MQTT broker unreachable; retrying with back-off");
                } else {
                    debug!(adapter = %adapter, error = %reason, "MQTT broker still unreachable");
                }
                if is_oversize(&e) {
                    oversize += 1;
                    if oversize >= OVERSIZE_LIMIT && !cleaning {
                        error!(adapter = %adapter, url = %url, limit = READ_CAP,
                            "A queued MQTT message is too large to read and the broker keeps resending it; \
                             dropping the gateway's session (messages queued for it are lost)");
                        el.mqtt_options.set_clean_session(true);
                        cleaning = true;
                        oversize = 0;
                    }
                } else {
                    oversize = 0;
                }
                let down = Link::Down { reason };
                let sent = tokio::select! {
                    () = stop.cancelled() => false,
                    r = tx.send(down) => r.is_ok(),
                };
                if !sent || !backoff.wait(&stop).await {
                    return;
                }
                continue;
            }
        };
        let sent = tokio::select! {
            () = stop.cancelled() => false,
            r = tx.send(link) => r.is_ok(),
        };
        if !sent {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BrokerUrl, Password};

    fn broker(url: &str) -> BrokerConfig {
        BrokerConfig::new(BrokerUrl::parse(url).unwrap())
    }

    #[test]
    fn options_make_a_persistent_session_with_manual_acks() {
        let mut b = broker("mqtt://127.0.0.1:1884");
        b.username = Some("gw".into());
        b.password = Some(Password::new("pw"));
        let (o, net) = options(&b, "xig-test-broker").unwrap();
        assert!(!o.clean_session());
        assert!(o.manual_acks());
        assert_eq!(o.client_id(), "xig-test-broker");
        assert_eq!(o.broker_address(), ("127.0.0.1".to_owned(), 1884));
        assert_eq!(o.keep_alive(), Duration::from_secs(30));
        assert_eq!(o.max_packet_size(), READ_CAP);
        let login = o.credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("gw", "pw")
        );
        assert_eq!(net.connection_timeout(), CONNECT_TIMEOUT_SECS);
        let (o, _) = options(&broker("mqtt://[::1]"), "x").unwrap();
        assert_eq!(o.broker_address(), ("[::1]".to_owned(), 1883));
        assert!(matches!(
            options(&broker("mqtts://[::1]"), "x"),
            Err(SetupError::Ipv6Tls)
        ));
    }

    #[test]
    fn tls_trusts_the_ca_file_and_says_what_is_wrong_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = broker("mqtts://broker.example.org");
        assert!(
            options(&b, "x").is_ok() || rustls_native_certs::load_native_certs().certs.is_empty()
        );
        let missing = dir.path().join("nope.pem");
        b.ca_file = Some(missing);
        let e = options(&b, "x").err().expect("an error").to_string();
        assert!(e.starts_with("cannot read the CA file"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        b.ca_file = Some(empty);
        let e = options(&b, "x").err().expect("an error").to_string();
        assert!(e.ends_with("it holds no PEM certificate"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_broker_that_is_down_is_retried_with_back_off_not_in_a_loop() {
        // A Unix socket that does not exist: every attempt fails at once, without I/O or timers
        // of its own, so the time between attempts is the back-off alone.
        let mut o = MqttOptions::new("t", "/nonexistent/mqtt.sock", 0);
        o.set_transport(Transport::unix());
        let (_client, el) = rumqttc::AsyncClient::new(o, 10);
        let (tx, mut rx) = mpsc::channel(8);
        let stop = CancellationToken::new();
        let info = LinkInfo {
            adapter: "broker".into(),
            url: "mqtt://nowhere".into(),
            client_id: "t".into(),
        };
        let stats = Arc::new(MqttStats::default());
        let task = tokio::spawn(drive(el, tx, stop.clone(), info, stats.clone()));
        let mut at = Vec::new();
        for _ in 0..6 {
            match rx.recv().await {
                Some(Link::Down { .. }) => at.push(tokio::time::Instant::now()),
                other => panic!("expected a failure, got {other:?}"),
            }
        }
        let gaps: Vec<f64> = at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        for (gap, base) in gaps.iter().zip([1.0, 2.0, 4.0, 8.0, 16.0]) {
            assert!(
                *gap >= base * 0.8 && *gap <= base * 1.2,
                "attempts {gaps:?} do not follow the back-off"
            );
        }
        assert_eq!(MqttStats::get(&stats.connection_failures), 6);
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn failures_are_described_for_people() {
        let refused = ConnectionError::Io(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(describe(&refused), "connection refused");
        let login = ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword);
        assert_eq!(
            describe(&login),
            "the broker refused the login: bad user name or password"
        );
        assert!(is_refusal(&login) && !is_refusal(&refused));
        assert_eq!(
            describe(&ConnectionError::MqttState(StateError::ConnectionAborted)),
            "the broker closed the connection"
        );
        let big = ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::Error::PayloadSizeLimitExceeded(1 << 30),
        ));
        assert!(is_oversize(&big));
    }
}
