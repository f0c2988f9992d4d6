//! A parsed line ([`Record`]) and how fields, `match` keys and timestamps are looked up in it.
//!
//! Every format parses a line into one of two shapes: a JSON document (format `json`) or a list
//! of named text values in line order (`kv`, `xml`, `regex`, `csv`). A [`Selector`] names one
//! value: a key (compared exactly first, then ignoring ASCII case, so that `id` finds the XML
//! attribute `ID`), an RFC 6901 pointer into a JSON document, or the whole document. Turning a
//! looked-up value into a field's [`Value`] is [`Found::to_value`]; it never panics, whatever the
//! device sent.

use std::borrow::Cow;

use gateway_api::{FieldType, Value, ValueError};

/// One line, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Format `json`: the line's JSON value (any JSON, not only objects).
    Json(serde_json::Value),
    /// Formats `kv`, `xml`, `regex`, `csv`: key and text value pairs, in line order.
    Pairs(Vec<(String, String)>),
}

/// Names one value of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A key: a `kv` key, an XML element or attribute name, a regex group, a CSV column, or a
    /// member of a top-level JSON object. Exact match first, else ASCII case-insensitive.
    Key(String),
    /// An RFC 6901 JSON pointer (`/a/b/0`); only finds something in a JSON record.
    Pointer(String),
    /// The whole JSON document (a line that is just `21.5`).
    Whole,
}

impl Selector {
    /// The selector for a `match` or `time_key` key: a JSON pointer when it starts with `/`,
    /// else a key.
    pub fn key_or_pointer(text: &str) -> Selector {
        if text.starts_with('/') {
            Selector::Pointer(text.to_owned())
        } else {
            Selector::Key(text.to_owned())
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Key(k) => write!(f, "key {k:?}"),
            Selector::Pointer(p) => write!(f, "pointer {p:?}"),
            Selector::Whole => f.write_str("the whole line"),
        }
    }
}

/// A value found in a record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Found<'r> {
    Text(&'r str),
    Json(&'r serde_json::Value),
}

impl Record {
    /// The value `selector` names, if the record has it. A JSON `null` counts as absent.
    pub fn get(&self, selector: &Selector) -> Option<Found<'_>> {
        match (self, selector) {
            (Record::Pairs(pairs), Selector::Key(key)) => pairs
                .iter()
                .find(|(k, _)| k == key)
                .or_else(|| pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
                .map(|(_, v)| Found::Text(v)),
            (Record::Pairs(_), _) => None,
            (Record::Json(doc), Selector::Key(key)) => {
                let obj = doc.as_object()?;
                obj.get(key.as_str())
                    .or_else(|| {
                        obj.iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(key))
                            .map(|(_, v)| v)
                    })
                    .filter(|v| !v.is_null())
                    .map(Found::Json)
            }
            (Record::Json(doc), Selector::Pointer(p)) => {
                doc.pointer(p).filter(|v| !v.is_null()).map(Found::Json)
            }
            (Record::Json(doc), Selector::Whole) => {
                Some(doc).filter(|v| !v.is_null()).map(Found::Json)
            }
        }
    }
}

impl<'r> Found<'r> {
    /// The value as text, for `match` comparisons and timestamps: a JSON string without its
    /// quotes, a number or boolean as JSON writes it; objects and arrays have no text form.
    pub fn text(&self) -> Option<Cow<'r, str>> {
        match *self {
            Found::Text(t) => Some(Cow::Borrowed(t)),
            Found::Json(serde_json::Value::String(s)) => Some(Cow::Borrowed(s)),
            Found::Json(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                Some(Cow::Owned(v.to_string()))
            }
            Found::Json(_) => None,
        }
    }

    /// The value converted to a field of type `kind`: text is parsed as a chat `set` would
    /// parse it (`on`/`off`, `1`/`0`... for booleans); JSON numbers and booleans convert where
    /// nothing a user would miss is lost; a string field takes anything, JSON objects and arrays
    /// as compact JSON text.
    pub fn to_value(&self, kind: FieldType) -> Result<Value, ValueError> {
        use serde_json::Value as J;
        match *self {
            Found::Text(t) => Value::parse(kind, t),
            Found::Json(J::String(s)) => Value::parse(kind, s),
            Found::Json(J::Bool(b)) => Value::Bool(*b).coerce(kind),
            Found::Json(J::Number(n)) => {
                let v = match (n.as_i64(), n.as_f64()) {
                    (Some(i), _) => Value::Int(i),
                    (None, Some(f)) => Value::Float(f),
                    // u64 above i64::MAX, or a number serde_json cannot represent.
                    (None, None) => Value::Text(n.to_string()),
                };
                // `coerce` refuses a fraction or a number too big for an integer field.
                v.coerce(kind)
            }
            Found::Json(other @ (J::Object(_) | J::Array(_))) => match kind {
                FieldType::String => Ok(Value::Text(other.to_string())),
                FieldType::Integer => Err(ValueError::NotInteger(short(other))),
                FieldType::Boolean => Err(ValueError::NotBoolean(short(other))),
                FieldType::Numeric => Err(ValueError::NotNumber(short(other))),
            },
            // `get` never returns null; a string field still gets something sensible.
            Found::Json(J::Null) => Value::parse(kind, "null"),
        }
    }
}

/// A JSON value as text for an error message, cut to a readable length.
fn short(v: &serde_json::Value) -> String {
    let mut s = v.to_string();
    if s.len() > 40 {
        let mut cut = 40;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(p: &[(&str, &str)]) -> Record {
        Record::Pairs(
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn key(k: &str) -> Selector {
        Selector::Key(k.into())
    }

    #[test]
    fn keys_match_exactly_first_then_ignoring_case() {
        let r = pairs(&[("ID", "1"), ("Temp", "2"), ("temp", "3")]);
        assert_eq!(r.get(&key("id")), Some(Found::Text("1")));
        assert_eq!(r.get(&key("temp")), Some(Found::Text("3")));
        assert_eq!(r.get(&key("TEMP")), Some(Found::Text("2")));
        assert_eq!(r.get(&key("hum")), None);
        assert_eq!(r.get(&Selector::Pointer("/ID".into())), None);
        assert_eq!(r.get(&Selector::Whole), None);
    }

    #[test]
    fn json_lookups_by_member_pointer_and_whole() {
        let r = Record::Json(json!({"Id": "a", "t": {"v": [1, 2.5]}, "n": null}));
        assert_eq!(r.get(&key("id")), Some(Found::Json(&json!("a"))));
        assert_eq!(
            r.get(&Selector::Pointer("/t/v/1".into())),
            Some(Found::Json(&json!(2.5)))
        );
        assert_eq!(r.get(&Selector::Pointer("/t/v/9".into())), None);
        assert_eq!(r.get(&Selector::Pointer("t".into())), None, "not a pointer");
        assert_eq!(r.get(&key("n")), None, "null is absent");
        assert_eq!(r.get(&Selector::Pointer("/n".into())), None);
        let bare = Record::Json(json!(21.5));
        assert_eq!(bare.get(&Selector::Whole), Some(Found::Json(&json!(21.5))));
        assert_eq!(bare.get(&key("x")), None);
        assert_eq!(Record::Json(json!(null)).get(&Selector::Whole), None);
    }

    #[test]
    fn text_forms_for_matching() {
        assert_eq!(Found::Json(&json!(250715)).text().unwrap(), "250715");
        assert_eq!(Found::Json(&json!("x y")).text().unwrap(), "x y");
        assert_eq!(Found::Json(&json!(true)).text().unwrap(), "true");
        assert_eq!(Found::Json(&json!(1.5)).text().unwrap(), "1.5");
        assert_eq!(Found::Json(&json!([1])).text(), None);
        assert_eq!(Found::Text(" a ").text().unwrap(), " a ");
    }

    #[test]
    fn conversions_to_field_types() {
        use FieldType::*;
        let j = |v: serde_json::Value, k| Found::Json(&v).to_value(k);
        assert_eq!(j(json!(21), Numeric), Ok(Value::Float(21.0)));
        assert_eq!(j(json!(21.5), Numeric), Ok(Value::Float(21.5)));
        assert_eq!(j(json!(4.0), Integer), Ok(Value::Int(4)));
        assert!(j(json!(4.5), Integer).is_err());
        assert!(j(json!(1.0e300), Integer).is_err());
        assert!(j(json!(u64::MAX), Integer).is_err());
        assert_eq!(j(json!(-3), Integer), Ok(Value::Int(-3)));
        assert_eq!(j(json!(true), Boolean), Ok(Value::Bool(true)));
        assert_eq!(j(json!(0), Boolean), Ok(Value::Bool(false)));
        assert_eq!(j(json!("on"), Boolean), Ok(Value::Bool(true)));
        assert_eq!(j(json!("21.5"), Numeric), Ok(Value::Float(21.5)));
        assert_eq!(j(json!(true), Numeric), Ok(Value::Float(1.0)));
        assert_eq!(
            j(json!({"a": 1}), String),
            Ok(Value::Text("{\"a\":1}".into()))
        );
        assert!(j(json!({"a": 1}), Numeric).is_err());
        assert!(j(json!([1, 2]), Boolean).is_err());
        assert!(j(json!("warm"), Numeric).is_err());
        assert_eq!(j(json!(7), String), Ok(Value::Text("7".into())));

        let t = |s: &str, k| Found::Text(s).to_value(k);
        assert_eq!(t(" 22 ", Numeric), Ok(Value::Float(22.0)));
        assert_eq!(t("22", Integer), Ok(Value::Int(22)));
        assert!(t("NaN", Numeric).is_err());
        assert!(t("inf", Numeric).is_err());
        assert!(t("", Numeric).is_err());
        assert_eq!(t("OFF", Boolean), Ok(Value::Bool(false)));
        assert_eq!(t("a<b", String), Ok(Value::Text("a<b".into())));
    }

    #[test]
    fn error_texts_are_short() {
        let big = json!({"k": "x".repeat(1000)});
        let Err(ValueError::NotNumber(s)) = Found::Json(&big).to_value(FieldType::Numeric) else {
            panic!("expected NotNumber")
        };
        assert!(s.chars().count() <= 41, "{s}");
        let multibyte = json!(["é".repeat(100)]);
        assert!(Found::Json(&multibyte)
            .to_value(FieldType::Numeric)
            .is_err());
    }
}
