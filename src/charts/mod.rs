//! `chart <field…> [duration]`: a field's history, downsampled to what a phone screen can show.
//!
//! [`series`] folds any number of readings into a fixed number of columns (min, max, sum and
//! count per column), so memory is bounded by the width, not by the history; the store runs
//! the same fold in SQL, over [`rollup`]'s minute and hour buckets for long periods. [`picture`] draws them as a PNG; [`sparkline`] turns them into the text
//! answer (`▁▂▃▅▇█` with min/max/mean) that every client can show, the fallback when the server
//! has no upload service.

pub mod picture;
pub mod rollup;
pub mod series;
pub mod sparkline;
pub mod upload;

pub use series::{Column, Series};

use std::time::Duration;

/// The period of `chart` without one.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(24 * 3600);
/// Fields one `chart` may show.
pub const MAX_FIELDS: usize = 4;

/// `chart <field…> [duration]`: the fields as typed and the period.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartRequest {
    pub fields: Vec<String>,
    pub period: Duration,
}

/// Parses what follows the word `chart`; the error is the answer to send.
pub fn parse_request(rest: &str) -> Result<ChartRequest, String> {
    let mut words: Vec<&str> = rest.split_whitespace().collect();
    let mut period = DEFAULT_PERIOD;
    if let Some(last) = words.last() {
        if last.starts_with(|c: char| c.is_ascii_digit()) {
            period = crate::config::parse_duration(last).map_err(|e| e.to_string())?;
            words.pop();
        }
    }
    if words.is_empty() {
        return Err(
            "Usage: chart <field> [<field>…] [duration], e.g. `chart temperature 7d`".into(),
        );
    }
    if words.len() > MAX_FIELDS {
        return Err(format!("At most {MAX_FIELDS} fields in one chart."));
    }
    if period.is_zero() {
        return Err("The period must be longer than zero, e.g. `24h` or `7d`.".into());
    }
    Ok(ChartRequest {
        fields: words.into_iter().map(str::to_owned).collect(),
        period,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_an_optional_period() {
        assert_eq!(
            parse_request("temperature"),
            Ok(ChartRequest {
                fields: vec!["temperature".into()],
                period: DEFAULT_PERIOD
            })
        );
        assert_eq!(
            parse_request(" temperature  humidity 7d "),
            Ok(ChartRequest {
                fields: vec!["temperature".into(), "humidity".into()],
                period: Duration::from_secs(7 * 86_400)
            })
        );
        assert!(parse_request("").unwrap_err().starts_with("Usage"));
        assert!(parse_request("7d").unwrap_err().starts_with("Usage"));
        assert!(parse_request("t 3parsecs").is_err());
        assert!(parse_request("t 0")
            .unwrap_err()
            .contains("longer than zero"));
        assert!(parse_request("a b c d e").unwrap_err().contains("At most"));
    }
}
