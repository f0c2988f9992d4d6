//! The small amount of XMPP addressing the loader checks: domains, JIDs, `host:port`.
//!
//! Not a full RFC 7622 implementation (no stringprep): enough to catch typos in a config file
//! (a missing `@`, a resource where a bare JID is needed, a space in a domain) and to fold case
//! the way a server would for ASCII names.

pub use gateway_toolkit::host_port::{is_loopback_host, parse_domain, parse_host_port, HostPort};

/// A parsed JID: `[local@]domain[/resource]`, with local part and domain lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jid {
    pub local: Option<String>,
    pub domain: String,
    pub resource: Option<String>,
}

impl Jid {
    /// `local@domain` or `domain`, without the resource.
    pub fn bare(&self) -> String {
        match &self.local {
            Some(local) => format!("{local}@{}", self.domain),
            None => self.domain.clone(),
        }
    }

    /// The full text form.
    pub fn full(&self) -> String {
        match &self.resource {
            Some(resource) => format!("{}/{resource}", self.bare()),
            None => self.bare(),
        }
    }
}

/// Characters RFC 7622 forbids in a local part.
const LOCAL_FORBIDDEN: &[char] = &['"', '&', '\'', '/', ':', '<', '>', '@'];

/// Parses `[local@]domain[/resource]`.
pub fn parse_jid(text: &str) -> Result<Jid, String> {
    if text.trim() != text {
        return Err("it has leading or trailing spaces".into());
    }
    let (bare, resource) = match text.split_once('/') {
        Some((bare, resource)) => (bare, Some(resource)),
        None => (text, None),
    };
    let (local, domain) = match bare.rsplit_once('@') {
        Some((local, domain)) => (Some(local), domain),
        None => (None, bare),
    };
    let local = match local {
        Some("") => return Err("the part before `@` is empty".into()),
        Some(local) => {
            if let Some(c) = local
                .chars()
                .find(|c| LOCAL_FORBIDDEN.contains(c) || c.is_whitespace() || c.is_control())
            {
                return Err(format!("the part before `@` may not contain {c:?}"));
            }
            Some(local.to_lowercase())
        }
        None => None,
    };
    let domain = parse_domain(domain)?;
    let resource = match resource {
        Some("") => return Err("the resource after `/` is empty".into()),
        Some(r) if r.chars().any(char::is_control) => {
            return Err("the resource contains a control character".into())
        }
        Some(r) => Some(r.to_owned()),
        None => None,
    };
    Ok(Jid {
        local,
        domain,
        resource,
    })
}

/// Parses a bare JID with a local part (`user@example.org`), as access lists and rooms need.
pub fn parse_bare_jid(text: &str) -> Result<Jid, String> {
    let jid = parse_jid(text)?;
    if jid.resource.is_some() {
        return Err(format!(
            "it has a resource; use the bare JID `{}`",
            jid.bare()
        ));
    }
    if jid.local.is_none() {
        return Err(format!(
            "it has no `user@` part (`{}` is a whole server)",
            jid.domain
        ));
    }
    Ok(jid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jids() {
        let j = parse_jid("Alice@Example.org/Phone").unwrap();
        assert_eq!(j.local.as_deref(), Some("alice"));
        assert_eq!(j.domain, "example.org");
        assert_eq!(j.resource.as_deref(), Some("Phone"));
        assert_eq!(j.bare(), "alice@example.org");
        assert_eq!(j.full(), "alice@example.org/Phone");
        assert_eq!(
            parse_jid("pubsub.example.org").unwrap().bare(),
            "pubsub.example.org"
        );
        assert!(parse_jid("@example.org").is_err());
        assert!(parse_jid("a b@example.org").is_err());
        assert!(parse_jid("a@").is_err());
        assert!(parse_jid("a@b/").is_err());
        assert!(parse_jid(" a@b").is_err());
    }

    #[test]
    fn bare_jids() {
        assert!(parse_bare_jid("alice@example.org").is_ok());
        let e = parse_bare_jid("alice@example.org/phone").unwrap_err();
        assert!(e.contains("use the bare JID `alice@example.org`"), "{e}");
        assert!(parse_bare_jid("example.org")
            .unwrap_err()
            .contains("no `user@` part"));
    }
}
