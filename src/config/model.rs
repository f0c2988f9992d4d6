//! The validated configuration: what the rest of the gateway uses.
//!
//! Built only by [`super::load`], which has already checked every cross-reference (device ids
//! unique after case folding, adapters exist, field names unique per device, secrets readable),
//! so code that holds a [`Config`] never re-checks it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gateway_api::{DeviceId, FieldSpec};
pub use gateway_toolkit::{AnySettings, Secret};

pub use super::alert::{AlertCondition, AlertConfig};

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages and for SIGHUP reloads).
    pub path: PathBuf,
    pub gateway: GatewayConfig,
    pub xmpp: XmppConfig,
    pub access: AccessConfig,
    pub publish: PublishConfig,
    pub metrics: Option<MetricsConfig>,
    pub log: LogConfig,
    pub adapters: Vec<AdapterConfig>,
    pub devices: Vec<DeviceConfig>,
    /// `[[alert]]`, checked against the devices.
    pub alerts: Vec<AlertConfig>,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Shown in disco and version answers. Default: the host name, else "xmpp-iot-gateway".
    pub name: String,
    /// Where the embedded store lives. Relative paths are resolved against the config file's folder.
    pub state_dir: PathBuf,
    /// How long readings are kept; zero means history is off.
    pub history: Duration,
    /// `history_max_mb`: the oldest readings are pruned beyond this store size.
    pub history_max_bytes: Option<u64>,
    /// Readings are committed together at most this long after they arrive (default 1 s): a
    /// crash loses at most this window.
    pub commit_interval: Duration,
}

/// Compared by value on a reload, secrets included: a change needs a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmppConfig {
    Component(ComponentConfig),
    Client(ClientConfig),
}

/// XEP-0114: one plaintext connection, the gateway owns every JID of `domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentConfig {
    /// Lower-cased component domain, e.g. `sensors.example.org`.
    pub domain: String,
    /// `host:port` of the server's component listener, or of each node of a cluster: tried in
    /// turn, every address a name resolves to. Default `127.0.0.1:5347`.
    pub servers: Vec<String>,
    /// `None` only when the secret file is absent and we are running `check` (a warning then).
    pub secret: Option<Secret>,
    /// The server's own domain, pinged every half read-timeout to keep the stream alive.
    /// Default: `domain` with its first label removed (`sensors.example.org` -> `example.org`).
    pub ping_target: String,
    /// `max_stanza_size`: an incoming stanza of more bytes is skipped and answered with an
    /// error (see docs/security.md); no single name or attribute value may be longer.
    pub max_stanza_size: usize,
}

impl XmppConfig {
    /// `[xmpp] max_stanza_size`, whichever the mode.
    pub fn max_stanza_size(&self) -> usize {
        match self {
            XmppConfig::Component(c) => c.max_stanza_size,
            XmppConfig::Client(c) => c.max_stanza_size,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Required,
    /// Plaintext; only accepted for a loopback server.
    None,
}

/// Each device is a client session on `jid` (resource = device id) unless it has an account of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Bare JID of the gateway account, e.g. `gateway@example.org`.
    pub jid: String,
    pub password: Option<Secret>,
    /// `host:port` of each server to try in turn; empty means: resolve the JID's domain.
    pub servers: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub tls: TlsMode,
    /// As in component mode; see [`ComponentConfig::max_stanza_size`].
    pub max_stanza_size: usize,
}

/// One entry of an access list: a bare JID, or `@domain` for everyone on a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessEntry {
    Jid(String),
    Domain(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccessConfig {
    /// May subscribe to presence, read, query.
    pub read: Vec<AccessEntry>,
    /// May also set values (implies read).
    pub control: Vec<AccessEntry>,
}

#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// Presence carries a status line with current values. Default true.
    pub presence: bool,
    /// At most one update per device per interval, latest value wins. Default 2 s.
    pub min_interval: Duration,
    /// A numeric change smaller than this is not published (per-field override in FieldConfig).
    pub deadband: Option<f64>,
    /// Bare JIDs that get a headline message per published change.
    pub notify: Vec<String>,
    /// How the `<fields>` of those headlines are written. Default compact.
    pub format: PushFormat,
    pub pubsub: Option<String>,
    pub room: Option<String>,
}

/// `[publish] format`: how much a push headline's XEP-0323 `<fields>` spells out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PushFormat {
    /// One `<timestamp>` per distinct time, no flag that restates the XEP's default.
    #[default]
    Compact,
    /// Every flag spelled out, as in a readout answer.
    Full,
    /// The body alone, no `<fields>`: what costs the server least, for readers that see pushes
    /// as text and read values by XEP-0323 readout or PubSub.
    Text,
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Default)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `xmpp_iot_gateway=debug`.
    pub level: Option<String>,
}

/// One `[[adapter]]`: its id, its type and what the type's parser made of its keys.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterConfig {
    pub id: Arc<str>,
    /// The `type = ...` as written: a name of a type in `src/adapter_registry.rs`.
    pub type_name: &'static str,
    /// The adapter type's own settings (the broker, the port, the bus...).
    pub settings: AnySettings,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    pub id: DeviceId,
    /// The device's JID as text: `id@domain` (component), `<xmpp.jid>/<id>` (client), or as configured.
    pub jid: String,
    /// Client mode, a device with an account of its own.
    pub password: Option<Secret>,
    /// Human label (default: the id).
    pub name: String,
    /// The `id` of its adapter (an index into `Config::adapters` is `adapter_index`).
    pub adapter: Arc<str>,
    pub adapter_index: usize,
    /// Per-device access lists; `None` means the `[access]` lists apply.
    pub access: Option<AccessConfig>,
    pub fields: Vec<FieldConfig>,
    /// The device's keys of its adapter's type, as that type parsed them.
    pub settings: AnySettings,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldConfig {
    pub spec: FieldSpec,
    /// Per-field override of `[publish] deadband`.
    pub deadband: Option<f64>,
    /// The field's keys of its adapter's type, as that type parsed them.
    pub settings: AnySettings,
}
