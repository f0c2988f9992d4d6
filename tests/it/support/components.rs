//! The XEP-0114 component domains a test server hosts, each with its secret, and the gateway
//! `[xmpp]` section that connects as one of them. Shared by the Prosody and ejabberd rigs.

use std::net::SocketAddr;

use super::{random_id, random_secret};

#[derive(Clone, Debug, Default)]
pub struct Components(Vec<(String, String)>);

impl Components {
    /// One more domain (lower-cased, as servers fold it) with a random secret.
    pub fn add(&mut self, domain: impl Into<String>) {
        self.0.push((domain.into().to_lowercase(), random_secret()));
    }

    /// One more domain named `gw-<random>.localhost`.
    pub fn add_random(&mut self) {
        self.add(format!("{}.localhost", random_id("gw-")));
    }

    /// (domain, secret) pairs in the order added.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(d, s)| (d.as_str(), s.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Domains in the order added.
    pub fn domains(&self) -> Vec<&str> {
        self.iter().map(|(d, _)| d).collect()
    }

    /// The first domain; panics naming `server` if there is none.
    pub fn first(&self, server: &str) -> &str {
        self.iter()
            .next()
            .map(|(d, _)| d)
            .unwrap_or_else(|| panic!("this {server} hosts no component"))
    }

    /// The secret of `domain`; panics naming `server` if it hosts no such component.
    pub fn secret(&self, domain: &str, server: &str) -> &str {
        let domain = domain.to_lowercase();
        self.iter()
            .find(|(d, _)| *d == domain)
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("{domain} is not a component of this {server}"))
    }

    /// A gateway `[xmpp]` section for `domain` on the listener at `addr` (inline secret: fine
    /// for tests).
    pub fn toml(&self, domain: &str, addr: SocketAddr, server: &str) -> String {
        format!(
            "[xmpp]\nmode = \"component\"\ndomain = \"{domain}\"\nserver = \"{addr}\"\nsecret = \"{}\"\n",
            self.secret(domain, server)
        )
    }
}
