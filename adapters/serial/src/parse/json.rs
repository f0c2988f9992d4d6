//! Format `json`: the line is one JSON value; fields take RFC 6901 pointers into it (`json =
//! "/sensors/0/temp"`), or the whole value when they give none (a line that is just `21.5`).
//!
//! serde_json refuses nesting deeper than 128 levels, so a hostile line cannot exhaust the
//! stack; numbers out of the `f64` range are refused too.

use super::ParseError;

/// Parses one line as a JSON value.
pub fn parse(line: &str) -> Result<serde_json::Value, ParseError> {
    serde_json::from_str(line).map_err(|e| ParseError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn any_json_value_is_a_record() {
        assert_eq!(
            parse(r#"{"id":"a1","temp":21.5,"hum":40}"#).unwrap(),
            json!({"id": "a1", "temp": 21.5, "hum": 40})
        );
        assert_eq!(parse(" 21.5 ").unwrap(), json!(21.5));
        assert_eq!(parse("[1,2]").unwrap(), json!([1, 2]));
        assert_eq!(parse("\"a\\u0000b\"").unwrap(), json!("a\u{0}b"));
    }

    #[test]
    fn broken_json_is_an_error() {
        for bad in [
            "{\"temp\":",
            "temp=21.5",
            "{\"a\":1} trailing",
            "{'a':1}",
            "1e400",
            "\"\\ud800\"",
            "NaN",
        ] {
            assert!(
                matches!(parse(bad), Err(ParseError::Json(_))),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert!(parse(&deep).is_err());
        let deep_obj = "{\"a\":".repeat(50_000);
        assert!(parse(&deep_obj).is_err());
    }
}
