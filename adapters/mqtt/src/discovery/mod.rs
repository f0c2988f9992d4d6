//! Devices that describe themselves on the broker: Home Assistant MQTT discovery
//! ([`homeassistant`]) and zigbee2mqtt's device list ([`zigbee2mqtt`]).
//!
//! [`Discovery`] is a state machine without I/O that the bridge feeds every message it gets.
//! Announcements become [`entity::Entity`]s; entities are grouped into devices (Home
//! Assistant's `device.identifiers`, a zigbee2mqtt IEEE address) and each device gets an id made
//! of its name ([`naming`]). A burst of announcements (the retained configs at connect, a flood
//! of changes) is coalesced: a device is reported once announcements have been quiet for
//! [`QUIET`] (at most [`MAX_DELAY`] after the first), and only when what the core knows of it
//! changed. Then its state and availability topics are subscribed, its values read (through the
//! entity's Jinja templates, [`template`]) and its writes published.
//!
//! Limits: `discover_include`/`discover_exclude` (globs on the device id) and
//! `discover_max_devices`. A device whose id is configured on this adapter is left to the
//! configuration. Bad announcements, templates that fail and devices over the limits are
//! logged (once a minute per entity at WARN) and counted; nothing else is held up.

pub mod entity;
pub mod homeassistant;
pub mod listen;
pub mod naming;
pub mod pin;
pub mod template;
pub mod zigbee2mqtt;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use gateway_api::{
    AdapterEvent, DeviceId, DiscoveredDevice, FieldSpec, FieldType, Quality, Reading, RequestError,
    Value,
};
use globset::{Glob, GlobSet, GlobSetBuilder};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::payload::Command;
use crate::rate_limit::RateLimit;
use crate::stats::MqttStats;
use entity::{AvailabilityMode, AvailabilityTopic, Entity, EntityField, Read, Write};
use template::Templates;

/// A device is reported once its announcements have been quiet this long.
pub const QUIET: Duration = Duration::from_millis(500);
/// ... and at most this long after the first change, however busy the broker is.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// The default of `discover_max_devices`.
pub const DEFAULT_MAX_DEVICES: usize = 1000;
/// Entities kept per allowed device: announcements beyond `discover_max_devices` times this are
/// refused, so that a broker full of configs cannot fill the gateway's memory.
const ENTITIES_PER_DEVICE: usize = 64;
/// Rate limiters kept for bad announcements; beyond this many keys they start afresh (a broker
/// full of hostile topics cannot grow the map without end).
const MAX_LIMITERS: usize = 4096;

/// The `discovery*` and `discover_*` keys of an mqtt adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    pub homeassistant: bool,
    pub zigbee2mqtt: bool,
    /// `discovery_prefix`.
    pub prefix: String,
    /// `zigbee2mqtt_base`.
    pub base: String,
    /// Globs on the device id; empty: every device.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub max_devices: usize,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            homeassistant: false,
            zigbee2mqtt: false,
            prefix: "homeassistant".into(),
            base: "zigbee2mqtt".into(),
            include: Vec::new(),
            exclude: Vec::new(),
            max_devices: DEFAULT_MAX_DEVICES,
        }
    }
}

impl DiscoveryConfig {
    pub fn enabled(&self) -> bool {
        self.homeassistant || self.zigbee2mqtt
    }

    /// What discovery subscribes to from the start.
    pub fn filters(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.homeassistant {
            f.extend(homeassistant::filters(&self.prefix));
        }
        if self.zigbee2mqtt {
            f.push(zigbee2mqtt::devices_topic(&self.base));
        }
        f
    }
}

/// A set of globs, `None` when there are none.
pub fn glob_set(patterns: &[String]) -> Result<Option<GlobSet>, globset::Error> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p)?);
    }
    b.build().map(Some)
}

/// The broker link as discovered devices see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkView {
    /// Not known yet (connecting, or subscriptions not confirmed).
    Unknown,
    Down(String),
    Up,
}

/// What presence should say about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Online,
    Offline(String),
}

/// What the bridge passes on: events for the core and topics to subscribe.
#[derive(Debug, Default)]
pub struct Output {
    pub events: Vec<AdapterEvent>,
    pub subscribe: Vec<String>,
}

/// Why a device is not reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Excluded,
    OverCap,
    Configured,
}

/// One field of a reported device: where it comes from.
#[derive(Debug, Clone)]
struct Slot {
    entity: String,
    field: usize,
    name: Arc<str>,
}

#[derive(Debug, Default)]
struct Device {
    entities: BTreeSet<String>,
    /// The id it is reported under.
    id: Option<DeviceId>,
    reported: Option<DiscoveredDevice>,
    slots: Vec<Slot>,
    last: Vec<Option<Value>>,
    /// Availability topics (from its first entity that has any) with what each last said.
    avail: Vec<(AvailabilityTopic, Option<bool>, String)>,
    mode: AvailabilityMode,
    /// What the last availability message said, for `latest`.
    latest: Option<(bool, usize)>,
    status: Option<Status>,
    held: Option<Held>,
    /// When every entity of the device has an `expire_after`: the longest of them. A device
    /// none of whose values was renewed within it is offline, as Home Assistant shows its
    /// entities unavailable.
    expire_after: Option<Duration>,
    /// When its values will all have expired, counted from the last renewal of each.
    expires_at: Option<Instant>,
    expired: bool,
}

pub struct Discovery {
    adapter: Arc<str>,
    cfg: DiscoveryConfig,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    /// Ids of the adapter's configured devices.
    configured: HashSet<String>,
    templates: Templates,
    entities: HashMap<String, Entity>,
    devices: BTreeMap<String, Device>,
    names: naming::Names,
    by_id: HashMap<DeviceId, String>,
    /// Topic -> (device key, slot).
    state_routes: HashMap<String, Vec<(String, usize)>>,
    /// Topic -> (device key, availability index).
    avail_routes: HashMap<String, Vec<(String, usize)>>,
    subscribed: HashSet<String>,
    dirty: BTreeSet<String>,
    first_dirty: Option<Instant>,
    last_change: Option<Instant>,
    /// Entity keys of the last zigbee2mqtt devices document.
    z2m: BTreeSet<String>,
    limiters: HashMap<String, RateLimit>,
    link: LinkView,
    stats: Arc<MqttStats>,
    /// The earliest `expires_at` of a device not yet expired.
    next_expiry: Option<Instant>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("entities", &self.entities.len())
            .field("devices", &self.devices.len())
            .finish()
    }
}

/// A template's name in the environment: entity, field and use.
fn template_name(entity: &str, what: &str) -> String {
    format!("{entity}#{what}")
}

impl Discovery {
    /// `configured`: the ids of the adapter's configured devices (they win over discovered ones).
    /// The globs were checked with the configuration; one that fails here matches nothing.
    pub fn new(
        adapter: Arc<str>,
        cfg: DiscoveryConfig,
        configured: impl IntoIterator<Item = String>,
        stats: Arc<MqttStats>,
    ) -> Discovery {
        let include = glob_set(&cfg.include).unwrap_or_else(|e| {
            warn!(adapter = %adapter, error = %e, "discover_include does not compile");
            None
        });
        let exclude = glob_set(&cfg.exclude).unwrap_or_else(|e| {
            warn!(adapter = %adapter, error = %e, "discover_exclude does not compile");
            None
        });
        Discovery {
            adapter,
            cfg,
            include,
            exclude,
            configured: configured.into_iter().collect(),
            templates: Templates::new(),
            entities: HashMap::new(),
            devices: BTreeMap::new(),
            names: naming::Names::default(),
            by_id: HashMap::new(),
            state_routes: HashMap::new(),
            avail_routes: HashMap::new(),
            subscribed: HashSet::new(),
            dirty: BTreeSet::new(),
            first_dirty: None,
            last_change: None,
            z2m: BTreeSet::new(),
            limiters: HashMap::new(),
            link: LinkView::Unknown,
            stats,
            next_expiry: None,
        }
    }

    pub fn config(&self) -> &DiscoveryConfig {
        &self.cfg
    }

    /// Every topic discovery listens on now (for a fresh session).
    pub fn topics(&self) -> Vec<String> {
        let mut t = self.cfg.filters();
        let mut rest: Vec<String> = self.subscribed.iter().cloned().collect();
        rest.sort();
        t.extend(rest);
        t
    }

    /// Whether `id` is a device discovery reports.
    pub fn has(&self, id: &DeviceId) -> bool {
        self.by_id.contains_key(id)
    }

    /// When pending announcements are due to be reported, or a device's values expire.
    pub fn next_deadline(&self) -> Option<Instant> {
        let report = self.first_dirty.map(|first| {
            let last = self.last_change.unwrap_or(first);
            (last + QUIET).min(first + MAX_DELAY)
        });
        match (report, self.next_expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Logs a problem with an announcement or a device: WARN once a minute per `key`.
    fn problem(&mut self, key: &str, what: &str, reason: &str, now: Instant) {
        if self.limiters.len() >= MAX_LIMITERS && !self.limiters.contains_key(key) {
            self.limiters.clear();
        }
        let adapter = self.adapter.clone();
        match self.limiters.entry(key.to_owned()).or_default().allow(now) {
            Some(suppressed) => {
                warn!(adapter = %adapter, entity = %key, error = %reason, suppressed, "{what}")
            }
            None => debug!(adapter = %adapter, entity = %key, error = %reason, "{what}"),
        }
    }

    fn touch(&mut self, device: &str, now: Instant) {
        self.dirty.insert(device.to_owned());
        self.first_dirty.get_or_insert(now);
        self.last_change = Some(now);
    }

    /// A message from the broker. Returns whether discovery used it (an announcement, or a
    /// state or availability topic of a discovered device).
    pub fn on_message(
        &mut self,
        topic: &str,
        payload: &[u8],
        max_payload: usize,
        now: Instant,
        out: &mut Output,
    ) -> bool {
        if self.cfg.homeassistant {
            let prefix = self.cfg.prefix.clone();
            if let Some(t) = homeassistant::config_topic(&prefix, topic) {
                let key = t.key();
                if payload.len() > max_payload {
                    MqttStats::inc(&self.stats.discovery_bad_configs);
                    let why = format!("{} bytes exceed max_payload", payload.len());
                    self.problem(&key, "Discovery config refused", &why, now);
                    return true;
                }
                match homeassistant::parse(&t, payload) {
                    Ok(homeassistant::Config::Entity(e)) => self.put(e, now),
                    Ok(homeassistant::Config::Removed) => self.remove(&key, now),
                    Ok(homeassistant::Config::Unsupported) => {
                        debug!(adapter = %self.adapter, topic, "Discovery config of a component this gateway does not use");
                        self.remove(&key, now);
                    }
                    Err(why) => {
                        MqttStats::inc(&self.stats.discovery_bad_configs);
                        self.problem(
                            &key,
                            "Bad discovery config; the entity is skipped",
                            &why,
                            now,
                        );
                    }
                }
                return true;
            }
        }
        if self.cfg.zigbee2mqtt && topic == zigbee2mqtt::devices_topic(&self.cfg.base) {
            self.on_z2m_devices(payload, max_payload, now);
            return true;
        }
        let mut used = false;
        if let Some(routes) = self.state_routes.get(topic).cloned() {
            used = true;
            self.on_state(topic, &routes, payload, max_payload, now, out);
        }
        if let Some(routes) = self.avail_routes.get(topic).cloned() {
            used = true;
            for (dev, i) in routes {
                self.on_availability(&dev, i, payload, now);
            }
        }
        if used {
            self.statuses(out);
        }
        used
    }

    fn on_z2m_devices(&mut self, payload: &[u8], max_payload: usize, now: Instant) {
        let key = "zigbee2mqtt:bridge/devices";
        if payload.len() > max_payload {
            MqttStats::inc(&self.stats.discovery_bad_configs);
            let why = format!("{} bytes exceed max_payload", payload.len());
            self.problem(key, "zigbee2mqtt devices document refused", &why, now);
            return;
        }
        let base = self.cfg.base.clone();
        let doc = match zigbee2mqtt::parse(&base, payload) {
            Ok(d) => d,
            Err(why) => {
                MqttStats::inc(&self.stats.discovery_bad_configs);
                self.problem(key, "Bad zigbee2mqtt devices document", &why, now);
                return;
            }
        };
        for (who, why) in &doc.problems {
            MqttStats::inc(&self.stats.discovery_bad_configs);
            let k = format!("zigbee2mqtt:{who}");
            self.problem(&k, "zigbee2mqtt device skipped", why, now);
        }
        // The new document replaces the old: devices not in it are gone.
        let keys: BTreeSet<String> = doc.entities.iter().map(|e| e.key.clone()).collect();
        for gone in self.z2m.difference(&keys).cloned().collect::<Vec<_>>() {
            self.remove(&gone, now);
        }
        self.z2m = keys;
        for e in doc.entities {
            self.put(e, now);
        }
    }

    /// Compiles an entity's templates under its names; the first error refuses it.
    fn compile(&mut self, e: &Entity) -> Result<(), String> {
        for (i, f) in e.fields.iter().enumerate() {
            if let Read::Template(src) = &f.read {
                self.templates
                    .add(&template_name(&e.key, &format!("{i}r")), src)
                    .map_err(|err| format!("value template of `{}`: {err}", f.name))?;
            }
            if let Write::Template(src) = &f.write {
                self.templates
                    .add(&template_name(&e.key, &format!("{i}w")), src)
                    .map_err(|err| format!("command template of `{}`: {err}", f.name))?;
            }
        }
        for (j, a) in e.availability.topics.iter().enumerate() {
            if let Some(src) = &a.template {
                self.templates
                    .add(&template_name(&e.key, &format!("a{j}")), src)
                    .map_err(|err| format!("availability template: {err}"))?;
            }
        }
        Ok(())
    }

    fn forget_templates(&mut self, e: &Entity) {
        for i in 0..e.fields.len() {
            self.templates
                .remove(&template_name(&e.key, &format!("{i}r")));
            self.templates
                .remove(&template_name(&e.key, &format!("{i}w")));
        }
        for j in 0..e.availability.topics.len() {
            self.templates
                .remove(&template_name(&e.key, &format!("a{j}")));
        }
    }

    /// An entity announced (again).
    fn put(&mut self, e: Entity, now: Instant) {
        if self.entities.get(&e.key) == Some(&e) {
            return;
        }
        let cap = self
            .cfg
            .max_devices
            .max(1)
            .saturating_mul(ENTITIES_PER_DEVICE);
        if !self.entities.contains_key(&e.key) && self.entities.len() >= cap {
            MqttStats::inc(&self.stats.discovery_skipped);
            let why = format!("{cap} announced entities are kept at most");
            self.problem(&e.key, "Discovery announcement left out", &why, now);
            return;
        }
        if let Some(old) = self.entities.get(&e.key).cloned() {
            self.forget_templates(&old);
        }
        if let Err(why) = self.compile(&e) {
            self.forget_templates(&e);
            MqttStats::inc(&self.stats.discovery_template_errors);
            let key = e.key.clone();
            self.problem(
                &key,
                "Discovery template does not compile; the entity is skipped",
                &why,
                now,
            );
            // What was there before is gone with its templates.
            self.remove(&key, now);
            return;
        }
        MqttStats::inc(&self.stats.discovery_configs);
        if let Some(old) = self.entities.remove(&e.key) {
            if old.device.key != e.device.key {
                if let Some(d) = self.devices.get_mut(&old.device.key) {
                    d.entities.remove(&e.key);
                }
                self.touch(&old.device.key, now);
            }
        }
        let dev = e.device.key.clone();
        self.devices
            .entry(dev.clone())
            .or_default()
            .entities
            .insert(e.key.clone());
        self.entities.insert(e.key.clone(), e);
        self.touch(&dev, now);
    }

    /// An entity withdrawn.
    fn remove(&mut self, key: &str, now: Instant) {
        let Some(e) = self.entities.remove(key) else {
            return;
        };
        self.forget_templates(&e);
        if let Some(d) = self.devices.get_mut(&e.device.key) {
            d.entities.remove(key);
        }
        self.touch(&e.device.key, now);
    }

    /// Reports what changed once announcements have been quiet.
    pub fn on_tick(&mut self, now: Instant, out: &mut Output) {
        if self.next_expiry.is_some_and(|at| now >= at) {
            self.expire(now, out);
        }
        if self.next_deadline().is_some_and(|d| now >= d) {
            self.flush(out);
        }
    }

    /// Marks the devices whose values all expired, and says so in their presence.
    fn expire(&mut self, now: Instant, out: &mut Output) {
        let mut next = None;
        let mut changed = false;
        for d in self.devices.values_mut() {
            let Some(at) = d.expires_at.filter(|_| !d.expired) else {
                continue;
            };
            if at <= now {
                d.expired = true;
                changed = true;
            } else {
                next = Some(next.map_or(at, |n: Instant| n.min(at)));
            }
        }
        self.next_expiry = next;
        if changed {
            self.statuses(out);
        }
    }

    /// Device `key`'s values were renewed at `now`; true if that ends its expiry.
    fn renew(&mut self, key: &str, now: Instant) -> bool {
        let Some(d) = self.devices.get_mut(key) else {
            return false;
        };
        let Some(after) = d.expire_after else {
            return false;
        };
        let at = now + after;
        d.expires_at = Some(d.expires_at.map_or(at, |old| old.max(at)));
        self.next_expiry = Some(self.next_expiry.map_or(at, |n| n.min(at)));
        std::mem::take(&mut d.expired)
    }

    /// Reports every pending device now.
    pub fn flush(&mut self, out: &mut Output) {
        self.first_dirty = None;
        self.last_change = None;
        let dirty = std::mem::take(&mut self.dirty);
        let mut freed = false;
        for key in &dirty {
            freed |= self.report(key, out);
        }
        // A device left: one held back by the cap may have room now.
        if freed {
            let waiting: Vec<String> = self
                .devices
                .iter()
                .filter(|(_, d)| d.held == Some(Held::OverCap))
                .map(|(k, _)| k.clone())
                .collect();
            for key in waiting {
                self.report(&key, out);
            }
        }
        self.rebuild_routes(out);
        self.statuses(out);
        // One line per settled burst rather than one per device (a broker may hold thousands).
        let now = self.by_id.len() as u64;
        if now != MqttStats::get(&self.stats.discovery_devices) {
            info!(adapter = %self.adapter, devices = now, "Discovered devices");
        }
        MqttStats::set(&self.stats.discovery_devices, now);
    }

    /// Says goodbye for a reported device (it stays known, unreported).
    fn unreport(&mut self, key: &str, out: &mut Output) {
        let Some(d) = self.devices.get_mut(key) else {
            return;
        };
        if let Some(id) = d.id.take() {
            self.by_id.remove(&id);
            debug!(adapter = %self.adapter, device = %id, "Discovered device gone");
            out.events.push(AdapterEvent::DeviceGone { device: id });
        }
        d.reported = None;
        d.status = None;
        self.names.release(key);
    }

    /// Reports device `key` as it is now; returns whether a reported device left.
    fn report(&mut self, key: &str, out: &mut Output) -> bool {
        let Some(d) = self.devices.get(key) else {
            return false;
        };
        if d.entities.is_empty() {
            let was = d.id.is_some();
            self.unreport(key, out);
            self.devices.remove(key);
            return was;
        }
        let entities: Vec<&Entity> = d
            .entities
            .iter()
            .filter_map(|k| self.entities.get(k))
            .collect();
        let Some(first) = entities.first() else {
            return false;
        };
        let info = first.device.clone();
        let source = first.source;
        let base = naming::device_slug(&info.name)
            .or_else(|| naming::device_slug(key))
            .unwrap_or_else(|| "device".into());
        // Fields in entity order; a name two entities share gets `-2`.
        let mut slots: Vec<Slot> = Vec::new();
        let mut specs: Vec<FieldSpec> = Vec::new();
        for e in &entities {
            for (i, f) in e.fields.iter().enumerate() {
                let mut name = f.name.clone();
                let mut n = 2;
                while specs.iter().any(|s| *s.name == *name) {
                    name = format!("{}-{n}", f.name);
                    n += 1;
                }
                let name: Arc<str> = name.into();
                specs.push(FieldSpec {
                    name: name.clone(),
                    unit: f.unit.as_str().into(),
                    kind: f.kind,
                    writable: f.writable(),
                });
                slots.push(Slot {
                    entity: e.key.clone(),
                    field: i,
                    name,
                });
            }
        }
        let avail = entities
            .iter()
            .find(|e| !e.availability.topics.is_empty())
            .map(|e| e.availability.clone())
            .unwrap_or_default();
        let expire_after = entities
            .iter()
            .map(|e| e.expire_after)
            .collect::<Option<Vec<Duration>>>()
            .and_then(|all| all.into_iter().max());

        let held = if self.configured.contains(&base) {
            Some(Held::Configured)
        } else if !self.included(&base) {
            Some(Held::Excluded)
        } else if d.id.is_none() && self.by_id.len() >= self.cfg.max_devices {
            Some(Held::OverCap)
        } else {
            None
        };
        let was_held = d.held;
        let was_reported = d.id.is_some();
        if let Some(h) = held {
            if was_held != Some(h) {
                MqttStats::inc(&self.stats.discovery_skipped);
                let (what, why) = match h {
                    Held::Configured => ("Discovered device left to the configuration", format!("a device `{base}` is configured on this adapter")),
                    Held::Excluded => ("Discovered device excluded", format!("`{base}` is not matched by discover_include or is matched by discover_exclude")),
                    Held::OverCap => ("Discovered device over the limit", format!("discover_max_devices is {}", self.cfg.max_devices)),
                };
                self.problem(key, what, &why, Instant::now());
            }
            self.unreport(key, out);
            if let Some(d) = self.devices.get_mut(key) {
                d.held = Some(h);
            }
            return was_reported;
        }

        let configured = &self.configured;
        let assigned = self.names.assign(key, &base, &|id| configured.contains(id));
        if assigned.collided {
            warn!(adapter = %self.adapter, device = %assigned.id, wanted = %base, "Two discovered devices want the same id; this one gets a number");
        }
        let Ok(id) = DeviceId::new(&assigned.id) else {
            // Slugs are valid localparts; nothing to report if one is not.
            return false;
        };
        let spec = DiscoveredDevice {
            id: id.clone(),
            adapter: self.adapter.clone(),
            name: info.name.clone(),
            fields: specs,
            source: source.as_str().into(),
            manufacturer: info.manufacturer.clone(),
            model: info.model.clone(),
        };
        let Some(d) = self.devices.get_mut(key) else {
            return false;
        };
        d.held = None;
        if let Some(old) = d.id.clone().filter(|old| *old != id) {
            // Renamed: the old id says goodbye.
            self.by_id.remove(&old);
            out.events.push(AdapterEvent::DeviceGone { device: old });
            d.reported = None;
            d.status = None;
        }
        // Values of fields that stay are kept.
        let mut last = vec![None; slots.len()];
        for (i, s) in slots.iter().enumerate() {
            if let Some(j) = d.slots.iter().position(|o| o.name == s.name) {
                last[i] = d.last.get(j).cloned().flatten();
            }
        }
        d.slots = slots;
        d.last = last;
        let avail_same = d.avail.len() == avail.topics.len()
            && d.avail.iter().zip(&avail.topics).all(|(a, b)| a.0 == *b);
        if !avail_same {
            d.avail = avail
                .topics
                .into_iter()
                .map(|t| (t, None, String::new()))
                .collect();
            d.latest = None;
        }
        d.mode = avail.mode;
        if d.expire_after != expire_after {
            d.expire_after = expire_after;
            d.expires_at = None;
            d.expired = false;
        }
        d.id = Some(id.clone());
        self.by_id.insert(id.clone(), key.to_owned());
        if d.reported.as_ref() != Some(&spec) {
            debug!(adapter = %self.adapter, device = %id, source = source.as_str(), fields = spec.fields.len(), "Discovered device");
            d.reported = Some(spec.clone());
            out.events.push(AdapterEvent::DeviceFound(spec));
            let known: Vec<Reading> = d
                .slots
                .iter()
                .zip(&d.last)
                .filter_map(|(s, v)| Some(Reading::now(id.clone(), s.name.clone(), v.clone()?)))
                .collect();
            if !known.is_empty() {
                out.events.push(AdapterEvent::Readings(known));
            }
            // Presence is said again after a (re)announcement.
            d.status = None;
        }
        false
    }

    fn included(&self, id: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(id))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(id))
    }

    fn rebuild_routes(&mut self, out: &mut Output) {
        self.state_routes.clear();
        self.avail_routes.clear();
        for (key, d) in &self.devices {
            if d.id.is_none() {
                continue;
            }
            for (i, s) in d.slots.iter().enumerate() {
                let topic = self
                    .entities
                    .get(&s.entity)
                    .and_then(|e| e.fields.get(s.field))
                    .and_then(|f| f.state_topic.clone());
                if let Some(t) = topic {
                    self.state_routes
                        .entry(t)
                        .or_default()
                        .push((key.clone(), i));
                }
            }
            for (j, (a, _, _)) in d.avail.iter().enumerate() {
                self.avail_routes
                    .entry(a.topic.clone())
                    .or_default()
                    .push((key.clone(), j));
            }
        }
        let mut new: Vec<String> = self
            .state_routes
            .keys()
            .chain(self.avail_routes.keys())
            .filter(|t| !self.subscribed.contains(*t))
            .cloned()
            .collect();
        new.sort();
        new.dedup();
        self.subscribed.extend(new.iter().cloned());
        out.subscribe.extend(new);
    }

    fn field(&self, s: &Slot) -> Option<&EntityField> {
        self.entities.get(&s.entity)?.fields.get(s.field)
    }

    fn on_state(
        &mut self,
        topic: &str,
        routes: &[(String, usize)],
        payload: &[u8],
        max_payload: usize,
        now: Instant,
        out: &mut Output,
    ) {
        if payload.len() > max_payload {
            MqttStats::inc(&self.stats.bad_payloads);
            let why = format!("{} bytes exceed max_payload", payload.len());
            self.problem(topic, "Bad MQTT payload", &why, now);
            return;
        }
        let text = String::from_utf8_lossy(payload);
        let json: Option<serde_json::Value> = serde_json::from_slice(payload).ok();
        let timestamp = Utc::now();
        let mut batches: Vec<(String, Vec<Reading>)> = Vec::new();
        let mut problems: Vec<(String, String, bool)> = Vec::new();
        for (dev, i) in routes {
            let Some(d) = self.devices.get(dev) else {
                continue;
            };
            let (Some(id), Some(slot)) = (d.id.clone(), d.slots.get(*i)) else {
                continue;
            };
            let Some(f) = self.field(slot) else { continue };
            let result = match &f.read {
                Read::Payload => f.value_of_text(&text),
                Read::Template(_) => {
                    let name = template_name(&slot.entity, &format!("{}r", slot.field));
                    match self.templates.render_payload(&name, &text) {
                        Ok(t) => f.value_of_text(&t),
                        Err(e) => {
                            problems.push((
                                slot.entity.clone(),
                                format!("value template of `{}`: {e}", slot.name),
                                true,
                            ));
                            continue;
                        }
                    }
                }
                Read::JsonKey(k) => match json.as_ref() {
                    // zigbee2mqtt may publish only some keys.
                    Some(serde_json::Value::Object(o)) => match o.get(k) {
                        Some(v) => f.value_of_json(v),
                        None => continue,
                    },
                    _ => Err("the payload is not a JSON object".to_owned()),
                },
            };
            match result {
                Ok(Some(value)) => {
                    let reading = Reading {
                        device: id,
                        field: slot.name.clone(),
                        value,
                        timestamp,
                        quality: Quality::Good,
                    };
                    match batches.iter_mut().find(|(k, _)| k == dev) {
                        Some((_, b)) => b.push(reading),
                        None => batches.push((dev.clone(), vec![reading])),
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    problems.push((slot.entity.clone(), format!("`{}`: {e}", slot.name), false))
                }
            }
        }
        for (entity, why, template) in problems {
            if template {
                MqttStats::inc(&self.stats.discovery_template_errors);
            } else {
                MqttStats::inc(&self.stats.bad_payloads);
            }
            self.problem(
                &entity,
                "Discovered device: value not read; the field keeps its last value",
                &why,
                now,
            );
        }
        let mut back = false;
        for (dev, readings) in batches {
            if let Some(d) = self.devices.get_mut(&dev) {
                for r in &readings {
                    if let Some(j) = d.slots.iter().position(|s| s.name == r.field) {
                        d.last[j] = Some(r.value.clone());
                    }
                }
            }
            back |= self.renew(&dev, now);
            MqttStats::add(&self.stats.readings, readings.len() as u64);
            out.events.push(AdapterEvent::Readings(readings));
        }
        if back {
            self.statuses(out);
        }
    }

    fn on_availability(&mut self, dev: &str, i: usize, payload: &[u8], now: Instant) {
        let Some(d) = self.devices.get(dev) else {
            return;
        };
        let Some((a, _, _)) = d.avail.get(i) else {
            return;
        };
        let text = String::from_utf8_lossy(payload).trim().to_owned();
        let said = match &a.template {
            Some(_) => {
                let name = d.slots.iter().map(|s| s.entity.clone()).find_map(|k| {
                    let e = self.entities.get(&k)?;
                    let j = e.availability.topics.iter().position(|t| t == a)?;
                    Some(template_name(&k, &format!("a{j}")))
                });
                match name.map(|n| self.templates.render_payload(&n, &text)) {
                    Some(Ok(t)) => t,
                    Some(Err(e)) => {
                        MqttStats::inc(&self.stats.discovery_template_errors);
                        self.problem(dev, "Availability template failed", &e.to_string(), now);
                        return;
                    }
                    None => text.clone(),
                }
            }
            None => text.clone(),
        };
        // zigbee2mqtt's `{"state":"online"}` as well as the plain payloads.
        let said = serde_json::from_str::<serde_json::Value>(&said)
            .ok()
            .and_then(|j| j.get("state").and_then(|s| s.as_str()).map(str::to_owned))
            .unwrap_or(said);
        let online = if said == a.online {
            true
        } else if said == a.offline {
            false
        } else {
            // Another device's word on a shared topic, or noise: not this device's business.
            debug!(adapter = %self.adapter, device = dev, payload = %entity::short(&said), "Availability payload neither online nor offline");
            return;
        };
        if let Some(d) = self.devices.get_mut(dev) {
            if let Some(slot) = d.avail.get_mut(i) {
                slot.1 = Some(online);
                slot.2 = said;
            }
            d.latest = Some((online, i));
        }
    }

    /// The link changed: every reported device's presence may have.
    pub fn set_link(&mut self, link: LinkView, out: &mut Output) {
        self.link = link;
        self.statuses(out);
    }

    fn status_of(&self, d: &Device) -> Option<Status> {
        match &self.link {
            LinkView::Unknown => return None,
            LinkView::Down(reason) => return Some(Status::Offline(reason.clone())),
            LinkView::Up => {}
        }
        let status = self.availability_of(d);
        match (status, d.expire_after) {
            (Status::Online, Some(after)) if d.expired => Some(Status::Offline(format!(
                "no new value for {}s (expire_after)",
                after.as_secs()
            ))),
            (status, _) => Some(status),
        }
    }

    /// What the device's availability topics say (online when it has none).
    fn availability_of(&self, d: &Device) -> Status {
        if d.avail.is_empty() {
            return Status::Online;
        }
        let offline = |(a, _, said): &(AvailabilityTopic, Option<bool>, String)| {
            Status::Offline(format!("{} says {}", a.topic, entity::short(said)))
        };
        let silent = |a: &AvailabilityTopic| Status::Offline(format!("no word yet on {}", a.topic));
        match d.mode {
            AvailabilityMode::Latest => match d.latest {
                Some((true, _)) => Status::Online,
                Some((false, i)) => offline(&d.avail[i]),
                None => silent(&d.avail[0].0),
            },
            AvailabilityMode::All => {
                if let Some(a) = d.avail.iter().find(|a| a.1 == Some(false)) {
                    offline(a)
                } else if let Some(a) = d.avail.iter().find(|a| a.1.is_none()) {
                    silent(&a.0)
                } else {
                    Status::Online
                }
            }
            AvailabilityMode::Any => {
                if d.avail.iter().any(|a| a.1 == Some(true)) {
                    Status::Online
                } else if let Some(a) = d.avail.iter().find(|a| a.1 == Some(false)) {
                    offline(a)
                } else {
                    silent(&d.avail[0].0)
                }
            }
        }
    }

    /// Presence events for reported devices whose status changed.
    fn statuses(&mut self, out: &mut Output) {
        let keys: Vec<String> = self
            .devices
            .iter()
            .filter(|(_, d)| d.id.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let Some(d) = self.devices.get(&key) else {
                continue;
            };
            let Some(now) = self.status_of(d) else {
                continue;
            };
            if d.status.as_ref() == Some(&now) {
                continue;
            }
            let Some(device) = d.id.clone() else { continue };
            out.events.push(match &now {
                Status::Online => AdapterEvent::Online { device },
                Status::Offline(reason) => AdapterEvent::Offline {
                    device,
                    reason: reason.clone(),
                },
            });
            if let Some(d) = self.devices.get_mut(&key) {
                d.status = Some(now);
            }
        }
    }

    fn device_of(&self, id: &DeviceId) -> Result<&Device, RequestError> {
        self.by_id
            .get(id)
            .and_then(|k| self.devices.get(k))
            .ok_or_else(|| RequestError::Refused(format!("no device {id} on this adapter")))
    }

    fn reachable(&self, d: &Device) -> Result<(), RequestError> {
        match self.status_of(d) {
            Some(Status::Offline(reason)) => Err(RequestError::Unreachable(reason)),
            Some(Status::Online) => Ok(()),
            None => Err(RequestError::Unreachable(
                "not connected to the MQTT broker yet".into(),
            )),
        }
    }

    /// The last values of a discovered device (MQTT devices cannot be polled).
    pub fn read(&self, id: &DeviceId, fields: &[Arc<str>]) -> Result<Vec<Reading>, RequestError> {
        let d = self.device_of(id)?;
        let wanted: Vec<usize> = if fields.is_empty() {
            (0..d.slots.len()).collect()
        } else {
            fields
                .iter()
                .map(|n| {
                    d.slots
                        .iter()
                        .position(|s| s.name == *n)
                        .ok_or_else(|| RequestError::UnknownField(n.to_string()))
                })
                .collect::<Result<_, _>>()?
        };
        self.reachable(d)?;
        Ok(wanted
            .into_iter()
            .filter_map(|i| {
                Some(Reading::now(
                    id.clone(),
                    d.slots[i].name.clone(),
                    d.last[i].clone()?,
                ))
            })
            .collect())
    }

    /// The commands a write to a discovered device publishes, and the readings it answers
    /// with once the broker took them. Everything is checked before anything is sent.
    pub fn write(
        &mut self,
        id: &DeviceId,
        values: Vec<(Arc<str>, Value)>,
    ) -> Result<(Vec<Command>, Vec<Reading>), RequestError> {
        let d = self.device_of(id)?;
        let mut checked: Vec<(usize, Value)> = Vec::new();
        for (name, value) in values {
            let i = d
                .slots
                .iter()
                .position(|s| s.name == name)
                .ok_or_else(|| RequestError::UnknownField(name.to_string()))?;
            let f = self
                .field(&d.slots[i])
                .ok_or_else(|| RequestError::UnknownField(name.to_string()))?;
            if !f.writable() {
                return Err(RequestError::NotWritable(name.to_string()));
            }
            let value = f
                .check_write(value)
                .map_err(|reason| RequestError::OutOfRange {
                    field: name.to_string(),
                    reason,
                })?;
            match checked.iter_mut().find(|(j, _)| *j == i) {
                Some(slot) => slot.1 = value,
                None => checked.push((i, value)),
            }
        }
        self.reachable(d)?;
        let mut commands = Vec::with_capacity(checked.len());
        for (i, value) in &checked {
            let slot = &d.slots[*i];
            let Some(f) = self.field(slot) else { continue };
            let Some(topic) = f.command_topic.clone() else {
                continue;
            };
            let payload = match &f.write {
                Write::Payload => f.payload_text(value),
                Write::Template(_) => {
                    let name = template_name(&slot.entity, &format!("{}w", slot.field));
                    let v = template_value(f, value);
                    self.templates.render_command(&name, v).map_err(|e| {
                        MqttStats::inc(&self.stats.discovery_template_errors);
                        RequestError::Refused(format!("the command template failed: {e}"))
                    })?
                }
                Write::JsonKey { key, extra } => {
                    let mut s = String::from("{");
                    for (k, v) in extra {
                        s.push_str(&serde_json::Value::String(k.clone()).to_string());
                        s.push(':');
                        s.push_str(&serde_json::Value::String(v.clone()).to_string());
                        s.push(',');
                    }
                    s.push_str(&serde_json::Value::String(key.clone()).to_string());
                    s.push(':');
                    s.push_str(&entity::json_of(f, value).to_string());
                    s.push('}');
                    s
                }
            };
            commands.push(Command {
                topic,
                payload: payload.into_bytes(),
            });
        }
        let readings = checked
            .iter()
            .map(|(i, v)| Reading::now(id.clone(), d.slots[*i].name.clone(), v.clone()))
            .collect();
        if let Some(key) = self.by_id.get(id).cloned() {
            if let Some(d) = self.devices.get_mut(&key) {
                for (i, v) in checked {
                    d.last[i] = Some(v);
                }
            }
        }
        Ok((commands, readings))
    }

    /// The reported devices with the entities they are made of, for `discover`.
    pub fn snapshot(&self) -> Vec<(DiscoveredDevice, Vec<Entity>)> {
        self.devices
            .values()
            .filter_map(|d| {
                let spec = d.reported.clone()?;
                let entities = d
                    .entities
                    .iter()
                    .filter_map(|k| self.entities.get(k).cloned())
                    .collect();
                Some((spec, entities))
            })
            .collect()
    }
}

/// What a command template gets as `value`: a boolean's on/off payload (as Home Assistant passes
/// a switch's `payload_on`), a whole number as an integer, text as text.
fn template_value(f: &EntityField, v: &Value) -> minijinja::Value {
    match v {
        Value::Bool(_) => minijinja::Value::from(f.payload_text(v)),
        Value::Int(i) => minijinja::Value::from(*i),
        Value::Float(x) if x.fract() == 0.0 && x.abs() < 9.0e15 && f.kind != FieldType::String => {
            minijinja::Value::from(*x as i64)
        }
        Value::Float(x) => minijinja::Value::from(*x),
        Value::Text(t) => minijinja::Value::from(t.clone()),
    }
}

#[cfg(test)]
mod tests;
