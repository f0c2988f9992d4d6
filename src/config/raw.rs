//! The configuration as written: a typed mirror of `gateway.toml` that keeps every position.
//!
//! The file is parsed with `toml_edit` (which keeps the byte span of every key and value) and
//! walked section by section. This layer checks the *shape*: which keys exist, and that each
//! holds the right TOML type (a string, a boolean, a list of strings, a duration string...).
//! Every unknown key is reported with a "did you mean" when a known key is close; walking on
//! after an error lets one run report every problem. Meaning (cross-references, JIDs, secrets)
//! is [`super::validate`]'s job.
//!
//! The keys of `[[adapter]]`, `[[device]]` and `[[device.field]]` that depend on the adapter
//! type are kept as raw [`Entry`]s: which of them are allowed is only known once the device's
//! adapter is, so `validate` checks them against [`all_types`] and hands them to the type.

use std::time::Duration;

use gateway_toolkit::{list_names, suggestion, Report, Span};
use toml_edit::ImDocument;

pub(crate) use gateway_toolkit::{unknown_key, Entry, Section, Spanned, StringList};

/// The keys one adapter type adds to `[[adapter]]`, `[[device]]` and `[[device.field]]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TypeKeys {
    pub name: &'static str,
    pub adapter: &'static [&'static str],
    pub device: &'static [&'static str],
    pub field: &'static [&'static str],
}

/// Every adapter type this build knows, by `type = ...` name, in the order messages name them
/// (the order of `src/adapter_registry.rs`).
pub(crate) fn all_types() -> Vec<TypeKeys> {
    let mut all: Vec<TypeKeys> = Vec::new();
    for t in crate::adapter_registry::TYPES {
        for name in t.names() {
            let keys = t.keys(name);
            all.push(TypeKeys {
                name,
                adapter: keys.adapter,
                device: keys.device,
                field: keys.field,
            });
        }
    }
    all
}

pub(crate) fn type_keys(name: &str) -> Option<TypeKeys> {
    all_types().into_iter().find(|t| t.name == name)
}

pub(crate) const TOP_KEYS: &[&str] = &[
    "gateway", "xmpp", "access", "publish", "metrics", "log", "adapter", "device", "alert",
];
pub(crate) const GATEWAY_KEYS: &[&str] = &[
    "name",
    "state_dir",
    "history",
    "history_max_mb",
    "commit_interval",
];
pub(crate) const COMPONENT_KEYS: &[&str] =
    &["domain", "server", "secret_file", "secret", "ping_target"];
pub(crate) const CLIENT_KEYS: &[&str] = &[
    "jid",
    "password_file",
    "password",
    "server",
    "ca_file",
    "tls",
];
pub(crate) const XMPP_KEYS: &[&str] = &[
    "mode",
    "domain",
    "server",
    "secret_file",
    "secret",
    "ping_target",
    "jid",
    "password_file",
    "password",
    "ca_file",
    "tls",
    "max_stanza_size",
];
pub(crate) const ACCESS_KEYS: &[&str] = &["read", "control"];
pub(crate) const PUBLISH_KEYS: &[&str] = &[
    "presence",
    "min_interval",
    "deadband",
    "notify",
    "format",
    "pubsub",
    "room",
];
pub(crate) const METRICS_KEYS: &[&str] = &["listen"];
pub(crate) const LOG_KEYS: &[&str] = &["level"];
pub(crate) const ADAPTER_COMMON: &[&str] = &["id", "type"];
pub(crate) const DEVICE_COMMON: &[&str] = &[
    "id",
    "jid",
    "password_file",
    "password",
    "name",
    "adapter",
    "access",
    "field",
];
pub(crate) const FIELD_COMMON: &[&str] = &["name", "unit", "type", "writable", "deadband"];

/// `[gateway]`
#[derive(Debug, Default)]
pub(crate) struct RawGateway {
    pub name: Option<Spanned<String>>,
    pub state_dir: Option<Spanned<String>>,
    pub history: Option<Spanned<Duration>>,
    pub history_max_mb: Option<Spanned<f64>>,
    pub commit_interval: Option<Spanned<Duration>>,
}

/// `[xmpp]`, with the keys of both modes (which belong to which is checked by `validate`).
#[derive(Debug, Default)]
pub(crate) struct RawXmpp {
    /// The `[xmpp]` header.
    pub span: Span,
    pub mode: Option<Spanned<String>>,
    pub domain: Option<Spanned<String>>,
    /// `server = "host:port"` or a list of them, tried in turn.
    pub server: Option<StringList>,
    pub secret_file: Option<Spanned<String>>,
    pub secret: Option<Spanned<String>>,
    pub ping_target: Option<Spanned<String>>,
    pub jid: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub tls: Option<Spanned<String>>,
    /// Both modes: bytes per incoming stanza.
    pub max_stanza_size: Option<Spanned<f64>>,
    /// Keys present with a wrong type (reported): not to be reported missing.
    pub bad: Vec<String>,
}

impl RawXmpp {
    /// The keys present, by name, for the "belongs to the other mode" check.
    pub fn present(&self) -> Vec<(&'static str, &Span)> {
        let all = [
            ("domain", &self.domain),
            ("secret_file", &self.secret_file),
            ("secret", &self.secret),
            ("ping_target", &self.ping_target),
            ("jid", &self.jid),
            ("password_file", &self.password_file),
            ("password", &self.password),
            ("ca_file", &self.ca_file),
            ("tls", &self.tls),
        ];
        all.into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|s| (k, &s.key)))
            .chain(self.server.as_ref().map(|s| ("server", &s.key)))
            .collect()
    }
}

/// `[access]` or a device's `access = { ... }`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawAccess {
    pub read: Option<StringList>,
    pub control: Option<StringList>,
}

/// `[publish]`
#[derive(Debug, Default)]
pub(crate) struct RawPublish {
    pub presence: Option<Spanned<bool>>,
    pub min_interval: Option<Spanned<Duration>>,
    pub deadband: Option<Spanned<f64>>,
    pub notify: Option<StringList>,
    pub format: Option<Spanned<String>>,
    pub pubsub: Option<Spanned<String>>,
    pub room: Option<Spanned<String>>,
}

/// `[metrics]`
#[derive(Debug, Default)]
pub(crate) struct RawMetrics {
    pub listen: Option<Spanned<String>>,
}

/// `[log]`
#[derive(Debug, Default)]
pub(crate) struct RawLog {
    pub level: Option<Spanned<String>>,
}

/// One `[[adapter]]`.
#[derive(Debug)]
pub(crate) struct RawAdapter<'a> {
    /// The `[[adapter]]` header.
    pub span: Span,
    pub id: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
    /// Every other key: the adapter type's own.
    pub extra: Vec<Entry<'a>>,
    /// Keys present with a wrong type (reported): not to be reported missing.
    pub bad: Vec<String>,
}

/// One `[[device]]`.
#[derive(Debug, Clone)]
pub(crate) struct RawDevice<'a> {
    /// The `[[device]]` header.
    pub span: Span,
    pub id: Option<Spanned<String>>,
    pub jid: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub adapter: Option<Spanned<String>>,
    pub access: Option<Spanned<RawAccess>>,
    pub fields: Vec<RawField<'a>>,
    /// Every other key: the adapter type's own.
    pub extra: Vec<Entry<'a>>,
    /// Keys present with a wrong type (reported): not to be reported missing.
    pub bad: Vec<String>,
}

/// One `[[device.field]]`.
#[derive(Debug, Clone)]
pub(crate) struct RawField<'a> {
    /// The `[[device.field]]` header (or the inline table).
    pub span: Span,
    pub name: Option<Spanned<String>>,
    pub unit: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
    pub writable: Option<Spanned<bool>>,
    pub deadband: Option<Spanned<f64>>,
    /// Every other key: the adapter type's own.
    pub extra: Vec<Entry<'a>>,
    /// Keys present with a wrong type (reported): not to be reported missing.
    pub bad: Vec<String>,
}

/// The whole file as written.
#[derive(Debug, Default)]
pub(crate) struct RawConfig<'a> {
    pub gateway: RawGateway,
    pub xmpp: Option<RawXmpp>,
    pub access: RawAccess,
    pub publish: RawPublish,
    pub metrics: Option<RawMetrics>,
    pub log: RawLog,
    pub adapters: Vec<RawAdapter<'a>>,
    pub devices: Vec<RawDevice<'a>>,
    pub alerts: Vec<super::alert::RawAlert>,
}

/// Parses TOML text, keeping spans. A syntax error is returned alone: past it, positions and
/// structure are guesses.
pub(crate) fn parse_document(source: &str) -> Result<ImDocument<&str>, (Span, String)> {
    ImDocument::parse(source).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        // toml_edit's messages may span lines ("invalid key\nexpected ..."): keep one line.
        let message: Vec<&str> = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        (span, format!("invalid TOML: {}", message.join("; ")))
    })
}

/// Walks the parsed document into a [`RawConfig`], reporting shape errors.
pub(crate) fn walk<'a>(doc: &'a ImDocument<&'a str>, rep: &mut Report<'_>) -> RawConfig<'a> {
    let mut root = Section::new("the top level", 0..0, doc.as_table());
    let mut raw = RawConfig::default();

    if let Some(mut s) = root.section(rep, "gateway", "[gateway]") {
        raw.gateway = RawGateway {
            name: s.string(rep, "name"),
            state_dir: s.string(rep, "state_dir"),
            history: s.duration(rep, "history"),
            history_max_mb: s.number(rep, "history_max_mb"),
            commit_interval: s.duration(rep, "commit_interval"),
        };
        s.finish(rep, GATEWAY_KEYS);
    }
    if let Some(mut s) = root.section(rep, "xmpp", "[xmpp]") {
        raw.xmpp = Some(RawXmpp {
            span: s.span.clone(),
            mode: s.string(rep, "mode"),
            domain: s.string(rep, "domain"),
            server: s.string_or_strings(rep, "server"),
            secret_file: s.string(rep, "secret_file"),
            secret: s.string(rep, "secret"),
            ping_target: s.string(rep, "ping_target"),
            jid: s.string(rep, "jid"),
            password_file: s.string(rep, "password_file"),
            password: s.string(rep, "password"),
            ca_file: s.string(rep, "ca_file"),
            tls: s.string(rep, "tls"),
            max_stanza_size: s.number(rep, "max_stanza_size"),
            bad: s.bad(),
        });
        s.finish(rep, XMPP_KEYS);
    }
    if let Some(s) = root.section(rep, "access", "[access]") {
        raw.access = access(s, rep);
    }
    if let Some(mut s) = root.section(rep, "publish", "[publish]") {
        raw.publish = RawPublish {
            presence: s.boolean(rep, "presence"),
            min_interval: s.duration(rep, "min_interval"),
            deadband: s.number(rep, "deadband"),
            notify: s.strings(rep, "notify"),
            format: s.string(rep, "format"),
            pubsub: s.string(rep, "pubsub"),
            room: s.string(rep, "room"),
        };
        s.finish(rep, PUBLISH_KEYS);
    }
    if let Some(mut s) = root.section(rep, "metrics", "[metrics]") {
        raw.metrics = Some(RawMetrics {
            listen: s.string(rep, "listen"),
        });
        s.finish(rep, METRICS_KEYS);
    }
    if let Some(mut s) = root.section(rep, "log", "[log]") {
        raw.log = RawLog {
            level: s.string(rep, "level"),
        };
        s.finish(rep, LOG_KEYS);
    }
    for mut s in root.sections(rep, "adapter", "[[adapter]]") {
        let id = s.string(rep, "id");
        let kind = s.string(rep, "type");
        raw.adapters.push(RawAdapter {
            span: s.span.clone(),
            id,
            kind,
            extra: s.rest(),
            bad: s.bad(),
        });
    }
    for s in root.sections(rep, "device", "[[device]]") {
        raw.devices.push(device(s, rep));
    }
    for s in root.sections(rep, "alert", "[[alert]]") {
        raw.alerts.push(super::alert::walk(s, rep));
    }

    for entry in root.rest() {
        let hint = suggestion(entry.key, TOP_KEYS.iter().copied());
        let what = if entry.item.is_table() || entry.item.is_array_of_tables() {
            "section"
        } else {
            "top-level key"
        };
        let known = if hint.is_empty() {
            format!(" (sections: {})", list_names(TOP_KEYS))
        } else {
            hint
        };
        rep.error(
            &entry.key_span,
            format!("unknown {what} `{}`{known}", entry.key),
        );
    }
    raw
}

/// Walks a piece of the file that holds one `[[device]]` (with its tables) and starts at byte
/// `base` (see `split`). `None` when the piece is not that: the file is then parsed whole.
pub(crate) fn walk_device<'a>(
    doc: &'a ImDocument<&'a str>,
    base: usize,
    rep: &mut Report<'_>,
) -> Option<RawDevice<'a>> {
    let table = doc.as_table();
    let one = table.len() == 1
        && table
            .get("device")
            .and_then(|d| d.as_array_of_tables())
            .is_some_and(|a| a.len() == 1);
    if !one {
        return None;
    }
    let mut root = Section::in_piece("the top level", base..base, table, base);
    root.sections(rep, "device", "[[device]]")
        .pop()
        .map(|s| device(s, rep))
}

fn access(mut s: Section<'_>, rep: &mut Report<'_>) -> RawAccess {
    let access = RawAccess {
        read: s.strings(rep, "read"),
        control: s.strings(rep, "control"),
    };
    s.finish(rep, ACCESS_KEYS);
    access
}

fn device<'a>(mut s: Section<'a>, rep: &mut Report<'_>) -> RawDevice<'a> {
    let access_key = s.key_span("access");
    let access = s.section(rep, "access", "`access`").map(|a| {
        let span = a.span.clone();
        Spanned {
            value: access(a, rep),
            key: access_key.unwrap_or_else(|| span.clone()),
            span,
        }
    });
    let mut fields = Vec::new();
    for mut f in s.sections(rep, "field", "[[device.field]]") {
        fields.push(RawField {
            span: f.span.clone(),
            name: f.string(rep, "name"),
            unit: f.string(rep, "unit"),
            kind: f.string(rep, "type"),
            writable: f.boolean(rep, "writable"),
            deadband: f.number(rep, "deadband"),
            extra: f.rest(),
            bad: f.bad(),
        });
    }
    let id = s.string(rep, "id");
    let jid = s.string(rep, "jid");
    let password_file = s.string(rep, "password_file");
    let password = s.string(rep, "password");
    let name = s.string(rep, "name");
    let adapter = s.string(rep, "adapter");
    RawDevice {
        span: s.span.clone(),
        id,
        jid,
        password_file,
        password,
        name,
        adapter,
        access,
        fields,
        extra: s.rest(),
        bad: s.bad(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn walk_errors(src: &str) -> Vec<String> {
        let doc = parse_document(src).expect("valid TOML");
        let mut rep = Report::new(Path::new("g.toml"), src);
        let _ = walk(&doc, &mut rep);
        let (errors, _) = rep.finish();
        errors.into_iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn syntax_error_has_a_position() {
        let (span, message) = parse_document("[gateway]\nname = \n").unwrap_err();
        assert_eq!(span.start, 17);
        assert!(message.starts_with("invalid TOML: "), "{message}");
        assert!(!message.contains('\n'));
        let (_, message) = parse_document("a = 1\na = 2\n").unwrap_err();
        assert!(message.contains("duplicate key"), "{message}");
    }

    #[test]
    fn unknown_keys_are_reported_with_suggestions() {
        let errors = walk_errors("[gateway]\nnmae = \"x\"\nhistory = \"1d\"\n\n[gatway]\n");
        assert_eq!(
            errors,
            [
                "g.toml:2:1: unknown key `nmae` in [gateway]; did you mean `name`?",
                "g.toml:5:2: unknown section `gatway`; did you mean `gateway`?",
            ]
        );
        let errors = walk_errors("[log]\ncolour = 1\n");
        assert_eq!(
            errors,
            ["g.toml:2:1: unknown key `colour` in [log] (known keys: `level`)"]
        );
    }

    #[test]
    fn wrong_types_point_at_the_value() {
        let errors = walk_errors(
            "[gateway]\nname = 5\nhistory = 7\n[publish]\npresence = \"yes\"\nnotify = [\"a@b\", 3]\n",
        );
        assert_eq!(
            errors,
            [
                "g.toml:2:8: `name` must be a string, not an integer",
                "g.toml:3:11: `history` must be a duration string with a unit, e.g. \"7s\", not a bare number",
                "g.toml:5:12: `presence` must be true or false, not a string",
                "g.toml:6:18: `notify` must list strings, not an integer",
            ]
        );
    }

    #[test]
    fn table_shapes() {
        let errors = walk_errors("gateway = 1\n[[xmpp]]\n[adapter]\nid = \"x\"\n");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].contains("`gateway` must be a table"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("write `[xmpp]`, not `[[xmpp]]`"),
            "{errors:?}"
        );
        assert!(
            errors[2].contains("`adapter` must be an array of tables (write `[[adapter]]`)"),
            "{errors:?}"
        );
    }

    #[test]
    fn keeps_type_specific_keys_and_fields() {
        let src = r#"
[[adapter]]
id = "sim"
type = "simulated"
url = "mqtt://x"

[[device]]
id = "boiler"
adapter = "sim"
poll = "2s"
access = { read = ["a@b"] }

  [[device.field]]
  name = "t"
  generator = "sine"

  [[device.field]]
  name = "u"
"#;
        let doc = parse_document(src).unwrap();
        let mut rep = Report::new(Path::new("g.toml"), src);
        let raw = walk(&doc, &mut rep);
        assert!(!rep.has_errors());
        assert_eq!(raw.adapters.len(), 1);
        assert_eq!(raw.adapters[0].extra.len(), 1);
        assert_eq!(raw.adapters[0].extra[0].key, "url");
        let d = &raw.devices[0];
        assert_eq!(d.extra.iter().map(|e| e.key).collect::<Vec<_>>(), ["poll"]);
        assert_eq!(d.fields.len(), 2);
        assert_eq!(d.fields[0].extra[0].key, "generator");
        assert_eq!(d.fields[1].name.as_ref().unwrap().value, "u");
        let read = d.access.as_ref().unwrap().value.read.as_ref().unwrap();
        assert_eq!(read.value[0].value, "a@b");
        // Field spans start at their header: line 13 (the source starts with a newline).
        assert_eq!(rep.line(&d.fields[0].span), 13);
    }

    #[test]
    fn inline_field_arrays_work_too() {
        let src = "[[device]]\nid = \"x\"\nfield = [{ name = \"a\" }, 5]\n";
        let doc = parse_document(src).unwrap();
        let mut rep = Report::new(Path::new("g.toml"), src);
        let raw = walk(&doc, &mut rep);
        assert_eq!(raw.devices[0].fields.len(), 1);
        let (errors, _) = rep.finish();
        assert_eq!(
            errors[0].to_string(),
            "g.toml:3:26: `field` must list tables, not an integer"
        );
    }

    #[test]
    fn durations_and_numbers() {
        let src = "[gateway]\nhistory = 0\n[publish]\nmin_interval = \"5 parsecs\"\ndeadband = 1\n";
        let doc = parse_document(src).unwrap();
        let mut rep = Report::new(Path::new("g.toml"), src);
        let raw = walk(&doc, &mut rep);
        assert_eq!(raw.gateway.history.unwrap().value, Duration::ZERO);
        assert_eq!(raw.publish.deadband.unwrap().value, 1.0);
        let (errors, _) = rep.finish();
        assert_eq!(errors.len(), 1);
        assert!(errors[0]
            .to_string()
            .starts_with("g.toml:4:16: `min_interval`: `5 parsecs` is not a duration"));
    }
}
