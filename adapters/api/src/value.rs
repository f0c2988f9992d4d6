//! Values carried by readings and writes.

use std::fmt;

use crate::FieldType;

/// One value of a field.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// Why a text could not be turned into a value of a field's type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("{0:?} is not a number")]
    NotNumber(String),
    #[error("{0:?} is not an integer")]
    NotInteger(String),
    #[error("{0:?} is not a boolean (use true/false, on/off or 1/0)")]
    NotBoolean(String),
    #[error("the number is not finite")]
    NotFinite,
}

impl Value {
    /// Parses user or device text as a value of `kind`: what a chat `set`, an XEP-0325 parameter
    /// or a bare MQTT payload carries. Booleans accept `true/false`, `on/off`, `1/0`, `yes/no`.
    pub fn parse(kind: FieldType, text: &str) -> Result<Value, ValueError> {
        let t = text.trim();
        match kind {
            FieldType::Numeric => {
                let v: f64 = t.parse().map_err(|_| ValueError::NotNumber(t.to_owned()))?;
                if v.is_finite() {
                    Ok(Value::Float(v))
                } else {
                    Err(ValueError::NotFinite)
                }
            }
            FieldType::Integer => t
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|_| ValueError::NotInteger(t.to_owned())),
            FieldType::Boolean => match t.to_ascii_lowercase().as_str() {
                "true" | "on" | "1" | "yes" => Ok(Value::Bool(true)),
                "false" | "off" | "0" | "no" => Ok(Value::Bool(false)),
                _ => Err(ValueError::NotBoolean(t.to_owned())),
            },
            FieldType::String => Ok(Value::Text(text.to_owned())),
        }
    }

    /// Converts a value to `kind` where that loses nothing a user would miss
    /// (an integer reading for a numeric field, a number for a boolean as non-zero).
    pub fn coerce(self, kind: FieldType) -> Result<Value, ValueError> {
        match (kind, self) {
            (FieldType::Numeric, Value::Float(f)) if f.is_finite() => Ok(Value::Float(f)),
            (FieldType::Numeric, Value::Float(_)) => Err(ValueError::NotFinite),
            (FieldType::Numeric, Value::Int(i)) => Ok(Value::Float(i as f64)),
            (FieldType::Numeric, Value::Bool(b)) => Ok(Value::Float(if b { 1.0 } else { 0.0 })),
            (FieldType::Integer, Value::Int(i)) => Ok(Value::Int(i)),
            (FieldType::Integer, Value::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                Ok(Value::Int(f as i64))
            }
            (FieldType::Integer, Value::Bool(b)) => Ok(Value::Int(b as i64)),
            (FieldType::Boolean, Value::Bool(b)) => Ok(Value::Bool(b)),
            (FieldType::Boolean, Value::Int(i)) => Ok(Value::Bool(i != 0)),
            (FieldType::Boolean, Value::Float(f)) => Ok(Value::Bool(f != 0.0)),
            (FieldType::String, v) => Ok(Value::Text(v.to_string())),
            (kind, Value::Text(t)) => Value::parse(kind, &t),
            (FieldType::Integer, v) => Err(ValueError::NotInteger(v.to_string())),
        }
    }

    /// The value as a number, for deadbands and metrics.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Text(_) => None,
        }
    }
}

impl fmt::Display for Value {
    /// The canonical text form: what XEP-0323 `value` attributes and chat answers show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            // `{}` on f64 prints the shortest text that reads back to the same number.
            Value::Float(x) => write!(f, "{x}"),
            Value::Text(t) => f.write_str(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_boolean_spellings_devices_use() {
        for t in ["true", "ON", "1", "yes"] {
            assert_eq!(Value::parse(FieldType::Boolean, t), Ok(Value::Bool(true)));
        }
        for t in ["false", "off", "0", "No"] {
            assert_eq!(Value::parse(FieldType::Boolean, t), Ok(Value::Bool(false)));
        }
        assert!(Value::parse(FieldType::Boolean, "maybe").is_err());
    }

    #[test]
    fn numbers_must_be_finite() {
        assert_eq!(
            Value::parse(FieldType::Numeric, " 21.5 "),
            Ok(Value::Float(21.5))
        );
        assert_eq!(
            Value::parse(FieldType::Numeric, "NaN"),
            Err(ValueError::NotFinite)
        );
        assert!(Value::parse(FieldType::Numeric, "warm").is_err());
        assert_eq!(Value::parse(FieldType::Integer, "-7"), Ok(Value::Int(-7)));
        assert!(Value::parse(FieldType::Integer, "7.5").is_err());
    }

    #[test]
    fn coerces_without_losing_what_matters() {
        assert_eq!(
            Value::Int(3).coerce(FieldType::Numeric),
            Ok(Value::Float(3.0))
        );
        assert_eq!(
            Value::Float(4.0).coerce(FieldType::Integer),
            Ok(Value::Int(4))
        );
        assert!(Value::Float(4.5).coerce(FieldType::Integer).is_err());
        assert_eq!(
            Value::Text("on".into()).coerce(FieldType::Boolean),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            Value::Float(1.5).coerce(FieldType::String),
            Ok(Value::Text("1.5".into()))
        );
    }

    #[test]
    fn displays_shortest_round_trip_form() {
        assert_eq!(Value::Float(21.5).to_string(), "21.5");
        assert_eq!(Value::Float(0.1 + 0.2).to_string(), "0.30000000000000004");
        assert_eq!(Value::Float(20.0).to_string(), "20");
        assert_eq!(Value::Bool(true).to_string(), "true");
    }
}
