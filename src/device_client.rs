//! The `read` and `set` commands: a short-lived XMPP client that asks a device what a user's
//! client would ask (XEP-0323 readout, XEP-0325 set), with the same connector and TLS rules as
//! the gateway's own client mode, so a deployment can be tested without another program.

use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use minidom::Element;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::parsers::presence::Presence;
use tokio_xmpp::parsers::stanza::Stanza;
use tokio_xmpp::parsers::stanza_error::StanzaError;
use tokio_xmpp::xmlstream::Timeouts;

use crate::translator::sensordata::{self, ParsedField};
use crate::xmlns;
use crate::xmpp::c2s::{C2sEvent, C2sStream};
use crate::xmpp::connector::{ChurnWatch, Connector, Target};
use crate::xmpp::tls::client_config;

/// How the command logs in.
#[derive(Debug, Clone)]
pub struct Login {
    pub jid: BareJid,
    pub password: String,
    /// `host:port`; `None`: the JID's domain through SRV.
    pub server: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// Plaintext instead of STARTTLS (only sensible on loopback).
    pub plaintext: bool,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The command line names something unusable (a CA file that is no PEM): a usage error.
    #[error("{0}")]
    Setup(String),
    /// The one login attempt failed in a way another attempt would not fix.
    #[error("cannot log in as {jid} at {server}: {reason}")]
    LoginFailed {
        jid: String,
        server: String,
        reason: String,
    },
    #[error("not logged in within {0:?}: the server accepted the connection but did not finish the login (--log debug shows more)")]
    Login(Duration),
    #[error("the connection to the server was lost")]
    Lost,
    #[error("no answer from {jid} within {timeout:?}")]
    Timeout { jid: String, timeout: Duration },
    #[error("{jid} answered with an error: {condition}{}", text.as_deref().map(|t| format!(" ({t})")).unwrap_or_default())]
    Xmpp {
        jid: String,
        condition: String,
        text: Option<String>,
    },
    #[error("{jid} could not be read: {text}")]
    Failure { jid: String, text: String },
}

impl RemoteError {
    fn from_stanza_error(jid: &Jid, e: &StanzaError) -> Self {
        let condition = format!("{:?}", e.defined_condition);
        RemoteError::Xmpp {
            jid: jid.to_string(),
            condition: kebab(&condition),
            text: e.texts.values().next().cloned(),
        }
    }

    /// Whether the command line itself is at fault (exit status 2) rather than the server, the
    /// network or the device (exit status 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, RemoteError::Setup(_))
    }
}

/// What a failed login attempt means for the person at the command line: the cause and what to
/// check, in one sentence.
fn login_failure(e: &tokio_xmpp::Error) -> String {
    use tokio_xmpp::error::{AuthError, Error, ProtocolError};
    let text = e.to_string();
    match e {
        Error::Auth(AuthError::Fail(condition)) => format!(
            "the server refused the login ({}): check --jid and the password",
            kebab(&format!("{condition:?}"))
        ),
        Error::Auth(AuthError::NoMechanism) => {
            "the server offers no login mechanism this client has (SCRAM-SHA-1/256, PLAIN)".into()
        }
        Error::Protocol(ProtocolError::NoTls) => {
            "the server does not offer STARTTLS (--no-tls is for a loopback test server only)"
                .into()
        }
        Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused: nothing listens there (check --server and that the XMPP server runs)"
                .into()
        }
        _ if text.contains("certificate") || text.contains("Certificate") => format!(
            "the server's certificate does not verify ({}): give its CA with --ca-file; the \
             certificate must name the JID's domain",
            text.trim_start_matches("I/O error: ")
        ),
        _ => text,
    }
}

/// `ServiceUnavailable` -> `service-unavailable`, the way conditions are spelt on the wire.
fn kebab(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A logged-in session for one command.
struct Session {
    /// Not tokio-xmpp's `Client`, which can stop delivering stanzas (see `xmpp/c2s.rs`).
    stream: C2sStream,
    deadline: Instant,
    timeout: Duration,
}

impl Session {
    async fn open(login: &Login) -> Result<Session, RemoteError> {
        let tls = if login.plaintext {
            None
        } else {
            Some(
                client_config(login.ca_file.as_deref())
                    .map_err(|e| RemoteError::Setup(e.to_string()))?,
            )
        };
        let resource = format!("cli-{:08x}", rand::random::<u32>());
        let jid = FullJid::new(&format!("{}/{resource}", login.jid))
            .map_err(|e| RemoteError::Setup(e.to_string()))?;
        let server = login
            .server
            .clone()
            .unwrap_or_else(|| format!("{} (SRV)", login.jid.domain()));
        let connector = Connector {
            target: login
                .server
                .clone()
                .map(|s| Target::Addresses(vec![s]))
                .unwrap_or(Target::Domain),
            tls,
            label: jid.to_string().into(),
            failures: Arc::new(AtomicU32::new(0)),
            churn: ChurnWatch::default(),
        };
        let (failed_tx, mut failed_rx) = mpsc::unbounded_channel();
        let mut stream = C2sStream::single_attempt(
            connector,
            jid.clone().into(),
            login.password.clone(),
            Timeouts::tight(),
            failed_tx,
        );
        let failed = |e: tokio_xmpp::Error| RemoteError::LoginFailed {
            jid: login.jid.to_string(),
            server: server.clone(),
            reason: login_failure(&e),
        };
        let deadline = Instant::now() + login.timeout;
        let mut attempt_over = false;
        loop {
            tokio::select! {
                error = failed_rx.recv(), if !attempt_over => match error {
                    Some(e) => return Err(failed(e)),
                    // The attempt succeeded; the stream reports the rest.
                    None => attempt_over = true,
                },
                event = tokio::time::timeout_at(deadline, stream.next()) => match event {
                    Ok(Some(C2sEvent::Online { .. })) => break,
                    Ok(Some(C2sEvent::Stanza(_))) => {}
                    Ok(Some(C2sEvent::Suspended) | None) => return Err(RemoteError::Lost),
                    Err(_) => return Err(RemoteError::Login(login.timeout)),
                },
            }
        }
        // Negative priority: messages to our bare JID are not for this session.
        let presence = Presence::available().with_priority(-1);
        stream.send(presence.into()).await;
        Ok(Session {
            stream,
            deadline,
            timeout: login.timeout,
        })
    }

    async fn next(&mut self, target: &Jid) -> Result<Stanza, RemoteError> {
        loop {
            match tokio::time::timeout_at(self.deadline, self.stream.next()).await {
                Ok(Some(C2sEvent::Stanza(st))) => return Ok(*st),
                Ok(Some(C2sEvent::Online { .. })) => {}
                // A one-shot command does not wait for a reconnect.
                Ok(Some(C2sEvent::Suspended) | None) => return Err(RemoteError::Lost),
                Err(_) => {
                    return Err(RemoteError::Timeout {
                        jid: target.to_string(),
                        timeout: self.timeout,
                    })
                }
            }
        }
    }

    /// Sends an IQ and waits for its answer.
    async fn iq(&mut self, target: &Jid, iq: Iq) -> Result<Option<Element>, RemoteError> {
        let id = iq.id().to_owned();
        self.stream.send(iq.into()).await;
        loop {
            if let Stanza::Iq(reply) = self.next(target).await? {
                if reply.id() != id {
                    continue;
                }
                match reply {
                    Iq::Result { payload, .. } => return Ok(payload),
                    Iq::Error { error, .. } => {
                        return Err(RemoteError::from_stanza_error(target, &error))
                    }
                    _ => {}
                }
            }
        }
    }

    async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.stream.close()).await;
    }
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct ReadRequest {
    pub fields: Vec<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// An XEP-0323 readout of `target`: every field the device sent until it said `done`.
pub async fn read(
    login: &Login,
    target: &Jid,
    what: &ReadRequest,
) -> Result<Vec<ParsedField>, RemoteError> {
    let mut session = Session::open(login).await?;
    let seqnr = "1";
    let mut req = Element::builder("req", xmlns::SENSOR_DATA)
        .attr(rxml::xml_ncname!("seqnr").to_owned(), seqnr);
    if what.from.is_some() || what.to.is_some() {
        req = req.attr(rxml::xml_ncname!("historical").to_owned(), "true");
        if let Some(f) = what.from {
            req = req.attr(
                rxml::xml_ncname!("from").to_owned(),
                sensordata::format_datetime(f),
            );
        }
        if let Some(t) = what.to {
            req = req.attr(
                rxml::xml_ncname!("to").to_owned(),
                sensordata::format_datetime(t),
            );
        }
    } else {
        req = req.attr(rxml::xml_ncname!("momentary").to_owned(), "true");
    }
    for f in &what.fields {
        req = req.append(
            Element::builder("field", xmlns::SENSOR_DATA)
                .attr(rxml::xml_ncname!("name").to_owned(), f.as_str())
                .build(),
        );
    }
    let iq = Iq::Get {
        from: None,
        to: Some(target.clone()),
        id: "read-1".into(),
        payload: req.build(),
    };
    session.iq(target, iq).await?;
    let mut fields = Vec::new();
    let result = 'messages: loop {
        let Stanza::Message(m) = session.next(target).await? else {
            continue;
        };
        if m.from.as_ref().map(|f| f.to_bare()) != Some(target.to_bare()) {
            continue;
        }
        let mut finished = false;
        for p in m
            .payloads
            .iter()
            .filter(|p| p.has_ns(xmlns::SENSOR_DATA) && p.attr("seqnr") == Some(seqnr))
        {
            match p.name() {
                "fields" => match sensordata::parse_fields(p) {
                    Ok(mut f) => fields.append(&mut f),
                    Err(e) => {
                        let text = format!("malformed <fields/>: {e}");
                        break 'messages Err(RemoteError::Failure {
                            jid: target.to_string(),
                            text,
                        });
                    }
                },
                "failure" => {
                    let text = sensordata::parse_failure(p)
                        .map(|errs| {
                            errs.into_iter()
                                .map(|e| e.text)
                                .collect::<Vec<_>>()
                                .join("; ")
                        })
                        .unwrap_or_else(|e| e.to_string());
                    break 'messages Err(RemoteError::Failure {
                        jid: target.to_string(),
                        text,
                    });
                }
                _ => {}
            }
            finished |= p.attr("done") == Some("true") || p.name() == "done";
        }
        if finished {
            break Ok(fields);
        }
    };
    session.close().await;
    result
}

/// An XEP-0325 set of `values` on `target`, answered once the device confirmed.
pub async fn set(
    login: &Login,
    target: &Jid,
    values: &[(String, String)],
) -> Result<(), RemoteError> {
    let mut session = Session::open(login).await?;
    let mut set = Element::builder("set", xmlns::CONTROL);
    for (name, value) in values {
        set = set.append(
            Element::builder(control_type(value), xmlns::CONTROL)
                .attr(rxml::xml_ncname!("name").to_owned(), name.as_str())
                .attr(rxml::xml_ncname!("value").to_owned(), value.as_str())
                .build(),
        );
    }
    let iq = Iq::Set {
        from: None,
        to: Some(target.clone()),
        id: "set-1".into(),
        payload: set.build(),
    };
    let result = session.iq(target, iq).await.map(|_| ());
    session.close().await;
    result
}

/// The XEP-0325 element for a value typed on a command line: what it looks like.
pub fn control_type(value: &str) -> &'static str {
    match value.to_ascii_lowercase().as_str() {
        "true" | "false" => "boolean",
        v if v.parse::<i32>().is_ok() => "int",
        v if v.parse::<i64>().is_ok() => "long",
        v if v.parse::<f64>().is_ok() => "double",
        _ => "string",
    }
}

/// The fields as an aligned table: name, value, unit (and time, for history).
pub fn table(fields: &[ParsedField], with_time: bool) -> String {
    let mut rows: Vec<Vec<String>> = vec![if with_time {
        vec!["FIELD".into(), "VALUE".into(), "UNIT".into(), "TIME".into()]
    } else {
        vec!["FIELD".into(), "VALUE".into(), "UNIT".into()]
    }];
    for f in fields {
        let mut row = vec![
            f.name.clone(),
            f.value.clone(),
            f.unit.clone().unwrap_or_default(),
        ];
        if with_time {
            row.push(sensordata::format_datetime(f.timestamp));
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The fields asked for by name that a readout did not return, in the order asked.
pub fn missing_fields<'a>(asked: &'a [String], got: &[ParsedField]) -> Vec<&'a str> {
    asked
        .iter()
        .map(String::as_str)
        .filter(|name| !got.iter().any(|f| f.name == *name))
        .collect()
}

/// The fields as one JSON document.
pub fn json(target: &Jid, fields: &[ParsedField]) -> String {
    let fields: Vec<serde_json::Value> = fields
        .iter()
        .map(|f| {
            serde_json::json!({
                "node": f.node_id,
                "name": f.name,
                "type": f.kind,
                "value": f.value,
                // No unit is `null`, whether the device left the attribute out or sent it empty.
                "unit": f.unit.as_deref().filter(|u| !u.is_empty()),
                "timestamp": sensordata::format_datetime(f.timestamp),
                "writable": f.writable,
            })
        })
        .collect();
    serde_json::json!({ "jid": target.to_string(), "fields": fields }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_values_get_the_element_they_look_like() {
        assert_eq!(control_type("true"), "boolean");
        assert_eq!(control_type("42"), "int");
        assert_eq!(control_type("5000000000"), "long");
        assert_eq!(control_type("21.5"), "double");
        assert_eq!(control_type("hello"), "string");
    }

    fn field(name: &str, unit: Option<&str>) -> ParsedField {
        ParsedField {
            node_id: "n".into(),
            timestamp: DateTime::UNIX_EPOCH,
            kind: "numeric".into(),
            name: name.into(),
            value: "1".into(),
            unit: unit.map(Into::into),
            writable: false,
        }
    }

    #[test]
    fn a_field_asked_for_and_not_returned_is_named() {
        let got = [field("temperature", Some("°C"))];
        let asked = ["temperature".to_owned(), "nope".to_owned()];
        assert_eq!(missing_fields(&asked, &got), ["nope"]);
        assert!(missing_fields(&[], &got).is_empty());
    }

    #[test]
    fn json_spells_no_unit_one_way() {
        let jid = Jid::new("d@example.org").expect("jid");
        let doc: serde_json::Value = serde_json::from_str(&json(
            &jid,
            &[
                field("a", None),
                field("b", Some("")),
                field("c", Some("V")),
            ],
        ))
        .expect("json");
        let units: Vec<&serde_json::Value> = doc["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| &f["unit"])
            .collect();
        assert_eq!(
            units,
            [
                &serde_json::Value::Null,
                &serde_json::Value::Null,
                &serde_json::json!("V")
            ]
        );
    }

    #[test]
    fn conditions_are_spelt_as_on_the_wire() {
        assert_eq!(kebab("ServiceUnavailable"), "service-unavailable");
        assert_eq!(kebab("Forbidden"), "forbidden");
    }
}
