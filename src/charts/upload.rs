//! XEP-0363 HTTP File Upload, the pieces that do not need the XMPP link: the disco and slot
//! requests, reading their answers, the HTTP PUT, and the message that shows the picture.
//!
//! The service is found by disco on the server (its items, then each item's features); a slot
//! is asked for with the file's name, size and type; the file goes to the slot's PUT URL with
//! the headers the slot lists (XEP-0363 §5 allows `Authorization`, `Cookie` and `Expires`);
//! the message carries the GET URL as its body and in an XEP-0066 `jabber:x:oob` element, which
//! is what Conversations, Gajim, Dino and Monal show inline.

use std::time::Duration;

use crate::xmlns::{DISCO_INFO, DISCO_ITEMS, HTTP_UPLOAD, OOB};
use minidom::Element;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Lang, Message, MessageType, Thread};

/// Headers a slot may ask the PUT to carry; anything else is dropped (XEP-0363 §5).
const ALLOWED_HEADERS: &[&str] = &["authorization", "cookie", "expires"];
/// How long the PUT may take.
const PUT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UploadError {
    #[error("the server offers no HTTP upload service")]
    NoService,
    #[error("the upload service's answer is not a slot")]
    BadSlot,
    #[error("the upload service refused the file: {0}")]
    Refused(String),
    #[error("the upload failed: {0}")]
    Http(String),
    #[error("the server did not answer in time")]
    Timeout,
    #[error("the connection to the server was lost")]
    LinkLost,
}

/// Where to PUT the file and where it can then be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub put: String,
    pub headers: Vec<(String, String)>,
    pub get: String,
}

pub fn disco_items() -> Element {
    Element::builder("query", DISCO_ITEMS).build()
}

pub fn disco_info() -> Element {
    Element::builder("query", DISCO_INFO).build()
}

/// The JIDs a disco#items answer lists.
pub fn items(answer: Option<&Element>) -> Vec<Jid> {
    answer
        .filter(|q| q.is("query", DISCO_ITEMS))
        .map(|q| {
            q.children()
                .filter(|c| c.name() == "item")
                .filter_map(|c| Jid::new(c.attr("jid")?).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a disco#info answer lists the upload feature.
pub fn offers_upload(answer: Option<&Element>) -> bool {
    answer.is_some_and(|q| {
        q.is("query", DISCO_INFO)
            && q.children()
                .any(|c| c.name() == "feature" && c.attr("var") == Some(HTTP_UPLOAD))
    })
}

/// `<request filename size content-type/>`.
pub fn slot_request(filename: &str, size: usize, content_type: &str) -> Element {
    Element::builder("request", HTTP_UPLOAD)
        .attr(rxml::xml_ncname!("filename").to_owned(), filename)
        .attr(rxml::xml_ncname!("size").to_owned(), size.to_string())
        .attr(rxml::xml_ncname!("content-type").to_owned(), content_type)
        .build()
}

/// Reads `<slot><put url><header name>…</header></put><get url/></slot>`. Only `https` URLs are
/// taken, and `http` ones only for a loopback host (a test or a server on the same machine).
pub fn parse_slot(answer: Option<&Element>) -> Result<Slot, UploadError> {
    let slot = answer
        .filter(|s| s.is("slot", HTTP_UPLOAD))
        .ok_or(UploadError::BadSlot)?;
    let put = slot
        .get_child("put", HTTP_UPLOAD)
        .ok_or(UploadError::BadSlot)?;
    let get = slot
        .get_child("get", HTTP_UPLOAD)
        .ok_or(UploadError::BadSlot)?;
    let (put_url, get_url) = (
        put.attr("url").ok_or(UploadError::BadSlot)?,
        get.attr("url").ok_or(UploadError::BadSlot)?,
    );
    if !acceptable_url(put_url) || !acceptable_url(get_url) {
        return Err(UploadError::BadSlot);
    }
    let headers = put
        .children()
        .filter(|h| h.name() == "header")
        .filter_map(|h| {
            let name = h.attr("name")?;
            let value = h.text();
            let allowed = ALLOWED_HEADERS.contains(&name.to_ascii_lowercase().as_str())
                && !value.contains(['\r', '\n']);
            allowed.then(|| (name.to_owned(), value))
        })
        .collect();
    Ok(Slot {
        put: put_url.to_owned(),
        headers,
        get: get_url.to_owned(),
    })
}

fn acceptable_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return true;
    }
    let Some(rest) = lower.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// PUTs `body` to the slot. Blocking: call it on a blocking thread.
pub fn put(slot: &Slot, body: &[u8], content_type: &str) -> Result<(), UploadError> {
    let agent = ureq::AgentBuilder::new()
        .timeout(PUT_TIMEOUT)
        .redirects(0)
        .build();
    let mut req = agent.put(&slot.put).set("Content-Type", content_type);
    for (name, value) in &slot.headers {
        req = req.set(name, value);
    }
    match req.send_bytes(body) {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(code, _)) => Err(UploadError::Http(format!("HTTP status {code}"))),
        Err(e) => Err(UploadError::Http(e.to_string())),
    }
}

/// The message that shows the uploaded picture: the URL as body and as `jabber:x:oob`.
pub fn picture_message(
    type_: MessageType,
    from: &Jid,
    to: &Jid,
    url: &str,
    thread: Option<Thread>,
) -> Element {
    let mut m = Message::new_with_type(type_, Some(to.clone()));
    m.from = Some(from.clone());
    m.bodies.insert(Lang::default(), url.to_owned());
    m.thread = thread;
    m.payloads.push(
        Element::builder("x", OOB)
            .append(Element::builder("url", OOB).append(url).build())
            .build(),
    );
    m.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().expect("xml")
    }

    #[test]
    fn finds_the_service_in_disco_answers() {
        let items_answer = el(&format!(
            "<query xmlns='{DISCO_ITEMS}'><item jid='upload.example.org'/><item jid='not a jid@@'/><item/></query>"
        ));
        assert_eq!(
            items(Some(&items_answer)),
            [Jid::new("upload.example.org").expect("jid")]
        );
        assert!(items(None).is_empty());
        let info = el(&format!(
            "<query xmlns='{DISCO_INFO}'><identity category='store' type='file'/><feature var='{HTTP_UPLOAD}'/></query>"
        ));
        assert!(offers_upload(Some(&info)));
        let other = el(&format!(
            "<query xmlns='{DISCO_INFO}'><feature var='urn:xmpp:http:upload'/></query>"
        ));
        assert!(!offers_upload(Some(&other)));
    }

    #[test]
    fn reads_a_slot_and_keeps_only_the_allowed_headers() {
        let answer = el(&format!(
            "<slot xmlns='{HTTP_UPLOAD}'><put url='https://up.example.org/a/chart.png'>\
             <header name='Authorization'>Bearer x</header><header name='Host'>evil</header>\
             <header name='Cookie'>a\nb</header></put><get url='https://up.example.org/a/chart.png'/></slot>"
        ));
        assert_eq!(
            parse_slot(Some(&answer)),
            Ok(Slot {
                put: "https://up.example.org/a/chart.png".into(),
                headers: vec![("Authorization".into(), "Bearer x".into())],
                get: "https://up.example.org/a/chart.png".into(),
            })
        );
        assert_eq!(parse_slot(None), Err(UploadError::BadSlot));
        let no_get = el(&format!(
            "<slot xmlns='{HTTP_UPLOAD}'><put url='https://a/'/></slot>"
        ));
        assert_eq!(parse_slot(Some(&no_get)), Err(UploadError::BadSlot));
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(acceptable_url("https://up.example.org/x"));
        assert!(acceptable_url("http://127.0.0.1:5280/x"));
        assert!(acceptable_url("http://localhost/x"));
        assert!(acceptable_url("http://[::1]:80/x"));
        assert!(!acceptable_url("http://up.example.org/x"));
        assert!(!acceptable_url("http://127.0.0.1.evil.org/x"));
        assert!(!acceptable_url("ftp://127.0.0.1/x"));
        assert!(!acceptable_url("javascript:alert(1)"));
    }

    #[test]
    fn the_picture_message_carries_the_url_twice() {
        let el = picture_message(
            MessageType::Chat,
            &Jid::new("d@gw.example.org").expect("jid"),
            &Jid::new("u@example.org/phone").expect("jid"),
            "https://up.example.org/c.png",
            None,
        );
        let xml = String::from(&el);
        assert!(
            xml.contains("<body xml:lang='en'>https://up.example.org/c.png</body>")
                || xml.contains("<body>https://up.example.org/c.png</body>"),
            "{xml}"
        );
        assert!(
            xml.contains("<x xmlns='jabber:x:oob'><url>https://up.example.org/c.png</url></x>"),
            "{xml}"
        );
    }
}
