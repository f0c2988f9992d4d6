//! The life of one alert: armed, pending (the condition holds, `for` has not passed yet),
//! firing; and the transitions worth a message.
//!
//! Pure logic over [`tokio::time::Instant`]s handed in by the caller, so that tests drive it
//! with tokio's paused clock. The caller says what it saw: a value, the device going offline or
//! online, or just that time passed (a tick), and gets back at most one [`Transition`].

use std::time::Duration;

use tokio::time::Instant;

use crate::config::{AlertCondition, AlertConfig};

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The condition does not hold (or has cleared): the next time it holds counts.
    Armed,
    /// The condition has held since `since`, not yet for `for`.
    Pending { since: Instant },
    /// Fired; the condition began at `since`, the last message (first or reminder) went at
    /// `last_sent`.
    Firing { since: Instant, last_sent: Instant },
}

/// A change worth telling someone about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The condition has held for `for`: the first message. `held` is how long it has held.
    Fired { held: Duration },
    /// Still holding, `repeat` after the last message.
    Reminder { held: Duration },
    /// Back to normal (below `clear`, or online again) after holding this long.
    Cleared { after: Duration },
}

/// What was observed of the alert's subject.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// A numeric reading of the watched field.
    Value(f64),
    /// The device's availability.
    Online(bool),
}

/// How an observation stands against an alert's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The condition holds.
    Holds,
    /// Past the threshold back towards normal, but not past `clear` yet.
    Between,
    /// Back to normal: past `clear` (or online again).
    Released,
}

/// How `seen` stands against `alert`'s condition; `None` when it is not about this alert (a
/// value for an offline alert, availability for a threshold).
pub fn judge(alert: &AlertConfig, seen: Observation) -> Option<Verdict> {
    let verdict = |holds: bool, released: bool| {
        if holds {
            Verdict::Holds
        } else if released {
            Verdict::Released
        } else {
            Verdict::Between
        }
    };
    match (alert.condition, seen) {
        (AlertCondition::Above(t), Observation::Value(v)) => {
            Some(verdict(v > t, v < alert.clear.unwrap_or(t)))
        }
        (AlertCondition::Below(t), Observation::Value(v)) => {
            Some(verdict(v < t, v > alert.clear.unwrap_or(t)))
        }
        (AlertCondition::Offline, Observation::Online(up)) => Some(verdict(!up, up)),
        _ => None,
    }
}

impl Phase {
    /// Takes an observation judged by [`judge`].
    pub fn observe(
        &mut self,
        alert: &AlertConfig,
        verdict: Verdict,
        now: Instant,
    ) -> Option<Transition> {
        match (*self, verdict) {
            (Phase::Armed, Verdict::Holds) => {
                *self = Phase::Pending { since: now };
                self.tick(alert, now)
            }
            // A pending alert needs the condition to hold all along: anything else re-arms it.
            (Phase::Pending { .. }, Verdict::Between | Verdict::Released) => {
                *self = Phase::Armed;
                None
            }
            (Phase::Pending { .. }, Verdict::Holds) => self.tick(alert, now),
            (Phase::Firing { since, .. }, Verdict::Released) => {
                *self = Phase::Armed;
                Some(Transition::Cleared {
                    after: now.saturating_duration_since(since),
                })
            }
            _ => None,
        }
    }

    /// Time passed: a pending alert may fire, a firing one may be due a reminder.
    pub fn tick(&mut self, alert: &AlertConfig, now: Instant) -> Option<Transition> {
        match *self {
            Phase::Pending { since } if now.saturating_duration_since(since) >= alert.hold => {
                *self = Phase::Firing {
                    since,
                    last_sent: now,
                };
                Some(Transition::Fired {
                    held: now.saturating_duration_since(since),
                })
            }
            Phase::Firing { since, last_sent } => {
                let every = alert.repeat?;
                if now.saturating_duration_since(last_sent) < every {
                    return None;
                }
                *self = Phase::Firing {
                    since,
                    last_sent: now,
                };
                Some(Transition::Reminder {
                    held: now.saturating_duration_since(since),
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_api::DeviceId;

    fn alert(
        condition: AlertCondition,
        hold: u64,
        clear: Option<f64>,
        repeat: Option<u64>,
    ) -> AlertConfig {
        AlertConfig {
            id: "t".into(),
            device: DeviceId::new("freezer").expect("id"),
            field: Some("temperature".into()),
            condition,
            hold: Duration::from_secs(hold),
            clear,
            repeat: repeat.map(Duration::from_secs),
            to: vec!["a@example.org".into()],
            message: None,
        }
    }

    /// Feeds a value and returns the transition.
    fn feed(phase: &mut Phase, a: &AlertConfig, v: f64) -> Option<Transition> {
        let verdict = judge(a, Observation::Value(v)).expect("a value alert");
        phase.observe(a, verdict, Instant::now())
    }

    async fn wait(secs: u64) {
        tokio::time::advance(Duration::from_secs(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn fires_only_after_holding_for_the_whole_hold_time() {
        let a = alert(AlertCondition::Above(-12.0), 300, None, None);
        let mut p = Phase::Armed;
        assert_eq!(feed(&mut p, &a, -10.0), None);
        wait(200).await;
        // Back to normal for a moment: the clock starts again.
        assert_eq!(feed(&mut p, &a, -13.0), None);
        assert_eq!(p, Phase::Armed);
        assert_eq!(feed(&mut p, &a, -11.0), None);
        wait(299).await;
        assert_eq!(p.tick(&a, Instant::now()), None);
        wait(1).await;
        assert_eq!(
            p.tick(&a, Instant::now()),
            Some(Transition::Fired {
                held: Duration::from_secs(300)
            })
        );
        // Firing: more warm readings say nothing, and no reminders without `repeat`.
        assert_eq!(feed(&mut p, &a, -5.0), None);
        wait(86_400).await;
        assert_eq!(p.tick(&a, Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_hold_fires_on_the_first_reading() {
        let a = alert(AlertCondition::Below(1.0), 0, None, None);
        let mut p = Phase::Armed;
        assert_eq!(
            feed(&mut p, &a, 0.5),
            Some(Transition::Fired {
                held: Duration::ZERO
            })
        );
        // Exactly at the threshold is neither holding nor released.
        assert_eq!(feed(&mut p, &a, 1.0), None);
        wait(60).await;
        assert_eq!(
            feed(&mut p, &a, 1.5),
            Some(Transition::Cleared {
                after: Duration::from_secs(60)
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn clears_only_past_the_hysteresis_then_rearms() {
        let a = alert(AlertCondition::Above(-12.0), 0, Some(-15.0), None);
        let mut p = Phase::Armed;
        assert!(matches!(
            feed(&mut p, &a, -11.0),
            Some(Transition::Fired { .. })
        ));
        wait(1380).await;
        // Below the threshold but not below `clear`: still firing, and no second message.
        assert_eq!(feed(&mut p, &a, -13.0), None);
        assert_eq!(feed(&mut p, &a, -11.5), None);
        assert_eq!(
            feed(&mut p, &a, -15.5),
            Some(Transition::Cleared {
                after: Duration::from_secs(1380)
            })
        );
        // Re-armed: it can fire again.
        assert!(matches!(
            feed(&mut p, &a, -1.0),
            Some(Transition::Fired { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn reminds_every_repeat_while_it_holds() {
        let a = alert(AlertCondition::Above(30.0), 0, None, Some(3600));
        let mut p = Phase::Armed;
        assert!(matches!(
            feed(&mut p, &a, 31.0),
            Some(Transition::Fired { .. })
        ));
        wait(3599).await;
        assert_eq!(p.tick(&a, Instant::now()), None);
        wait(1).await;
        assert_eq!(
            p.tick(&a, Instant::now()),
            Some(Transition::Reminder {
                held: Duration::from_secs(3600)
            })
        );
        assert_eq!(p.tick(&a, Instant::now()), None, "once per period");
        wait(3600).await;
        assert_eq!(
            p.tick(&a, Instant::now()),
            Some(Transition::Reminder {
                held: Duration::from_secs(7200)
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn offline_alerts_follow_availability() {
        let a = AlertConfig {
            field: None,
            ..alert(AlertCondition::Offline, 120, None, None)
        };
        let mut p = Phase::Armed;
        let now = Instant::now;
        // Values say nothing about availability.
        assert_eq!(judge(&a, Observation::Value(3.0)), None);
        let (down, up) = (Verdict::Holds, Verdict::Released);
        assert_eq!(judge(&a, Observation::Online(false)), Some(down));
        assert_eq!(judge(&a, Observation::Online(true)), Some(up));
        assert_eq!(p.observe(&a, down, now()), None);
        wait(60).await;
        // Back within `for`: nothing to tell.
        assert_eq!(p.observe(&a, up, now()), None);
        assert_eq!(p.observe(&a, down, now()), None);
        wait(120).await;
        assert!(matches!(p.tick(&a, now()), Some(Transition::Fired { .. })));
        wait(30).await;
        assert_eq!(
            p.observe(&a, up, now()),
            Some(Transition::Cleared {
                after: Duration::from_secs(150)
            })
        );
    }
}
