//! Where `gateway.toml` can be cut so that each `[[device]]` is parsed on its own.
//!
//! `toml_edit` keeps every key's and value's text, decoration and span: its tree of a file
//! takes about 30 bytes of memory per byte of TOML, 0.3 GB for 10,000 devices. The loader
//! does not need the tree of the whole file at once: it parses the file without its devices
//! (their text blanked out, so that every position stays where it is), then each `[[device]]`
//! with its `[[device.field]]`s alone, validates it and drops its tree before the next.
//!
//! [`device_pieces`] finds the pieces with a light scan of the text that knows just enough
//! TOML to tell a table header from a line inside a multi-line string or array: strings of the
//! four kinds, comments, and brackets in values. It answers `None` for a file it cannot cut
//! safely (a table of `device` that is not under a `[[device]]` piece, a header naming
//! `device` with escapes); the loader then parses the file whole, as it does when a piece does
//! not parse (a syntax error is reported from the whole file, so its message and position do
//! not depend on the cut).

use std::ops::Range;

/// What a top-level table header opens, as far as cutting is concerned.
#[derive(Debug, PartialEq, Eq)]
enum Header {
    /// `[[device]]`: a new device piece.
    Device,
    /// `[device.field]`, `[[device.field]]`...: a table inside the last `[[device]]`.
    InDevice,
    /// Any other table.
    Other,
}

/// The byte ranges of the `[[device]]` tables of `source`, each with the tables under it, in
/// file order; every range starts at the beginning of a line and ends at the beginning of a
/// line (or at the end). `None` when the file cannot be cut safely.
pub(crate) fn device_pieces(source: &str) -> Option<Vec<Range<usize>>> {
    let b = source.as_bytes();
    let mut pieces: Vec<Range<usize>> = Vec::new();
    // The piece being read: where it started.
    let mut open: Option<usize> = None;
    // Brackets and braces open in a value (a multi-line array).
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        let line_start = i;
        if depth == 0 {
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            if i < b.len() && b[i] == b'[' {
                match header(&b[i..])? {
                    Header::Device => {
                        if let Some(start) = open.take() {
                            pieces.push(start..line_start);
                        }
                        open = Some(line_start);
                    }
                    Header::InDevice => {
                        // Outside a `[[device]]` piece, it would land in the rest of the file.
                        open?;
                    }
                    Header::Other => {
                        if let Some(start) = open.take() {
                            pieces.push(start..line_start);
                        }
                    }
                }
                // A header's quoted keys cannot span lines: what follows it on its line is a
                // comment (or an error that parsing will report).
                i = next_line(b, i);
                continue;
            }
        }
        i = value_line(b, i, &mut depth);
    }
    if let Some(start) = open {
        pieces.push(start..b.len());
    }
    Some(pieces)
}

/// `source` with the bytes of `pieces` made spaces (newlines kept), so that it parses as the
/// file without them and every position in it is the same as in the file.
pub(crate) fn blank_out(source: &str, pieces: &[Range<usize>]) -> String {
    let mut bytes = source.as_bytes().to_vec();
    for piece in pieces {
        for byte in &mut bytes[piece.clone()] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
    }
    // Pieces start and end at line starts, so no character is cut in two: still UTF-8.
    String::from_utf8(bytes).unwrap_or_default()
}

/// The start of the line after the one `i` is in.
fn next_line(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |n| i + n + 1)
}

/// What the header at the start of `b` (which starts with `[`) opens; `None` when its first
/// key is `device` written with escapes (or could be).
fn header(b: &[u8]) -> Option<Header> {
    let array = b.get(1) == Some(&b'[');
    let mut i = if array { 2 } else { 1 };
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    let key: &[u8] = match b.get(i) {
        Some(&q @ (b'"' | b'\'')) => {
            let end = i + 1 + b[i + 1..].iter().position(|&c| c == q || c == b'\n')?;
            let key = &b[i + 1..end];
            if q == b'"' && key.contains(&b'\\') {
                return None;
            }
            i = end + 1;
            key
        }
        _ => {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'-') {
                i += 1;
            }
            &b[start..i]
        }
    };
    if key != b"device" {
        return Some(Header::Other);
    }
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    let dotted = b.get(i) == Some(&b'.');
    Some(if array && !dotted {
        Header::Device
    } else {
        Header::InDevice
    })
}

/// Scans a line that is not a header from `i`, keeping `depth` (brackets open in values);
/// returns where the next line starts, past any multi-line string that starts on this one.
fn value_line(b: &[u8], mut i: usize, depth: &mut usize) -> usize {
    while i < b.len() {
        match b[i] {
            b'\n' => return i + 1,
            b'#' => return next_line(b, i),
            q @ (b'"' | b'\'') => {
                let escapes = q == b'"';
                i = if b[i..].starts_with(&[q, q, q]) {
                    multi_line_string_end(b, i + 3, q, escapes)
                } else {
                    string_end(b, i + 1, q, escapes)
                };
                continue;
            }
            b'[' | b'{' => *depth += 1,
            b']' | b'}' => *depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// Where a one-line string whose text starts at `i` ends: after its closing quote, or at the
/// end of the line (an unterminated string, which parsing reports).
fn string_end(b: &[u8], mut i: usize, quote: u8, escapes: bool) -> usize {
    while i < b.len() {
        match b[i] {
            b'\n' => return i,
            b'\\' if escapes => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// Where a multi-line string whose text starts at `i` ends: after its closing run of quotes
/// (up to two quotes just inside the delimiter belong to the text), or at the end of the file.
fn multi_line_string_end(b: &[u8], mut i: usize, quote: u8, escapes: bool) -> usize {
    while i < b.len() {
        if escapes && b[i] == b'\\' {
            i += 2;
        } else if b[i..].starts_with(&[quote, quote, quote]) {
            while i < b.len() && b[i] == quote {
                i += 1;
            }
            return i;
        } else {
            i += 1;
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(source: &str) -> Option<Vec<&str>> {
        Some(
            device_pieces(source)?
                .into_iter()
                .map(|r| &source[r])
                .collect(),
        )
    }

    #[test]
    fn each_device_with_its_tables() {
        let src =
            "[xmpp]\ndomain = \"x\"\n[[device]]\nid = \"a\"\n  [[device.field]]\n  name = \"t\"\n\
                   [device.access]\nread = []\n[[device]]\nid = \"b\"\n[[alert]]\nid = \"c\"\n\
                   [[device]]\nid = \"d\"";
        assert_eq!(
            texts(src).unwrap(),
            [
                "[[device]]\nid = \"a\"\n  [[device.field]]\n  name = \"t\"\n[device.access]\nread = []\n",
                "[[device]]\nid = \"b\"\n",
                "[[device]]\nid = \"d\"",
            ]
        );
        // Spaces and quotes in headers are TOML too.
        let src = "[[ device ]]\nid = 1\n[ \"device\" . field ]\n['device']\n";
        assert_eq!(
            texts(src).unwrap(),
            ["[[ device ]]\nid = 1\n[ \"device\" . field ]\n['device']\n"]
        );
        assert_eq!(texts("[gateway]\n").unwrap(), Vec::<&str>::new());
    }

    #[test]
    fn headers_inside_strings_and_arrays_are_not_headers() {
        let src = "[gateway]\nname = \"\"\"\n[[device]]\n\\\"\"\"\n[[device]]\"\"\"\"\n\
                   note = '''\n[[device]]\n'''\nlist = [\n  [1, 2],\n  \"]\", # ]\n]\n\
                   s = \"[[device]] # \\\" [\" # [\n[[device]]\nid = 'x'\n";
        assert_eq!(texts(src).unwrap(), ["[[device]]\nid = 'x'\n"]);
    }

    #[test]
    fn files_it_cannot_cut_are_left_whole() {
        // A device table with no `[[device]]` piece open: it belongs to an earlier one.
        assert_eq!(texts("[[device]]\n[gateway]\n[device.access]\n"), None);
        assert_eq!(texts("[device]\nid = 1\n"), None);
        // Escapes could spell `device`.
        assert_eq!(texts("[\"dev\\u0069ce\"]\n"), None);
    }

    #[test]
    fn blanking_out_keeps_every_position() {
        let src = "[xmpp]\n[[device]]\nname = \"°C\"\n[log]\n";
        let pieces = device_pieces(src).unwrap();
        let rest = blank_out(src, &pieces);
        assert_eq!(rest.len(), src.len());
        assert_eq!(rest, "[xmpp]\n          \n            \n[log]\n");
    }
}
