//! XEP-0323 readouts as a test user runs them: send the request, collect every `fields` message
//! of that sequence number until `done`, and flatten the fields.

use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::{TestClient, TIMEOUT};

pub const NS_SD: &str = "urn:xmpp:iot:sensordata";

/// One field of a readout.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadoutField {
    pub name: String,
    /// The element name: `numeric`, `boolean`, `int`, `string`…
    pub kind: String,
    pub value: String,
    /// Empty when the field has none.
    pub unit: String,
    /// The `timestamp` element's `value`.
    pub timestamp: String,
}

/// A momentary readout of `device` with sequence number `seqnr` (unique per client).
pub async fn momentary(client: &mut TestClient, device: &Jid, seqnr: u32) -> Vec<ReadoutField> {
    readout(client, device, seqnr, "momentary='true'").await
}

/// A readout of `device` with sequence number `seqnr` and the request attributes `req_attrs`
/// (`momentary='true'`, `historical='true'`…).
pub async fn readout(
    client: &mut TestClient,
    device: &Jid,
    seqnr: u32,
    req_attrs: &str,
) -> Vec<ReadoutField> {
    let req: Element = format!("<req xmlns='{NS_SD}' seqnr='{seqnr}' {req_attrs}/>")
        .parse()
        .expect("request XML");
    client.iq_get(device, req).await.expect("readout accepted");
    let seq = seqnr.to_string();
    let mut out = Vec::new();
    loop {
        let m = client
            .recv_message(TIMEOUT, |m| {
                m.payloads
                    .iter()
                    .any(|p| p.is("fields", NS_SD) && p.attr("seqnr") == Some(seq.as_str()))
            })
            .await
            .unwrap_or_else(|| panic!("fields of readout {seqnr} from {device}"));
        let fields = m
            .payloads
            .into_iter()
            .find(|p| p.is("fields", NS_SD))
            .expect("fields");
        for node in fields.children() {
            for ts in node.children() {
                for f in ts.children() {
                    let attr = |a| f.attr(a).unwrap_or("").to_owned();
                    out.push(ReadoutField {
                        name: attr("name"),
                        kind: f.name().to_owned(),
                        value: attr("value"),
                        unit: attr("unit"),
                        timestamp: ts.attr("value").unwrap_or("").to_owned(),
                    });
                }
            }
        }
        if fields.attr("done") == Some("true") {
            return out;
        }
    }
}

/// The field called `name`.
pub fn field<'a>(fields: &'a [ReadoutField], name: &str) -> &'a ReadoutField {
    fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no field {name} in {fields:#?}"))
}
