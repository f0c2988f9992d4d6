//! [`Stranger`]: an XMPP user that writes raw XML, for hostile input that a typed client library
//! would refuse to build (long tokens, deep nesting, thousands of attributes), and reads what
//! comes back as elements. Logs in over plaintext c2s (the rig's Prosody allows PLAIN without
//! TLS), binds a resource and keeps every stanza it receives.
//!
//! It reads with the gateway's own stream reader (`xmpp_iot_gateway::xmpp::wire`), which is
//! what the server's answers are: ordinary stanzas far below any limit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use xmpp_iot_gateway::xmlns::CLIENT as NS_CLIENT;
use xmpp_iot_gateway::xmpp::wire::StanzaReader;
use xmpp_parsers::minidom::Element;

use super::TIMEOUT;

/// Anything the server sends the stranger is far below this.
const READ_LIMIT: usize = 4 << 20;

pub struct Stranger {
    /// Full JID the server bound.
    pub jid: String,
    writer: OwnedWriteHalf,
    incoming: mpsc::UnboundedReceiver<Element>,
    /// Received IQ answers by id that no wait has taken yet.
    answers: HashMap<String, Element>,
    /// Everything else received, in order.
    pub other: Vec<Element>,
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn expect<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut StanzaReader<R>,
    name: &str,
) -> Element {
    let el = tokio::time::timeout(TIMEOUT, reader.next())
        .await
        .unwrap_or_else(|_| panic!("no <{name}/> from the server in time"))
        .unwrap_or_else(|e| panic!("stream ended waiting for <{name}/>: {e}"));
    assert_eq!(
        el.name(),
        name,
        "expected <{name}/>, got {}",
        String::from(&el)
    );
    el
}

impl Stranger {
    /// Logs in as `user@domain` with `pass` on `c2s` and binds a random resource.
    pub async fn connect(c2s: SocketAddr, domain: &str, user: &str, pass: &str) -> Stranger {
        let stream = TcpStream::connect(c2s).await.expect("connect to c2s");
        let _ = stream.set_nodelay(true);
        let (read, mut writer) = stream.into_split();
        let mut buf = BufReader::new(read);
        let open = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
        );
        {
            let mut reader = StanzaReader::new(&mut buf, NS_CLIENT, READ_LIMIT);
            writer.write_all(open.as_bytes()).await.expect("write");
            reader.read_header().await.expect("stream header");
            expect(&mut reader, "features").await;
            let auth = base64(format!("\0{user}\0{pass}").as_bytes());
            writer
                .write_all(
                    format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{auth}</auth>")
                        .as_bytes(),
                )
                .await
                .expect("write");
            expect(&mut reader, "success").await;
        }
        let mut reader = StanzaReader::new(buf, NS_CLIENT, READ_LIMIT);
        writer.write_all(open.as_bytes()).await.expect("write");
        reader.read_header().await.expect("stream header");
        expect(&mut reader, "features").await;
        writer
            .write_all(
                b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                  <resource>stranger</resource></bind></iq>",
            )
            .await
            .expect("write");
        let bound = expect(&mut reader, "iq").await;
        let jid = bound
            .get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
            .and_then(|b| b.get_child("jid", "urn:ietf:params:xml:ns:xmpp-bind"))
            .map(|j| j.text())
            .unwrap_or_else(|| panic!("no bound JID in {}", String::from(&bound)));
        let (tx, incoming) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(el) = reader.next().await {
                if tx.send(el).is_err() {
                    break;
                }
            }
        });
        Stranger {
            jid,
            writer,
            incoming,
            answers: HashMap::new(),
            other: Vec::new(),
        }
    }

    /// Writes `xml` as it is.
    pub async fn send_raw(&mut self, xml: &str) {
        tokio::time::timeout(TIMEOUT, self.writer.write_all(xml.as_bytes()))
            .await
            .expect("write in time")
            .expect("write");
    }

    fn take(&mut self, el: Element) {
        match (el.name(), el.attr("type"), el.attr("id")) {
            ("iq", Some("result" | "error"), Some(id)) => {
                let previous = self.answers.insert(id.to_owned(), el.clone());
                assert!(
                    previous.is_none(),
                    "two answers to IQ {id}: {}",
                    String::from(&el)
                );
            }
            _ => self.other.push(el),
        }
    }

    /// The answer to each IQ in `ids`, waiting up to `timeout` for all of them. Panics with the
    /// ids still unanswered.
    pub async fn answers(&mut self, ids: &[String], timeout: Duration) -> Vec<Element> {
        let deadline = tokio::time::Instant::now() + timeout;
        while ids.iter().any(|id| !self.answers.contains_key(id)) {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(el)) => self.take(el),
                Ok(None) => panic!("the stranger's stream ended"),
                Err(_) => {
                    let missing: Vec<&String> = ids
                        .iter()
                        .filter(|id| !self.answers.contains_key(*id))
                        .collect();
                    panic!(
                        "{} IQs unanswered after {timeout:?}: {:?}",
                        missing.len(),
                        &missing[..missing.len().min(20)]
                    );
                }
            }
        }
        ids.iter()
            .map(|id| self.answers.remove(id).expect("checked above"))
            .collect()
    }

    /// Answers received that no call to [`answers`](Self::answers) took.
    pub fn unclaimed(&mut self) -> Vec<String> {
        while let Ok(el) = self.incoming.try_recv() {
            self.take(el);
        }
        self.answers.keys().cloned().collect()
    }
}

/// The defined condition of an IQ error answer (`None` for a result).
pub fn condition(answer: &Element) -> Option<String> {
    answer
        .get_child("error", NS_CLIENT)?
        .children()
        .find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas")
        .map(|c| c.name().to_owned())
}
