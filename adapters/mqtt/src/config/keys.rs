//! The MQTT adapter's keys: the broker of an `[[adapter]]`, the topics of a `[[device]]`, the
//! payload part and command of a `[[device.field]]`, and fleets; and its registration
//! ([`Mqtt`]).
//!
//! Adapter keys: `url` (required, `mqtt://` or `mqtts://`), `client_id` (default derived from
//! `[gateway] name` and the adapter id when the adapter starts), `username`,
//! `password_file`/`password`, `ca_file`, `keep_alive` (30 s), `max_payload` (65536 bytes), and
//! discovery: `discovery` (sources), `discovery_prefix`, `zigbee2mqtt_base`, `discover_include`,
//! `discover_exclude` (globs), `discover_max_devices` (1000).
//! Device keys: `topic`, `availability_topic` with `availability_online`/`availability_offline`,
//! `command_topic`, `command_template`, `stale_after`, `fleet`. Field keys: `json`,
//! `value_template` (Jinja), `topic`, `scale`, `offset`, `payload_on`, `payload_off`,
//! `command_topic`, `command_template`, and the limits of writes: `min`, `max`, `step` (numbers)
//! and `options` (texts).
//!
//! A fleet is one `[[device]]` with `fleet = ["kitchen", "hall", ...]` instead of `id`: it stands
//! for one device per member, whose id is the member, and `{id}` in its topics (and `name`)
//! is replaced by the member as written. `expand_fleet` does that before the devices are
//! validated, so every member is checked (id, JID, duplicates) like any device. Field topics and
//! commands may use `{id}` too; `finish_device` fills them in once the device is known and
//! checks what needs the device and its fields together (a writable field needs a command topic,
//! a field needs a topic to read).

use std::time::Duration;

use std::sync::Arc;

use gateway_api::{AdapterContext, FieldType};
use gateway_toolkit::counters::get as count;
use gateway_toolkit::{
    check_text, suggestion, AdapterCx, AdapterSlice, AdapterTask, AdapterType, AnySettings,
    ConfigParser, Counters, DeviceCx, DeviceDraft, DiscoverEnv, DiscoverTask, Entry, Expansion,
    FieldCx, FieldDraft, Files, FinishCx, Keys, Pair, ParsedField, Report, Span, Spanned, StartEnv,
    StringList,
};

use super::{
    check_pointer, Availability, BrokerConfig, BrokerUrl, DeviceConfig, FieldConfig, Password,
    Template, TopicBinding, DEFAULT_KEEP_ALIVE, DEFAULT_MAX_PAYLOAD, DEFAULT_OFFLINE,
    DEFAULT_ONLINE,
};
use crate::discovery::template::Jinja;
use crate::discovery::{DiscoveryConfig, DEFAULT_MAX_DEVICES};
use crate::limits::Limits;
use crate::{topic, MqttAdapter, MqttDevice, MqttField, MqttStats};

/// The largest `max_payload` accepted: what MQTT can carry at all.
const MAX_MAX_PAYLOAD: i64 = 268_435_455;
/// The id used to check the shape of a template before the device is known.
const PROBE_ID: &str = "x";

/// Builds the broker settings of an `[[adapter]]` of type `mqtt` (`own`: its mqtt keys;
/// `header`: the `[[adapter]]` header, for a missing `url`).
fn adapter(
    own: &[Entry<'_>],
    header: &Span,
    files: &Files<'_>,
    rep: &mut Report<'_>,
) -> Option<BrokerConfig> {
    let mut ok = true;
    let mut strings: Vec<(&str, Spanned<String>)> = Vec::new();
    let mut keep_alive = None;
    let mut max_payload = None;
    let mut discovery = DiscoveryConfig::default();
    for e in own {
        match e.key {
            "discovery" | "discover_include" | "discover_exclude" | "discover_max_devices" => {
                ok &= discovery_key(e, &mut discovery, rep);
            }
            "keep_alive" => match e.duration(rep) {
                Some(d) => keep_alive = Some(d),
                None => ok = false,
            },
            "max_payload" => match integer(e, rep) {
                Some(n) => max_payload = Some(n),
                None => ok = false,
            },
            key => match e.string(rep) {
                Some(s) => strings.push((key, s)),
                None => ok = false,
            },
        }
    }
    let get = |key: &str| strings.iter().find(|(k, _)| *k == key).map(|(_, s)| s);

    let url = match get("url") {
        None if own.iter().any(|e| e.key == "url") => None,
        None => {
            rep.error(
                header,
                "an `mqtt` adapter needs `url`, e.g. `url = \"mqtt://127.0.0.1:1883\"` (or `mqtts://` for TLS)",
            );
            None
        }
        Some(u) => match BrokerUrl::parse(u.value.trim()) {
            Ok(url) => Some(url),
            Err(e) => {
                rep.error(&u.span, format!("`url` `{}`: {e}", u.value));
                None
            }
        },
    };
    let client_id = match get("client_id") {
        Some(c) if !check_text(rep, c, "client_id") => {
            ok = false;
            None
        }
        Some(c) if c.value.len() > 65_535 => {
            rep.error(&c.span, "`client_id` is at most 65535 bytes long");
            ok = false;
            None
        }
        Some(c) => Some(c.value.clone()),
        None => None,
    };
    let username = match get("username") {
        Some(u) if !check_text(rep, u, "username") => {
            ok = false;
            None
        }
        Some(u) => Some(u.value.clone()),
        None => None,
    };
    let password = files.secret(
        rep,
        Pair {
            file: get("password_file"),
            file_key: "password_file",
            inline: get("password"),
            inline_key: "password",
        },
    );
    if username.is_none() {
        if let Some(p) = get("password_file").or(get("password")) {
            rep.error(&p.key, "a broker password needs a `username` too");
            ok = false;
        }
    }
    let ca = get("ca_file").and_then(|f| files.ca_file(rep, f));
    if let (Some(f), Some(url)) = (get("ca_file"), &url) {
        if !url.tls {
            rep.warn(
                &f.key,
                "`ca_file` has no effect with `mqtt://`: use `mqtts://` for TLS",
            );
        }
    }
    let keep_alive = match keep_alive {
        None => DEFAULT_KEEP_ALIVE,
        Some(k) if k.value < Duration::from_secs(1) || k.value > Duration::from_secs(65_535) => {
            rep.error(
                &k.span,
                "`keep_alive` must be between 1 s and 65535 s (about 18 h)",
            );
            ok = false;
            DEFAULT_KEEP_ALIVE
        }
        Some(k) => k.value,
    };
    let max_payload = match max_payload {
        None => DEFAULT_MAX_PAYLOAD,
        Some(n) if n.value < 1 || n.value > MAX_MAX_PAYLOAD => {
            rep.error(
                &n.span,
                format!("`max_payload` is a size in bytes from 1 to {MAX_MAX_PAYLOAD}"),
            );
            ok = false;
            DEFAULT_MAX_PAYLOAD
        }
        // In range, so it fits a usize.
        Some(n) => usize::try_from(n.value).unwrap_or(DEFAULT_MAX_PAYLOAD),
    };
    for (key, slot) in [
        ("discovery_prefix", &mut discovery.prefix),
        ("zigbee2mqtt_base", &mut discovery.base),
    ] {
        let Some(v) = get(key) else { continue };
        let t = v.value.trim().trim_end_matches('/');
        if topic::check_topic(t).is_err() || t.is_empty() {
            rep.error(
                &v.span,
                format!("`{key}` must be a topic without wildcards, e.g. `{slot}`"),
            );
            ok = false;
        } else {
            *slot = t.to_owned();
        }
        let on = if key == "discovery_prefix" {
            discovery.homeassistant
        } else {
            discovery.zigbee2mqtt
        };
        if !on {
            rep.warn(
                &v.key,
                format!(
                    "has no effect unless `discovery` lists `{}`",
                    if key == "discovery_prefix" {
                        "homeassistant"
                    } else {
                        "zigbee2mqtt"
                    }
                ),
            );
        }
    }
    let url = url?;
    ok.then(|| BrokerConfig {
        url,
        client_id,
        username,
        password: password.map(|s| Password::new(s.expose())),
        ca_file: ca,
        keep_alive,
        max_payload,
        discovery,
    })
}

/// The sources discovery follows.
const DISCOVERY_SOURCES: &[&str] = &["homeassistant", "zigbee2mqtt"];

/// Reads one of `discovery`, `discover_include`, `discover_exclude`, `discover_max_devices`
/// into `d`; `false` when it is wrong (reported).
fn discovery_key(e: &Entry<'_>, d: &mut DiscoveryConfig, rep: &mut Report<'_>) -> bool {
    match e.key {
        "discovery" => {
            let Some(list) = e.strings(rep) else {
                return false;
            };
            let mut ok = true;
            for s in &list.value {
                match s.value.as_str() {
                    "homeassistant" => d.homeassistant = true,
                    "zigbee2mqtt" => d.zigbee2mqtt = true,
                    other => {
                        rep.error(
                            &s.span,
                            format!(
                                "unknown discovery source `{other}`{} (sources: `homeassistant`, `zigbee2mqtt`)",
                                suggestion(other, DISCOVERY_SOURCES.iter().copied())
                            ),
                        );
                        ok = false;
                    }
                }
            }
            ok
        }
        "discover_include" | "discover_exclude" => {
            let Some(list) = e.strings(rep) else {
                return false;
            };
            let mut ok = true;
            for s in &list.value {
                if let Err(err) = globset::Glob::new(&s.value) {
                    rep.error(
                        &s.span,
                        format!("`{}` pattern `{}`: {}", e.key, s.value, err.kind()),
                    );
                    ok = false;
                }
            }
            let patterns = list.value.into_iter().map(|s| s.value).collect();
            if e.key == "discover_include" {
                d.include = patterns;
            } else {
                d.exclude = patterns;
            }
            ok
        }
        _ => match integer(e, rep) {
            Some(n) if n.value < 0 || n.value > 100_000 => {
                rep.error(
                    &n.span,
                    "`discover_max_devices` is a number of devices from 0 to 100000",
                );
                false
            }
            Some(n) => {
                d.max_devices = usize::try_from(n.value).unwrap_or(DEFAULT_MAX_DEVICES);
                true
            }
            None => false,
        },
    }
}

/// An integer value.
fn integer(e: &Entry<'_>, rep: &mut Report<'_>) -> Option<Spanned<i64>> {
    match e.item.as_integer() {
        Some(i) => Some(e.spanned(i)),
        None => {
            rep.error(
                &e.span(),
                format!("`{}` must be an integer (a number of bytes)", e.key),
            );
            None
        }
    }
}

/// A topic level a fleet member can fill: not empty, no `/`, `+`, `#` or NUL.
fn topic_level_problem(member: &str) -> Option<&'static str> {
    if member.is_empty() {
        Some("it is empty")
    } else if member.contains('/') {
        Some("it contains `/`")
    } else if member.contains(['+', '#']) {
        Some("it contains a wildcard")
    } else if member.contains('\0') {
        Some("it contains NUL")
    } else {
        None
    }
}

/// What a `[[device]]` with `fleet = [...]` stands for: one device per member, whose `id` is
/// the member (and `{id}` in its `name` the member too). The `fleet` key stays on the copies:
/// [`device`] reads it as "this is a fleet member". A fleet with problems is reported and
/// stands for nothing.
fn expand_fleet(draft: DeviceDraft<'_>, rep: &mut Report<'_>) -> Expansion {
    let Some(fleet) = draft.extra.iter().find(|e| e.key == "fleet") else {
        return Expansion::One;
    };
    let Some(members) = fleet.strings(rep) else {
        return Expansion::Nothing;
    };
    if let Some(id) = draft.id {
        rep.error(
            &id.key,
            "a [[device]] with `fleet` takes its ids from that list: remove `id`",
        );
        return Expansion::Nothing;
    }
    if members.value.is_empty() {
        rep.error(
            &members.span,
            "`fleet` must list at least one device, e.g. `fleet = [\"kitchen\", \"hall\"]`",
        );
        return Expansion::Nothing;
    }
    let mut ok = true;
    for m in &members.value {
        if let Some(why) = topic_level_problem(&m.value) {
            rep.error(
                &m.span,
                format!(
                    "fleet member `{}` cannot stand for `{{id}}` in a topic: {why}",
                    m.value
                ),
            );
            ok = false;
        }
    }
    if !ok {
        return Expansion::Nothing;
    }
    // The members differ only where `{id}` is: without it in a topic they read, every
    // member would be the same device under another name.
    let reads_own_topic = draft
        .extra
        .iter()
        .chain(draft.field_extras.iter().flat_map(|f| f.iter()))
        .filter(|e| e.key == "topic")
        .any(|e| e.item.as_str().is_some_and(|t| t.contains("{id}")));
    if !reads_own_topic {
        rep.error(
            &fleet.key_span,
            "every member of this fleet would read the same topic: put `{id}` where the \
             member's name goes in `topic`, e.g. `topic = \"zigbee2mqtt/{id}\"`",
        );
        return Expansion::Nothing;
    }
    Expansion::Members(members.value)
}

/// Builds an mqtt device's settings. `id` is the device id as written (a fleet member's text),
/// for `{id}` in its topics; a `fleet` key among `own` marks a fleet member.
fn device(own: &[Entry<'_>], id: Option<&str>, rep: &mut Report<'_>) -> Option<DeviceConfig> {
    let mut ok = true;
    let mut strings: Vec<(&str, Spanned<String>)> = Vec::new();
    let mut stale_after = None;
    let mut fleet = false;
    for e in own {
        match e.key {
            // Already read by `expand_fleets`.
            "fleet" => fleet = true,
            "stale_after" => match e.duration(rep) {
                Some(d) if d.value.is_zero() => {
                    rep.error(&d.span, "`stale_after` must be longer than zero");
                    ok = false;
                }
                Some(d) => stale_after = Some(d.value),
                None => ok = false,
            },
            key => match e.string(rep) {
                Some(s) => strings.push((key, s)),
                None => ok = false,
            },
        }
    }
    let get = |key: &str| strings.iter().find(|(k, _)| *k == key).map(|(_, s)| s);
    // Without a valid id the device is already in error; check shapes with a stand-in.
    let id = id.unwrap_or(PROBE_ID);

    // One device's availability must come from one place: under a filter, any other device's
    // "offline" would switch this one off.
    if let Some(t) = get("availability_topic").filter(|t| !fleet && t.value.contains(['+', '#'])) {
        rep.error(
            &t.span,
            format!(
                "`availability_topic` `{}` is a wildcard filter: a single device needs its own topic \
                 (in a fleet, `{{id}}` stands for each member's)",
                t.value
            ),
        );
        ok = false;
    }
    let mut binding = |key: &str| -> Option<TopicBinding> {
        let t = get(key)?;
        match TopicBinding::new(t.value.trim(), id, fleet) {
            Ok(b) => Some(b),
            Err(e) => {
                rep.error(&t.span, format!("`{key}` `{}`: {e}", t.value));
                ok = false;
                None
            }
        }
    };
    let topic = binding("topic");
    let availability_topic = binding("availability_topic");
    let online = get("availability_online");
    let offline = get("availability_offline");
    let availability = match availability_topic {
        Some(topic) => {
            let online = online.map_or(DEFAULT_ONLINE, |s| s.value.as_str()).trim();
            let offline = offline.map_or(DEFAULT_OFFLINE, |s| s.value.as_str()).trim();
            let span = get("availability_offline")
                .or(get("availability_online"))
                .map(|s| s.span.clone());
            if online.is_empty() || offline.is_empty() || online.eq_ignore_ascii_case(offline) {
                rep.error(
                    &span.unwrap_or_default(),
                    "`availability_online` and `availability_offline` must be different and not empty",
                );
                ok = false;
            }
            Some(Availability {
                topic,
                online: online.to_owned(),
                offline: offline.to_owned(),
            })
        }
        None => {
            for s in [online, offline].into_iter().flatten() {
                rep.warn(&s.key, "has no effect without `availability_topic`");
            }
            None
        }
    };
    let command_topic = command_topic(get("command_topic"), id, rep);
    if get("command_topic").is_some() && command_topic.is_none() {
        ok = false;
    }
    let command_template = template(get("command_template"), rep);
    if get("command_template").is_some() && command_template.is_none() {
        ok = false;
    }
    ok.then_some(DeviceConfig {
        topic,
        availability,
        command_topic,
        command_template,
        stale_after,
    })
}

fn command_topic(t: Option<&Spanned<String>>, id: &str, rep: &mut Report<'_>) -> Option<String> {
    let t = t?;
    let filled = topic::fill(t.value.trim(), id);
    match topic::check_topic(&filled) {
        Ok(()) => Some(filled),
        Err(e) => {
            rep.error(&t.span, format!("`command_topic` `{}`: {e}", t.value));
            None
        }
    }
}

fn template(t: Option<&Spanned<String>>, rep: &mut Report<'_>) -> Option<Template> {
    let t = t?;
    match Template::new(&t.value) {
        Ok(template) => Some(template),
        Err(e) => {
            rep.error(&t.span, format!("`command_template`: {e}"));
            None
        }
    }
}

/// Builds an mqtt field's settings. Its `topic` and `command_topic` keep `{id}` until
/// [`finish_device`] knows the device (their shape is checked here). `label` names the field.
fn field(
    own: &[Entry<'_>],
    kind: FieldType,
    label: &str,
    rep: &mut Report<'_>,
) -> Option<FieldConfig> {
    let mut ok = true;
    let mut strings: Vec<(&str, Spanned<String>)> = Vec::new();
    let mut numbers: Vec<(&str, Spanned<f64>)> = Vec::new();
    let mut options = None;
    for e in own {
        match e.key {
            "scale" | "offset" | "min" | "max" | "step" => match e.number(rep) {
                Some(n) => numbers.push((e.key, n)),
                None => ok = false,
            },
            "options" => match e.strings(rep) {
                Some(list) => options = Some(list),
                None => ok = false,
            },
            key => match e.string(rep) {
                Some(s) => strings.push((key, s)),
                None => ok = false,
            },
        }
    }
    let get = |key: &str| strings.iter().find(|(k, _)| *k == key).map(|(_, s)| s);
    let num = |key: &str| numbers.iter().find(|(k, _)| *k == key).map(|(_, s)| s);

    let json = match get("json") {
        None => None,
        Some(p) => match check_pointer(&p.value) {
            Ok(()) => Some(p.value.clone()),
            Err(e) => {
                rep.error(&p.span, format!("`json` `{}`: {e}", p.value));
                ok = false;
                None
            }
        },
    };
    let topic = match get("topic") {
        None => None,
        Some(t) => match TopicBinding::new(t.value.trim(), PROBE_ID, false) {
            // The template itself, filled in by `finish_device`.
            Ok(_) => Some(TopicBinding {
                filter: t.value.trim().to_owned(),
                subscribe: t.value.trim().to_owned(),
            }),
            Err(e) => {
                rep.error(&t.span, format!("`topic` `{}`: {e}", t.value));
                ok = false;
                None
            }
        },
    };
    let command = match get("command_topic") {
        None => None,
        Some(t) => match command_topic(Some(t), PROBE_ID, rep) {
            Some(_) => Some(t.value.trim().to_owned()),
            None => {
                ok = false;
                None
            }
        },
    };
    let command_template = template(get("command_template"), rep);
    if get("command_template").is_some() && command_template.is_none() {
        ok = false;
    }
    let value_template = match get("value_template") {
        None => None,
        Some(t) => match Jinja::new(&t.value) {
            Ok(j) => Some(j),
            Err(e) => {
                rep.error(&t.span, format!("`value_template` does not compile: {e}"));
                ok = false;
                None
            }
        },
    };
    if let (Some(_), Some(j)) = (get("json"), get("value_template")) {
        rep.error(
            &j.key,
            "give `json` or `value_template`, not both (`value_json` in the template is the parsed payload)",
        );
        ok = false;
    }
    let numeric = matches!(kind, FieldType::Numeric | FieldType::Integer);
    let scale = num("scale");
    let offset = num("offset");
    for s in [scale, offset].into_iter().flatten() {
        if !numeric {
            rep.error(
                &s.key,
                format!("`scale` and `offset` apply to numbers, but {label} is {kind}"),
            );
            ok = false;
        }
    }
    if let Some(s) = scale {
        if s.value == 0.0 {
            rep.error(&s.span, "`scale` must not be zero (writes divide by it)");
            ok = false;
        }
    }
    let on = get("payload_on");
    let off = get("payload_off");
    for (key, s) in [("payload_on", on), ("payload_off", off)] {
        let Some(s) = s else { continue };
        if kind != FieldType::Boolean {
            rep.error(
                &s.key,
                format!("`{key}` applies to boolean fields, but {label} is {kind}"),
            );
            ok = false;
        } else if s.value.trim().is_empty() {
            rep.error(&s.span, "must not be empty");
            ok = false;
        }
    }
    if let (Some(a), Some(b)) = (on, off) {
        if a.value.trim().eq_ignore_ascii_case(b.value.trim()) {
            rep.error(&b.span, "`payload_on` and `payload_off` must differ");
            ok = false;
        }
    }
    let limits = match limits(&num, options.as_ref(), kind, label, rep) {
        Some(l) => l,
        None => {
            ok = false;
            Limits::None
        }
    };
    ok.then(|| FieldConfig {
        limits,
        topic,
        json,
        value_template,
        scale: scale.map_or(1.0, |s| s.value),
        offset: offset.map_or(0.0, |s| s.value),
        payload_on: on.map(|s| s.value.trim().to_owned()),
        payload_off: off.map(|s| s.value.trim().to_owned()),
        command_topic: command,
        command_template,
    })
}

/// The limits of writes a field's `min`, `max`, `step` and `options` give; `None` after an
/// error. A range is for numbers and a list of choices for texts, as Home Assistant's `number`
/// and `select` have them.
fn limits<'a>(
    num: &dyn Fn(&str) -> Option<&'a Spanned<f64>>,
    options: Option<&StringList>,
    kind: FieldType,
    label: &str,
    rep: &mut Report<'_>,
) -> Option<Limits> {
    let (min, max, step) = (num("min"), num("max"), num("step"));
    let numeric = matches!(kind, FieldType::Numeric | FieldType::Integer);
    let mut ok = true;
    for (key, s) in [("min", min), ("max", max), ("step", step)] {
        let Some(s) = s else { continue };
        if !numeric {
            rep.error(
                &s.key,
                format!("`{key}` limits numbers, but {label} is {kind} (a text's choices are `options`)"),
            );
            ok = false;
        }
    }
    if let Some(s) = step {
        if s.value <= 0.0 {
            rep.error(&s.span, "`step` must be more than zero");
            ok = false;
        }
    }
    if let (Some(lo), Some(hi)) = (min, max) {
        if lo.value > hi.value {
            rep.error(
                &hi.span,
                format!("`max` {} is below `min` {}", hi.value, lo.value),
            );
            ok = false;
        }
    }
    if let Some(list) = options {
        if kind != FieldType::String {
            rep.error(
                &list.key,
                format!("`options` are the choices of a text, but {label} is {kind} (a number's range is `min`/`max`)"),
            );
            ok = false;
        } else if list.value.is_empty() {
            rep.error(&list.span, "`options` must list at least one choice");
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    if let Some(list) = options {
        return Some(Limits::Options(
            list.value.iter().map(|o| o.value.clone()).collect(),
        ));
    }
    if min.is_none() && max.is_none() && step.is_none() {
        return Some(Limits::None);
    }
    Some(Limits::Range {
        min: min.map_or(f64::NEG_INFINITY, |s| s.value),
        max: max.map_or(f64::INFINITY, |s| s.value),
        step: step.map_or(0.0, |s| s.value),
    })
}

/// Fills `{id}` into the fields' topics and commands and checks the device and its fields
/// together: a field reads from its own topic or the device's (a writable field may have neither:
/// it then only knows what was written), and a writable field needs a command topic.
fn finish_device(cx: &FinishCx<'_>, fields: &mut [FieldDraft<'_>], rep: &mut Report<'_>) {
    let Some(device) = cx.device.get::<DeviceConfig>() else {
        return;
    };
    let (id, label) = (cx.written_id, cx.label);
    let fleet = cx.extra.iter().any(|e| e.key == "fleet");
    for f in fields.iter_mut() {
        let Some(mut m) = f.settings.get::<FieldConfig>().cloned() else {
            continue;
        };
        let at = f.header;
        let name = &f.spec.name;
        if let Some(t) = m.topic.take() {
            match TopicBinding::new(&t.filter, id, fleet) {
                Ok(b) => m.topic = Some(b),
                Err(e) => rep.error(at, format!("`topic` of field `{name}` of {label}: {e}")),
            }
        }
        if let Some(t) = m.command_topic.take() {
            m.command_topic = Some(topic::fill(&t, id));
        }
        if m.topic.is_none() && device.topic.is_none() && !f.spec.writable {
            rep.error(
                at,
                format!(
                    "field `{name}` of {label} has no topic to read: give the device a `topic` or the field its own"
                ),
            );
        }
        if f.spec.writable && m.command_topic.is_none() && device.command_topic.is_none() {
            let at = f.writable.map_or(at, |w| &w.key);
            rep.error(
                at,
                format!(
                    "field `{name}` of {label} is writable, but neither it nor the device has a `command_topic`"
                ),
            );
        }
        if !f.spec.writable {
            let keys = [
                "command_topic",
                "command_template",
                "min",
                "max",
                "step",
                "options",
            ];
            for e in f.extra.iter().filter(|e| keys.contains(&e.key)) {
                rep.warn(
                    &e.key_span,
                    format!("`{}` has no effect: field `{name}` is not writable", e.key),
                );
            }
        }
        *f.settings = AnySettings::new(m);
    }
}

/// The MQTT adapter type, registered in the gateway as `mqtt`.
pub struct Mqtt;

impl AdapterType for Mqtt {
    fn names(&self) -> &'static [&'static str] {
        &["mqtt"]
    }

    fn keys(&self, _type_name: &str) -> Keys {
        Keys {
            adapter: &[
                "url",
                "username",
                "password_file",
                "password",
                "ca_file",
                "client_id",
                "keep_alive",
                "max_payload",
                "discovery",
                "discovery_prefix",
                "zigbee2mqtt_base",
                "discover_include",
                "discover_exclude",
                "discover_max_devices",
            ],
            device: &[
                "topic",
                "availability_topic",
                "availability_online",
                "availability_offline",
                "command_topic",
                "command_template",
                "stale_after",
                "fleet",
            ],
            field: &[
                "json",
                "value_template",
                "topic",
                "scale",
                "offset",
                "payload_on",
                "payload_off",
                "command_topic",
                "command_template",
                "min",
                "max",
                "step",
                "options",
            ],
        }
    }

    fn peer_names(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("state_topic", "topic"),
            ("payload_available", "availability_online"),
            ("payload_not_available", "availability_offline"),
            ("expire_after", "stale_after"),
        ]
    }

    fn parser(&self) -> Box<dyn ConfigParser> {
        Box::new(Parser)
    }

    fn discover(&self, adapter: &AdapterSlice<'_>, env: &DiscoverEnv<'_>) -> Option<DiscoverTask> {
        let broker = adapter.settings.get::<BrokerConfig>()?.clone();
        if !broker.discovery.enabled() {
            return None;
        }
        let id = adapter.id.to_string();
        let client_id = broker
            .client_id
            .clone()
            .unwrap_or_else(|| crate::default_client_id(env.gateway_name, &id));
        let configured = adapter
            .devices
            .iter()
            .map(|d| d.id.as_str().to_owned())
            .collect();
        let wait = env.wait;
        Some(Box::pin(async move {
            crate::discovery::listen::listen(&id, &broker, &client_id, configured, wait).await
        }))
    }

    fn start(
        &self,
        adapter: AdapterSlice<'_>,
        env: &StartEnv<'_>,
        ctx: AdapterContext,
    ) -> AdapterTask {
        use gateway_api::Adapter;
        let Some(a) = build(&adapter, env.gateway_name) else {
            // The gateway starts an adapter only with the settings this type's parser made.
            tracing::error!(adapter = %adapter.id, "MQTT adapter started without its settings");
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

/// The adapter of `adapter`'s slice: its devices, and the client id (as configured, else
/// derived from the gateway's name and the adapter id).
pub fn build(adapter: &AdapterSlice<'_>, gateway_name: &str) -> Option<MqttAdapter> {
    let devices = adapter
        .devices
        .iter()
        .filter_map(|d| {
            let config = d.settings.get::<DeviceConfig>()?.clone();
            let fields = d
                .fields
                .iter()
                .filter_map(|f| {
                    Some(MqttField {
                        spec: f.spec.clone(),
                        config: f.settings.get::<FieldConfig>()?.clone(),
                    })
                })
                .collect();
            Some(MqttDevice {
                id: d.id.clone(),
                config,
                fields,
            })
        })
        .collect();
    let broker = adapter.settings.get::<BrokerConfig>()?.clone();
    let client_id = broker
        .client_id
        .clone()
        .unwrap_or_else(|| crate::default_client_id(gateway_name, adapter.id));
    Some(MqttAdapter::new(broker, client_id, devices))
}

/// The adapter's counters on `/metrics`: (name, help, value).
fn metrics(s: &MqttStats) -> Vec<(&'static str, &'static str, u64)> {
    vec![
        (
            "mqtt_messages_total",
            "MQTT messages received.",
            count(&s.messages),
        ),
        (
            "mqtt_bad_payloads_total",
            "MQTT messages with a problem (logged).",
            count(&s.bad_payloads),
        ),
        (
            "mqtt_unrouted_total",
            "MQTT messages on a topic no device uses.",
            count(&s.unrouted),
        ),
        (
            "mqtt_commands_total",
            "Commands the broker acknowledged.",
            count(&s.commands),
        ),
        (
            "mqtt_connects_total",
            "Connections to the broker (first and reconnects).",
            count(&s.connects),
        ),
        (
            "mqtt_discovery_configs_total",
            "Announcements taken (new or changed).",
            count(&s.discovery_configs),
        ),
        (
            "mqtt_discovery_bad_configs_total",
            "Announcements refused as malformed (logged).",
            count(&s.discovery_bad_configs),
        ),
        (
            "mqtt_discovery_template_errors_total",
            "Discovery templates that did not compile or failed (logged).",
            count(&s.discovery_template_errors),
        ),
        (
            "mqtt_discovery_skipped_total",
            "Discovered devices left out: configured, excluded or over the limit.",
            count(&s.discovery_skipped),
        ),
    ]
}

/// MQTT keys need no memory across devices: fleets and fields are checked per device.
struct Parser;

impl ConfigParser for Parser {
    fn adapter(&mut self, cx: AdapterCx<'_>, rep: &mut Report<'_>) -> Option<AnySettings> {
        adapter(cx.own, cx.header, &cx.files, rep).map(AnySettings::new)
    }

    fn expand(&mut self, draft: DeviceDraft<'_>, rep: &mut Report<'_>) -> Expansion {
        expand_fleet(draft, rep)
    }

    fn device(&mut self, cx: DeviceCx<'_>, rep: &mut Report<'_>) -> Option<AnySettings> {
        device(cx.own, cx.written_id, rep).map(AnySettings::new)
    }

    fn field(&mut self, cx: FieldCx<'_>, rep: &mut Report<'_>) -> Option<ParsedField> {
        field(cx.own, cx.kind, cx.label, rep).map(|f| ParsedField::new(AnySettings::new(f)))
    }

    fn finish_device(
        &mut self,
        cx: FinishCx<'_>,
        fields: &mut [FieldDraft<'_>],
        rep: &mut Report<'_>,
    ) {
        finish_device(&cx, fields, rep);
    }
}
