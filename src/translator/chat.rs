//! Plain-text commands in chat messages to a device, and the text it answers with.
//!
//! `help` (or `?`), `get`, `get <field>`, `set <field> <value>`, and the alert commands
//! (`alert …`, `alerts`, whose syntax is [`super::alert_command`]'s): for people using an
//! ordinary XMPP client. The command word is case-insensitive; field names and values are passed on as
//! typed (the caller looks fields up and parses values with `Value::parse`). In a MUC room the
//! device answers lines addressed to it (`<id>: get`); [`addressed_to`] strips the address.

use std::fmt::Write;

use gateway_api::{FieldSpec, FieldType, Value};

use super::status::{truncate_with_ellipsis, value_with_unit};
use super::xml_text::one_line;

/// The longest piece of a user's message quoted back in an answer, in bytes.
const ECHO_MAX_BYTES: usize = 40;

/// What a chat message asks of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatCommand {
    /// `help`, `?`, or an empty message.
    Help,
    /// `get`: every field; `get <field>`: that one (the rest of the line, trimmed).
    Get(Option<String>),
    /// `set <field> <value>`: the value is the rest of the line (it may contain spaces).
    Set { field: String, value: String },
    /// `alert …`: the rest of the line (read by [`super::alert_command::parse`]).
    Alert(String),
    /// `alerts`: the sender's alerts on this device.
    Alerts,
    /// `chart …`: the rest of the line (read by [`crate::charts::parse_request`]).
    Chart(String),
    /// Anything else: the command word as typed. Also `set` without a field and a value, as
    /// `Unknown("set")`, for which [`unknown_text`] answers with the usage line.
    Unknown(String),
}

/// The usage line of `set`, the answer to a `set` that lacks its field or value.
pub const SET_USAGE: &str = "Usage: set <field> <value>";

/// Parses the first non-empty line of a message body.
pub fn parse_command(body: &str) -> ChatCommand {
    let line = body
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let (word, rest) = split_word(line);
    match word.to_lowercase().as_str() {
        "" | "help" | "?" => ChatCommand::Help,
        "get" => ChatCommand::Get((!rest.is_empty()).then(|| rest.to_owned())),
        "set" => match split_word(rest) {
            (field, value) if !field.is_empty() && !value.is_empty() => ChatCommand::Set {
                field: field.to_owned(),
                value: value.to_owned(),
            },
            _ => ChatCommand::Unknown("set".to_owned()),
        },
        "alert" => ChatCommand::Alert(rest.to_owned()),
        "alerts" => ChatCommand::Alerts,
        "chart" => ChatCommand::Chart(rest.to_owned()),
        _ => ChatCommand::Unknown(word.to_owned()),
    }
}

/// In a MUC room, the command in `body` if it is addressed to `nick` (`nick: get`, `nick, get`,
/// case-insensitive); `None` when it is for someone else.
pub fn addressed_to<'a>(body: &'a str, nick: &str) -> Option<&'a str> {
    let body = body.trim_start();
    let head = body.get(..nick.len())?;
    if nick.is_empty() || !head.eq_ignore_ascii_case(nick) {
        return None;
    }
    let rest = &body[nick.len()..];
    let rest = rest.strip_prefix(':').or_else(|| rest.strip_prefix(','))?;
    Some(rest.trim())
}

/// The answer to `help`: the commands, and the fields with their units and types.
pub fn help_text(device_name: &str, fields: &[&FieldSpec], can_set: bool) -> String {
    let settable = can_set && fields.iter().any(|f| f.writable);
    let mut s = format!("{} understands:\n", one_line(device_name));
    s.push_str("  help: this text\n");
    s.push_str("  get: every value\n");
    s.push_str("  get <field>: one value\n");
    if settable {
        s.push_str("  set <field> <value>: change a writable field\n");
    }
    s.push_str("  chart <field> [<field>…] [24h|7d…]: its history, with min/max/mean\n");
    // Writing to a String cannot fail.
    let _ = writeln!(s, "  {}", super::alert_command::USAGE);
    if fields.is_empty() {
        s.push_str("It has no fields.");
        return s;
    }
    s.push_str("Fields:");
    for f in fields {
        // Writing to a String cannot fail.
        let _ = write!(s, "\n  {} ({}", one_line(&f.name), type_hint(f.kind));
        let unit = one_line(&f.unit);
        if !unit.is_empty() {
            let _ = write!(s, ", {unit}");
        }
        if f.writable && settable {
            s.push_str(", writable");
        }
        s.push(')');
    }
    s
}

fn type_hint(kind: FieldType) -> &'static str {
    match kind {
        FieldType::Numeric => "number",
        FieldType::Integer => "integer",
        FieldType::Boolean => "on/off",
        FieldType::String => "text",
    }
}

/// The answer to `get`: one line per field, `temperature: 21.5 °C`, or
/// `temperature: (no reading yet)`.
pub fn get_text(fields: &[(&FieldSpec, Option<&Value>)]) -> String {
    if fields.is_empty() {
        return "No fields.".to_owned();
    }
    let lines: Vec<String> = fields
        .iter()
        .map(|(spec, value)| {
            let shown = match value {
                Some(v) => value_with_unit(spec, v),
                None => "(no reading yet)".to_owned(),
            };
            format!("{}: {shown}", one_line(&spec.name))
        })
        .collect();
    lines.join("\n")
}

/// The answer to an unknown command: ``Unknown command `foo`. Try `help`.``; to an incomplete
/// `set`, its usage line.
pub fn unknown_text(cmd: &str) -> String {
    if cmd.eq_ignore_ascii_case("set") {
        return SET_USAGE.to_owned();
    }
    let cmd = truncate_with_ellipsis(one_line(cmd).into_owned(), ECHO_MAX_BYTES);
    format!("Unknown command `{cmd}`. Try `help`.")
}

/// Splits off the first whitespace-separated word; the rest is trimmed.
pub(crate) fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

/// The numeric field `name` (case-insensitive) among `specs`, or the answer saying why not;
/// `what_for` ends the answer about a non-numeric field ("alerts compare numbers").
pub fn numeric_field<'s>(
    specs: impl IntoIterator<Item = &'s FieldSpec>,
    name: &str,
    what_for: &str,
) -> Result<&'s FieldSpec, String> {
    let specs: Vec<&FieldSpec> = specs.into_iter().collect();
    let Some(spec) = specs
        .iter()
        .copied()
        .find(|s| s.name.eq_ignore_ascii_case(name))
    else {
        return Err(no_such_field(
            &one_line(name),
            specs.iter().map(|s| &*s.name),
        ));
    };
    match spec.kind {
        FieldType::Numeric | FieldType::Integer => Ok(spec),
        _ => Err(format!("`{}` is not a number: {what_for}.", spec.name)),
    }
}

/// The answer about a field the device does not have, with the names it has.
pub fn no_such_field<'a>(field: &str, names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    format!("No field `{field}`. Fields: {}.", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, unit: &str, kind: FieldType, writable: bool) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            unit: unit.into(),
            kind,
            writable,
        }
    }

    fn set(field: &str, value: &str) -> ChatCommand {
        ChatCommand::Set {
            field: field.into(),
            value: value.into(),
        }
    }

    #[test]
    fn parses_commands() {
        assert_eq!(parse_command("help"), ChatCommand::Help);
        assert_eq!(parse_command("  HELP  "), ChatCommand::Help);
        assert_eq!(parse_command("?"), ChatCommand::Help);
        assert_eq!(parse_command(""), ChatCommand::Help);
        assert_eq!(parse_command(" \n\t "), ChatCommand::Help);
        assert_eq!(parse_command("get"), ChatCommand::Get(None));
        assert_eq!(
            parse_command("Get  Temperature "),
            ChatCommand::Get(Some("Temperature".into()))
        );
        assert_eq!(parse_command("set heater on"), set("heater", "on"));
        assert_eq!(
            parse_command("SET\tdisplay  Hello   world "),
            set("display", "Hello   world")
        );
        assert_eq!(parse_command("set"), ChatCommand::Unknown("set".into()));
        assert_eq!(
            parse_command("Set heater"),
            ChatCommand::Unknown("set".into())
        );
        assert_eq!(
            parse_command("Alert temperature > 30 for 10m"),
            ChatCommand::Alert("temperature > 30 for 10m".into())
        );
        assert_eq!(parse_command("ALERTS"), ChatCommand::Alerts);
        assert_eq!(
            parse_command("chart temperature 7d"),
            ChatCommand::Chart("temperature 7d".into())
        );
        assert_eq!(
            parse_command("frobnicate now"),
            ChatCommand::Unknown("frobnicate".into())
        );
        // Only the first non-empty line counts (a client signature below is ignored).
        assert_eq!(
            parse_command("\n get temperature\n-- \nsent from my phone"),
            ChatCommand::Get(Some("temperature".into()))
        );
        // Case folding is Unicode-aware and never panics on odd input.
        assert_eq!(parse_command("GÉT"), ChatCommand::Unknown("GÉT".into()));
        assert_eq!(parse_command("\u{0}"), ChatCommand::Unknown("\u{0}".into()));
    }

    #[test]
    fn strips_a_muc_address() {
        assert_eq!(addressed_to("boiler: get", "boiler"), Some("get"));
        assert_eq!(
            addressed_to("  Boiler,set heater on", "boiler"),
            Some("set heater on")
        );
        assert_eq!(addressed_to("boiler:", "boiler"), Some(""));
        assert_eq!(addressed_to("boilers: get", "boiler"), None);
        assert_eq!(addressed_to("pump: get", "boiler"), None);
        assert_eq!(addressed_to("get", "boiler"), None);
        assert_eq!(addressed_to("é: get", "x"), None);
        assert_eq!(addressed_to(": get", ""), None);
    }

    fn fields() -> [FieldSpec; 3] {
        [
            spec("temperature", "°C", FieldType::Numeric, false),
            spec("heater", "", FieldType::Boolean, true),
            spec("count", "", FieldType::Integer, false),
        ]
    }

    #[test]
    fn help_lists_commands_and_fields() {
        let f = fields();
        let refs: Vec<&FieldSpec> = f.iter().collect();
        assert_eq!(
            help_text("Boiler room", &refs, true),
            format!("Boiler room understands:\n  help: this text\n  get: every value\n  get <field>: one value\n  \
             set <field> <value>: change a writable field\n  \
             chart <field> [<field>…] [24h|7d…]: its history, with min/max/mean\n  {}\n\
             Fields:\n  temperature (number, °C)\n  heater (on/off, writable)\n  count (integer)",
                crate::translator::alert_command::USAGE
            )
        );
        // A user who may not set sees neither the command nor the writable marks.
        let read_only = help_text("Boiler room", &refs, false);
        assert!(
            !read_only.contains("set") && !read_only.contains("writable"),
            "{read_only}"
        );
        assert!(help_text("x", &[], true).ends_with("It has no fields."));
    }

    #[test]
    fn get_shows_each_field_on_a_line() {
        let [t, h, c] = fields();
        let s = spec("display", "", FieldType::String, true);
        let (vt, vh, vs) = (
            Value::Float(21.5),
            Value::Bool(false),
            Value::Text("two\nlines".into()),
        );
        assert_eq!(
            get_text(&[
                (&t, Some(&vt)),
                (&h, Some(&vh)),
                (&c, None),
                (&s, Some(&vs))
            ]),
            "temperature: 21.5 °C\nheater: off\ncount: (no reading yet)\ndisplay: two lines"
        );
        assert_eq!(get_text(&[]), "No fields.");
    }

    #[test]
    fn unknown_commands_get_a_short_hint() {
        assert_eq!(unknown_text("foo"), "Unknown command `foo`. Try `help`.");
        let long = unknown_text(&"x".repeat(1000));
        assert!(long.len() < 80, "{long}");
        assert!(long.contains("x…`"));
        assert_eq!(
            unknown_text("a\u{0}\nb"),
            "Unknown command `a b`. Try `help`."
        );
    }
}
