//! Publishing changes: presence (throttled by `min_interval`), push headlines to `[publish]
//! notify`, and PubSub items on `[publish] pubsub`.
//!
//! A device's changes are considered once per batch of readings taken together (one message
//! from a broker, one poll, one record read off a line); when its `min_interval` has passed they go out at once, otherwise
//! a timer brings them out later with the latest values.
//! Availability changes are never held back.

use minidom::Element;
use tokio::time::Instant;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza_error::{DefinedCondition, StanzaError};

use super::Core;
use crate::config::PushFormat;
use crate::stats::Stats;
use crate::translator;
use crate::translator::sensordata::{Sample, Style};
use crate::xmpp::stanzas;

/// What an IQ the gateway sent itself was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnIq {
    CreateNode(usize),
    Publish(usize),
}

/// Whether a device's PubSub node exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Unknown,
    /// A create request is out; the latest values follow once it is answered.
    Creating,
    Ready,
    /// The service refused to create it (logged once); nothing more is sent there.
    Refused,
}

impl Core {
    /// Publishes device `idx` now, or once its `min_interval` has passed.
    /// `availability`: it came online or went offline, which is never held back.
    pub(super) fn publish_change(&mut self, idx: usize, availability: bool) {
        if !self.link_up {
            // Everything is announced when the link returns.
            return;
        }
        let now = Instant::now();
        let min_interval = self.config.publish.min_interval;
        let dev = self.devices.get_mut(idx);
        if availability || dev.quiet_until.is_none_or(|t| now >= t) {
            dev.presence_dirty = false;
            dev.quiet_until = Some(now + min_interval);
            dev.mark_published();
            let values = std::mem::take(&mut dev.values_dirty);
            if availability || self.config.publish.presence {
                self.queue_presence_to_all(idx);
            }
            if values && self.devices.get(idx).is_online() {
                self.push(idx);
                self.publish_item(idx);
                self.post_to_room(idx);
            }
        } else {
            if dev.presence_dirty {
                Stats::inc(&self.stats.presence_coalesced);
            }
            dev.presence_dirty = true;
            if !dev.timer_pending {
                dev.timer_pending = true;
                let at = dev.quiet_until.unwrap_or(now);
                self.timers.insert_at(idx, at);
            }
        }
    }

    pub(super) fn on_timer(&mut self, idx: usize) {
        let dev = self.devices.get_mut(idx);
        dev.timer_pending = false;
        if dev.presence_dirty {
            self.publish_change(idx, false);
        }
    }

    /// After a (re)connect: presence to every subscriber and the latest values to PubSub,
    /// but no push headlines (stale changes are not news).
    pub(super) fn announce(&mut self, idx: usize) {
        let now = Instant::now();
        let dev = self.devices.get_mut(idx);
        dev.mark_published();
        dev.presence_dirty = false;
        dev.values_dirty = false;
        dev.quiet_until = Some(now + self.config.publish.min_interval);
        self.queue_presence_to_all(idx);
        if self.devices.get(idx).values.iter().any(Option::is_some) {
            self.publish_item(idx);
        }
        // Rooms forget occupants whose server link dropped: join again.
        self.join_room(idx);
    }

    /// The current values of device `idx` as an XEP-0323 `<fields>` payload (seqnr 0, done).
    pub(super) fn current_fields(&self, idx: usize) -> Element {
        let dev = self.devices.get(idx);
        let readings = dev.readings();
        let specs: Vec<gateway_api::FieldSpec> = dev.specs().cloned().collect();
        let mut messages =
            super::readout::fields_messages(&specs, dev.config.id.as_str(), 0, &readings, 0);
        // One device's current values fit one payload; the last is the one with `done`.
        messages
            .pop()
            .unwrap_or_else(|| translator::sensordata::fields(0, dev.config.id.as_str(), &[], true))
    }

    /// The current values of device `idx` as a compact push carries them.
    fn compact_fields(&self, idx: usize) -> Element {
        let dev = self.devices.get(idx);
        // Straight from the latest values: no readings copied out per push.
        let samples: Vec<Sample<'_>> = dev
            .config
            .fields
            .iter()
            .zip(&dev.values)
            .filter_map(|(f, s)| {
                let s = s.as_ref()?;
                Some(Sample {
                    timestamp: s.timestamp,
                    values: vec![(&f.spec, &s.value, s.quality)],
                    momentary: true,
                })
            })
            .collect();
        translator::sensordata::fields_styled(
            0,
            dev.config.id.as_str(),
            &samples,
            true,
            Style::Compact,
        )
    }

    /// A headline per change to every `[publish] notify` JID: the values as text, and as fields
    /// unless `[publish] format = "text"`.
    fn push(&mut self, idx: usize) {
        if self.config.publish.notify.is_empty() {
            return;
        }
        let dev = self.devices.get(idx);
        let body = translator::status::status_line(&dev.current());
        let fields = match self.config.publish.format {
            PushFormat::Compact => Some(self.compact_fields(idx)),
            PushFormat::Full => Some(self.current_fields(idx)),
            PushFormat::Text => None,
        };
        let from = dev.jid.as_str();
        let notify = &self.config.publish.notify;
        let mut headlines = Vec::with_capacity(notify.len());
        let mut fields = fields;
        for (i, to) in notify.iter().enumerate() {
            // The last target takes the payload itself; the others a copy.
            let payload = if i + 1 == notify.len() {
                fields.take()
            } else {
                fields.clone()
            };
            headlines.push(stanzas::headline(from, to, &body, payload));
        }
        for el in headlines {
            self.reply(el);
        }
    }

    fn next_iq_id(&mut self, what: &str) -> String {
        self.iq_counter += 1;
        format!("{what}-{}", self.iq_counter)
    }

    fn node_name(&self, idx: usize) -> String {
        translator::pubsub::node_name(self.devices.get(idx).config.id.as_str())
    }

    /// The latest values as item `current` of node `iot/<id>/sensordata` (created on first use).
    fn publish_item(&mut self, idx: usize) {
        let Some(service) = self.config.publish.pubsub.clone() else {
            return;
        };
        let Ok(service) = Jid::new(&service) else {
            return;
        };
        match self.pubsub_nodes[idx] {
            NodeState::Ready => {}
            NodeState::Creating | NodeState::Refused => return,
            NodeState::Unknown => {
                let id = self.next_iq_id("pubsub-create");
                let create = translator::pubsub::create_node(&self.node_name(idx));
                self.own_iqs.insert(id.clone(), OwnIq::CreateNode(idx));
                self.pubsub_nodes[idx] = NodeState::Creating;
                let iq = iq_set(&id, &self.gateway_jid, &service, create);
                return self.reply(iq);
            }
        }
        let id = self.next_iq_id("pubsub-publish");
        let publish = translator::pubsub::publish(&self.node_name(idx), self.current_fields(idx));
        self.own_iqs.insert(id.clone(), OwnIq::Publish(idx));
        let iq = iq_set(&id, &self.gateway_jid, &service, publish);
        self.reply(iq);
    }

    /// The answer to an IQ the gateway sent (any other result or error is ignored).
    pub(super) fn on_own_iq_reply(&mut self, id: &str, error: Option<StanzaError>) {
        let Some(what) = self.own_iqs.remove(id) else {
            return;
        };
        match (what, error) {
            (OwnIq::CreateNode(idx), None) => {
                tracing::info!(node = %self.node_name(idx), "PubSub node created");
                self.pubsub_nodes[idx] = NodeState::Ready;
                self.publish_item(idx);
            }
            // It exists already (an earlier run created it): publish into it.
            (OwnIq::CreateNode(idx), Some(e))
                if e.defined_condition == DefinedCondition::Conflict =>
            {
                self.pubsub_nodes[idx] = NodeState::Ready;
                self.publish_item(idx);
            }
            (OwnIq::CreateNode(idx), Some(e)) => {
                self.pubsub_nodes[idx] = NodeState::Refused;
                tracing::error!(
                    node = %self.node_name(idx),
                    error = ?e.defined_condition,
                    "the PubSub service refused to create the node: make the gateway's JID an admin of the service \
                     (Prosody: admins = {{ \"{}\" }} in the pubsub Component)",
                    self.gateway_jid.to_bare()
                );
            }
            (OwnIq::Publish(_), None) => {}
            (OwnIq::Publish(idx), Some(e)) => {
                if e.defined_condition == DefinedCondition::ItemNotFound {
                    // Deleted behind our back: create it again with the next change.
                    self.pubsub_nodes[idx] = NodeState::Unknown;
                }
                tracing::warn!(node = %self.node_name(idx), error = ?e.defined_condition, "PubSub publish failed");
            }
        }
    }
}

fn iq_set(id: &str, from: &Jid, to: &Jid, payload: Element) -> Element {
    xmpp_parsers::iq::Iq::Set {
        from: Some(from.clone()),
        to: Some(to.clone()),
        id: id.to_owned(),
        payload,
    }
    .into()
}
