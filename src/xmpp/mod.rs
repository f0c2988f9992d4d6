//! Everything that touches the XMPP wire: stream framing, the upstream session, stanza helpers.
//!
//! The rest of the gateway exchanges `jabber:client` stanzas with the session through two
//! channels ([`Inbound`] in, [`minidom::Element`] out) and never sees a socket or the stream
//! namespace, so the same handlers serve component and client mode.

pub mod c2s;
pub mod client;
pub mod component;
pub mod connector;
pub mod dial;
#[cfg(any(fuzzing, test))]
pub mod fuzzing;
pub mod line_ends;
pub mod rejected;
pub mod stanzas;
pub mod tls;
pub mod wire;

use minidom::Element;

/// What the upstream session tells the core.
#[derive(Debug)]
pub enum Inbound {
    /// The (component) session is up (again): announce every device's presence.
    Up,
    /// One client-mode session is online without resumption: announce its devices' presence.
    SessionUp { jid: xmpp_parsers::jid::Jid },
    /// The session is down; it reconnects by itself. `reason` is for logs and status.
    Down { reason: String },
    /// A stanza addressed to one of our JIDs, in the `jabber:client` namespace.
    Stanza(Element),
}
