//! Who may do what: the `[access]` lists, with per-device overrides.

use crate::config::{AccessConfig, AccessEntry};

/// What a requester asks to do with a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Subscribe to presence, read values, query.
    Read,
    /// Set values (implies read).
    Control,
}

fn matches(entry: &AccessEntry, bare_jid: &str) -> bool {
    match entry {
        AccessEntry::Jid(j) => j.eq_ignore_ascii_case(bare_jid),
        AccessEntry::Domain(d) => bare_jid
            .rsplit_once('@')
            .map(|(_, dom)| dom)
            .unwrap_or(bare_jid)
            .eq_ignore_ascii_case(d),
    }
}

/// Whether `bare_jid` (the requester's bare JID, as the server stamped it) may do `what`,
/// under `lists` (the device's own lists, else the gateway's).
pub fn allows(lists: &AccessConfig, bare_jid: &str, what: Permission) -> bool {
    let control = lists.control.iter().any(|e| matches(e, bare_jid));
    match what {
        Permission::Control => control,
        Permission::Read => control || lists.read.iter().any(|e| matches(e, bare_jid)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists() -> AccessConfig {
        AccessConfig {
            read: vec![
                AccessEntry::Domain("example.org".into()),
                AccessEntry::Jid("bob@other.net".into()),
            ],
            control: vec![AccessEntry::Jid("alice@example.org".into())],
        }
    }

    #[test]
    fn domains_and_jids_grant_read() {
        let l = lists();
        assert!(allows(&l, "carol@example.org", Permission::Read));
        assert!(allows(&l, "Bob@Other.net", Permission::Read));
        assert!(!allows(&l, "eve@example.org.evil", Permission::Read));
        assert!(!allows(&l, "eve@evil.net", Permission::Read));
        assert!(!allows(&l, "carol@example.org", Permission::Control));
    }

    #[test]
    fn control_implies_read() {
        let l = AccessConfig {
            read: vec![],
            control: vec![AccessEntry::Jid("alice@example.org".into())],
        };
        assert!(allows(&l, "alice@example.org", Permission::Read));
        assert!(allows(&l, "alice@example.org", Permission::Control));
    }

    #[test]
    fn empty_lists_allow_nobody() {
        assert!(!allows(
            &AccessConfig::default(),
            "alice@example.org",
            Permission::Read
        ));
    }
}
