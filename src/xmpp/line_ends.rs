//! XML end-of-line handling (XML 1.0 §2.11) in front of the XML lexer: every `\r\n` and every
//! lone `\r` becomes `\n` before rxml sees the bytes.
//!
//! The spec asks a parser to do exactly this before parsing, so nothing changes meaning. It is
//! done here because rxml 0.14 gets it wrong in attribute values: a carriage return that is not
//! followed by a line feed is reported as an invalid character (`invalid codepoint U+78 in
//! attribute value` for `a='\rx'`), a fatal error of the whole stream. A stranger only has to
//! send `a='&#xD;x'`: the server expands the reference and forwards a raw carriage return.
//! Both upstream modes read through this: the component stream (`component.rs`) and each c2s
//! stream (`connector.rs`). `\r` and `\n` never occur inside a multi-byte UTF-8 sequence, so
//! working on bytes is safe.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Reads `inner` with its line ends normalised; writes pass through.
#[derive(Debug)]
pub struct LineEnds<S> {
    inner: S,
    /// The last byte read was a `\r` (already passed on as `\n`): a `\n` right after it is dropped.
    after_cr: bool,
}

impl<S> LineEnds<S> {
    pub fn new(inner: S) -> LineEnds<S> {
        LineEnds {
            inner,
            after_cr: false,
        }
    }

    /// Normalises `bytes` in place; returns how many are left.
    fn normalise(&mut self, bytes: &mut [u8]) -> usize {
        let mut kept = 0;
        for i in 0..bytes.len() {
            let b = bytes[i];
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            bytes[kept] = if b == b'\r' {
                self.after_cr = true;
                b'\n'
            } else {
                b
            };
            kept += 1;
        }
        kept
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LineEnds<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let start = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let read = buf.filled().len() - start;
            let kept = this.normalise(&mut buf.filled_mut()[start..]);
            buf.set_filled(start + kept);
            // Only a dropped `\n` leaves nothing: read again rather than report the end.
            if read == 0 || kept > 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LineEnds<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, BufReader};

    async fn through(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        // A tiny buffer splits `\r\n` across reads.
        let mut r = LineEnds::new(BufReader::with_capacity(chunk, input));
        r.read_to_end(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn line_ends_become_line_feeds_wherever_the_reads_split() {
        let input = "a\r\nb\rc\n\r\r\nd\r".as_bytes();
        for chunk in [1, 2, 3, 64] {
            assert_eq!(
                through(input, chunk).await,
                b"a\nb\nc\n\n\nd\n",
                "chunk {chunk}"
            );
        }
        assert_eq!(
            through("é\r\u{FFFD}".as_bytes(), 1).await,
            "é\n\u{FFFD}".as_bytes()
        );
    }

    #[tokio::test]
    async fn a_carriage_return_in_an_attribute_no_longer_ends_the_stream() {
        use super::super::wire::{StanzaReader, DEFAULT_MAX_STANZA_BYTES};
        use crate::xmlns;
        let input = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='x' \
            xmlns='jabber:component:accept'><iq id='q' a='\r\u{FFFD}\rx'>\r\u{e9}</iq>";
        let mut r = StanzaReader::new(
            BufReader::new(LineEnds::new(input.as_bytes())),
            xmlns::COMPONENT,
            DEFAULT_MAX_STANZA_BYTES,
        );
        r.read_header().await.expect("header");
        let el = r.next().await.expect("the stanza");
        // Attribute value normalisation then turns each line feed into a space.
        assert_eq!(el.attr("a"), Some(" \u{FFFD} x"));
        assert_eq!(el.text(), "\n\u{e9}");
    }
}
