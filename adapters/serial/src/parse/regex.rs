//! Format `regex`: the configured `pattern`'s named groups become keys
//! (`^(?P<id>\w+) (?P<temp>[-\d.]+)$` turns `a7 21.5` into `id` = `a7`, `temp` = `21.5`).
//!
//! The `regex` crate matches in time linear in the line's length, whatever the pattern, so a
//! hostile line cannot stall the adapter. Groups that did not take part in the match are left
//! out; a line the pattern does not match is an error.

use ::regex::Regex;

use super::ParseError;

/// Parses one line with `pattern`.
pub fn parse(line: &str, pattern: &Regex) -> Result<Vec<(String, String)>, ParseError> {
    let caps = pattern.captures(line).ok_or(ParseError::NoMatch)?;
    let pairs: Vec<(String, String)> = pattern
        .capture_names()
        .flatten()
        .filter_map(|name| Some((name.to_owned(), caps.name(name)?.as_str().to_owned())))
        .collect();
    if pairs.is_empty() {
        return Err(ParseError::NoMatch);
    }
    Ok(pairs)
}

/// The named groups of `pattern`, for checking configured keys against it.
pub fn group_names(pattern: &Regex) -> Vec<String> {
    pattern
        .capture_names()
        .flatten()
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(p: &str) -> Regex {
        Regex::new(p).unwrap()
    }

    #[test]
    fn named_groups_become_keys() {
        let r = re(r"^(?P<id>\w+) (?P<temp>[-\d.]+)(?: (?P<hum>\d+)%)?$");
        assert_eq!(
            parse("a7 21.5 40%", &r).unwrap(),
            [
                ("id".into(), "a7".into()),
                ("temp".into(), "21.5".into()),
                ("hum".into(), "40".into())
            ]
        );
        assert_eq!(
            parse("a7 -3", &r).unwrap(),
            [
                ("id".to_string(), "a7".to_string()),
                ("temp".into(), "-3".into())
            ]
        );
        assert_eq!(parse("a7 warm", &r), Err(ParseError::NoMatch));
        assert_eq!(group_names(&r), ["id", "temp", "hum"]);
    }

    #[test]
    fn unanchored_patterns_find_the_first_match() {
        let r = re(r"T=(?P<t>\d+)");
        assert_eq!(
            parse("xx T=5 T=6", &r).unwrap(),
            [("t".to_string(), "5".to_string())]
        );
    }

    #[test]
    fn a_match_without_named_groups_is_no_record() {
        let r = re(r"(?P<a>x)?y");
        assert_eq!(parse("y", &r), Err(ParseError::NoMatch));
    }

    #[test]
    fn long_hostile_lines_are_fine() {
        let r = re(r"^(?P<a>(a|aa)+)b$");
        let line = "a".repeat(4096);
        assert_eq!(parse(&line, &r), Err(ParseError::NoMatch));
    }
}
