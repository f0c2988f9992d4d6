//! What the core owes the upstream: replies in order, then presence, each (device, recipient)
//! pair of presence at most once however often it changed before going out.
//!
//! A push headline that is still waiting takes the next readings of its device for the same
//! recipient (up to [`MAX_READINGS_PER_PUSH`] and [`MAX_JOINED_PUSH_BYTES`]): when the core or
//! the server is behind, the server then routes one stanza for several readings instead of one
//! each, and nothing is dropped. When both keep up, a push leaves before the next reading comes
//! and goes out on its own.
//!
//! The core loop takes from here only when the upstream channel has room, so nothing in the
//! core ever waits on the XMPP side; the presence stanza itself is built when it is taken, from
//! the device's state at that moment.

use std::collections::{HashMap, HashSet, VecDeque};

use minidom::Element;
use tokio::sync::mpsc;

use crate::xmpp::stanzas;

/// Readings waiting for room upstream; beyond this the oldest reply is dropped (and counted).
const MAX_URGENT: usize = 10_000;
/// Readings one waiting push takes at most: a chat client shows it as one short list.
pub(super) const MAX_READINGS_PER_PUSH: usize = 32;
/// Bytes a waiting push grows to at most by taking readings. Servers close a stream that sends
/// a stanza above their limit (64 KiB is common); a reading bigger than this still goes out
/// alone, as it would have anyway.
const MAX_JOINED_PUSH_BYTES: usize = 16 * 1024;

/// Which pushes may be folded together: a device index and the index of its recipient in
/// `[publish] notify`.
pub(super) type PushKey = (usize, usize);

/// Presence owed: a device index and its recipient, or `None` for a broadcast.
pub(super) type PresenceOwed = (usize, Option<String>);

pub(super) struct Outbox {
    /// To the upstream session, which writes what it receives; the core holds the only sender
    /// and drops it at shutdown, which lets the session close the stream.
    pub(super) out: mpsc::Sender<Element>,
    /// Replies, in order; sent before presence.
    urgent: VecDeque<Queued>,
    /// The sequence number of `urgent[0]`: entry `n` of `urgent` was queued as `front + n`.
    front: u64,
    /// Readings in `urgent` (a reply counts one, a push as many readings as it carries).
    readings: usize,
    /// Per push key, the sequence number of its push that is still waiting, if any.
    waiting_push: HashMap<PushKey, u64>,
    /// Presence owed, in the order first owed; `presence_queued` holds the same pairs.
    presence_queue: VecDeque<PresenceOwed>,
    presence_queued: HashSet<PresenceOwed>,
}

/// A reply waiting in order.
struct Queued {
    el: Element,
    /// Set for a push headline that later readings may still join.
    push: Option<PushKey>,
    readings: usize,
    /// About how many bytes `el` is written, once a reading wanted to join it.
    bytes: Option<usize>,
}

/// What became of a queued push.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pushed {
    /// Queued on its own; `false` when the oldest reply was dropped to make room.
    Queued(bool),
    /// Folded into the push of the same key that is still waiting.
    Joined,
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
            front: 0,
            readings: 0,
            waiting_push: HashMap::new(),
            presence_queue: VecDeque::new(),
            presence_queued: HashSet::new(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.presence_queue.is_empty()
    }

    /// Readings waiting in replies (each reply counts one, a push each reading it carries).
    pub(super) fn replies(&self) -> usize {
        self.readings
    }

    /// Queues a reply; past `MAX_URGENT` the oldest is dropped, and `false` says so.
    pub(super) fn push_reply(&mut self, el: Element) -> bool {
        self.enqueue(Queued {
            el,
            push: None,
            readings: 1,
            bytes: None,
        })
    }

    /// Queues push headline `el` for `key`, or folds it into that key's push if one is still
    /// waiting and has room.
    pub(super) fn push_push(&mut self, key: PushKey, el: Element) -> Pushed {
        if let Some(&seq) = self.waiting_push.get(&key) {
            if let Some(q) = seq
                .checked_sub(self.front)
                .and_then(|at| self.urgent.get_mut(at as usize))
            {
                if q.push == Some(key) && q.readings < MAX_READINGS_PER_PUSH {
                    let had = *q.bytes.get_or_insert_with(|| stanzas::approx_len(&q.el));
                    let adds = stanzas::approx_len(&el);
                    if had + adds <= MAX_JOINED_PUSH_BYTES {
                        stanzas::extend_headline(&mut q.el, el);
                        q.bytes = Some(had + adds);
                        q.readings += 1;
                        self.readings += 1;
                        return Pushed::Joined;
                    }
                }
            }
        }
        let room = self.enqueue(Queued {
            el,
            push: Some(key),
            readings: 1,
            bytes: None,
        });
        // It is the last entry now.
        let seq = self.front + self.urgent.len() as u64 - 1;
        self.waiting_push.insert(key, seq);
        Pushed::Queued(room)
    }

    fn enqueue(&mut self, q: Queued) -> bool {
        let room = self.readings < MAX_URGENT;
        if !room {
            self.pop_reply();
        }
        self.readings += q.readings;
        self.urgent.push_back(q);
        room
    }

    fn pop_reply(&mut self) -> Option<Element> {
        let q = self.urgent.pop_front()?;
        let seq = self.front;
        self.front += 1;
        self.readings -= q.readings;
        if let Some(key) = q.push {
            if self.waiting_push.get(&key) == Some(&seq) {
                self.waiting_push.remove(&key);
            }
        }
        Some(q.el)
    }

    /// Waiting pushes take no further readings: their keys are about to mean other devices or
    /// recipients (the device table was renumbered, or the configuration reloaded).
    pub(super) fn seal_pushes(&mut self) {
        self.waiting_push.clear();
        for q in &mut self.urgent {
            q.push = None;
        }
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
        if let Some(el) = self.pop_reply() {
            return Some(Next::Reply(el));
        }
        let owed = self.presence_queue.pop_front()?;
        self.presence_queued.remove(&owed);
        Some(Next::Presence(owed))
    }

    /// Forgets everything owed (the upstream went down: it is all said again when it returns).
    pub(super) fn clear(&mut self) {
        self.front += self.urgent.len() as u64;
        self.urgent.clear();
        self.readings = 0;
        self.waiting_push.clear();
        self.presence_queue.clear();
        self.presence_queued.clear();
    }

    /// Takes the replies waiting, in order.
    pub(super) fn take_replies(&mut self) -> Vec<Element> {
        std::iter::from_fn(|| self.pop_reply()).collect()
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

    fn headline(body: &str) -> Element {
        stanzas::headline("d@gw.example.org", "u@example.org", body, None)
    }

    fn body(next: Option<Next>) -> String {
        match next {
            Some(Next::Reply(el)) => el
                .get_child("body", crate::xmlns::CLIENT)
                .map(Element::text)
                .unwrap_or_default(),
            _ => panic!("a reply"),
        }
    }

    #[test]
    fn a_waiting_push_takes_later_readings_of_its_key_only() {
        let mut o = outbox();
        assert_eq!(o.push_push((0, 0), headline("a1")), Pushed::Queued(true));
        assert_eq!(o.push_push((1, 0), headline("b1")), Pushed::Queued(true));
        assert_eq!(o.push_push((0, 0), headline("a2")), Pushed::Joined);
        assert_eq!(
            o.push_push((0, 1), headline("a1 to the other")),
            Pushed::Queued(true)
        );
        assert_eq!(o.replies(), 4);
        assert_eq!(body(o.pop()), "a1\na2");
        assert_eq!(o.replies(), 2);
        // Gone out: the next reading starts a push of its own, behind the others.
        assert_eq!(o.push_push((0, 0), headline("a3")), Pushed::Queued(true));
        assert_eq!(o.push_push((1, 0), headline("b2")), Pushed::Joined);
        assert_eq!(body(o.pop()), "b1\nb2");
        assert_eq!(body(o.pop()), "a1 to the other");
        assert_eq!(body(o.pop()), "a3");
        assert!(o.pop().is_none());
        assert_eq!(o.replies(), 0);
    }

    #[test]
    fn a_full_push_and_a_sealed_one_take_no_more() {
        let mut o = outbox();
        for i in 0..=MAX_READINGS_PER_PUSH {
            o.push_push((0, 0), headline(&i.to_string()));
        }
        assert_eq!(o.replies(), MAX_READINGS_PER_PUSH + 1);
        let first = body(o.pop());
        assert_eq!(first.lines().count(), MAX_READINGS_PER_PUSH);
        assert!(first.starts_with("0\n1\n"), "{first}");
        assert_eq!(body(o.pop()), MAX_READINGS_PER_PUSH.to_string());

        o.push_push((0, 0), headline("x"));
        o.seal_pushes();
        assert_eq!(o.push_push((0, 0), headline("y")), Pushed::Queued(true));
        assert_eq!(body(o.pop()), "x");
        assert_eq!(body(o.pop()), "y");
    }

    #[test]
    fn cleared_and_dropped_pushes_are_not_joined() {
        let mut o = outbox();
        o.push_push((0, 0), headline("lost"));
        o.clear();
        assert_eq!(o.push_push((0, 0), headline("after")), Pushed::Queued(true));
        assert_eq!(body(o.pop()), "after");
        // The push at the front is dropped for room: the key's next reading starts anew.
        o.push_push((0, 0), headline("oldest"));
        for _ in 1..MAX_URGENT {
            o.push_reply(Element::builder("iq", "jabber:component:accept").build());
        }
        assert!(!o.push_reply(Element::builder("iq", "jabber:component:accept").build()));
        assert_eq!(o.push_push((0, 0), headline("new")), Pushed::Queued(false));
        assert_eq!(o.replies(), MAX_URGENT);
    }

    #[test]
    fn a_push_stops_taking_readings_before_it_gets_large() {
        let mut o = outbox();
        let big = "x".repeat(6 * 1024);
        assert_eq!(o.push_push((0, 0), headline(&big)), Pushed::Queued(true));
        assert_eq!(o.push_push((0, 0), headline(&big)), Pushed::Joined);
        // A third would pass 16 KiB: it waits in a push of its own, which the next one joins.
        assert_eq!(o.push_push((0, 0), headline(&big)), Pushed::Queued(true));
        assert_eq!(o.push_push((0, 0), headline("small")), Pushed::Joined);
        assert_eq!(body(o.pop()).len(), 2 * big.len() + 1);
        assert_eq!(body(o.pop()), format!("{big}\nsmall"));
    }
}
