//! Every XML namespace the gateway reads or writes, named once.
//!
//! Standard XMPP namespaces come from xmpp-parsers (`xmpp_parsers::ns`), renamed here where the
//! gateway's name says more; the rest are defined below. Code elsewhere refers to
//! `xmlns::SENSOR_DATA` and never spells a namespace out.

pub use xmpp_parsers::ns::{
    COMPONENT_ACCEPT as COMPONENT, DATA_FORMS, DELAY, DISCO_INFO, DISCO_ITEMS, HTTP_UPLOAD,
    JABBER_CLIENT as CLIENT, MUC, MUC_USER, OOB, PING, PUBSUB, PUBSUB_CONFIGURE, RECEIPTS,
    STREAM as STREAMS, TIME, VERSION, XMPP_STREAMS as STREAM_ERRORS,
};

/// XEP-0323 (Internet of Things - Sensor Data): readout requests and the fields they return;
/// also the disco feature.
pub const SENSOR_DATA: &str = "urn:xmpp:iot:sensordata";

/// XEP-0325 (Internet of Things - Control): writes to a device's fields.
pub const CONTROL: &str = "urn:xmpp:iot:control";

/// XEP-0045 (Multi-User Chat), owner use cases: the room configuration form.
pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";

/// The gateway's own: the marker child of a stanza's envelope when the stanza was skipped for
/// being too big or too deep (`xmpp::rejected`); it never leaves the process. Also spelled out
/// in vendor/tokio-xmpp (src/xmlstream/limits.rs), whose reader builds the same envelope.
pub const REJECTED: &str = "urn:xmpp-iot-gateway:rejected";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_namespaces_are_the_ones_on_the_wire() {
        assert_eq!(CLIENT, "jabber:client");
        assert_eq!(COMPONENT, "jabber:component:accept");
        assert_eq!(STREAMS, "http://etherx.jabber.org/streams");
        assert_eq!(STREAM_ERRORS, "urn:ietf:params:xml:ns:xmpp-streams");
        assert_eq!(DATA_FORMS, "jabber:x:data");
        assert_eq!(
            PUBSUB_CONFIGURE,
            "http://jabber.org/protocol/pubsub#node_config"
        );
        assert_eq!(HTTP_UPLOAD, "urn:xmpp:http:upload:0");
    }
}
