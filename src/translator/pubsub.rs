//! The PubSub (XEP-0060) requests the gateway sends: creating a device's node with its
//! configuration, and publishing the device's latest values as the node's one item. Built from
//! xmpp-parsers' typed PubSub and data-form structs.

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field};
use xmpp_parsers::pubsub::pubsub::{Configure, Create, Item, PubSub, Publish};
use xmpp_parsers::pubsub::{ItemId, NodeName};

use crate::xmlns;

/// The node a device publishes to.
pub fn node_name(device_id: &str) -> String {
    format!("iot/{device_id}/sensordata")
}

/// The id of the one item a node keeps: each publication replaces it.
pub const ITEM_ID: &str = "current";

/// `<pubsub><create node/><configure>form</configure></pubsub>`: creates `node` with the
/// configuration of `node_config`.
pub fn create_node(node: &str) -> Element {
    PubSub::Create {
        create: Create {
            node: Some(NodeName(node.to_owned())),
        },
        configure: Some(Configure {
            form: Some(node_config()),
        }),
    }
    .into()
}

/// `<pubsub><publish node><item id='current'>payload</item></publish></pubsub>`.
pub fn publish(node: &str, payload: Element) -> Element {
    PubSub::Publish {
        publish: Publish {
            node: NodeName(node.to_owned()),
            items: vec![Item {
                id: Some(ItemId(ITEM_ID.to_owned())),
                publisher: None,
                payload: Some(payload),
            }],
        },
        publish_options: None,
    }
    .into()
}

/// Node configuration: the last value only, kept across restarts of the service, readable by
/// anyone who may subscribe on the service.
fn node_config() -> DataForm {
    DataForm::new(
        DataFormType::Submit,
        xmlns::PUBSUB_CONFIGURE,
        vec![
            Field::text_single("pubsub#max_items", "1"),
            Field::text_single("pubsub#persist_items", "true"),
            Field::text_single("pubsub#access_model", "open"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_names_the_node_and_configures_it() {
        let el = create_node("iot/thermo/sensordata");
        assert!(el.is("pubsub", xmlns::PUBSUB));
        let create = el.get_child("create", xmlns::PUBSUB).expect("create");
        assert_eq!(create.attr("node"), Some("iot/thermo/sensordata"));
        let form = el
            .get_child("configure", xmlns::PUBSUB)
            .and_then(|c| c.get_child("x", xmlns::DATA_FORMS))
            .expect("form");
        assert_eq!(form.attr("type"), Some("submit"));
        let fields: Vec<(Option<&str>, String)> = form
            .children()
            .filter(|f| f.is("field", xmlns::DATA_FORMS))
            .map(|f| {
                let value = f.get_child("value", xmlns::DATA_FORMS).expect("value");
                (f.attr("var"), value.text())
            })
            .collect();
        assert_eq!(
            fields,
            [
                (Some("FORM_TYPE"), xmlns::PUBSUB_CONFIGURE.to_owned()),
                (Some("pubsub#max_items"), "1".to_owned()),
                (Some("pubsub#persist_items"), "true".to_owned()),
                (Some("pubsub#access_model"), "open".to_owned()),
            ]
        );
    }

    #[test]
    fn publish_carries_the_payload_as_item_current() {
        let payload = Element::builder("fields", xmlns::SENSOR_DATA).build();
        let el = publish(&node_name("thermo"), payload.clone());
        let publish = el.get_child("publish", xmlns::PUBSUB).expect("publish");
        assert_eq!(publish.attr("node"), Some("iot/thermo/sensordata"));
        let items: Vec<&Element> = publish.children().collect();
        assert_eq!(items.len(), 1);
        assert!(items[0].is("item", xmlns::PUBSUB));
        assert_eq!(items[0].attr("id"), Some(ITEM_ID));
        assert_eq!(items[0].children().collect::<Vec<_>>(), [&payload]);
    }
}
