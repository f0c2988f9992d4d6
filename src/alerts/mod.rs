//! Alerts: conditions on readings or availability that message people when they start to hold,
//! while they hold (`repeat`) and when they clear.
//!
//! [`tracker`] is the state of one alert (pure, driven by the caller's clock), [`text`] the
//! words of the messages, [`persist`] the rows that keep alerts and their state across
//! restarts; the chat syntax that sets them is the translator's (`translator::alert_command`). [`Engine`] holds every alert, from the configuration and
//! from chat, and routes observations to those they concern. The core sends the messages.

pub mod persist;
pub mod text;
pub mod tracker;

use gateway_api::DeviceId;
use tokio::time::Instant;

use crate::config::AlertConfig;
pub use tracker::{Observation, Phase, Transition};

/// One alert and where it stands.
#[derive(Debug, Clone)]
pub struct Active {
    /// `config:<id>` for `[[alert]]`, `user:<n>` for one set by chat: the key of its stored state.
    pub key: String,
    pub config: AlertConfig,
    /// The bare JID that set it by chat; `None` for the configuration's.
    pub owner: Option<String>,
    pub phase: Phase,
}

impl Active {
    /// A text that changes whenever the definition does: stored state is only taken back by
    /// the same definition.
    pub fn fingerprint(&self) -> String {
        format!("{:?}", self.config)
    }
}

/// Every alert of the gateway.
#[derive(Debug, Default)]
pub struct Engine {
    alerts: Vec<Active>,
    /// Keys whose phase changed since [`Engine::take_changed`].
    changed: Vec<usize>,
}

impl Engine {
    /// Replaces the alert set. An alert whose key and definition are unchanged keeps its phase
    /// (a reload must not re-fire what already fired); the rest start armed. Returns the keys
    /// that are gone.
    pub fn replace(&mut self, next: Vec<(String, AlertConfig, Option<String>)>) -> Vec<String> {
        let mut old = std::mem::take(&mut self.alerts);
        self.changed.clear();
        for (key, config, owner) in next {
            let phase = old
                .iter()
                .position(|a| a.key == key && a.config == config)
                .map_or(Phase::Armed, |i| old.swap_remove(i).phase);
            self.alerts.push(Active {
                key,
                config,
                owner,
                phase,
            });
        }
        old.retain(|a| !self.alerts.iter().any(|n| n.key == a.key));
        old.into_iter().map(|a| a.key).collect()
    }

    /// Adds one alert (armed).
    pub fn add(&mut self, key: String, config: AlertConfig, owner: Option<String>) {
        self.alerts.push(Active {
            key,
            config,
            owner,
            phase: Phase::Armed,
        });
    }

    /// Removes the alert with this key; whether there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.alerts.len();
        self.alerts.retain(|a| a.key != key);
        self.changed.clear();
        before != self.alerts.len()
    }

    /// Takes back a stored phase, if the stored definition is the current one.
    pub fn restore(&mut self, key: &str, fingerprint: &str, phase: Phase) {
        if let Some(a) = self
            .alerts
            .iter_mut()
            .find(|a| a.key == key && a.fingerprint() == fingerprint)
        {
            a.phase = phase;
        }
    }

    pub fn get(&self, i: usize) -> &Active {
        &self.alerts[i]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Active> {
        self.alerts.iter()
    }

    /// Something was seen of `device` (`field` for a value): the transitions it caused, by
    /// alert index.
    pub fn observe(
        &mut self,
        device: &DeviceId,
        field: Option<&str>,
        seen: Observation,
        now: Instant,
    ) -> Vec<(usize, Transition)> {
        let mut out = Vec::new();
        for (i, a) in self.alerts.iter_mut().enumerate() {
            if a.config.device != *device {
                continue;
            }
            if field.is_some() && a.config.field.as_deref() != field {
                continue;
            }
            let Some(verdict) = tracker::judge(&a.config, seen) else {
                continue;
            };
            let before = a.phase;
            if let Some(t) = a.phase.observe(&a.config, verdict, now) {
                out.push((i, t));
            }
            if a.phase != before {
                self.changed.push(i);
            }
        }
        out
    }

    /// Time passed: alerts whose `for` has run out fire, firing ones may remind.
    pub fn tick(&mut self, now: Instant) -> Vec<(usize, Transition)> {
        let mut out = Vec::new();
        for (i, a) in self.alerts.iter_mut().enumerate() {
            if let Some(t) = a.phase.tick(&a.config, now) {
                out.push((i, t));
                self.changed.push(i);
            }
        }
        out
    }

    /// The alerts whose phase changed since the last call (to be stored).
    pub fn take_changed(&mut self) -> Vec<&Active> {
        let mut idx = std::mem::take(&mut self.changed);
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter().map(|i| &self.alerts[i]).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::AlertCondition;

    fn alert(id: &str, device: &str, above: f64) -> AlertConfig {
        AlertConfig {
            id: id.into(),
            device: DeviceId::new(device).expect("id"),
            field: Some("t".into()),
            condition: AlertCondition::Above(above),
            hold: Duration::ZERO,
            clear: None,
            repeat: None,
            to: vec!["a@example.org".into()],
            message: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn observations_reach_only_their_device_and_field() {
        let mut e = Engine::default();
        e.replace(vec![
            ("config:a".into(), alert("a", "freezer", 1.0), None),
            ("config:b".into(), alert("b", "pump", 1.0), None),
        ]);
        let freezer = DeviceId::new("freezer").expect("id");
        let now = Instant::now();
        assert!(e
            .observe(&freezer, Some("other"), Observation::Value(5.0), now)
            .is_empty());
        assert!(e
            .observe(&freezer, None, Observation::Online(false), now)
            .is_empty());
        let fired = e.observe(&freezer, Some("t"), Observation::Value(5.0), now);
        assert_eq!(fired.len(), 1);
        assert_eq!(e.get(fired[0].0).key, "config:a");
        let changed: Vec<&str> = e.take_changed().iter().map(|a| a.key.as_str()).collect();
        assert_eq!(changed, ["config:a"]);
        assert!(e.take_changed().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_keeps_the_state_of_unchanged_alerts_only() {
        let mut e = Engine::default();
        e.replace(vec![
            ("config:a".into(), alert("a", "freezer", 1.0), None),
            ("config:b".into(), alert("b", "freezer", 1.0), None),
            ("config:c".into(), alert("c", "freezer", 1.0), None),
        ]);
        let freezer = DeviceId::new("freezer").expect("id");
        assert_eq!(
            e.observe(&freezer, Some("t"), Observation::Value(5.0), Instant::now())
                .len(),
            3
        );
        let gone = e.replace(vec![
            ("config:a".into(), alert("a", "freezer", 1.0), None),
            ("config:b".into(), alert("b", "freezer", 2.0), None),
        ]);
        assert_eq!(gone, ["config:c"]);
        assert!(
            matches!(e.get(0).phase, Phase::Firing { .. }),
            "unchanged: still firing"
        );
        assert_eq!(e.get(1).phase, Phase::Armed, "changed: starts again");
        // Only the changed one fires on the next warm reading.
        let fired = e.observe(&freezer, Some("t"), Observation::Value(5.0), Instant::now());
        assert_eq!(fired.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1]);
    }

    #[tokio::test(start_paused = true)]
    async fn stored_state_comes_back_only_for_the_same_definition() {
        let mut e = Engine::default();
        e.replace(vec![("config:a".into(), alert("a", "freezer", 1.0), None)]);
        let fp = e.get(0).fingerprint();
        let firing = Phase::Firing {
            since: Instant::now(),
            last_sent: Instant::now(),
        };
        e.restore("config:a", "something else", firing);
        assert_eq!(e.get(0).phase, Phase::Armed);
        e.restore("config:a", &fp, firing);
        assert_eq!(e.get(0).phase, firing);
        // Restored as firing: the next warm reading is not a new alert.
        let freezer = DeviceId::new("freezer").expect("id");
        assert!(e
            .observe(&freezer, Some("t"), Observation::Value(5.0), Instant::now())
            .is_empty());
    }
}
