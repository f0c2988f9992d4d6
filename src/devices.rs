//! The devices the gateway hosts and what it currently knows about each.
//!
//! Owned by the core task alone (no locks): readings update it, XMPP handlers read it.

use std::collections::HashMap;
use tokio::time::Instant;

use chrono::{DateTime, Utc};
use gateway_api::{DeviceId, FieldSpec, Quality, Reading, Value};
use xmpp_parsers::jid::Jid;

use crate::access::{self, Permission};
use crate::config::{AccessConfig, Config, DeviceConfig};

/// The latest value of one field.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub value: Value,
    pub timestamp: DateTime<Utc>,
    pub quality: Quality,
}

#[derive(Debug)]
pub struct Device {
    pub config: DeviceConfig,
    /// The device's own address as configured: bare in component mode (`id@domain`), full in
    /// client mode on a shared account (`gateway@example.org/id`).
    pub jid: Jid,
    /// Latest values, indexed like `config.fields`.
    pub values: Vec<Option<Sample>>,
    /// The values subscribers were last told (deadbands are measured from these).
    pub published: Vec<Option<Value>>,
    /// Whether its adapter reaches it; `None` until the adapter said either way.
    pub online: Option<bool>,
    pub offline_reason: Option<String>,
    /// A change that subscribers have not been told about yet (waiting for `min_interval`).
    pub presence_dirty: bool,
    /// Values changed since the last publication (push, PubSub and room get them).
    pub values_dirty: bool,
    /// No presence update before this instant (`min_interval` after the last one).
    pub quiet_until: Option<Instant>,
    /// Client mode: no presence update for a value change before this instant (the core's
    /// `CLIENT_PRESENCE_INTERVAL` after the last one).
    pub presence_quiet_until: Option<Instant>,
    /// A timer is pending for this device in the core's delay queue.
    pub timer_pending: bool,
}

impl Device {
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.config
            .fields
            .iter()
            .position(|f| &*f.spec.name == name)
    }

    pub fn specs(&self) -> impl Iterator<Item = &FieldSpec> {
        self.config.fields.iter().map(|f| &f.spec)
    }

    pub fn is_online(&self) -> bool {
        self.online == Some(true)
    }

    pub fn has_writable_fields(&self) -> bool {
        self.config.fields.iter().any(|f| f.spec.writable)
    }

    /// The latest value of every field that has one, as readings (configured order).
    pub fn readings(&self) -> Vec<Reading> {
        self.config
            .fields
            .iter()
            .zip(&self.values)
            .filter_map(|(f, s)| {
                let s = s.as_ref()?;
                Some(Reading {
                    device: self.config.id.clone(),
                    field: f.spec.name.clone(),
                    value: s.value.clone(),
                    timestamp: s.timestamp,
                    quality: s.quality,
                })
            })
            .collect()
    }

    /// Field specs paired with their current values, in configured order.
    pub fn current(&self) -> Vec<(&FieldSpec, Option<&Value>)> {
        self.config
            .fields
            .iter()
            .zip(&self.values)
            .map(|(f, s)| (&f.spec, s.as_ref().map(|s| &s.value)))
            .collect()
    }
}

/// All devices, addressable by index, id and JID.
#[derive(Debug, Default)]
pub struct Devices {
    list: Vec<Device>,
    by_id: HashMap<DeviceId, usize>,
    by_jid: HashMap<Jid, usize>,
    /// The gateway-wide lists, for devices without their own.
    access: AccessConfig,
}

/// What a reading changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Unknown device or field: nothing stored.
    Ignored,
    /// Stored; the value is the same as before (or within the deadband).
    Unchanged,
    /// Stored and worth telling subscribers.
    Changed,
}

/// Keeps the entries of `v` whose `map` entry is `Some`, in order (`map` as from
/// [`Devices::retain`]): for what is kept per device index beside the table.
pub fn retain_mapped<T>(v: &mut Vec<T>, map: &[Option<usize>]) {
    let old = std::mem::take(v);
    *v = old
        .into_iter()
        .zip(map)
        .filter_map(|(x, m)| m.map(|_| x))
        .collect();
}

impl Devices {
    pub fn from_config(config: &Config) -> Result<Devices, String> {
        let mut devices = Devices {
            access: config.access.clone(),
            ..Default::default()
        };
        for d in &config.devices {
            let jid = Jid::new(&d.jid)
                .map_err(|e| format!("device {}: JID {:?} is not valid: {e}", d.id, d.jid))?;
            devices.push(d.clone(), jid);
        }
        Ok(devices)
    }

    /// Adds a device after the others (its index is the old length; no other index changes).
    pub fn push(&mut self, config: DeviceConfig, jid: Jid) -> usize {
        let idx = self.list.len();
        self.by_id.insert(config.id.clone(), idx);
        self.by_jid.insert(jid.clone(), idx);
        self.list.push(Device {
            values: vec![None; config.fields.len()],
            published: vec![None; config.fields.len()],
            config,
            jid,
            online: None,
            offline_reason: None,
            presence_dirty: false,
            values_dirty: false,
            quiet_until: None,
            presence_quiet_until: None,
            timer_pending: false,
        });
        idx
    }

    /// Gives device `idx` a new description under the same id and JID: values of fields that
    /// stay are kept (by name), new fields start empty.
    pub fn replace(&mut self, idx: usize, config: DeviceConfig) {
        let dev = &mut self.list[idx];
        let mut values = vec![None; config.fields.len()];
        let mut published = vec![None; config.fields.len()];
        for (fi, f) in config.fields.iter().enumerate() {
            if let Some(old) = dev.field_index(&f.spec.name) {
                values[fi] = dev.values[old].take();
                published[fi] = dev.published[old].take();
            }
        }
        dev.config = config;
        dev.values = values;
        dev.published = published;
    }

    /// Keeps the devices whose `keep` entry is true, in order, and renumbers them. Returns each
    /// old index's new one (`None`: removed). Work in proportion to the table: callers batch.
    pub fn retain(&mut self, keep: &[bool]) -> Vec<Option<usize>> {
        let mut map = Vec::with_capacity(self.list.len());
        let mut next = 0;
        for k in keep
            .iter()
            .copied()
            .chain(std::iter::repeat(true))
            .take(self.list.len())
        {
            map.push(k.then(|| {
                next += 1;
                next - 1
            }));
        }
        let old = std::mem::take(&mut self.list);
        self.list = old
            .into_iter()
            .zip(&map)
            .filter_map(|(d, m)| m.map(|_| d))
            .collect();
        self.by_id = self
            .list
            .iter()
            .enumerate()
            .map(|(i, d)| (d.config.id.clone(), i))
            .collect();
        self.by_jid = self
            .list
            .iter()
            .enumerate()
            .map(|(i, d)| (d.jid.clone(), i))
            .collect();
        map
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn get(&self, idx: usize) -> &Device {
        &self.list[idx]
    }

    pub fn get_mut(&mut self, idx: usize) -> &mut Device {
        &mut self.list[idx]
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &Device)> {
        self.list.iter().enumerate()
    }

    pub fn index_of(&self, id: &DeviceId) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// The device a stanza addressed to `to` is for: the exact JID first, then its bare form
    /// (a component device is addressed as `id@domain` or `id@domain/anything`).
    pub fn by_jid(&self, to: &Jid) -> Option<usize> {
        self.by_jid
            .get(to)
            .or_else(|| self.by_jid.get(&Jid::from(to.to_bare())))
            .copied()
    }

    /// Whether `requester` (a bare JID) may do `what` with device `idx`.
    pub fn allows(&self, idx: usize, requester: &str, what: Permission) -> bool {
        let lists = self.list[idx]
            .config
            .access
            .as_ref()
            .unwrap_or(&self.access);
        access::allows(lists, requester, what)
    }

    /// Stores a reading; says whether subscribers should hear of it: whether it differs from
    /// what was last published by at least the field's deadband.
    /// Applies `reading` to device `idx` (looked up by the caller, who needs the index anyway).
    pub fn apply(
        &mut self,
        idx: usize,
        reading: &Reading,
        default_deadband: Option<f64>,
    ) -> Applied {
        let dev = &mut self.list[idx];
        let Some(fi) = dev.field_index(&reading.field) else {
            return Applied::Ignored;
        };
        let deadband = dev.config.fields[fi].deadband.or(default_deadband);
        let changed = match &dev.published[fi] {
            None => true,
            Some(old) => match (deadband, old.as_f64(), reading.value.as_f64()) {
                (Some(db), Some(a), Some(b)) => (a - b).abs() >= db,
                _ => *old != reading.value,
            },
        };
        dev.values[fi] = Some(Sample {
            value: reading.value.clone(),
            timestamp: reading.timestamp,
            quality: reading.quality,
        });
        if changed {
            Applied::Changed
        } else {
            Applied::Unchanged
        }
    }
}

impl Device {
    /// Remembers the current values as the ones subscribers have been told.
    pub fn mark_published(&mut self) {
        for (p, v) in self.published.iter_mut().zip(&self.values) {
            *p = v.as_ref().map(|s| s.value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AnySettings, FieldConfig};
    use gateway_api::FieldType;
    use gateway_simulated::config::DeviceSettings;
    use gateway_simulated::Generator;

    fn device(deadband: Option<f64>) -> Devices {
        let spec = FieldSpec {
            name: "t".into(),
            unit: "C".into(),
            kind: FieldType::Numeric,
            writable: false,
        };
        let cfg = DeviceConfig {
            id: DeviceId::new("d").expect("id"),
            jid: "d@gw.example.org".into(),
            password: None,
            name: "D".into(),
            adapter: "sim".into(),
            adapter_index: 0,
            access: None,
            fields: vec![FieldConfig {
                spec,
                deadband,
                settings: AnySettings::new(Generator::Constant {
                    value: Value::Float(0.0),
                }),
            }],
            settings: AnySettings::new(DeviceSettings {
                poll: std::time::Duration::from_secs(1),
                offline_every: None,
                offline_for: std::time::Duration::from_secs(1),
            }),
        };
        let mut devices = Devices::default();
        devices.by_id.insert(cfg.id.clone(), 0);
        devices.list.push(Device {
            values: vec![None],
            published: vec![None],
            jid: Jid::new(&cfg.jid).expect("jid"),
            config: cfg,
            online: Some(true),
            offline_reason: None,
            presence_dirty: false,
            values_dirty: false,
            quiet_until: None,
            presence_quiet_until: None,
            timer_pending: false,
        });
        devices
    }

    fn reading(v: f64) -> Reading {
        Reading::now(DeviceId::new("d").expect("id"), "t".into(), Value::Float(v))
    }

    #[test]
    fn a_change_within_the_deadband_is_stored_but_not_published() {
        let mut d = device(Some(0.5));
        assert_eq!(d.apply(0, &reading(20.0), None), Applied::Changed);
        d.get_mut(0).mark_published();
        assert_eq!(d.apply(0, &reading(20.3), None), Applied::Unchanged);
        assert_eq!(
            d.get(0).values[0].as_ref().map(|s| s.value.clone()),
            Some(Value::Float(20.3))
        );
        // Drift is measured from the published value, not from the last reading.
        assert_eq!(d.apply(0, &reading(20.6), None), Applied::Changed);
    }

    #[test]
    fn without_a_deadband_any_change_counts() {
        let mut d = device(None);
        assert_eq!(d.apply(0, &reading(1.0), None), Applied::Changed);
        d.get_mut(0).mark_published();
        assert_eq!(d.apply(0, &reading(1.0), None), Applied::Unchanged);
        assert_eq!(d.apply(0, &reading(1.01), None), Applied::Changed);
        let unknown_field = Reading::now(
            DeviceId::new("x").expect("id"),
            "no such field".into(),
            Value::Float(1.0),
        );
        assert_eq!(d.apply(0, &unknown_field, None), Applied::Ignored);
    }
}
