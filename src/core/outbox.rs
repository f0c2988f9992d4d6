//! What the core owes the upstream: replies in order, then presence, each (device, recipient)
//! pair of presence at most once however often it changed before going out.
//!
//! The core loop takes from here only when the upstream channel has room, so nothing in the
//! core ever waits on the XMPP side; the presence stanza itself is built when it is taken, from
//! the device's state at that moment.

use std::collections::{HashSet, VecDeque};

use minidom::Element;
use tokio::sync::mpsc;

/// Replies waiting for room upstream; beyond this the oldest are dropped (and counted).
const MAX_URGENT: usize = 10_000;

/// Presence owed: a device index and its recipient, or `None` for a broadcast.
pub(super) type PresenceOwed = (usize, Option<String>);

pub(super) struct Outbox {
    /// To the upstream session, which writes what it receives; the core holds the only sender
    /// and drops it at shutdown, which lets the session close the stream.
    pub(super) out: mpsc::Sender<Element>,
    /// Replies, in order; sent before presence.
    urgent: VecDeque<Element>,
    /// Presence owed, in the order first owed; `presence_queued` holds the same pairs.
    presence_queue: VecDeque<PresenceOwed>,
    presence_queued: HashSet<PresenceOwed>,
}

/// The next thing to send.
pub(super) enum Next {
    Reply(Element),
    Presence(PresenceOwed),
}

impl Outbox {
    pub(super) fn new(out: mpsc::Sender<Element>) -> Self {
        Outbox {
            out,
            urgent: VecDeque::new(),
            presence_queue: VecDeque::new(),
            presence_queued: HashSet::new(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.presence_queue.is_empty()
    }

    /// Replies waiting.
    pub(super) fn replies(&self) -> usize {
        self.urgent.len()
    }

    /// Queues a reply; past `MAX_URGENT` the oldest is dropped, and `false` says so.
    pub(super) fn push_reply(&mut self, el: Element) -> bool {
        let room = self.urgent.len() < MAX_URGENT;
        if !room {
            self.urgent.pop_front();
        }
        self.urgent.push_back(el);
        room
    }

    /// Owes presence of `idx` to `to`; `false` when it was owed already (coalesced).
    pub(super) fn push_presence(&mut self, idx: usize, to: Option<String>) -> bool {
        if self.presence_queued.insert((idx, to.clone())) {
            self.presence_queue.push_back((idx, to));
            true
        } else {
            false
        }
    }

    /// The next reply, else the next presence owed.
    pub(super) fn pop(&mut self) -> Option<Next> {
        if let Some(el) = self.urgent.pop_front() {
            return Some(Next::Reply(el));
        }
        let owed = self.presence_queue.pop_front()?;
        self.presence_queued.remove(&owed);
        Some(Next::Presence(owed))
    }

    /// Forgets everything owed (the upstream went down: it is all said again when it returns).
    pub(super) fn clear(&mut self) {
        self.urgent.clear();
        self.presence_queue.clear();
        self.presence_queued.clear();
    }

    /// Takes the replies waiting, in order.
    pub(super) fn take_replies(&mut self) -> Vec<Element> {
        self.urgent.drain(..).collect()
    }

    /// Takes the presence owed, in order (a reload re-queues it under the new device indices).
    pub(super) fn take_presence(&mut self) -> Vec<PresenceOwed> {
        self.presence_queued.clear();
        self.presence_queue.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> Outbox {
        Outbox::new(mpsc::channel(1).0)
    }

    #[test]
    fn replies_go_before_presence_and_presence_is_owed_once() {
        let mut o = outbox();
        assert!(o.push_presence(0, None));
        assert!(o.push_presence(1, Some("a@x".into())));
        assert!(!o.push_presence(0, None));
        assert!(o.push_reply(Element::builder("iq", "jabber:component:accept").build()));
        assert_eq!(o.replies(), 1);
        assert!(matches!(o.pop(), Some(Next::Reply(_))));
        assert!(matches!(o.pop(), Some(Next::Presence((0, None)))));
        // Owed again once it went out.
        assert!(o.push_presence(0, None));
        assert!(matches!(o.pop(), Some(Next::Presence((1, Some(_))))));
        assert!(matches!(o.pop(), Some(Next::Presence((0, None)))));
        assert!(o.pop().is_none());
        assert!(o.is_empty());
    }

    #[test]
    fn past_the_limit_the_oldest_reply_is_dropped() {
        let mut o = outbox();
        for i in 0..MAX_URGENT {
            let el = Element::builder("iq", "jabber:component:accept")
                .append(i.to_string())
                .build();
            assert!(o.push_reply(el));
        }
        assert!(!o.push_reply(Element::builder("iq", "jabber:component:accept").build()));
        assert_eq!(o.replies(), MAX_URGENT);
        let Some(Next::Reply(first)) = o.pop() else {
            panic!("a reply")
        };
        assert_eq!(first.text(), "1");
    }

    #[test]
    fn taken_presence_is_no_longer_owed() {
        let mut o = outbox();
        o.push_presence(2, None);
        assert_eq!(o.take_presence(), [(2, None)]);
        assert!(o.push_presence(2, None));
        o.clear();
        assert!(o.is_empty());
    }
}
