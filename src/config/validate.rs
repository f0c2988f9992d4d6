//! From the configuration as written ([`RawConfig`]) to the validated [`Config`].
//!
//! Here live the rules that need more than one key to check: defaults, JIDs and domains,
//! secrets read from their files, device ids unique once lower-cased, each device's adapter
//! defined, the keys of an adapter type used only with that type. The keys of each adapter type
//! go to that type's parser (`src/adapter_registry.rs` lists the types). Every problem is reported with the position of the key or value at fault and the
//! walk goes on, so that one run lists them all; a [`Config`] is only returned when none was
//! found.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gateway_api::{DeviceId, FieldSpec, FieldType};

use gateway_toolkit::{
    check_text, list_names, suggestion, AdapterCx, AdapterType, AnySettings, ConfigParser,
    DeviceCx, DeviceDraft, Expansion, FieldCx, FieldDraft, Files, FinishCx, Pair, Report,
    SerialPorts, Span,
};

use super::jid::{self, parse_bare_jid, parse_domain, parse_host_port, parse_jid};
use super::model::*;
use super::raw::{
    self, unknown_key, Entry, RawAccess, RawAdapter, RawConfig, RawDevice, RawField, RawXmpp,
    Spanned, StringList, TypeKeys, ADAPTER_COMMON, CLIENT_KEYS, COMPONENT_KEYS, DEVICE_COMMON,
    FIELD_COMMON,
};
use super::{Env, LoadMode};
use crate::xmpp::wire::DEFAULT_MAX_STANZA_BYTES;

/// The documented defaults (docs/configuration.md).
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/xmpp-iot-gateway";
pub(crate) const DEFAULT_NAME: &str = "xmpp-iot-gateway";
const DEFAULT_HISTORY: Duration = Duration::from_secs(7 * 24 * 3600);
const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_COMPONENT_PORT: u16 = 5347;
const DEFAULT_COMPONENT_SERVER: &str = "127.0.0.1:5347";
const DEFAULT_CLIENT_PORT: u16 = 5222;
const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9108";

const FIELD_TYPES: &[&str] = &["numeric", "boolean", "integer", "string"];
const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// What validation needs besides the raw configuration.
pub(crate) struct Context<'e> {
    pub mode: LoadMode,
    /// The configuration file's folder: relative paths start there.
    pub base_dir: PathBuf,
    pub env: &'e Env,
}

impl Context<'_> {
    /// Where the files the configuration names are looked up, and how.
    pub(crate) fn files(&self) -> Files<'_> {
        Files {
            mode: self.mode,
            base_dir: &self.base_dir,
            credentials_dir: self.env.credentials_dir.as_deref(),
            service: self
                .env
                .service
                .as_ref()
                .map(|s| s as &dyn gateway_toolkit::ServiceAccess),
        }
    }
}

/// Validates `raw` (the whole file, its devices included); `None` when any error was reported
/// to `rep`.
pub(crate) fn validate(
    mut raw: RawConfig<'_>,
    path: &Path,
    ctx: &Context<'_>,
    rep: &mut Report<'_>,
) -> Option<Config> {
    let devices = std::mem::take(&mut raw.devices);
    let mut validation = Validation::start(raw, path, ctx, rep);
    for device in devices {
        validation.device(device, rep);
    }
    validation.finish(rep)
}

/// One load being validated: the sections other than `[[device]]` first
/// ([`Validation::start`]), then the devices one at a time in file order
/// ([`Validation::device`]), so that a caller may parse each `[[device]]` only when it is its
/// turn and drop it after; the alerts last ([`Validation::finish`]), as they name devices.
pub(crate) struct Validation<'c> {
    path: PathBuf,
    ctx: &'c Context<'c>,
    gateway: GatewayConfig,
    xmpp: Option<XmppConfig>,
    access: AccessConfig,
    publish: PublishConfig,
    metrics: Option<Option<MetricsConfig>>,
    log: LogConfig,
    parsers: Parsers,
    adapters: Vec<AdapterConfig>,
    infos: Vec<AdapterInfo>,
    /// An adapter whose `id` was missing or rejected may be the one a device names: its own
    /// error is the cause, and "not defined" at the device would only bury it.
    unnamed_adapter: bool,
    alerts: Vec<super::alert::RawAlert>,
    /// The device ids the alerts name: the devices whose `written` record is kept.
    named: super::alert::Named,
    /// Lower-cased device ids seen so far, for duplicates.
    ids: HashMap<String, DeviceSeen>,
    /// Lower-cased JIDs given so far, with how messages name their device.
    jids: HashMap<String, (String, Span)>,
    strings: Interned,
    devices: Vec<DeviceConfig>,
    /// Devices written (rejected ones included) that alerts name: an alert naming one that was
    /// rejected is not told again that no such device exists.
    written: Vec<super::alert::Written>,
    /// Some `[[device]]` has no id that is text.
    unnamed_device: bool,
    /// Devices written, after expansion.
    device_count: usize,
}

impl<'c> Validation<'c> {
    /// Validates every section of `raw` but its devices (which it must not have: they come
    /// through [`Validation::device`]).
    pub(crate) fn start(
        raw: RawConfig<'_>,
        path: &Path,
        ctx: &'c Context<'c>,
        rep: &mut Report<'_>,
    ) -> Self {
        debug_assert!(raw.devices.is_empty());
        let gateway = gateway(&raw, ctx, rep);
        let xmpp = xmpp(raw.xmpp.as_ref(), ctx, rep);
        let access = AccessConfig {
            read: access_list(rep, "read", raw.access.read.as_ref()),
            control: access_list(rep, "control", raw.access.control.as_ref()),
        };
        let publish = publish(&raw, rep);
        let metrics = raw
            .metrics
            .as_ref()
            .map(|m| metrics(m.listen.as_ref(), rep));
        let log = LogConfig {
            level: raw.log.level.as_ref().and_then(|l| log_level(l, rep)),
        };
        let mut parsers = Parsers::new();
        let (adapters, infos) = adapters(&raw.adapters, ctx, &mut parsers, rep);
        let unnamed_adapter = raw.adapters.iter().any(|a| {
            a.id.as_ref()
                .is_none_or(|id| !infos.iter().any(|i| i.id == id.value))
        });
        let named = super::alert::Named::new(&raw.alerts);
        Validation {
            path: path.to_owned(),
            ctx,
            gateway,
            xmpp,
            access,
            publish,
            metrics,
            log,
            parsers,
            adapters,
            infos,
            unnamed_adapter,
            alerts: raw.alerts,
            named,
            ids: HashMap::new(),
            jids: HashMap::new(),
            strings: Interned::default(),
            devices: Vec::new(),
            written: Vec::new(),
            unnamed_device: false,
            device_count: 0,
        }
    }

    /// Validates the next `[[device]]` of the file. A `[[device]]` may stand for several (its
    /// adapter type says): each is then a device like any.
    pub(crate) fn device(&mut self, raw: RawDevice<'_>, rep: &mut Report<'_>) {
        for raw in expand(raw, &self.infos, &mut self.parsers, rep) {
            self.device_count += 1;
            match &raw.id {
                None => self.unnamed_device = true,
                Some(id) if self.named.contains(&id.value) => {
                    self.written.push(super::alert::Written {
                        id: id.value.clone(),
                        fields: (raw.fields.iter())
                            .filter_map(|f| f.name.as_ref().map(|n| n.value.clone()))
                            .collect(),
                        unnamed_field: raw.fields.iter().any(|f| f.name.is_none()),
                    })
                }
                Some(_) => {}
            }
            let known = Known {
                adapters: &self.infos,
                unnamed_adapter: self.unnamed_adapter,
            };
            let mut seen = Seen {
                ids: &mut self.ids,
                jids: &mut self.jids,
                strings: &mut self.strings,
            };
            if let Some(device) = device(
                &raw,
                &known,
                self.xmpp.as_ref(),
                &self.access,
                self.ctx,
                &mut self.parsers,
                &mut seen,
                rep,
            ) {
                self.devices.push(device);
            }
        }
    }

    /// Checks the alerts against the devices; the configuration, when no error was reported.
    pub(crate) fn finish(self, rep: &mut Report<'_>) -> Option<Config> {
        let alerts = super::alert::validate(
            &self.alerts,
            &super::alert::Devices {
                valid: &self.devices,
                written: &self.written,
                unnamed: self.unnamed_device,
            },
            &self.publish.notify,
            rep,
        );
        if self.device_count == 0 {
            rep.warn(
                &(0..0),
                "no [[device]] is configured: the gateway will have nothing to show",
            );
        }

        if rep.has_errors() {
            return None;
        }
        Some(Config {
            path: self.path,
            gateway: self.gateway,
            // `xmpp` is only `None` after an error was reported, and we return early on errors.
            xmpp: self.xmpp?,
            access: self.access,
            publish: self.publish,
            metrics: self.metrics.flatten(),
            log: self.log,
            adapters: self.adapters,
            devices: self.devices,
            alerts,
        })
    }
}

/// Whether `key` was present but unreadable (so already reported, not to be called missing).
fn bad(list: &[String], key: &str) -> bool {
    list.iter().any(|k| k == key)
}

/// Why this process could not create or write the directory `dir`, if it could not: the
/// nearest part of the path that exists must be a directory it may write to.
fn unwritable(dir: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let mut existing = dir;
    loop {
        match std::fs::metadata(existing) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => return Some(format!("`{}` is not a directory", existing.display())),
            Err(_) => existing = existing.parent()?,
        }
    }
    let c_path = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call; access(2) only reads it.
    if unsafe { libc::access(c_path.as_ptr(), libc::W_OK) } == 0 {
        return None;
    }
    let e = std::io::Error::last_os_error();
    Some(if existing == dir {
        format!("this user cannot write to it ({e})")
    } else {
        format!(
            "this user cannot create it in `{}` ({e})",
            existing.display()
        )
    })
}

fn gateway(raw: &RawConfig<'_>, ctx: &Context<'_>, rep: &mut Report<'_>) -> GatewayConfig {
    let g = &raw.gateway;
    let name = match &g.name {
        Some(n) => {
            check_text(rep, n, "name");
            n.value.trim().to_owned()
        }
        None => ctx
            .env
            .hostname
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .unwrap_or(DEFAULT_NAME)
            .to_owned(),
    };
    let state_dir = match &g.state_dir {
        Some(dir) => {
            let path = ctx.base_dir.join(&dir.value);
            if check_text(rep, dir, "state_dir") && ctx.env.probe_state_dir {
                if let Some(why) = unwritable(&path) {
                    // `run` would fail to open its store (and, under systemd, be restarted
                    // again and again); `check` may run as another user than the service.
                    let message = format!(
                        "state_dir `{}` cannot be used: {why}; under systemd leave `state_dir` \
                         out (StateDirectory= provides /var/lib/xmpp-iot-gateway)",
                        path.display()
                    );
                    match ctx.mode {
                        LoadMode::Run => rep.error(&dir.span, message),
                        LoadMode::Check => rep.warn(&dir.span, message),
                    }
                }
            }
            path
        }
        // Under systemd, where StateDirectory= put it; else the usual place.
        None => ctx
            .env
            .state_directory
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
    };
    let history = g.history.as_ref().map_or(DEFAULT_HISTORY, |h| h.value);
    let history_max_bytes = g.history_max_mb.as_ref().and_then(|m| {
        if m.value > 0.0 && m.value.is_finite() {
            Some((m.value * 1024.0 * 1024.0) as u64)
        } else {
            rep.error(
                &m.span,
                "`history_max_mb` must be a positive number of megabytes",
            );
            None
        }
    });
    let commit_interval = match &g.commit_interval {
        Some(c) if c.value.is_zero() || c.value > Duration::from_secs(60) => {
            rep.error(&c.span, "`commit_interval` must be between 1ms and 60s");
            DEFAULT_COMMIT_INTERVAL
        }
        Some(c) => c.value,
        None => DEFAULT_COMMIT_INTERVAL,
    };
    GatewayConfig {
        name,
        state_dir,
        history,
        history_max_bytes,
        commit_interval,
    }
}

fn xmpp(raw: Option<&RawXmpp>, ctx: &Context<'_>, rep: &mut Report<'_>) -> Option<XmppConfig> {
    let Some(raw) = raw else {
        rep.error(
            &(0..0),
            "missing [xmpp] section: give `mode = \"component\"` with `domain` and `secret_file`, \
             or `mode = \"client\"` with `jid` and `password_file`",
        );
        return None;
    };
    let (client, mode_written) = match &raw.mode {
        None => (false, false),
        Some(m) => match m.value.as_str() {
            "component" => (false, true),
            "client" => (true, true),
            other => {
                let hint = suggestion(other, ["component", "client"]);
                rep.error(
                    &m.span,
                    format!("unknown XMPP mode `{other}`{hint} (modes: `component`, `client`)"),
                );
                return None;
            }
        },
    };
    let (mode, own, other_keys) = if client {
        ("client", CLIENT_KEYS, COMPONENT_KEYS)
    } else {
        ("component", COMPONENT_KEYS, CLIENT_KEYS)
    };
    let mut wrong_mode = false;
    for (key, span) in raw.present() {
        if !own.contains(&key) && other_keys.contains(&key) {
            wrong_mode = true;
            let other = if client { "component" } else { "client" };
            let why = if mode_written {
                format!("but `mode = \"{mode}\"`")
            } else {
                format!(
                    "but `mode` is not set and defaults to `component`: add `mode = \"{other}\"`"
                )
            };
            rep.error(
                span,
                format!("`{key}` is a {other}-mode key of [xmpp], {why}"),
            );
        }
    }
    if wrong_mode && !mode_written {
        // Most likely a client configuration without its `mode`: the component-mode
        // requirements would only add noise to the hint above.
        return None;
    }
    if client {
        client_config(raw, ctx, rep).map(XmppConfig::Client)
    } else {
        component_config(raw, ctx, rep).map(XmppConfig::Component)
    }
}

fn component_config(
    raw: &RawXmpp,
    ctx: &Context<'_>,
    rep: &mut Report<'_>,
) -> Option<ComponentConfig> {
    let domain = match &raw.domain {
        None if bad(&raw.bad, "domain") => None,
        None => {
            rep.error(
                &raw.span,
                "component mode needs `domain`, e.g. `domain = \"sensors.example.org\"`",
            );
            None
        }
        Some(d) => match parse_domain(&d.value) {
            Ok(domain) => Some(domain),
            Err(e) => {
                rep.error(&d.span, format!("`domain`: {e}"));
                None
            }
        },
    };
    let server = match &raw.server {
        None => Some(vec![DEFAULT_COMPONENT_SERVER.to_owned()]),
        Some(list) => servers(rep, list, DEFAULT_COMPONENT_PORT)
            .map(|hps| hps.iter().map(ToString::to_string).collect()),
    };
    let secret = ctx.files().secret(
        rep,
        Pair {
            file: raw.secret_file.as_ref(),
            file_key: "secret_file",
            inline: raw.secret.as_ref(),
            inline_key: "secret",
        },
    );
    if raw.secret_file.is_none()
        && raw.secret.is_none()
        && !bad(&raw.bad, "secret_file")
        && !bad(&raw.bad, "secret")
    {
        rep.error(
            &raw.span,
            "component mode needs `secret_file`: the file holding the secret of the server's component listener",
        );
    }
    let ping_target = match (&raw.ping_target, &domain) {
        (Some(p), _) => match parse_domain(&p.value) {
            Ok(p) => Some(p),
            Err(e) => {
                rep.error(&p.span, format!("`ping_target`: {e}"));
                None
            }
        },
        (None, Some(domain)) => match domain.split_once('.') {
            Some((_, parent)) => Some(parent.to_owned()),
            None => {
                // Only reached when `domain` was given, so its span exists.
                let span = raw
                    .domain
                    .as_ref()
                    .map_or(raw.span.clone(), |d| d.span.clone());
                rep.error(
                    &span,
                    format!(
                        "the component domain `{domain}` has a single label, so the server's domain \
                         cannot be derived from it: set `ping_target`"
                    ),
                );
                None
            }
        },
        (None, None) => None,
    };
    Some(ComponentConfig {
        domain: domain?,
        servers: server?,
        secret,
        ping_target: ping_target?,
        max_stanza_size: max_stanza_size(raw, rep),
    })
}

fn client_config(raw: &RawXmpp, ctx: &Context<'_>, rep: &mut Report<'_>) -> Option<ClientConfig> {
    let jid = match &raw.jid {
        None if bad(&raw.bad, "jid") => None,
        None => {
            rep.error(&raw.span, "client mode needs `jid`, the gateway's account, e.g. `jid = \"gateway@example.org\"`");
            None
        }
        Some(j) => match parse_bare_jid(&j.value) {
            Ok(jid) => Some(jid),
            Err(e) => {
                rep.error(
                    &j.span,
                    format!("`jid` `{}` is not a bare JID: {e}", j.value),
                );
                None
            }
        },
    };
    let password = ctx.files().secret(
        rep,
        Pair {
            file: raw.password_file.as_ref(),
            file_key: "password_file",
            inline: raw.password.as_ref(),
            inline_key: "password",
        },
    );
    if raw.password_file.is_none()
        && raw.password.is_none()
        && !bad(&raw.bad, "password_file")
        && !bad(&raw.bad, "password")
    {
        rep.error(
            &raw.span,
            "client mode needs `password_file`: the file holding the account's password",
        );
    }
    let server_addrs = raw
        .server
        .as_ref()
        .map(|list| servers(rep, list, DEFAULT_CLIENT_PORT));
    let ca_file = raw
        .ca_file
        .as_ref()
        .and_then(|f| ctx.files().ca_file(rep, f));
    let tls = match &raw.tls {
        None => TlsMode::Required,
        Some(t) => match t.value.as_str() {
            "required" => TlsMode::Required,
            "none" => {
                let hosts = match (&server_addrs, &jid) {
                    (Some(Some(hps)), _) => hps.iter().map(|hp| hp.host.clone()).collect(),
                    (None, Some(jid)) => vec![jid.domain.clone()],
                    _ => Vec::new(),
                };
                if let Some(host) = hosts.into_iter().find(|h| !jid::is_loopback_host(h)) {
                    rep.error(
                        &t.span,
                        format!(
                            "`tls = \"none\"` is only allowed for a loopback server (127.0.0.0/8, ::1 or \
                             localhost), not `{host}`: set `server = \"127.0.0.1:5222\"` or keep TLS"
                        ),
                    );
                }
                TlsMode::None
            }
            other => {
                let hint = suggestion(other, ["required", "none"]);
                rep.error(
                    &t.span,
                    format!("unknown `tls` mode `{other}`{hint} (modes: `required`, `none`)"),
                );
                TlsMode::Required
            }
        },
    };
    let server = match server_addrs {
        None => Vec::new(),
        Some(hps) => hps?.iter().map(ToString::to_string).collect(),
    };
    Some(ClientConfig {
        jid: jid?.bare(),
        password,
        servers: server,
        ca_file,
        tls,
        max_stanza_size: max_stanza_size(raw, rep),
    })
}

/// `server`: one `host:port` or a list of them (each checked where it stands).
fn servers(
    rep: &mut Report<'_>,
    list: &StringList,
    default_port: u16,
) -> Option<Vec<jid::HostPort>> {
    if list.value.is_empty() {
        rep.error(
            &list.span,
            "`server` lists no server: give one `host:port`, or several to try in turn",
        );
        return None;
    }
    let parsed: Vec<Option<jid::HostPort>> = list
        .value
        .iter()
        .map(|s| server(rep, s, default_port))
        .collect();
    parsed.into_iter().collect()
}

/// Smallest `max_stanza_size`: below this, ordinary stanzas (a disco answer from a server with
/// many features, a vCard) would be refused.
const MIN_STANZA_SIZE: f64 = 16_384.0;
/// Largest `max_stanza_size`: the limit also sizes the XML lexer's token buffer.
const MAX_STANZA_SIZE: f64 = 64.0 * 1024.0 * 1024.0;

fn max_stanza_size(raw: &RawXmpp, rep: &mut Report<'_>) -> usize {
    let Some(m) = &raw.max_stanza_size else {
        return DEFAULT_MAX_STANZA_BYTES;
    };
    if m.value.fract() != 0.0 || !(MIN_STANZA_SIZE..=MAX_STANZA_SIZE).contains(&m.value) {
        rep.error(
            &m.span,
            format!(
                "`max_stanza_size` must be a whole number of bytes from {MIN_STANZA_SIZE} to {MAX_STANZA_SIZE} \
                 (default {DEFAULT_MAX_STANZA_BYTES}, 1 MiB)"
            ),
        );
        return DEFAULT_MAX_STANZA_BYTES;
    }
    m.value as usize
}

fn server(rep: &mut Report<'_>, s: &Spanned<String>, default_port: u16) -> Option<jid::HostPort> {
    match parse_host_port(&s.value, default_port) {
        Ok(hp) => Some(hp),
        Err(e) => {
            rep.error(
                &s.span,
                format!("`server` `{}` is not `host:port`: {e}", s.value),
            );
            None
        }
    }
}

/// One access list; the entries are bare JIDs or `@domain`, lower-cased.
fn access_list(rep: &mut Report<'_>, key: &str, list: Option<&StringList>) -> Vec<AccessEntry> {
    let Some(list) = list else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in &list.value {
        match access_entry(&item.value) {
            Ok(entry) => out.push(entry),
            Err(e) => rep.error(
                &item.span,
                format!(
                    "`{key}` entry `{}` is not a bare JID or `@domain`: {e}",
                    item.value
                ),
            ),
        }
    }
    out
}

fn access_entry(text: &str) -> Result<AccessEntry, String> {
    if let Some(domain) = text.strip_prefix('@') {
        return parse_domain(domain).map(AccessEntry::Domain);
    }
    let jid = parse_jid(text)?;
    if jid.resource.is_some() {
        return Err(format!(
            "it has a resource; use the bare JID `{}`",
            jid.bare()
        ));
    }
    if jid.local.is_none() {
        return Err(format!(
            "write `@{0}` for everyone on `{0}`, or `user@{0}` for one account",
            jid.domain
        ));
    }
    Ok(AccessEntry::Jid(jid.bare()))
}

fn publish(raw: &RawConfig<'_>, rep: &mut Report<'_>) -> PublishConfig {
    let p = &raw.publish;
    let deadband = p.deadband.as_ref().and_then(|d| deadband(rep, d));
    let mut notify = Vec::new();
    if let Some(list) = &p.notify {
        for item in &list.value {
            match parse_bare_jid(&item.value) {
                Ok(jid) => notify.push(jid.bare()),
                Err(e) => rep.error(
                    &item.span,
                    format!("`notify` entry `{}` is not a bare JID: {e}", item.value),
                ),
            }
        }
    }
    let pubsub = p.pubsub.as_ref().and_then(|s| match parse_jid(&s.value) {
        Ok(jid) if jid.resource.is_none() => Some(jid.bare()),
        Ok(jid) => {
            rep.error(
                &s.span,
                format!(
                    "`pubsub` must be a service JID without resource, e.g. `{}`",
                    jid.bare()
                ),
            );
            None
        }
        Err(e) => {
            rep.error(&s.span, format!("`pubsub` `{}` is not a JID: {e}", s.value));
            None
        }
    });
    let room = p
        .room
        .as_ref()
        .and_then(|s| match parse_bare_jid(&s.value) {
            Ok(jid) => Some(jid.bare()),
            Err(e) => {
                rep.error(
                    &s.span,
                    format!(
                        "`room` `{}` is not a room JID (`room@service`): {e}",
                        s.value
                    ),
                );
                None
            }
        });
    let format = p
        .format
        .as_ref()
        .map_or(PushFormat::Compact, |f| match f.value.as_str() {
            "compact" => PushFormat::Compact,
            "full" => PushFormat::Full,
            "text" => PushFormat::Text,
            other => {
                let hint = suggestion(other, ["compact", "full", "text"]);
                rep.error(
                    &f.span,
                    format!(
                        "unknown `format` `{other}`{hint} (formats: `compact`, `full`, `text`)"
                    ),
                );
                PushFormat::Compact
            }
        });
    PublishConfig {
        presence: p.presence.as_ref().is_none_or(|b| b.value),
        min_interval: p
            .min_interval
            .as_ref()
            .map_or(DEFAULT_MIN_INTERVAL, |d| d.value),
        deadband,
        notify,
        format,
        pubsub,
        room,
    }
}

fn deadband(rep: &mut Report<'_>, d: &Spanned<f64>) -> Option<f64> {
    if d.value < 0.0 {
        rep.error(&d.span, "`deadband` must be zero or more");
        None
    } else {
        Some(d.value)
    }
}

fn metrics(listen: Option<&Spanned<String>>, rep: &mut Report<'_>) -> Option<MetricsConfig> {
    let Some(listen) = listen else {
        // `[metrics]` alone turns the endpoint on at its usual address.
        return DEFAULT_METRICS_LISTEN
            .parse()
            .ok()
            .map(|listen| MetricsConfig { listen });
    };
    let text = listen.value.trim();
    let parsed = match text.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}").parse::<SocketAddr>(),
        None => text.parse::<SocketAddr>(),
    };
    match parsed {
        Ok(listen) => Some(MetricsConfig { listen }),
        Err(_) => {
            rep.error(
                &listen.span,
                format!(
                    "`listen` `{}` must be an IP address and port, e.g. \"127.0.0.1:9108\"",
                    listen.value
                ),
            );
            None
        }
    }
}

/// A `tracing` filter: a level name, or directives such as `xmpp_iot_gateway=debug,info`.
fn log_level(level: &Spanned<String>, rep: &mut Report<'_>) -> Option<String> {
    let text = level.value.trim();
    if let Err(message) = check_log_filter(text) {
        rep.error(&level.span, message);
        return None;
    }
    Some(text.to_owned())
}

/// Whether `text` is a log filter: a level, or directives (`target=level`, lists). A bare word
/// that is no level (`warning`, `verbose`) would parse as a target name and silence every other
/// log line, so it is refused with the closest level. `--log`, `RUST_LOG` and `[log] level`
/// share this rule.
pub fn check_log_filter(text: &str) -> Result<(), String> {
    let text = text.trim();
    let is_directive = text.contains(['=', ',', '[', ':']);
    if !is_directive && !LOG_LEVELS.contains(&text.to_ascii_lowercase().as_str()) {
        let hint = suggestion(text, LOG_LEVELS.iter().copied());
        return Err(format!(
            "unknown log level `{text}`{hint} (levels: {}, or a filter like `xmpp_iot_gateway=debug`)",
            list_names(LOG_LEVELS)
        ));
    }
    Ok(())
}

/// The adapters devices may name.
struct Known<'i> {
    adapters: &'i [AdapterInfo],
    /// Some `[[adapter]]` has no usable `id` (missing, not text, or rejected).
    unnamed_adapter: bool,
}

/// What devices need to know about an `[[adapter]]`.
struct AdapterInfo {
    id: String,
    /// `None` when the type is missing or unknown.
    kind: Option<TypeKeys>,
    /// Index into `Config::adapters`, for adapters this build can run.
    index: Option<usize>,
    /// For a registered type: its index in [`Parsers`], and the settings its parser made
    /// (`None` when its keys had errors).
    registered: Option<usize>,
    settings: Option<AnySettings>,
}

/// One parser per registered adapter type, for one load (indexed like
/// [`crate::adapter_registry::TYPES`]).
pub(crate) struct Parsers(Vec<Box<dyn ConfigParser>>);

impl Parsers {
    fn new() -> Self {
        Parsers(
            crate::adapter_registry::TYPES
                .iter()
                .map(|t| t.parser())
                .collect(),
        )
    }

    /// The registry index of the type named `name`.
    fn index_of(name: &str) -> Option<usize> {
        crate::adapter_registry::TYPES
            .iter()
            .position(|t: &&dyn AdapterType| t.names().contains(&name))
    }
}

/// The names of every adapter type, in the order messages list them.
fn type_names() -> Vec<&'static str> {
    raw::all_types().iter().map(|t| t.name).collect()
}

fn adapters(
    raws: &[RawAdapter<'_>],
    ctx: &Context<'_>,
    parsers: &mut Parsers,
    rep: &mut Report<'_>,
) -> (Vec<AdapterConfig>, Vec<AdapterInfo>) {
    let mut configs = Vec::new();
    let mut infos: Vec<AdapterInfo> = Vec::new();
    let mut seen: HashMap<String, Span> = HashMap::new();
    let mut ports = SerialPorts::default();
    for raw in raws {
        let id = match &raw.id {
            None if bad(&raw.bad, "id") => None,
            None => {
                rep.error(
                    &raw.span,
                    "this [[adapter]] needs an `id`, e.g. `id = \"sim\"`",
                );
                None
            }
            Some(id) if !check_text(rep, id, "id") => None,
            Some(id) => {
                if let Some(first) = seen.get(&id.value) {
                    let line = rep.line(first);
                    rep.error(
                        &id.span,
                        format!("adapter id `{}` is already used (line {line})", id.value),
                    );
                    None
                } else {
                    seen.insert(id.value.clone(), id.span.clone());
                    Some(id.value.clone())
                }
            }
        };
        let kind = match &raw.kind {
            None if bad(&raw.bad, "type") => None,
            None => {
                rep.error(
                    &raw.span,
                    format!(
                        "this [[adapter]] needs a `type` (supported: {})",
                        type_names().join(", ")
                    ),
                );
                None
            }
            Some(t) => match raw::type_keys(&t.value) {
                Some(keys) => Some(keys),
                None => {
                    let names = type_names();
                    let hint = suggestion(&t.value, names.iter().copied());
                    rep.error(
                        &t.span,
                        format!(
                            "unknown adapter type `{}`{hint} (types: {})",
                            t.value,
                            names.join(", ")
                        ),
                    );
                    None
                }
            },
        };
        let context = match kind {
            Some(k) => format!("but this adapter's type is `{}`", k.name),
            None => String::new(),
        };
        let own = type_entries(rep, &raw.extra, kind.as_ref(), Level::Adapter, &context);
        let registered = kind.and_then(|k| Parsers::index_of(k.name));
        let settings = match (registered, kind) {
            (Some(i), Some(k)) => {
                let cx = AdapterCx {
                    type_name: k.name,
                    id: raw.id.as_ref().map(|id| id.value.as_str()),
                    own: &own,
                    header: &raw.span,
                    files: ctx.files(),
                    ports: &mut ports,
                };
                parsers.0[i].adapter(cx, rep)
            }
            _ => None,
        };
        let Some(id) = id else { continue };
        let index = match (kind, &settings) {
            (Some(k), Some(settings)) => {
                configs.push(AdapterConfig {
                    id: Arc::from(id.as_str()),
                    type_name: k.name,
                    settings: settings.clone(),
                });
                Some(configs.len() - 1)
            }
            _ => None,
        };
        infos.push(AdapterInfo {
            id,
            kind,
            index,
            registered,
            settings,
        });
    }
    (configs, infos)
}

/// Where a type-specific key sits.
#[derive(Debug, Clone, Copy)]
enum Level {
    Adapter,
    Device,
    Field,
}

impl Level {
    fn keys(self, t: &TypeKeys) -> &'static [&'static str] {
        match self {
            Level::Adapter => t.adapter,
            Level::Device => t.device,
            Level::Field => t.field,
        }
    }
    fn common(self) -> &'static [&'static str] {
        match self {
            Level::Adapter => ADAPTER_COMMON,
            Level::Device => DEVICE_COMMON,
            Level::Field => FIELD_COMMON,
        }
    }
    fn label(self) -> &'static str {
        match self {
            Level::Adapter => "[[adapter]]",
            Level::Device => "[[device]]",
            Level::Field => "[[device.field]]",
        }
    }
    fn plural(self) -> &'static str {
        match self {
            Level::Adapter => "adapters",
            Level::Device => "devices",
            Level::Field => "fields",
        }
    }
}

/// Sorts the type-specific keys of a table: the ones of `kind` are returned (for its parser);
/// a key of another type is an error naming that type; any other key is unknown. With an
/// unknown `kind` (a missing adapter, an unknown type: already reported) only keys that no
/// type has are reported.
fn type_entries<'a>(
    rep: &mut Report<'_>,
    extra: &[Entry<'a>],
    kind: Option<&TypeKeys>,
    level: Level,
    context: &str,
) -> Vec<Entry<'a>> {
    let mut own = Vec::new();
    for entry in extra {
        if kind.is_some_and(|k| level.keys(k).contains(&entry.key)) {
            own.push(entry.clone());
            continue;
        }
        let all = raw::all_types();
        let owners: Vec<&str> = all
            .iter()
            .filter(|t| level.keys(t).contains(&entry.key))
            .map(|t| t.name)
            .collect();
        match kind {
            _ if owners.is_empty() => {
                let mut known: Vec<&str> = level.common().to_vec();
                match kind {
                    Some(k) => known.extend(level.keys(k)),
                    None => all.iter().for_each(|t| known.extend(level.keys(t))),
                }
                let mut peers = gateway_toolkit::entry::COMMON_PEER_NAMES.to_vec();
                for t in crate::adapter_registry::TYPES {
                    peers.extend_from_slice(t.peer_names());
                }
                unknown_key(rep, entry, level.label(), &known, &peers);
            }
            Some(_) => {
                rep.error(
                    &entry.key_span,
                    format!(
                        "`{}` is a key of {} {}, {context}",
                        entry.key,
                        list_names(&owners),
                        level.plural()
                    ),
                );
            }
            None => {}
        }
    }
    own
}

/// The first device with a given (lower-cased) id, for the duplicate-id message.
struct DeviceSeen {
    span: Span,
    original: String,
}

/// Asks a device's adapter type what the device stands for, and makes the copies: each
/// member becomes the device's `id`, and `{id}` in its `name` the member.
fn expand<'a>(
    raw: RawDevice<'a>,
    infos: &[AdapterInfo],
    parsers: &mut Parsers,
    rep: &mut Report<'_>,
) -> Vec<RawDevice<'a>> {
    let parser = raw
        .adapter
        .as_ref()
        .and_then(|a| infos.iter().find(|i| i.id == a.value))
        .and_then(|i| i.registered);
    let Some(parser) = parser else {
        return vec![raw];
    };
    let draft = DeviceDraft {
        id: raw.id.as_ref(),
        extra: &raw.extra,
        field_extras: raw.fields.iter().map(|f| f.extra.as_slice()).collect(),
    };
    match parsers.0[parser].expand(draft, rep) {
        Expansion::One => vec![raw],
        Expansion::Nothing => Vec::new(),
        Expansion::Members(members) => members
            .into_iter()
            .map(|m| {
                let mut copy = raw.clone();
                if let Some(name) = &mut copy.name {
                    name.value = name.value.replace("{id}", &m.value);
                }
                copy.id = Some(m);
                copy
            })
            .collect(),
    }
}

/// Hands a registered type's device and its parsed fields to its parser's `finish_device`.
fn finish_registered(
    parser: &mut dyn ConfigParser,
    device: &AnySettings,
    id: &Spanned<String>,
    raw: &RawDevice<'_>,
    fields: &mut [FieldConfig],
    label: &str,
    rep: &mut Report<'_>,
) {
    let mut drafts: Vec<FieldDraft<'_>> = Vec::new();
    for f in fields.iter_mut() {
        let written = raw
            .fields
            .iter()
            .find(|r| r.name.as_ref().is_some_and(|n| *n.value == *f.spec.name));
        drafts.push(FieldDraft {
            spec: &f.spec,
            settings: &mut f.settings,
            header: written.map_or(&raw.span, |r| &r.span),
            writable: written.and_then(|r| r.writable.as_ref()),
            extra: written.map_or(&[], |r| &r.extra),
        });
    }
    let cx = FinishCx {
        device,
        written_id: &id.value,
        extra: &raw.extra,
        header: &raw.span,
        label,
    };
    parser.finish_device(cx, &mut drafts, rep);
}

/// The device ids and JIDs given so far in a load, for duplicates, and the texts devices share.
struct Seen<'s> {
    ids: &'s mut HashMap<String, DeviceSeen>,
    jids: &'s mut HashMap<String, (String, Span)>,
    strings: &'s mut Interned,
}

/// One `Arc<str>` per distinct text for what devices repeat (their adapter's id, field names,
/// units): the 100,000 fields of 10,000 devices of one kind share a handful of each.
#[derive(Default)]
struct Interned(std::collections::HashSet<Arc<str>>);

impl Interned {
    fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.0.insert(shared.clone());
        shared
    }
}

/// Validates one device (after expansion); `None` when it was rejected (reported).
#[allow(clippy::too_many_arguments)]
fn device(
    raw: &RawDevice<'_>,
    adapters: &Known<'_>,
    xmpp: Option<&XmppConfig>,
    access: &AccessConfig,
    ctx: &Context<'_>,
    parsers: &mut Parsers,
    seen: &mut Seen<'_>,
    rep: &mut Report<'_>,
) -> Option<DeviceConfig> {
    let id = device_id(raw, seen.ids, rep);
    // Messages name the device as written, even when its id is invalid or a duplicate.
    let label = raw.id.as_ref().map_or_else(
        || "this device".to_owned(),
        |id| format!("device `{}`", id.value),
    );
    let adapter = device_adapter(raw, adapters, &label, rep);
    let kind = adapter.and_then(|a| a.kind);
    let context = match (adapter, kind) {
        (Some(a), Some(k)) => {
            format!("but {label} uses adapter `{}` of type `{}`", a.id, k.name)
        }
        _ => String::new(),
    };
    let own = type_entries(rep, &raw.extra, kind.as_ref(), Level::Device, &context);
    let registered = adapter.and_then(|a| Some((a, a.registered?)));
    let settings = match kind {
        Some(k) => registered.and_then(|(a, i)| {
            let cx = DeviceCx {
                type_name: k.name,
                adapter_id: &a.id,
                adapter: a.settings.as_ref(),
                written_id: raw.id.as_ref().map(|i| i.value.as_str()),
                own: &own,
                header: &raw.span,
                label: &label,
            };
            parsers.0[i].device(cx, rep)
        }),
        None => None,
    };

    let name = match &raw.name {
        Some(n) => check_text(rep, n, "name").then(|| n.value.trim().to_owned()),
        None => id.as_ref().map(|id| id.as_str().to_owned()),
    };
    let own_account = raw.password_file.is_some() || raw.password.is_some();
    let password = match xmpp {
        Some(XmppConfig::Client(_)) => ctx.files().secret(
            rep,
            Pair {
                file: raw.password_file.as_ref(),
                file_key: "password_file",
                inline: raw.password.as_ref(),
                inline_key: "password",
            },
        ),
        Some(XmppConfig::Component(_)) => {
            for s in [&raw.password_file, &raw.password].into_iter().flatten() {
                rep.error(
                    &s.key,
                    "a device's own password is only used in client mode (`[xmpp] mode = \"client\"`); \
                     in component mode the gateway owns every JID of its domain",
                );
            }
            None
        }
        None => None,
    };
    let jid = match (xmpp, &id) {
        (Some(x), Some(id)) => device_jid(raw, id, x, own_account, &label, rep),
        _ => None,
    };
    if let Some(jid) = &jid {
        let span = raw.jid.as_ref().map_or_else(
            || raw.id.as_ref().map_or(raw.span.clone(), |i| i.span.clone()),
            |j| j.span.clone(),
        );
        let folded = jid.to_lowercase();
        match seen.jids.get(&folded) {
            Some((other, first)) => {
                let line = rep.line(first);
                rep.error(
                    &span,
                    format!(
                        "{label} would have the JID `{jid}`, already used by {other} (line {line})"
                    ),
                );
            }
            None => {
                seen.jids.insert(folded, (label.clone(), span));
            }
        }
    }
    let device_access = raw
        .access
        .as_ref()
        .map(|a| device_access(&a.value, access, rep));
    let mut fields = fields(
        &raw.fields,
        kind.as_ref(),
        adapter,
        settings.as_ref(),
        &label,
        parsers,
        seen.strings,
        rep,
    );
    if let (Some((_, i)), Some(device), Some(id)) = (registered, &settings, &raw.id) {
        finish_registered(
            parsers.0[i].as_mut(),
            device,
            id,
            raw,
            &mut fields,
            &label,
            rep,
        );
    }
    if raw.fields.is_empty() {
        rep.warn(&raw.span, format!("{label} has no [[device.field]]"));
    }

    let (Some(id), Some(adapter), Some(settings), Some(name), Some(jid)) =
        (id, adapter, settings, name, jid)
    else {
        return None;
    };
    let adapter_index = adapter.index?;
    Some(DeviceConfig {
        id,
        jid,
        password,
        name,
        adapter: seen.strings.get(&adapter.id),
        adapter_index,
        access: device_access,
        fields,
        settings,
    })
}

fn device_id(
    raw: &RawDevice<'_>,
    ids: &mut HashMap<String, DeviceSeen>,
    rep: &mut Report<'_>,
) -> Option<DeviceId> {
    let Some(raw_id) = &raw.id else {
        if bad(&raw.bad, "id") {
            return None;
        }
        rep.error(
            &raw.span,
            "this [[device]] needs an `id`, e.g. `id = \"boiler\"`",
        );
        return None;
    };
    let id = match DeviceId::new(&raw_id.value) {
        Ok(id) => id,
        Err(e) => {
            rep.error(
                &raw_id.span,
                format!("device id `{}` is not valid: {e}", raw_id.value),
            );
            return None;
        }
    };
    if let Some(first) = ids.get(id.as_str()) {
        let line = rep.line(&first.span);
        let message = if first.original == raw_id.value {
            format!("device id `{}` is already used (line {line})", raw_id.value)
        } else {
            format!(
                "device id `{}` is the same as `{}` (line {line}) once lower-cased, as the XMPP server folds it",
                raw_id.value, first.original
            )
        };
        rep.error(&raw_id.span, message);
        return None;
    }
    ids.insert(
        id.as_str().to_owned(),
        DeviceSeen {
            span: raw_id.span.clone(),
            original: raw_id.value.clone(),
        },
    );
    Some(id)
}

fn device_adapter<'i>(
    raw: &RawDevice<'_>,
    known: &Known<'i>,
    label: &str,
    rep: &mut Report<'_>,
) -> Option<&'i AdapterInfo> {
    let adapters = known.adapters;
    let ids: Vec<&str> = adapters.iter().map(|a| a.id.as_str()).collect();
    let defined = if ids.is_empty() {
        " (no [[adapter]] is defined)".to_owned()
    } else {
        format!(" (adapters: {})", list_names(&ids))
    };
    let Some(name) = &raw.adapter else {
        if bad(&raw.bad, "adapter") {
            return None;
        }
        rep.error(
            &raw.span,
            format!("{label} needs `adapter = \"...\"` naming its [[adapter]]{defined}"),
        );
        return None;
    };
    if let Some(info) = adapters.iter().find(|a| a.id == name.value) {
        return Some(info);
    }
    if known.unnamed_adapter {
        // The adapter without a usable id is likely the one meant: its error says what to fix.
        return None;
    }
    let hint = suggestion(&name.value, ids.iter().copied());
    let tail = if hint.is_empty() { defined } else { hint };
    rep.error(
        &name.span,
        format!(
            "{label} names adapter `{}`, which is not defined{tail}",
            name.value
        ),
    );
    None
}

fn device_jid(
    raw: &RawDevice<'_>,
    id: &DeviceId,
    xmpp: &XmppConfig,
    own_account: bool,
    label: &str,
    rep: &mut Report<'_>,
) -> Option<String> {
    let given = match &raw.jid {
        Some(j) => match parse_jid(&j.value) {
            Ok(jid) => Some((jid, j)),
            Err(e) => {
                rep.error(&j.span, format!("`jid` `{}` is not a JID: {e}", j.value));
                return None;
            }
        },
        None => None,
    };
    match xmpp {
        XmppConfig::Component(c) => {
            let Some((jid, j)) = given else {
                return Some(format!("{id}@{}", c.domain));
            };
            if jid.local.is_none() || jid.resource.is_some() || jid.domain != c.domain {
                rep.error(
                    &j.span,
                    format!(
                        "{label}: `jid` must be a bare JID on the component domain, like `{id}@{}`",
                        c.domain
                    ),
                );
                return None;
            }
            Some(jid.bare())
        }
        XmppConfig::Client(c) => match given {
            None if own_account => {
                let span = raw
                    .password_file
                    .as_ref()
                    .or(raw.password.as_ref())
                    .map_or(raw.span.clone(), |s| s.key.clone());
                rep.error(
                    &span,
                    format!("{label} logs in with its own password, so it needs its own `jid`"),
                );
                None
            }
            None if id.as_str() == crate::xmpp::client::GATEWAY_RESOURCE => {
                let span = raw.id.as_ref().map_or(raw.span.clone(), |s| s.span.clone());
                rep.error(
                    &span,
                    format!(
                        "{label}: `{}/{id}` is the gateway's own session in client mode; give the \
                         device another id, or a `jid` with another resource",
                        c.jid
                    ),
                );
                None
            }
            None => Some(format!("{}/{id}", c.jid)),
            Some((jid, j)) if own_account => {
                if jid.local.is_none() {
                    rep.error(
                        &j.span,
                        format!("{label}: `jid` must be an account JID (`user@domain`)"),
                    );
                    return None;
                }
                Some(jid.full())
            }
            Some((jid, j)) => {
                if jid.bare() != c.jid {
                    rep.error(
                        &j.span,
                        format!(
                            "{label}: `jid` `{}` is not on the gateway's account `{}`; give the device a \
                             `password_file` to log in as its own account",
                            j.value, c.jid
                        ),
                    );
                    return None;
                }
                if jid.resource.is_none() {
                    rep.error(
                        &j.span,
                        format!("{label}: `jid` on the gateway's account needs a resource, like `{}/{id}`", c.jid),
                    );
                    return None;
                }
                if jid.resource.as_deref() == Some(crate::xmpp::client::GATEWAY_RESOURCE) {
                    rep.error(
                        &j.span,
                        format!(
                            "{label}: `{}` is the gateway's own session in client mode; choose another resource",
                            j.value
                        ),
                    );
                    return None;
                }
                Some(jid.full())
            }
        },
    }
}

/// A device's own lists; a list it does not give is the `[access]` one.
fn device_access(raw: &RawAccess, global: &AccessConfig, rep: &mut Report<'_>) -> AccessConfig {
    AccessConfig {
        read: match &raw.read {
            Some(list) => access_list(rep, "read", Some(list)),
            None => global.read.clone(),
        },
        control: match &raw.control {
            Some(list) => access_list(rep, "control", Some(list)),
            None => global.control.clone(),
        },
    }
}

#[allow(clippy::too_many_arguments)]
fn fields(
    raws: &[RawField<'_>],
    kind: Option<&TypeKeys>,
    adapter: Option<&AdapterInfo>,
    device: Option<&AnySettings>,
    device_label: &str,
    parsers: &mut Parsers,
    strings: &mut Interned,
    rep: &mut Report<'_>,
) -> Vec<FieldConfig> {
    let mut out = Vec::with_capacity(raws.len());
    let mut names: HashMap<String, Span> = HashMap::new();
    for raw in raws {
        let name = match &raw.name {
            None if bad(&raw.bad, "name") => None,
            None => {
                rep.error(
                    &raw.span,
                    format!("this field of {device_label} needs a `name`"),
                );
                None
            }
            Some(n) => {
                if !check_text(rep, n, "name") {
                    None
                } else if n.value.trim() != n.value {
                    rep.error(&n.span, "a field `name` must not start or end with spaces");
                    None
                } else if let Some(first) = names.get(&n.value) {
                    let line = rep.line(first);
                    rep.error(
                        &n.span,
                        format!(
                            "field `{}` is already defined for {device_label} (line {line})",
                            n.value
                        ),
                    );
                    None
                } else {
                    if n.value.contains(char::is_whitespace)
                        && raw.writable.as_ref().is_some_and(|w| w.value)
                    {
                        rep.warn(
                            &n.span,
                            format!(
                                "writable field `{}` has a space in its name: the chat command \
                                 `set <field> <value>` cannot name it (XEP-0325 can); e.g. `{}`",
                                n.value,
                                n.value.split_whitespace().collect::<Vec<_>>().join("_")
                            ),
                        );
                    }
                    names.insert(n.value.clone(), n.span.clone());
                    Some(n.value.clone())
                }
            }
        };
        let label = match &name {
            Some(n) => format!("field `{n}` of {device_label}"),
            None => format!("this field of {device_label}"),
        };
        let unit = match &raw.unit {
            Some(u) if u.value.chars().any(char::is_control) => {
                rep.error(&u.span, "`unit` must not contain control characters");
                String::new()
            }
            Some(u) => u.value.clone(),
            None => String::new(),
        };
        let field_type = match &raw.kind {
            None => Some(FieldType::Numeric),
            Some(t) => match t.value.as_str() {
                "numeric" => Some(FieldType::Numeric),
                "boolean" => Some(FieldType::Boolean),
                "integer" => Some(FieldType::Integer),
                "string" => Some(FieldType::String),
                other => {
                    let hint = suggestion(other, FIELD_TYPES.iter().copied());
                    rep.error(
                        &t.span,
                        format!(
                            "unknown field type `{other}`{hint} (types: {})",
                            list_names(FIELD_TYPES)
                        ),
                    );
                    None
                }
            },
        };
        let deadband = raw.deadband.as_ref().and_then(|d| {
            let v = deadband(rep, d)?;
            if matches!(field_type, Some(FieldType::Boolean | FieldType::String)) {
                rep.error(
                    &d.key,
                    "`deadband` only applies to numeric and integer fields",
                );
                return None;
            }
            Some(v)
        });
        let context = match (adapter, kind) {
            (Some(a), Some(k)) => {
                format!("but {label} uses adapter `{}` of type `{}`", a.id, k.name)
            }
            _ => String::new(),
        };
        let own = type_entries(
            rep,
            &raw.extra,
            kind.as_ref().copied(),
            Level::Field,
            &context,
        );
        let (Some(name), Some(mut field_type)) = (name, field_type) else {
            continue;
        };
        let registered = adapter.and_then(|a| a.registered);
        let settings = match kind {
            Some(k) => registered.and_then(|i| {
                let cx = FieldCx {
                    type_name: k.name,
                    adapter: adapter.and_then(|a| a.settings.as_ref()),
                    device,
                    own: &own,
                    name: &name,
                    kind: field_type,
                    written_type: raw.kind.as_ref(),
                    writable: raw.writable.as_ref(),
                    header: &raw.span,
                    label: &label,
                };
                parsers.0[i].field(cx, rep).map(|parsed| {
                    // A type the keys imply (a bit reads as a boolean) unless `type` says
                    // otherwise.
                    if raw.kind.is_none() {
                        field_type = parsed.implied_type.unwrap_or(field_type);
                    }
                    parsed.settings
                })
            }),
            None => None,
        };
        let Some(settings) = settings else { continue };
        out.push(FieldConfig {
            spec: FieldSpec {
                name: strings.get(&name),
                unit: strings.get(&unit),
                kind: field_type,
                writable: raw.writable.as_ref().is_some_and(|w| w.value),
            },
            deadband,
            settings,
        });
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    //! Loader-level tests: whole configurations in, a `Config` or positioned messages out.

    use super::*;
    pub(crate) use crate::config::testing::{check, env, errors, ok, warnings, PATH};
    use crate::config::{load_with, Loaded};
    use gateway_api::Value;
    use gateway_simulated::config::{
        DeviceSettings as SimulatedDevice, DEFAULT_OFFLINE_FOR, DEFAULT_PERIOD, DEFAULT_POLL,
    };
    use gateway_simulated::Generator;

    /// A minimal valid component head; line numbers in tests count from the line after it (5).
    pub(crate) const HEAD: &str = "[xmpp]\ndomain = \"sensors.example.org\"\nsecret = \"s\"\n[[adapter]]\nid = \"sim\"\ntype = \"simulated\"\n";

    pub(crate) fn with_head(rest: &str) -> String {
        format!("{HEAD}{rest}")
    }

    pub(crate) fn simulated(loaded: &Loaded, device: usize, field: usize) -> Generator {
        let s = &loaded.config.devices[device].fields[field].settings;
        s.get::<Generator>().expect("a simulated field").clone()
    }

    fn simulated_device(device: &DeviceConfig) -> &SimulatedDevice {
        let s = &device.settings;
        s.get::<SimulatedDevice>().expect("a simulated device")
    }

    const FULL: &str = r#"
[gateway]
name = "greenhouse-pi"
state_dir = "state"
history = "3d"

[xmpp]
mode = "component"
domain = "Sensors.Example.org"
server = "127.0.0.1:5347"
secret_file = "component.secret"

[access]
read    = ["alice@example.org", "@Example.org"]
control = ["alice@example.org"]

[publish]
presence = false
min_interval = "500ms"
deadband = 0.5
notify = ["ops@example.org"]
format = "full"
pubsub = "pubsub.example.org"
room = "plant@rooms.example.org"

[metrics]
listen = "127.0.0.1:9108"

[log]
level = "debug"

[[adapter]]
id = "sim"
type = "simulated"

[[device]]
id = "Boiler"
name = "Boiler room"
adapter = "sim"
poll = "2s"
offline_every = "5m"
offline_for = "20s"
access = { read = ["bob@example.org"] }

  [[device.field]]
  name = "temperature"
  unit = "°C"
  type = "numeric"
  min = 15
  max = 25.5
  period = "30s"
  deadband = 0.1

  [[device.field]]
  name = "burner"
  type = "boolean"
  writable = true
  value = "on"

  [[device.field]]
  name = "level"
  type = "integer"
  generator = "step"
  min = 0
  max = 10
  value = 3

  [[device.field]]
  name = "mode"
  type = "string"
  value = "auto"

[[device]]
id = "relay"
jid = "relay-1@sensors.example.org"
adapter = "sim"

  [[device.field]]
  name = "walk"
  generator = "random"
"#;

    fn full_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("component.secret"), "hunter2\n").unwrap();
        dir
    }

    #[test]
    fn a_full_valid_config() {
        let dir = full_dir();
        let path = dir.path().join("gateway.toml");
        let loaded = load_with(&path, FULL, LoadMode::Run, &env()).unwrap();
        assert_eq!(loaded.warnings, []);
        let c = &loaded.config;
        assert_eq!(c.path, path);
        assert_eq!(c.gateway.name, "greenhouse-pi");
        assert_eq!(c.gateway.state_dir, dir.path().join("state"));
        assert_eq!(c.gateway.history, Duration::from_secs(3 * 86_400));
        let XmppConfig::Component(x) = &c.xmpp else {
            panic!("component mode")
        };
        assert_eq!(x.domain, "sensors.example.org");
        assert_eq!(x.servers, ["127.0.0.1:5347"]);
        assert_eq!(x.secret.as_ref().unwrap().expose(), "hunter2");
        assert_eq!(x.ping_target, "example.org");
        assert_eq!(
            c.access.read,
            [
                AccessEntry::Jid("alice@example.org".into()),
                AccessEntry::Domain("example.org".into())
            ]
        );
        assert_eq!(
            c.access.control,
            [AccessEntry::Jid("alice@example.org".into())]
        );
        assert!(!c.publish.presence);
        assert_eq!(c.publish.min_interval, Duration::from_millis(500));
        assert_eq!(c.publish.deadband, Some(0.5));
        assert_eq!(c.publish.notify, ["ops@example.org"]);
        assert_eq!(c.publish.format, PushFormat::Full);
        assert_eq!(c.publish.pubsub.as_deref(), Some("pubsub.example.org"));
        assert_eq!(c.publish.room.as_deref(), Some("plant@rooms.example.org"));
        assert_eq!(
            c.metrics.as_ref().unwrap().listen,
            "127.0.0.1:9108".parse().unwrap()
        );
        assert_eq!(c.log.level.as_deref(), Some("debug"));
        assert_eq!(c.adapters.len(), 1);
        assert_eq!(&*c.adapters[0].id, "sim");
        assert_eq!(c.adapters[0].type_name, "simulated");

        assert_eq!(c.devices.len(), 2);
        let boiler = &c.devices[0];
        assert_eq!(boiler.id.as_str(), "boiler");
        assert_eq!(boiler.jid, "boiler@sensors.example.org");
        assert_eq!(boiler.name, "Boiler room");
        assert_eq!((&*boiler.adapter, boiler.adapter_index), ("sim", 0));
        assert!(boiler.password.is_none());
        let access = boiler.access.as_ref().unwrap();
        assert_eq!(access.read, [AccessEntry::Jid("bob@example.org".into())]);
        // Not given for the device: the [access] list.
        assert_eq!(access.control, c.access.control);
        let sim = simulated_device(boiler);
        assert_eq!(sim.poll, Duration::from_secs(2));
        assert_eq!(sim.offline_every, Some(Duration::from_secs(300)));
        assert_eq!(sim.offline_for, Duration::from_secs(20));

        let names: Vec<&str> = boiler.fields.iter().map(|f| &*f.spec.name).collect();
        assert_eq!(names, ["temperature", "burner", "level", "mode"]);
        let t = &boiler.fields[0];
        assert_eq!(
            (&*t.spec.unit, t.spec.kind, t.spec.writable),
            ("°C", FieldType::Numeric, false)
        );
        assert_eq!(t.deadband, Some(0.1));
        assert_eq!(
            simulated(&loaded, 0, 0),
            Generator::Sine {
                min: 15.0,
                max: 25.5,
                period: Duration::from_secs(30)
            }
        );
        assert!(boiler.fields[1].spec.writable);
        assert_eq!(
            simulated(&loaded, 0, 1),
            Generator::Constant {
                value: Value::Bool(true)
            }
        );
        assert_eq!(
            simulated(&loaded, 0, 2),
            Generator::Step {
                min: 0.0,
                max: 10.0,
                period: DEFAULT_PERIOD,
                start: 3.0
            }
        );
        assert_eq!(
            simulated(&loaded, 0, 3),
            Generator::Constant {
                value: Value::Text("auto".into())
            }
        );

        let relay = &c.devices[1];
        assert_eq!(relay.jid, "relay-1@sensors.example.org");
        assert_eq!(relay.name, "relay");
        assert!(relay.access.is_none());
        let sim = simulated_device(relay);
        assert_eq!(
            (sim.poll, sim.offline_every, sim.offline_for),
            (DEFAULT_POLL, None, DEFAULT_OFFLINE_FOR)
        );
        assert_eq!(
            simulated(&loaded, 1, 0),
            Generator::Random {
                min: 0.0,
                max: 100.0,
                start: 50.0
            }
        );
    }

    #[test]
    fn defaults() {
        let loaded = ok(&with_head(
            "[[device]]\nid = \"d\"\nadapter = \"sim\"\n[[device.field]]\nname = \"x\"\n",
        ));
        let c = &loaded.config;
        assert_eq!(c.gateway.name, "testhost");
        assert_eq!(c.gateway.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(c.gateway.history, Duration::from_secs(7 * 86_400));
        let XmppConfig::Component(x) = &c.xmpp else {
            panic!()
        };
        assert_eq!(x.servers, ["127.0.0.1:5347"]);
        assert!(c.publish.presence);
        assert_eq!(c.publish.min_interval, Duration::from_secs(2));
        assert_eq!(c.publish.deadband, None);
        assert_eq!(c.publish.format, PushFormat::Compact);
        assert!(c.metrics.is_none());
        assert!(c.log.level.is_none());
        assert!(c.access.read.is_empty() && c.access.control.is_empty());
        let f = &c.devices[0].fields[0];
        assert_eq!(
            (f.spec.kind, f.spec.writable, &*f.spec.unit, f.deadband),
            (FieldType::Numeric, false, "", None)
        );
        assert_eq!(
            simulated(&loaded, 0, 0),
            Generator::Sine {
                min: 0.0,
                max: 100.0,
                period: DEFAULT_PERIOD
            }
        );
        // The inline secret of HEAD is the only warning.
        assert_eq!(
            warnings(&loaded),
            ["3:1: inline `secret`: store secrets in a file: use `secret_file`"]
        );

        let no_host = Env {
            credentials_dir: None,
            hostname: None,
            state_directory: None,
            probe_state_dir: false,
            service: None,
        };
        let loaded = load_with(Path::new(PATH), HEAD, LoadMode::Check, &no_host).unwrap();
        assert_eq!(loaded.config.gateway.name, "xmpp-iot-gateway");
        let loaded = ok(&format!("{HEAD}[metrics]\n"));
        assert_eq!(
            loaded.config.metrics.unwrap().listen,
            "127.0.0.1:9108".parse().unwrap()
        );
    }

    #[test]
    fn unknown_key_with_did_you_mean_at_its_position() {
        let src = with_head("[[device]]\nid = \"d\"\nadapter = \"sim\"\n  [[device.field]]\n  name = \"t\"\n  perod = \"5s\"\n  colour = \"red\"\n");
        assert_eq!(
            errors(&src),
            [
                "12:3: unknown key `perod` in [[device.field]]; did you mean `period`?",
                "13:3: unknown key `colour` in [[device.field]] (known keys: `name`, `unit`, `type`, `writable`, \
                 `deadband`, `generator`, `min`, `max`, `period` and `value`)",
            ]
        );
        let e = errors("[gateway]\nnmae = \"x\"\n[xmpp]\ndomian = \"a.b\"\nsecret = \"s\"\n");
        assert_eq!(
            e,
            [
                "2:1: unknown key `nmae` in [gateway]; did you mean `name`?",
                // And `domain` is then missing: reported at the [xmpp] header.
                "3:1: component mode needs `domain`, e.g. `domain = \"sensors.example.org\"`",
                "4:1: unknown key `domian` in [xmpp]; did you mean `domain`?",
            ]
        );
    }

    #[test]
    fn full_diagnostic_line_has_the_path() {
        let e = check(&format!("{HEAD}[gateway]\nnmae = \"x\"\n")).unwrap_err();
        assert_eq!(
            e.0[0].to_string(),
            "/etc/gw/gateway.toml:8:1: unknown key `nmae` in [gateway]; did you mean `name`?"
        );
    }

    #[test]
    fn wrong_type_for_a_key() {
        let src = with_head("[[device]]\nid = 7\nadapter = \"sim\"\npoll = 5\n[[device.field]]\nname = \"x\"\nwritable = \"yes\"\nmin = \"low\"\n");
        assert_eq!(
            errors(&src),
            [
                "8:6: `id` must be a string, not an integer",
                "10:8: `poll` must be a duration string with a unit, e.g. \"5s\", not a bare number",
                "13:12: `writable` must be true or false, not a string",
                "14:7: `min` must be a number, not a string",
            ]
        );
    }

    pub(crate) fn device(fields: &str) -> String {
        with_head(&format!(
            "[[device]]\nid = \"d\"\nadapter = \"sim\"\n{fields}"
        ))
    }

    #[test]
    fn duplicate_device_ids_differing_by_case() {
        let src = with_head(
            "[[device]]\nid = \"boiler\"\nadapter = \"sim\"\n[[device.field]]\nname = \"t\"\n\
             [[device]]\nid = \"Boiler\"\nadapter = \"sim\"\n[[device.field]]\nname = \"t\"\n\
             [[device]]\nid = \"boiler\"\nadapter = \"sim\"\n[[device.field]]\nname = \"t\"\n",
        );
        assert_eq!(
            errors(&src),
            [
                "13:6: device id `Boiler` is the same as `boiler` (line 8) once lower-cased, as the XMPP server folds it",
                "18:6: device id `boiler` is already used (line 8)",
            ]
        );
    }

    #[test]
    fn device_id_must_be_a_valid_localpart() {
        let e = errors(&with_head(
            "[[device]]\nid = \"pump relay\"\nadapter = \"sim\"\n",
        ));
        assert_eq!(
            e,
            ["8:6: device id `pump relay` is not valid: a device id may only contain a-z, 0-9, '.', '_' and '-' (found ' ')"]
        );
    }

    #[test]
    fn unknown_adapter_reference() {
        let e = errors(&with_head(
            "[[device]]\nid = \"d\"\nadapter = \"simm\"\n[[device.field]]\nname = \"t\"\n",
        ));
        assert_eq!(
            e,
            ["9:11: device `d` names adapter `simm`, which is not defined; did you mean `sim`?"]
        );
        let e = errors(&with_head("[[device]]\nid = \"d\"\nadapter = \"plc\"\n"));
        assert_eq!(
            e,
            ["9:11: device `d` names adapter `plc`, which is not defined (adapters: `sim`)"]
        );
        let e = errors(&with_head("[[device]]\nid = \"d\"\n"));
        assert_eq!(e, ["7:1: device `d` needs `adapter = \"...\"` naming its [[adapter]] (adapters: `sim`)"]);
    }

    #[test]
    fn an_error_caused_by_another_is_left_to_its_cause() {
        // An adapter without a usable id may be the one the device names: only its own error.
        let e = errors(&with_head(
            "[[device]]\nid = \"d\"\nadapter = \"plc\"\n[[adapter]]\nid = 7\ntype = \"simulated\"\n",
        ));
        assert_eq!(e, ["11:6: `id` must be a string, not an integer"]);
        let e = errors(&with_head(
            "[[device]]\nid = \"d\"\nadapter = \"plc\"\n[[adapter]]\ntype = \"simulated\"\n",
        ));
        assert_eq!(
            e,
            ["10:1: this [[adapter]] needs an `id`, e.g. `id = \"sim\"`"]
        );
        // An alert naming a rejected device (any case): only the device's error.
        let e = errors(&with_head(
            "[[alert]]\nid = \"a\"\ndevice = \"pump relay\"\noffline = true\nto = [\"ops@example.org\"]\n\
             [[device]]\nid = \"Pump Relay\"\nadapter = \"sim\"\n",
        ));
        assert_eq!(
            e,
            ["13:6: device id `Pump Relay` is not valid: a device id may only contain a-z, 0-9, '.', '_' and '-' (found ' ')"]
        );
        // An alert on a field that was rejected: only the field's error.
        let e = errors(&with_head(
            "[[alert]]\nid = \"a\"\ndevice = \"d\"\nfield = \"Temp\"\nabove = 1\nto = [\"ops@example.org\"]\n\
             [[device]]\nid = \"d\"\nadapter = \"sim\"\n[[device.field]]\nname = \"temp\"\ngenerator = \"constant\"\n",
        ));
        assert_eq!(
            e,
            ["18:1: field `temp` of device `d` uses generator `constant` and needs a `value`"]
        );
        // A device that is not written at all is still reported at the alert.
        let e = errors(&with_head(
            "[[alert]]\nid = \"a\"\ndevice = \"pmup\"\noffline = true\nto = [\"ops@example.org\"]\n",
        ));
        assert_eq!(e, ["9:10: no [[device]] has id `pmup`"]);
    }

    #[test]
    fn adapter_ids_are_unique_and_required() {
        let e = errors(&with_head(
            "[[adapter]]\nid = \"sim\"\ntype = \"simulated\"\n[[adapter]]\ntype = \"simulated\"\n",
        ));
        assert_eq!(
            e,
            [
                "8:6: adapter id `sim` is already used (line 5)",
                "10:1: this [[adapter]] needs an `id`, e.g. `id = \"sim\"`",
            ]
        );
    }

    #[test]
    fn adapter_type_errors_name_the_type_and_its_keys() {
        let src = "[xmpp]\ndomain = \"s.example.org\"\nsecret = \"x\"\n\
                   [[adapter]]\nid = \"broker\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\nclient_id = \"gw\"\n\
                   [[adapter]]\nid = \"x\"\ntype = \"modbus\"\n\
                   [[adapter]]\nid = \"y\"\ntype = \"modbus-rtu\"\nurl = \"nope\"\n";
        assert_eq!(
            errors(src),
            [
                "11:8: unknown adapter type `modbus`; did you mean `modbus-tcp`? (types: mqtt, modbus-tcp, modbus-rtu, serial, simulated, linux-sensors)",
                "12:1: a `modbus-rtu` adapter needs `port`, e.g. `port = \"/dev/ttyUSB0\"`",
                "15:1: `url` is a key of `mqtt` adapters, but this adapter's type is `modbus-rtu`",
            ]
        );
    }

    #[test]
    fn keys_of_another_adapter_type() {
        let e = errors(&device(
            "topic = \"a/b\"\nunit_id = 3\n[[device.field]]\nname = \"t\"\nregister = \"holding\"\njson = \"/t\"\ngenerator = \"sine\"\n",
        ));
        assert_eq!(
            e,
            [
                "10:1: `topic` is a key of `mqtt` devices, but device `d` uses adapter `sim` of type `simulated`",
                "11:1: `unit_id` is a key of `modbus-tcp` and `modbus-rtu` devices, but device `d` uses adapter `sim` of type `simulated`",
                "14:1: `register` is a key of `modbus-tcp` and `modbus-rtu` fields, but field `t` of device `d` uses adapter `sim` of type `simulated`",
                "15:1: `json` is a key of `mqtt` and `serial` fields, but field `t` of device `d` uses adapter `sim` of type `simulated`",
            ]
        );
        // A simulated adapter takes no keys but id and type.
        let e = errors(&with_head(
            "[[adapter]]\nid = \"s2\"\ntype = \"simulated\"\ntimeout = \"1s\"\nfoo = 1\n",
        ));
        assert_eq!(
            e,
            [
                "10:1: `timeout` is a key of `modbus-tcp` and `modbus-rtu` adapters, but this adapter's type is `simulated`",
                "11:1: unknown key `foo` in [[adapter]] (known keys: `id` and `type`)",
            ]
        );
    }

    #[test]
    fn every_key_of_the_spec_example_parses() {
        // The full example configuration, trimmed of comments: only the unavailable adapter types are errors.
        let src = r#"
[gateway]
name = "greenhouse-pi"
state_dir = "/var/lib/xmpp-iot-gateway"
history = "7d"
[xmpp]
mode = "component"
domain = "sensors.example.org"
server = "127.0.0.1:5347"
secret = "x"
[access]
read    = ["alice@example.org", "@example.org"]
control = ["alice@example.org"]
[publish]
presence = true
min_interval = "2s"
deadband = 0.0
notify = ["ops@example.org"]
pubsub = "pubsub.example.org"
room = "plant@rooms.example.org"
[metrics]
listen = "127.0.0.1:9108"
[log]
level = "info"
[[adapter]]
id = "broker"
type = "mqtt"
url = "mqtt://127.0.0.1:1883"
username = "u"
password_file = "p"
ca_file = "ca"
client_id = "c"
[[adapter]]
id = "rs485"
type = "modbus-rtu"
port = "/dev/ttyUSB0"
baud = 9600
data_bits = 8
parity = "none"
stop_bits = 1
timeout = "500ms"
[[adapter]]
id = "plc"
type = "modbus-tcp"
address = "192.168.1.20:502"
[[adapter]]
id = "uart"
type = "serial"
port = "/dev/ttyACM0"
baud = 115200
format = "json"
pattern = '^(?P<id>\w+) (?P<temp>[-\d.]+)$'
[[adapter]]
id = "sim"
type = "simulated"
[[device]]
id = "boiler"
name = "Boiler room"
adapter = "broker"
topic = "plant/boiler/state"
availability_topic = "plant/boiler/status"
command_topic = "plant/boiler/set"
  [[device.field]]
  name = "temperature"
  unit = "°C"
  type = "numeric"
  json = "/temp"
  writable = false
[[device]]
id = "meter"
adapter = "rs485"
unit_id = 1
poll = "2s"
  [[device.field]]
  name = "power"
  register = "holding"
  address = 100
  data_type = "float32"
  byte_order = "ABCD"
  length = 8
  scale = 0.1
  offset = 0.0
[[device]]
id = "probe"
adapter = "uart"
match = { id = "250715" }
  [[device.field]]
  name = "temp"
  key = "temp"
"#;
        // Every documented adapter type is in this build: the whole example loads.
        ok(src);
    }

    #[test]
    fn missing_secret_file_is_an_error_for_run_and_a_warning_for_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        let src = "[xmpp]\ndomain = \"s.example.org\"\nsecret_file = \"component.secret\"\n";
        let missing = dir.path().join("component.secret");

        let e = load_with(&path, src, LoadMode::Run, &env()).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(
            e.0[0].to_string(),
            format!(
                "{}:3:15: `secret_file`: `{}` does not exist",
                path.display(),
                missing.display()
            )
        );

        let loaded = load_with(&path, src, LoadMode::Check, &env()).unwrap();
        let XmppConfig::Component(c) = &loaded.config.xmpp else {
            panic!()
        };
        assert!(c.secret.is_none());
        assert_eq!(
            warnings(&loaded),
            [
                "1:1: no [[device]] is configured: the gateway will have nothing to show"
                    .to_owned(),
                format!(
                    "3:15: `secret_file`: `{}` does not exist (`run` needs it)",
                    missing.display()
                ),
            ]
        );

        // Present but empty: an error in both modes.
        std::fs::write(&missing, "\n").unwrap();
        for mode in [LoadMode::Run, LoadMode::Check] {
            let e = load_with(&path, src, mode, &env()).unwrap_err();
            assert!(e.0[0].message.ends_with("is empty"), "{e}");
        }
        std::fs::write(&missing, "s3cr3t-value\n").unwrap();
        let loaded = load_with(&path, src, LoadMode::Run, &env()).unwrap();
        let XmppConfig::Component(c) = &loaded.config.xmpp else {
            panic!()
        };
        assert_eq!(c.secret.as_ref().unwrap().expose(), "s3cr3t-value");
        // The secret never shows in a Debug print of the config.
        assert!(!format!("{:?}", loaded.config).contains("s3cr3t"));
    }

    #[test]
    fn credentials_directory_is_searched_first() {
        let config_dir = tempfile::tempdir().unwrap();
        let creds = tempfile::tempdir().unwrap();
        std::fs::write(creds.path().join("component.secret"), "from-systemd\n").unwrap();
        std::fs::write(config_dir.path().join("component.secret"), "from-etc\n").unwrap();
        let path = config_dir.path().join("gateway.toml");
        let src = "[xmpp]\ndomain = \"s.example.org\"\nsecret_file = \"component.secret\"\n";
        let env = Env {
            credentials_dir: Some(creds.path().to_owned()),
            hostname: None,
            state_directory: None,
            probe_state_dir: false,
            service: None,
        };
        let loaded = load_with(&path, src, LoadMode::Run, &env).unwrap();
        let XmppConfig::Component(c) = &loaded.config.xmpp else {
            panic!()
        };
        assert_eq!(c.secret.as_ref().unwrap().expose(), "from-systemd");

        // Not in the credentials directory: next to the config file.
        std::fs::remove_file(creds.path().join("component.secret")).unwrap();
        let loaded = load_with(&path, src, LoadMode::Run, &env).unwrap();
        let XmppConfig::Component(c) = &loaded.config.xmpp else {
            panic!()
        };
        assert_eq!(c.secret.as_ref().unwrap().expose(), "from-etc");

        // Nowhere: the message names both places.
        std::fs::remove_file(config_dir.path().join("component.secret")).unwrap();
        let e = load_with(&path, src, LoadMode::Run, &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("$CREDENTIALS_DIRECTORY"), "{e}");
    }

    #[test]
    fn inline_secrets_warn_and_never_show() {
        let src = "[xmpp]\nmode = \"client\"\njid = \"gw@example.org\"\npassword = \"pa55word\"\nsecret = \"other\"\n";
        let e = check(src).unwrap_err().to_string();
        assert!(!e.contains("pa55word") && !e.contains("other\""), "{e}");
        assert!(
            e.contains("`secret` is a component-mode key of [xmpp], but `mode = \"client\"`"),
            "{e}"
        );
        let loaded =
            ok("[xmpp]\nmode = \"client\"\njid = \"gw@example.org\"\npassword = \"pa55word\"\n");
        let w = warnings(&loaded).join("\n");
        assert!(
            w.contains("4:1: inline `password`: store secrets in a file: use `password_file`"),
            "{w}"
        );
        assert!(!w.contains("pa55word"));
        let e = errors("[xmpp]\ndomain = \"s.example.org\"\nsecret = \"\"\n");
        assert_eq!(e, ["3:10: `secret` is empty"]);
        let e = errors("[xmpp]\ndomain = \"s.example.org\"\nsecret = \"a\"\nsecret_file = \"f\"\n");
        assert_eq!(e, ["3:1: give either `secret_file` or `secret`, not both"]);
    }

    #[test]
    fn client_mode() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gw.pass"), "pw\n").unwrap();
        std::fs::write(dir.path().join("own.pass"), "pw2\n").unwrap();
        std::fs::write(dir.path().join("ca.pem"), "pem\n").unwrap();
        let path = dir.path().join("gateway.toml");
        let src = r#"
[xmpp]
mode = "client"
jid = "Gateway@Example.org"
password_file = "gw.pass"
server = "localhost"
ca_file = "ca.pem"
tls = "none"
[[adapter]]
id = "sim"
type = "simulated"
[[device]]
id = "boiler"
adapter = "sim"
[[device.field]]
name = "t"
[[device]]
id = "own"
jid = "own@example.org"
password_file = "own.pass"
adapter = "sim"
[[device.field]]
name = "t"
"#;
        let loaded = load_with(&path, src, LoadMode::Run, &env()).unwrap();
        let XmppConfig::Client(c) = &loaded.config.xmpp else {
            panic!("client mode")
        };
        assert_eq!(c.jid, "gateway@example.org");
        assert_eq!(c.password.as_ref().unwrap().expose(), "pw");
        assert_eq!(c.servers, ["localhost:5222"]);
        assert_eq!(
            c.ca_file.as_deref(),
            Some(dir.path().join("ca.pem").as_path())
        );
        assert_eq!(c.tls, TlsMode::None);
        let d = &loaded.config.devices;
        assert_eq!(d[0].jid, "gateway@example.org/boiler");
        assert!(d[0].password.is_none());
        assert_eq!(d[1].jid, "own@example.org");
        assert_eq!(d[1].password.as_ref().unwrap().expose(), "pw2");

        // Missing CA: an error for run, a warning for check.
        std::fs::remove_file(dir.path().join("ca.pem")).unwrap();
        let e = load_with(&path, src, LoadMode::Run, &env()).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert!(e.0[0].message.starts_with("`ca_file`: "), "{e}");
        let loaded = load_with(&path, src, LoadMode::Check, &env()).unwrap();
        assert!(
            warnings(&loaded)[0].starts_with("7:11: `ca_file`: "),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn client_mode_requirements() {
        let e = errors("[xmpp]\nmode = \"client\"\ndomain = \"x.org\"\n");
        assert_eq!(
            e,
            [
                "1:1: client mode needs `jid`, the gateway's account, e.g. `jid = \"gateway@example.org\"`",
                "1:1: client mode needs `password_file`: the file holding the account's password",
                "3:1: `domain` is a component-mode key of [xmpp], but `mode = \"client\"`",
            ]
        );
        let e = errors("[xmpp]\njid = \"gw@example.org\"\npassword = \"x\"\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("`jid` is a client-mode key of [xmpp], but `mode` is not set and defaults to `component`: add `mode = \"client\"`"), "{e:?}");
        let e =
            errors("[xmpp]\nmode = \"client\"\njid = \"gw@example.org/res\"\npassword = \"x\"\n");
        assert_eq!(e, ["3:7: `jid` `gw@example.org/res` is not a bare JID: it has a resource; use the bare JID `gw@example.org`"]);
        let e = errors("[xmpp]\nmode = \"clinet\"\n");
        assert_eq!(e, ["2:8: unknown XMPP mode `clinet`; did you mean `client`? (modes: `component`, `client`)"]);
    }

    #[test]
    fn plaintext_only_on_loopback() {
        let head = "[xmpp]\nmode = \"client\"\njid = \"gw@example.org\"\npassword = \"x\"\ntls = \"none\"\n";
        let e = errors(&format!("{head}server = \"xmpp.example.org:5222\"\n"));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("5:7: `tls = \"none\"` is only allowed for a loopback server"),
            "{e:?}"
        );
        assert!(errors(head)[0].contains("not `example.org`"));
        for server in [
            "127.0.0.1:5222",
            "127.1.2.3",
            "[::1]:5222",
            "localhost:5222",
        ] {
            ok(&format!("{head}server = \"{server}\"\n"));
        }
        ok("[xmpp]\nmode = \"client\"\njid = \"gw@localhost\"\npassword = \"x\"\ntls = \"none\"\n");
        let e = errors("[xmpp]\nmode = \"client\"\njid = \"gw@example.org\"\npassword = \"x\"\ntls = \"off\"\n");
        assert!(e[0].starts_with("5:7: unknown `tls` mode `off`"), "{e:?}");
    }

    #[test]
    fn push_format_is_compact_or_full() {
        let e = errors(&with_head("[publish]\nformat = \"compat\"\n"));
        assert_eq!(
            e,
            ["8:10: unknown `format` `compat`; did you mean `compact`? (formats: `compact`, `full`, `text`)"]
        );
        let e = errors(&with_head("[publish]\nformat = \"xml\"\n"));
        assert_eq!(
            e,
            ["8:10: unknown `format` `xml` (formats: `compact`, `full`, `text`)"]
        );
        let c = ok(&with_head("[publish]\nformat = \"compact\"\n"));
        assert_eq!(c.config.publish.format, PushFormat::Compact);
        let c = ok(&with_head("[publish]\nformat = \"text\"\n"));
        assert_eq!(c.config.publish.format, PushFormat::Text);
    }

    #[test]
    fn client_device_jids() {
        let head = "[xmpp]\nmode = \"client\"\njid = \"gw@example.org\"\npassword = \"x\"\n\
                    [[adapter]]\nid = \"sim\"\ntype = \"simulated\"\n";
        let loaded = ok(&format!(
            "{head}[[device]]\nid = \"a\"\njid = \"gw@example.org/alpha\"\nadapter = \"sim\"\n"
        ));
        assert_eq!(loaded.config.devices[0].jid, "gw@example.org/alpha");
        let e = errors(&format!(
            "{head}[[device]]\nid = \"a\"\njid = \"other@example.org\"\nadapter = \"sim\"\n"
        ));
        assert!(e[0].contains("is not on the gateway's account `gw@example.org`; give the device a `password_file`"), "{e:?}");
        let e = errors(&format!(
            "{head}[[device]]\nid = \"a\"\npassword = \"p\"\nadapter = \"sim\"\n"
        ));
        assert!(
            e[0].contains("device `a` logs in with its own password, so it needs its own `jid`"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{head}[[device]]\nid = \"a\"\nadapter = \"sim\"\n[[device]]\nid = \"b\"\njid = \"gw@example.org/a\"\nadapter = \"sim\"\n"
        ));
        assert_eq!(e, ["13:7: device `b` would have the JID `gw@example.org/a`, already used by device `a` (line 9)"]);
        // `<account>/gateway` is the gateway's own session.
        let e = errors(&format!(
            "{head}[[device]]\nid = \"gateway\"\nadapter = \"sim\"\n"
        ));
        assert_eq!(e, ["9:6: device `gateway`: `gw@example.org/gateway` is the gateway's own session in client mode; give the device another id, or a `jid` with another resource"]);
        let e = errors(&format!(
            "{head}[[device]]\nid = \"a\"\njid = \"gw@example.org/gateway\"\nadapter = \"sim\"\n"
        ));
        assert_eq!(e, ["10:7: device `a`: `gw@example.org/gateway` is the gateway's own session in client mode; choose another resource"]);
    }

    #[test]
    fn component_device_jids() {
        let e = errors(&with_head(
            "[[device]]\nid = \"a\"\njid = \"a@elsewhere.org\"\nadapter = \"sim\"\n",
        ));
        assert_eq!(e, ["9:7: device `a`: `jid` must be a bare JID on the component domain, like `a@sensors.example.org`"]);
        let e = errors(&with_head(
            "[[device]]\nid = \"a\"\npassword_file = \"p\"\nadapter = \"sim\"\n",
        ));
        assert!(
            e[0].starts_with("9:1: a device's own password is only used in client mode"),
            "{e:?}"
        );
    }

    #[test]
    fn max_stanza_size_is_bytes_within_bounds() {
        let head = "[xmpp]\ndomain = \"s.example.org\"\nsecret = \"s\"\n";
        assert_eq!(ok(head).config.xmpp.max_stanza_size(), 1_048_576);
        let loaded = ok(&format!("{head}max_stanza_size = 524288\n"));
        assert_eq!(loaded.config.xmpp.max_stanza_size(), 524_288);
        let client = "[xmpp]\nmode = \"client\"\njid = \"gw@localhost\"\npassword = \"p\"\ntls = \"none\"\nserver = \"127.0.0.1:5222\"\nmax_stanza_size = 65536\n";
        assert_eq!(ok(client).config.xmpp.max_stanza_size(), 65_536);
        for bad in ["1000", "20000.5", "100000000"] {
            let e = errors(&format!("{head}max_stanza_size = {bad}\n"));
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(
                e[0].starts_with("4:19: `max_stanza_size` must be a whole number of bytes"),
                "{e:?}"
            );
        }
        let e = errors(&format!("{head}max_stanza_size = \"1MiB\"\n"));
        assert!(e[0].starts_with("4:19:"), "{e:?}");
    }

    #[test]
    fn domains_and_ping_targets() {
        let ping = |domain: &str| {
            let loaded = ok(&format!("[xmpp]\ndomain = \"{domain}\"\nsecret = \"s\"\n"));
            let XmppConfig::Component(c) = loaded.config.xmpp else {
                panic!()
            };
            (c.domain, c.ping_target)
        };
        assert_eq!(
            ping("Sensors.Example.ORG"),
            ("sensors.example.org".into(), "example.org".into())
        );
        assert_eq!(
            ping("sensors.localhost"),
            ("sensors.localhost".into(), "localhost".into())
        );
        let loaded = ok("[xmpp]\ndomain = \"iot.example.org\"\nsecret = \"s\"\nping_target = \"xmpp.example.org\"\n");
        let XmppConfig::Component(c) = loaded.config.xmpp else {
            panic!()
        };
        assert_eq!(c.ping_target, "xmpp.example.org");
        let e = errors("[xmpp]\ndomain = \"sensors\"\nsecret = \"s\"\n");
        assert!(
            e[0].starts_with("2:10: the component domain `sensors` has a single label"),
            "{e:?}"
        );
        let e = errors("[xmpp]\ndomain = \"sensors example.org\"\nsecret = \"s\"\n");
        assert!(
            e[0].starts_with("2:10: `domain`: `sensors example.org` is not a domain"),
            "{e:?}"
        );
        let e = errors("[xmpp]\ndomain = \"a.b\"\nsecret = \"s\"\nserver = \"127.0.0.1:99999\"\n");
        assert!(
            e[0].starts_with("4:10: `server` `127.0.0.1:99999` is not `host:port`"),
            "{e:?}"
        );
        assert_eq!(errors("")[0], "1:1: missing [xmpp] section: give `mode = \"component\"` with `domain` and `secret_file`, or `mode = \"client\"` with `jid` and `password_file`");
    }

    #[test]
    fn server_is_one_address_or_a_list_tried_in_turn() {
        let head = "[xmpp]\ndomain = \"sensors.example.org\"\nsecret = \"s\"\n";
        let loaded = ok(&format!(
            "{head}server = [\"xmpp1.example.org\", \"10.0.0.2:5348\"]\n"
        ));
        let XmppConfig::Component(c) = &loaded.config.xmpp else {
            panic!("component mode")
        };
        assert_eq!(c.servers, ["xmpp1.example.org:5347", "10.0.0.2:5348"]);
        // Each bad entry is reported where it stands.
        let e = errors(&format!("{head}server = [\"a:1\", \"b:99999\", 7]\n"));
        assert_eq!(
            e,
            ["4:29: `server` must list strings, not an integer",],
            "{e:?}"
        );
        let e = errors(&format!("{head}server = [\"a:1\", \"b:99999\"]\n"));
        assert!(
            e[0].starts_with("4:18: `server` `b:99999` is not `host:port`"),
            "{e:?}"
        );
        let e = errors(&format!("{head}server = []\n"));
        assert!(e[0].starts_with("4:10: `server` lists no server"), "{e:?}");
        let e = errors(&format!("{head}server = 5347\n"));
        assert!(
            e[0].starts_with("4:10: `server` must be a string or a list of strings"),
            "{e:?}"
        );
        // Client mode: plaintext only when every server is on loopback.
        let head =
            "[xmpp]\nmode = \"client\"\njid = \"gw@localhost\"\npassword = \"p\"\ntls = \"none\"\n";
        ok(&format!(
            "{head}server = [\"127.0.0.1:5222\", \"localhost:5223\"]\n"
        ));
        let e = errors(&format!(
            "{head}server = [\"127.0.0.1:5222\", \"xmpp.example.org\"]\n"
        ));
        assert!(e[0].contains("not `xmpp.example.org`"), "{e:?}");
    }

    #[test]
    fn access_lists() {
        let e = errors(&with_head(
            "[access]\nread = [\"alice@example.org/phone\", \"example.org\", \"@bad domain\", \"@ok.org\"]\ncontrol = [\"ok@x.org\"]\n",
        ));
        assert_eq!(
            e,
            [
                "8:9: `read` entry `alice@example.org/phone` is not a bare JID or `@domain`: it has a resource; use the bare JID `alice@example.org`",
                "8:36: `read` entry `example.org` is not a bare JID or `@domain`: write `@example.org` for everyone on `example.org`, or `user@example.org` for one account",
                "8:51: `read` entry `@bad domain` is not a bare JID or `@domain`: `bad domain` is not a domain: it contains ' '",
            ]
        );
        let loaded = ok(&device(
            "access.control = [\"Bob@Example.org\"]\n[[device.field]]\nname = \"t\"\n",
        ));
        let access = loaded.config.devices[0].access.clone().unwrap();
        assert_eq!(access.control, [AccessEntry::Jid("bob@example.org".into())]);
        assert!(access.read.is_empty());
        let e = errors(&device("access = { raed = [] }\n"));
        assert_eq!(
            e[0],
            "10:12: unknown key `raed` in `access`; did you mean `read`?"
        );
    }

    #[test]
    fn publish_metrics_and_log() {
        let e = errors(&with_head(
            "[publish]\ndeadband = -1\nnotify = [\"@example.org\"]\nroom = \"rooms.example.org\"\npubsub = \"a@b/c\"\n\
             [metrics]\nlisten = \"nowhere\"\n[log]\nlevel = \"inof\"\n",
        ));
        assert_eq!(
            e,
            [
                "8:12: `deadband` must be zero or more",
                "9:11: `notify` entry `@example.org` is not a bare JID: the part before `@` is empty",
                "10:8: `room` `rooms.example.org` is not a room JID (`room@service`): it has no `user@` part (`rooms.example.org` is a whole server)",
                "11:10: `pubsub` must be a service JID without resource, e.g. `a@b`",
                "13:10: `listen` `nowhere` must be an IP address and port, e.g. \"127.0.0.1:9108\"",
                "15:9: unknown log level `inof`; did you mean `info`? (levels: `trace`, `debug`, `info`, `warn`, `error` and `off`, or a filter like `xmpp_iot_gateway=debug`)",
            ]
        );
        let loaded = ok(&with_head("[log]\nlevel = \"xmpp_iot_gateway=debug,info\"\n[metrics]\nlisten = \"localhost:9100\"\n"));
        assert_eq!(
            loaded.config.log.level.as_deref(),
            Some("xmpp_iot_gateway=debug,info")
        );
        assert_eq!(
            loaded.config.metrics.unwrap().listen,
            "127.0.0.1:9100".parse().unwrap()
        );
    }

    #[test]
    fn durations() {
        let loaded = ok(&with_head(
            "[gateway]\nhistory = \"0\"\n[publish]\nmin_interval = \"1m 30s\"\n",
        ));
        assert_eq!(loaded.config.gateway.history, Duration::ZERO);
        assert_eq!(loaded.config.publish.min_interval, Duration::from_secs(90));
        let loaded = ok(&with_head("[gateway]\nhistory = 0\n"));
        assert_eq!(loaded.config.gateway.history, Duration::ZERO);
        let e = errors(&with_head("[gateway]\nhistory = \"7 days ago\"\n"));
        assert!(
            e[0].starts_with("8:11: `history`: `7 days ago` is not a duration"),
            "{e:?}"
        );
    }

    #[test]
    fn state_dir_defaults_to_the_systemd_state_directory() {
        let src = with_head("");
        let env = Env {
            state_directory: Some(PathBuf::from("/var/lib/private/gw")),
            probe_state_dir: false,
            service: None,
            ..env()
        };
        let loaded = load_with(Path::new(PATH), &src, LoadMode::Check, &env).unwrap();
        assert_eq!(
            loaded.config.gateway.state_dir,
            PathBuf::from("/var/lib/private/gw")
        );
        // An explicit `state_dir` wins.
        let src = with_head("[gateway]\nstate_dir = \"/srv/gw\"\n");
        let loaded = load_with(Path::new(PATH), &src, LoadMode::Check, &env).unwrap();
        assert_eq!(loaded.config.gateway.state_dir, PathBuf::from("/srv/gw"));
    }

    #[test]
    fn relative_state_dir_is_next_to_the_config_file() {
        let loaded = ok(&with_head("[gateway]\nstate_dir = \"data\"\n"));
        assert_eq!(
            loaded.config.gateway.state_dir,
            PathBuf::from("/etc/gw/data")
        );
        let loaded = ok(&with_head("[gateway]\nstate_dir = \"/srv/gw\"\n"));
        assert_eq!(loaded.config.gateway.state_dir, PathBuf::from("/srv/gw"));
    }

    #[test]
    fn field_rules() {
        let e = errors(&device(
            "[[device.field]]\nname = \"t\"\n[[device.field]]\nname = \"t\"\n[[device.field]]\nname = \"a\\tb\"\n\
             [[device.field]]\nname = \"\"\n[[device.field]]\nunit = \"x\"\n[[device.field]]\nname = \"s\"\ntype = \"float\"\n\
             [[device.field]]\nname = \"b\"\ntype = \"boolean\"\nvalue = true\ndeadband = 1\n",
        ));
        assert_eq!(
            e,
            [
                "13:8: field `t` is already defined for device `d` (line 11)",
                "15:8: `name` must not contain control characters (tabs, newlines...)",
                "17:8: `name` must not be empty",
                "18:1: this field of device `d` needs a `name`",
                "22:8: unknown field type `float` (types: `numeric`, `boolean`, `integer` and `string`)",
                "27:1: `deadband` only applies to numeric and integer fields",
            ]
        );
    }

    #[test]
    fn collects_many_errors_in_one_run() {
        let src = r#"
[gateway]
histroy = "7d"
[xmpp]
domain = "sensors.example.org"
secret = "s"
[[adapter]]
id = "sim"
type = "simulated"
[[adapter]]
id = "bus"
type = "mqtt"
[[device]]
id = "a"
adapter = "sim"
  [[device.field]]
  name = "x"
  max = -1
[[device]]
id = "A"
adapter = "sim"
[[device]]
id = "c"
adapter = "bsu"
"#;
        let e = errors(src);
        assert_eq!(
            e,
            [
                "3:1: unknown key `histroy` in [gateway]; did you mean `history`?",
                "10:1: an `mqtt` adapter needs `url`, e.g. `url = \"mqtt://127.0.0.1:1883\"` (or `mqtts://` for TLS)",
                "18:9: `min` (0) must be less than `max` (-1)",
                "20:6: device id `A` is the same as `a` (line 14) once lower-cased, as the XMPP server folds it",
                "24:11: device `c` names adapter `bsu`, which is not defined; did you mean `bus`?",
            ]
        );
    }

    #[test]
    fn a_syntax_error_comes_alone() {
        let e = errors("[gateway]\nname = \"x\"\nhistory = 7d\nnmae = 1\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("3:12: invalid TOML: "), "{e:?}");
        let e = errors("[gateway]\nname = \"x\"\nname = \"y\"\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("3:1: invalid TOML: duplicate key `name`"),
            "{e:?}"
        );
    }
}
