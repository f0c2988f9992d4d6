//! What the MQTT adapter is told: the broker to use, and for each device and field which topics
//! and payload parts carry its values and where commands go.
//!
//! [`keys`] builds these from the adapter's keys in `gateway.toml` (listed in this crate's
//! README) with the checks here ([`BrokerUrl::parse`], [`TopicBinding::new`],
//! [`check_pointer`], [`Template::new`]), so that the adapter never meets an invalid topic,
//! pointer or template at run time.

use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration;

use gateway_api::{DeviceId, FieldSpec};

use crate::discovery::template::{self, Jinja};
use crate::discovery::DiscoveryConfig;
use crate::limits::Limits;
use crate::topic::{self, TopicError};

pub mod keys;
pub use keys::Mqtt;

/// The port of `mqtt://` when the URL gives none.
pub const DEFAULT_PORT: u16 = 1883;
/// The port of `mqtts://` when the URL gives none.
pub const DEFAULT_TLS_PORT: u16 = 8883;
/// How often the client pings an idle broker (`keep_alive`).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Payloads larger than this are refused (`max_payload`).
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;
/// The availability payloads when `availability_online`/`availability_offline` are not given.
pub const DEFAULT_ONLINE: &str = "online";
pub const DEFAULT_OFFLINE: &str = "offline";

/// `mqtt://host[:port]` or `mqtts://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    /// Host name or IP address, without brackets.
    pub host: String,
    pub port: u16,
}

/// Why a broker URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the URL must start with `mqtt://` or `mqtts://` (TLS)")]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
    #[error("`{0}` is not a valid port")]
    BadPort(String),
    #[error("put the user name in `username` and the password in `password_file`, not in the URL")]
    Credentials,
    #[error("the URL must not have a path, query or fragment (`mqtt://host:port` only)")]
    Path,
    #[error("`{0}` is not a valid host name")]
    BadHost(String),
}

impl BrokerUrl {
    pub fn parse(url: &str) -> Result<BrokerUrl, UrlError> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtt://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("mqtts://") {
            (true, rest)
        } else {
            return Err(UrlError::Scheme);
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('@') {
            return Err(UrlError::Credentials);
        }
        if rest.contains(['/', '?', '#']) {
            return Err(UrlError::Path);
        }
        let default_port = if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let Some((addr, tail)) = v6.split_once(']') else {
                return Err(UrlError::BadHost(rest.to_owned()));
            };
            if addr.parse::<Ipv6Addr>().is_err() {
                return Err(UrlError::BadHost(addr.to_owned()));
            }
            let port = match tail {
                "" => None,
                t => Some(
                    t.strip_prefix(':')
                        .ok_or_else(|| UrlError::BadHost(rest.to_owned()))?,
                ),
            };
            (addr, port)
        } else {
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            if host.is_empty() {
                return Err(UrlError::NoHost);
            }
            // Host names and IPv4 addresses; an IPv6 address needs its brackets.
            if !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            {
                return Err(UrlError::BadHost(host.to_owned()));
            }
            (host, port)
        };
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(UrlError::BadPort(p.to_owned())),
            },
        };
        Ok(BrokerUrl {
            tls,
            host: host.to_owned(),
            port,
        })
    }

    /// `host:port`, with brackets around an IPv6 address: what a socket connects to.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}", self.host_port())
    }
}

/// The broker password. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(value: impl Into<String>) -> Self {
        Password(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// One `[[adapter]]` of `type = "mqtt"`: the broker and how to log in.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    pub url: BrokerUrl,
    /// `None`: [`default_client_id`] of the gateway's name and the adapter id.
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<Password>,
    /// Trusted in addition to the system's roots (`mqtts://` only).
    pub ca_file: Option<PathBuf>,
    /// Ping interval on an idle link; at least 1 s.
    pub keep_alive: Duration,
    /// Larger payloads are refused as bad input.
    pub max_payload: usize,
    /// Devices that announce themselves (`discovery`, `discovery_prefix`, `zigbee2mqtt_base`,
    /// `discover_include`, `discover_exclude`, `discover_max_devices`); off by default.
    pub discovery: DiscoveryConfig,
}

impl BrokerConfig {
    /// A broker at `url` with every other setting at its default.
    pub fn new(url: BrokerUrl) -> Self {
        BrokerConfig {
            url,
            client_id: None,
            username: None,
            password: None,
            ca_file: None,
            keep_alive: DEFAULT_KEEP_ALIVE,
            max_payload: DEFAULT_MAX_PAYLOAD,
            discovery: DiscoveryConfig::default(),
        }
    }
}

/// The client id used when none is configured: stable across restarts (the broker keeps the
/// gateway's session under it), and different for every gateway and every adapter of one gateway:
/// `xig-<gateway name>-<adapter id>`, reduced to letters, digits, `-` and `_`.
pub fn default_client_id(gateway_name: &str, adapter: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!("xig-{}-{}", clean(gateway_name), clean(adapter))
}

/// A topic (or filter) of one device, with the filter the adapter subscribes to for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicBinding {
    /// What a message's topic must match to be this device's.
    pub filter: String,
    /// What is subscribed: the same as `filter`, except for a fleet member, where it is the
    /// fleet's template with `+` for `{id}` (one subscription serves the whole fleet).
    pub subscribe: String,
}

impl TopicBinding {
    /// From a template as configured: `{id}` is replaced by `id` (the device id as written, or the
    /// fleet member); for a fleet member the subscription puts `+` where `{id}` was, when that
    /// makes a valid filter (`{id}` fills a whole level).
    pub fn new(template: &str, id: &str, fleet: bool) -> Result<TopicBinding, TopicError> {
        let filter = topic::fill(template, id);
        topic::check_filter(&filter)?;
        let subscribe = if fleet && template.contains("{id}") {
            let wide = topic::fill(template, "+");
            if topic::check_filter(&wide).is_ok() {
                wide
            } else {
                filter.clone()
            }
        } else {
            filter.clone()
        };
        Ok(TopicBinding { filter, subscribe })
    }
}

/// Where a device says whether it is online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability {
    pub topic: TopicBinding,
    /// The payload that means online (compared without regard to case or surrounding space;
    /// zigbee2mqtt's `{"state":"online"}` is understood as well).
    pub online: String,
    pub offline: String,
}

/// A command payload template: `{value}`, `{json}` and `{field}` are replaced (see the README);
/// or, when it has `{{ ... }}` or `{% ... %}`, a Jinja template over `value` as Home Assistant
/// discovery payloads write them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    jinja: Option<Jinja>,
}

/// The placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &["value", "json", "field"];

/// Why a command template is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder `{{{0}}}` (placeholders: `{{value}}`, `{{json}}`, `{{field}}`)")]
    Unknown(String),
    #[error("the Jinja template does not compile: {0}")]
    Jinja(String),
}

impl Template {
    /// Accepts any text; a `{name}` made of lower-case letters and `_` must be a known placeholder
    /// (other braces, as in JSON, are text).
    pub fn new(text: &str) -> Result<Template, TemplateError> {
        if template::is_jinja(text) {
            let jinja = Jinja::new(text).map_err(|e| TemplateError::Jinja(e.0))?;
            return Ok(Template {
                text: text.to_owned(),
                jinja: Some(jinja),
            });
        }
        for name in placeholder_names(text) {
            if !PLACEHOLDERS.contains(&name) {
                return Err(TemplateError::Unknown(name.to_owned()));
            }
        }
        Ok(Template {
            text: text.to_owned(),
            jinja: None,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The compiled Jinja template, when it is one.
    pub fn jinja(&self) -> Option<&Jinja> {
        self.jinja.as_ref()
    }
}

/// Every `{name}` in `text` whose name is lower-case ASCII letters and `_`.
fn placeholder_names(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices('{').filter_map(move |(i, _)| {
        let rest = &text[i + 1..];
        let end = rest.find('}')?;
        let name = &rest[..end];
        (!name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .then_some(name)
    })
}

/// Why a JSON pointer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    #[error("a JSON pointer starts with `/` (RFC 6901), e.g. `/temperature` or `/sensors/0/value`; `\"\"` is the whole document")]
    NoSlash,
    #[error("in a JSON pointer `~` must be followed by `0` (for `~`) or `1` (for `/`)")]
    BadEscape,
}

/// Checks an RFC 6901 pointer: empty (the whole document) or `/`-separated reference tokens.
pub fn check_pointer(pointer: &str) -> Result<(), PointerError> {
    if pointer.is_empty() {
        return Ok(());
    }
    if !pointer.starts_with('/') {
        return Err(PointerError::NoSlash);
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(PointerError::BadEscape);
        }
    }
    Ok(())
}

/// A `[[device]]` on an MQTT adapter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceConfig {
    /// Where the values of fields without a `topic` of their own arrive.
    pub topic: Option<TopicBinding>,
    pub availability: Option<Availability>,
    /// Where writes are published, unless a field has its own.
    pub command_topic: Option<String>,
    /// The payload of a write, unless a field has its own; default `{"<field>": <value>}`.
    pub command_template: Option<Template>,
    /// With nothing received for this long, the device is unavailable ("no data for N s").
    pub stale_after: Option<Duration>,
}

/// A `[[device.field]]` on an MQTT adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldConfig {
    /// The field's own topic; `None`: the device's.
    pub topic: Option<TopicBinding>,
    /// RFC 6901 pointer into a JSON payload; `None`: the whole payload is the value.
    pub json: Option<String>,
    /// A Jinja template over `value` and `value_json` whose result is the value (instead of
    /// `json`), as Home Assistant discovery payloads give it.
    pub value_template: Option<Jinja>,
    /// value = raw * scale + offset (numeric and integer fields; the inverse is applied on writes).
    pub scale: f64,
    pub offset: f64,
    /// How a boolean is spelt on the bus, both ways (e.g. Tasmota's `ON`/`OFF`).
    pub payload_on: Option<String>,
    pub payload_off: Option<String>,
    pub command_topic: Option<String>,
    pub command_template: Option<Template>,
    /// What writes may set (`min`/`max`/`step`, `options`); others are refused unsent.
    pub limits: Limits,
}

impl Default for FieldConfig {
    fn default() -> Self {
        FieldConfig {
            topic: None,
            json: None,
            value_template: None,
            scale: 1.0,
            offset: 0.0,
            payload_on: None,
            payload_off: None,
            command_topic: None,
            command_template: None,
            limits: Limits::None,
        }
    }
}

/// One field as the adapter runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttField {
    pub spec: FieldSpec,
    pub config: FieldConfig,
}

/// One device as the adapter runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttDevice {
    pub id: DeviceId,
    pub config: DeviceConfig,
    pub fields: Vec<MqttField>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let u = BrokerUrl::parse("mqtt://127.0.0.1:1883").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "127.0.0.1", 1883));
        let u = BrokerUrl::parse("mqtts://broker.example.org/").unwrap();
        assert_eq!((u.tls, u.port), (true, 8883));
        assert_eq!(u.to_string(), "mqtts://broker.example.org:8883");
        let u = BrokerUrl::parse("mqtt://[::1]:1884").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1884));
        assert_eq!(u.host_port(), "[::1]:1884");
        assert_eq!(BrokerUrl::parse("mqtt://[::1]").unwrap().port, 1883);
        assert_eq!(BrokerUrl::parse("tcp://localhost"), Err(UrlError::Scheme));
        assert_eq!(BrokerUrl::parse("mqtt://"), Err(UrlError::NoHost));
        assert_eq!(BrokerUrl::parse("mqtt://:1883"), Err(UrlError::NoHost));
        assert_eq!(
            BrokerUrl::parse("mqtt://h:0"),
            Err(UrlError::BadPort("0".into()))
        );
        assert_eq!(
            BrokerUrl::parse("mqtt://h:99999"),
            Err(UrlError::BadPort("99999".into()))
        );
        assert_eq!(BrokerUrl::parse("mqtt://u:p@h"), Err(UrlError::Credentials));
        assert_eq!(BrokerUrl::parse("mqtt://h/x"), Err(UrlError::Path));
        assert_eq!(
            BrokerUrl::parse("mqtt://bad host"),
            Err(UrlError::BadHost("bad host".into()))
        );
        assert_eq!(
            BrokerUrl::parse("mqtt://[nope]"),
            Err(UrlError::BadHost("nope".into()))
        );
    }

    #[test]
    fn client_ids_are_stable_and_tame() {
        assert_eq!(
            default_client_id("greenhouse-pi", "broker"),
            "xig-greenhouse-pi-broker"
        );
        assert_eq!(
            default_client_id("test gateway/2", "b"),
            "xig-test-gateway-2-b"
        );
    }

    #[test]
    fn topic_bindings() {
        let b = TopicBinding::new("tele/{id}/SENSOR", "Plug_1", true).unwrap();
        assert_eq!(b.filter, "tele/Plug_1/SENSOR");
        assert_eq!(b.subscribe, "tele/+/SENSOR");
        let b = TopicBinding::new("tele/{id}/SENSOR", "plug", false).unwrap();
        assert_eq!(b.subscribe, "tele/plug/SENSOR");
        // `{id}` inside a level: the fleet cannot share one subscription.
        let b = TopicBinding::new("tele/x{id}/SENSOR", "1", true).unwrap();
        assert_eq!(b.subscribe, "tele/x1/SENSOR");
        let b = TopicBinding::new("home/+/temp", "d", false).unwrap();
        assert_eq!(
            (b.filter.as_str(), b.subscribe.as_str()),
            ("home/+/temp", "home/+/temp")
        );
        assert_eq!(
            TopicBinding::new("a/#/b", "d", false),
            Err(TopicError::BadHash)
        );
    }

    #[test]
    fn templates() {
        assert!(Template::new(r#"{"state": {json}}"#).is_ok());
        assert!(Template::new("{value}").is_ok());
        assert!(Template::new("{}").is_ok());
        assert_eq!(
            Template::new("{valeu}"),
            Err(TemplateError::Unknown("valeu".into()))
        );
        assert_eq!(
            Template::new("{value").map(|t| t.as_str().to_owned()),
            Ok("{value".into())
        );
    }

    #[test]
    fn pointers() {
        for ok in ["", "/a", "/a/0", "/a~1b", "/~0", "/"] {
            assert_eq!(check_pointer(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_pointer("a"), Err(PointerError::NoSlash));
        assert_eq!(check_pointer("/a~2"), Err(PointerError::BadEscape));
        assert_eq!(check_pointer("/a~"), Err(PointerError::BadEscape));
    }

    #[test]
    fn passwords_do_not_show() {
        let p = Password::new("hunter2");
        assert_eq!(format!("{p:?}"), "Password(***)");
        assert_eq!(p.expose(), "hunter2");
    }
}
