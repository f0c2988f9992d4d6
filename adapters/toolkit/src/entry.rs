//! A table of `gateway.toml` as an adapter reads it: keys with their positions, and typed
//! readers that report a wrong type where the value stands.
//!
//! The file is parsed with `toml_edit`, which keeps the byte span of every key and value. The
//! gateway parses a large file piece by piece (each `[[device]]` on its own, see the gateway's
//! `src/config/split.rs`), so a piece's spans start at the piece: a [`Section`] and its
//! [`Entry`]s carry the piece's offset in the file (`base`) and every span they hand out is
//! already a position in the whole file. A [`Section`] is one table being walked: keys are
//! taken one by one, and what is left at the end is unknown (reported with "did you mean").
//! An [`Entry`] is one `key = value`; its readers ([`Entry::string`], [`Entry::duration`],
//! [`Entry::integer`]...) report a value of the wrong type at the value's position and return
//! `None`, so that a caller walks on and one run lists every problem.

use std::time::Duration;

use toml_edit::{Item, TableLike, Value as TomlValue};

use crate::diagnostic::{list_names, suggestion, Report, Span};
use crate::duration;

/// A value with the position of its key and of the value itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    /// Span of the key (`name` in `name = "x"`); for list elements, the list's key.
    pub key: Span,
    /// Span of the value.
    pub span: Span,
}

/// A list of strings with each element's position.
pub type StringList = Spanned<Vec<Spanned<String>>>;

/// One `key = value` of a table, with the key's position.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub key: &'a str,
    /// Where the key is in the file.
    pub key_span: Span,
    pub item: &'a Item,
    /// Where the parsed piece of the file that holds `item` starts: the spans `toml_edit`
    /// gives for `item` and what is inside it count from there (see [`Entry::in_file`]).
    pub base: usize,
}

/// A span of a piece of the file that starts at byte `base`, as a span of the file.
fn in_file(span: Option<Span>, base: usize) -> Option<Span> {
    span.map(|s| s.start + base..s.end + base)
}

/// How a TOML item is called in messages.
pub fn describe(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(v) => match v {
            TomlValue::String(_) => "a string",
            TomlValue::Integer(_) => "an integer",
            TomlValue::Float(_) => "a float",
            TomlValue::Boolean(_) => "a boolean",
            TomlValue::Datetime(_) => "a date-time",
            TomlValue::Array(_) => "an array",
            TomlValue::InlineTable(_) => "an inline table",
        },
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

impl<'a> Entry<'a> {
    /// The value's span (the key's when the value has none).
    pub fn span(&self) -> Span {
        self.in_file(self.item.span())
            .unwrap_or_else(|| self.key_span.clone())
    }

    /// A span `toml_edit` gave for something inside this entry's value (a key or value of an
    /// inline table), as a position in the whole file.
    pub fn in_file(&self, span: Option<Span>) -> Option<Span> {
        in_file(span, self.base)
    }

    pub fn spanned<T>(&self, value: T) -> Spanned<T> {
        Spanned {
            value,
            key: self.key_span.clone(),
            span: self.span(),
        }
    }

    pub fn wrong_type(&self, rep: &mut Report<'_>, expected: &str) {
        rep.error(
            &self.span(),
            format!(
                "`{}` must be {expected}, not {}",
                self.key,
                describe(self.item)
            ),
        );
    }

    pub fn string(&self, rep: &mut Report<'_>) -> Option<Spanned<String>> {
        match self.item.as_str() {
            Some(s) => Some(self.spanned(s.to_owned())),
            None => {
                self.wrong_type(rep, "a string");
                None
            }
        }
    }

    pub fn boolean(&self, rep: &mut Report<'_>) -> Option<Spanned<bool>> {
        match self.item.as_bool() {
            Some(b) => Some(self.spanned(b)),
            None => {
                self.wrong_type(rep, "true or false");
                None
            }
        }
    }

    /// A float or an integer, finite.
    pub fn number(&self, rep: &mut Report<'_>) -> Option<Spanned<f64>> {
        let n = match self.item {
            Item::Value(TomlValue::Float(f)) => *f.value(),
            // i64 -> f64 may round beyond 2^53: fine for thresholds and bounds.
            Item::Value(TomlValue::Integer(i)) => *i.value() as f64,
            _ => {
                self.wrong_type(rep, "a number");
                return None;
            }
        };
        if !n.is_finite() {
            rep.error(
                &self.span(),
                format!("`{}` must be a finite number", self.key),
            );
            return None;
        }
        Some(self.spanned(n))
    }

    /// An integer within `min..=max`; anything else is "`key` must be an integer from
    /// `min` to `max`".
    pub fn integer(&self, rep: &mut Report<'_>, min: i64, max: i64) -> Option<Spanned<i64>> {
        match self.item.as_integer() {
            Some(i) if (min..=max).contains(&i) => Some(self.spanned(i)),
            _ => {
                rep.error(
                    &self.span(),
                    format!("`{}` must be an integer from {min} to {max}", self.key),
                );
                None
            }
        }
    }

    /// A string naming one of a few choices: `parse` knows the spellings, `names` are listed
    /// (with "did you mean") when the text is none of them.
    pub fn choice<T>(
        &self,
        rep: &mut Report<'_>,
        names: &[&str],
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let s = self.string(rep)?;
        match parse(&s.value) {
            Some(v) => Some(v),
            None => {
                let lower = s.value.to_ascii_lowercase();
                let hint = suggestion(&lower, names.iter().copied());
                rep.error(
                    &s.span,
                    format!(
                        "unknown `{}` `{}`{hint} (use {})",
                        self.key,
                        s.value,
                        list_names(names)
                    ),
                );
                None
            }
        }
    }

    /// A duration string (`"5s"`), or the integer 0.
    pub fn duration(&self, rep: &mut Report<'_>) -> Option<Spanned<Duration>> {
        match self.item {
            Item::Value(TomlValue::String(s)) => match duration::parse(s.value()) {
                Ok(d) => Some(self.spanned(d)),
                Err(e) => {
                    rep.error(&self.span(), format!("`{}`: {e}", self.key));
                    None
                }
            },
            Item::Value(TomlValue::Integer(i)) if *i.value() == 0 => {
                Some(self.spanned(Duration::ZERO))
            }
            Item::Value(TomlValue::Integer(i)) => {
                rep.error(
                    &self.span(),
                    format!(
                        "`{}` must be a duration string with a unit, e.g. \"{}s\", not a bare number",
                        self.key,
                        i.value()
                    ),
                );
                None
            }
            _ => {
                self.wrong_type(rep, "a duration string like \"5s\"");
                None
            }
        }
    }

    /// An array of strings; each element keeps its own span.
    pub fn strings(&self, rep: &mut Report<'_>) -> Option<StringList> {
        let Some(array) = self.item.as_array() else {
            self.wrong_type(rep, "a list of strings, e.g. [\"alice@example.org\"]");
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for v in array.iter() {
            let span = self.in_file(v.span()).unwrap_or_else(|| self.span());
            match v.as_str() {
                Some(s) => out.push(Spanned {
                    value: s.to_owned(),
                    key: self.key_span.clone(),
                    span,
                }),
                None => {
                    let found = describe(&Item::Value(v.clone()));
                    rep.error(
                        &span,
                        format!("`{}` must list strings, not {found}", self.key),
                    );
                    ok = false;
                }
            }
        }
        ok.then(|| self.spanned(out))
    }

    /// A string or an array of strings, as a list (`server = "a"` or `server = ["a", "b"]`).
    pub fn string_or_strings(&self, rep: &mut Report<'_>) -> Option<StringList> {
        if let Some(s) = self.item.as_str() {
            return Some(self.spanned(vec![self.spanned(s.to_owned())]));
        }
        if self.item.as_array().is_some() {
            return self.strings(rep);
        }
        self.wrong_type(rep, "a string or a list of strings");
        None
    }

    /// A scalar (number, boolean or string) as a [`gateway_api::Value`].
    pub fn scalar(&self, rep: &mut Report<'_>) -> Option<Spanned<gateway_api::Value>> {
        use gateway_api::Value;
        let value = match self.item {
            Item::Value(TomlValue::String(s)) => Value::Text(s.value().clone()),
            Item::Value(TomlValue::Integer(i)) => Value::Int(*i.value()),
            Item::Value(TomlValue::Float(f)) => Value::Float(*f.value()),
            Item::Value(TomlValue::Boolean(b)) => Value::Bool(*b.value()),
            _ => {
                self.wrong_type(rep, "a number, a boolean or a string");
                return None;
            }
        };
        Some(self.spanned(value))
    }
}

/// A table being walked: keys are taken one by one; what is left is unknown.
pub struct Section<'a> {
    /// How messages name it: `[gateway]`, `[[device.field]]`...
    label: &'static str,
    /// The header's span (start of the table).
    pub span: Span,
    table: &'a dyn TableLike,
    /// Where the parsed piece of the file that holds `table` starts (see [`Entry::base`]).
    base: usize,
    taken: Vec<&'a str>,
    /// Keys present but of the wrong type (already reported): not "missing" as well.
    bad: Vec<String>,
}

impl<'a> Section<'a> {
    /// A table parsed from the whole file (its spans are positions in the file).
    pub fn new(label: &'static str, span: Span, table: &'a dyn TableLike) -> Self {
        Section::in_piece(label, span, table, 0)
    }

    /// A table parsed from a piece of the file that starts at byte `base`; `span` is already
    /// a position in the file.
    pub fn in_piece(
        label: &'static str,
        span: Span,
        table: &'a dyn TableLike,
        base: usize,
    ) -> Self {
        Section {
            label,
            span,
            table,
            base,
            taken: Vec::new(),
            bad: Vec::new(),
        }
    }

    /// A span `toml_edit` gave for something in this table, as a position in the file.
    fn in_file(&self, span: Option<Span>) -> Option<Span> {
        in_file(span, self.base)
    }

    pub fn key_span(&self, key: &str) -> Option<Span> {
        let (k, item) = self.table.get_key_value(key)?;
        self.in_file(k.span().or_else(|| item.span()))
    }

    /// Takes `key` (so that it is not reported as unknown) and returns its entry if present.
    pub fn take(&mut self, key: &str) -> Option<Entry<'a>> {
        let table: &'a dyn TableLike = self.table;
        let (k, item) = table.get_key_value(key)?;
        if item.is_none() {
            return None;
        }
        self.taken.push(k.get());
        let key_span = self
            .in_file(k.span().or_else(|| item.span()))
            .unwrap_or_else(|| self.span.clone());
        Some(Entry {
            key: k.get(),
            key_span,
            item,
            base: self.base,
        })
    }

    pub fn string(&mut self, rep: &mut Report<'_>, key: &str) -> Option<Spanned<String>> {
        let value = self.take(key)?.string(rep);
        self.note_bad(key, value.is_none());
        value
    }

    pub fn boolean(&mut self, rep: &mut Report<'_>, key: &str) -> Option<Spanned<bool>> {
        let value = self.take(key)?.boolean(rep);
        self.note_bad(key, value.is_none());
        value
    }

    pub fn number(&mut self, rep: &mut Report<'_>, key: &str) -> Option<Spanned<f64>> {
        let value = self.take(key)?.number(rep);
        self.note_bad(key, value.is_none());
        value
    }

    pub fn duration(&mut self, rep: &mut Report<'_>, key: &str) -> Option<Spanned<Duration>> {
        let value = self.take(key)?.duration(rep);
        self.note_bad(key, value.is_none());
        value
    }

    pub fn strings(&mut self, rep: &mut Report<'_>, key: &str) -> Option<StringList> {
        let value = self.take(key)?.strings(rep);
        self.note_bad(key, value.is_none());
        value
    }

    pub fn string_or_strings(&mut self, rep: &mut Report<'_>, key: &str) -> Option<StringList> {
        let value = self.take(key)?.string_or_strings(rep);
        self.note_bad(key, value.is_none());
        value
    }

    fn note_bad(&mut self, key: &str, bad: bool) {
        if bad {
            self.bad.push(key.to_owned());
        }
    }

    /// The keys that were present but could not be read (wrong type...).
    pub fn bad(&self) -> Vec<String> {
        self.bad.clone()
    }

    /// A sub-table (`[key]`, `key = { ... }` or dotted keys).
    pub fn section(
        &mut self,
        rep: &mut Report<'_>,
        key: &str,
        label: &'static str,
    ) -> Option<Section<'a>> {
        let entry = self.take(key)?;
        match entry.item.as_table_like() {
            Some(table) => Some(Section::in_piece(label, entry.span(), table, self.base)),
            None => {
                let hint = if entry.item.is_array_of_tables() {
                    format!("a single table (write `[{key}]`, not `[[{key}]]`)")
                } else {
                    "a table".to_owned()
                };
                entry.wrong_type(rep, &hint);
                None
            }
        }
    }

    /// An array of tables (`[[key]]`, or `key = [{ ... }, ...]`).
    pub fn sections(
        &mut self,
        rep: &mut Report<'_>,
        key: &str,
        label: &'static str,
    ) -> Vec<Section<'a>> {
        let Some(entry) = self.take(key) else {
            return Vec::new();
        };
        match entry.item {
            Item::ArrayOfTables(array) => array
                .iter()
                .map(|t| {
                    let span = self
                        .in_file(t.span())
                        .unwrap_or_else(|| entry.key_span.clone());
                    Section::in_piece(label, span, t as &dyn TableLike, self.base)
                })
                .collect(),
            Item::Value(TomlValue::Array(array)) => {
                let mut out = Vec::new();
                for v in array.iter() {
                    let span = self.in_file(v.span()).unwrap_or_else(|| entry.span());
                    match v.as_inline_table() {
                        Some(t) => out.push(Section::in_piece(
                            label,
                            span,
                            t as &dyn TableLike,
                            self.base,
                        )),
                        None => rep.error(
                            &span,
                            format!(
                                "`{key}` must list tables, not {}",
                                describe(&Item::Value(v.clone()))
                            ),
                        ),
                    }
                }
                out
            }
            _ => {
                entry.wrong_type(rep, &format!("an array of tables (write `{label}`)"));
                Vec::new()
            }
        }
    }

    /// The entries not taken yet, in file order.
    pub fn rest(&self) -> Vec<Entry<'a>> {
        let table: &'a dyn TableLike = self.table;
        table
            .iter()
            .filter(|(k, item)| !item.is_none() && !self.taken.contains(k))
            .map(|(k, item)| {
                let key_span = self
                    .in_file(
                        table
                            .key(k)
                            .and_then(|key| key.span())
                            .or_else(|| item.span()),
                    )
                    .unwrap_or_else(|| self.span.clone());
                Entry {
                    key: k,
                    key_span,
                    item,
                    base: self.base,
                }
            })
            .collect()
    }

    /// Reports every key not taken as unknown, suggesting the closest of `known`.
    pub fn finish(self, rep: &mut Report<'_>, known: &[&str]) {
        for entry in self.rest() {
            unknown_key(rep, &entry, self.label, known, COMMON_PEER_NAMES);
        }
    }
}

/// Names other tools (Home Assistant, Telegraf) give to keys every device has, as
/// (their name, ours): too far apart for "did you mean", and what someone copying a working
/// setup types first. An adapter type lists its own in [`crate::AdapterType::peer_names`].
pub const COMMON_PEER_NAMES: &[(&str, &str)] = &[("unit_of_measurement", "unit")];

/// This file's name for a key another tool names `key` (`peers`: their name, ours), where
/// `known` has it.
fn peer_name<'k>(key: &str, known: &[&'k str], peers: &[(&str, &str)]) -> Option<&'k str> {
    peers
        .iter()
        .filter(|(peer, _)| *peer == key)
        .find_map(|(_, ours)| known.iter().copied().find(|k| k == ours))
}

/// "unknown key `nmae` in [gateway]; did you mean `name`?" (or the list of known keys), and
/// "did you mean `unit_id` (this gateway's name for it)?" for a name of `peers`.
pub fn unknown_key(
    rep: &mut Report<'_>,
    entry: &Entry<'_>,
    label: &str,
    known: &[&str],
    peers: &[(&str, &str)],
) {
    let hint = match peer_name(entry.key, known, peers) {
        Some(ours) => format!("; did you mean `{ours}` (this gateway's name for it)?"),
        None => suggestion(entry.key, known.iter().copied()),
    };
    let tail = if !hint.is_empty() {
        hint
    } else if known.is_empty() {
        " (it takes no other keys)".to_owned()
    } else {
        format!(" (known keys: {})", list_names(known))
    };
    rep.error(
        &entry.key_span,
        format!("unknown key `{}` in {label}{tail}", entry.key),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The entries of a one-table document, and the messages of `read` applied to each.
    fn read_all(src: &str, read: impl Fn(&Entry<'_>, &mut Report<'_>)) -> Vec<String> {
        let doc = toml_edit::ImDocument::parse(src).expect("valid TOML");
        let mut rep = Report::new(Path::new("t.toml"), src);
        let section = Section::new("[t]", 0..0, doc.as_table());
        for e in section.rest() {
            read(&e, &mut rep);
        }
        let (errors, _) = rep.finish();
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn integers_in_a_range() {
        let errors = read_all("a = 5\nb = 300\nc = \"7\"\n", |e, rep| {
            let _ = e.integer(rep, 0, 255);
        });
        assert_eq!(
            errors,
            [
                "t.toml:2:5: `b` must be an integer from 0 to 255",
                "t.toml:3:5: `c` must be an integer from 0 to 255",
            ]
        );
    }

    #[test]
    fn choices_suggest_the_closest_name() {
        let names = ["none", "even", "odd"];
        let parse = |s: &str| names.iter().position(|n| *n == s.to_ascii_lowercase());
        let errors = read_all("a = \"Even\"\nb = \"evn\"\nc = \"x\"\n", |e, rep| {
            let _ = e.choice(rep, &names, parse);
        });
        assert_eq!(
            errors,
            [
                "t.toml:2:5: unknown `b` `evn`; did you mean `even`? (use `none`, `even` and `odd`)",
                "t.toml:3:5: unknown `c` `x` (use `none`, `even` and `odd`)",
            ]
        );
    }

    #[test]
    fn other_tools_key_names_get_ours() {
        let peers = [("slave", "unit_id"), ("scan_interval", "poll")];
        assert_eq!(
            peer_name("slave", &["unit_id", "poll"], &peers),
            Some("unit_id")
        );
        assert_eq!(
            peer_name("scan_interval", &["unit_id", "poll"], &peers),
            Some("poll")
        );
        // Only where this level has the key.
        assert_eq!(peer_name("slave", &["topic"], &peers), None);
        assert_eq!(peer_name("unit_id", &["unit_id"], &peers), None);
    }
}
