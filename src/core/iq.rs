//! IQ requests addressed to the gateway or to a device (disco, ping, version, time, XEP-0323/0325; errors per RFC 6120 §8.3).

use chrono::{FixedOffset, Offset, Utc};
use minidom::Element;
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use xmpp_parsers::time::TimeResult;
use xmpp_parsers::version::VersionResult;

use super::Core;
use crate::access::Permission;
use crate::stats::Stats;
use crate::translator::xml_text::clean;
use crate::xmlns;
use crate::xmpp::stanzas;

/// What the gateway and every device answer to disco#info with (a device with writable fields
/// adds control).
const FEATURES: [&str; 6] = [
    xmlns::DISCO_INFO,
    xmlns::DISCO_ITEMS,
    xmlns::SENSOR_DATA,
    xmlns::PING,
    xmlns::VERSION,
    xmlns::TIME,
];

/// A request, with the addresses its answer goes back with.
pub(super) struct IqRequest {
    pub id: String,
    /// The requester (full JID).
    pub from: Jid,
    /// The JID the request was sent to: the answer comes from exactly this.
    pub to: Jid,
    pub payload: Element,
    pub is_get: bool,
}

impl IqRequest {
    pub fn result(&self, payload: Option<Element>) -> Element {
        stanzas::iq_result(&self.id, &self.to, &self.from, payload)
    }

    pub fn error(&self, type_: ErrorType, condition: DefinedCondition, text: &str) -> Element {
        stanzas::iq_error(
            &self.id,
            &self.to,
            &self.from,
            stanzas::error(type_, condition, text),
        )
    }

    pub fn unavailable(&self) -> Element {
        self.error(ErrorType::Cancel, DefinedCondition::ServiceUnavailable, "")
    }

    fn is(&self, name: &str, ns: &str) -> bool {
        self.payload.is(name, ns)
    }
}

impl Core {
    pub(super) fn on_iq(&mut self, iq: Iq) {
        let req = match iq {
            Iq::Get {
                from,
                to,
                id,
                payload,
            } => (from, to, id, payload, true),
            Iq::Set {
                from,
                to,
                id,
                payload,
            } => (from, to, id, payload, false),
            // Answers are never answered (RFC 6120 §8.2.3); some are answers to our own requests.
            // A spawned task's request (a chart's upload) gets its answer through the core.
            Iq::Result { id, payload, .. } if self.task_iqs.contains_key(&id) => {
                return self.task_iq_answer(&id, Ok(payload))
            }
            Iq::Error { id, error, .. } if self.task_iqs.contains_key(&id) => {
                return self.task_iq_answer(&id, Err(error))
            }
            Iq::Result { id, .. } => return self.on_own_iq_reply(&id, None),
            Iq::Error { id, error, .. } => return self.on_own_iq_reply(&id, Some(error)),
        };
        let (Some(from), Some(to), id, payload, is_get) = req else {
            return;
        };
        let req = IqRequest {
            id,
            from,
            to,
            payload,
            is_get,
        };
        tracing::debug!(from = %req.from, to = %req.to, id = %req.id, payload = req.payload.name(), "IQ request");
        if let Some(idx) = self.devices.by_jid(&req.to) {
            self.device_iq(idx, req);
        } else if self.is_gateway(&req.to) {
            self.gateway_iq(req);
        } else {
            self.reply(req.unavailable());
        }
    }

    /// Whether `to` addresses the gateway itself: the component domain, or the gateway session
    /// (or its bare account) in client mode.
    pub(super) fn is_gateway(&self, to: &Jid) -> bool {
        if self.client_mode {
            to.to_bare() == self.gateway_jid.to_bare()
                && to
                    .resource()
                    .is_none_or(|r| Some(r) == self.gateway_jid.resource())
        } else {
            to.to_bare() == self.gateway_jid.to_bare() && to.node().is_none()
        }
    }

    fn gateway_iq(&mut self, req: IqRequest) {
        let requester = req.from.to_bare().to_string();
        let answer = if req.is_get && req.is("query", xmlns::DISCO_INFO) {
            if req.payload.attr("node").is_some() {
                req.error(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "no such node",
                )
            } else {
                let info = DiscoInfoResult {
                    node: None,
                    identities: vec![Identity::new(
                        "component",
                        "generic",
                        "en",
                        clean(&self.config.gateway.name).into_owned(),
                    )],
                    // Sensor data: the gateway's own figures (super::readout::gateway_readout).
                    features: FEATURES.into_iter().map(str::to_owned).collect(),
                    extensions: vec![],
                };
                req.result(Some(info.into()))
            }
        } else if req.is_get && req.is("req", xmlns::SENSOR_DATA) {
            return self.gateway_readout(req);
        } else if req.is_get && req.is("query", xmlns::DISCO_ITEMS) {
            if req.payload.attr("node").is_some() {
                req.error(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "no such node",
                )
            } else {
                let items = self
                    .devices
                    .iter()
                    .filter(|(idx, _)| self.devices.allows(*idx, &requester, Permission::Read))
                    .map(|(_, d)| Item {
                        jid: d.jid.clone(),
                        node: None,
                        name: Some(clean(&d.config.name).into_owned()),
                    })
                    .collect();
                req.result(Some(
                    DiscoItemsResult {
                        node: None,
                        items,
                        rsm: None,
                    }
                    .into(),
                ))
            }
        } else if let Some(answer) = self.common_iq(&req) {
            answer
        } else if req.is_get && req.is("cancel", xmlns::SENSOR_DATA) {
            // The gateway queues no readouts of its own, so there is never one to cancel.
            req.error(
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                "no such readout",
            )
        } else if req.payload.ns() == xmlns::SENSOR_DATA {
            req.error(
                ErrorType::Cancel,
                DefinedCondition::FeatureNotImplemented,
                "",
            )
        } else {
            req.unavailable()
        };
        self.reply(answer);
    }

    /// Ping, version and time: answered alike by the gateway and every device.
    fn common_iq(&self, req: &IqRequest) -> Option<Element> {
        if !req.is_get {
            return None;
        }
        if req.is("ping", xmlns::PING) {
            Some(req.result(None))
        } else if req.is("query", xmlns::VERSION) {
            let v = VersionResult {
                name: env!("CARGO_PKG_NAME").to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                os: Some(std::env::consts::OS.to_owned()),
            };
            Some(req.result(Some(v.into())))
        } else if req.is("time", xmlns::TIME) {
            let t = TimeResult {
                tz_offset: FixedOffset::east_opt(0).unwrap_or(Utc.fix()),
                utc: Utc::now(),
            };
            Some(req.result(Some(t.into())))
        } else {
            None
        }
    }

    fn device_iq(&mut self, idx: usize, req: IqRequest) {
        let requester = req.from.to_bare().to_string();
        // A device answers only those who may read it; the others learn nothing about it.
        if !self.devices.allows(idx, &requester, Permission::Read) {
            Stats::inc(&self.stats.access_refused);
            let device = self.devices.get(idx).config.id.to_string();
            self.log_refused("request", &device, &requester);
            let answer = req.error(ErrorType::Cancel, DefinedCondition::Forbidden, "");
            self.reply(answer);
            return;
        }
        let answer = if req.is_get && req.is("query", xmlns::DISCO_INFO) {
            if req.payload.attr("node").is_some() {
                req.error(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "no such node",
                )
            } else {
                let dev = self.devices.get(idx);
                let mut features: std::collections::BTreeSet<String> =
                    FEATURES.into_iter().map(str::to_owned).collect();
                if dev.has_writable_fields() {
                    features.insert(xmlns::CONTROL.to_owned());
                }
                let info = DiscoInfoResult {
                    node: None,
                    identities: vec![Identity::new(
                        "client",
                        "bot",
                        "en",
                        clean(&dev.config.name).into_owned(),
                    )],
                    features,
                    extensions: vec![],
                };
                req.result(Some(info.into()))
            }
        } else if req.is_get && req.is("query", xmlns::DISCO_ITEMS) {
            if req.payload.attr("node").is_some() {
                req.error(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "no such node",
                )
            } else {
                req.result(Some(
                    DiscoItemsResult {
                        node: None,
                        items: vec![],
                        rsm: None,
                    }
                    .into(),
                ))
            }
        } else if req.is_get && req.is("req", xmlns::SENSOR_DATA) {
            return self.on_readout_request(idx, req);
        } else if req.is_get && req.is("cancel", xmlns::SENSOR_DATA) {
            return self.on_readout_cancel(req);
        } else if !req.is_get && req.is("set", xmlns::CONTROL) {
            let reply = super::control::ControlReply::Iq {
                id: req.id.clone(),
                from: req.to.clone(),
                to: req.from.clone(),
            };
            let payload = req.payload.clone();
            return self.on_control_set(idx, &payload, &req.from.clone(), reply);
        } else if let Some(answer) = self.common_iq(&req) {
            answer
        } else if req.payload.ns() == xmlns::SENSOR_DATA || req.payload.ns() == xmlns::CONTROL {
            // A namespace we speak, but not this part of it (RFC 6120 §8.3.3.3).
            req.error(
                ErrorType::Cancel,
                DefinedCondition::FeatureNotImplemented,
                "",
            )
        } else {
            req.unavailable()
        };
        self.reply(answer);
    }
}
