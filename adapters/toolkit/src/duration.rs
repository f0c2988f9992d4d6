//! Durations as written in `gateway.toml`: `"500ms"`, `"5s"`, `"1h 30m"`, `"7d"`, or `"0"`.
//!
//! Parsing is [`humantime`]'s, plus a bare `0` (with no unit), which reads naturally for
//! "off" (`history = "0"`). [`format()`] prints a duration back in the same spelling.

use std::time::Duration;

/// Why a text is not a duration. The message quotes the text (durations are never secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a duration ({reason}); write e.g. \"500ms\", \"5s\", \"10m\" or \"7d\"")]
pub struct DurationError {
    text: String,
    reason: String,
}

/// Parses a duration such as `"500ms"`, `"5s"`, `"7d"` or `"0"`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.chars().all(|c| c == '0') && !trimmed.is_empty() {
        return Ok(Duration::ZERO);
    }
    // humantime reads the minus sign as "no number here".
    if trimmed.starts_with('-') {
        return Err(DurationError {
            text: text.to_owned(),
            reason: "it is negative".into(),
        });
    }
    humantime::parse_duration(trimmed).map_err(|e| DurationError {
        text: text.to_owned(),
        reason: reason(&e),
    })
}

/// humantime's messages, reworded for a config file.
fn reason(error: &humantime::DurationError) -> String {
    match error {
        humantime::DurationError::NumberExpected(_) => "a number is missing".into(),
        humantime::DurationError::NumberOverflow => "it is too long".into(),
        humantime::DurationError::Empty => "it is empty".into(),
        humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => {
            "a unit is missing".into()
        }
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("unknown unit `{unit}`; units: ms, s, m, h, d, w")
        }
        humantime::DurationError::InvalidCharacter(_) => "it has an unexpected character".into(),
    }
}

/// The humantime spelling of a duration (`"2s"`, `"7days"`, `"0s"`), for messages and tables.
pub fn format(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spellings_of_the_spec() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse(" 10s "), Ok(Duration::from_secs(10)));
        assert_eq!(parse("60s"), Ok(Duration::from_secs(60)));
    }

    #[test]
    fn zero_needs_no_unit() {
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("00"), Ok(Duration::ZERO));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn explains_what_is_wrong() {
        let e = parse("5").unwrap_err().to_string();
        assert!(
            e.contains("`5` is not a duration (a unit is missing)"),
            "{e}"
        );
        let e = parse("5 parsecs").unwrap_err().to_string();
        assert!(e.contains("unknown unit `parsecs`"), "{e}");
        assert!(parse("").is_err());
        assert!(parse("soon").is_err());
        let e = parse("-5s").unwrap_err().to_string();
        assert!(e.contains("(it is negative)"), "{e}");
    }

    #[test]
    fn formats_back() {
        assert_eq!(format(Duration::from_secs(2)), "2s");
        assert_eq!(format(Duration::from_millis(500)), "500ms");
    }
}
