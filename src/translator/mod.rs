//! Pure translation between the gateway's values and what goes over XMPP.
//!
//! Readings become XEP-0323 `<fields>` payloads ([`sensordata`]) and presence status lines
//! ([`status`]); incoming `<req>`/`<cancel>` elements and chat messages become plain requests and
//! commands ([`sensordata`], [`chat`], whose `alert …` lines [`alert_command`] reads), and
//! writes are answered with [`control`]'s payloads;
//! PubSub requests carry the values to a node ([`pubsub`]), and devices join a room with
//! [`muc`]'s payloads. No I/O and no state: the XMPP layer decides whom to answer and wraps these
//! payloads in stanzas; the device state supplies the values. Every string placed in XML is
//! cleaned of characters XML 1.0 cannot carry ([`xml_text`]), since a single NUL from a device
//! would otherwise break serialisation of the whole stanza.

pub mod alert_command;
pub mod chat;
pub mod control;
pub mod muc;
pub mod pubsub;
pub mod sensordata;
pub mod status;
pub mod xml_text;

pub use chat::{addressed_to, get_text, help_text, parse_command, unknown_text, ChatCommand};
pub use sensordata::{
    accepted, cancelled, failure, fields, parse_cancel, parse_failure, parse_fields, parse_req,
    seqnr_and_done, started, ParsedError, ParsedField, ReadoutRequest, ReqError, Sample,
};
pub use status::status_line;
pub use xml_text::clean;
