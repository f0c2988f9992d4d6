//! Taking a new configuration without dropping the upstream session (SIGHUP).
//!
//! Devices are matched by id: a device that stays keeps its values, availability, subscribers,
//! room seat and PubSub node, so its subscribers see no unavailable/available flap. A removed
//! device says goodbye; a new one is announced. Subscribers the new access lists no longer allow
//! are told `unsubscribed` and forgotten.

use std::collections::BTreeSet;
use std::sync::Arc;

use gateway_api::Request;
use tokio::sync::mpsc;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::presence::Type as PresenceType;

use super::{publish, room, sessions, Core, Restarted};
use crate::access::Permission;
use crate::config::Config;
use crate::devices::Devices;
use crate::xmpp::stanzas;

impl Core {
    pub(super) fn reload(
        &mut self,
        config: Arc<Config>,
        requests: Vec<mpsc::Sender<Request>>,
        restarted: &Restarted,
    ) {
        let mut devices = match Devices::from_config(&config) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "the new configuration cannot be applied; keeping the old one");
                return;
            }
        };
        self.keep_discovered(&config, &mut devices, restarted);
        let n = devices.len();
        let mut subscribers = vec![BTreeSet::new(); n];
        let mut seats = vec![room::RoomState::default(); n];
        let mut nodes = vec![publish::NodeState::Unknown; n];
        let mut added = Vec::new();
        for new_idx in 0..n {
            let id = devices.get(new_idx).config.id.clone();
            match self.devices.index_of(&id) {
                Some(old_idx) => {
                    let old = self.devices.get(old_idx);
                    let dev = devices.get_mut(new_idx);
                    dev.online = old.online;
                    dev.offline_reason = old.offline_reason.clone();
                    dev.quiet_until = old.quiet_until;
                    // Values carry over by field name; a new field starts empty.
                    for (fi, f) in dev.config.fields.clone().iter().enumerate() {
                        if let Some(ofi) = old.field_index(&f.spec.name) {
                            dev.values[fi] = old.values[ofi].clone();
                            dev.published[fi] = old.published[ofi].clone();
                        }
                    }
                    subscribers[new_idx] = self.presence.take(old_idx);
                    seats[new_idx] = self.seats.seat(old_idx);
                    nodes[new_idx] = self.pubsub.carried_over(old_idx);
                }
                None => {
                    subscribers[new_idx] = self.presence.take_orphaned(id.as_str());
                    added.push(new_idx);
                }
            }
        }
        // Devices that are gone: their subscribers see them leave, and are remembered in case
        // the device comes back.
        let mut goodbyes = Vec::new();
        for (old_idx, dev) in self.devices.iter() {
            if devices.index_of(&dev.config.id).is_some() {
                continue;
            }
            tracing::info!(device = %dev.config.id, "device removed");
            let subs = self.presence.take(old_idx);
            for jid in &subs {
                if let Ok(to) = Jid::new(jid) {
                    goodbyes.push(stanzas::presence(
                        &dev.jid,
                        Some(&to),
                        PresenceType::Unavailable,
                        "removed from the gateway",
                    ));
                }
            }
            self.presence.orphan(dev.config.id.to_string(), subs);
        }
        // Client mode: a device that left, or logs in differently now, has its session closed
        // (the server says its goodbye); a new one, or one with a new login, gets a session.
        let mut opened = Vec::new();
        if self.client_mode {
            for (_, old) in self.devices.iter() {
                let stays = devices
                    .index_of(&old.config.id)
                    .is_some_and(|i| sessions::same_login(devices.get(i), old));
                if !stays {
                    self.close_session(&old.jid);
                }
            }
            for (idx, new) in devices.iter() {
                let had = self
                    .devices
                    .index_of(&new.config.id)
                    .is_some_and(|i| sessions::same_login(self.devices.get(i), new));
                if !had {
                    opened.push(idx);
                }
            }
        }
        // Waiting pushes name old indices and old `notify` positions: they go out as they are.
        self.outbox.seal_pushes();
        // Queued presence refers to old indices: carry it over by id.
        let queued: Vec<(gateway_api::DeviceId, Option<String>)> = self
            .outbox
            .take_presence()
            .into_iter()
            .map(|(idx, to)| (self.devices.get(idx).config.id.clone(), to))
            .collect();
        self.presence.clear_held();

        self.device_stats = self
            .stats
            .set_device_list(devices.iter().map(|(_, d)| &d.config));
        self.devices = devices;
        self.presence.replace(subscribers);
        self.seats.replace(seats);
        self.pubsub.replace(nodes);
        self.requests = requests;
        self.config = config;
        for el in goodbyes {
            self.reply(el);
        }
        for (id, to) in queued {
            if let Some(idx) = self.devices.index_of(&id) {
                self.queue_presence(idx, to);
            }
        }
        // Access lists may have changed: whoever may no longer read is unsubscribed.
        for idx in 0..self.devices.len() {
            let dev_jid = self.devices.get(idx).jid.clone();
            let refused: Vec<String> = self
                .presence
                .subscribers(idx)
                .iter()
                .filter(|j| !self.devices.allows(idx, j, Permission::Read))
                .cloned()
                .collect();
            for jid in refused {
                tracing::info!(device = %self.devices.get(idx).config.id, jid = %jid, "subscriber no longer allowed: unsubscribed");
                self.presence.unsubscribe(idx, &jid);
                self.store
                    .remove_subscriber(&self.devices.get(idx).config.id, &jid);
                if let Ok(to) = Jid::new(&jid) {
                    self.reply(stanzas::presence(
                        &dev_jid,
                        Some(&to),
                        PresenceType::Unsubscribed,
                        "",
                    ));
                    self.reply(stanzas::presence(
                        &dev_jid,
                        Some(&to),
                        PresenceType::Unavailable,
                        "",
                    ));
                }
            }
            if self.devices.get(idx).presence_dirty {
                self.devices.get_mut(idx).timer_pending = false;
                self.publish_change(idx, false);
            }
        }
        for &idx in &opened {
            self.open_session(idx);
        }
        for idx in added {
            tracing::info!(device = %self.devices.get(idx).config.id, "device added");
            // A device with a new session is announced once that session is online.
            if self.link_up && !opened.contains(&idx) {
                self.announce(idx);
            }
        }
        // What restarted adapters said about new devices before this moment.
        for ev in std::mem::take(&mut self.early_events) {
            // Still unknown after the reload: a device nobody configured; dropped for good.
            self.replay(ev);
        }
        self.early_events.clear();
        // Alerts whose definition did not change keep their phase.
        self.rebuild_alerts();
        self.housekeeping();
        tracing::info!(devices = self.devices.len(), "configuration reloaded");
    }
}
