//! The Multi-User Chat (XEP-0045) payloads a device sends to the room: the join request and the
//! instant-room configuration that unlocks a room it created. Built from xmpp-parsers' typed
//! MUC and data-form structs where it has them (it has none for the owner's `<query/>`).

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType};
use xmpp_parsers::muc::muc::{History, Muc};

use crate::xmlns;

/// The `<x/>` of a join presence: no history, since old room messages are not commands.
pub fn join() -> Element {
    Muc::new()
        .with_history(History::new().with_maxstanzas(0))
        .into()
}

/// `<query xmlns='…muc#owner'><x xmlns='jabber:x:data' type='submit'/></query>`: the owner
/// accepts the default configuration ("instant room"), which unlocks a room it created.
pub fn instant_room_config() -> Element {
    let form = DataForm {
        type_: DataFormType::Submit,
        title: None,
        instructions: None,
        fields: Vec::new(),
    };
    Element::builder("query", xmlns::MUC_OWNER)
        .append(Element::from(form))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_asks_for_no_history() {
        let x = join();
        assert!(x.is("x", xmlns::MUC));
        let history = x.get_child("history", xmlns::MUC).expect("history");
        assert_eq!(history.attr("maxstanzas"), Some("0"));
        assert_eq!(x.children().count(), 1);
    }

    #[test]
    fn instant_room_submits_an_empty_form() {
        let q = instant_room_config();
        assert!(q.is("query", xmlns::MUC_OWNER));
        let form = q.get_child("x", xmlns::DATA_FORMS).expect("form");
        assert_eq!(form.attr("type"), Some("submit"));
        assert_eq!(form.children().count(), 0);
    }
}
