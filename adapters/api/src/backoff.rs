//! The one reconnect back-off every link uses: XMPP, MQTT, Modbus, serial.
//!
//! 1 s doubling to 60 s, with ±20 % jitter so that many gateways (or many links of one gateway)
//! that lost the same server do not all come back in the same instant. A link that stayed up for
//! the healthy period starts again from 1 s on its next failure.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// Up this long means the link is healthy: the next failure starts from `min` again.
    healthy_after: Duration,
    /// The delay before the next attempt, before jitter.
    next: Duration,
    /// When the link last came up, if it is up.
    up_since: Option<Instant>,
    /// How many attempts failed in a row (for "warn once, then go quiet" logging).
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            healthy_after: Duration::from_secs(60),
            next: min,
            up_since: None,
            failures: 0,
        }
    }

    /// The link is up now.
    pub fn connected(&mut self) {
        self.up_since = Some(Instant::now());
        self.failures = 0;
    }

    /// An attempt failed or the link dropped. Returns the delay to wait before the next attempt.
    pub fn failed(&mut self) -> Duration {
        if let Some(since) = self.up_since.take() {
            if since.elapsed() >= self.healthy_after {
                self.next = self.min;
            }
        }
        self.failures = self.failures.saturating_add(1);
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        jitter(base)
    }

    /// Attempts that failed in a row since the link was last up.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure and sleeps for the back-off delay. Returns `false` if `cancel` fired
    /// first: the caller should stop instead of trying again.
    pub async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let delay = self.failed();
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

fn jitter(base: Duration) -> Duration {
    let factor: f64 = rand::random_range(0.8..1.2);
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter() {
        let mut b = Backoff::default();
        let delays: Vec<f64> = (0..9).map(|_| b.failed().as_secs_f64()).collect();
        let bases = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0];
        for (d, base) in delays.iter().zip(bases) {
            assert!(
                *d >= base * 0.8 && *d <= base * 1.2,
                "{d} not within 20% of {base}"
            );
        }
        assert_eq!(b.failures(), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_period_resets_the_delay() {
        let mut b = Backoff::default();
        for _ in 0..5 {
            b.failed();
        }
        b.connected();
        assert_eq!(b.failures(), 0);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(b.failed() <= Duration::from_millis(1200));
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_connection_keeps_backing_off() {
        let mut b = Backoff::default();
        for _ in 0..3 {
            b.failed();
        }
        b.connected();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(b.failed() >= Duration::from_millis(6400));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_is_cancellable() {
        let mut b = Backoff::default();
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert!(!b.wait(&cancel).await);
    }
}
