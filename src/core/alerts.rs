//! Alerts in the core: readings and availability go to the alert engine; what it reports
//! becomes chat messages from the device (phones notify on `chat`, not on headlines), audit
//! rows and log lines; chat commands add, list and remove a user's own alerts.
//!
//! Messages wait in an outbox of their own while the upstream is down (the reply queue is
//! dropped with the link) and leave once it is back, with an XEP-0203 delay stamp; every phase change is stored, so a
//! restart neither forgets an alert nor fires again what had already fired.

use std::collections::VecDeque;
use std::time::Duration;

use gateway_api::{DeviceId, Reading};
use minidom::Element;
use tokio::time::Instant;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::MessageType;

use super::Core;
use crate::access::Permission;
use crate::alerts::persist::{self, AlertOp, UserAlertRow};
use crate::alerts::{text, Observation, Transition};
use crate::config::{AlertCondition, AlertConfig};
use crate::stats::Stats;
use crate::store::AuditEntry;
use crate::translator::alert_command::{self as command, AlertCommand, NewAlert};
use crate::translator::sensordata::format_datetime;
use crate::translator::status::display_value;
use crate::xmlns;
use crate::xmpp::stanzas;

/// Alert messages held while the upstream is down; beyond this the oldest are dropped.
pub(super) const MAX_OUTBOX: usize = 1_000;
/// Alerts one user may set by chat, over all devices.
const MAX_USER_ALERTS: usize = 20;
/// How long loading stored alerts at start may take before the gateway runs without them.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Alert state the core keeps besides the engine.
#[derive(Debug, Default)]
pub(super) struct AlertBook {
    pub engine: crate::alerts::Engine,
    /// Alerts set by chat, as stored.
    pub user: Vec<UserAlertRow>,
    /// Messages waiting for the upstream.
    pub outbox: VecDeque<Element>,
    /// A device that just got an alert by chat: its current values are shown to the alerts
    /// after the answer is queued (see [`Core::check_fresh_alert`]).
    pub fresh: Option<usize>,
}

impl Core {
    /// Reads the stored alerts and phases; called once before the core starts its loop.
    pub(super) async fn load_alerts(&mut self) {
        let stored = match tokio::time::timeout(LOAD_TIMEOUT, self.store.stored_alerts()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the stored alerts; chat alerts are not active");
                return self.rebuild_alerts();
            }
            Err(_) => {
                tracing::error!(
                    "reading the stored alerts took too long; chat alerts are not active"
                );
                return self.rebuild_alerts();
            }
        };
        self.alert_book.user = stored.user;
        self.rebuild_alerts();
        for row in &stored.states {
            match persist::phase_of(row) {
                Some(phase) => self
                    .alert_book
                    .engine
                    .restore(&row.key, &row.fingerprint, phase),
                None => {
                    tracing::warn!(alert = %row.key, phase = %row.phase, "ignoring a stored alert state")
                }
            }
        }
        // States of alerts that no longer exist (or whose definition changed) are stale.
        for row in stored.states {
            let current = self
                .alert_book
                .engine
                .iter()
                .any(|a| a.key == row.key && a.fingerprint() == row.fingerprint);
            if !current {
                self.store.alert(AlertOp::RemoveState(row.key));
            }
        }
    }

    /// Builds the alert set from the configuration and the users' alerts, keeping the phase
    /// of those that did not change (reload); forgets the stored state of the rest.
    pub(super) fn rebuild_alerts(&mut self) {
        let mut set: Vec<(String, AlertConfig, Option<String>)> = self
            .config
            .alerts
            .iter()
            .map(|a| (format!("config:{}", a.id), a.clone(), None))
            .collect();
        for row in &self.alert_book.user {
            if let Some(a) = self.user_alert_config(row) {
                set.push((format!("user:{}", row.n), a, Some(row.owner.clone())));
            }
        }
        for key in self.alert_book.engine.replace(set) {
            self.store.alert(AlertOp::RemoveState(key));
        }
    }

    /// A stored chat alert as an alert, if its device and field still exist and its owner may
    /// still read the device.
    fn user_alert_config(&self, row: &UserAlertRow) -> Option<AlertConfig> {
        let id = DeviceId::new(&row.device).ok()?;
        let idx = self.devices.index_of(&id)?;
        if !self.devices.allows(idx, &row.owner, Permission::Read) {
            return None;
        }
        let dev = self.devices.get(idx);
        let condition = match (row.op.as_str(), row.threshold) {
            (">", Some(t)) => AlertCondition::Above(t),
            ("<", Some(t)) => AlertCondition::Below(t),
            ("offline", _) => AlertCondition::Offline,
            _ => return None,
        };
        let field = match &row.field {
            Some(f) => Some(dev.specs().find(|s| *s.name == **f)?.name.clone()),
            None => None,
        };
        Some(AlertConfig {
            id: row.n.to_string(),
            device: id,
            field,
            condition,
            hold: Duration::from_millis(row.hold_ms),
            clear: None,
            repeat: None,
            to: vec![row.owner.clone()],
            message: None,
        })
    }

    /// Readings taken together: each numeric one is shown to the alerts on its field.
    pub(super) fn alert_readings(&mut self, rs: &[Reading]) {
        if self.alert_book.engine.iter().next().is_none() {
            return;
        }
        let now = Instant::now();
        let mut fired = Vec::new();
        for r in rs {
            if let (Some(v), false) = (
                r.value.as_f64(),
                matches!(r.value, gateway_api::Value::Bool(_)),
            ) {
                fired.extend(self.alert_book.engine.observe(
                    &r.device,
                    Some(&r.field),
                    Observation::Value(v),
                    now,
                ));
            }
        }
        self.after_alerts(fired);
    }

    /// The device's availability changed.
    pub(super) fn alert_availability(&mut self, device: &DeviceId, online: bool) {
        let fired = self.alert_book.engine.observe(
            device,
            None,
            Observation::Online(online),
            Instant::now(),
        );
        self.after_alerts(fired);
    }

    /// Once a second: `for` running out, reminders.
    pub(super) fn alert_tick(&mut self) {
        let fired = self.alert_book.engine.tick(Instant::now());
        self.after_alerts(fired);
    }

    fn after_alerts(&mut self, fired: Vec<(usize, Transition)>) {
        for (i, t) in fired {
            self.announce_alert(i, t);
        }
        let rows: Vec<_> = self
            .alert_book
            .engine
            .take_changed()
            .into_iter()
            .map(|a| persist::state_row(&a.key, a.fingerprint(), a.phase))
            .collect();
        for row in rows {
            self.store.alert(AlertOp::SaveState(row));
        }
    }

    /// Tells the alert's recipients, the audit table and the log.
    fn announce_alert(&mut self, i: usize, t: Transition) {
        let a = self.alert_book.engine.get(i).config.clone();
        let Some(idx) = self.devices.index_of(&a.device) else {
            return;
        };
        let dev = self.devices.get(idx);
        let (value, unit) = match a.field.as_deref().and_then(|f| dev.field_index(f)) {
            Some(fi) => (
                dev.values[fi].as_ref().map(|s| display_value(&s.value)),
                dev.config.fields[fi].spec.unit.to_string(),
            ),
            None => (None, String::new()),
        };
        let (held, kind) = match t {
            Transition::Fired { held } => (held, "fired"),
            Transition::Reminder { held } => (held, "reminder"),
            Transition::Cleared { after } => (after, "cleared"),
        };
        let facts = text::Facts {
            alert: &a,
            device: &dev.config.name,
            value: value.as_deref(),
            unit: &unit,
            held,
        };
        let body = match t {
            Transition::Fired { .. } => text::fired(&facts),
            Transition::Reminder { .. } => text::reminder(&facts),
            Transition::Cleared { .. } => text::cleared(&facts),
        };
        let from = dev.jid.clone();
        tracing::warn!(alert = %a.id, device = %a.device, event = kind, "{body}");
        Stats::inc(&self.stats.alert_messages);
        self.store.audit(AuditEntry {
            time: chrono::Utc::now(),
            requester: format!("alert {}", a.id),
            device: a.device.to_string(),
            field: a.field.as_deref().unwrap_or("").to_owned(),
            old: None,
            new: body.clone(),
            result: kind.to_owned(),
        });
        let fields = self.current_fields(idx);
        for to in a.to.iter().filter_map(|j| Jid::new(j).ok()) {
            let mut el = stanzas::text_message(MessageType::Chat, &from, &to, &body, None);
            el.append_child(fields.clone());
            self.send_alert(el);
        }
    }

    /// Sends now, or keeps for when the upstream is back.
    fn send_alert(&mut self, mut el: Element) {
        if self.link_up {
            return self.reply(el);
        }
        // XEP-0203: the phone shows when it happened, not when the link came back.
        let delay = Element::builder("delay", xmlns::DELAY)
            .attr(
                rxml::xml_ncname!("from").to_owned(),
                el.attr("from").unwrap_or(""),
            )
            .attr(
                rxml::xml_ncname!("stamp").to_owned(),
                format_datetime(chrono::Utc::now()),
            )
            .build();
        el.append_child(delay);
        if self.alert_book.outbox.len() >= MAX_OUTBOX {
            self.alert_book.outbox.pop_front();
            Stats::inc(&self.stats.replies_dropped);
        }
        self.alert_book.outbox.push_back(el);
    }

    /// The upstream is back: what fired meanwhile goes out, once.
    pub(super) fn flush_alert_outbox(&mut self) {
        let held: Vec<Element> = self.alert_book.outbox.drain(..).collect();
        for el in held {
            self.reply(el);
        }
    }

    /// `alert …` from `owner` (a bare JID) to device `idx`: the answer.
    pub(super) fn alert_command(&mut self, idx: usize, owner: &str, rest: &str) -> String {
        match command::parse(rest) {
            AlertCommand::Invalid(why) => why,
            AlertCommand::Remove(n) => self.remove_user_alert(owner, n),
            AlertCommand::Add(new) => self.add_user_alert(idx, owner, new),
        }
    }

    fn add_user_alert(&mut self, idx: usize, owner: &str, new: NewAlert) -> String {
        let dev = self.devices.get(idx);
        let field = match &new.field {
            None => None,
            Some(f) => match crate::translator::chat::numeric_field(
                dev.specs(),
                f,
                "alerts compare numbers",
            ) {
                Ok(spec) => Some(spec.name.to_string()),
                Err(answer) => return answer,
            },
        };
        if self
            .alert_book
            .user
            .iter()
            .filter(|r| r.owner == owner)
            .count()
            >= MAX_USER_ALERTS
        {
            return format!(
                "You have {MAX_USER_ALERTS} alerts already; remove one with `alert off <n>`."
            );
        }
        let n = self.alert_book.user.iter().map(|r| r.n).max().unwrap_or(0) + 1;
        let (op, threshold) = match new.condition {
            AlertCondition::Above(t) => (">", Some(t)),
            AlertCondition::Below(t) => ("<", Some(t)),
            AlertCondition::Offline => ("offline", None),
        };
        let row = UserAlertRow {
            n,
            owner: owner.to_owned(),
            device: dev.config.id.to_string(),
            field,
            op: op.to_owned(),
            threshold,
            hold_ms: new.hold.as_millis().min(u64::MAX as u128) as u64,
        };
        let Some(config) = self.user_alert_config(&row) else {
            return "That alert cannot be set.".to_owned();
        };
        let shown = describe_user(&config);
        tracing::info!(alert = n, device = %config.device, jid = %owner, condition = %shown, "alert set by chat");
        self.store.alert(AlertOp::SaveUser(row.clone()));
        self.alert_book.user.push(row);
        self.alert_book
            .engine
            .add(format!("user:{n}"), config, Some(owner.to_owned()));
        // A condition that already holds counts from now, once the confirmation is on its way.
        self.alert_book.fresh = Some(idx);
        format!("Alert {n} set: {shown}. `alerts` lists yours; `alert off {n}` removes it.")
    }

    /// Shows a device that just got a chat alert its current values and availability, so that
    /// a condition already holding counts from now rather than from the next reading (a device
    /// behind a broker may report only on change).
    pub(super) fn check_fresh_alert(&mut self) {
        let Some(idx) = self.alert_book.fresh.take() else {
            return;
        };
        let dev = self.devices.get(idx);
        let (id, online, current) = (dev.config.id.clone(), dev.online, dev.readings());
        self.alert_readings(&current);
        if let Some(up) = online {
            self.alert_availability(&id, up);
        }
    }

    fn remove_user_alert(&mut self, owner: &str, n: u32) -> String {
        let Some(pos) = self
            .alert_book
            .user
            .iter()
            .position(|r| r.n == n && r.owner == owner)
        else {
            return format!("You have no alert {n}. `alerts` lists yours.");
        };
        self.alert_book.user.remove(pos);
        self.alert_book.engine.remove(&format!("user:{n}"));
        self.store.alert(AlertOp::RemoveUser(n));
        tracing::info!(alert = n, jid = %owner, "alert removed by chat");
        format!("Alert {n} removed.")
    }

    /// `alerts`: the sender's own alerts on this device, and the configured ones that tell them.
    pub(super) fn alert_list(&self, idx: usize, owner: &str) -> String {
        let device = &self.devices.get(idx).config.id;
        let mut lines = Vec::new();
        for a in self.alert_book.engine.iter() {
            if a.config.device != *device || !a.config.to.iter().any(|t| t == owner) {
                continue;
            }
            let state = match a.phase {
                crate::alerts::Phase::Firing { .. } => " (firing)",
                _ => "",
            };
            let line = match &a.owner {
                Some(_) => format!("{}: {}{state}", a.config.id, describe_user(&a.config)),
                None => format!(
                    "[{}] {}{state} (configured)",
                    a.config.id,
                    text::describe(&a.config)
                ),
            };
            lines.push(line);
        }
        if lines.is_empty() {
            return "No alerts here. Set one: `alert <field> > <number> [for 10m]`.".to_owned();
        }
        format!("Alerts:\n{}", lines.join("\n"))
    }
}

/// `temperature > 30 for 10 min`.
fn describe_user(a: &AlertConfig) -> String {
    let cond = text::describe(a);
    if a.hold.is_zero() {
        cond
    } else {
        format!("{cond} for {}", text::human_duration(a.hold))
    }
}
