//! Counters of what the adapter read, and the rate limit on warnings about bad input.
//!
//! Every dropped line is counted by kind ([`SerialStats`], shared through an `Arc` so a metrics
//! endpoint can read it) and logged at DEBUG with its first bytes; at most one WARN per port per
//! [`WARN_INTERVAL`] names the port, the latest problem and the totals, so a device spewing
//! garbage cannot flood the journal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The shortest time between two bad-input WARNs of one port.
pub const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// How many bytes of a dropped line a log message shows.
pub const PREVIEW_BYTES: usize = 48;

/// What one adapter counted since it started.
#[derive(Debug, Default)]
pub struct SerialStats {
    /// Complete lines read (any content).
    pub lines: AtomicU64,
    /// Lines that parsed into a record.
    pub records: AtomicU64,
    /// Readings delivered to the core.
    pub readings: AtomicU64,
    /// Lines longer than `max_line`, dropped.
    pub too_long: AtomicU64,
    /// Lines that were not UTF-8 (binary garbage, a wrong baud rate), dropped.
    pub not_utf8: AtomicU64,
    /// Fragments of a line that started before the port was opened, dropped.
    pub partial: AtomicU64,
    /// Lines that were not a record of the configured format, dropped.
    pub unparsable: AtomicU64,
    /// Records that matched no device, dropped.
    pub unmatched: AtomicU64,
    /// Values that did not convert to their field's type, dropped.
    pub bad_values: AtomicU64,
    /// Successful opens of the port.
    pub opens: AtomicU64,
    /// Times an open port was lost.
    pub losses: AtomicU64,
    /// Opens after which the port could not be put into RS-485 mode (`rs485 = true`); the
    /// adapter goes on without it.
    pub rs485_failures: AtomicU64,
    /// Writes confirmed / failed.
    pub writes: AtomicU64,
    pub write_failures: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub lines: u64,
    pub records: u64,
    pub readings: u64,
    pub too_long: u64,
    pub not_utf8: u64,
    pub partial: u64,
    pub unparsable: u64,
    pub unmatched: u64,
    pub bad_values: u64,
    pub opens: u64,
    pub losses: u64,
    pub rs485_failures: u64,
    pub writes: u64,
    pub write_failures: u64,
}

impl SerialStats {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            lines: get(&self.lines),
            records: get(&self.records),
            readings: get(&self.readings),
            too_long: get(&self.too_long),
            not_utf8: get(&self.not_utf8),
            partial: get(&self.partial),
            unparsable: get(&self.unparsable),
            unmatched: get(&self.unmatched),
            bad_values: get(&self.bad_values),
            opens: get(&self.opens),
            losses: get(&self.losses),
            rs485_failures: get(&self.rs485_failures),
            writes: get(&self.writes),
            write_failures: get(&self.write_failures),
        }
    }
}

impl StatsSnapshot {
    /// Lines or values dropped as bad input (unmatched records are not bad input).
    pub fn dropped(&self) -> u64 {
        self.too_long + self.not_utf8 + self.partial + self.unparsable + self.bad_values
    }
}

/// Allows one event per interval and counts the ones it held back.
#[derive(Debug, Clone)]
pub struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(interval: Duration) -> Self {
        RateLimit {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when this event may be logged (`n`: how many were held back since the last
    /// one); `None` when it must stay quiet.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The first bytes of a line, escaped for a log line (`\xff`, `\n`, `\"`...).
pub fn preview(line: &[u8]) -> String {
    let cut = &line[..line.len().min(PREVIEW_BYTES)];
    let mut s = cut.escape_ascii().to_string();
    if line.len() > PREVIEW_BYTES {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_warning_per_interval() {
        let mut r = RateLimit::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(r.allow(t0), Some(0));
        assert_eq!(r.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(r.allow(t0 + Duration::from_secs(59)), None);
        assert_eq!(r.allow(t0 + Duration::from_secs(60)), Some(2));
        assert_eq!(r.allow(t0 + Duration::from_secs(61)), None);
        assert_eq!(r.allow(t0 + Duration::from_secs(200)), Some(1));
    }

    #[test]
    fn previews_are_escaped_and_short() {
        assert_eq!(preview(b"temp=1"), "temp=1");
        assert_eq!(preview(&[0xff, 0, b'\n', b'"']), "\\xff\\x00\\n\\\"");
        let long = vec![b'a'; 100];
        assert_eq!(preview(&long), format!("{}…", "a".repeat(PREVIEW_BYTES)));
    }

    #[test]
    fn snapshots_add_up_the_drops() {
        let s = SerialStats::default();
        SerialStats::inc(&s.too_long);
        SerialStats::inc(&s.not_utf8);
        SerialStats::inc(&s.unmatched);
        let snap = s.snapshot();
        assert_eq!((snap.too_long, snap.not_utf8, snap.unmatched), (1, 1, 1));
        assert_eq!(snap.dropped(), 2);
    }
}
