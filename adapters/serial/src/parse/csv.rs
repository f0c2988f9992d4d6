//! Format `csv`: cells separated by `separator` (default `,`), named by `columns` or by a header
//! line.
//!
//! Cells are trimmed; a cell may be double-quoted to hold the separator, with `""` for a quote
//! inside. With `columns` configured, a line with those very names (the device printing its
//! header) is skipped. Without, the header is learned from the stream: a line whose cells are all
//! names (non-empty, not numbers, no duplicates) is the header, and a later such line replaces it
//! (a device that restarted with new firmware). Data lines before any header, and lines with a
//! different number of cells than the header, are errors.

use super::{split_quoted, ParseError};

/// How a `csv` line is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvSyntax {
    /// Between cells; never empty.
    pub separator: String,
    /// The column names, if configured; else learned from a header line.
    pub columns: Option<Vec<String>>,
}

impl Default for CsvSyntax {
    fn default() -> Self {
        CsvSyntax {
            separator: ",".into(),
            columns: None,
        }
    }
}

/// A CSV parser with the header it knows.
#[derive(Debug, Clone)]
pub struct CsvParser {
    syntax: CsvSyntax,
    /// The header in force: configured, or learned.
    header: Option<Vec<String>>,
}

impl CsvParser {
    pub fn new(syntax: CsvSyntax) -> Self {
        CsvParser {
            header: syntax.columns.clone(),
            syntax,
        }
    }

    /// The header in force, if any.
    pub fn header(&self) -> Option<&[String]> {
        self.header.as_deref()
    }

    /// Parses one line; `Ok(None)` for a header line.
    pub fn parse(&mut self, line: &str) -> Result<Option<Vec<(String, String)>>, ParseError> {
        let sep = if self.syntax.separator.is_empty() {
            ","
        } else {
            self.syntax.separator.as_str()
        };
        let cells: Vec<String> = split_quoted(line, Some(sep), false)
            .into_iter()
            .map(|c| unquote(c.trim()))
            .collect();
        if let Some(header) = &self.header {
            if *header == cells {
                return Ok(None);
            }
        }
        if self.syntax.columns.is_none() && is_header(&cells) {
            self.header = Some(cells);
            return Ok(None);
        }
        let Some(header) = &self.header else {
            return Err(ParseError::NoHeader);
        };
        if header.len() != cells.len() {
            return Err(ParseError::Columns {
                found: cells.len(),
                expected: header.len(),
            });
        }
        Ok(Some(header.iter().cloned().zip(cells).collect()))
    }
}

/// Whether a line's cells look like column names.
fn is_header(cells: &[String]) -> bool {
    cells.iter().enumerate().all(|(i, c)| {
        !c.is_empty()
            && c.parse::<f64>().is_err()
            && !cells[..i].contains(c)
            && c.chars().any(char::is_alphabetic)
    })
}

/// `"a ""b"""` → `a "b"`; anything not wholly quoted is returned as it is.
fn unquote(c: &str) -> String {
    match c.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) if c.len() >= 2 => inner.replace("\"\"", "\""),
        _ => c.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn learns_the_header_then_names_the_cells() {
        let mut c = CsvParser::new(CsvSyntax::default());
        assert_eq!(c.parse("1,21.5,40"), Err(ParseError::NoHeader));
        assert_eq!(c.parse("id, temp ,hum"), Ok(None));
        assert_eq!(
            c.parse(" a1 ,21.5, 40").unwrap().unwrap(),
            p(&[("id", "a1"), ("temp", "21.5"), ("hum", "40")])
        );
        assert_eq!(c.parse("id,temp,hum"), Ok(None), "a repeated header");
        assert_eq!(
            c.parse("1,2"),
            Err(ParseError::Columns {
                found: 2,
                expected: 3
            })
        );
        // A new header replaces the old one.
        assert_eq!(c.parse("id,pressure"), Ok(None));
        assert_eq!(
            c.parse("b,1013").unwrap().unwrap(),
            p(&[("id", "b"), ("pressure", "1013")])
        );
        assert_eq!(c.header().unwrap(), ["id", "pressure"]);
    }

    #[test]
    fn configured_columns_are_fixed() {
        let mut c = CsvParser::new(CsvSyntax {
            separator: ";".into(),
            columns: Some(vec!["state".into(), "label".into()]),
        });
        assert_eq!(c.parse("state;label"), Ok(None));
        assert_eq!(
            c.parse("on;\"a;b \"\"c\"\"\"").unwrap().unwrap(),
            p(&[("state", "on"), ("label", "a;b \"c\"")])
        );
        // Text-only data is data when the columns are configured.
        assert_eq!(
            c.parse("off;idle").unwrap().unwrap(),
            p(&[("state", "off"), ("label", "idle")])
        );
    }

    #[test]
    fn header_detection() {
        let h =
            |cells: &[&str]| is_header(&cells.iter().map(|c| c.to_string()).collect::<Vec<_>>());
        assert!(h(&["id", "temp"]));
        assert!(!h(&["id", "21"]));
        assert!(!h(&["id", ""]));
        assert!(!h(&["id", "id"]));
        assert!(!h(&["inf", "nan"]));
        assert!(!h(&["--", "##"]));
    }
}
