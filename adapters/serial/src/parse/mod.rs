//! The line parsers, one module per format, and [`Parser`], which picks one by configuration.
//!
//! Each parser is a pure function of one line (CSV also remembers the header line it learned):
//! no I/O, no panics on any input, bounded work (the framer caps a line at `max_line` bytes,
//! serde_json caps nesting, the `regex` crate matches in linear time). They are fuzzed in
//! `fuzz/` and tested at the bottom of each file.
//!
//! - [`json`]: any JSON value; fields are RFC 6901 pointers into it.
//! - [`kv`]: `temp=21.5 hum=40`, with configurable separators and quoted values.
//! - [`xml`]: one element per line, `<SensorTemp ID='250715' TimeDate='…'> 22 </SensorTemp>`.
//! - [`regex`]: the named groups of a configured pattern.
//! - [`csv`]: cells named by configured columns or by a header line.

pub mod csv;
pub mod json;
pub mod kv;
pub mod regex;
pub mod xml;

use crate::config::Format;
use crate::record::Record;

/// Why a line is not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("no `key{0}value` pairs")]
    NoPairs(String),
    #[error("not an XML element: {0}")]
    Xml(String),
    #[error("the line does not match `pattern`")]
    NoMatch,
    #[error("{found} CSV cells where the header has {expected}")]
    Columns { found: usize, expected: usize },
    #[error("a CSV line before any header line")]
    NoHeader,
}

/// A configured format, ready to parse lines.
#[derive(Debug, Clone)]
pub enum Parser {
    Json,
    Kv(kv::KvSyntax),
    Xml,
    Regex(::regex::Regex),
    Csv(csv::CsvParser),
}

impl Parser {
    pub fn new(format: &Format) -> Self {
        match format {
            Format::Json => Parser::Json,
            Format::Kv(syntax) => Parser::Kv(syntax.clone()),
            Format::Xml => Parser::Xml,
            Format::Regex(re) => Parser::Regex(re.clone()),
            Format::Csv(syntax) => Parser::Csv(csv::CsvParser::new(syntax.clone())),
        }
    }

    /// Parses one line (without its line ending). `Ok(None)`: the line carried no record and is
    /// no error either (a blank line, a CSV header).
    pub fn parse(&mut self, line: &str) -> Result<Option<Record>, ParseError> {
        if line.trim().is_empty() {
            return Ok(None);
        }
        match self {
            Parser::Json => json::parse(line).map(|v| Some(Record::Json(v))),
            Parser::Kv(syntax) => kv::parse(line, syntax).map(|p| Some(Record::Pairs(p))),
            Parser::Xml => xml::parse(line).map(|p| Some(Record::Pairs(p))),
            Parser::Regex(re) => regex::parse(line, re).map(|p| Some(Record::Pairs(p))),
            Parser::Csv(csv) => csv.parse(line).map(|p| p.map(Record::Pairs)),
        }
    }
}

/// Splits `line` at `sep` (or at runs of whitespace) outside double quotes. With `backslash`,
/// a backslash inside quotes escapes the next character (kv); without, quotes simply toggle, so
/// CSV's doubled `""` works. Empty tokens are kept only for a text separator (CSV cells).
pub(crate) fn split_quoted<'l>(line: &'l str, sep: Option<&str>, backslash: bool) -> Vec<&'l str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if escaped {
            escaped = false;
            continue;
        }
        if quoted {
            match c {
                '\\' if backslash => escaped = true,
                '"' => quoted = false,
                _ => {}
            }
            continue;
        }
        if c == '"' {
            quoted = true;
            continue;
        }
        match sep {
            None if c.is_whitespace() => {
                if start < i {
                    out.push(&line[start..i]);
                }
                start = i + c.len_utf8();
            }
            Some(s) if !s.is_empty() && line[i..].starts_with(s) => {
                out.push(&line[start..i]);
                start = i + s.len();
                // Skip the rest of a multi-character separator.
                while chars.peek().is_some_and(|&(j, _)| j < start) {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    if sep.is_some() || start < line.len() {
        out.push(&line[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_respects_quotes() {
        assert_eq!(
            split_quoted("a=1  b=\"x y\"\tc", None, true),
            ["a=1", "b=\"x y\"", "c"]
        );
        assert_eq!(split_quoted("  ", None, true), Vec::<&str>::new());
        assert_eq!(
            split_quoted("a,\"b,c\",,d", Some(","), false),
            ["a", "\"b,c\"", "", "d"]
        );
        assert_eq!(split_quoted("a::b::", Some("::"), false), ["a", "b", ""]);
        assert_eq!(
            split_quoted("k=\"a\\\" b\" z", None, true),
            ["k=\"a\\\" b\"", "z"]
        );
        assert_eq!(split_quoted("k=\"open rest", None, true), ["k=\"open rest"]);
        assert_eq!(split_quoted("é;ü;", Some(";"), false), ["é", "ü", ""]);
    }

    #[test]
    fn blank_lines_are_no_records_in_any_format() {
        let formats = [
            Format::Json,
            Format::Kv(kv::KvSyntax::default()),
            Format::Xml,
            Format::Regex(::regex::Regex::new("(?P<a>.)").unwrap()),
            Format::Csv(csv::CsvSyntax::default()),
        ];
        for f in &formats {
            assert_eq!(Parser::new(f).parse("  \t ").unwrap(), None);
        }
    }
}
