//! Device identities and field descriptions shared by the core and the adapters.

use std::fmt;
use std::sync::Arc;

/// A device id: the JID localpart a device is known by.
///
/// Validated once at configuration time, so the rest of the code can use it as a JID localpart
/// without checking again: 1 to 64 bytes of `[a-z0-9._-]`, starting with a letter or digit.
/// Upper case is folded to lower case, as an XMPP server would fold the localpart.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(Arc<str>);

/// Why a string is not a usable device id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    #[error("a device id must not be empty")]
    Empty,
    #[error("a device id is at most 64 bytes long (this one has {0})")]
    TooLong(usize),
    #[error("a device id may only contain a-z, 0-9, '.', '_' and '-' (found {0:?})")]
    BadChar(char),
    #[error("a device id must start with a letter or a digit")]
    BadStart,
}

impl DeviceId {
    /// The longest id accepted; a practical cap well below the 1023 bytes XMPP allows.
    pub const MAX_LEN: usize = 64;

    /// Validates and lower-cases `raw`.
    pub fn new(raw: &str) -> Result<Self, DeviceIdError> {
        if raw.is_empty() {
            return Err(DeviceIdError::Empty);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(DeviceIdError::TooLong(raw.len()));
        }
        let folded = raw.to_ascii_lowercase();
        if let Some(c) = folded.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        }) {
            return Err(DeviceIdError::BadChar(c));
        }
        if !folded.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(DeviceIdError::BadStart);
        }
        Ok(DeviceId(folded.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.0)
    }
}

impl std::str::FromStr for DeviceId {
    type Err = DeviceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceId::new(s)
    }
}

/// The type a field's values have, as configured (`type = ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FieldType {
    #[default]
    Numeric,
    Boolean,
    Integer,
    String,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Numeric => "numeric",
            FieldType::Boolean => "boolean",
            FieldType::Integer => "integer",
            FieldType::String => "string",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the core and every adapter know about one field of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    /// The field name as configured; also the XEP-0323 field name and the chat `get` argument.
    pub name: Arc<str>,
    /// Display unit (may be empty).
    pub unit: Arc<str>,
    pub kind: FieldType,
    /// Whether XMPP control (XEP-0325, chat `set`) may write it.
    pub writable: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_fold_case_and_reject_what_a_localpart_cannot_hold() {
        assert_eq!(
            DeviceId::new("Boiler.Temp_1").unwrap().as_str(),
            "boiler.temp_1"
        );
        assert_eq!(DeviceId::new(""), Err(DeviceIdError::Empty));
        assert_eq!(
            DeviceId::new("pump relay"),
            Err(DeviceIdError::BadChar(' '))
        );
        assert_eq!(DeviceId::new("a@b"), Err(DeviceIdError::BadChar('@')));
        assert_eq!(DeviceId::new("x/y"), Err(DeviceIdError::BadChar('/')));
        assert_eq!(DeviceId::new("temp°C"), Err(DeviceIdError::BadChar('°')));
        assert_eq!(DeviceId::new("-x"), Err(DeviceIdError::BadStart));
        assert!(matches!(
            DeviceId::new(&"a".repeat(65)),
            Err(DeviceIdError::TooLong(65))
        ));
        assert!(DeviceId::new(&"a".repeat(64)).is_ok());
    }
}
