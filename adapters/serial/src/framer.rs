//! Line framing: a byte stream from the port in, complete lines out, in bounded memory.
//!
//! The framer looks for the configured line ending (`\n`, `\r\n` or any short byte string) and
//! never holds more than `max_line` bytes of one line plus the length of the line ending: a
//! longer line is dropped as it streams past and reported once its ending arrives, with the
//! number of bytes it had. It knows nothing of UTF-8 or of formats: binary garbage is just bytes
//! between two line endings. After a port is (re)opened mid-line the caller can ask it to drop
//! the fragment up to the first line ending ([`LineFramer::skip_partial`]).

/// What the framer found in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One complete line, without its line ending.
    Line(Vec<u8>),
    /// A line longer than `max_line` ended; its bytes (this many) were dropped.
    TooLong(usize),
    /// The rest of a line that started before the port was opened; this many bytes dropped.
    Partial(usize),
}

/// Splits a byte stream into lines.
#[derive(Debug, Clone)]
pub struct LineFramer {
    /// The line ending; never empty.
    delimiter: Vec<u8>,
    /// The longest line kept, in bytes, line ending not counted.
    max_line: usize,
    /// The current line so far. While `discarding`, only the last `delimiter.len() - 1` bytes
    /// are kept (a line ending may start among them).
    buf: Vec<u8>,
    /// The current line is too long: its bytes are being dropped until its line ending.
    discarding: bool,
    /// Bytes of the current line dropped so far (while `discarding`).
    dropped: usize,
    /// The current line is a fragment from before the port was opened.
    partial: bool,
}

impl LineFramer {
    /// A framer for lines ending in `delimiter` (empty means `\n`) of at most `max_line` bytes
    /// (at least 1).
    pub fn new(delimiter: &[u8], max_line: usize) -> Self {
        let delimiter = if delimiter.is_empty() {
            b"\n".to_vec()
        } else {
            delimiter.to_vec()
        };
        LineFramer {
            buf: Vec::with_capacity(max_line.min(4096) + delimiter.len()),
            delimiter,
            max_line: max_line.max(1),
            discarding: false,
            dropped: 0,
            partial: false,
        }
    }

    /// Forgets any unfinished line (the port was closed: what comes next is a new stream).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.discarding = false;
        self.dropped = 0;
        self.partial = false;
    }

    /// The bytes up to the next line ending are a fragment of a line that started before the
    /// port was opened: report them as [`Frame::Partial`] instead of a line.
    pub fn skip_partial(&mut self) {
        self.partial = true;
    }

    /// Bytes of an unfinished line currently held (bounded by `max_line` + line ending).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds bytes from the port; complete lines (and dropped ones) are appended to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Frame>) {
        let dlen = self.delimiter.len();
        let last = self.delimiter[dlen - 1];
        for &b in data {
            self.buf.push(b);
            if b == last && self.buf.ends_with(&self.delimiter) {
                let content = self.buf.len() - dlen;
                let frame = if self.discarding {
                    Frame::TooLong(self.dropped + content)
                } else if content > self.max_line {
                    Frame::TooLong(content)
                } else if self.partial {
                    Frame::Partial(content)
                } else {
                    Frame::Line(self.buf[..content].to_vec())
                };
                out.push(frame);
                self.buf.clear();
                self.discarding = false;
                self.dropped = 0;
                self.partial = false;
                continue;
            }
            // Keep the tail that may be the start of a line ending; drop the rest of a long line.
            let keep = dlen - 1;
            if self.discarding {
                if self.buf.len() > keep {
                    let excess = self.buf.len() - keep;
                    self.buf.drain(..excess);
                    self.dropped += excess;
                }
            } else if self.buf.len() > self.max_line + keep {
                let excess = self.buf.len() - keep;
                self.buf.drain(..excess);
                self.dropped = excess;
                self.discarding = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(f: &mut LineFramer, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut out);
        }
        out
    }

    fn line(s: &str) -> Frame {
        Frame::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn splits_on_newline_across_chunks() {
        let mut f = LineFramer::new(b"\n", 100);
        let out = frames(&mut f, &[b"temp=2", b"1.5\nhum=40\n", b"", b"x=1"]);
        assert_eq!(out, [line("temp=21.5"), line("hum=40")]);
        assert_eq!(f.buffered(), 3);
        assert_eq!(frames(&mut f, &[b"\n"]), [line("x=1")]);
        assert_eq!(frames(&mut f, &[b"\n\n"]), [line(""), line("")]);
    }

    #[test]
    fn multi_byte_endings_may_be_split_between_reads() {
        let mut f = LineFramer::new(b"\r\n", 100);
        let out = frames(&mut f, &[b"a\r", b"\nb\rc\r", b"\n"]);
        assert_eq!(out, [line("a"), line("b\rc")]);
        let mut f = LineFramer::new(b"END", 100);
        let out = frames(&mut f, &[b"oneE", b"N", b"DtwoENEND", b"EN"]);
        assert_eq!(out, [line("one"), line("twoEN")]);
        assert_eq!(f.buffered(), 2);
    }

    #[test]
    fn long_lines_are_dropped_in_bounded_memory_and_reported() {
        let mut f = LineFramer::new(b"\n", 8);
        let mut out = Vec::new();
        f.push(b"12345678\n", &mut out);
        assert_eq!(out, [line("12345678")], "exactly max_line is kept");
        out.clear();
        for _ in 0..10_000 {
            f.push(b"xxxxxxxxxx", &mut out);
            assert!(f.buffered() <= 8, "never more than max_line held");
        }
        f.push(b"xx\nok\n", &mut out);
        assert_eq!(out, [Frame::TooLong(100_002), line("ok")]);
        // One byte too many, ending in the same read.
        out.clear();
        f.push(b"123456789\nafter\n", &mut out);
        assert_eq!(out, [Frame::TooLong(9), line("after")]);
    }

    #[test]
    fn long_lines_with_a_long_ending_keep_only_the_ending_tail() {
        let mut f = LineFramer::new(b"\r\n", 4);
        let mut out = Vec::new();
        f.push(b"abcdefgh\r", &mut out);
        assert!(out.is_empty());
        assert!(f.buffered() <= 5);
        f.push(b"\nok\r\n", &mut out);
        assert_eq!(out, [Frame::TooLong(8), line("ok")]);
        // A line of exactly max_line whose ending straddles two reads.
        out.clear();
        f.push(b"abcd\r", &mut out);
        f.push(b"\n", &mut out);
        assert_eq!(out, [line("abcd")]);
    }

    #[test]
    fn a_partial_first_line_is_dropped_when_asked() {
        let mut f = LineFramer::new(b"\n", 100);
        f.skip_partial();
        let out = frames(&mut f, &[b"mp=21.5\ntemp=", b"22\n"]);
        assert_eq!(out, [Frame::Partial(7), line("temp=22")]);
        f.skip_partial();
        assert_eq!(frames(&mut f, &[b"\n"]), [Frame::Partial(0)]);
    }

    #[test]
    fn reset_forgets_the_unfinished_line() {
        let mut f = LineFramer::new(b"\n", 4);
        let mut out = Vec::new();
        f.push(b"half", &mut out);
        f.reset();
        f.push(b"new\n", &mut out);
        assert_eq!(out, [line("new")]);
        f.push(b"toolongline", &mut out);
        f.reset();
        f.push(b"ok\n", &mut out);
        assert_eq!(out, [line("new"), line("ok")]);
    }

    #[test]
    fn binary_garbage_is_just_bytes() {
        let mut f = LineFramer::new(b"\n", 16);
        let out = frames(&mut f, &[&[0, 0xff, 0xfe, b'\n', 0x80, b'\r', b'\n']]);
        assert_eq!(
            out,
            [
                Frame::Line(vec![0, 0xff, 0xfe]),
                Frame::Line(vec![0x80, b'\r'])
            ]
        );
    }

    #[test]
    fn an_empty_delimiter_means_newline_and_max_line_is_at_least_one() {
        let mut f = LineFramer::new(b"", 0);
        assert_eq!(
            frames(&mut f, &[b"a\nbb\n"]),
            [line("a"), Frame::TooLong(2)]
        );
    }
}
