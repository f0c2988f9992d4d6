//! Format `xml`: one element per line, such as
//! `<SensorTemp ID='250715' TimeDate='19:28:33 Jul 17 2015'> 22 </SensorTemp>`.
//!
//! The record's pairs are, in this order: the root element's name with its text (trimmed; here
//! `SensorTemp` = `22`), each attribute of the root (`ID`, `TimeDate`), then each child element's
//! name with its text, for records like `<r id='1'><t>21.5</t><h>40</h></r>`. Entities
//! (`&lt;`, `&amp;`, `&#233;`...) are resolved, CDATA sections are text, comments and an XML
//! declaration are skipped. Not a record: a line that is not one well-formed element (unclosed,
//! mismatched end tag, two roots, text outside the element, an unknown entity, a duplicate
//! attribute).

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::ParseError;

fn err(e: impl std::fmt::Display) -> ParseError {
    ParseError::Xml(e.to_string())
}

/// An element being read.
struct Open {
    name: String,
    text: String,
    has_children: bool,
}

/// Parses one line holding one XML element.
pub fn parse(line: &str) -> Result<Vec<(String, String)>, ParseError> {
    let mut reader = Reader::from_str(line);
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut done = false;
    loop {
        let event = reader.read_event().map_err(err)?;
        let (start, empty) = match &event {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            if done {
                return Err(err("more than one element on the line"));
            }
            let name = element_name(e);
            if let Some(parent) = stack.last_mut() {
                parent.has_children = true;
            } else {
                // The root: its own pair first (the text is filled in at its end), then its
                // attributes.
                pairs.push((name.clone(), String::new()));
                for attr in e.attributes() {
                    let attr = attr.map_err(err)?;
                    let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
                    let value = attr.unescape_value().map_err(err)?;
                    pairs.push((key, value.into_owned()));
                }
            }
            stack.push(Open {
                name,
                text: String::new(),
                has_children: false,
            });
            if empty {
                done = close(&mut stack, &mut pairs);
            }
            continue;
        }
        match event {
            Event::End(_) => done = close(&mut stack, &mut pairs),
            Event::Text(t) => {
                let text = t.decode().map_err(err)?;
                match stack.last_mut() {
                    Some(open) => open.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(err("text outside the element")),
                }
            }
            Event::CData(c) => {
                let text = c.decode().map_err(err)?;
                match stack.last_mut() {
                    Some(open) => open.text.push_str(&text),
                    None => return Err(err("CDATA outside the element")),
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(err)? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(err)?;
                        match resolve_predefined_entity(&name) {
                            Some(s) => s.to_owned(),
                            None => return Err(err(format!("unknown entity &{name};"))),
                        }
                    }
                };
                match stack.last_mut() {
                    Some(open) => open.text.push_str(&resolved),
                    None => return Err(err("an entity outside the element")),
                }
            }
            Event::Eof => break,
            // Declaration, comments, processing instructions, a DOCTYPE: not data.
            _ => {}
        }
    }
    if !done || !stack.is_empty() {
        return Err(err("the element is not closed"));
    }
    Ok(pairs)
}

fn element_name(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.name().as_ref()).into_owned()
}

/// Closes the innermost element; returns whether it was the root.
fn close(stack: &mut Vec<Open>, pairs: &mut Vec<(String, String)>) -> bool {
    let Some(open) = stack.pop() else {
        return false;
    };
    let text = open.text.trim().to_owned();
    if stack.is_empty() {
        // `pairs[0]` is the root's own pair, pushed at its start.
        if open.has_children && text.is_empty() {
            pairs.remove(0);
        } else if let Some(first) = pairs.first_mut() {
            first.1 = text;
        }
        true
    } else {
        if !open.has_children || !text.is_empty() {
            pairs.push((open.name, text));
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_sensor_record() {
        assert_eq!(
            parse("<SensorTemp ID='250715' TimeDate='19:28:33 Jul 17 2015'> 22 </SensorTemp>")
                .unwrap(),
            p(&[
                ("SensorTemp", "22"),
                ("ID", "250715"),
                ("TimeDate", "19:28:33 Jul 17 2015")
            ])
        );
    }

    #[test]
    fn variants_of_the_record() {
        // Missing attributes, double quotes, spaces around `=`, whitespace outside.
        assert_eq!(
            parse("  <SensorTemp>22</SensorTemp>\t").unwrap(),
            p(&[("SensorTemp", "22")])
        );
        assert_eq!(
            parse(r#"<SensorTemp  ID = "250715" >-3.5</SensorTemp >"#).unwrap(),
            p(&[("SensorTemp", "-3.5"), ("ID", "250715")])
        );
        // Entities in text and attributes; character references.
        assert_eq!(
            parse(
                "<Note ID='a&amp;b' by=\"&quot;x&quot;\">1 &lt; 2 &amp;&amp; &#233;&#x41;</Note>"
            )
            .unwrap(),
            p(&[("Note", "1 < 2 && éA"), ("ID", "a&b"), ("by", "\"x\"")])
        );
        // Empty element, declaration and comments, CDATA.
        assert_eq!(
            parse("<?xml version='1.0'?><Door ID='3' open='true'/><!-- c -->").unwrap(),
            p(&[("Door", ""), ("ID", "3"), ("open", "true")])
        );
        assert_eq!(
            parse("<Msg><![CDATA[a <b> & c]]></Msg>").unwrap(),
            p(&[("Msg", "a <b> & c")])
        );
    }

    #[test]
    fn child_elements_are_keys_too() {
        assert_eq!(
            parse("<r id='1'><t> 21.5 </t><h>40</h><deep><x>1</x></deep></r>").unwrap(),
            p(&[("id", "1"), ("t", "21.5"), ("h", "40"), ("x", "1")])
        );
        assert_eq!(
            parse("<r>mixed<t>1</t></r>").unwrap(),
            p(&[("r", "mixed"), ("t", "1")])
        );
    }

    #[test]
    fn not_one_well_formed_element() {
        for bad in [
            "<SensorTemp ID='1'>22",
            "<a>1</b>",
            "<a>1</a><b>2</b>",
            "text <a>1</a>",
            "<a>1</a> tail",
            "<a>&nbsp;</a>",
            "<a x='1' x='2'/>",
            "<a x=1/>",
            "<a>&#0;</a>",
            "</a>",
            "<!-- only a comment -->",
            "22",
            "<",
            "<a",
            "&amp;",
        ] {
            assert!(
                matches!(parse(bad), Err(ParseError::Xml(_))),
                "{bad:?} should fail, got {:?}",
                parse(bad)
            );
        }
    }

    #[test]
    fn forbidden_characters_do_not_panic() {
        // XML-forbidden characters in text are passed on; the gateway cleans them before any
        // stanza is built.
        let r = parse("<a>\u{1}x\u{FFFE}</a>").unwrap();
        assert_eq!(r, p(&[("a", "\u{1}x\u{FFFE}")]));
        let _ = parse("<a>&#xFFFFFFFF;</a>");
        let _ = parse("<a b='&#x110000;'/>");
    }
}
