//! Stanzas the reader would not build in full, handed on as their envelope alone.
//!
//! A stanza above the per-stanza byte limit, nested deeper than [`MAX_DEPTH`] or that the tree
//! builder refuses (an undeclared prefix, say) must not cost the stream, and a `get`/`set` IQ
//! among them must still be answered. So the reader stops building it, skips the rest of it,
//! and hands on an element with the stanza's name and its `type`, `id`, `from` and `to`, and
//! one child `<rejected xmlns='urn:xmpp-iot-gateway:rejected' reason='…'/>`. The core answers
//! such an IQ request with an error and drops (and counts) everything else.
//!
//! The marker travels as an ordinary child so that both upstream modes deliver it through the
//! same path: in client mode the patched tokio-xmpp (vendor/tokio-xmpp) builds the same element
//! with the same namespace. A peer that sends the marker itself only gets itself the same
//! error answer.

use crate::xmlns;
use minidom::Element;
use rxml::{xml_ncname, NcNameStr};

/// Elements nested below a stanza deeper than this make it rejected. Nothing the gateway is sent
/// legitimately comes close (a sensor-data request is four levels deep); the bound keeps the
/// recursion in dropping, serialising and parsing an element short.
pub const MAX_DEPTH: usize = 256;

/// The stanza attributes a rejected stanza keeps: what an error answer needs.
pub const ENVELOPE_ATTRS: [&str; 4] = ["type", "id", "from", "to"];

/// [`ENVELOPE_ATTRS`] as XML names.
fn envelope_name(attr: &str) -> Option<&'static NcNameStr> {
    Some(match attr {
        "type" => xml_ncname!("type"),
        "id" => xml_ncname!("id"),
        "from" => xml_ncname!("from"),
        "to" => xml_ncname!("to"),
        _ => return None,
    })
}

/// Why a stanza was not built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// More bytes than `max_stanza_size`.
    TooLarge,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Well-formed XML that is not a valid stanza (namespaces, or a stanza the typed parser refuses).
    Invalid,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TooLarge => "too-large",
            Reason::TooDeep => "too-deep",
            Reason::Invalid => "invalid",
        }
    }

    fn parse(s: &str) -> Reason {
        match s {
            "too-large" => Reason::TooLarge,
            "too-deep" => Reason::TooDeep,
            _ => Reason::Invalid,
        }
    }
}

/// The element handed on for a rejected stanza: its name and envelope attributes, and the marker.
pub fn envelope<'a>(
    name: &str,
    attrs: impl IntoIterator<Item = (&'a str, &'a str)>,
    reason: Reason,
) -> Element {
    let mut b = Element::builder(name, xmlns::CLIENT);
    for (k, v) in attrs {
        if let Some(name) = envelope_name(k) {
            b = b.attr(name.to_owned(), v);
        }
    }
    b.append(
        Element::builder("rejected", xmlns::REJECTED)
            .attr(xml_ncname!("reason").to_owned(), reason.as_str())
            .build(),
    )
    .build()
}

/// The reason, when `el` is the envelope of a rejected stanza.
pub fn reason_of(el: &Element) -> Option<Reason> {
    el.get_child("rejected", xmlns::REJECTED)
        .map(|r| Reason::parse(r.attr("reason").unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_keeps_only_what_an_answer_needs() {
        let el = envelope(
            "iq",
            [
                ("type", "set"),
                ("id", "q1"),
                ("from", "bob@localhost/x"),
                ("to", "s1@sensors.localhost"),
                ("a", "AAAA"),
            ],
            Reason::TooLarge,
        );
        assert_eq!(el.attr("id"), Some("q1"));
        assert_eq!(el.attr("a"), None);
        assert_eq!(reason_of(&el), Some(Reason::TooLarge));
        let iq = xmpp_parsers::iq::Iq::try_from(el).expect("still an IQ");
        assert!(matches!(iq, xmpp_parsers::iq::Iq::Set { .. }));
        let plain: Element =
            "<iq xmlns='jabber:client' type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>"
                .parse()
                .expect("element");
        assert_eq!(reason_of(&plain), None);
    }
}
