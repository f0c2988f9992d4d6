//! Devices that adapters discover on their buses (devices that announce themselves):
//! the core hosts them next to the configured ones.
//!
//! A discovered device becomes a row of the device table like a configured one: the JID its id
//! would get if it were configured, the `[access]` lists, the `[publish]` defaults. So every XMPP
//! handler (disco, readouts, control, chat, presence, room, PubSub) serves it unchanged, and
//! writes go to the request channel of the adapter that found it.
//!
//! Adding or replacing a device is done in place, in constant time whatever the size of the
//! table, so a storm of announcements at connect costs in proportion to its size. Removals
//! renumber the table: they wait for the end of the core's turn and are done together, as are
//! the other chores that walk the table (the per-device counters' list, alerts, the per-adapter
//! gauge). A configured id always wins over a discovered one.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gateway_api::{DeviceId, DiscoveredDevice, Metric, MetricKind, MetricSample, MetricsSource};
use minidom::Element;
use tokio::time::Instant;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use super::shedding::LogLimit;
use super::{AdapterEvent, Core, HOSTILE_LOG_EVERY};
use crate::access::Permission;
use crate::config::{AnySettings, Config, DeviceConfig, FieldConfig, XmppConfig};
use crate::devices::{retain_mapped, Devices};
use crate::metrics::Registry;
use crate::xmpp::client::GATEWAY_RESOURCE;
use crate::xmpp::stanzas;

/// Devices hosted in all (configured and discovered) beyond which no more discovered ones are
/// taken: each adapter has its own, smaller cap; this one bounds the sum of them on a small
/// machine.
pub(super) const MAX_HOSTED: usize = 10_000;
/// After a reload restarted an adapter, how long its discovered devices wait to be reported
/// again by the new adapter before they are taken for gone.
pub(super) const REDISCOVERY_GRACE: Duration = Duration::from_secs(60);

/// The settings of a discovered device and of its fields: they come from the bus, not from the
/// configuration file, and say only which announcement it was.
#[derive(Debug, PartialEq)]
pub struct DiscoveredSettings {
    pub source: Arc<str>,
}

/// The adapters a reload restarted, and when their restart began: devices they announced
/// since then need not be announced again.
#[derive(Debug, Clone)]
pub struct Restarted {
    pub adapters: Vec<Arc<str>>,
    pub since: Instant,
}

impl Restarted {
    /// A reload that restarted no adapter.
    pub fn none() -> Restarted {
        Restarted {
            adapters: Vec::new(),
            since: Instant::now(),
        }
    }
}

/// The core's record of the discovered devices it hosts.
pub(super) struct Discovery {
    /// What the adapters last said of each discovered device in the table.
    hosted: HashMap<DeviceId, DiscoveredDevice>,
    /// When each hosted discovered device was last announced.
    announced: HashMap<DeviceId, Instant>,
    /// Discovered devices gone in this turn: removed from the table at its end.
    leaving: HashSet<DeviceId>,
    /// The table gained or lost discovered devices in this turn.
    changed: bool,
    /// Devices of adapters a reload restarted, not reported again yet, and when they are
    /// taken for gone.
    unconfirmed: HashSet<DeviceId>,
    unconfirmed_until: Option<Instant>,
    /// Ids whose discovery was ignored because they are configured: one INFO line each.
    shadowed: HashSet<DeviceId>,
    /// Added and removed in the turns since the last summary line.
    added_since: usize,
    removed_since: usize,
    stats: Arc<DiscoveryStats>,
    refused_log: LogLimit,
}

impl Discovery {
    /// Registers its metrics with `metrics` (the `/metrics` endpoint and the gateway's status).
    pub(super) fn new(metrics: &Registry) -> Discovery {
        let stats = Arc::new(DiscoveryStats::default());
        metrics.register(stats.clone());
        Discovery {
            hosted: HashMap::new(),
            announced: HashMap::new(),
            leaving: HashSet::new(),
            changed: false,
            unconfirmed: HashSet::new(),
            unconfirmed_until: None,
            shadowed: HashSet::new(),
            added_since: 0,
            removed_since: 0,
            stats,
            refused_log: LogLimit::new(HOSTILE_LOG_EVERY),
        }
    }
}

/// Counters of discovery, read at scrape time.
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    /// `DeviceFound` events, hosted or not.
    found: AtomicU64,
    /// Discovered devices that left (withdrawn, or not reported again after a restart).
    gone: AtomicU64,
    /// `DeviceFound` events not hosted: a configured id, an adapter that is not configured,
    /// a JID that cannot be made.
    ignored: AtomicU64,
    /// `DeviceFound` events refused because the gateway hosts `MAX_HOSTED` devices.
    refused: AtomicU64,
    /// Discovered devices hosted now, per adapter id; refreshed at the end of a turn that
    /// changed them.
    per_adapter: RwLock<Vec<(Arc<str>, usize)>>,
}

impl DiscoveryStats {
    fn inc(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl MetricsSource for DiscoveryStats {
    fn collect(&self, out: &mut Vec<Metric>) {
        use MetricKind::{Counter, Gauge};
        let per_adapter = self
            .per_adapter
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        out.push(Metric {
            name: "discovered_devices",
            help: "Discovered devices hosted now, per adapter.",
            kind: Gauge,
            samples: per_adapter
                .into_iter()
                .map(|(a, n)| MetricSample::new(vec![("adapter", a.to_string())], n as f64))
                .collect(),
        });
        for (name, help, counter) in [
            (
                "discovery_found_total",
                "Devices adapters reported found (new or changed), hosted or not.",
                &self.found,
            ),
            (
                "discovery_gone_total",
                "Discovered devices that left the gateway.",
                &self.gone,
            ),
            (
                "discovery_ignored_total",
                "Found devices not hosted: configured ids (the configured device wins), unknown adapters, ids that make no JID.",
                &self.ignored,
            ),
            (
                "discovery_refused_total",
                "Found devices refused because the gateway hosts as many devices as it takes.",
                &self.refused,
            ),
        ] {
            out.push(Metric::single(
                name,
                help,
                Counter,
                counter.load(Ordering::Relaxed) as f64,
            ));
        }
    }
}

/// The device table's entry for `found`, found by the adapter at `adapter_index` of `config`:
/// the JID a configured device of that id would get, the `[access]` lists, no deadband of its own.
fn device_config(
    config: &Config,
    found: &DiscoveredDevice,
    adapter_index: usize,
) -> Option<(DeviceConfig, Jid)> {
    let jid_text = match &config.xmpp {
        XmppConfig::Component(c) => format!("{}@{}", found.id, c.domain),
        // A resource of the shared account, as a configured device of that id gets; the
        // gateway's own resource is taken.
        XmppConfig::Client(_) if found.id.as_str() == GATEWAY_RESOURCE => return None,
        XmppConfig::Client(c) => format!("{}/{}", c.jid, found.id),
    };
    let jid = Jid::new(&jid_text).ok()?;
    let settings = AnySettings::new(DiscoveredSettings {
        source: found.source.clone(),
    });
    let name = if found.name.trim().is_empty() {
        found.id.to_string()
    } else {
        found.name.clone()
    };
    let dc = DeviceConfig {
        id: found.id.clone(),
        jid: jid_text,
        password: None,
        name,
        adapter: found.adapter.clone(),
        adapter_index,
        access: None,
        fields: found
            .fields
            .iter()
            .map(|spec| FieldConfig {
                spec: spec.clone(),
                deadband: None,
                settings: settings.clone(),
            })
            .collect(),
        settings,
    };
    Some((dc, jid))
}

impl Core {
    /// An adapter found a device, or what it knows of one changed.
    pub(super) fn on_device_found(&mut self, found: DiscoveredDevice) {
        DiscoveryStats::inc(&self.discovery.stats.found);
        let Some(adapter_index) = self
            .config
            .adapters
            .iter()
            .position(|a| a.id == found.adapter)
        else {
            return self.ignore_found(&found, "its adapter is not configured");
        };
        if let Some(idx) = self.devices.index_of(&found.id) {
            let Some(known) = self.discovery.hosted.get(&found.id) else {
                // A configured device of that id: it wins.
                DiscoveryStats::inc(&self.discovery.stats.ignored);
                if self.discovery.shadowed.insert(found.id.clone()) {
                    tracing::info!(device = %found.id, adapter = %found.adapter, source = %found.source,
                        "a discovered device has the id of a configured one; the configured one is kept");
                }
                return;
            };
            if known.adapter != found.adapter {
                return self.ignore_found(&found, "another adapter hosts a device of that id");
            }
            return self.replace_discovered(idx, found, adapter_index);
        }
        if self.devices.len() >= MAX_HOSTED {
            DiscoveryStats::inc(&self.discovery.stats.refused);
            if let Some(held_back) = self.discovery.refused_log.allow(Instant::now()) {
                tracing::warn!(device = %found.id, adapter = %found.adapter, earlier = held_back,
                    "the gateway hosts {MAX_HOSTED} devices, as many as it takes: a discovered device is not hosted \
                     (narrow the adapter's discover_include/discover_exclude; one line a minute, `earlier` counts those since the last)");
            }
            return;
        }
        let Some((config, jid)) = device_config(&self.config, &found, adapter_index) else {
            return self.ignore_found(&found, "no JID can be made of its id");
        };
        let id = found.id.clone();
        let idx = self.devices.push(config, jid);
        let mut subscribers = self.presence.take_orphaned(id.as_str());
        subscribers.retain(|jid| {
            let allowed = self.devices.allows(idx, jid, Permission::Read);
            if !allowed {
                self.store.remove_subscriber(&id, jid);
            }
            allowed
        });
        self.presence.push(subscribers);
        self.seats.push();
        self.pubsub.push();
        self.device_stats
            .push(self.stats.add_device(id.clone(), found.adapter.clone()));
        tracing::debug!(device = %id, adapter = %found.adapter, source = %found.source, "discovered device hosted");
        self.discovery.announced.insert(id.clone(), Instant::now());
        self.discovery.hosted.insert(id.clone(), found);
        self.discovery.changed = true;
        self.discovery.added_since += 1;
        // What the adapter said about it before this (held like a reload's early events).
        if !self.early_events.is_empty() {
            let (mine, rest): (Vec<AdapterEvent>, Vec<AdapterEvent>) =
                std::mem::take(&mut self.early_events)
                    .into_iter()
                    .partition(|ev| event_device(ev) == Some(&id));
            self.early_events = rest;
            for ev in mine {
                self.replay(ev);
            }
        }
        if self.client_mode {
            // Announced once its session is online.
            self.open_session(idx);
        } else if self.link_up {
            self.announce(idx);
        }
    }

    /// A second announcement of a hosted discovered device: its description changes in place,
    /// values of fields that stay are kept, subscribers see no flap.
    fn replace_discovered(&mut self, idx: usize, found: DiscoveredDevice, adapter_index: usize) {
        self.discovery.leaving.remove(&found.id);
        self.discovery.unconfirmed.remove(&found.id);
        self.discovery
            .announced
            .insert(found.id.clone(), Instant::now());
        if self.discovery.hosted.get(&found.id) == Some(&found) {
            // A re-announcement (a restarted adapter, a retained message read again).
            return;
        }
        let Some((config, _)) = device_config(&self.config, &found, adapter_index) else {
            return;
        };
        tracing::debug!(device = %found.id, adapter = %found.adapter, "discovered device changed");
        self.devices.replace(idx, config);
        self.discovery.hosted.insert(found.id.clone(), found);
    }

    fn ignore_found(&mut self, found: &DiscoveredDevice, why: &str) {
        DiscoveryStats::inc(&self.discovery.stats.ignored);
        if let Some(held_back) = self.discovery.refused_log.allow(Instant::now()) {
            tracing::warn!(device = %found.id, adapter = %found.adapter, earlier = held_back,
                "a discovered device is not hosted: {why} (one line a minute; `earlier` counts those since the last)");
        }
    }

    /// A discovered device's announcement was withdrawn: it leaves at the end of this turn.
    pub(super) fn on_device_gone(&mut self, id: DeviceId) {
        if self.discovery.hosted.contains_key(&id) {
            self.discovery.leaving.insert(id);
            return;
        }
        // Never hosted (refused, ignored, or a configured id): forget what is held for it.
        self.early_events.retain(|ev| event_device(ev) != Some(&id));
    }

    /// The end of a turn of the core's loop: removes the discovered devices that left in it
    /// (or were not reported again in time after their adapter restarted), all in one pass, and
    /// brings the table-wide figures in line. Cheap when nothing changed.
    pub(super) fn finish_discovery(&mut self) {
        if let Some(until) = self.discovery.unconfirmed_until {
            if Instant::now() >= until {
                self.discovery.unconfirmed_until = None;
                let stale = std::mem::take(&mut self.discovery.unconfirmed);
                if !stale.is_empty() {
                    tracing::info!(
                        devices = stale.len(),
                        "discovered devices not reported again by their restarted adapter: removed"
                    );
                }
                self.discovery.leaving.extend(stale);
            }
        }
        if !self.discovery.leaving.is_empty() {
            self.remove_discovered();
        }
        if !std::mem::take(&mut self.discovery.changed) {
            return;
        }
        self.device_stats = self
            .stats
            .set_device_list(self.devices.iter().map(|(_, d)| &d.config));
        let mut per_adapter: Vec<(Arc<str>, usize)> = self
            .config
            .adapters
            .iter()
            .map(|a| (a.id.clone(), 0))
            .collect();
        for found in self.discovery.hosted.values() {
            if let Some((_, n)) = per_adapter.iter_mut().find(|(a, _)| *a == found.adapter) {
                *n += 1;
            }
        }
        per_adapter.retain(|(_, n)| *n > 0);
        *self
            .discovery
            .stats
            .per_adapter
            .write()
            .unwrap_or_else(|e| e.into_inner()) = per_adapter;
        // Chat alerts on discovered devices become active once their device is hosted.
        self.rebuild_alerts();
        let (added, removed) = (
            std::mem::take(&mut self.discovery.added_since),
            std::mem::take(&mut self.discovery.removed_since),
        );
        if added + removed > 0 {
            tracing::info!(
                added,
                removed,
                hosted = self.discovery.hosted.len(),
                "discovered devices"
            );
        }
    }

    /// Says goodbye for every device in `discovery.leaving` and takes them out of the table.
    fn remove_discovered(&mut self) {
        let leaving = std::mem::take(&mut self.discovery.leaving);
        let mut keep = vec![true; self.devices.len()];
        let mut goodbyes = Vec::new();
        for id in &leaving {
            let Some(idx) = self.devices.index_of(id) else {
                continue;
            };
            self.discovery.hosted.remove(id);
            self.discovery.announced.remove(id);
            keep[idx] = false;
            if self.client_mode {
                // Closing the session is the goodbye: the server sends it to the account's
                // subscribers and to the room.
                self.close_session(&self.devices.get(idx).jid);
            } else {
                goodbyes.extend(self.goodbyes_of(idx));
            }
            // Subscribers are remembered: the device may be announced again.
            let subs = self.presence.take(idx);
            if !subs.is_empty() {
                self.presence.orphan(id.to_string(), subs);
            }
            tracing::debug!(device = %id, "discovered device gone");
            DiscoveryStats::inc(&self.discovery.stats.gone);
            self.discovery.removed_since += 1;
        }
        self.discovery.changed = true;
        let map = self.devices.retain(&keep);
        self.presence.renumber(&map);
        self.seats.renumber(&map);
        self.pubsub.renumber(&map);
        retain_mapped(&mut self.device_stats, &map);
        // Everything else that names devices by index is renumbered.
        self.outbox.seal_pushes();
        for (idx, to) in self.outbox.take_presence() {
            if let Some(new) = map[idx] {
                self.outbox.push_presence(new, to);
            }
        }
        self.alert_book.fresh = self.alert_book.fresh.and_then(|idx| map[idx]);
        self.presence.clear_held();
        let now = Instant::now();
        for (idx, dev) in self.devices.iter() {
            if dev.timer_pending {
                self.presence
                    .hold_until(idx, dev.quiet_until.unwrap_or(now));
            }
        }
        for el in goodbyes {
            self.reply(el);
        }
    }

    /// Unavailable presence to device `idx`'s subscribers and its leaving of the room.
    fn goodbyes_of(&self, idx: usize) -> Vec<Element> {
        let dev = self.devices.get(idx);
        let mut out: Vec<Element> = self
            .presence
            .subscribers(idx)
            .iter()
            .filter_map(|jid| Jid::new(jid).ok())
            .map(|to| {
                stanzas::presence(
                    &dev.jid,
                    Some(&to),
                    PresenceType::Unavailable,
                    "removed from the gateway",
                )
            })
            .collect();
        if let (true, Some(room)) = (self.seats.joined(idx), self.config.publish.room.as_deref()) {
            if let Ok(to) = Jid::new(&format!("{room}/{}", dev.config.id)) {
                let from = self.occupant(idx);
                out.push(Presence::unavailable().with_from(from).with_to(to).into());
            }
        }
        out
    }

    /// A reload: the discovered devices whose adapter remains go into the new table `devices`
    /// (after the configured ones); those whose id is now configured, or whose adapter was
    /// removed, are left out (the reload says goodbye for them). Devices of adapters the reload
    /// restarted (`restarted`) and not announced since must be reported again by the new adapter
    /// within [`REDISCOVERY_GRACE`], or they leave.
    pub(super) fn keep_discovered(
        &mut self,
        config: &Config,
        devices: &mut Devices,
        restarted: &Restarted,
    ) {
        let mut kept = HashMap::new();
        for (_, dev) in self.devices.iter() {
            let Some(found) = self.discovery.hosted.remove(&dev.config.id) else {
                continue;
            };
            if devices.index_of(&found.id).is_some() {
                tracing::info!(device = %found.id, "a configured device takes over a discovered one");
                continue;
            }
            let Some(adapter_index) = config.adapters.iter().position(|a| a.id == found.adapter)
            else {
                tracing::info!(device = %found.id, adapter = %found.adapter, "discovered device removed with its adapter");
                continue;
            };
            let Some((dc, jid)) = device_config(config, &found, adapter_index) else {
                continue;
            };
            devices.push(dc, jid);
            let announced = self.discovery.announced.get(&found.id).copied();
            if restarted.adapters.contains(&found.adapter)
                && announced.is_none_or(|at| at < restarted.since)
            {
                self.discovery.unconfirmed.insert(found.id.clone());
            }
            kept.insert(found.id.clone(), found);
        }
        let dropped = self.discovery.hosted.len();
        DiscoveryStats::add(&self.discovery.stats.gone, dropped);
        self.discovery.hosted = kept;
        let hosted = &self.discovery.hosted;
        self.discovery
            .announced
            .retain(|id, _| hosted.contains_key(id));
        self.discovery.leaving.clear();
        self.discovery
            .unconfirmed
            .retain(|id| self.discovery.hosted.contains_key(id));
        if !self.discovery.unconfirmed.is_empty() {
            self.discovery.unconfirmed_until = Some(Instant::now() + REDISCOVERY_GRACE);
        }
        self.discovery.changed = true;
    }
}

/// The device an event is about.
pub(super) fn event_device(ev: &AdapterEvent) -> Option<&DeviceId> {
    match ev {
        AdapterEvent::Readings(rs) => rs.first().map(|r| &r.device),
        AdapterEvent::Online { device }
        | AdapterEvent::Offline { device, .. }
        | AdapterEvent::DeviceGone { device } => Some(device),
        AdapterEvent::DeviceFound(found) => Some(&found.id),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use gateway_api::{
        AdapterEvent, DeviceId, DiscoveredDevice, FieldSpec, FieldType, Reading, Request,
        RequestKind, Value,
    };
    use minidom::Element;
    use tokio::sync::{mpsc, oneshot, watch};
    use tokio::time::Instant;

    use super::super::fuzzing::{settle, setup};
    use super::super::{Core, CoreInputs, CoreParts};
    use super::Restarted;
    use crate::metrics::Registry;
    use crate::stats::Stats;
    use crate::xmlns;
    use crate::xmpp::wire::{self, StanzaReader};
    use crate::xmpp::Inbound;

    /// A component-mode core (the fuzzing configuration: devices `greenhouse`, `pump`, `vault`
    /// on adapter `sim`, readers `@localhost`, controller alice) with the link up; the adapter's
    /// requests come to `requests`.
    struct Rig {
        core: Core,
        inputs: CoreInputs,
        requests: mpsc::Receiver<Request>,
        metrics: Arc<Registry>,
        sent: Vec<Element>,
    }

    impl Rig {
        async fn new() -> Rig {
            let s = setup();
            let metrics = Arc::new(Registry::new());
            let (_events_tx, events_rx) = mpsc::channel(16);
            let (req_tx, requests) = mpsc::channel(16);
            let (_inbound_tx, inbound_rx) = mpsc::channel(1);
            let (outbound_tx, _outbound_rx) = mpsc::channel(1);
            let (_commands_tx, commands_rx) = mpsc::channel(1);
            let (first_link, _) = oneshot::channel();
            let (mut core, inputs) = Core::new(CoreParts {
                config: s.configs[0].clone(),
                store: s.store.clone(),
                subscriptions: Vec::new(),
                events: events_rx,
                inbound: inbound_rx,
                outbound: outbound_tx,
                requests: vec![req_tx],
                stats: Arc::new(Stats::default()),
                commands: commands_rx,
                metrics: metrics.clone(),
                first_link,
                summary: watch::channel(Default::default()).0,
                heartbeat: watch::channel(Instant::now()).0,
                sessions: None,
            })
            .expect("a core");
            core.on_inbound(Inbound::Up);
            let mut rig = Rig {
                core,
                inputs,
                requests,
                metrics,
                sent: Vec::new(),
            };
            rig.settle().await;
            rig.sent.clear();
            rig
        }

        /// Adapter events as one turn of the core's loop takes them.
        async fn events(&mut self, evs: impl IntoIterator<Item = AdapterEvent>) {
            for ev in evs {
                self.core.on_adapter_event(ev);
            }
            self.core.finish_discovery();
            self.settle().await;
        }

        async fn settle(&mut self) {
            settle(&mut self.core, &mut self.inputs, &mut self.sent).await;
        }

        /// Hands the core one stanza from the server and returns what it sent in answer.
        async fn stanza(&mut self, xml: &str) -> Vec<String> {
            let mut stream = wire::stream_open(xmlns::COMPONENT, "t").into_bytes();
            stream.extend_from_slice(xml.as_bytes());
            stream.extend_from_slice(wire::STREAM_CLOSE.as_bytes());
            let mut reader = StanzaReader::new(
                &stream[..],
                xmlns::COMPONENT,
                wire::DEFAULT_MAX_STANZA_BYTES,
            );
            reader.read_header().await.expect("header");
            let el = reader.next().await.expect("a stanza");
            self.core.on_inbound(Inbound::Stanza(el));
            self.settle().await;
            self.take_sent()
        }

        fn take_sent(&mut self) -> Vec<String> {
            self.sent.drain(..).map(|el| String::from(&el)).collect()
        }

        async fn disco_items(&mut self) -> String {
            let sent = self
                .stanza("<iq type='get' id='items' from='bob@localhost/x' to='sensors.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
                .await;
            sent.into_iter()
                .find(|s| s.contains("id=\"items\"") || s.contains("id='items'"))
                .expect("a disco#items answer")
        }

        fn index(&self, id: &str) -> Option<usize> {
            self.core.devices.index_of(&DeviceId::new(id).expect("id"))
        }

        /// The value of field `fi` of device `id`.
        fn value(&self, id: &str, fi: usize) -> Option<Value> {
            let idx = self.index(id).expect("hosted");
            self.core.devices.get(idx).values[fi]
                .as_ref()
                .map(|s| s.value.clone())
        }

        fn metric(&self, name: &str) -> f64 {
            self.metrics
                .collect()
                .into_iter()
                .find(|m| m.name == name)
                .map_or(0.0, |m| m.samples.iter().map(|s| s.value).sum())
        }
    }

    fn field(name: &str, kind: FieldType, writable: bool) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            unit: "".into(),
            kind,
            writable,
        }
    }

    fn found(id: &str, fields: Vec<FieldSpec>) -> AdapterEvent {
        AdapterEvent::DeviceFound(DiscoveredDevice {
            id: DeviceId::new(id).expect("id"),
            adapter: "sim".into(),
            name: format!("Discovered {id}"),
            fields,
            source: "homeassistant".into(),
            manufacturer: None,
            model: None,
        })
    }

    fn lamp() -> AdapterEvent {
        found(
            "lamp",
            vec![
                field("state", FieldType::Boolean, true),
                field("brightness", FieldType::Integer, true),
            ],
        )
    }

    fn reading(id: &str, f: &str, v: Value) -> AdapterEvent {
        AdapterEvent::Readings(vec![Reading::now(
            DeviceId::new(id).expect("id"),
            f.into(),
            v,
        )])
    }

    #[tokio::test]
    async fn a_found_device_is_listed_read_and_written_through_its_adapter() {
        let mut rig = Rig::new().await;
        let online = AdapterEvent::Online {
            device: DeviceId::new("lamp").expect("id"),
        };
        rig.events([
            lamp(),
            online,
            reading("lamp", "brightness", Value::Int(40)),
        ])
        .await;
        let items = rig.disco_items().await;
        assert!(items.contains("lamp@sensors.localhost"), "{items}");
        assert!(items.contains("greenhouse@sensors.localhost"), "{items}");
        assert_eq!(rig.metric("discovered_devices"), 1.0);
        assert_eq!(rig.metric("discovery_found_total"), 1.0);

        let info = rig
            .stanza("<iq type='get' id='info' from='bob@localhost/x' to='lamp@sensors.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
            .await;
        assert!(
            info.iter()
                .any(|s| s.contains("Discovered lamp") && s.contains(xmlns::CONTROL)),
            "{info:?}"
        );

        let readout = rig
            .stanza("<iq type='get' id='r1' from='bob@localhost/x' to='lamp@sensors.localhost'><req xmlns='urn:xmpp:iot:sensordata' seqnr='7' momentary='true'/></iq>")
            .await;
        assert!(
            readout
                .iter()
                .any(|s| s.contains("brightness") && s.contains("40")),
            "{readout:?}"
        );

        let sent = rig
            .stanza("<iq type='set' id='w1' from='alice@localhost/phone' to='lamp@sensors.localhost'><set xmlns='urn:xmpp:iot:control'><int name='brightness' value='80'/></set></iq>")
            .await;
        assert!(sent.is_empty(), "answered before the adapter: {sent:?}");
        let req = rig.requests.recv().await.expect("a request to the adapter");
        assert_eq!(req.device.as_str(), "lamp");
        let RequestKind::Write { values } = &req.kind else {
            panic!("not a write: {:?}", req.kind);
        };
        assert_eq!(values, &vec![(Arc::from("brightness"), Value::Int(80))]);
        let confirmed = Reading::now(req.device.clone(), "brightness".into(), Value::Int(80));
        req.reply.send(Ok(vec![confirmed])).expect("the core waits");
        // The write's task answers through the deferred channel.
        let deferred = rig.inputs.deferred.recv().await.expect("deferred");
        rig.core.on_deferred(deferred);
        rig.settle().await;
        let answer = rig.take_sent();
        assert!(
            answer
                .iter()
                .any(|s| s.contains("w1") && s.contains("result")),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn a_second_announcement_keeps_the_values_of_fields_that_stay() {
        let mut rig = Rig::new().await;
        rig.events([lamp(), reading("lamp", "brightness", Value::Int(40))])
            .await;
        // The adapter learns of one more entity of the lamp.
        rig.events([found(
            "lamp",
            vec![
                field("brightness", FieldType::Integer, true),
                field("power", FieldType::Numeric, false),
            ],
        )])
        .await;
        let idx = rig.index("lamp").expect("still hosted");
        let dev = rig.core.devices.get(idx);
        assert_eq!(dev.config.fields.len(), 2);
        assert_eq!(
            dev.values[0].as_ref().map(|s| s.value.clone()),
            Some(Value::Int(40))
        );
        assert!(dev.values[1].is_none());
        assert_eq!(rig.core.devices.len(), 4);
    }

    #[tokio::test]
    async fn a_gone_device_says_goodbye_and_keeps_its_subscribers_for_its_return() {
        let mut rig = Rig::new().await;
        rig.events([lamp(), reading("pump", "speed", Value::Int(1200))])
            .await;
        rig.stanza(
            "<presence type='subscribe' from='bob@localhost/x' to='lamp@sensors.localhost'/>",
        )
        .await;
        rig.events([AdapterEvent::DeviceGone {
            device: DeviceId::new("lamp").expect("id"),
        }])
        .await;
        let sent = rig.take_sent();
        assert!(
            sent.iter().any(|s| s.contains("unavailable")
                && s.contains("lamp@sensors.localhost")
                && s.contains("bob@localhost")),
            "{sent:?}"
        );
        let items = rig.disco_items().await;
        assert!(!items.contains("lamp@"), "{items}");
        assert_eq!(rig.metric("discovery_gone_total"), 1.0);
        // Everything still works for the devices that stay, renumbered or not.
        let answer = rig
            .stanza("<message type='chat' id='c' from='bob@localhost/x' to='pump@sensors.localhost'><body>get speed</body></message>")
            .await;
        assert!(answer.iter().any(|s| s.contains("1200")), "{answer:?}");
        // Back again: its subscriber sees it.
        rig.events([lamp()]).await;
        let idx = rig.index("lamp").expect("hosted again");
        assert!(rig.core.presence.is_subscribed(idx, "bob@localhost"));
    }

    #[tokio::test]
    async fn a_configured_device_wins_over_a_discovered_one() {
        let mut rig = Rig::new().await;
        rig.events([found("pump", vec![field("x", FieldType::Numeric, false)])])
            .await;
        let idx = rig.index("pump").expect("pump");
        let dev = rig.core.devices.get(idx);
        assert!(dev.field_index("speed").is_some() && dev.field_index("x").is_none());
        assert_eq!(rig.metric("discovery_ignored_total"), 1.0);
        assert_eq!(rig.metric("discovered_devices"), 0.0);
        // Withdrawing it does not remove the configured device.
        rig.events([AdapterEvent::DeviceGone {
            device: DeviceId::new("pump").expect("id"),
        }])
        .await;
        assert!(rig.index("pump").is_some());
    }

    #[tokio::test]
    async fn readings_before_the_announcement_are_held_until_it() {
        let mut rig = Rig::new().await;
        rig.events([reading("lamp", "brightness", Value::Int(12))])
            .await;
        rig.events([lamp()]).await;
        assert_eq!(rig.value("lamp", 1), Some(Value::Int(12)));
    }

    #[tokio::test]
    async fn a_storm_of_announcements_is_taken_in_one_turn_and_others_still_read() {
        const STORM: usize = 2_000;
        let mut rig = Rig::new().await;
        let mut evs: Vec<AdapterEvent> = (0..STORM)
            .map(|i| {
                found(
                    &format!("sensor-{i}"),
                    vec![field("t", FieldType::Numeric, false)],
                )
            })
            .collect();
        evs.push(reading("greenhouse", "temperature", Value::Float(19.5)));
        rig.events(evs).await;
        assert_eq!(rig.core.devices.len(), 3 + STORM);
        assert_eq!(rig.metric("discovered_devices"), STORM as f64);
        assert_eq!(rig.core.stats.devices().len(), 3 + STORM);
        assert_eq!(rig.value("greenhouse", 0), Some(Value::Float(19.5)));
        // Half of them leave in one turn: one renumbering, the rest keep answering.
        rig.events((0..STORM).step_by(2).map(|i| AdapterEvent::DeviceGone {
            device: DeviceId::new(&format!("sensor-{i}")).expect("id"),
        }))
        .await;
        assert_eq!(rig.core.devices.len(), 3 + STORM / 2);
        assert_eq!(rig.core.presence.devices(), rig.core.devices.len());
        assert_eq!(rig.core.device_stats.len(), rig.core.devices.len());
        assert_eq!(rig.metric("discovered_devices"), (STORM / 2) as f64);
        let items = rig.disco_items().await;
        assert!(items.contains("sensor-1@") && !items.contains("sensor-0@"));
    }

    #[tokio::test]
    async fn a_reload_keeps_discovered_devices_unless_configured_or_their_adapter_left() {
        let mut rig = Rig::new().await;
        rig.events([lamp(), reading("lamp", "brightness", Value::Int(40))])
            .await;
        let config = rig.core.config.clone();
        let requests = rig.core.requests.clone();
        rig.core
            .reload(config.clone(), requests.clone(), &Restarted::none());
        assert_eq!(rig.value("lamp", 1), Some(Value::Int(40)));
        // The adapter is gone from the configuration: so are its discovered devices.
        let mut without = (*config).clone();
        without.adapters.clear();
        without.devices.clear();
        without.alerts.clear();
        rig.core
            .reload(Arc::new(without), Vec::new(), &Restarted::none());
        assert!(rig.index("lamp").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn devices_a_restarted_adapter_does_not_report_again_leave_after_the_grace() {
        let mut rig = Rig::new().await;
        let fan = found("fan", vec![field("speed", FieldType::Integer, true)]);
        rig.events([lamp(), fan]).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        let restarted = Restarted {
            adapters: vec!["sim".into()],
            since: Instant::now(),
        };
        let (config, requests) = (rig.core.config.clone(), rig.core.requests.clone());
        rig.core.reload(config, requests, &restarted);
        // The new adapter reports the lamp again, not the fan.
        rig.events([lamp()]).await;
        tokio::time::advance(super::REDISCOVERY_GRACE / 2).await;
        rig.events([]).await;
        assert_eq!(rig.core.devices.len(), 5, "both wait for the grace");
        tokio::time::advance(super::REDISCOVERY_GRACE).await;
        rig.events([]).await;
        assert!(rig.index("lamp").is_some());
        assert!(rig.index("fan").is_none());
    }
}
