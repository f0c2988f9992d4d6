//! What an adapter type parsed out of its keys, held by the gateway without knowing its type.
//!
//! The gateway keeps each adapter's, device's and field's settings as [`AnySettings`]: it
//! clones them into the slice an adapter is started with, and on a reload compares them with
//! `==` to decide whether the adapter restarts. The comparison is the settings type's own
//! `PartialEq`, so everything in it counts, secrets included (their `Debug` hides them, their
//! equality does not). Only the adapter type that made the settings reads them back, with
//! [`AnySettings::get`].

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// Any `Debug + PartialEq` type shared between threads is settings; nothing to implement.
pub trait Settings: Any + fmt::Debug + Send + Sync {
    fn as_any(&self) -> &dyn Any;
    /// Equal when `other` is of the same type and equal by that type's `PartialEq`.
    fn same_as(&self, other: &dyn Settings) -> bool;
}

impl<T: Any + fmt::Debug + PartialEq + Send + Sync> Settings for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn same_as(&self, other: &dyn Settings) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }
}

/// Settings of some adapter type: cheap to clone, compared by value.
#[derive(Clone)]
pub struct AnySettings(Arc<dyn Settings>);

impl AnySettings {
    pub fn new<T: Settings>(settings: T) -> Self {
        AnySettings(Arc::new(settings))
    }

    /// The settings as the type that made them; `None` for another type's.
    pub fn get<T: Any>(&self) -> Option<&T> {
        let inner: &dyn Settings = self.0.as_ref();
        inner.as_any().downcast_ref::<T>()
    }
}

impl PartialEq for AnySettings {
    fn eq(&self, other: &Self) -> bool {
        let (a, b): (&dyn Settings, &dyn Settings) = (self.0.as_ref(), other.0.as_ref());
        a.same_as(b)
    }
}

impl fmt::Debug for AnySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner: &dyn Settings = self.0.as_ref();
        fmt::Debug::fmt(inner, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Broker {
        url: String,
        password: Hidden,
    }

    /// Like a secret: hidden from `Debug`, still compared.
    #[derive(PartialEq)]
    struct Hidden(String);

    impl fmt::Debug for Hidden {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("***")
        }
    }

    fn broker(password: &str) -> AnySettings {
        AnySettings::new(Broker {
            url: "mqtt://b".into(),
            password: Hidden(password.into()),
        })
    }

    #[test]
    fn equality_is_the_types_own_secrets_included() {
        assert_eq!(broker("a"), broker("a"));
        assert_ne!(broker("a"), broker("b"));
        // The `Debug` text cannot tell them apart; equality can.
        assert_eq!(format!("{:?}", broker("a")), format!("{:?}", broker("b")));
        // Settings of another type are never equal.
        assert_ne!(broker("a"), AnySettings::new(()));
    }

    #[test]
    fn only_the_type_that_made_them_reads_them() {
        let s = broker("a");
        assert_eq!(s.get::<Broker>().map(|b| b.url.as_str()), Some("mqtt://b"));
        assert!(s.get::<String>().is_none());
    }
}
