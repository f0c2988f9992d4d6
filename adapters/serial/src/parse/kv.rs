//! Format `kv`: `temp=21.5 hum=40`.
//!
//! Pairs are separated by runs of whitespace (or by `separator`, e.g. `","` for
//! `temp=21.5,hum=40`), key and value by `kv_separator` (`=` unless configured, e.g. `":"`).
//! A value may be double-quoted to hold separators (`name="living room"`; `\"` and `\\` inside).
//! Keys and values are trimmed. Tokens without a key/value separator (a `DATA` prefix, a
//! checksum) are skipped; a line without any pair is an error.

use super::{split_quoted, ParseError};

/// How a `kv` line is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvSyntax {
    /// Between pairs; `None`: any run of whitespace.
    pub separator: Option<String>,
    /// Between key and value; never empty.
    pub kv_separator: String,
}

impl Default for KvSyntax {
    fn default() -> Self {
        KvSyntax {
            separator: None,
            kv_separator: "=".into(),
        }
    }
}

/// Parses one `kv` line into its pairs, in line order.
pub fn parse(line: &str, syntax: &KvSyntax) -> Result<Vec<(String, String)>, ParseError> {
    let kv = if syntax.kv_separator.is_empty() {
        "="
    } else {
        syntax.kv_separator.as_str()
    };
    let mut pairs = Vec::new();
    for token in split_quoted(line, syntax.separator.as_deref(), true) {
        let Some((key, value)) = token.split_once(kv) else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains('"') {
            continue;
        }
        pairs.push((key.to_owned(), unquote(value.trim())));
    }
    if pairs.is_empty() {
        return Err(ParseError::NoPairs(kv.to_owned()));
    }
    Ok(pairs)
}

/// `"a \"b\""` → `a "b"`; anything not wholly quoted is returned as it is.
fn unquote(v: &str) -> String {
    let Some(inner) = v
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .filter(|_| v.len() >= 2)
    else {
        return v.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('"' | '\\')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(line: &str) -> Vec<(String, String)> {
        parse(line, &KvSyntax::default()).unwrap()
    }

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_usual_line() {
        assert_eq!(
            kv("temp=21.5 hum=40"),
            p(&[("temp", "21.5"), ("hum", "40")])
        );
        assert_eq!(
            kv("  DATA id=7\ttemp=-3.25   ok=true *CS"),
            p(&[("id", "7"), ("temp", "-3.25"), ("ok", "true")])
        );
        assert_eq!(kv("a= b=2"), p(&[("a", ""), ("b", "2")]));
        assert_eq!(kv("url=http://x/?q=1"), p(&[("url", "http://x/?q=1")]));
    }

    #[test]
    fn quoted_values() {
        assert_eq!(
            kv(r#"name="living room" note="say \"hi\" \\ \n" t=1"#),
            p(&[
                ("name", "living room"),
                ("note", r#"say "hi" \ \n"#),
                ("t", "1")
            ])
        );
        assert_eq!(kv(r#"x="""#), p(&[("x", "")]));
        assert_eq!(kv(r#"x=" open"#), p(&[("x", "\" open")]));
        assert_eq!(kv(r#"x=a"b"#), p(&[("x", "a\"b")]));
    }

    #[test]
    fn custom_separators() {
        let syntax = KvSyntax {
            separator: Some(",".into()),
            kv_separator: ":".into(),
        };
        assert_eq!(
            parse("temp: 21.5, hum :40,,label:\"a,b\"", &syntax).unwrap(),
            p(&[("temp", "21.5"), ("hum", "40"), ("label", "a,b")])
        );
        let syntax = KvSyntax {
            separator: Some(" | ".into()),
            kv_separator: "->".into(),
        };
        assert_eq!(
            parse("a->1 | b -> x y", &syntax).unwrap(),
            p(&[("a", "1"), ("b", "x y")])
        );
    }

    #[test]
    fn lines_without_pairs_are_errors() {
        for bad in ["garbage", "=1 =2", "\"k\"=1", "21.5", "\u{0}\u{1}"] {
            assert_eq!(
                parse(bad, &KvSyntax::default()),
                Err(ParseError::NoPairs("=".into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn odd_input_does_not_panic() {
        for odd in [
            "\\",
            "\"",
            "x=\"\\",
            "é=ü ü=é",
            "=",
            "a=\"\\\"",
            "k=\"\u{10FFFF}\"",
        ] {
            let _ = parse(odd, &KvSyntax::default());
            let _ = parse(
                odd,
                &KvSyntax {
                    separator: Some("é".into()),
                    kv_separator: "ü".into(),
                },
            );
        }
        assert_eq!(kv("é=ü"), p(&[("é", "ü")]));
    }
}
