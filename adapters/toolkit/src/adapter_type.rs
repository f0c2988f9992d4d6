//! The registration trait: what an adapter crate gives the gateway so that `type = "..."` in
//! an `[[adapter]]` section means it.
//!
//! The gateway reads the sections and the keys every adapter shares (`id`, `type`; a device's
//! `id`, `adapter`, `jid`, `name`, `access`; a field's `name`, `unit`, `type`, `writable`,
//! `deadband`). Every other key of an `[[adapter]]`, `[[device]]` or `[[device.field]]` belongs
//! to the adapter type: the gateway checks it against [`AdapterType::keys`] (a key of another
//! type, or of no type, is reported with "did you mean") and hands the type's own keys to its
//! [`ConfigParser`], which turns them into settings or reports what is wrong. A parser lives for
//! one load, so it may remember what it saw (two devices on one Modbus unit, overlapping
//! registers): the gateway calls, in file order, [`ConfigParser::adapter`] for each of the
//! type's adapters, then for each device [`ConfigParser::expand`], [`ConfigParser::device`],
//! [`ConfigParser::field`] per field and [`ConfigParser::finish_device`].
//!
//! Once the configuration is valid, [`AdapterType::start`] builds the adapter from its slice of
//! it (the adapter, its devices and their fields, with the settings the parser made) and
//! [`AdapterType::check_lines`] adds what `check` prints about the type's adapters.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use gateway_api::{AdapterContext, DeviceId, FieldSpec, FieldType, MetricsSource};

use crate::diagnostic::{Report, Span};
use crate::entry::{Entry, Spanned};
use crate::files::Files;
use crate::settings::AnySettings;

/// The keys one adapter type adds to `[[adapter]]`, `[[device]]` and `[[device.field]]`.
#[derive(Debug, Clone, Copy)]
pub struct Keys {
    pub adapter: &'static [&'static str],
    pub device: &'static [&'static str],
    pub field: &'static [&'static str],
}

/// An adapter type the gateway can be configured with: one per adapter crate, registered in
/// the gateway's `src/adapter_registry.rs`.
pub trait AdapterType: Send + Sync + 'static {
    /// The `type = "..."` names it answers to (one crate may serve several transports, as
    /// `modbus-tcp` and `modbus-rtu`).
    fn names(&self) -> &'static [&'static str];

    /// Its keys at each level, for `type_name` (one of [`AdapterType::names`]).
    fn keys(&self, type_name: &str) -> Keys;

    /// Names other tools (Home Assistant, Telegraf, pymodbus...) give to this type's keys, as
    /// (their name, ours): an unknown key of that name gets "did you mean `ours` (this
    /// gateway's name for it)?".
    fn peer_names(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// A parser for one load of the configuration.
    fn parser(&self) -> Box<dyn ConfigParser>;

    /// What `check` prints about one adapter of this type before the device table (a serial
    /// port's device and framing: [`crate::rs485::port_line`]), ending with a newline; empty
    /// when there is nothing to say.
    fn check_summary(&self, _adapter: &AdapterSlice<'_>) -> String {
        String::new()
    }

    /// What `check` prints after the device table about this type's adapters (all of them,
    /// in file order), starting with an empty line; empty when there is nothing to say.
    fn check_lines(&self, _adapters: &[AdapterSlice<'_>]) -> String {
        String::new()
    }

    /// For `xmpp-iot-gateway discover`: listens on the bus of `adapter` for `env.wait` and
    /// returns what would be discovered there as configuration a user can paste (TOML
    /// `[[device]]` blocks for this adapter). `None`: this type discovers nothing, or
    /// discovery is off for this adapter (the default).
    fn discover(
        &self,
        _adapter: &AdapterSlice<'_>,
        _env: &DiscoverEnv<'_>,
    ) -> Option<DiscoverTask> {
        None
    }

    /// Builds the adapter of `adapter` and returns its task, which ends once
    /// `ctx.shutdown` is cancelled. Counters it keeps are handed to `env.metrics`.
    fn start(
        &self,
        adapter: AdapterSlice<'_>,
        env: &StartEnv<'_>,
        ctx: AdapterContext,
    ) -> AdapterTask;
}

/// A running adapter's task.
pub type AdapterTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What `discover` found on one adapter's bus: pastable configuration, or why it could not look.
pub type DiscoverTask = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'static>>;

/// What discovery from the command line needs from the gateway.
pub struct DiscoverEnv<'a> {
    /// `[gateway] name` (a client id for the look).
    pub gateway_name: &'a str,
    /// How long to listen for announcements.
    pub wait: std::time::Duration,
}

/// What an adapter may need from the gateway when it starts.
pub struct StartEnv<'a> {
    /// `[gateway] name` (e.g. the default of an MQTT client id).
    pub gateway_name: &'a str,
    /// Registers counters to show on `/metrics` and in the gateway's status readout.
    pub metrics: &'a dyn Fn(Arc<dyn MetricsSource>),
}

/// Turns one load's adapter-specific keys into settings. Every method reports its problems to
/// `rep` at the key or value at fault and returns `None` (or leaves things) when it found one.
pub trait ConfigParser {
    /// The settings of one `[[adapter]]`.
    fn adapter(&mut self, cx: AdapterCx<'_>, rep: &mut Report<'_>) -> Option<AnySettings>;

    /// Whether a `[[device]]` stands for several devices (an MQTT fleet): called before any
    /// device is checked, so that each member is then checked as a device of its own.
    fn expand(&mut self, _draft: DeviceDraft<'_>, _rep: &mut Report<'_>) -> Expansion {
        Expansion::One
    }

    /// The settings of one `[[device]]`.
    fn device(&mut self, cx: DeviceCx<'_>, rep: &mut Report<'_>) -> Option<AnySettings>;

    /// The settings of one `[[device.field]]` of the device last given to
    /// [`ConfigParser::device`].
    fn field(&mut self, cx: FieldCx<'_>, rep: &mut Report<'_>) -> Option<ParsedField>;

    /// After a device's fields: what needs the device and its fields together. A field's
    /// settings may be replaced here.
    fn finish_device(
        &mut self,
        _cx: FinishCx<'_>,
        _fields: &mut [FieldDraft<'_>],
        _rep: &mut Report<'_>,
    ) {
    }
}

/// One `[[adapter]]` as its type's parser sees it.
pub struct AdapterCx<'a> {
    /// The `type` written, one of the type's names.
    pub type_name: &'a str,
    /// The adapter's `id` as written (also when it is not valid), for messages.
    pub id: Option<&'a str>,
    /// The keys of this type (already checked to be among [`Keys::adapter`]), in file order.
    pub own: &'a [Entry<'a>],
    /// The `[[adapter]]` header, for a missing key.
    pub header: &'a Span,
    pub files: Files<'a>,
    /// The serial ports taken so far by any adapter.
    pub ports: &'a mut SerialPorts,
}

impl<'a> AdapterCx<'a> {
    /// This type's key `key`, if written.
    pub fn get(&self, key: &str) -> Option<&'a Entry<'a>> {
        self.own.iter().find(|e| e.key == key)
    }

    /// Records that this adapter uses the serial port of its `port` key, reporting a port
    /// already used by another adapter.
    pub fn claim_port(&mut self, rep: &mut Report<'_>) {
        if let Some(entry) = self.get("port") {
            self.ports.claim(self.id, entry, rep);
        }
    }
}

/// A `[[device]]` before it is checked, for [`ConfigParser::expand`].
pub struct DeviceDraft<'a> {
    pub id: Option<&'a Spanned<String>>,
    /// Every key of the device that is not a common one (this type's and any other's).
    pub extra: &'a [Entry<'a>],
    /// The same for each of its fields.
    pub field_extras: Vec<&'a [Entry<'a>]>,
}

/// What one `[[device]]` stands for.
pub enum Expansion {
    /// Itself.
    One,
    /// Nothing: it was wrong (reported).
    Nothing,
    /// One copy per member, whose `id` is the member; `{id}` in the copy's `name` is
    /// replaced by the member. The copies keep every key, so the parser can tell them.
    Members(Vec<Spanned<String>>),
}

/// One `[[device]]` as its adapter type's parser sees it.
pub struct DeviceCx<'a> {
    pub type_name: &'a str,
    /// Its adapter's `id` and settings (`None` when the adapter's keys had errors).
    pub adapter_id: &'a str,
    pub adapter: Option<&'a AnySettings>,
    /// The device's `id` as written (also when it is not valid).
    pub written_id: Option<&'a str>,
    pub own: &'a [Entry<'a>],
    /// The `[[device]]` header.
    pub header: &'a Span,
    /// How messages name it: "device `boiler`".
    pub label: &'a str,
}

impl<'a> DeviceCx<'a> {
    /// This type's key `key`, if written.
    pub fn get(&self, key: &str) -> Option<&'a Entry<'a>> {
        self.own.iter().find(|e| e.key == key)
    }
}

/// One `[[device.field]]` as its adapter type's parser sees it.
pub struct FieldCx<'a> {
    pub type_name: &'a str,
    pub adapter: Option<&'a AnySettings>,
    /// The device's settings (`None` when its keys had errors).
    pub device: Option<&'a AnySettings>,
    pub own: &'a [Entry<'a>],
    pub name: &'a str,
    /// The field's type: as written, else numeric.
    pub kind: FieldType,
    /// `type` as written, if it was.
    pub written_type: Option<&'a Spanned<String>>,
    pub writable: Option<&'a Spanned<bool>>,
    /// The `[[device.field]]` header.
    pub header: &'a Span,
    /// How messages name it: "field `t` of device `boiler`".
    pub label: &'a str,
}

impl<'a> FieldCx<'a> {
    /// This type's key `key`, if written.
    pub fn get(&self, key: &str) -> Option<&'a Entry<'a>> {
        self.own.iter().find(|e| e.key == key)
    }

    pub fn is_writable(&self) -> bool {
        self.writable.is_some_and(|w| w.value)
    }
}

/// A field's settings, and the field's type when the keys imply one and `type` is not written
/// (a Modbus coil reads as a boolean).
pub struct ParsedField {
    pub settings: AnySettings,
    pub implied_type: Option<FieldType>,
}

impl ParsedField {
    pub fn new(settings: AnySettings) -> Self {
        ParsedField {
            settings,
            implied_type: None,
        }
    }
}

/// A device whose fields are parsed, for [`ConfigParser::finish_device`].
pub struct FinishCx<'a> {
    pub device: &'a AnySettings,
    /// The device's `id` as written.
    pub written_id: &'a str,
    /// The device's keys other than the common ones.
    pub extra: &'a [Entry<'a>],
    pub header: &'a Span,
    pub label: &'a str,
}

/// A parsed field, for [`ConfigParser::finish_device`].
pub struct FieldDraft<'a> {
    pub spec: &'a FieldSpec,
    pub settings: &'a mut AnySettings,
    /// The field's header, its `writable` and its keys other than the common ones, as written.
    pub header: &'a Span,
    pub writable: Option<&'a Spanned<bool>>,
    pub extra: &'a [Entry<'a>],
}

/// An adapter and its devices: what it is started with.
#[derive(Debug, Clone)]
pub struct AdapterSlice<'a> {
    pub id: &'a Arc<str>,
    pub type_name: &'a str,
    pub settings: &'a AnySettings,
    pub devices: Vec<DeviceSlice<'a>>,
}

#[derive(Debug, Clone)]
pub struct DeviceSlice<'a> {
    pub id: &'a DeviceId,
    pub settings: &'a AnySettings,
    pub fields: Vec<FieldSlice<'a>>,
}

#[derive(Debug, Clone)]
pub struct FieldSlice<'a> {
    pub spec: &'a FieldSpec,
    pub settings: &'a AnySettings,
}

/// The serial ports adapters use. Two adapters on one port would interleave their bytes on
/// the wire and read each other's answers: an error at the second. Ports are compared after
/// following symbolic links, so `/dev/serial/by-id/...` and `/dev/ttyUSB0` are the same port
/// when they are.
#[derive(Debug, Default)]
pub struct SerialPorts {
    /// Canonical path -> how messages name the adapter that has it, and where.
    seen: std::collections::HashMap<PathBuf, (String, Span)>,
}

impl SerialPorts {
    /// Records that adapter `id` (as written) uses the port of `entry` (a `port` key).
    pub fn claim(&mut self, id: Option<&str>, entry: &Entry<'_>, rep: &mut Report<'_>) {
        let Some(port) = entry.item.as_str().map(str::trim).filter(|p| !p.is_empty()) else {
            return;
        };
        let canonical = std::fs::canonicalize(port).unwrap_or_else(|_| PathBuf::from(port));
        let label = id.map_or_else(|| "this adapter".to_owned(), |id| format!("adapter `{id}`"));
        match self.seen.get(&canonical) {
            Some((other, first)) => {
                let line = rep.line(first);
                rep.error(
                    &entry.span(),
                    format!(
                        "{label} uses the serial port `{port}`, as {other} (line {line}) does: one \
                         port takes one adapter (several Modbus units share one `modbus-rtu` adapter)"
                    ),
                );
            }
            None => {
                self.seen.insert(canonical, (label, entry.span()));
            }
        }
    }
}
