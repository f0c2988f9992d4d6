//! The serial adapter's keys: the port and its line format, a device's `match`, a field's key
//! and command; and its registration ([`Serial`]).
//!
//! Adapter keys: `port` (required), `baud` (9600), `data_bits` (8), `parity` (`none`),
//! `stop_bits` (1), the RS-485 keys (`rs485`, `rts_on_send`, `rts_after_send`,
//! `delay_before_send`, `delay_after_send`: [`gateway_toolkit::rs485`]), `format` (required: `json` |
//! `kv` | `xml` | `regex` | `csv`), `pattern` (regex: required, named groups become keys),
//! `line_ending` (`"\n"`; `"\r\n"` or any string of up to 16 bytes), `max_line` (4096 bytes),
//! `separator` (kv: between pairs, default whitespace; csv: between cells, default `,`), `kv_separator` (kv: `=`), `columns` (csv: the
//! column names, else learned from a header line), `time_key` (where a record's timestamp is;
//! default `TimeDate`, `Timestamp`, `Time`, `DateTime`). Device key: `match = { key = "value" }`.
//! Field keys: `json` (format json: an RFC 6901 pointer; absent = the whole line) or `key`
//! (the other formats; default: the field's name), `command_template` (required for writable
//! fields), `ack_pattern`, `ack_timeout` (2 s). A key that can never be found (not a group of
//! `pattern`, not one of `columns`) is an error: such a field would silently never have a value.
//! A port that does not exist is only a warning: USB adapters come and go, and the gateway keeps
//! trying to open it.

use std::path::Path;
use std::time::Duration;

use std::sync::Arc;

use gateway_api::AdapterContext;
use gateway_toolkit::counters::get as count;
use gateway_toolkit::toml_edit::{Item, Value as TomlValue};
use gateway_toolkit::{
    list_names, suggestion, AdapterCx, AdapterSlice, AdapterTask, AdapterType, AnySettings,
    ConfigParser, Counters, DeviceCx, Entry, FieldCx, Keys, ParsedField, Report, Span, Spanned,
    StartEnv,
};
use regex::Regex;

use super::{
    Command, Format, Parity, SerialAdapterConfig, SerialDeviceConfig, SerialFieldConfig,
    DEFAULT_ACK_TIMEOUT, DEFAULT_BAUD, DEFAULT_MAX_LINE,
};
use crate::parse::csv::CsvSyntax;
use crate::parse::kv::KvSyntax;
use crate::{Selector, SerialAdapter, SerialDevice, SerialField, SerialStats, Template};

const FORMATS: &[&str] = &["json", "kv", "xml", "regex", "csv"];
const PARITIES: &[&str] = &["none", "even", "odd"];
/// The longest `max_line` accepted: 1 MiB.
const MAX_LINE_LIMIT: i64 = 1 << 20;
const MAX_LINE_ENDING: usize = 16;
/// The core gives up on a write after this long (`WRITE_TIMEOUT` in the core).
const CORE_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

fn spanned<T>(e: &Entry<'_>, value: T) -> Spanned<T> {
    Spanned {
        value,
        key: e.key_span.clone(),
        span: e.span(),
    }
}

/// A TOML integer within `min..=max`.
fn integer(e: &Entry<'_>, rep: &mut Report<'_>, min: i64, max: i64) -> Option<Spanned<i64>> {
    match e.item.as_integer() {
        Some(i) if (min..=max).contains(&i) => Some(spanned(e, i)),
        Some(i) => {
            rep.error(
                &e.span(),
                format!("`{}` must be between {min} and {max}, not {i}", e.key),
            );
            None
        }
        None => {
            rep.error(&e.span(), format!("`{}` must be a whole number", e.key));
            None
        }
    }
}

/// A non-empty string.
fn text(e: &Entry<'_>, rep: &mut Report<'_>) -> Option<Spanned<String>> {
    let s = e.string(rep)?;
    if s.value.is_empty() {
        rep.error(&s.span, format!("`{}` must not be empty", e.key));
        return None;
    }
    Some(s)
}

/// A regex, with the one line of the `regex` crate's message that says what is wrong.
fn compile(s: &Spanned<String>, key: &str, rep: &mut Report<'_>) -> Option<Regex> {
    match Regex::new(&s.value) {
        Ok(re) => Some(re),
        Err(e) => {
            let text = e.to_string();
            let why = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .trim_start_matches("error: ");
            rep.error(&s.span, format!("`{key}` is not a valid regex: {why}"));
            None
        }
    }
}

/// Builds a serial adapter's settings from its own keys; `header` is the `[[adapter]]` span.
fn adapter(own: &[Entry<'_>], header: &Span, rep: &mut Report<'_>) -> Option<SerialAdapterConfig> {
    let mut ok = true;
    let mut port = None;
    let mut baud = None;
    let mut data_bits = None;
    let mut parity = None;
    let mut stop_bits = None;
    let mut format = None;
    let mut pattern = None;
    let mut line_ending = None;
    let mut max_line = None;
    let mut separator = None;
    let mut kv_separator = None;
    let mut columns = None;
    let mut time_key = None;
    for e in own {
        let good = match e.key {
            "port" => text(e, rep).map(|v| port = Some(v)).is_some(),
            "baud" => integer(e, rep, 1, 4_000_000)
                .map(|v| baud = Some(v))
                .is_some(),
            "data_bits" => integer(e, rep, 5, 8).map(|v| data_bits = Some(v)).is_some(),
            "stop_bits" => integer(e, rep, 1, 2).map(|v| stop_bits = Some(v)).is_some(),
            "parity" => e.string(rep).map(|v| parity = Some(v)).is_some(),
            "format" => e.string(rep).map(|v| format = Some(v)).is_some(),
            "pattern" => text(e, rep).map(|v| pattern = Some(v)).is_some(),
            "line_ending" => text(e, rep).map(|v| line_ending = Some(v)).is_some(),
            "max_line" => integer(e, rep, 1, MAX_LINE_LIMIT)
                .map(|v| max_line = Some(v))
                .is_some(),
            "separator" => text(e, rep).map(|v| separator = Some(v)).is_some(),
            "kv_separator" => text(e, rep).map(|v| kv_separator = Some(v)).is_some(),
            "columns" => e.strings(rep).map(|v| columns = Some(v)).is_some(),
            "time_key" => text(e, rep).map(|v| time_key = Some(v)).is_some(),
            _ => true,
        };
        ok &= good;
    }
    let present = |key: &str| own.iter().any(|e| e.key == key);
    let rs485 = match gateway_toolkit::rs485::settings(own, rep) {
        Ok(rs485) => rs485,
        Err(_) => {
            ok = false;
            None
        }
    };

    match &port {
        Some(p) if p.value.chars().any(char::is_control) => {
            rep.error(&p.span, "`port` must not contain control characters");
            ok = false;
        }
        Some(p) if !Path::new(&p.value).exists() => rep.warn(
            &p.span,
            format!(
                "serial port `{}` does not exist (yet): the gateway will keep trying to open it",
                p.value
            ),
        ),
        Some(_) => {}
        None if present("port") => {}
        None => {
            rep.error(
                header,
                "a serial adapter needs `port`, e.g. `port = \"/dev/ttyACM0\"`",
            );
            ok = false;
        }
    }
    let parity = match &parity {
        None => Parity::None,
        Some(p) => match p.value.as_str() {
            "none" => Parity::None,
            "even" => Parity::Even,
            "odd" => Parity::Odd,
            other => {
                let hint = suggestion(other, PARITIES.iter().copied());
                rep.error(
                    &p.span,
                    format!(
                        "unknown parity `{other}`{hint} (parities: {})",
                        list_names(PARITIES)
                    ),
                );
                ok = false;
                Parity::None
            }
        },
    };
    let Some(format_name) = format else {
        if !present("format") {
            rep.error(
                header,
                format!(
                    "a serial adapter needs `format`, how each line is written: {}",
                    list_names(FORMATS)
                ),
            );
        }
        return None;
    };
    let name = format_name.value.as_str();
    if !FORMATS.contains(&name) {
        let hint = suggestion(name, FORMATS.iter().copied());
        rep.error(
            &format_name.span,
            format!(
                "unknown format `{name}`{hint} (formats: {})",
                list_names(FORMATS)
            ),
        );
        return None;
    }
    // Keys that only one or two formats read: like the simulated generators' keys, a key the
    // format does not use is warned about, not refused.
    let only = |rep: &mut Report<'_>, key: Option<&Span>, k: &str, formats: &[&str]| {
        if let Some(span) = key {
            if !formats.contains(&name) {
                let which: Vec<String> = formats.iter().map(|f| format!("`{f}`")).collect();
                rep.warn(
                    span,
                    format!(
                        "`{k}` has no effect with `format = \"{name}\"` (it applies to format {})",
                        which.join(" and ")
                    ),
                );
            }
        }
    };
    only(rep, pattern.as_ref().map(|s| &s.key), "pattern", &["regex"]);
    only(
        rep,
        separator.as_ref().map(|s| &s.key),
        "separator",
        &["kv", "csv"],
    );
    only(
        rep,
        kv_separator.as_ref().map(|s| &s.key),
        "kv_separator",
        &["kv"],
    );
    only(rep, columns.as_ref().map(|s| &s.key), "columns", &["csv"]);
    let format = match name {
        "json" => Some(Format::Json),
        "xml" => Some(Format::Xml),
        "kv" => {
            let kv = kv_separator.as_ref().map_or("=", |k| k.value.as_str());
            if let (Some(sep), Some(k)) = (&separator, &kv_separator) {
                if sep.value == k.value {
                    rep.error(&k.span, "`kv_separator` must differ from `separator`");
                    ok = false;
                }
            }
            Some(Format::Kv(KvSyntax {
                separator: separator.as_ref().map(|s| s.value.clone()),
                kv_separator: kv.to_owned(),
            }))
        }
        "regex" => match &pattern {
            None => {
                if !present("pattern") {
                    rep.error(
                        &format_name.span,
                        "`format = \"regex\"` needs a `pattern` whose named groups become keys, \
                         e.g. `pattern = '^(?P<id>\\w+) (?P<temp>[-\\d.]+)$'`",
                    );
                }
                None
            }
            Some(p) => match compile(p, "pattern", rep) {
                Some(re) if re.capture_names().flatten().next().is_none() => {
                    rep.error(
                        &p.span,
                        "`pattern` has no named group: write `(?P<name>...)` for each value",
                    );
                    None
                }
                Some(re) => Some(Format::Regex(re)),
                None => None,
            },
        },
        _ => {
            let columns = match &columns {
                None => None,
                Some(list) => {
                    let mut names: Vec<String> = Vec::new();
                    for c in &list.value {
                        let n = c.value.trim();
                        if n.is_empty() {
                            rep.error(&c.span, "a column name must not be empty");
                            ok = false;
                        } else if names.iter().any(|x| x == n) {
                            rep.error(&c.span, format!("column `{n}` is listed twice"));
                            ok = false;
                        } else {
                            names.push(n.to_owned());
                        }
                    }
                    if list.value.is_empty() {
                        rep.error(&list.span, "`columns` must name at least one column");
                        ok = false;
                    }
                    Some(names)
                }
            };
            Some(Format::Csv(CsvSyntax {
                separator: separator.as_ref().map_or(",".into(), |s| s.value.clone()),
                columns,
            }))
        }
    };
    if let Some(le) = &line_ending {
        if le.value.len() > MAX_LINE_ENDING {
            rep.error(
                &le.span,
                format!("`line_ending` must be at most {MAX_LINE_ENDING} bytes"),
            );
            ok = false;
        }
    }
    let format = format?;
    if !ok {
        return None;
    }
    let mut config = SerialAdapterConfig::new(port?.value, format);
    config.baud = baud.map_or(DEFAULT_BAUD, |b| b.value as u32);
    config.data_bits = data_bits.map_or(8, |d| d.value as u8);
    config.stop_bits = stop_bits.map_or(1, |s| s.value as u8);
    config.parity = parity;
    if let Some(le) = line_ending {
        config.line_ending = le.value.into_bytes();
    }
    config.max_line = max_line.map_or(DEFAULT_MAX_LINE, |m| m.value as usize);
    config.rs485 = rs485;
    if let Some(t) = time_key {
        config.time_keys = vec![selector(&config.format, &t.value)];
    }
    Some(config)
}

/// A `match` or `time_key` key: a pointer in format json when it starts with `/`, else a key.
fn selector(format: &Format, key: &str) -> Selector {
    match format {
        Format::Json => Selector::key_or_pointer(key),
        _ => Selector::Key(key.to_owned()),
    }
}

/// The keys a record of `format` can have, when the configuration fixes them.
fn known_keys(format: &Format) -> Option<(Vec<String>, &'static str)> {
    match format {
        Format::Regex(re) => Some((
            crate::parse::regex::group_names(re),
            "a named group of the adapter's `pattern`",
        )),
        Format::Csv(CsvSyntax {
            columns: Some(c), ..
        }) => Some((c.clone(), "one of the adapter's `columns`")),
        _ => None,
    }
}

/// Checks that `key` can occur in a record; `what` names the key in the message.
fn check_known(format: &Format, key: &Spanned<String>, what: &str, rep: &mut Report<'_>) -> bool {
    let Some((known, source)) = known_keys(format) else {
        return true;
    };
    if known.iter().any(|k| k.eq_ignore_ascii_case(&key.value)) {
        return true;
    }
    let hint = suggestion(&key.value, known.iter().map(String::as_str));
    rep.error(
        &key.span,
        format!(
            "{what} `{}` is not {source}{hint} (keys: {})",
            key.value,
            list_names(&known)
        ),
    );
    false
}

/// Builds a serial device's settings from its `match`. `adapter` is `None` when the adapter's
/// own settings were wrong (already reported): the keys are still checked.
fn device(
    own: &[Entry<'_>],
    adapter: Option<&SerialAdapterConfig>,
    rep: &mut Report<'_>,
) -> Option<SerialDeviceConfig> {
    let mut ok = true;
    let mut matcher = Vec::new();
    for e in own.iter().filter(|e| e.key == "match") {
        let Some(table) = e.item.as_table_like() else {
            rep.error(
                &e.span(),
                "`match` must be a table, e.g. `match = { id = \"250715\" }`",
            );
            ok = false;
            continue;
        };
        if table.is_empty() {
            rep.error(&e.span(), "`match` must name at least one key");
            ok = false;
        }
        for (key, item) in table.iter() {
            let span = e
                .in_file(
                    table
                        .get_key_value(key)
                        .and_then(|(k, _)| k.span())
                        .or_else(|| item.span()),
                )
                .unwrap_or_else(|| e.span());
            let value_span = e.in_file(item.span()).unwrap_or_else(|| span.clone());
            let value = match item {
                Item::Value(TomlValue::String(s)) => s.value().clone(),
                Item::Value(TomlValue::Integer(i)) => i.value().to_string(),
                Item::Value(TomlValue::Boolean(b)) => b.value().to_string(),
                _ => {
                    rep.error(
                        &value_span,
                        format!("`match` value of `{key}` must be a string or a number"),
                    );
                    ok = false;
                    continue;
                }
            };
            if key.is_empty() {
                rep.error(&span, "a `match` key must not be empty");
                ok = false;
                continue;
            }
            let key_spanned = Spanned {
                value: key.to_owned(),
                key: span.clone(),
                span: span.clone(),
            };
            if let Some(a) = adapter {
                ok &= check_known(&a.format, &key_spanned, "`match` key", rep);
            }
            let format = adapter.map_or(&Format::Xml, |a| &a.format);
            matcher.push((selector(format, key), value));
        }
    }
    (ok && adapter.is_some()).then_some(SerialDeviceConfig { matcher })
}

/// What [`field`] needs to know about the field besides its serial keys.
struct FieldInfo<'a> {
    name: &'a str,
    writable: bool,
    /// The `[[device.field]]` header.
    pub span: &'a Span,
    /// `field `x` of device `d``, for messages.
    pub label: &'a str,
}

/// Builds a serial field's settings from its `json` or `key` and its command keys.
fn field(
    own: &[Entry<'_>],
    info: FieldInfo<'_>,
    adapter: Option<&SerialAdapterConfig>,
    rep: &mut Report<'_>,
) -> Option<SerialFieldConfig> {
    let mut ok = true;
    let (mut json, mut key, mut template, mut ack, mut ack_timeout) =
        (None, None, None, None, None);
    for e in own {
        let good = match e.key {
            "json" => e.string(rep).map(|v| json = Some(v)).is_some(),
            "key" => text(e, rep).map(|v| key = Some(v)).is_some(),
            "command_template" => text(e, rep).map(|v| template = Some(v)).is_some(),
            "ack_pattern" => text(e, rep).map(|v| ack = Some(v)).is_some(),
            "ack_timeout" => e.duration(rep).map(|v| ack_timeout = Some(v)).is_some(),
            _ => true,
        };
        ok &= good;
    }
    let format = adapter.map(|a| &a.format);
    let is_json = matches!(format, Some(Format::Json));
    let source = match (&json, &key) {
        (Some(_), Some(k)) => {
            rep.error(&k.key, "give either `json` (a pointer) or `key`, not both");
            ok = false;
            None
        }
        (Some(j), None) => {
            if format.is_some() && !is_json {
                let name = format.map_or("", Format::name);
                rep.error(
                    &j.key,
                    format!(
                        "`json` only applies to `format = \"json\"`, but this adapter's format is `{name}`: use `key`"
                    ),
                );
                ok = false;
                None
            } else if j.value.is_empty() {
                Some(Selector::Whole)
            } else if !j.value.starts_with('/') {
                rep.error(
                    &j.span,
                    format!(
                        "`json` must be an RFC 6901 pointer starting with `/`, e.g. `\"/{}\"`",
                        j.value
                    ),
                );
                ok = false;
                None
            } else {
                Some(Selector::Pointer(j.value.clone()))
            }
        }
        (None, Some(k)) => {
            if let Some(f) = format {
                ok &= check_known(f, k, "`key`", rep);
            }
            Some(Selector::Key(k.value.clone()))
        }
        // Without a pointer a JSON field is the whole line (a device that prints one bare value per line).
        (None, None) if is_json => Some(Selector::Whole),
        (None, None) => {
            let implicit = Spanned {
                value: info.name.to_owned(),
                key: info.span.clone(),
                span: info.span.clone(),
            };
            if let Some(f) = format {
                if !check_known(f, &implicit, "the field name (its default `key`)", rep) {
                    ok = false;
                }
            }
            Some(Selector::Key(info.name.to_owned()))
        }
    };

    let template = match &template {
        None => None,
        Some(t) => match Template::parse(&t.value) {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                rep.error(&t.span, format!("`command_template`: {e}"));
                ok = false;
                None
            }
        },
    };
    let ack_re = ack.as_ref().and_then(|a| {
        let re = compile(a, "ack_pattern", rep);
        ok &= re.is_some();
        re
    });
    let timeout = match &ack_timeout {
        None => DEFAULT_ACK_TIMEOUT,
        Some(t) if t.value.is_zero() => {
            rep.error(&t.span, "`ack_timeout` must be longer than zero");
            ok = false;
            DEFAULT_ACK_TIMEOUT
        }
        Some(t) => {
            if t.value >= CORE_WRITE_TIMEOUT {
                rep.warn(
                    &t.span,
                    "`ack_timeout` is 10 s or more, but the gateway answers a write within 10 s: it will time out first",
                );
            }
            t.value
        }
    };
    let no_effect = |rep: &mut Report<'_>, span: Option<&Span>, key: &str, why: &str| {
        if let Some(s) = span {
            rep.warn(s, format!("`{key}` has no effect {why}"));
        }
    };
    if template.is_none() && ok {
        no_effect(
            rep,
            ack.as_ref().map(|a| &a.key),
            "ack_pattern",
            "without `command_template`",
        );
        no_effect(
            rep,
            ack_timeout.as_ref().map(|a| &a.key),
            "ack_timeout",
            "without `command_template`",
        );
    }
    if ack.is_none() {
        no_effect(
            rep,
            ack_timeout.as_ref().map(|a| &a.key),
            "ack_timeout",
            "without `ack_pattern`",
        );
    }
    let command = match (template, info.writable) {
        (Some(template), true) => Some(Command {
            template,
            ack: ack_re,
            ack_timeout: timeout,
        }),
        (Some(_), false) => {
            no_effect(
                rep,
                own.iter()
                    .find(|e| e.key == "command_template")
                    .map(|e| &e.key_span),
                "command_template",
                "unless the field is `writable = true`",
            );
            None
        }
        (None, true) if ok => {
            rep.error(
                info.span,
                format!(
                    "{} is writable, so it needs a `command_template`: the line written to the port, \
                     e.g. `command_template = \"SET {{field}} {{value}}\\n\"`",
                    info.label
                ),
            );
            ok = false;
            None
        }
        (None, _) => None,
    };
    if !ok || adapter.is_none() {
        return None;
    }
    Some(SerialFieldConfig {
        source: source?,
        command,
    })
}

/// The serial adapter type, registered in the gateway as `serial`.
pub struct Serial;

impl AdapterType for Serial {
    fn names(&self) -> &'static [&'static str] {
        &["serial"]
    }

    fn keys(&self, _type_name: &str) -> Keys {
        Keys {
            adapter: &[
                "port",
                "baud",
                "data_bits",
                "parity",
                "stop_bits",
                "rs485",
                "rts_on_send",
                "rts_after_send",
                "delay_before_send",
                "delay_after_send",
                "format",
                "pattern",
                "line_ending",
                "max_line",
                "separator",
                "kv_separator",
                "columns",
                "time_key",
            ],
            device: &["match"],
            field: &[
                "json",
                "key",
                "command_template",
                "ack_pattern",
                "ack_timeout",
            ],
        }
    }

    fn peer_names(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("bytesize", "data_bits"),
            ("baudrate", "baud"),
            ("stopbits", "stop_bits"),
        ]
    }

    fn parser(&self) -> Box<dyn ConfigParser> {
        Box::new(Parser)
    }

    fn check_summary(&self, adapter: &AdapterSlice<'_>) -> String {
        let Some(c) = adapter.settings.get::<SerialAdapterConfig>() else {
            return String::new();
        };
        gateway_toolkit::rs485::port_line(
            adapter.id,
            &c.port,
            c.baud,
            (c.data_bits, c.parity.letter(), c.stop_bits),
            c.rs485,
        )
    }

    fn start(
        &self,
        adapter: AdapterSlice<'_>,
        env: &StartEnv<'_>,
        ctx: AdapterContext,
    ) -> AdapterTask {
        use gateway_api::Adapter;
        let Some(a) = build(&adapter) else {
            // The gateway starts an adapter only with the settings this type's parser made.
            tracing::error!(adapter = %adapter.id, "serial adapter started without its settings");
            return Box::pin(async {});
        };
        (env.metrics)(Arc::new(Counters {
            adapter: adapter.id.clone(),
            stats: a.stats(),
            list: metrics,
        }));
        Box::pin(a.run(ctx))
    }
}

/// The adapter of `adapter`'s slice, with its devices.
pub fn build(adapter: &AdapterSlice<'_>) -> Option<SerialAdapter> {
    let port = adapter.settings.get::<SerialAdapterConfig>()?.clone();
    let devices = adapter
        .devices
        .iter()
        .filter_map(|d| {
            let config = d.settings.get::<SerialDeviceConfig>()?.clone();
            let fields = d
                .fields
                .iter()
                .filter_map(|f| {
                    Some(SerialField {
                        spec: f.spec.clone(),
                        config: f.settings.get::<SerialFieldConfig>()?.clone(),
                    })
                })
                .collect();
            Some(SerialDevice {
                id: d.id.clone(),
                config,
                fields,
            })
        })
        .collect();
    Some(SerialAdapter::new(port, devices))
}

/// The adapter's counters on `/metrics`: (name, help, value).
fn metrics(s: &SerialStats) -> Vec<(&'static str, &'static str, u64)> {
    vec![
        (
            "serial_lines_total",
            "Lines read from the port.",
            count(&s.lines),
        ),
        (
            "serial_records_total",
            "Lines that parsed into a record.",
            count(&s.records),
        ),
        (
            "serial_too_long_total",
            "Lines over max_line, dropped.",
            count(&s.too_long),
        ),
        (
            "serial_not_utf8_total",
            "Lines that were not UTF-8, dropped.",
            count(&s.not_utf8),
        ),
        (
            "serial_unparsable_total",
            "Lines not in the configured format, dropped.",
            count(&s.unparsable),
        ),
        (
            "serial_unmatched_total",
            "Records that matched no device, dropped.",
            count(&s.unmatched),
        ),
        (
            "serial_rs485_failures_total",
            "Opens of the port that could not switch it to RS-485 mode (rs485 = true).",
            count(&s.rs485_failures),
        ),
    ]
}

/// A serial device's and field's keys depend on its adapter's format only.
struct Parser;

impl ConfigParser for Parser {
    fn adapter(&mut self, mut cx: AdapterCx<'_>, rep: &mut Report<'_>) -> Option<AnySettings> {
        let settings = adapter(cx.own, cx.header, rep);
        cx.claim_port(rep);
        settings.map(AnySettings::new)
    }

    fn device(&mut self, cx: DeviceCx<'_>, rep: &mut Report<'_>) -> Option<AnySettings> {
        let port = cx.adapter.and_then(|a| a.get::<SerialAdapterConfig>());
        device(cx.own, port, rep).map(AnySettings::new)
    }

    fn field(&mut self, cx: FieldCx<'_>, rep: &mut Report<'_>) -> Option<ParsedField> {
        let info = FieldInfo {
            name: cx.name,
            writable: cx.is_writable(),
            span: cx.header,
            label: cx.label,
        };
        let port = cx.adapter.and_then(|a| a.get::<SerialAdapterConfig>());
        field(cx.own, info, port, rep).map(|f| ParsedField::new(AnySettings::new(f)))
    }
}
