//! Alerts by chat: `alert temperature > 30 for 10m`, `alert offline for 5m`, `alerts`,
//! `alert off 2`. Parsing only; the core checks fields and keeps the alerts.

use std::time::Duration;

use super::chat::split_word;
use crate::config::AlertCondition;

/// The usage lines, for `help` and for an `alert` the parser cannot read.
pub const USAGE: &str = "alert <field> > <number> [for 10m]: tell me when it holds\n  \
    alert <field> < <number> [for 10m]\n  \
    alert offline [for 5m]: tell me when the device is unavailable\n  \
    alerts: my alerts\n  \
    alert off <n>: remove alert n";

/// A new alert as typed.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    /// As typed; `None` for `offline`.
    pub field: Option<String>,
    pub condition: AlertCondition,
    pub hold: Duration,
}

/// What an `alert…` line asks.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertCommand {
    Add(NewAlert),
    /// `alert off <n>`
    Remove(u32),
    /// Could not be read: the answer explains why.
    Invalid(String),
}

/// Parses what follows the word `alert` (`rest`, trimmed).
pub fn parse(rest: &str) -> AlertCommand {
    let rest = rest.trim();
    if rest.is_empty() {
        return AlertCommand::Invalid(format!("Usage:\n  {USAGE}"));
    }
    let (first, after) = split_word(rest);
    if first.eq_ignore_ascii_case("off") {
        return match after.trim_start_matches('#').parse::<u32>() {
            Ok(n) => AlertCommand::Remove(n),
            Err(_) => {
                AlertCommand::Invalid("Usage: alert off <n> (the numbers are in `alerts`)".into())
            }
        };
    }
    if first.eq_ignore_ascii_case("offline") {
        return match hold(after) {
            Ok(hold) => AlertCommand::Add(NewAlert {
                field: None,
                condition: AlertCondition::Offline,
                hold,
            }),
            Err(e) => AlertCommand::Invalid(e),
        };
    }
    let Some((field, above, tail)) = split_comparison(rest) else {
        return AlertCommand::Invalid(format!(
            "Not understood. Write e.g. `alert temperature > 30 for 10m`. Usage:\n  {USAGE}"
        ));
    };
    if field.is_empty() || field.contains(char::is_whitespace) {
        return AlertCommand::Invalid(
            "Name one field before `>` or `<`, e.g. `alert temperature > 30`.".into(),
        );
    }
    let (number, tail) = split_word(tail);
    let threshold = match number.replace(',', ".").parse::<f64>() {
        Ok(t) if t.is_finite() => t,
        _ => {
            return AlertCommand::Invalid(format!(
                "`{}` is not a number.",
                crate::translator::status::truncate_with_ellipsis(number.to_owned(), 40)
            ))
        }
    };
    match hold(tail) {
        Ok(hold) => AlertCommand::Add(NewAlert {
            field: Some(field.to_owned()),
            condition: if above {
                AlertCondition::Above(threshold)
            } else {
                AlertCondition::Below(threshold)
            },
            hold,
        }),
        Err(e) => AlertCommand::Invalid(e),
    }
}

/// `field > rest`, `field above rest`: the field, whether it is `above`, and the rest.
fn split_comparison(s: &str) -> Option<(&str, bool, &str)> {
    if let Some(i) = s.find(['>', '<']) {
        let above = s.as_bytes()[i] == b'>';
        return Some((
            s[..i].trim(),
            above,
            s[i + 1..].trim_start_matches('=').trim(),
        ));
    }
    let (field, rest) = split_word(s);
    let (word, rest) = split_word(rest);
    match word.to_lowercase().as_str() {
        "above" => Some((field, true, rest)),
        "below" => Some((field, false, rest)),
        _ => None,
    }
}

/// `""` or `for <duration>`.
fn hold(tail: &str) -> Result<Duration, String> {
    let tail = tail.trim();
    if tail.is_empty() {
        return Ok(Duration::ZERO);
    }
    let (word, d) = split_word(tail);
    if !word.eq_ignore_ascii_case("for") || d.is_empty() {
        return Err("After the number, only `for <duration>` may follow, e.g. `for 10m`.".into());
    }
    crate::config::parse_duration(d).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(field: Option<&str>, condition: AlertCondition, secs: u64) -> AlertCommand {
        AlertCommand::Add(NewAlert {
            field: field.map(str::to_owned),
            condition,
            hold: Duration::from_secs(secs),
        })
    }

    #[test]
    fn reads_the_spellings_people_type() {
        use AlertCondition::*;
        assert_eq!(
            parse("temperature > 30 for 10m"),
            add(Some("temperature"), Above(30.0), 600)
        );
        assert_eq!(
            parse("temperature>30"),
            add(Some("temperature"), Above(30.0), 0)
        );
        assert_eq!(
            parse("flow < 0,5 FOR 1h"),
            add(Some("flow"), Below(0.5), 3600)
        );
        assert_eq!(parse("flow >= 2"), add(Some("flow"), Above(2.0), 0));
        assert_eq!(parse("level below -3"), add(Some("level"), Below(-3.0), 0));
        assert_eq!(parse("Offline for 5m"), add(None, Offline, 300));
        assert_eq!(parse("off 2"), AlertCommand::Remove(2));
        assert_eq!(parse("OFF #12"), AlertCommand::Remove(12));
    }

    #[test]
    fn anything_else_gets_an_explanation() {
        let invalid = |s: &str| match parse(s) {
            AlertCommand::Invalid(why) => why,
            other => panic!("{s:?} parsed as {other:?}"),
        };
        assert!(invalid("").starts_with("Usage"));
        assert!(invalid("off two").contains("alert off <n>"));
        assert!(invalid("temperature is hot").contains("Not understood"));
        assert_eq!(invalid("temperature > warm"), "`warm` is not a number.");
        assert_eq!(invalid("temperature > NaN"), "`NaN` is not a number.");
        assert!(invalid("temperature > 3 now").contains("for <duration>"));
        assert!(invalid("temperature > 3 for ever").contains("not a duration"));
        assert!(invalid("> 3").contains("Name one field"));
        assert!(invalid("my field > 3").contains("Name one field"));
        // Long junk is not echoed whole.
        assert!(invalid(&format!("t > {}", "x".repeat(500))).len() < 80);
    }
}
