//! What keeps one sender from taking the gateway for itself: a token bucket per sender (bare
//! JID) in front of the stanza handlers, and log lines about senders that are rate-limited.
//!
//! The core handles stanzas one at a time in arrival order, so a flood costs everybody else
//! the time it takes to handle it, and every answer to it. A sender over its budget gets the
//! cheapest answer there is (`resource-constraint` for an IQ request, nothing for the rest)
//! without any of the work (parsing the payload, access checks, reads), so the queue drains
//! at once and the next sender's request is served. One stanza in never makes more than one
//! out. Hand-written (about 60 lines) because the bucket must live in the core's single task
//! next to its other state, keyed by strings that arrive with each stanza; the rate-limiting
//! crates on crates.io add locks and clocks of their own for that.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Stanzas per second a sender may keep up: far above what a person or a polling script sends
/// (a readout of every device of a site every second), far below what the core can handle.
pub const SENDER_RATE: f64 = 100.0;
/// Stanzas a sender may send at once before the rate applies.
pub const SENDER_BURST: f64 = 500.0;
/// Senders tracked at once; beyond this, senders not yet tracked share one bucket (a flood
/// from many addresses cannot grow the table without bound).
const MAX_SENDERS: usize = 10_000;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A token bucket per sender.
#[derive(Debug, Default)]
pub struct SenderBudgets {
    buckets: HashMap<String, Bucket>,
}

impl SenderBudgets {
    /// Takes one stanza from `sender`'s budget; `false` when it has none left.
    pub fn allow(&mut self, sender: &str, now: Instant) -> bool {
        if !self.buckets.contains_key(sender) && self.buckets.len() >= MAX_SENDERS {
            self.prune(now);
        }
        let key = if self.buckets.contains_key(sender) || self.buckets.len() < MAX_SENDERS {
            sender
        } else {
            ""
        };
        let b = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: SENDER_BURST,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * SENDER_RATE).min(SENDER_BURST);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets senders whose budget is full again: they are where a new sender starts.
    pub fn prune(&mut self, now: Instant) {
        let refill = Duration::from_secs_f64(SENDER_BURST / SENDER_RATE);
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.last) < refill);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.buckets.len()
    }
}

/// Lets a kind of log line through at most once per `every`, counting what it held back.
#[derive(Debug)]
pub struct LogLimit {
    every: Duration,
    next: Option<Instant>,
    held_back: u64,
}

impl LogLimit {
    pub const fn new(every: Duration) -> LogLimit {
        LogLimit {
            every,
            next: None,
            held_back: 0,
        }
    }

    /// `Some(lines held back since the last one)` when a line may be logged now.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|next| now < next) {
            self.held_back += 1;
            return None;
        }
        self.next = Some(now + self.every);
        Some(std::mem::take(&mut self.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_over_its_budget_is_refused_and_others_are_not() {
        let t0 = Instant::now();
        let mut b = SenderBudgets::default();
        let allowed = (0..2000).filter(|_| b.allow("bob@localhost", t0)).count();
        assert_eq!(allowed, SENDER_BURST as usize);
        assert!(b.allow("alice@localhost", t0));
        // A second later bob has SENDER_RATE stanzas again, and no more.
        let t1 = t0 + Duration::from_secs(1);
        let allowed = (0..2000).filter(|_| b.allow("bob@localhost", t1)).count();
        assert_eq!(allowed, SENDER_RATE as usize);
        b.prune(t1 + Duration::from_secs(10));
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn the_table_of_senders_is_bounded() {
        let t0 = Instant::now();
        let mut b = SenderBudgets::default();
        for i in 0..MAX_SENDERS + 50 {
            b.allow(&format!("u{i}@example.org"), t0);
        }
        assert!(b.len() <= MAX_SENDERS + 1, "{}", b.len());
    }

    #[test]
    fn log_lines_are_held_back_and_counted() {
        let t0 = Instant::now();
        let mut l = LogLimit::new(Duration::from_secs(60));
        assert_eq!(l.allow(t0), Some(0));
        assert_eq!(l.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(2)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(61)), Some(2));
    }
}
