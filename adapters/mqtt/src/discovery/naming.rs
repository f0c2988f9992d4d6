//! Names people can guess: a discovered device's id is its name made a JID localpart, a field's
//! name its object id (Home Assistant) or property (zigbee2mqtt) made a name the same way.

use std::collections::HashMap;

use gateway_api::DeviceId;

/// `text` in lower case, every run of characters outside `[a-z0-9._-]` one `-`, no `-` at
/// either end, cut to `max` bytes. Empty when nothing usable is left.
pub fn slug(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut gap = false;
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-') {
            if gap && !out.is_empty() {
                out.push('-');
            }
            gap = false;
            out.push(c);
        } else {
            gap = true;
        }
    }
    // Only ASCII was pushed: any byte length is a character boundary.
    out.truncate(max);
    // A localpart starts with a letter or a digit; `-`, `.` and `_` at the ends read as noise.
    out.trim_matches(|c: char| matches!(c, '-' | '.' | '_'))
        .to_owned()
}

/// A device id made of `name`, or `None` when nothing of it is usable (then the caller falls
/// back to another name).
pub fn device_slug(name: &str) -> Option<String> {
    // Room for a `-NN` collision suffix within the id's limit.
    let s = slug(name, DeviceId::MAX_LEN - 4);
    (!s.is_empty()).then_some(s)
}

/// A field name made of an object id or property.
pub fn field_slug(name: &str) -> Option<String> {
    let s = slug(name, 64);
    (!s.is_empty()).then_some(s)
}

/// Hands out unique ids: the first device to ask for `kitchen` gets it, the next `kitchen-2`,
/// then `kitchen-3`. A key (the device's identity on the bus) keeps its id while it exists, so
/// a device that is announced again is not renamed.
#[derive(Debug, Default)]
pub struct Names {
    /// Id -> the key that holds it.
    taken: HashMap<String, String>,
    /// Key -> (base wanted, id given).
    given: HashMap<String, (String, String)>,
}

/// An id handed out by [`Names::assign`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub id: String,
    /// It is not the id asked for (another device has that one): worth a WARN.
    pub collided: bool,
}

impl Names {
    /// The id for `key`, which wants `base`; ids `reserved` says are taken (configured devices)
    /// are never given.
    pub fn assign(&mut self, key: &str, base: &str, reserved: &dyn Fn(&str) -> bool) -> Assigned {
        if let Some((wanted, id)) = self.given.get(key) {
            if wanted == base {
                return Assigned {
                    id: id.clone(),
                    // Reported when the id was first given.
                    collided: false,
                };
            }
            // Renamed: the old id is free again.
            let old = id.clone();
            self.taken.remove(&old);
            self.given.remove(key);
        }
        let mut n = 1;
        let id = loop {
            let candidate = if n == 1 {
                base.to_owned()
            } else {
                format!("{base}-{n}")
            };
            if !self.taken.contains_key(&candidate) && !reserved(&candidate) {
                break candidate;
            }
            n += 1;
        };
        self.taken.insert(id.clone(), key.to_owned());
        self.given
            .insert(key.to_owned(), (base.to_owned(), id.clone()));
        Assigned {
            collided: id != base,
            id,
        }
    }

    /// `key` is gone: its id may be given again.
    pub fn release(&mut self, key: &str) {
        if let Some((_, id)) = self.given.remove(key) {
            self.taken.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_localparts() {
        assert_eq!(slug("Living Room Sensor", 60), "living-room-sensor");
        assert_eq!(slug("Kitchen", 60), "kitchen");
        assert_eq!(slug("  Hall Shelly Plus 1PM ", 60), "hall-shelly-plus-1pm");
        assert_eq!(slug("Küche / Oben!", 60), "k-che-oben");
        assert_eq!(slug("garage-door", 60), "garage-door");
        assert_eq!(slug("__x__", 60), "x");
        assert_eq!(slug("Temp °C", 60), "temp-c");
        assert_eq!(device_slug("!!!"), None);
        assert_eq!(slug(&"a".repeat(100), 60).len(), 60);
        assert!(DeviceId::new(&device_slug("Wohnzimmer Lampe #3").unwrap()).is_ok());
    }

    #[test]
    fn collisions_get_numbers_and_ids_stay_put() {
        let mut n = Names::default();
        let none = |_: &str| false;
        assert_eq!(n.assign("a", "kitchen", &none).id, "kitchen");
        let b = n.assign("b", "kitchen", &none);
        assert_eq!((b.id.as_str(), b.collided), ("kitchen-2", true));
        assert_eq!(n.assign("c", "kitchen", &none).id, "kitchen-3");
        // Announced again: the same id, no second warning.
        assert_eq!(
            n.assign("b", "kitchen", &none),
            Assigned {
                id: "kitchen-2".into(),
                collided: false
            }
        );
        n.release("a");
        assert_eq!(n.assign("d", "kitchen", &none).id, "kitchen");
        // A configured device keeps its id.
        let configured = |id: &str| id == "hall";
        assert_eq!(n.assign("e", "hall", &configured).id, "hall-2");
        // A rename frees the old id.
        assert_eq!(n.assign("c", "cellar", &none).id, "cellar");
        assert_eq!(n.assign("f", "kitchen", &none).id, "kitchen-3");
    }
}
