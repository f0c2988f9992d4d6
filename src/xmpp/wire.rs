//! XML stream framing shared by both upstream modes: stanzas in, stanzas out.
//!
//! Incoming bytes are parsed with rxml into minidom elements, one per top-level child of the
//! stream. Outgoing stanzas are serialised with minidom. Both directions translate the stream's
//! namespace at this one edge: on a component stream (`jabber:component:accept`) the elements
//! are re-labelled `jabber:client` as they are read, and written back with the component
//! namespace, so every other part of the gateway (and xmpp-parsers, built without its
//! `component` feature) sees one stanza namespace in both modes. `docs/design.md` says why.

use minidom::Element;
use rxml::RawEvent;
use tokio::io::AsyncBufRead;

pub const NS_CLIENT: &str = "jabber:client";
pub const NS_COMPONENT: &str = "jabber:component:accept";
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";

/// A stanza larger than this ends the stream: nothing the gateway is sent legitimately comes close.
pub const MAX_STANZA_BYTES: usize = 1 << 20;

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
    #[error("a stanza of more than {MAX_STANZA_BYTES} bytes")]
    TooLarge,
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
pub struct StanzaReader<R> {
    reader: rxml::AsyncRawReader<R>,
    tree: minidom::tree_builder::TreeBuilder,
    /// The namespace the server's stream uses for stanzas; mapped to `jabber:client` on read.
    stream_ns: &'static str,
    /// Bytes of the element being built, to enforce `MAX_STANZA_BYTES`.
    stanza_bytes: usize,
}

impl<R: AsyncBufRead + Unpin> StanzaReader<R> {
    pub fn new(inner: R, stream_ns: &'static str) -> Self {
        StanzaReader {
            reader: rxml::AsyncRawReader::new(inner),
            tree: minidom::tree_builder::TreeBuilder::new(),
            stream_ns,
            stanza_bytes: 0,
        }
    }

    async fn event(&mut self) -> Result<RawEvent, WireError> {
        match self.reader.read().await {
            Ok(Some(ev)) => Ok(ev),
            Ok(None) => Err(WireError::Closed),
            // The peer hung up without closing its stream: a lost link, not bad XML.
            Err(e) if is_eof(&e) => Err(WireError::HungUp),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(WireError::Xml(e.to_string()))
            }
            Err(e) => Err(WireError::Io(e)),
        }
    }

    /// Feeds one event to the tree builder, translating the stream namespace.
    fn feed(&mut self, ev: RawEvent) -> Result<(), WireError> {
        let ev = match ev {
            RawEvent::Attribute(m, (None, name), value)
                if name.as_str() == "xmlns" && value == self.stream_ns =>
            {
                RawEvent::Attribute(m, (None, name), NS_CLIENT.to_owned())
            }
            other => other,
        };
        self.tree
            .process_event(ev)
            .map_err(|e| WireError::Xml(e.to_string()))
    }

    /// Reads up to the end of the server's stream header.
    pub async fn read_header(&mut self) -> Result<StreamHeader, WireError> {
        loop {
            let ev = self.event().await?;
            let head_closed = matches!(ev, RawEvent::ElementHeadClose(_));
            self.feed(ev)?;
            if head_closed && self.tree.depth() == 1 {
                let root = self
                    .tree
                    .top()
                    .ok_or_else(|| WireError::Xml("no stream header".into()))?;
                if !root.is("stream", NS_STREAMS) {
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

    /// The next top-level element of the stream. A `<stream:error/>` or the end of the stream is
    /// returned as an error: either way the stream is over.
    pub async fn next(&mut self) -> Result<Element, WireError> {
        loop {
            let ev = self.event().await?;
            let depth = self.tree.depth();
            match &ev {
                // Whitespace between stanzas (keep-alives) would pile up on the stream element.
                RawEvent::Text(..) if depth <= 1 => continue,
                RawEvent::ElementFoot(_) if depth == 1 => return Err(WireError::Closed),
                _ => {}
            }
            if depth >= 1 {
                self.stanza_bytes += ev.metrics().len();
                if self.stanza_bytes > MAX_STANZA_BYTES {
                    return Err(WireError::TooLarge);
                }
            }
            let ends_stanza = matches!(ev, RawEvent::ElementFoot(_)) && depth == 2;
            self.feed(ev)?;
            if ends_stanza {
                self.stanza_bytes = 0;
                let el = self
                    .tree
                    .unshift_child()
                    .ok_or_else(|| WireError::Xml("lost a stanza".into()))?;
                if el.is("error", NS_STREAMS) {
                    return Err(stream_error(&el));
                }
                return Ok(el);
            }
        }
    }
}

fn stream_error(el: &Element) -> WireError {
    const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
    let condition = el
        .children()
        .find(|c| c.ns() == NS_STREAM_ERRORS && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".to_owned());
    let text = el
        .get_child("text", NS_STREAM_ERRORS)
        .map(|t| t.text())
        .filter(|t| !t.is_empty());
    WireError::Stream { condition, text }
}

/// Serialises a stanza for a stream whose stanza namespace is `stream_ns`.
///
/// Stanzas are built in `jabber:client`; minidom declares that namespace on the root element
/// only (children inherit it), so relabelling the root declaration is the whole translation.
pub fn encode(el: &Element, stream_ns: &'static str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    if let Err(e) = el.write_to(&mut buf) {
        // Only possible for names that are not XML names; every element we send is built from
        // fixed names, so this is a bug worth a loud log, not a reason to break the stream.
        tracing::error!(error = %e, element = el.name(), "could not serialise a stanza; dropped it");
        return Vec::new();
    }
    if stream_ns == NS_CLIENT || el.ns() != NS_CLIENT {
        return buf;
    }
    let decl = format!(" xmlns='{NS_CLIENT}'");
    let at = 1 + el.name().len();
    if buf.get(at..at + decl.len()) == Some(decl.as_bytes()) {
        let mut out = Vec::with_capacity(buf.len() + 16);
        out.extend_from_slice(&buf[..at]);
        out.extend_from_slice(format!(" xmlns='{stream_ns}'").as_bytes());
        out.extend_from_slice(&buf[at + decl.len()..]);
        out
    } else {
        tracing::error!(
            element = el.name(),
            "unexpected serialisation of a stanza; dropped it"
        );
        Vec::new()
    }
}

/// The opening of a stream from us to a server.
pub fn stream_open(stream_ns: &str, to: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{stream_ns}' xmlns:stream='{NS_STREAMS}' to='{}'>",
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
        let mut r = StanzaReader::new(input, ns);
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
        let (header, els, end) = read_all(input, NS_COMPONENT).await;
        assert_eq!(header.id.as_deref(), Some("abc"));
        assert_eq!(header.from.as_deref(), Some("gw.localhost"));
        assert_eq!(els.len(), 2);
        assert!(els[0].is("handshake", NS_CLIENT));
        assert!(els[1].is("message", NS_CLIENT));
        assert!(els[1].get_child("body", NS_CLIENT).is_some());
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
        let (_, els, end) = read_all(input, NS_COMPONENT).await;
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
        let (_, els, end) = read_all(input, NS_COMPONENT).await;
        assert!(els.is_empty());
        assert!(matches!(end, WireError::Xml(_)), "{end:?}");
    }

    #[tokio::test]
    async fn a_hang_up_mid_stream_is_a_lost_link_not_bad_xml() {
        let input = b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='x' xmlns='jabber:component:accept'>\
            <message><body>a</body></message>\n";
        let (_, els, end) = read_all(input, NS_COMPONENT).await;
        assert_eq!(els.len(), 1);
        assert!(matches!(end, WireError::HungUp), "{end:?}");
    }

    #[tokio::test]
    async fn an_oversized_stanza_ends_the_stream() {
        let mut input = b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='x' xmlns='jabber:component:accept'><message><body>".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_STANZA_BYTES + 10));
        input.extend_from_slice(b"</body></message>");
        let input: &'static [u8] = Box::leak(input.into_boxed_slice());
        let (_, _, end) = read_all(input, NS_COMPONENT).await;
        assert!(matches!(end, WireError::TooLarge), "{end:?}");
    }

    #[test]
    fn encoding_relabels_only_the_root_namespace() {
        let el: Element =
            "<message xmlns='jabber:client' to='u@localhost' type='chat'><body>a &lt; b</body>\
            <x xmlns='urn:example'><y/></x></message>"
                .parse()
                .expect("test element");
        let out = String::from_utf8(encode(&el, NS_COMPONENT)).expect("utf-8");
        assert!(
            out.starts_with("<message xmlns='jabber:component:accept'"),
            "{out}"
        );
        assert_eq!(out.matches("jabber:client").count(), 0, "{out}");
        let back: Element = out.parse().expect("well-formed");
        assert_eq!(
            back.get_child("body", NS_COMPONENT).map(|b| b.text()),
            Some("a < b".to_owned())
        );
        let same = String::from_utf8(encode(&el, NS_CLIENT)).expect("utf-8");
        assert!(same.starts_with("<message xmlns='jabber:client'"));
    }
}
