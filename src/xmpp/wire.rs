//! XML stream framing shared by both upstream modes: stanzas in, stanzas out.
//!
//! Incoming bytes are parsed with rxml into minidom elements, one per top-level child of the
//! stream. Outgoing stanzas are serialised with minidom. Both directions translate the stream's
//! namespace at this one edge: on a component stream (`jabber:component:accept`) the elements
//! are re-labelled `jabber:client` as they are read, and written back with the component
//! namespace, so every other part of the gateway (and xmpp-parsers, built without its
//! `component` feature) sees one stanza namespace in both modes. `docs/design.md` says why.
//!
//! Reading never gives up on a stanza a server forwards: one above `max_stanza_size`, nested
//! too deeply or refused by the tree builder is skipped and handed on as its envelope
//! (`super::rejected`); only a token beyond the token limit or XML that is not well-formed ends
//! the stream (`docs/security.md`).

use std::sync::atomic::{AtomicU64, Ordering};

use minidom::tree_builder::TreeBuilder;
use minidom::Element;
use rxml::RawEvent;
use tokio::io::AsyncBufRead;

use super::rejected::{self, Reason, MAX_DEPTH};
use crate::xmlns;

/// Default of `[xmpp] max_stanza_size`: a stanza of more bytes is skipped, not built.
pub const DEFAULT_MAX_STANZA_BYTES: usize = 1 << 20;

/// Component streams given up because their input could not be read: a single name or
/// attribute value beyond the token limit, or XML that is not well-formed. Process-wide because
/// the reader runs deep inside the session's task.
pub static UNREADABLE_STREAMS: AtomicU64 = AtomicU64::new(0);

/// Upstream streams of either mode given up because their input could not be read (the
/// patched tokio-xmpp counts client-mode streams); `src/metrics.rs` reports it.
pub fn unreadable_streams() -> u64 {
    UNREADABLE_STREAMS.load(Ordering::Relaxed)
        + tokio_xmpp::xmlstream::limits::unreadable_streams() as u64
}

/// The longest name or attribute value the reader takes: the lexer holds one whole, and a
/// longer one is an error it cannot read past. At least [`DEFAULT_MAX_STANZA_BYTES`] even
/// when `max_stanza_size` is lower, because stock servers forward tokens of up to their own
/// stanza limit (Prosody: 256 KiB c2s, 512 KiB s2s): such a stanza must be skipped and
/// answered, not end the stream.
pub fn token_limit(max_stanza_bytes: usize) -> usize {
    max_stanza_bytes.max(DEFAULT_MAX_STANZA_BYTES)
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed XML from the server: {0}")]
    Xml(String),
    #[error("the server closed the stream")]
    Closed,
    #[error("the server closed the connection without ending the stream")]
    HungUp,
    #[error("stream error from the server: {condition}{}", text.as_deref().map(|t| format!(" ({t})")).unwrap_or_default())]
    Stream {
        condition: String,
        text: Option<String>,
    },
}

/// The attributes of the stream header the server sent.
#[derive(Debug, Clone, Default)]
pub struct StreamHeader {
    pub id: Option<String>,
    pub from: Option<String>,
}

fn is_eof(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::UnexpectedEof
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rxml::Error>())
            .is_some_and(|x| matches!(x, rxml::Error::InvalidEof(_)))
}

/// Reads a server's XML stream as a sequence of elements.
///
/// A stanza above the byte limit, nested deeper than [`MAX_DEPTH`] or refused by the tree
/// builder is not built: the reader skips to its end and returns its envelope
/// ([`rejected::envelope`]), and the stream goes on. Only input that cannot be read past (a
/// token longer than the limit, XML that is not well-formed) ends the stream.
pub struct StanzaReader<R> {
    reader: rxml::AsyncRawReader<R>,
    tree: TreeBuilder,
    /// The stream header's events, replayed into a fresh tree builder after a rejected stanza
    /// (the builder cannot be rewound to the stream level).
    header: Vec<RawEvent>,
    /// The namespace the server's stream uses for stanzas; mapped to `jabber:client` on read.
    stream_ns: &'static str,
    max_stanza_bytes: usize,
    /// Element depth: 1 inside the stream, 2 inside a stanza.
    depth: usize,
    /// Bytes of the stanza being read.
    stanza_bytes: usize,
    /// Name and envelope attributes of the stanza being read, for a rejection.
    name: String,
    attrs: Vec<(String, String)>,
    /// Set once the stanza being read is being skipped.
    rejected: Option<Reason>,
}

impl<R: AsyncBufRead + Unpin> StanzaReader<R> {
    /// A single token (name, attribute value) may be up to [`token_limit`] bytes long.
    pub fn new(inner: R, stream_ns: &'static str, max_stanza_bytes: usize) -> Self {
        let options = rxml::Options {
            max_token_length: token_limit(max_stanza_bytes),
            ..rxml::Options::default()
        };
        StanzaReader {
            reader: rxml::AsyncRawReader::with_options(inner, options),
            tree: TreeBuilder::new(),
            header: Vec::new(),
            stream_ns,
            max_stanza_bytes,
            depth: 0,
            stanza_bytes: 0,
            name: String::new(),
            attrs: Vec::new(),
            rejected: None,
        }
    }

    async fn event(&mut self) -> Result<RawEvent, WireError> {
        match self.reader.read().await {
            Ok(Some(ev)) => Ok(ev),
            Ok(None) => Err(WireError::Closed),
            // The peer hung up without closing its stream: a lost link, not bad XML.
            Err(e) if is_eof(&e) => Err(WireError::HungUp),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                UNREADABLE_STREAMS.fetch_add(1, Ordering::Relaxed);
                Err(WireError::Xml(e.to_string()))
            }
            Err(e) => Err(WireError::Io(e)),
        }
    }

    /// Feeds one event to the tree builder, translating the stream namespace.
    fn feed(&mut self, ev: RawEvent) -> Result<(), minidom::Error> {
        let ev = match ev {
            RawEvent::Attribute(m, (None, name), value)
                if name.as_str() == "xmlns" && value == self.stream_ns =>
            {
                RawEvent::Attribute(m, (None, name), xmlns::CLIENT.to_owned())
            }
            other => other,
        };
        self.tree.process_event(ev)
    }

    /// Reads up to the end of the server's stream header.
    pub async fn read_header(&mut self) -> Result<StreamHeader, WireError> {
        loop {
            let ev = self.event().await?;
            let head_closed = matches!(ev, RawEvent::ElementHeadClose(_));
            self.header.push(ev.clone());
            self.feed(ev).map_err(|e| WireError::Xml(e.to_string()))?;
            if head_closed && self.tree.depth() == 1 {
                self.depth = 1;
                let root = self
                    .tree
                    .top()
                    .ok_or_else(|| WireError::Xml("no stream header".into()))?;
                if !root.is("stream", xmlns::STREAMS) {
                    return Err(WireError::Xml(format!(
                        "expected a stream header, got <{}>",
                        root.name()
                    )));
                }
                return Ok(StreamHeader {
                    id: root.attr("id").map(str::to_owned),
                    from: root.attr("from").map(str::to_owned),
                });
            }
        }
    }

    /// The next top-level element of the stream (for a rejected stanza, its envelope). A
    /// `<stream:error/>` or the end of the stream is returned as an error: either way the
    /// stream is over.
    pub async fn next(&mut self) -> Result<Element, WireError> {
        loop {
            let ev = self.event().await?;
            match &ev {
                // Whitespace between stanzas (keep-alives) would pile up on the stream element.
                RawEvent::Text(..) if self.depth <= 1 => continue,
                RawEvent::ElementFoot(_) if self.depth <= 1 => return Err(WireError::Closed),
                RawEvent::ElementHeadOpen(_, (_, name)) => {
                    self.depth += 1;
                    if self.depth == 2 {
                        self.stanza_bytes = 0;
                        self.rejected = None;
                        self.attrs.clear();
                        self.name = name.to_string();
                    }
                }
                // Attributes at depth 2 are the stanza's own: a child's head is one deeper.
                RawEvent::Attribute(_, (None, name), value)
                    if self.depth == 2 && rejected::ENVELOPE_ATTRS.contains(&name.as_str()) =>
                {
                    self.attrs.push((name.to_string(), value.clone()));
                }
                _ => {}
            }
            let ends_stanza = matches!(ev, RawEvent::ElementFoot(_)) && self.depth == 2;
            if matches!(ev, RawEvent::ElementFoot(_)) {
                self.depth -= 1;
            }
            self.stanza_bytes = self.stanza_bytes.saturating_add(ev.metrics().len());
            if self.rejected.is_none() {
                if self.stanza_bytes > self.max_stanza_bytes {
                    self.rejected = Some(Reason::TooLarge);
                } else if self.depth > MAX_DEPTH + 2 {
                    self.rejected = Some(Reason::TooDeep);
                } else if let Err(e) = self.feed(ev) {
                    tracing::debug!(error = %e, stanza = %self.name, "a stanza the tree builder refuses");
                    self.rejected = Some(Reason::Invalid);
                }
                if self.rejected.is_some() {
                    // What was built of it goes now, not when the stanza ends.
                    self.reset_tree()?;
                }
            }
            if ends_stanza {
                if let Some(reason) = self.rejected.take() {
                    let attrs = std::mem::take(&mut self.attrs);
                    return Ok(rejected::envelope(
                        &self.name,
                        attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                        reason,
                    ));
                }
                let el = self
                    .tree
                    .unshift_child()
                    .ok_or_else(|| WireError::Xml("lost a stanza".into()))?;
                if el.is("error", xmlns::STREAMS) {
                    return Err(stream_error(&el));
                }
                return Ok(el);
            }
        }
    }

    /// A fresh tree builder at the stream level: the stream header replayed into it.
    fn reset_tree(&mut self) -> Result<(), WireError> {
        self.tree = TreeBuilder::new();
        for ev in self.header.clone() {
            self.feed(ev).map_err(|e| WireError::Xml(e.to_string()))?;
        }
        Ok(())
    }
}

fn stream_error(el: &Element) -> WireError {
    let condition = el
        .children()
        .find(|c| c.ns() == xmlns::STREAM_ERRORS && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".to_owned());
    let text = el
        .get_child("text", xmlns::STREAM_ERRORS)
        .map(|t| t.text())
        .filter(|t| !t.is_empty());
    WireError::Stream { condition, text }
}

/// Serialises a stanza for a stream whose stanza namespace is `stream_ns`.
pub fn encode(el: &Element, stream_ns: &'static str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    encode_into(el, stream_ns, &mut buf);
    buf
}

/// Appends a stanza, serialised for a stream whose stanza namespace is `stream_ns`, to `buf`
/// (the session's write buffer: no buffer of its own per stanza). On failure `buf` is left as
/// it was and `false` returned.
///
/// Stanzas are built in `jabber:client`; minidom declares that namespace on the root element
/// only (children inherit it), so relabelling the root declaration is the whole translation.
pub fn encode_into(el: &Element, stream_ns: &'static str, buf: &mut Vec<u8>) -> bool {
    let start = buf.len();
    if let Err(e) = el.write_to(buf) {
        // Only possible for names that are not XML names; every element we send is built from
        // fixed names, so this is a bug worth a loud log, not a reason to break the stream.
        tracing::error!(error = %e, element = el.name(), "could not serialise a stanza; dropped it");
        buf.truncate(start);
        return false;
    }
    if stream_ns == xmlns::CLIENT || el.ns() != xmlns::CLIENT {
        return true;
    }
    const ATTR: &[u8] = b" xmlns='";
    let value = start + 1 + el.name().len() + ATTR.len();
    let end = value + xmlns::CLIENT.len();
    if buf.get(value - ATTR.len()..value) == Some(ATTR)
        && buf.get(value..end) == Some(xmlns::CLIENT.as_bytes())
        && buf.get(end) == Some(&b'\'')
    {
        // The declaration's value, in place: only this stanza's bytes move.
        buf.splice(value..end, stream_ns.bytes());
        true
    } else {
        tracing::error!(
            element = el.name(),
            "unexpected serialisation of a stanza; dropped it"
        );
        buf.truncate(start);
        false
    }
}

/// The opening of a stream from us to a server.
pub fn stream_open(stream_ns: &str, to: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{stream_ns}' xmlns:stream='{}' to='{}'>",
        xmlns::STREAMS,
        escape_attr(to)
    )
}

pub const STREAM_CLOSE: &str = "</stream:stream>";

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(
        input: &'static [u8],
        ns: &'static str,
    ) -> (StreamHeader, Vec<Element>, WireError) {
        read_limited(input, ns, DEFAULT_MAX_STANZA_BYTES).await
    }

    async fn read_limited(
        input: &[u8],
        ns: &'static str,
        limit: usize,
    ) -> (StreamHeader, Vec<Element>, WireError) {
        let mut r = StanzaReader::new(input, ns, limit);
        let header = r.read_header().await.expect("header");
        let mut els = Vec::new();
        loop {
            match r.next().await {
                Ok(el) => els.push(el),
                Err(e) => return (header, els, e),
            }
        }
    }

    #[tokio::test]
    async fn component_stanzas_are_read_as_client_stanzas() {
        let input = b"<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
            xml:lang='en' id='abc' from='gw.localhost' xmlns='jabber:component:accept'> \
            <handshake/>\n <message to='a@gw.localhost' from='u@localhost/r' type='chat'><body>get</body></message>  \
            </stream:stream>";
        let (header, els, end) = read_all(input, xmlns::COMPONENT).await;
        assert_eq!(header.id.as_deref(), Some("abc"));
        assert_eq!(header.from.as_deref(), Some("gw.localhost"));
        assert_eq!(els.len(), 2);
        assert!(els[0].is("handshake", xmlns::CLIENT));
        assert!(els[1].is("message", xmlns::CLIENT));
        assert!(els[1].get_child("body", xmlns::CLIENT).is_some());
        assert!(matches!(end, WireError::Closed));
        let parsed = xmpp_parsers::message::Message::try_from(els[1].clone())
            .expect("parses as a client message");
        assert_eq!(
            parsed.bodies.values().next().map(|b| b.as_str()),
            Some("get")
        );
    }

    #[tokio::test]
    async fn stream_errors_name_their_condition() {
        let input = b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='x' xmlns='jabber:component:accept'>\
            <stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
            <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Given token does not match</text></stream:error>";
        let (_, els, end) = read_all(input, xmlns::COMPONENT).await;
        assert!(els.is_empty());
        match end {
            WireError::Stream { condition, text } => {
                assert_eq!(condition, "not-authorized");
                assert_eq!(text.as_deref(), Some("Given token does not match"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn broken_xml_is_an_error_not_a_panic() {
        let input = b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='x' xmlns='jabber:component:accept'>\
            <message><body>a</bodyx></message>";
        let (_, els, end) = read_all(input, xmlns::COMPONENT).await;
        assert!(els.is_empty());
        assert!(matches!(end, WireError::Xml(_)), "{end:?}");
    }

    #[tokio::test]
    async fn a_hang_up_mid_stream_is_a_lost_link_not_bad_xml() {
        let input = b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='x' xmlns='jabber:component:accept'>\
            <message><body>a</body></message>\n";
        let (_, els, end) = read_all(input, xmlns::COMPONENT).await;
        assert_eq!(els.len(), 1);
        assert!(matches!(end, WireError::HungUp), "{end:?}");
    }

    const OPEN: &str = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='x' xmlns='jabber:component:accept'>";
    const NEXT: &str =
        "<message from='a@localhost/r' to='d@gw.localhost' id='next'><body>next</body></message>";

    /// The stream with `stanza` and then an ordinary message.
    fn stream_with(stanza: &str) -> Vec<u8> {
        format!("{OPEN}{stanza}{NEXT}</stream:stream>").into_bytes()
    }

    fn assert_next_read(els: &[Element], end: &WireError) {
        assert!(matches!(end, WireError::Closed), "{end:?}");
        let last = els.last().expect("the message after it");
        assert_eq!(last.attr("id"), Some("next"));
        assert_eq!(
            last.get_child("body", xmlns::CLIENT).map(|b| b.text()),
            Some("next".into())
        );
    }

    #[tokio::test]
    async fn long_attributes_and_text_below_the_limit_are_read_whole() {
        let big = "A".repeat(200 * 1024);
        let input = stream_with(&format!(
            "<iq type='set' id='q1' from='bob@localhost/r' to='s1@gw.localhost'><big xmlns='urn:x:big' a='{big}'>{big}</big></iq>"
        ));
        let (_, els, end) = read_limited(&input, xmlns::COMPONENT, DEFAULT_MAX_STANZA_BYTES).await;
        assert_next_read(&els, &end);
        let big_el = els[0].get_child("big", "urn:x:big").expect("payload");
        assert_eq!(big_el.attr("a").map(str::len), Some(big.len()));
        assert_eq!(big_el.text().len(), big.len());
        assert_eq!(rejected::reason_of(&els[0]), None);
    }

    #[tokio::test]
    async fn an_oversized_stanza_is_skipped_and_its_envelope_handed_on() {
        let text = "a".repeat(5000);
        let input = stream_with(&format!(
            "<iq type='get' id='big' from='bob@localhost/r' to='s1@gw.localhost' extra='x'><q xmlns='urn:x'>{text}</q><q xmlns='urn:x'>{text}</q></iq>"
        ));
        let (_, els, end) = read_limited(&input, xmlns::COMPONENT, 8192).await;
        assert_next_read(&els, &end);
        assert_eq!(els.len(), 2);
        assert_eq!(rejected::reason_of(&els[0]), Some(Reason::TooLarge));
        assert_eq!(els[0].name(), "iq");
        assert_eq!(els[0].attr("id"), Some("big"));
        assert_eq!(els[0].attr("from"), Some("bob@localhost/r"));
        assert_eq!(els[0].attr("extra"), None);
        assert_eq!(els[0].children().count(), 1);
    }

    #[tokio::test]
    async fn deep_nesting_and_refused_namespaces_are_skipped() {
        let deep = format!(
            "<iq type='set' id='deep' to='s1@gw.localhost'>{}{}</iq>",
            "<a xmlns='urn:x'>".repeat(1000),
            "</a>".repeat(1000)
        );
        let input = stream_with(&format!(
            "{deep}<message id='pfx' to='s1@gw.localhost'><x:y/></message>"
        ));
        let (_, els, end) = read_limited(&input, xmlns::COMPONENT, DEFAULT_MAX_STANZA_BYTES).await;
        assert_next_read(&els, &end);
        assert_eq!(els.len(), 3);
        assert_eq!(rejected::reason_of(&els[0]), Some(Reason::TooDeep));
        assert_eq!(els[0].attr("id"), Some("deep"));
        assert_eq!(rejected::reason_of(&els[1]), Some(Reason::Invalid));
        assert_eq!(els[1].name(), "message");
    }

    #[tokio::test]
    async fn a_token_above_a_low_stanza_limit_is_skipped_not_fatal() {
        let input = stream_with(&format!(
            "<iq type='get' id='q' to='s1@gw.localhost'><x xmlns='urn:x' a='{}'/></iq>",
            "A".repeat(200 * 1024)
        ));
        let (_, els, end) = read_limited(&input, xmlns::COMPONENT, 16384).await;
        assert_next_read(&els, &end);
        assert_eq!(rejected::reason_of(&els[0]), Some(Reason::TooLarge));
    }

    #[tokio::test]
    async fn a_token_beyond_the_token_limit_ends_the_stream_and_is_counted() {
        let before = UNREADABLE_STREAMS.load(Ordering::Relaxed);
        let input = stream_with(&format!(
            "<message to='s1@gw.localhost'><x xmlns='urn:x' a='{}'/></message>",
            "A".repeat(token_limit(0) + 1)
        ));
        let (_, els, end) = read_limited(&input, xmlns::COMPONENT, 16384).await;
        assert!(els.is_empty());
        assert!(matches!(end, WireError::Xml(_)), "{end:?}");
        assert!(UNREADABLE_STREAMS.load(Ordering::Relaxed) > before);
    }

    #[test]
    fn encoding_relabels_only_the_root_namespace() {
        let el: Element =
            "<message xmlns='jabber:client' to='u@localhost' type='chat'><body>a &lt; b</body>\
            <x xmlns='urn:example'><y/></x></message>"
                .parse()
                .expect("test element");
        let out = String::from_utf8(encode(&el, xmlns::COMPONENT)).expect("utf-8");
        assert!(
            out.starts_with("<message xmlns='jabber:component:accept'"),
            "{out}"
        );
        assert_eq!(out.matches("jabber:client").count(), 0, "{out}");
        let back: Element = out.parse().expect("well-formed");
        assert_eq!(
            back.get_child("body", xmlns::COMPONENT).map(|b| b.text()),
            Some("a < b".to_owned())
        );
        let same = String::from_utf8(encode(&el, xmlns::CLIENT)).expect("utf-8");
        assert!(same.starts_with("<message xmlns='jabber:client'"));
    }
}
