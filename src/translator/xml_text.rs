//! Making arbitrary text safe to put into XML.
//!
//! Device values, field names and units come from buses and config files and may hold characters
//! XML 1.0 cannot carry at all (NUL, most C0 controls, U+FFFE/U+FFFF). minidom escapes `<`, `&`,
//! quotes and friends when it serialises, but a forbidden character makes its encoder panic
//! (minidom 0.19: "encoder driven incorrectly"), which under `panic = "abort"` ends the whole
//! gateway. Every string the translator puts into a stanza goes through [`clean`] first.

use std::borrow::Cow;

/// Whether XML 1.0 allows `c` anywhere in character data or attribute values (the `Char`
/// production: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]).
pub fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\u{9}' | '\u{A}' | '\u{D}'
        | '\u{20}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

/// `s` without the characters XML 1.0 forbids; borrowed when there were none.
pub fn clean(s: &str) -> Cow<'_, str> {
    if s.chars().all(is_xml_char) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.chars().filter(|&c| is_xml_char(c)).collect())
    }
}

/// [`clean`], and tabs and line breaks turned into spaces: for text shown on one line (presence
/// status, one chat line per field).
pub fn one_line(s: &str) -> Cow<'_, str> {
    if s.chars().all(|c| is_xml_char(c) && !c.is_control()) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(
            s.chars()
                .filter(|&c| is_xml_char(c))
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;

    const HOSTILE: &str = "a<b>&c'd\"e\u{0}f\u{1}g\u{8}h\u{B}i\u{C}j\u{1F}k\u{FFFE}l\u{FFFF}m\u{7F}n\t\u{D7FF}\u{E000}\u{FFFD}\u{10FFFF}]]>";
    const CLEANED: &str = "a<b>&c'd\"efghijklm\u{7F}n\t\u{D7FF}\u{E000}\u{FFFD}\u{10FFFF}]]>";

    fn serialise(el: &Element) -> Result<String, minidom::Error> {
        let mut out = Vec::new();
        el.write_to(&mut out)?;
        Ok(String::from_utf8(out).expect("minidom writes UTF-8"))
    }

    #[test]
    fn removes_exactly_what_xml_forbids() {
        // U+007F (DEL) is allowed by XML 1.0, only discouraged.
        assert_eq!(clean(HOSTILE), CLEANED);
        assert!(matches!(
            clean("21.5 °C, ok\ttab\nnew\rline"),
            Cow::Borrowed(_)
        ));
        assert_eq!(clean("\u{0}\u{FFFE}"), "");
        assert_eq!(clean(""), "");
        for c in [
            '\u{9}',
            '\u{A}',
            '\u{D}',
            ' ',
            '\u{D7FF}',
            '\u{E000}',
            '\u{FFFD}',
            '\u{10000}',
        ] {
            assert!(is_xml_char(c), "{c:?}");
        }
        for c in ['\u{0}', '\u{8}', '\u{B}', '\u{1F}', '\u{FFFE}', '\u{FFFF}'] {
            assert!(!is_xml_char(c), "{c:?}");
        }
    }

    #[test]
    fn one_line_also_flattens_line_breaks() {
        assert_eq!(one_line("a\nb\r\nc\td\u{0}e"), "a b  c de");
        assert!(matches!(one_line("21.5 °C"), Cow::Borrowed(_)));
    }

    #[test]
    fn hostile_text_round_trips_through_minidom_once_cleaned() {
        let build = |s: &str| {
            Element::builder("string", crate::xmlns::SENSOR_DATA)
                .attr(rxml::xml_ncname!("value").to_owned(), s)
                .append(s)
                .build()
        };
        // Uncleaned, minidom 0.19 panics in its encoder ("encoder driven incorrectly"); with
        // `panic = "abort"` that would end the gateway. Accept an error too, should it learn to.
        let raw = build(HOSTILE);
        let outcome = std::panic::catch_unwind(|| serialise(&raw));
        assert!(!matches!(outcome, Ok(Ok(_))), "{outcome:?}");

        let xml = serialise(&build(&clean(HOSTILE))).unwrap();
        assert!(!xml.contains("<b>") && !xml.contains("]]>"), "{xml}");
        let back: Element = xml.parse().expect("well-formed XML");
        assert_eq!(back.attr("value"), Some(CLEANED));
        // Character data keeps the tab (and would keep a \r: minidom writes it as &#xd;).
        assert_eq!(back.text(), CLEANED);
        assert_eq!(back, build(CLEANED));
    }

    #[test]
    fn attribute_whitespace_survives_the_round_trip() {
        let s = "line1\r\nline2\tend";
        let el = Element::builder("x", "urn:test")
            .attr(rxml::xml_ncname!("v").to_owned(), s)
            .append(s)
            .build();
        let back: Element = serialise(&el).unwrap().parse().unwrap();
        assert_eq!(back.attr("v"), Some(s));
        assert_eq!(back.text(), s);
    }
}
