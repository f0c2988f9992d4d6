//! The MQTT adapter's keys: the broker of an `[[adapter]]`, the topics of a `[[device]]`, the
//! payload part and command of a `[[device.field]]`, and fleets.
//!
//! Adapter keys: `url` (required, `mqtt://` or `mqtts://`), `client_id` (default derived from
//! `[gateway] name` and the adapter id when the adapter starts), `username`,
//! `password_file`/`password`, `ca_file`, `keep_alive` (30 s), `max_payload` (65536 bytes).
//! Device keys: `topic`, `availability_topic` with `availability_online`/`availability_offline`,
//! `command_topic`, `command_template`, `stale_after`, `fleet`. Field keys: `json`, `topic`,
//! `scale`, `offset`, `payload_on`, `payload_off`, `command_topic`, `command_template`.
//!
//! A fleet is one `[[device]]` with `fleet = ["kitchen", "hall", ...]` instead of `id`: it stands
//! for one device per member, whose id is the member, and `{id}` in its topics (and `name`)
//! is replaced by the member as written. [`expand_fleets`] does that before the devices are
//! validated, so every member is checked (id, JID, duplicates) like any device. Field topics and
//! commands may use `{id}` too; [`finish_device`] fills them in once the device is known and
//! checks what needs the device and its fields together (a writable field needs a command topic,
//! a field needs a topic to read).

use std::time::Duration;

use gateway_api::FieldType;
use gateway_mqtt::config::{
    check_pointer, Availability, BrokerConfig, BrokerUrl, DeviceConfig, FieldConfig, Password,
    Template, TopicBinding, DEFAULT_KEEP_ALIVE, DEFAULT_MAX_PAYLOAD, DEFAULT_OFFLINE,
    DEFAULT_ONLINE,
};
use gateway_mqtt::topic;
use toml_edit::{Item, Value as TomlValue};

use super::model::{FieldBinding, FieldConfig as ModelField};
use super::raw::{Entry, RawDevice, Spanned};
use super::validate::Context;
use gateway_toolkit::{check_text, Pair, Report, Span};

/// The largest `max_payload` accepted: what MQTT can carry at all.
const MAX_MAX_PAYLOAD: i64 = 268_435_455;
/// The id used to check the shape of a template before the device is known.
const PROBE_ID: &str = "x";

/// Builds the broker settings of an `[[adapter]]` of type `mqtt` (`own`: its mqtt keys;
/// `header`: the `[[adapter]]` header, for a missing `url`).
pub(super) fn adapter(
    own: &[Entry<'_>],
    header: &Span,
    ctx: &Context<'_>,
    rep: &mut Report<'_>,
) -> Option<BrokerConfig> {
    let mut ok = true;
    let mut strings: Vec<(&str, Spanned<String>)> = Vec::new();
    let mut keep_alive = None;
    let mut max_payload = None;
    for e in own {
        match e.key {
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
    let password = ctx.files().secret(
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
    let ca = get("ca_file").and_then(|f| ctx.files().ca_file(rep, f));
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
    let url = url?;
    ok.then(|| BrokerConfig {
        url,
        client_id,
        username,
        password: password.map(|s| Password::new(s.expose())),
        ca_file: ca,
        keep_alive,
        max_payload,
    })
}

/// An integer value.
fn integer(e: &Entry<'_>, rep: &mut Report<'_>) -> Option<Spanned<i64>> {
    match e.item {
        Item::Value(TomlValue::Integer(i)) => Some(Spanned {
            value: *i.value(),
            key: e.key_span.clone(),
            span: e.span(),
        }),
        _ => {
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

/// Replaces every `[[device]]` with `fleet = [...]` on an mqtt adapter (`is_mqtt` tells which
/// adapter ids are mqtt) by one copy per member, with the member as `id` and `{id}` in `name`
/// filled in. The `fleet` key stays on the copies: [`device`] reads it as "this is a fleet
/// member". A fleet with problems is reported and left out.
pub(super) fn expand_fleets<'a>(
    raws: Vec<RawDevice<'a>>,
    is_mqtt: impl Fn(&str) -> bool,
    rep: &mut Report<'_>,
) -> Vec<RawDevice<'a>> {
    let mut out = Vec::with_capacity(raws.len());
    for raw in raws {
        let fleet = raw.extra.iter().find(|e| e.key == "fleet").cloned();
        let on_mqtt = raw.adapter.as_ref().is_some_and(|a| is_mqtt(&a.value));
        let Some(fleet) = fleet.filter(|_| on_mqtt) else {
            out.push(raw);
            continue;
        };
        let Some(members) = fleet.strings(rep) else {
            continue;
        };
        if let Some(id) = &raw.id {
            rep.error(
                &id.key,
                "a [[device]] with `fleet` takes its ids from that list: remove `id`",
            );
            continue;
        }
        if members.value.is_empty() {
            rep.error(
                &members.span,
                "`fleet` must list at least one device, e.g. `fleet = [\"kitchen\", \"hall\"]`",
            );
            continue;
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
            continue;
        }
        // The members differ only where `{id}` is: without it in a topic they read, every
        // member would be the same device under another name.
        let reads_own_topic = raw
            .extra
            .iter()
            .chain(raw.fields.iter().flat_map(|f| f.extra.iter()))
            .filter(|e| e.key == "topic")
            .any(|e| e.item.as_str().is_some_and(|t| t.contains("{id}")));
        if !reads_own_topic {
            rep.error(
                &fleet.key_span,
                "every member of this fleet would read the same topic: put `{id}` where the \
                 member's name goes in `topic`, e.g. `topic = \"zigbee2mqtt/{id}\"`",
            );
            continue;
        }
        for m in members.value {
            let mut copy = raw.clone();
            if let Some(name) = &mut copy.name {
                name.value = name.value.replace("{id}", &m.value);
            }
            copy.id = Some(m);
            out.push(copy);
        }
    }
    out
}

/// Builds an mqtt device's settings. `id` is the device id as written (a fleet member's text),
/// for `{id}` in its topics; a `fleet` key among `own` marks a fleet member.
pub(super) fn device(
    own: &[Entry<'_>],
    id: Option<&str>,
    rep: &mut Report<'_>,
) -> Option<DeviceConfig> {
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
pub(super) fn field(
    own: &[Entry<'_>],
    kind: FieldType,
    label: &str,
    rep: &mut Report<'_>,
) -> Option<FieldConfig> {
    let mut ok = true;
    let mut strings: Vec<(&str, Spanned<String>)> = Vec::new();
    let mut numbers: Vec<(&str, Spanned<f64>)> = Vec::new();
    for e in own {
        match e.key {
            "scale" | "offset" => match e.number(rep) {
                Some(n) => numbers.push((e.key, n)),
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
    ok.then(|| FieldConfig {
        topic,
        json,
        scale: scale.map_or(1.0, |s| s.value),
        offset: offset.map_or(0.0, |s| s.value),
        payload_on: on.map(|s| s.value.trim().to_owned()),
        payload_off: off.map(|s| s.value.trim().to_owned()),
        command_topic: command,
        command_template,
    })
}

/// Fills `{id}` into the fields' topics and commands and checks the device and its fields
/// together: a field reads from its own topic or the device's (a writable field may have neither:
/// it then only knows what was written), and a writable field needs a command topic. `raw` is
/// the device as written (its id, fleet marker and field positions); `label` names it.
pub(super) fn finish_device(
    device: &DeviceConfig,
    fields: &mut [ModelField],
    raw: &RawDevice<'_>,
    label: &str,
    rep: &mut Report<'_>,
) {
    let Some(id) = raw.id.as_ref().map(|i| i.value.as_str()) else {
        return;
    };
    let fleet = raw.extra.iter().any(|e| e.key == "fleet");
    let (raws, header) = (&raw.fields, &raw.span);
    for f in fields.iter_mut() {
        let FieldBinding::Mqtt(m) = &mut f.binding else {
            continue;
        };
        let raw = raws
            .iter()
            .find(|r| r.name.as_ref().is_some_and(|n| *n.value == *f.spec.name));
        let at = raw.map_or(header.clone(), |r| r.span.clone());
        let name = &f.spec.name;
        if let Some(t) = m.topic.take() {
            match TopicBinding::new(&t.filter, id, fleet) {
                Ok(b) => m.topic = Some(b),
                Err(e) => rep.error(&at, format!("`topic` of field `{name}` of {label}: {e}")),
            }
        }
        if let Some(t) = m.command_topic.take() {
            m.command_topic = Some(topic::fill(&t, id));
        }
        if m.topic.is_none() && device.topic.is_none() && !f.spec.writable {
            rep.error(
                &at,
                format!(
                    "field `{name}` of {label} has no topic to read: give the device a `topic` or the field its own"
                ),
            );
        }
        if f.spec.writable && m.command_topic.is_none() && device.command_topic.is_none() {
            let at = raw
                .and_then(|r| r.writable.as_ref())
                .map_or(at.clone(), |w| w.key.clone());
            rep.error(
                &at,
                format!(
                    "field `{name}` of {label} is writable, but neither it nor the device has a `command_topic`"
                ),
            );
        }
        if !f.spec.writable {
            let keys = ["command_topic", "command_template"];
            if let Some(r) = raw {
                for e in r.extra.iter().filter(|e| keys.contains(&e.key)) {
                    rep.warn(
                        &e.key_span,
                        format!("`{}` has no effect: field `{name}` is not writable", e.key),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::validate::tests::{errors, ok, warnings, HEAD};
    use crate::config::{AdapterKind, DeviceBinding, FieldBinding, Loaded};
    use gateway_mqtt::config::{BrokerConfig, DeviceConfig, FieldConfig};
    use std::time::Duration;

    /// `[xmpp]` and an mqtt adapter `bus`; tests' own lines start at line 8.
    fn mqtt(rest: &str) -> String {
        format!(
            "[xmpp]\ndomain = \"sensors.example.org\"\nsecret = \"s\"\n[[adapter]]\nid = \"bus\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\n{rest}"
        )
    }

    fn broker(loaded: &Loaded) -> BrokerConfig {
        match &loaded.config.adapters[0].kind {
            AdapterKind::Mqtt(b) => b.clone(),
            other => panic!("not mqtt: {other:?}"),
        }
    }

    fn dev(loaded: &Loaded, i: usize) -> DeviceConfig {
        match &loaded.config.devices[i].binding {
            DeviceBinding::Mqtt(d) => d.clone(),
            other => panic!("not mqtt: {other:?}"),
        }
    }

    fn fld(loaded: &Loaded, d: usize, f: usize) -> FieldConfig {
        match &loaded.config.devices[d].fields[f].binding {
            FieldBinding::Mqtt(c) => c.clone(),
            other => panic!("not mqtt: {other:?}"),
        }
    }

    #[test]
    fn adapter_keys_and_defaults() {
        let loaded = ok(&mqtt(""));
        let b = broker(&loaded);
        assert_eq!(b.url.to_string(), "mqtt://127.0.0.1:1883");
        assert_eq!(b.client_id, None);
        assert_eq!(b.keep_alive, Duration::from_secs(30));
        assert_eq!(b.max_payload, 65_536);
        let loaded = ok(&mqtt(
            "client_id = \"gw-1\"\nusername = \"gw\"\npassword = \"pw\"\nkeep_alive = \"10s\"\nmax_payload = 1024\n",
        ));
        let b = broker(&loaded);
        assert_eq!(
            (
                b.client_id.as_deref(),
                b.username.as_deref(),
                b.password.as_ref().map(|p| p.expose()),
                b.keep_alive,
                b.max_payload
            ),
            (
                Some("gw-1"),
                Some("gw"),
                Some("pw"),
                Duration::from_secs(10),
                1024
            )
        );
        assert!(warnings(&loaded)
            .iter()
            .any(|w| w.contains("inline `password`")));

        let e = errors(
            "[xmpp]\ndomain = \"sensors.example.org\"\nsecret = \"s\"\n[[adapter]]\nid = \"bus\"\ntype = \"mqtt\"\n",
        );
        assert_eq!(e, ["4:1: an `mqtt` adapter needs `url`, e.g. `url = \"mqtt://127.0.0.1:1883\"` (or `mqtts://` for TLS)"]);
        let e = errors(&mqtt(
            "keep_alive = \"500ms\"\nmax_payload = 0\npassword = \"x\"\nclient_id = \"\"\n",
        ));
        assert_eq!(
            e,
            [
                "8:14: `keep_alive` must be between 1 s and 65535 s (about 18 h)",
                "9:15: `max_payload` is a size in bytes from 1 to 268435455",
                "10:1: a broker password needs a `username` too",
                "11:13: `client_id` must not be empty",
            ]
        );
        let e = errors(
            "[xmpp]\ndomain = \"sensors.example.org\"\nsecret = \"s\"\n[[adapter]]\nid = \"bus\"\ntype = \"mqtt\"\nurl = \"tcp://h\"\nmax_payload = \"64KiB\"\n",
        );
        assert_eq!(
            e,
            [
                "7:7: `url` `tcp://h`: the URL must start with `mqtt://` or `mqtts://` (TLS)",
                "8:15: `max_payload` must be an integer (a number of bytes)",
            ]
        );
        let loaded = ok(&mqtt("ca_file = \"/nonexistent/ca.pem\"\n"));
        let w = warnings(&loaded);
        assert!(
            w.iter()
                .any(|w| w.contains("`ca_file` has no effect with `mqtt://`")),
            "{w:?}"
        );
    }

    #[test]
    fn devices_and_fields() {
        let loaded = ok(&mqtt(
            r#"[[device]]
id = "Boiler"
adapter = "bus"
topic = "plant/{id}/state"
availability_topic = "plant/{id}/status"
availability_online = "Online"
availability_offline = "Offline"
command_topic = "plant/{id}/set"
stale_after = "1m"
  [[device.field]]
  name = "temperature"
  json = "/temp"
  scale = 0.1
  offset = -5
  [[device.field]]
  name = "pump"
  type = "boolean"
  json = "/pump"
  payload_on = "ON"
  payload_off = "OFF"
  writable = true
  [[device.field]]
  name = "power"
  type = "boolean"
  topic = "stat/{id}/POWER"
  command_topic = "cmnd/{id}/POWER"
  command_template = "{value}"
  payload_on = "ON"
  payload_off = "OFF"
  writable = true
"#,
        ));
        let d = dev(&loaded, 0);
        assert_eq!(d.topic.as_ref().unwrap().filter, "plant/Boiler/state");
        let a = d.availability.as_ref().unwrap();
        assert_eq!(
            (
                a.topic.filter.as_str(),
                a.online.as_str(),
                a.offline.as_str()
            ),
            ("plant/Boiler/status", "Online", "Offline")
        );
        assert_eq!(d.command_topic.as_deref(), Some("plant/Boiler/set"));
        assert_eq!(d.stale_after, Some(Duration::from_secs(60)));
        let t = fld(&loaded, 0, 0);
        assert_eq!(
            (t.json.as_deref(), t.scale, t.offset),
            (Some("/temp"), 0.1, -5.0)
        );
        let p = fld(&loaded, 0, 2);
        assert_eq!(p.topic.as_ref().unwrap().filter, "stat/Boiler/POWER");
        assert_eq!(p.command_topic.as_deref(), Some("cmnd/Boiler/POWER"));
        assert_eq!(p.payload_on.as_deref(), Some("ON"));
    }

    #[test]
    fn device_and_field_errors() {
        let e = errors(&mqtt(
            r#"[[device]]
id = "d"
adapter = "bus"
topic = "a/#/b"
command_topic = "a/+"
stale_after = "0s"
command_template = "{valeu}"
availability_online = "up"
  [[device.field]]
  name = "t"
  json = "temp"
  payload_on = "1"
  scale = 0
  [[device.field]]
  name = "s"
  type = "string"
  scale = 2
"#,
        ));
        assert_eq!(
            e,
            [
                "11:9: `topic` `a/#/b`: `#` must be the whole last level of a filter, as in `home/#`",
                "12:17: `command_topic` `a/+`: wildcards (`+`, `#`) are only allowed where the gateway subscribes, not where it publishes",
                "13:15: `stale_after` must be longer than zero",
                "14:20: `command_template`: unknown placeholder `{valeu}` (placeholders: `{value}`, `{json}`, `{field}`)",
                "18:10: `json` `temp`: a JSON pointer starts with `/` (RFC 6901), e.g. `/temperature` or `/sensors/0/value`; `\"\"` is the whole document",
                "19:3: `payload_on` applies to boolean fields, but field `t` of device `d` is numeric",
                "20:11: `scale` must not be zero (writes divide by it)",
                "24:3: `scale` and `offset` apply to numbers, but field `s` of device `d` is string",
            ]
        );
        let loaded = ok(&mqtt("[[device]]\nid = \"d\"\nadapter = \"bus\"\ntopic = \"t\"\navailability_online = \"up\"\n[[device.field]]\nname = \"t\"\n"));
        assert!(warnings(&loaded)
            .contains(&"12:1: has no effect without `availability_topic`".to_owned()));
        let e = errors(&mqtt(
            "[[device]]\nid = \"d\"\nadapter = \"bus\"\n[[device.field]]\nname = \"t\"\n[[device.field]]\nname = \"w\"\nwritable = true\n",
        ));
        assert_eq!(
            e,
            [
                "11:1: field `t` of device `d` has no topic to read: give the device a `topic` or the field its own",
                "15:1: field `w` of device `d` is writable, but neither it nor the device has a `command_topic`",
            ]
        );
        let e = errors(&mqtt(
            "[[device]]\nid = \"d\"\nadapter = \"bus\"\ntopic = \"t\"\navailability_topic = \"a\"\navailability_offline = \"ONLINE\"\n",
        ));
        assert_eq!(e, ["13:24: `availability_online` and `availability_offline` must be different and not empty"]);
    }

    #[test]
    fn fleets_expand_into_one_device_per_member() {
        let loaded = ok(&mqtt(
            r#"[[device]]
fleet = ["Kitchen", "hall"]
name = "Plug {id}"
adapter = "bus"
topic = "tele/{id}/SENSOR"
availability_topic = "tele/{id}/LWT"
command_topic = "cmnd/{id}/POWER"
  [[device.field]]
  name = "power"
  json = "/ENERGY/Power"
  [[device.field]]
  name = "relay"
  type = "boolean"
  topic = "stat/{id}/POWER"
  command_template = "{value}"
  writable = true
"#,
        ));
        let devices = &loaded.config.devices;
        assert_eq!(devices.len(), 2);
        assert_eq!(
            (devices[0].id.as_str(), devices[0].name.as_str()),
            ("kitchen", "Plug Kitchen")
        );
        assert_eq!(devices[1].jid, "hall@sensors.example.org");
        let k = dev(&loaded, 0);
        let t = k.topic.unwrap();
        assert_eq!(
            (t.filter.as_str(), t.subscribe.as_str()),
            ("tele/Kitchen/SENSOR", "tele/+/SENSOR")
        );
        assert_eq!(k.command_topic.as_deref(), Some("cmnd/Kitchen/POWER"));
        let relay = fld(&loaded, 1, 1).topic.unwrap();
        assert_eq!(
            (relay.filter.as_str(), relay.subscribe.as_str()),
            ("stat/hall/POWER", "stat/+/POWER")
        );

        let e = errors(&mqtt(
            "[[device]]\nfleet = [\"a/b\", \"ok\", \"OK\"]\nadapter = \"bus\"\ntopic = \"t/{id}\"\n[[device.field]]\nname = \"v\"\n",
        ));
        assert_eq!(
            e,
            ["9:10: fleet member `a/b` cannot stand for `{id}` in a topic: it contains `/`"]
        );
        let e = errors(&mqtt(
            "[[device]]\nfleet = [\"ok\", \"OK\", \"no way\"]\nadapter = \"bus\"\ntopic = \"t/{id}\"\n[[device.field]]\nname = \"v\"\n",
        ));
        assert_eq!(
            e,
            [
                "9:16: device id `OK` is the same as `ok` (line 9) once lower-cased, as the XMPP server folds it",
                "9:22: device id `no way` is not valid: a device id may only contain a-z, 0-9, '.', '_' and '-' (found ' ')",
            ]
        );
        let e = errors(&mqtt(
            "[[device]]\nid = \"x\"\nfleet = []\nadapter = \"bus\"\n",
        ));
        assert_eq!(
            e,
            ["9:1: a [[device]] with `fleet` takes its ids from that list: remove `id`"]
        );
        // `fleet` belongs to mqtt devices.
        let e = errors(&format!(
            "{HEAD}[[device]]\nfleet = [\"a\"]\nadapter = \"sim\"\n"
        ));
        assert!(
            e.iter()
                .any(|l| l.contains("`fleet` is a key of `mqtt` devices")),
            "{e:?}"
        );
    }
}
