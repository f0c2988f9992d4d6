//! `[[alert]]`: conditions on a device's readings (or its availability) that send a chat
//! message when they start to hold, remind while they hold, and send another when they clear.
//!
//! The section is walked and checked here rather than in `raw`/`validate`: its meaning depends
//! only on the devices, which are validated first. Every problem is reported with its position:
//! an unknown device or field (with a "did you mean"), `above`/`below` on a field that is not a
//! number, a threshold that is not a number, a template naming an unknown placeholder. A device
//! or field that is written but was rejected is not called unknown: its own error is the cause,
//! and one more error at the alert (above it in the file, so printed first) would only bury it.

use std::sync::Arc;
use std::time::Duration;

use gateway_api::{DeviceId, FieldType};

use super::jid::parse_bare_jid;
use super::model::DeviceConfig;
use super::raw::{Section, Spanned, StringList};
use gateway_toolkit::{check_text, list_names, suggestion, Report, Span};

pub(crate) const ALERT_KEYS: &[&str] = &[
    "id", "device", "field", "above", "below", "offline", "for", "clear", "repeat", "to", "message",
];

/// The placeholders a `message` template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "id",
    "device",
    "field",
    "value",
    "unit",
    "threshold",
    "duration",
];

/// What an alert watches for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AlertCondition {
    /// The field's value is greater than this.
    Above(f64),
    /// The field's value is less than this.
    Below(f64),
    /// The device is unavailable (its adapter reports it offline).
    Offline,
}

/// One alert, from `[[alert]]` or defined by a user in chat.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    /// Unique; shown in messages, the audit table and the log.
    pub id: String,
    pub device: DeviceId,
    /// The field watched; `None` for an `offline` alert.
    pub field: Option<Arc<str>>,
    pub condition: AlertCondition,
    /// `for`: how long the condition must hold before the alert fires.
    pub hold: Duration,
    /// Hysteresis: a fired `above` alert clears only below this (a `below` alert, above it).
    /// Default: the threshold.
    pub clear: Option<f64>,
    /// Remind this often while the condition still holds; `None`: never.
    pub repeat: Option<Duration>,
    /// Bare JIDs told; default every `[publish] notify` JID.
    pub to: Vec<String>,
    /// The body template of the message sent when it fires (and of reminders).
    pub message: Option<String>,
}

/// One `[[alert]]` as written.
#[derive(Debug)]
pub(crate) struct RawAlert {
    span: Span,
    id: Option<Spanned<String>>,
    device: Option<Spanned<String>>,
    field: Option<Spanned<String>>,
    above: Option<Spanned<f64>>,
    below: Option<Spanned<f64>>,
    offline: Option<Spanned<bool>>,
    hold: Option<Spanned<Duration>>,
    clear: Option<Spanned<f64>>,
    repeat: Option<Spanned<Duration>>,
    to: Option<StringList>,
    message: Option<Spanned<String>>,
    bad: Vec<String>,
}

/// Walks one `[[alert]]` table, reporting unknown keys and wrong types.
pub(crate) fn walk(mut s: Section<'_>, rep: &mut Report<'_>) -> RawAlert {
    let raw = RawAlert {
        span: s.span.clone(),
        id: s.string(rep, "id"),
        device: s.string(rep, "device"),
        field: s.string(rep, "field"),
        above: s.number(rep, "above"),
        below: s.number(rep, "below"),
        offline: s.boolean(rep, "offline"),
        hold: s.duration(rep, "for"),
        clear: s.number(rep, "clear"),
        repeat: s.duration(rep, "repeat"),
        to: s.strings(rep, "to"),
        message: s.string(rep, "message"),
        bad: s.bad(),
    };
    s.finish(rep, ALERT_KEYS);
    raw
}

/// The devices alerts may name.
pub(crate) struct Devices<'d> {
    /// The devices that passed validation.
    pub valid: &'d [DeviceConfig],
    /// Every `[[device]]` as written, rejected ones included, whose id an alert names (see
    /// [`Named`]).
    pub written: &'d [Written],
    /// Some `[[device]]` has no id that is text.
    pub unnamed: bool,
}

/// A `[[device]]`'s id and field names as written, before validation.
pub(crate) struct Written {
    pub id: String,
    pub fields: Vec<String>,
    /// Some of its fields has no name that is text.
    pub unnamed_field: bool,
}

impl Devices<'_> {
    /// The written device with this id (ids compare as alerts name them: ignoring case).
    fn written(&self, id: &str) -> Option<&Written> {
        self.written
            .iter()
            .find(|w| w.id.trim().eq_ignore_ascii_case(id.trim()))
    }
}

/// The device ids the alerts name, as they compare (trimmed, ASCII lower case): only the
/// [`Written`] record of such a device is ever looked at, so the loader keeps no other (with
/// 10,000 devices and a few alerts, a few records instead of 10,000).
pub(crate) struct Named(Vec<String>);

impl Named {
    pub(crate) fn new(raw: &[RawAlert]) -> Self {
        Named(
            raw.iter()
                .filter_map(|a| a.device.as_ref())
                .map(|d| d.value.trim().to_ascii_lowercase())
                .collect(),
        )
    }

    /// Whether an alert names the device written with id `id`.
    pub(crate) fn contains(&self, id: &str) -> bool {
        let id = id.trim();
        self.0.iter().any(|n| n.eq_ignore_ascii_case(id))
    }
}

/// Checks every alert against the devices; `notify` is the default recipient list.
pub(crate) fn validate(
    raw: &[RawAlert],
    devices: &Devices<'_>,
    notify: &[String],
    rep: &mut Report<'_>,
) -> Vec<AlertConfig> {
    let mut seen: Vec<(String, Span)> = Vec::new();
    let mut out = Vec::new();
    for a in raw {
        if let Some(alert) = one(a, devices, notify, &mut seen, rep) {
            out.push(alert);
        }
    }
    out
}

fn one(
    a: &RawAlert,
    devices: &Devices<'_>,
    notify: &[String],
    seen: &mut Vec<(String, Span)>,
    rep: &mut Report<'_>,
) -> Option<AlertConfig> {
    let bad = |key: &str| a.bad.iter().any(|k| k == key);
    let id = match &a.id {
        Some(id) if check_text(rep, id, "id") => {
            if let Some((_, first)) = seen.iter().find(|(s, _)| *s == id.value) {
                let line = rep.line(first);
                rep.error(
                    &id.span,
                    format!("alert id `{}` is already used (line {line})", id.value),
                );
                return None;
            }
            seen.push((id.value.clone(), id.span.clone()));
            Some(id.value.clone())
        }
        Some(_) => None,
        None => {
            if !bad("id") {
                rep.error(
                    &a.span,
                    "this [[alert]] needs an `id`, e.g. `id = \"freezer-warm\"`",
                );
            }
            None
        }
    };
    let device = device(a, devices, rep, bad("device"));
    let condition = condition(a, rep);
    let field = match (device, &a.field) {
        (Some(d), Some(f)) => field(d, devices.written(d.id.as_str()), f, condition, rep),
        (_, None)
            if matches!(
                condition,
                Some(AlertCondition::Above(_) | AlertCondition::Below(_))
            ) =>
        {
            if !bad("field") {
                rep.error(
                    &a.span,
                    "this [[alert]] compares a value: name its `field`, e.g. `field = \"temperature\"`",
                );
            }
            None
        }
        _ => None,
    };
    if let (Some(c), Some(clear)) = (condition, &a.clear) {
        check_clear(c, clear, rep);
    }
    let to = recipients(a.to.as_ref(), notify, &a.span, rep);
    if let Some(m) = &a.message {
        check_template(m, rep);
    }
    let (id, device, condition) = (id?, device?, condition?);
    if condition != AlertCondition::Offline && field.is_none() {
        return None;
    }
    Some(AlertConfig {
        id,
        device: device.id.clone(),
        field: if condition == AlertCondition::Offline {
            None
        } else {
            field
        },
        condition,
        hold: a.hold.as_ref().map_or(Duration::ZERO, |d| d.value),
        clear: a.clear.as_ref().map(|c| c.value),
        repeat: a.repeat.as_ref().map(|r| r.value).filter(|r| !r.is_zero()),
        to: to?,
        message: a.message.as_ref().map(|m| m.value.clone()),
    })
}

fn device<'d>(
    a: &RawAlert,
    devices: &Devices<'d>,
    rep: &mut Report<'_>,
    bad: bool,
) -> Option<&'d DeviceConfig> {
    let Some(d) = &a.device else {
        if !bad {
            rep.error(
                &a.span,
                "this [[alert]] needs a `device`, e.g. `device = \"freezer\"`",
            );
        }
        return None;
    };
    let found = devices
        .valid
        .iter()
        .find(|dev| dev.id.as_str().eq_ignore_ascii_case(&d.value));
    // A device that is written but was rejected already has its errors, the cause of this one.
    let rejected = devices.unnamed || devices.written(&d.value).is_some();
    if found.is_none() && !rejected {
        let valid = devices.valid;
        let hint = suggestion(&d.value, valid.iter().map(|dev| dev.id.as_str()));
        rep.error(&d.span, format!("no [[device]] has id `{}`{hint}", d.value));
    }
    found
}

fn condition(a: &RawAlert, rep: &mut Report<'_>) -> Option<AlertCondition> {
    let offline = a.offline.as_ref().filter(|o| o.value);
    let given: Vec<(&str, &Span)> = [
        a.above.as_ref().map(|v| ("above", &v.key)),
        a.below.as_ref().map(|v| ("below", &v.key)),
        offline.map(|v| ("offline", &v.key)),
    ]
    .into_iter()
    .flatten()
    .collect();
    match given.as_slice() {
        [] => {
            if !["above", "below", "offline"]
                .iter()
                .any(|k| a.bad.iter().any(|b| b == k))
            {
                rep.error(
                    &a.span,
                    "this [[alert]] needs a condition: `above = <number>`, `below = <number>` or `offline = true`",
                );
            }
            None
        }
        [_] => Some(if let Some(v) = &a.above {
            AlertCondition::Above(v.value)
        } else if let Some(v) = &a.below {
            AlertCondition::Below(v.value)
        } else {
            AlertCondition::Offline
        }),
        [_, (second, span), ..] => {
            let names: Vec<&str> = given.iter().map(|(n, _)| *n).collect();
            rep.error(
                span,
                format!(
                    "`{second}`: an [[alert]] has one condition, not {}",
                    list_names(&names)
                ),
            );
            None
        }
    }
}

fn field(
    device: &DeviceConfig,
    written: Option<&Written>,
    f: &Spanned<String>,
    condition: Option<AlertCondition>,
    rep: &mut Report<'_>,
) -> Option<Arc<str>> {
    let Some(spec) = device
        .fields
        .iter()
        .map(|fc| &fc.spec)
        .find(|s| s.name.eq_ignore_ascii_case(&f.value))
    else {
        // A field that is written but was rejected already has its error, the cause of this one.
        let rejected = written.is_some_and(|w| {
            w.unnamed_field
                || w.fields
                    .iter()
                    .any(|n| n.trim().eq_ignore_ascii_case(f.value.trim()))
        });
        if rejected {
            return None;
        }
        let names: Vec<&str> = device.fields.iter().map(|fc| &*fc.spec.name).collect();
        let hint = suggestion(&f.value, names.iter().copied());
        let known = if hint.is_empty() {
            format!(" (its fields: {})", list_names(&names))
        } else {
            hint
        };
        rep.error(
            &f.span,
            format!("device `{}` has no field `{}`{known}", device.id, f.value),
        );
        return None;
    };
    let numeric = matches!(spec.kind, FieldType::Numeric | FieldType::Integer);
    if let Some(c @ (AlertCondition::Above(_) | AlertCondition::Below(_))) = condition {
        if !numeric {
            let word = if matches!(c, AlertCondition::Above(_)) {
                "above"
            } else {
                "below"
            };
            rep.error(
                &f.span,
                format!(
                    "field `{}` of `{}` is not a number: `{word}` cannot compare it",
                    spec.name, device.id
                ),
            );
            return None;
        }
    }
    Some(spec.name.clone())
}

fn check_clear(c: AlertCondition, clear: &Spanned<f64>, rep: &mut Report<'_>) {
    match c {
        AlertCondition::Above(t) if clear.value > t => rep.error(
            &clear.span,
            format!("`clear` must not be above the threshold ({t}): the alert would never clear"),
        ),
        AlertCondition::Below(t) if clear.value < t => rep.error(
            &clear.span,
            format!("`clear` must not be below the threshold ({t}): the alert would never clear"),
        ),
        AlertCondition::Offline => rep.error(
            &clear.span,
            "`clear` is for `above`/`below`: an offline alert clears when the device is back",
        ),
        _ => {}
    }
}

fn recipients(
    to: Option<&StringList>,
    notify: &[String],
    span: &Span,
    rep: &mut Report<'_>,
) -> Option<Vec<String>> {
    let Some(list) = to else {
        if notify.is_empty() {
            rep.error(
                span,
                "this [[alert]] has nobody to tell: give `to = [\"you@example.org\"]` or a [publish] `notify` list",
            );
            return None;
        }
        return Some(notify.to_vec());
    };
    let mut out = Vec::new();
    let mut ok = true;
    for item in &list.value {
        match parse_bare_jid(&item.value) {
            Ok(jid) => out.push(jid.bare()),
            Err(e) => {
                rep.error(
                    &item.span,
                    format!("`to` entry `{}` is not a bare JID: {e}", item.value),
                );
                ok = false;
            }
        }
    }
    if ok && out.is_empty() {
        rep.error(&list.span, "`to` is empty: the alert would tell nobody");
        return None;
    }
    ok.then_some(out)
}

/// Reports `{name}` placeholders the template does not know.
fn check_template(m: &Spanned<String>, rep: &mut Report<'_>) {
    for name in placeholders(&m.value) {
        if !PLACEHOLDERS.contains(&name) {
            let hint = suggestion(name, PLACEHOLDERS.iter().copied());
            let known = if hint.is_empty() {
                format!(" (placeholders: {})", list_names(PLACEHOLDERS))
            } else {
                hint
            };
            rep.error(
                &m.span,
                format!("`message` has an unknown placeholder `{{{name}}}`{known}"),
            );
        }
    }
}

/// The names between braces in a template, in order.
pub(crate) fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}'))
        .map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use crate::config::validate::tests::{errors, ok, with_head};

    use super::*;

    const DEVICES: &str = "[publish]\nnotify = [\"alice@example.org\"]\n\
        [[device]]\nid = \"freezer\"\nadapter = \"sim\"\n\
        [[device.field]]\nname = \"temperature\"\nunit = \"°C\"\n\
        [[device.field]]\nname = \"door\"\ntype = \"boolean\"\nvalue = false\n";

    fn src(alerts: &str) -> String {
        with_head(&format!("{DEVICES}{alerts}"))
    }

    #[test]
    fn a_full_alert_loads_with_defaults_filled_in() {
        let loaded = ok(&src(
            "[[alert]]\nid = \"warm\"\ndevice = \"Freezer\"\nfield = \"temperature\"\nabove = -12\n\
             for = \"5m\"\nclear = -15.0\nrepeat = \"1h\"\nmessage = \"{value} {unit} for {duration}\"\n\
             [[alert]]\nid = \"gone\"\ndevice = \"freezer\"\noffline = true\nto = [\"bob@example.org\"]\n",
        ));
        let a = &loaded.config.alerts;
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].condition, AlertCondition::Above(-12.0));
        assert_eq!(a[0].field.as_deref(), Some("temperature"));
        assert_eq!(a[0].hold, Duration::from_secs(300));
        assert_eq!(a[0].clear, Some(-15.0));
        assert_eq!(a[0].repeat, Some(Duration::from_secs(3600)));
        assert_eq!(a[0].to, ["alice@example.org"]);
        assert_eq!(a[1].condition, AlertCondition::Offline);
        assert_eq!((a[1].field.clone(), a[1].hold), (None, Duration::ZERO));
        assert_eq!(a[1].to, ["bob@example.org"]);
    }

    #[test]
    fn bad_alerts_are_reported_with_positions() {
        // HEAD is 6 lines, DEVICES 12: the first [[alert]] is on line 19.
        let errs = errors(&src(
            "[[alert]]\nid = \"a\"\ndevice = \"freezr\"\nfield = \"temperature\"\nabove = 1\n\
             [[alert]]\nid = \"b\"\ndevice = \"freezer\"\nfield = \"temprature\"\nbelow = 1\n\
             [[alert]]\nid = \"c\"\ndevice = \"freezer\"\nfield = \"door\"\nabove = 1\n\
             [[alert]]\nid = \"d\"\ndevice = \"freezer\"\nfield = \"temperature\"\nabove = \"30\"\n\
             [[alert]]\nid = \"a\"\ndevice = \"freezer\"\noffline = true\nmesage = \"x\"\n\
             [[alert]]\nid = \"f\"\ndevice = \"freezer\"\nfield = \"temperature\"\nabove = 5\nclear = 9\nmessage = \"{vlaue}\"\n",
        ));
        assert_eq!(
            errs,
            [
                "21:10: no [[device]] has id `freezr`; did you mean `freezer`?",
                "27:9: device `freezer` has no field `temprature`; did you mean `temperature`?",
                "32:9: field `door` of `freezer` is not a number: `above` cannot compare it",
                "38:9: `above` must be a number, not a string",
                "40:6: alert id `a` is already used (line 20)",
                "43:1: unknown key `mesage` in [[alert]]; did you mean `message`?",
                "49:9: `clear` must not be above the threshold (5): the alert would never clear",
                "50:11: `message` has an unknown placeholder `{vlaue}`; did you mean `value`?",
            ]
        );
    }

    #[test]
    fn an_alert_needs_a_condition_and_someone_to_tell() {
        let errs = errors(&with_head(
            "[[device]]\nid = \"pump\"\nadapter = \"sim\"\n[[device.field]]\nname = \"flow\"\n\
             [[alert]]\nid = \"x\"\ndevice = \"pump\"\nfield = \"flow\"\n\
             [[alert]]\nid = \"y\"\ndevice = \"pump\"\nabove = 1\nbelow = 0\nto = [\"a@b\"]\n\
             [[alert]]\nid = \"z\"\ndevice = \"pump\"\nbelow = 0\nto = [\"a@b\"]\n",
        ));
        assert_eq!(
            errs,
            [
                "12:1: this [[alert]] needs a condition: `above = <number>`, `below = <number>` or `offline = true`",
                "12:1: this [[alert]] has nobody to tell: give `to = [\"you@example.org\"]` or a [publish] `notify` list",
                "20:1: `below`: an [[alert]] has one condition, not `above` and `below`",
                "22:1: this [[alert]] compares a value: name its `field`, e.g. `field = \"temperature\"`",
            ]
        );
    }

    #[test]
    fn the_guides_alert_snippets_are_valid() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/alerts-and-charts.md");
        let doc = std::fs::read_to_string(&path).expect("read the guide");
        let blocks: Vec<&str> = doc
            .split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .filter(|b| b.contains("[[alert]]"))
            .collect();
        assert!(
            blocks.len() >= 4,
            "the guide's [[alert]] examples: {}",
            blocks.len()
        );
        let devices = "[publish]\nnotify = [\"ops@example.org\"]\n\
            [[device]]\nid = \"freezer\"\nadapter = \"sim\"\n[[device.field]]\nname = \"temperature\"\nunit = \"°C\"\n\
            [[device]]\nid = \"pump\"\nadapter = \"sim\"\n[[device.field]]\nname = \"flow\"\nunit = \"m³/h\"\n\
            [[device]]\nid = \"boiler\"\nadapter = \"sim\"\n[[device.field]]\nname = \"pressure\"\n";
        for block in blocks {
            let loaded = ok(&with_head(&format!("{devices}{block}")));
            assert_eq!(loaded.config.alerts.len(), 1, "{block}");
        }
    }

    #[test]
    fn placeholders_are_found_between_braces() {
        let names: Vec<&str> = placeholders("a {value} b {unit}{x} {open").collect();
        assert_eq!(names, ["value", "unit", "x"]);
    }
}
