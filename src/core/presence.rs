//! Presence: the subscription state machine a component must run itself (RFC 6121 §3), and
//! the core's presence state ([`PresenceBook`]).
//!
//! The server keeps no roster for component JIDs, so the gateway approves, refuses, remembers
//! and answers probes ([`decide`]); the book remembers who subscribed to each device, holds
//! presence updates back until a device's `min_interval` has passed, and tells a reconnect from
//! a first connection.

use std::collections::{BTreeSet, HashMap, HashSet};

use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::time::DelayQueue;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::presence::Type;

use crate::access::Permission;
use crate::devices::{retain_mapped, Devices};
use crate::store::{Store, Subscription};

/// What to do with a presence stanza addressed to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubAction {
    /// Remember the subscriber, answer `subscribed`, then send current presence.
    Approve,
    /// Answer `unsubscribed`; remember nothing.
    Refuse,
    /// Forget the subscriber, answer `unsubscribed` and a final `unavailable`.
    Remove,
    /// Send current presence to the prober.
    AnswerProbe,
    /// Nothing: other presence types need no answer from a device.
    Ignore,
}

/// `allowed`: the access lists let the sender read the device. `subscribed`: the sender is a
/// stored subscriber.
pub fn decide(type_: &Type, allowed: bool, subscribed: bool) -> SubAction {
    match type_ {
        Type::Subscribe if allowed => SubAction::Approve,
        Type::Subscribe => SubAction::Refuse,
        Type::Unsubscribe if subscribed => SubAction::Remove,
        // Answering an unknown unsubscribe keeps the other side's roster consistent.
        Type::Unsubscribe => SubAction::Refuse,
        Type::Probe if subscribed && allowed => SubAction::AnswerProbe,
        // RFC 6121 §4.3.2: a probe from a non-subscriber gets `unsubscribed`, never presence.
        Type::Probe => SubAction::Refuse,
        Type::Subscribed | Type::Unsubscribed | Type::None | Type::Unavailable | Type::Error => {
            SubAction::Ignore
        }
    }
}

/// Who sees each device's presence, and when a held-back presence update goes out. Indexed like
/// the core's device table; the core keeps it in step when the table changes (a reload, a
/// discovered device coming or going).
pub(super) struct PresenceBook {
    /// Per device index: bare JIDs that see its presence. Mirrors the store.
    subscribers: Vec<BTreeSet<String>>,
    /// Stored subscribers of device ids not in the device table (they may come back on a
    /// reload, or be discovered again).
    orphans: HashMap<String, BTreeSet<String>>,
    /// Devices whose presence update waits for `min_interval` to pass.
    timers: DelayQueue<usize>,
    /// Upstream links that have been up at least once (the component domain, or each client
    /// session's JID): a link coming up again is a reconnect.
    links_seen: HashSet<Jid>,
}

impl PresenceBook {
    /// The stored subscriptions sorted onto `devices`. A subscriber the access lists no longer
    /// allow is dropped (from the store too); subscribers of devices not in the table are kept
    /// as orphans.
    pub(super) fn load(subscriptions: Vec<Subscription>, devices: &Devices, store: &Store) -> Self {
        let mut subscribers = vec![BTreeSet::new(); devices.len()];
        let mut orphans: HashMap<String, BTreeSet<String>> = HashMap::new();
        for s in subscriptions {
            let idx = gateway_api::DeviceId::new(&s.device)
                .ok()
                .and_then(|id| devices.index_of(&id));
            match idx {
                Some(idx) if devices.allows(idx, &s.jid, Permission::Read) => {
                    subscribers[idx].insert(s.jid);
                }
                Some(idx) => {
                    tracing::info!(device = %devices.get(idx).config.id, jid = %s.jid, "dropping a subscriber the access lists no longer allow");
                    store.remove_subscriber(&devices.get(idx).config.id, &s.jid);
                }
                // A device removed from the config keeps its rows: it may come back.
                None => {
                    orphans.entry(s.device).or_default().insert(s.jid);
                }
            }
        }
        PresenceBook {
            subscribers,
            orphans,
            timers: DelayQueue::new(),
            links_seen: HashSet::new(),
        }
    }

    /// The subscribers of device `idx`.
    pub(super) fn subscribers(&self, idx: usize) -> &BTreeSet<String> {
        &self.subscribers[idx]
    }

    pub(super) fn is_subscribed(&self, idx: usize, jid: &str) -> bool {
        self.subscribers[idx].contains(jid)
    }

    pub(super) fn subscribe(&mut self, idx: usize, jid: String) {
        self.subscribers[idx].insert(jid);
    }

    pub(super) fn unsubscribe(&mut self, idx: usize, jid: &str) {
        self.subscribers[idx].remove(jid);
    }

    /// Takes the subscribers of device `idx` (the device leaves the table, or moves).
    pub(super) fn take(&mut self, idx: usize) -> BTreeSet<String> {
        std::mem::take(&mut self.subscribers[idx])
    }

    /// Takes the remembered subscribers of a device id coming back into the table.
    pub(super) fn take_orphaned(&mut self, id: &str) -> BTreeSet<String> {
        self.orphans.remove(id).unwrap_or_default()
    }

    /// Remembers the subscribers of a device id that left the table.
    pub(super) fn orphan(&mut self, id: String, subscribers: BTreeSet<String>) {
        self.orphans.insert(id, subscribers);
    }

    /// The subscribers of a device appended to the table.
    pub(super) fn push(&mut self, subscribers: BTreeSet<String>) {
        self.subscribers.push(subscribers);
    }

    /// Subscribers for a whole new device table (a reload), indexed like it.
    pub(super) fn replace(&mut self, subscribers: Vec<BTreeSet<String>>) {
        self.subscribers = subscribers;
    }

    /// The device table was renumbered: `map[old]` is the new index, `None` for a device that
    /// left (take its subscribers first).
    pub(super) fn renumber(&mut self, map: &[Option<usize>]) {
        retain_mapped(&mut self.subscribers, map);
    }

    /// Devices the table has subscribers for (equal to the table's length).
    #[cfg(test)]
    pub(super) fn devices(&self) -> usize {
        self.subscribers.len()
    }

    /// Holds device `idx`'s presence update back until `at`.
    pub(super) fn hold_until(&mut self, idx: usize, at: Instant) {
        self.timers.insert_at(idx, at);
    }

    /// Forgets every held update (the device indices are about to change).
    pub(super) fn clear_held(&mut self) {
        self.timers.clear();
    }

    pub(super) fn has_held(&self) -> bool {
        !self.timers.is_empty()
    }

    /// The next device whose held update may go out now; `None` when none is held.
    pub(super) async fn next_due(&mut self) -> Option<usize> {
        self.timers.next().await.map(|e| e.into_inner())
    }

    /// Records that the upstream link `link` came up; `true` when it had been up before (a
    /// reconnect).
    pub(super) fn link_up(&mut self, link: &Jid) -> bool {
        !self.links_seen.insert(link.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_follow_the_access_lists() {
        assert_eq!(decide(&Type::Subscribe, true, false), SubAction::Approve);
        // Clients resend subscribe; the answer is the same.
        assert_eq!(decide(&Type::Subscribe, true, true), SubAction::Approve);
        assert_eq!(decide(&Type::Subscribe, false, false), SubAction::Refuse);
    }

    #[test]
    fn probes_reveal_presence_only_to_allowed_subscribers() {
        assert_eq!(decide(&Type::Probe, true, true), SubAction::AnswerProbe);
        assert_eq!(decide(&Type::Probe, true, false), SubAction::Refuse);
        assert_eq!(decide(&Type::Probe, false, true), SubAction::Refuse);
    }

    #[test]
    fn unsubscribe_removes_and_the_rest_is_ignored() {
        assert_eq!(decide(&Type::Unsubscribe, true, true), SubAction::Remove);
        assert_eq!(decide(&Type::Unsubscribe, false, false), SubAction::Refuse);
        for t in [
            Type::Subscribed,
            Type::Unsubscribed,
            Type::None,
            Type::Unavailable,
            Type::Error,
        ] {
            assert_eq!(decide(&t, true, true), SubAction::Ignore);
        }
    }

    #[test]
    fn the_book_sorts_stored_subscribers_and_follows_the_table() {
        let s = super::super::fuzzing::setup();
        let devices = Devices::from_config(&s.configs[0]).expect("the devices");
        let index = |id: &str| {
            devices
                .index_of(&gateway_api::DeviceId::new(id).expect("an id"))
                .expect("a configured device")
        };
        let (greenhouse, pump) = (index("greenhouse"), index("pump"));
        let sub = |device: &str, jid: &str| Subscription {
            device: device.to_owned(),
            jid: jid.to_owned(),
        };
        let mut book = PresenceBook::load(
            vec![
                sub("greenhouse", "bob@localhost"),
                sub("pump", "eve@elsewhere.example"),
                sub("gone", "bob@localhost"),
            ],
            &devices,
            &s.store,
        );
        assert!(book.is_subscribed(greenhouse, "bob@localhost"));
        // The access lists no longer let the stranger read: forgotten.
        assert!(book.subscribers(pump).is_empty());
        // A device not in the table keeps its subscribers for its return, once.
        assert_eq!(
            book.take_orphaned("gone"),
            BTreeSet::from(["bob@localhost".to_owned()])
        );
        assert!(book.take_orphaned("gone").is_empty());
        // Everything before greenhouse leaves: its subscribers move with it to index 0.
        let map: Vec<Option<usize>> = (0..devices.len())
            .map(|i| (i >= greenhouse).then(|| i - greenhouse))
            .collect();
        book.renumber(&map);
        assert_eq!(book.devices(), devices.len() - greenhouse);
        assert!(book.is_subscribed(0, "bob@localhost"));
    }

    #[test]
    fn a_link_coming_up_again_is_a_reconnect() {
        let s = super::super::fuzzing::setup();
        let devices = Devices::from_config(&s.configs[0]).expect("the devices");
        let mut book = PresenceBook::load(Vec::new(), &devices, &s.store);
        let a: Jid = "sensors.localhost".parse().expect("a JID");
        let b: Jid = "gateway@localhost/pump".parse().expect("a JID");
        assert!(!book.link_up(&a));
        assert!(!book.link_up(&b));
        assert!(book.link_up(&a));
    }
}
