//! The body of the `stream` fuzz target: arbitrary bytes, arriving in pieces split at arbitrary
//! points, as the content of an upstream stream, read by both readers the gateway has: the
//! component reader ([`StanzaReader`] behind [`LineEnds`], as `component.rs` builds it) and the
//! client-mode reader (the patched tokio-xmpp's XML stream behind [`LineEnds`], as
//! `connector.rs` builds it, with the envelope of an IQ request that fails parsing as the
//! patched stanza stream builds it).
//!
//! Input: byte 0 seeds the split points; the rest is the stream content after the server's
//! header (and, for the client reader, an empty `<stream:features/>`). The stanza limit is the
//! smallest `max_stanza_size` allows (16 KiB), so that inputs of libFuzzer's length reach the
//! path above it; the token limit stays 1 MiB. Both readers must end (they are given the end of
//! the stream), never panic, and every element they hand on must serialise, a rejected
//! stanza's envelope with no more than the envelope attributes.

use gateway_api::fuzzing::Mutator;
use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufStream, DuplexStream};
use tokio_xmpp::xmlstream::{
    initiate_stream, FallibleStreamElement, ReadError, StreamHeader, Timeouts, XmppStream,
    XmppStreamElement,
};

use super::line_ends::LineEnds;
use super::rejected::{self, ENVELOPE_ATTRS};
use super::wire::StanzaReader;
use crate::xmlns;

/// The smallest `max_stanza_size` the configuration accepts.
const LIMIT: usize = 16_384;

/// Target `stream`.
pub fn stream(data: &[u8]) {
    let [seed, content @ ..] = data else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        component(content, *seed).await;
        client(content, *seed).await;
    });
}

/// Writes `header` and then `content` in pieces of pseudo-random sizes, then ends the stream.
async fn serve(mut to: impl AsyncWriteExt + Unpin, header: &[u8], content: &[u8], seed: u8) {
    let mut split = Mutator::new(u64::from(seed) << 32 | 0x9e37);
    let _ = to.write_all(header).await;
    let mut rest = content;
    while !rest.is_empty() {
        // Mostly small pieces (splits inside tokens and UTF-8), now and then a large one.
        let n = if split.below(8) == 0 {
            1 + split.below(64 * 1024)
        } else {
            1 + split.below(16)
        };
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        if to.write_all(piece).await.is_err() {
            break;
        }
        rest = tail;
        tokio::task::yield_now().await;
    }
    // The end of the stream (the reading half may live on in another task).
    let _ = to.shutdown().await;
}

fn check(el: &Element) {
    let mut out = Vec::new();
    el.write_to(&mut out)
        .expect("an element read off the wire serialises");
    if rejected::reason_of(el).is_some() {
        assert!(
            el.attrs()
                .iter()
                .all(|((_, name), _)| ENVELOPE_ATTRS.contains(&name.as_str())),
            "{el:?}"
        );
        assert_eq!(el.children().count(), 1, "{el:?}");
    }
}

async fn component(content: &[u8], seed: u8) {
    let (theirs, ours) = tokio::io::duplex(16 * 1024);
    let header =
        b"<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
        xmlns='jabber:component:accept' id='f' from='gw.localhost'>";
    let writer = serve(theirs, header, content, seed);
    let reader = async {
        let mut r = StanzaReader::new(BufReader::new(LineEnds::new(ours)), xmlns::COMPONENT, LIMIT);
        if r.read_header().await.is_err() {
            return;
        }
        while let Ok(el) = r.next().await {
            check(&el);
        }
    };
    tokio::join!(writer, reader);
}

async fn client(content: &[u8], seed: u8) {
    tokio_xmpp::xmlstream::limits::set_max_stanza_bytes(LIMIT);
    let (theirs, ours) = tokio::io::duplex(16 * 1024);
    let (mut their_read, their_write) = tokio::io::split(theirs);
    let header =
        b"<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
        xmlns='jabber:client' id='f' from='localhost' version='1.0'><stream:features/>";
    let writer = serve(their_write, header, content, seed);
    // What the client writes (its header, nothing else) is read and dropped.
    let drain = async {
        let mut sink = [0u8; 1024];
        while matches!(their_read.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let reader = read_client(BufStream::new(LineEnds::new(ours)));
    tokio::join!(writer, drain, reader);
}

async fn read_client(io: BufStream<LineEnds<DuplexStream>>) {
    use futures::StreamExt;
    let header = StreamHeader {
        to: Some("localhost".into()),
        from: None,
        id: None,
    };
    let Ok(pending) = initiate_stream(io, xmlns::CLIENT, header, Timeouts::default()).await else {
        return;
    };
    let Ok((_, mut stream)) = pending.recv_features::<FallibleStreamElement>().await else {
        return;
    };
    let stream: &mut XmppStream<_> = &mut stream;
    while let Some(item) = stream.next().await {
        match item {
            Ok(FallibleStreamElement::Ok(XmppStreamElement::Stanza(st))) => {
                check(&Element::from(st));
            }
            Ok(FallibleStreamElement::Ok(_)) => {}
            Ok(FallibleStreamElement::Err(e)) => {
                if let Some(st) = tokio_xmpp::xmlstream::limits::rejected_request(&e) {
                    check(&Element::from(st));
                }
            }
            // Recoverable: the stream goes on after it.
            Err(ReadError::ParseError(_)) => {}
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use gateway_api::fuzzing::Mutator;

    #[test]
    fn stream_seeds_and_mutations_pass() {
        Mutator::new(0x51ed_270b_2796_3a9d).run(
            Path::new(env!("CARGO_MANIFEST_DIR")),
            "stream",
            b"<>/='\"&;\r\n x",
            300,
            super::stream,
        );
    }
}
