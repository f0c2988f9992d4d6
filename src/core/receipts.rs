//! XEP-0184 message delivery receipts: a chat that asks for one gets `<received/>` back.
//!
//! Phone clients (Conversations, Monal, Siri-style assistants built on them) mark a message as
//! delivered only when the receipt comes; without it the user sees a message stuck "sending"
//! even though the device answered. The receipt is sent just before the answer, from the JID
//! the message was addressed to, and only for messages the gateway accepted (a bounced message
//! gets its error instead).

use crate::xmlns;
use minidom::Element;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::receipts::Received;

/// The `<received/>` answer to `m` if it asks for a receipt and has an id to acknowledge.
/// `from` is the address `m` was sent to, `to` its sender.
pub(super) fn receipt_for(m: &Message, from: &Jid, to: &Jid) -> Option<Element> {
    let id = m.id.as_ref()?;
    if !m.payloads.iter().any(|p| p.is("request", xmlns::RECEIPTS)) {
        return None;
    }
    // Mirror the request's type: clients file a `chat` receipt in the conversation it belongs to.
    let type_ = match m.type_ {
        MessageType::Chat => MessageType::Chat,
        _ => MessageType::Normal,
    };
    let mut r = Message::new_with_type(type_, Some(to.clone()));
    r.from = Some(from.clone());
    r.payloads.push(Received { id: id.0.clone() }.into());
    Some(r.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Message {
        let el: Element = xml.parse().expect("xml");
        Message::try_from(el).expect("message")
    }

    fn jid(s: &str) -> Jid {
        Jid::new(s).expect("jid")
    }

    #[test]
    fn answers_a_request_with_the_message_id() {
        let m = parse(
            "<message xmlns='jabber:client' type='chat' id='m-1' from='u@example.org/phone' to='d@gw.example.org'>\
             <body>get</body><request xmlns='urn:xmpp:receipts'/></message>",
        );
        let el = receipt_for(&m, &jid("d@gw.example.org"), &jid("u@example.org/phone"))
            .expect("a receipt");
        assert_eq!(
            String::from(&el),
            "<message xmlns='jabber:client' from='d@gw.example.org' to='u@example.org/phone' type='chat'>\
             <received xmlns='urn:xmpp:receipts' id='m-1'/></message>"
        );
    }

    #[test]
    fn nothing_without_a_request_or_an_id() {
        let (from, to) = (jid("d@gw.example.org"), jid("u@example.org/phone"));
        let plain =
            parse("<message xmlns='jabber:client' type='chat' id='m-2'><body>get</body></message>");
        assert!(receipt_for(&plain, &from, &to).is_none());
        // XEP-0184 §5.1: a request without an id cannot be acknowledged.
        let no_id = parse(
            "<message xmlns='jabber:client' type='chat'><body>get</body><request xmlns='urn:xmpp:receipts'/></message>",
        );
        assert!(receipt_for(&no_id, &from, &to).is_none());
        let normal = parse(
            "<message xmlns='jabber:client' id='n'><body>get</body><request xmlns='urn:xmpp:receipts'/></message>",
        );
        let el = receipt_for(&normal, &from, &to).expect("a receipt");
        assert_eq!(el.attr("type"), None, "normal is the default type");
    }
}
