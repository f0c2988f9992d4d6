//! MQTT topic names and filters: checking them, matching a topic against a filter, and reducing
//! the filters of many devices to the few subscriptions that cover them.
//!
//! The rules are MQTT 3.1.1 §4.7: levels are separated by `/`; `+` matches exactly one level and
//! must fill its level; `#` matches any number of levels (including none, so `a/#` matches `a`)
//! and must be the whole last level; a filter that starts with a wildcard does not match topics
//! that start with `$` (`$SYS/...` are the broker's own).

use std::collections::HashSet;

/// The longest topic MQTT can carry (its length is a 16-bit field).
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Why a string is not a usable topic or filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("a topic must not be empty")]
    Empty,
    #[error("a topic is at most 65535 bytes long")]
    TooLong,
    #[error("a topic must not contain the NUL character")]
    Nul,
    #[error("`#` must be the whole last level of a filter, as in `home/#`")]
    BadHash,
    #[error("`+` must fill a whole level, as in `home/+/temperature`")]
    BadPlus,
    #[error("wildcards (`+`, `#`) are only allowed where the gateway subscribes, not where it publishes")]
    Wildcard,
}

/// Checks a filter the gateway subscribes to: wildcards allowed where MQTT allows them.
pub fn check_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err(TopicError::BadHash);
        }
        if level.contains('+') && *level != "+" {
            return Err(TopicError::BadPlus);
        }
    }
    Ok(())
}

/// Checks a topic the gateway publishes to: no wildcards.
pub fn check_topic(topic: &str) -> Result<(), TopicError> {
    check_common(topic)?;
    if topic.contains(['+', '#']) {
        return Err(TopicError::Wildcard);
    }
    Ok(())
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    if s.contains('\0') {
        return Err(TopicError::Nul);
    }
    Ok(())
}

/// Whether `filter` has a wildcard (so it may match more than one topic).
pub fn has_wildcard(filter: &str) -> bool {
    filter.split('/').any(|l| l == "+" || l == "#")
}

/// Whether the topic name `topic` matches `filter` (both assumed valid).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic that `inner` matches is also matched by `outer`.
pub fn covers(outer: &str, inner: &str) -> bool {
    if inner.starts_with('$') && outer.starts_with(['+', '#']) {
        return false;
    }
    let mut o = outer.split('/');
    let mut i = inner.split('/');
    loop {
        match (o.next(), i.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(il)) if il != "#" => {}
            (Some(ol), Some(il)) if ol == il => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The subscriptions that serve all of `filters`: duplicates removed, and a filter dropped when
/// another one already covers it (a broker may deliver a message once per matching subscription,
/// and one subscription per distinct need is all the broker has to keep). Order follows the input.
pub fn reduce(filters: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    let unique: Vec<&String> = filters.iter().filter(|f| seen.insert(*f)).collect();
    unique
        .iter()
        .enumerate()
        .filter(|(i, f)| {
            !unique
                .iter()
                .enumerate()
                .any(|(j, other)| j != *i && covers(other, f) && !(covers(f, other) && j > *i))
        })
        .map(|(_, f)| (*f).clone())
        .collect()
}

/// Replaces the `{id}` placeholder of a topic template with `id`.
pub fn fill(template: &str, id: &str) -> String {
    template.replace("{id}", id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_follow_the_mqtt_rules() {
        for ok in [
            "a", "a/b", "+", "#", "a/+/c", "a/#", "+/+", "/", "a//b", "$SYS/#",
        ] {
            assert_eq!(check_filter(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_filter(""), Err(TopicError::Empty));
        assert_eq!(check_filter("a/#/b"), Err(TopicError::BadHash));
        assert_eq!(check_filter("a#"), Err(TopicError::BadHash));
        assert_eq!(check_filter("a+/b"), Err(TopicError::BadPlus));
        assert_eq!(check_filter("a\0b"), Err(TopicError::Nul));
        assert_eq!(check_filter(&"a".repeat(65_536)), Err(TopicError::TooLong));
        assert_eq!(check_topic("a/b"), Ok(()));
        assert_eq!(check_topic("a/+"), Err(TopicError::Wildcard));
        assert_eq!(check_topic("a/#"), Err(TopicError::Wildcard));
        assert!(has_wildcard("a/+/b") && has_wildcard("#") && !has_wildcard("a/b"));
    }

    #[test]
    fn matching() {
        let yes = [
            ("a/b", "a/b"),
            ("a/+", "a/b"),
            ("+/b", "a/b"),
            ("a/#", "a"),
            ("a/#", "a/b/c"),
            ("#", "a/b"),
            ("+/+", "/b"),
            ("a/+/c", "a//c"),
            ("$SYS/#", "$SYS/uptime"),
            ("tele/+/SENSOR", "tele/kitchen/SENSOR"),
        ];
        for (f, t) in yes {
            assert!(matches(f, t), "{f} should match {t}");
        }
        let no = [
            ("a/b", "a/b/c"),
            ("a/+", "a"),
            ("a/+", "a/b/c"),
            ("a/b", "A/b"),
            ("#", "$SYS/uptime"),
            ("+/uptime", "$SYS/uptime"),
            ("tele/+/SENSOR", "tele/kitchen/STATE"),
        ];
        for (f, t) in no {
            assert!(!matches(f, t), "{f} should not match {t}");
        }
    }

    #[test]
    fn coverage() {
        assert!(covers("a/#", "a/+/c"));
        assert!(covers("a/#", "a"));
        assert!(covers("#", "a/#"));
        assert!(covers("+/+", "a/b"));
        assert!(covers("a/+", "a/+"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("a/+", "a/b/c"));
        assert!(!covers("a/b", "a/+"));
        assert!(!covers("#", "$SYS/x"));
    }

    #[test]
    fn reduces_to_the_covering_subscriptions() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            reduce(&s(&[
                "tele/+/SENSOR",
                "tele/kitchen/SENSOR",
                "tele/+/SENSOR",
                "stat/a/POWER",
                "home/#",
                "home/x/y",
                "home/+/y",
            ])),
            s(&["tele/+/SENSOR", "stat/a/POWER", "home/#"])
        );
        // Two filters that cover each other (equal): the first stays.
        assert_eq!(reduce(&s(&["a/+", "a/+"])), s(&["a/+"]));
        assert_eq!(reduce(&s(&[])), Vec::<String>::new());
    }

    #[test]
    fn fills_the_id_placeholder() {
        assert_eq!(fill("tele/{id}/SENSOR", "Plug_1"), "tele/Plug_1/SENSOR");
        assert_eq!(fill("plain/topic", "x"), "plain/topic");
    }
}
