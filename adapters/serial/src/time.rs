//! Timestamps that devices put in their records.
//!
//! Accepted: RFC 3339 (`2015-07-17T19:28:33Z`, `…+02:00`, a space for the `T`), RFC 2822, the
//! same without an offset (`2015-07-17 19:28:33`), `19:28:33 Jul 17 2015` (the XML sensor
//! record), `Jul 17 2015 19:28:33`, `17.07.2015 19:28:33`, `2015/07/17 19:28:33`, and Unix time
//! in seconds or milliseconds (`1437161313`, `1437161313000`, fractions allowed). A time without
//! an offset is the gateway's local time (devices with a clock are mostly set to local time).
//! Anything else is no timestamp: the reading then gets the time it arrived.

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};

use crate::record::Found;

const NAIVE_FORMATS: &[&str] = &[
    "%H:%M:%S %b %d %Y",
    "%b %d %Y %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%d.%m.%Y %H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
];

/// Unix seconds between 2001-09-09 and 5138: smaller numbers are counters, not times.
const MIN_EPOCH: f64 = 1.0e9;
const MAX_EPOCH: f64 = 1.0e11;

/// The time a record value gives, if it is one.
pub fn from_found(found: Found<'_>) -> Option<DateTime<Utc>> {
    match found {
        Found::Json(serde_json::Value::Number(n)) => epoch(n.as_f64()?),
        other => parse(&other.text()?),
    }
}

/// Parses a timestamp text.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if t.is_empty() || t.len() > 64 {
        return None;
    }
    if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return epoch(t.parse().ok()?);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(&t.replacen(' ', "T", 1)) {
        return Some(dt.with_timezone(&Utc));
    }
    if let Ok(dt) = DateTime::parse_from_rfc2822(t) {
        return Some(dt.with_timezone(&Utc));
    }
    NAIVE_FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .and_then(|naive| Local.from_local_datetime(&naive).earliest())
        .map(|dt| dt.with_timezone(&Utc))
}

fn epoch(x: f64) -> Option<DateTime<Utc>> {
    let secs = if (MIN_EPOCH..MAX_EPOCH).contains(&x) {
        x
    } else if (MIN_EPOCH * 1000.0..MAX_EPOCH * 1000.0).contains(&x) {
        x / 1000.0
    } else {
        return None;
    };
    // In range, so the casts cannot overflow.
    let whole = secs.floor();
    let nanos = ((secs - whole) * 1e9).round().min(999_999_999.0) as u32;
    DateTime::from_timestamp(whole as i64, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        let naive = NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, s)
            .unwrap();
        Local
            .from_local_datetime(&naive)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_sensor_record_time_is_local() {
        let want = local(2015, 7, 17, 19, 28, 33);
        assert_eq!(parse("19:28:33 Jul 17 2015"), Some(want));
        assert_eq!(parse(" Jul 17 2015 19:28:33 "), Some(want));
        assert_eq!(parse("2015-07-17 19:28:33"), Some(want));
        assert_eq!(parse("2015-07-17T19:28:33"), Some(want));
        assert_eq!(parse("17.07.2015 19:28:33"), Some(want));
        assert_eq!(parse("2015/07/17 19:28:33"), Some(want));
        assert_eq!(
            parse("9:05:01 Jul 7 2015"),
            Some(local(2015, 7, 7, 9, 5, 1))
        );
    }

    #[test]
    fn times_with_offsets_and_unix_times() {
        let want = utc("2015-07-17T19:28:33Z");
        assert_eq!(parse("2015-07-17T19:28:33Z"), Some(want));
        assert_eq!(parse("2015-07-17 21:28:33+02:00"), Some(want));
        assert_eq!(parse("Fri, 17 Jul 2015 19:28:33 +0000"), Some(want));
        assert_eq!(parse("1437161313"), Some(want));
        assert_eq!(parse("1437161313000"), Some(want));
        assert_eq!(parse("1437161313.5"), Some(utc("2015-07-17T19:28:33.5Z")));
        let n = serde_json::json!(1437161313);
        assert_eq!(from_found(Found::Json(&n)), Some(want));
        let s = serde_json::json!("2015-07-17T19:28:33Z");
        assert_eq!(from_found(Found::Json(&s)), Some(want));
    }

    #[test]
    fn not_times() {
        for t in [
            "",
            "12",
            "3600",
            "19:28:33",
            "yesterday",
            "2015-13-45 10:00:00",
            "1.2.3",
            "..",
            "99999999999999999999",
            "Jul 32 2015 10:00:00",
        ] {
            assert_eq!(parse(t), None, "{t:?}");
        }
        let long = "1".repeat(100);
        assert_eq!(parse(&long), None);
        let obj = serde_json::json!({"t": 1});
        assert_eq!(from_found(Found::Json(&obj)), None);
        let small = serde_json::json!(42);
        assert_eq!(from_found(Found::Json(&small)), None);
    }
}
