//! The one-line summary of a device's values carried in its presence `<status>`.
//!
//! `temperature 21.5 °C, humidity 40 %, heater on`: what a person sees next to the device in a
//! roster. Chat answers use the same value formatting ([`display_value`]).

use std::fmt::Write;

use gateway_api::{FieldSpec, Value};

use super::xml_text::one_line;

/// The longest status line sent, in bytes (the "…" included). Presence is broadcast to every
/// subscriber on every change, so it is kept short whatever a device reports.
pub const MAX_STATUS_BYTES: usize = 512;

const ELLIPSIS: &str = "…";

/// A value as people read it: booleans as `on`/`off`, numbers in their shortest exact form, text
/// cleaned for XML and flattened to one line.
pub fn display_value(value: &Value) -> String {
    match value {
        Value::Bool(true) => "on".to_owned(),
        Value::Bool(false) => "off".to_owned(),
        Value::Text(t) => one_line(t).into_owned(),
        other => other.to_string(),
    }
}

/// `value` followed by the field's unit, if it has one.
pub fn value_with_unit(spec: &FieldSpec, value: &Value) -> String {
    let mut s = display_value(value);
    let unit = one_line(&spec.unit);
    if !unit.is_empty() {
        s.push(' ');
        s.push_str(&unit);
    }
    s
}

/// `name value unit` for every field that has a value, joined with `, `; at most
/// [`MAX_STATUS_BYTES`], cut at a character boundary and ended with "…" when longer.
pub fn status_line(fields: &[(&FieldSpec, Option<&Value>)]) -> String {
    let mut line = String::new();
    for (spec, value) in fields {
        let Some(value) = value else { continue };
        if !line.is_empty() {
            line.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = write!(
            line,
            "{} {}",
            one_line(&spec.name),
            value_with_unit(spec, value)
        );
        if line.len() > MAX_STATUS_BYTES {
            break;
        }
    }
    truncate_with_ellipsis(line, MAX_STATUS_BYTES)
}

/// `s` if it fits in `max` bytes, else its longest prefix that fits together with "…".
pub fn truncate_with_ellipsis(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut cut = max.saturating_sub(ELLIPSIS.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(ELLIPSIS);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_api::FieldType;

    fn spec(name: &str, unit: &str, kind: FieldType) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            unit: unit.into(),
            kind,
            writable: false,
        }
    }

    #[test]
    fn lists_fields_with_values_and_units() {
        let t = spec("temperature", "°C", FieldType::Numeric);
        let h = spec("humidity", "%", FieldType::Numeric);
        let heater = spec("heater", "", FieldType::Boolean);
        let pump = spec("pump", "", FieldType::Boolean);
        let count = spec("count", "", FieldType::Integer);
        let (v1, v2, v3, v4) = (
            Value::Float(21.5),
            Value::Float(40.0),
            Value::Bool(true),
            Value::Bool(false),
        );
        let line = status_line(&[
            (&t, Some(&v1)),
            (&h, Some(&v2)),
            (&count, None),
            (&heater, Some(&v3)),
            (&pump, Some(&v4)),
        ]);
        assert_eq!(
            line,
            "temperature 21.5 °C, humidity 40 %, heater on, pump off"
        );
        assert_eq!(status_line(&[(&count, None)]), "");
        assert_eq!(status_line(&[]), "");
    }

    #[test]
    fn strings_are_cleaned_and_kept_on_one_line() {
        let s = spec("display", "", FieldType::String);
        let v = Value::Text("Hello\u{0}\nworld <&>".into());
        assert_eq!(status_line(&[(&s, Some(&v))]), "display Hello world <&>");
    }

    #[test]
    fn long_lines_are_capped_at_a_char_boundary() {
        let s = spec("notes", "", FieldType::String);
        // "notes " then 2-byte characters: byte 509 falls inside one, so the cut is at 508.
        let v = Value::Text("é".repeat(600));
        let line = status_line(&[(&s, Some(&v)), (&s, Some(&v))]);
        assert!(line.len() <= MAX_STATUS_BYTES, "{}", line.len());
        assert!(line.ends_with("é…"));
        assert!(line.starts_with("notes éé"));
        assert_eq!(line.len(), 6 + 251 * 2 + 3);

        let exact = "x".repeat(MAX_STATUS_BYTES);
        assert_eq!(
            truncate_with_ellipsis(exact.clone(), MAX_STATUS_BYTES),
            exact
        );
        let over = "x".repeat(MAX_STATUS_BYTES + 1);
        let cut = truncate_with_ellipsis(over, MAX_STATUS_BYTES);
        assert_eq!(cut.len(), MAX_STATUS_BYTES);
        assert!(cut.ends_with("xx…"));
    }
}
