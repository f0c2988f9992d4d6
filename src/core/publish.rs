//! Publishing changes: presence (throttled by `min_interval`), push headlines to `[publish]
//! notify`, and PubSub items on `[publish] pubsub`.
//!
//! A device's changes are considered once per batch of readings taken together (one message
//! from a broker, one poll, one record read off a line); when its `min_interval` has passed they go out at once, otherwise
//! a timer brings them out later with the latest values.
//! Availability changes are never held back.

use std::collections::HashMap;
use std::time::Duration;

use minidom::Element;
use tokio::time::Instant;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza_error::{DefinedCondition, StanzaError};

use super::outbox::Pushed;
use super::Core;
use crate::config::PushFormat;
use crate::devices::retain_mapped;
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

/// The gateway's own traffic with `[publish] pubsub`: whether each device's node exists, and
/// the IQs it sent there that wait for an answer. Indexed like the core's device table.
pub(super) struct PubSubNodes {
    /// IQs the gateway sent itself, by id, until their answer arrives.
    own_iqs: HashMap<String, OwnIq>,
    /// Per device: whether its PubSub node is known to exist.
    nodes: Vec<NodeState>,
    /// Numbers the gateway's own IQ ids.
    iq_counter: u64,
}

impl PubSubNodes {
    /// For a table of `devices` devices, none of whose nodes is known yet.
    pub(super) fn new(devices: usize) -> Self {
        PubSubNodes {
            own_iqs: HashMap::new(),
            nodes: vec![NodeState::Unknown; devices],
            iq_counter: 0,
        }
    }

    /// A new id for an IQ of the gateway's own, `<what>-<n>`.
    pub(super) fn next_iq_id(&mut self, what: &str) -> String {
        self.iq_counter += 1;
        format!("{what}-{}", self.iq_counter)
    }

    pub(super) fn node(&self, idx: usize) -> NodeState {
        self.nodes[idx]
    }

    pub(super) fn set_node(&mut self, idx: usize, state: NodeState) {
        self.nodes[idx] = state;
    }

    /// Remembers the IQ `id`, sent for `what`, until its answer arrives.
    pub(super) fn sent(&mut self, id: String, what: OwnIq) {
        self.own_iqs.insert(id, what);
    }

    /// What the IQ `id` was sent for, now that its answer came; `None` for one the gateway did
    /// not send (or no longer waits for).
    pub(super) fn answered(&mut self, id: &str) -> Option<OwnIq> {
        self.own_iqs.remove(id)
    }

    /// The upstream went down: the IQs in flight died with it, so a node being created may not
    /// exist.
    pub(super) fn link_down(&mut self) {
        self.own_iqs.clear();
        for state in &mut self.nodes {
            if *state == NodeState::Creating {
                *state = NodeState::Unknown;
            }
        }
    }

    /// Device `idx`'s node state for the same device in a reloaded table (a creation in flight
    /// is forgotten with the IQs).
    pub(super) fn carried_over(&self, idx: usize) -> NodeState {
        match self.nodes[idx] {
            NodeState::Creating => NodeState::Unknown,
            other => other,
        }
    }

    /// Node states for a whole new device table (a reload), indexed like it; the IQs in flight
    /// name old indices and are forgotten.
    pub(super) fn replace(&mut self, nodes: Vec<NodeState>) {
        self.nodes = nodes;
        self.own_iqs.clear();
    }

    /// A device appended to the table; its node is not known yet.
    pub(super) fn push(&mut self) {
        self.nodes.push(NodeState::Unknown);
    }

    /// The device table was renumbered (`map` as from `Devices::retain`): IQs in flight for a
    /// device that left are forgotten, the others follow their device.
    pub(super) fn renumber(&mut self, map: &[Option<usize>]) {
        retain_mapped(&mut self.nodes, map);
        self.own_iqs.retain(|_, what| match what {
            OwnIq::CreateNode(idx) | OwnIq::Publish(idx) => match map[*idx] {
                Some(new) => {
                    *idx = new;
                    true
                }
                None => false,
            },
        });
    }
}

/// Client mode: a device's presence carries the status line with its values, and the server
/// copies each one to every session of the gateway's account and to every contact of it. So
/// value changes update it at most this often there, whatever `min_interval` allows; pushes,
/// PubSub and the room still get every change, and availability is never held back.
pub(super) const CLIENT_PRESENCE_INTERVAL: Duration = Duration::from_secs(1);

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
                let held = self.client_mode
                    && !availability
                    && dev.presence_quiet_until.is_some_and(|t| now < t);
                if held {
                    // The status line follows once the second is over; the values go out
                    // below as they are.
                    let until = dev.presence_quiet_until;
                    self.hold_presence(idx, until, now);
                } else {
                    if self.client_mode {
                        dev.presence_quiet_until = Some(now + CLIENT_PRESENCE_INTERVAL);
                    }
                    self.queue_presence_to_all(idx);
                }
            }
            if values && self.devices.get(idx).is_online() {
                self.push(idx);
                self.publish_item(idx);
                self.post_to_room(idx);
            }
        } else {
            let until = dev.quiet_until;
            self.hold_presence(idx, until, now);
        }
    }

    /// Device `idx`'s presence update waits until `until` (or the next turn); a timer brings
    /// it out then with the latest values.
    fn hold_presence(&mut self, idx: usize, until: Option<Instant>, now: Instant) {
        let dev = self.devices.get_mut(idx);
        if dev.presence_dirty {
            Stats::inc(&self.stats.presence_coalesced);
        }
        dev.presence_dirty = true;
        if !dev.timer_pending {
            dev.timer_pending = true;
            self.presence.hold_until(idx, until.unwrap_or(now));
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
        if self.client_mode {
            dev.presence_quiet_until = Some(now + CLIENT_PRESENCE_INTERVAL);
        }
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
        // Nothing is queued while the upstream is down: build nothing either.
        if self.config.publish.notify.is_empty() || !self.link_up {
            return;
        }
        let dev = self.devices.get(idx);
        let body = translator::status::status_line(&dev.current());
        let mut fields = match self.config.publish.format {
            PushFormat::Compact => Some(self.compact_fields(idx)),
            PushFormat::Full => Some(self.current_fields(idx)),
            PushFormat::Text => None,
        };
        let from = dev.jid.as_str();
        let notify = &self.config.publish.notify;
        // Built first: `dev` borrows the device table, and queueing needs the core.
        let mut headlines = Vec::with_capacity(notify.len());
        for (i, to) in notify.iter().enumerate() {
            // The last target takes the payload itself; the others a copy.
            let payload = if i + 1 == notify.len() {
                fields.take()
            } else {
                fields.clone()
            };
            headlines.push(stanzas::headline(from, to, &body, payload));
        }
        for (i, el) in headlines.into_iter().enumerate() {
            match self.outbox.push_push((idx, i), el) {
                Pushed::Joined => Stats::inc(&self.stats.pushes_joined),
                Pushed::Queued(true) => {}
                Pushed::Queued(false) => Stats::inc(&self.stats.replies_dropped),
            }
        }
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
        match self.pubsub.node(idx) {
            NodeState::Ready => {}
            NodeState::Creating | NodeState::Refused => return,
            NodeState::Unknown => {
                let id = self.pubsub.next_iq_id("pubsub-create");
                let create = translator::pubsub::create_node(&self.node_name(idx));
                self.pubsub.sent(id.clone(), OwnIq::CreateNode(idx));
                self.pubsub.set_node(idx, NodeState::Creating);
                let iq = iq_set(&id, &self.gateway_jid, &service, create);
                return self.reply(iq);
            }
        }
        let id = self.pubsub.next_iq_id("pubsub-publish");
        let publish = translator::pubsub::publish(&self.node_name(idx), self.current_fields(idx));
        self.pubsub.sent(id.clone(), OwnIq::Publish(idx));
        let iq = iq_set(&id, &self.gateway_jid, &service, publish);
        self.reply(iq);
    }

    /// The answer to an IQ the gateway sent (any other result or error is ignored).
    pub(super) fn on_own_iq_reply(&mut self, id: &str, error: Option<StanzaError>) {
        let Some(what) = self.pubsub.answered(id) else {
            return;
        };
        match (what, error) {
            (OwnIq::CreateNode(idx), None) => {
                tracing::info!(node = %self.node_name(idx), "PubSub node created");
                self.pubsub.set_node(idx, NodeState::Ready);
                self.publish_item(idx);
            }
            // It exists already (an earlier run created it): publish into it.
            (OwnIq::CreateNode(idx), Some(e))
                if e.defined_condition == DefinedCondition::Conflict =>
            {
                self.pubsub.set_node(idx, NodeState::Ready);
                self.publish_item(idx);
            }
            (OwnIq::CreateNode(idx), Some(e)) => {
                self.pubsub.set_node(idx, NodeState::Refused);
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
                    self.pubsub.set_node(idx, NodeState::Unknown);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pubsub_nodes_follow_the_device_table() {
        let mut p = PubSubNodes::new(3);
        let create = p.next_iq_id("pubsub-create");
        assert_ne!(create, p.next_iq_id("pubsub-create"));
        p.sent(create.clone(), OwnIq::CreateNode(0));
        p.set_node(0, NodeState::Creating);
        p.sent("a".into(), OwnIq::Publish(1));
        p.set_node(1, NodeState::Ready);
        p.sent("b".into(), OwnIq::Publish(2));
        // Device 1 leaves: its IQ is forgotten, device 2's follows it to index 1.
        p.renumber(&[Some(0), None, Some(1)]);
        assert_eq!(p.node(1), NodeState::Unknown);
        assert_eq!(p.answered("a"), None);
        assert_eq!(p.answered("b"), Some(OwnIq::Publish(1)));
        // A creation in flight does not survive a reload or the link.
        assert_eq!(p.carried_over(0), NodeState::Unknown);
        p.link_down();
        assert_eq!(p.node(0), NodeState::Unknown);
        assert_eq!(p.answered(&create), None);
    }
}
