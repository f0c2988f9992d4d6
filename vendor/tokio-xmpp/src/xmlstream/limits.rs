// This Source Code Form is subject to the terms of the Mozilla Public
// License, v. 2.0. If a copy of the MPL was not distributed with this
// file, You can obtain one at http://mozilla.org/MPL/2.0/.

//! PATCHED for xmpp-iot-gateway (this file is new; see PATCHED.md at the crate root).
//!
//! Input limits of the XML reader. Upstream tokio-xmpp 6.0.0 reads with rxml's default
//! options, whose token limit (8 KiB) makes a single attribute value of 9 KiB, which any
//! server forwards, a fatal error of the whole stream. Here the token limit is the per-stanza
//! byte limit, and a stanza above that limit or nested deeper than [`MAX_DEPTH`] is not built:
//! the reader skips the rest of it and hands on its envelope (name, `type`, `id`, `from`,
//! `to`) with one child `<rejected xmlns='urn:xmpp-iot-gateway:rejected' reason='…'/>`, so the
//! stream goes on and the application can answer an IQ request. Likewise, a `get`/`set` IQ
//! that fails typed parsing is handed on as such an envelope (reason `invalid`) instead of
//! being discarded unanswered.

use core::sync::atomic::{AtomicUsize, Ordering};

use rxml::{xml_ncname, AttrMap, Namespace, NcNameStr, QName};

/// Namespace of the marker child of a rejected stanza's envelope.
pub const NS_REJECTED: &str = "urn:xmpp-iot-gateway:rejected";

/// Elements nested below a stanza deeper than this make it rejected.
pub const MAX_DEPTH: usize = 256;

/// The stanza attributes an envelope keeps.
fn envelope_names() -> [&'static NcNameStr; 4] {
    [
        xml_ncname!("type"),
        xml_ncname!("id"),
        xml_ncname!("from"),
        xml_ncname!("to"),
    ]
}

static MAX_STANZA_BYTES: AtomicUsize = AtomicUsize::new(1 << 20);
static UNREADABLE: AtomicUsize = AtomicUsize::new(0);

/// Streams given up because their input could not be read past.
pub fn unreadable_streams() -> usize {
    UNREADABLE.load(Ordering::Relaxed)
}

pub(crate) fn count_unreadable() {
    UNREADABLE.fetch_add(1, Ordering::Relaxed);
}

/// Sets the per-stanza byte limit (also the longest name or attribute value) of streams
/// created from now on. Process-wide: one application, one limit.
pub fn set_max_stanza_bytes(bytes: usize) {
    MAX_STANZA_BYTES.store(bytes.max(1024), Ordering::Relaxed);
}

/// The per-stanza byte limit.
pub fn max_stanza_bytes() -> usize {
    MAX_STANZA_BYTES.load(Ordering::Relaxed)
}

/// A parser whose token limit is the stanza limit, but at least 1 MiB: servers forward
/// tokens up to their own stanza limit (Prosody: 256 KiB c2s, 512 KiB s2s), and a token the
/// lexer refuses ends the stream, while a stanza above the limit is only skipped.
pub(super) fn parser() -> rxml::Parser {
    use rxml::WithOptions;
    rxml::Parser::with_options(rxml::Options {
        max_token_length: max_stanza_bytes().max(1 << 20),
        ..rxml::Options::default()
    })
}

/// The attributes of a stanza that an envelope keeps.
pub(super) fn envelope_attrs(attrs: &AttrMap) -> AttrMap {
    let mut out = AttrMap::new();
    for name in envelope_names() {
        if let Some(v) = attrs.get(&Namespace::NONE, name) {
            out.insert(Namespace::NONE, name.to_owned(), v.clone());
        }
    }
    out
}

/// The start of the marker child, with its `reason`.
pub(super) fn marker(reason: &str) -> rxml::Event {
    let mut attrs = AttrMap::new();
    attrs.insert(
        Namespace::NONE,
        xml_ncname!("reason").to_owned(),
        reason.to_owned(),
    );
    let name: QName = (
        Namespace::from(NS_REJECTED.to_owned()),
        xml_ncname!("rejected").to_owned(),
    );
    rxml::Event::StartElement(rxml::parser::EventMetrics::zero(), name, attrs)
}

/// The envelope of an IQ request that failed typed parsing, as an IQ with the marker as its
/// payload (reason `invalid`); `None` for anything else (answers and other stanzas are
/// dropped as upstream does). Public for the gateway's fuzz target.
pub fn rejected_request(e: &super::StreamElementError) -> Option<crate::Stanza> {
    use xmpp_parsers::iq::Iq;
    use xmpp_parsers::jid::Jid;
    let super::StreamElementError::InvalidStanza { name, header, .. } = e else {
        return None;
    };
    if name.to_ncname().as_str() != "iq" {
        return None;
    }
    let id = header.id.clone()?;
    let from = header.from.as_deref().and_then(|f| Jid::new(f).ok());
    let to = header.to.as_deref().and_then(|t| Jid::new(t).ok());
    let payload = xmpp_parsers::minidom::Element::builder("rejected", NS_REJECTED)
        .attr(xml_ncname!("reason").to_owned(), "invalid")
        .build();
    let iq = match header.type_.as_deref() {
        Some("get") => Iq::Get {
            from,
            to,
            id,
            payload,
        },
        Some("set") => Iq::Set {
            from,
            to,
            id,
            payload,
        },
        _ => return None,
    };
    Some(iq.into())
}
