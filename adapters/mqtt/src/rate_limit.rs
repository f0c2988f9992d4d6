//! "Warn once a minute, count always": one limiter per device or announced entity.

use std::time::Duration;

use tokio::time::Instant;

/// At most one WARN per device (or entity) per this period for bad input; the rest go to debug.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct RateLimit {
    last: Option<Instant>,
    /// Problems logged at debug since the last warning.
    pub suppressed: u64,
}

impl RateLimit {
    /// `Some(suppressed since last time)` when a warning may be logged now.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now < t + WARN_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}
