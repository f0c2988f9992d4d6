//! The words of alert messages: the `message` template, the default texts, and durations as a
//! person reads them on a lock screen ("23 min", "2 h 5 min").

use std::time::Duration;

use crate::config::{AlertCondition, AlertConfig};
use crate::translator::xml_text::one_line;

/// What a message is about: the alert, the reading (if any) and how long the condition held.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub alert: &'a AlertConfig,
    /// The device's name as configured.
    pub device: &'a str,
    /// The latest value of the watched field, already formatted, and its unit.
    pub value: Option<&'a str>,
    pub unit: &'a str,
    pub held: Duration,
}

/// "23 min", "45 s", "2 h 5 min", "3 d 4 h": two units at most, rounded down.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => match (s / 3600, s % 3600 / 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        },
        _ => match (s / 86_400, s % 86_400 / 3600) {
            (days, 0) => format!("{days} d"),
            (days, h) => format!("{days} d {h} h"),
        },
    }
}

fn threshold(c: AlertCondition) -> String {
    match c {
        AlertCondition::Above(t) | AlertCondition::Below(t) => t.to_string(),
        AlertCondition::Offline => String::new(),
    }
}

/// Fills `{id}`, `{device}`, `{field}`, `{value}`, `{unit}`, `{threshold}`, `{duration}`.
/// Unknown names stay as written (configurations are checked; chat alerts use no template).
pub fn render(template: &str, f: &Facts<'_>) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        match placeholder(name, f) {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[open..open + close + 2]),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

fn placeholder(name: &str, f: &Facts<'_>) -> Option<String> {
    Some(match name {
        "id" => f.alert.id.clone(),
        "device" => f.device.to_owned(),
        "field" => f.alert.field.as_deref().unwrap_or("").to_owned(),
        "value" => f.value.unwrap_or("?").to_owned(),
        "unit" => f.unit.to_owned(),
        "threshold" => threshold(f.alert.condition),
        "duration" => human_duration(f.held),
        _ => return None,
    })
}

/// The body when an alert fires: the template, or a sentence that names the device, the value
/// and the condition.
pub fn fired(f: &Facts<'_>) -> String {
    if let Some(t) = &f.alert.message {
        return one_line(&render(t, f)).into_owned();
    }
    let cond = describe(f.alert);
    let value = with_unit(f);
    let body = match f.alert.condition {
        AlertCondition::Offline if f.held.is_zero() => format!("{} is offline", f.device),
        AlertCondition::Offline => {
            format!("{} is offline for {}", f.device, human_duration(f.held))
        }
        _ if f.held.is_zero() => format!("{}: {value} ({cond})", f.device),
        _ => format!(
            "{}: {value} ({cond} for {})",
            f.device,
            human_duration(f.held)
        ),
    };
    format!("{body} [alert {}]", f.alert.id)
}

/// A reminder: the fired text, marked as still holding.
pub fn reminder(f: &Facts<'_>) -> String {
    format!("Still: {}", fired(f))
}

/// The body when an alert clears.
pub fn cleared(f: &Facts<'_>) -> String {
    let now = match f.alert.condition {
        AlertCondition::Offline => "online again".to_owned(),
        _ => with_unit(f),
    };
    format!(
        "{}: back to normal after {} ({now}) [alert {}]",
        f.device,
        human_duration(f.held),
        f.alert.id
    )
}

/// `temperature > 30` / `temperature < 2` / `offline`: the condition as chat shows it.
pub fn describe(a: &AlertConfig) -> String {
    let field = a.field.as_deref().unwrap_or("");
    match a.condition {
        AlertCondition::Above(t) => format!("{field} > {t}"),
        AlertCondition::Below(t) => format!("{field} < {t}"),
        AlertCondition::Offline => "offline".to_owned(),
    }
}

fn with_unit(f: &Facts<'_>) -> String {
    let field = f.alert.field.as_deref().unwrap_or("");
    match (f.value, f.unit) {
        (Some(v), "") => format!("{field} {v}"),
        (Some(v), u) => format!("{field} {v} {u}"),
        (None, _) => format!("{field} unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_api::DeviceId;

    fn alert(condition: AlertCondition, message: Option<&str>) -> AlertConfig {
        AlertConfig {
            id: "freezer-warm".into(),
            device: DeviceId::new("freezer").expect("id"),
            field: Some("temperature".into()),
            condition,
            hold: Duration::from_secs(300),
            clear: None,
            repeat: None,
            to: vec![],
            message: message.map(str::to_owned),
        }
    }

    fn facts(a: &AlertConfig, held: u64) -> Facts<'_> {
        Facts {
            alert: a,
            device: "Freezer",
            value: Some("-10.5"),
            unit: "°C",
            held: Duration::from_secs(held),
        }
    }

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        let d = |s| human_duration(Duration::from_secs(s));
        assert_eq!(d(0), "0 s");
        assert_eq!(d(59), "59 s");
        assert_eq!(d(23 * 60 + 59), "23 min");
        assert_eq!(d(3600), "1 h");
        assert_eq!(d(2 * 3600 + 5 * 60), "2 h 5 min");
        assert_eq!(d(86_400 * 3 + 3600 * 4 + 5), "3 d 4 h");
        assert_eq!(d(86_400), "1 d");
    }

    #[test]
    fn templates_fill_known_placeholders_and_keep_the_rest() {
        let a = alert(
            AlertCondition::Above(-12.0),
            Some("Freezer is warm: {value} {unit} for {duration} ({field} > {threshold}, {id}) {nope} {open"),
        );
        assert_eq!(
            fired(&facts(&a, 300)),
            "Freezer is warm: -10.5 °C for 5 min (temperature > -12, freezer-warm) {nope} {open"
        );
        // A template cannot break the message onto several lines.
        let a = alert(AlertCondition::Above(1.0), Some("a\nb {device}"));
        assert_eq!(fired(&facts(&a, 0)), "a b Freezer");
    }

    #[test]
    fn default_texts_name_device_value_and_condition() {
        let a = alert(AlertCondition::Above(-12.0), None);
        assert_eq!(
            fired(&facts(&a, 300)),
            "Freezer: temperature -10.5 °C (temperature > -12 for 5 min) [alert freezer-warm]"
        );
        assert_eq!(
            reminder(&facts(&a, 3900)),
            "Still: Freezer: temperature -10.5 °C (temperature > -12 for 1 h 5 min) [alert freezer-warm]"
        );
        assert_eq!(
            cleared(&facts(&a, 23 * 60)),
            "Freezer: back to normal after 23 min (temperature -10.5 °C) [alert freezer-warm]"
        );
        let off = AlertConfig {
            field: None,
            ..alert(AlertCondition::Offline, None)
        };
        assert_eq!(
            fired(&facts(&off, 120)),
            "Freezer is offline for 2 min [alert freezer-warm]"
        );
        assert_eq!(
            cleared(&facts(&off, 125)),
            "Freezer: back to normal after 2 min (online again) [alert freezer-warm]"
        );
    }
}
