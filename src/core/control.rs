//! Writes from XMPP: XEP-0325 `set` (in an IQ or a message) and chat `set`.
//!
//! Every parameter is checked against the device's writable fields before anything is written;
//! one bad parameter means nothing is written. The write goes to the device's adapter, and the
//! answer waits for the device's confirmation (bounded by a timeout).

use std::sync::Arc;

use gateway_api::{Request, RequestError, RequestKind, Value};
use minidom::Element;
use tokio::sync::oneshot;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{MessageType, Thread};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::{Core, Deferred, WRITE_TIMEOUT};
use crate::access::Permission;
use crate::stats::Stats;
use crate::store::AuditEntry;
use crate::translator;
use crate::xmpp::stanzas;

/// Where the outcome of a write goes.
#[derive(Debug, Clone)]
pub(super) enum ControlReply {
    /// IQ `set`: a result with `setResponse`, or an error.
    Iq { id: String, from: Jid, to: Jid },
    /// Chat `set`: a line of text.
    Chat {
        from: Jid,
        to: Jid,
        type_: MessageType,
        thread: Option<Thread>,
    },
    /// `set` addressed to the device in a room: a line to the room, addressed to the nick.
    Room { from: Jid, room: Jid, nick: String },
    /// XEP-0325 in a message: nobody waits for an answer.
    Silent,
}

/// Why a parameter was refused.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ParamError {
    pub condition: DefinedCondition,
    pub var: String,
    pub text: String,
}

impl ParamError {
    fn stanza_error(&self) -> StanzaError {
        let type_ = match self.condition {
            DefinedCondition::BadRequest => ErrorType::Modify,
            _ => ErrorType::Cancel,
        };
        let mut e = stanzas::error(type_, self.condition.clone(), &self.text);
        e.other = Some(translator::control::param_error(&self.var, &self.text));
        e
    }
}

impl Core {
    /// Checks one named value against device `idx`'s writable fields.
    pub(super) fn check_param(
        &self,
        idx: usize,
        name: &str,
        text: &str,
    ) -> Result<(Arc<str>, Value), ParamError> {
        let dev = self.devices.get(idx);
        let err = |condition, text: String| ParamError {
            condition,
            var: name.to_owned(),
            text,
        };
        let Some(fi) = dev.field_index(name) else {
            return Err(err(
                DefinedCondition::ItemNotFound,
                format!("no field {name:?}"),
            ));
        };
        let spec = &dev.config.fields[fi].spec;
        if !spec.writable {
            return Err(err(
                DefinedCondition::ItemNotFound,
                format!("{name:?} is read-only"),
            ));
        }
        Value::parse(spec.kind, text)
            .map(|v| (spec.name.clone(), v))
            .map_err(|e| err(DefinedCondition::BadRequest, e.to_string()))
    }

    /// Parses an XEP-0325 `<set/>` into checked values, in document order.
    fn parse_set(&self, idx: usize, set: &Element) -> Result<Vec<(Arc<str>, Value)>, ParamError> {
        let node = self.devices.get(idx).config.id.as_str();
        let mut values = Vec::new();
        for child in set.children() {
            if child.name() == "node" {
                if child.attr("nodeId") != Some(node) {
                    return Err(ParamError {
                        condition: DefinedCondition::ItemNotFound,
                        var: String::new(),
                        text: format!("no node {:?}", child.attr("nodeId").unwrap_or("")),
                    });
                }
                continue;
            }
            let (Some(name), Some(value)) = (child.attr("name"), child.attr("value")) else {
                return Err(ParamError {
                    condition: DefinedCondition::BadRequest,
                    var: child.attr("name").unwrap_or("").to_owned(),
                    text: format!("<{}> needs both name and value", child.name()),
                });
            };
            values.push(self.check_param(idx, name, value)?);
        }
        if values.is_empty() {
            return Err(ParamError {
                condition: DefinedCondition::BadRequest,
                var: String::new(),
                text: "no parameters to set".into(),
            });
        }
        Ok(values)
    }

    pub(super) fn on_control_set(
        &mut self,
        idx: usize,
        set: &Element,
        requester_full: &Jid,
        reply: ControlReply,
    ) {
        let requester = requester_full.to_bare().to_string();
        let requester = requester.as_str();
        let device = self.devices.get(idx).config.id.clone();
        if !self.devices.allows(idx, requester, Permission::Control) {
            Stats::inc(&self.stats.access_refused);
            self.log_refused("control", &device.to_string(), requester);
            if let ControlReply::Iq { id, from, to } = &reply {
                let e = stanzas::error(
                    ErrorType::Cancel,
                    DefinedCondition::Forbidden,
                    "control is not allowed for you",
                );
                self.reply(stanzas::iq_error(id, from, to, e));
            }
            return;
        }
        match self.parse_set(idx, set) {
            Ok(values) => self.start_write(idx, values, reply, requester_full.to_string()),
            Err(pe) => {
                tracing::info!(device = %device, jid = %requester, param = %pe.var, error = %pe.text, "control request refused");
                if let ControlReply::Iq { id, from, to } = &reply {
                    self.reply(stanzas::iq_error(id, from, to, pe.stanza_error()));
                }
            }
        }
    }

    /// Hands checked values to the device's adapter; the answer comes back through `Deferred`.
    pub(super) fn start_write(
        &mut self,
        idx: usize,
        values: Vec<(Arc<str>, Value)>,
        reply: ControlReply,
        requester: String,
    ) {
        let dev = self.devices.get(idx);
        let device = dev.config.id.clone();
        let Some(adapter) = self.requests.get(dev.config.adapter_index).cloned() else {
            return;
        };
        let old: Vec<Option<String>> = values
            .iter()
            .map(|(f, _)| {
                dev.field_index(f)
                    .and_then(|i| dev.values[i].as_ref())
                    .map(|s| s.value.to_string())
            })
            .collect();
        let store = self.store.clone();
        let tx = self.deferred_tx.clone();
        tokio::spawn(async move {
            let (reply_tx, reply_rx) = oneshot::channel();
            let request = Request {
                device: device.clone(),
                kind: RequestKind::Write {
                    values: values.clone(),
                },
                reply: reply_tx,
            };
            let outcome = tokio::time::timeout(WRITE_TIMEOUT, async {
                adapter
                    .send(request)
                    .await
                    .map_err(|_| RequestError::Closed)?;
                reply_rx.await.map_err(|_| RequestError::Closed)?
            })
            .await
            .unwrap_or(Err(RequestError::Timeout));
            let summary: Vec<String> = values.iter().map(|(f, v)| format!("{f}={v}")).collect();
            match &outcome {
                Ok(_) => {
                    tracing::info!(device = %device, values = %summary.join(" "), "write confirmed")
                }
                Err(e) => {
                    tracing::warn!(device = %device, values = %summary.join(" "), error = %e, "write failed")
                }
            }
            let answer = match (&reply, &outcome) {
                (ControlReply::Iq { id, from, to }, Ok(_)) => Some(stanzas::iq_result(
                    id,
                    from,
                    to,
                    Some(translator::control::set_response()),
                )),
                (ControlReply::Iq { id, from, to }, Err(e)) => {
                    Some(stanzas::iq_error(id, from, to, request_error(e)))
                }
                (
                    ControlReply::Chat {
                        from,
                        to,
                        type_,
                        thread,
                    },
                    res,
                ) => {
                    let text = write_outcome(res, &summary);
                    Some(stanzas::text_message(
                        type_.clone(),
                        from,
                        to,
                        &text,
                        thread.clone(),
                    ))
                }
                (ControlReply::Room { from, room, nick }, res) => {
                    let text = format!("{nick}: {}", write_outcome(res, &summary));
                    Some(stanzas::text_message(
                        MessageType::Groupchat,
                        from,
                        room,
                        &text,
                        None,
                    ))
                }
                (ControlReply::Silent, _) => None,
            };
            let result = match &outcome {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.to_string(),
            };
            for ((field, new), old) in values.iter().zip(old) {
                store.audit(AuditEntry {
                    time: chrono::Utc::now(),
                    requester: requester.clone(),
                    device: device.to_string(),
                    field: field.to_string(),
                    old,
                    new: new.to_string(),
                    result: result.clone(),
                });
            }
            if let Ok(readings) = outcome {
                let _ = tx.send(Deferred::Readings(readings)).await;
            }
            if let Some(el) = answer {
                let _ = tx.send(Deferred::Send(el)).await;
            }
        });
    }
}

/// A chat line saying how a write went.
fn write_outcome(
    res: &Result<Vec<gateway_api::Reading>, RequestError>,
    summary: &[String],
) -> String {
    match res {
        Ok(readings) if !readings.is_empty() => {
            let done: Vec<String> = readings
                .iter()
                .map(|r| format!("{} = {}", r.field, r.value))
                .collect();
            format!("Done: {}", done.join(", "))
        }
        Ok(_) => format!("Done: {}", summary.join(", ")),
        Err(e) => format!("Not done: {e}"),
    }
}

fn request_error(e: &RequestError) -> StanzaError {
    let (type_, condition) = match e {
        RequestError::Unreachable(_) => (ErrorType::Wait, DefinedCondition::RecipientUnavailable),
        RequestError::Refused(_) => (ErrorType::Modify, DefinedCondition::NotAcceptable),
        RequestError::Timeout => (ErrorType::Wait, DefinedCondition::RemoteServerTimeout),
        RequestError::NotWritable(_) | RequestError::UnknownField(_) => {
            (ErrorType::Cancel, DefinedCondition::ItemNotFound)
        }
        RequestError::OutOfRange { .. } => (ErrorType::Modify, DefinedCondition::BadRequest),
        RequestError::Closed => (ErrorType::Wait, DefinedCondition::InternalServerError),
    };
    stanzas::error(type_, condition, &e.to_string())
}
