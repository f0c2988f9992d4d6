//! Small builders for the stanzas the gateway answers with. Everything returns a
//! `jabber:client` element ready for the outgoing queue.

use minidom::Element;
use rxml::xml_ncname;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Id as MessageId, Lang, Message, MessageType};
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::translator::xml_text::clean;

/// An RFC 6120 stanza error with an English text (omitted when empty).
pub fn error(type_: ErrorType, condition: DefinedCondition, text: &str) -> StanzaError {
    // Texts can carry device words (an adapter's error); minidom must never see a forbidden char.
    let mut e = StanzaError::new(type_, condition, "en", clean(text).into_owned());
    if text.is_empty() {
        e.texts.clear();
    }
    e
}

pub fn iq_result(id: &str, from: &Jid, to: &Jid, payload: Option<Element>) -> Element {
    Iq::Result {
        from: Some(from.clone()),
        to: Some(to.clone()),
        id: id.to_owned(),
        payload,
    }
    .into()
}

pub fn iq_error(id: &str, from: &Jid, to: &Jid, error: StanzaError) -> Element {
    Iq::Error {
        from: Some(from.clone()),
        to: Some(to.clone()),
        id: id.to_owned(),
        error,
        payload: None,
    }
    .into()
}

/// Bounces a message with an error, echoing its id.
pub fn message_error(id: Option<&str>, from: &Jid, to: &Jid, error: StanzaError) -> Element {
    let mut m = Message::new_with_type(MessageType::Error, Some(to.clone()));
    m.from = Some(from.clone());
    m.id = id.map(|i| MessageId(i.to_owned()));
    m.payloads.push(error.into());
    m.into()
}

/// A presence from a device, to one contact or (`to: None`, client mode) to everyone the server
/// knows is subscribed. `status` is left out when empty.
pub fn presence(from: &Jid, to: Option<&Jid>, type_: PresenceType, status: &str) -> Element {
    let mut p = Presence::new(type_).with_from(from.clone());
    p.to = to.cloned();
    if !status.is_empty() {
        p.set_status("", clean(status).into_owned());
    }
    p.into()
}

/// A text message (chat answer, headline) with an optional thread.
pub fn text_message(
    type_: MessageType,
    from: &Jid,
    to: &Jid,
    body: &str,
    thread: Option<xmpp_parsers::message::Thread>,
) -> Element {
    let mut m = Message::new_with_type(type_, Some(to.clone()));
    m.from = Some(from.clone());
    m.bodies.insert(Lang::default(), clean(body).into_owned());
    m.thread = thread;
    m.into()
}

/// A push headline: `body`, and `payload` (XEP-0323 `<fields>`) after it when given.
///
/// Built as an element straight away rather than through `Message`: it goes out for every
/// change of every device, and the typed detour costs a conversion per stanza. `from` and `to`
/// are addresses the configuration has validated.
pub fn headline(from: &str, to: &str, body: &str, payload: Option<Element>) -> Element {
    let body = Element::builder("body", crate::xmlns::CLIENT)
        .append(clean(body).into_owned())
        .build();
    let mut el = Element::builder("message", crate::xmlns::CLIENT)
        .attr(xml_ncname!("from").to_owned(), from)
        .attr(xml_ncname!("to").to_owned(), to)
        .attr(xml_ncname!("type").to_owned(), "headline")
        .append(body)
        .build();
    if let Some(payload) = payload {
        el.append_child(payload);
    }
    el
}

/// Folds push headline `next` (of the same device to the same recipient, built by [`headline`])
/// into `into`, which is still waiting to be sent: its body becomes a further line of the body,
/// and its XEP-0323 `<timestamp>` groups join those of `into`'s `<node>` (a group that is
/// already there, e.g. an unchanged field's value with its old time, is not repeated). One
/// stanza then carries several readings in the order they were taken.
pub fn extend_headline(into: &mut Element, mut next: Element) {
    let body_ns = crate::xmlns::CLIENT;
    let sensor_ns = crate::xmlns::SENSOR_DATA;
    if let Some(text) = next.get_child("body", body_ns).map(Element::text) {
        if let Some(body) = into.get_child_mut("body", body_ns) {
            body.append_text("\n");
            body.append_text(text);
        }
    }
    let Some(mut fields) = next.remove_child("fields", sensor_ns) else {
        return;
    };
    let Some(node) = fields.get_child_mut("node", sensor_ns) else {
        return;
    };
    let groups: Vec<Element> = node.take_contents_as_children().collect();
    let Some(target) = into
        .get_child_mut("fields", sensor_ns)
        .and_then(|f| f.get_child_mut("node", sensor_ns))
    else {
        return;
    };
    for group in groups {
        if !target.children().any(|g| *g == group) {
            target.append_child(group);
        }
    }
}

/// About how many bytes `el` takes written out (names, attributes and text; escaping aside),
/// without writing it.
pub fn approx_len(el: &Element) -> usize {
    let name = el.name().len();
    let attrs: usize = el
        .attrs()
        .iter()
        .map(|((_, k), v)| k.len() + v.len() + 4)
        .sum();
    let inner: usize = el
        .nodes()
        .map(|n| match n {
            minidom::Node::Element(e) => approx_len(e),
            minidom::Node::Text(t) => t.len(),
        })
        .sum();
    // `<name …>` and `</name>`.
    2 * name + 5 + attrs + inner
}

/// A data message (`type='normal'`, no body) carrying one payload, e.g. XEP-0323 `<fields/>`.
pub fn data_message(from: &Jid, to: &Jid, payload: Element) -> Element {
    let mut m = Message::new_with_type(MessageType::Normal, Some(to.clone()));
    m.from = Some(from.clone());
    m.payloads.push(payload);
    m.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::new(s).expect("test jid")
    }

    #[test]
    fn iq_error_keeps_id_and_swaps_addresses() {
        let el = iq_error(
            "q1",
            &jid("boiler@gw.example.org"),
            &jid("alice@example.org/phone"),
            error(ErrorType::Cancel, DefinedCondition::ServiceUnavailable, ""),
        );
        let xml = String::from(&el);
        assert_eq!(
            xml,
            "<iq xmlns='jabber:client' from='boiler@gw.example.org' id='q1' to='alice@example.org/phone' type='error'>\
             <error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        );
    }

    #[test]
    fn presence_status_is_escaped_and_cleaned() {
        let el = presence(
            &jid("d@gw.example.org"),
            Some(&jid("u@example.org")),
            PresenceType::None,
            "",
        );
        assert!(el.get_child("status", crate::xmlns::CLIENT).is_none());
        let el = presence(
            &jid("d@gw.example.org"),
            None,
            PresenceType::Unavailable,
            "port\u{0}gone",
        );
        assert_eq!(
            el.get_child("status", crate::xmlns::CLIENT)
                .map(|s| s.text()),
            Some("portgone".into())
        );
        let _ = String::from(&el);
        let el = text_message(
            MessageType::Chat,
            &jid("d@gw.example.org"),
            &jid("u@example.org"),
            "a<b & \u{1}c",
            None,
        );
        let xml = String::from(&el);
        assert!(xml.contains("<body>a&lt;b &amp; c</body>"), "{xml}");
        let back: Element = xml.parse().expect("well-formed");
        assert_eq!(
            back.get_child("body", crate::xmlns::CLIENT)
                .map(|b| b.text()),
            Some("a<b & c".into())
        );
    }

    fn push(body: &str, groups: &str) -> Element {
        let fields: Element = format!(
            "<fields xmlns='urn:xmpp:iot:sensordata' seqnr='0' done='true'><node nodeId='d'>{groups}</node></fields>"
        )
        .parse()
        .expect("fields");
        headline("d@gw.example.org", "u@example.org", body, Some(fields))
    }

    #[test]
    fn extended_headline_carries_every_reading_once_in_order() {
        let old = "<timestamp value='2026-01-01T00:00:00.000Z'><numeric name='rh' value='40'/></timestamp>";
        let mut first = push(
            "t 1, rh 40",
            &format!("<timestamp value='2026-01-01T00:00:01.000Z'><numeric name='t' value='1'/></timestamp>{old}"),
        );
        extend_headline(
            &mut first,
            push(
                "t 2, rh 40",
                &format!("<timestamp value='2026-01-01T00:00:02.000Z'><numeric name='t' value='2'/></timestamp>{old}"),
            ),
        );
        assert_eq!(
            first
                .get_child("body", crate::xmlns::CLIENT)
                .map(Element::text),
            Some("t 1, rh 40\nt 2, rh 40".into())
        );
        let node = first
            .get_child("fields", crate::xmlns::SENSOR_DATA)
            .and_then(|f| f.get_child("node", crate::xmlns::SENSOR_DATA))
            .expect("node");
        let times: Vec<&str> = node.children().filter_map(|t| t.attr("value")).collect();
        assert_eq!(
            times,
            [
                "2026-01-01T00:00:01.000Z",
                "2026-01-01T00:00:00.000Z",
                "2026-01-01T00:00:02.000Z"
            ]
        );
        // Still one well-formed stanza with one body.
        let back: Element = String::from(&first).parse().expect("well-formed");
        assert_eq!(back.children().filter(|c| c.name() == "body").count(), 1);
    }

    #[test]
    fn text_pushes_extend_their_body_only() {
        let mut first = headline("d@gw.example.org", "u@example.org", "t 1", None);
        extend_headline(
            &mut first,
            headline("d@gw.example.org", "u@example.org", "t 2", None),
        );
        assert_eq!(
            first
                .get_child("body", crate::xmlns::CLIENT)
                .map(Element::text),
            Some("t 1\nt 2".into())
        );
        assert!(first
            .get_child("fields", crate::xmlns::SENSOR_DATA)
            .is_none());
    }

    #[test]
    fn approx_len_is_close_to_the_written_length() {
        let el = push(
            "t 1, rh 40",
            "<timestamp value='2026-01-01T00:00:01.000Z'><numeric name='t' value='1' momentary='true'/></timestamp>",
        );
        let written = String::from(&el).len();
        let guess = approx_len(&el);
        // Namespace declarations are left out of the guess.
        assert!(
            guess <= written && guess * 10 >= written * 8,
            "{guess} against {written}"
        );
    }
}
