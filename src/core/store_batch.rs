//! Readings on their way to the store, handed over in batches: waking the store thread for every
//! reading would cost more than the reading (two futex calls and a context switch each).

use std::time::Duration;

use gateway_api::Reading;
use tokio::time::Instant;

/// A batch this full goes to the store at once.
const STORE_BATCH: usize = 512;
/// How long a reading may wait for its batch to fill.
pub(super) const STORE_DELAY: Duration = Duration::from_millis(50);

#[derive(Default)]
pub(super) struct StoreBatch {
    /// Readings not yet handed to the store, in arrival order.
    pending: Vec<Reading>,
    /// When the first of them has waited long enough; `None` while there are none.
    due: Option<Instant>,
}

impl StoreBatch {
    /// Adds readings; `true` when the batch is full and should go now.
    pub(super) fn add(&mut self, rs: &[Reading]) -> bool {
        self.pending.extend_from_slice(rs);
        if self.pending.len() >= STORE_BATCH {
            return true;
        }
        if self.due.is_none() {
            self.due = Some(Instant::now() + STORE_DELAY);
        }
        false
    }

    /// When the batch must go even if not full.
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Takes the batch (possibly empty) and clears the deadline.
    pub(super) fn take(&mut self) -> Vec<Reading> {
        self.due = None;
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_api::{DeviceId, Value};

    fn reading() -> Reading {
        Reading::now(
            DeviceId::new("d").expect("a valid id"),
            "f".into(),
            Value::Int(1),
        )
    }

    // Paused time: `Instant::now()` stands still, so the deadline is exact.
    #[tokio::test(start_paused = true)]
    async fn a_batch_goes_when_full_or_due() {
        let mut b = StoreBatch::default();
        assert_eq!(b.due(), None);
        assert!(!b.add(&[reading()]));
        assert_eq!(b.due(), Some(Instant::now() + STORE_DELAY));
        assert!(b.add(&vec![reading(); STORE_BATCH - 1]));
        assert_eq!(b.take().len(), STORE_BATCH);
        assert_eq!(b.due(), None);
        assert!(b.take().is_empty());
    }
}
