//! The XEP-0325 (Internet of Things - Control) payloads the gateway answers a `<set/>` with: the
//! success response, and the `<paramError/>` that names a refused parameter inside a stanza
//! error. xmpp-parsers has no types for XEP-0325, so they are built by hand.

use minidom::Element;

use super::xml_text::clean;
use crate::xmlns;

/// `<setResponse responseCode='OK'/>`: every value was written.
pub fn set_response() -> Element {
    // `responseCode` is from XEP-0325 before v0.3; slixmpp and Smack read it to report success.
    Element::builder("setResponse", xmlns::CONTROL)
        .attr(rxml::xml_ncname!("responseCode").to_owned(), "OK")
        .build()
}

/// `<paramError var='…'>text</paramError>`: parameter `var` was refused, and why. Both come
/// from the request or the device, so they are cleaned for XML.
pub fn param_error(var: &str, text: &str) -> Element {
    Element::builder("paramError", xmlns::CONTROL)
        .attr(rxml::xml_ncname!("var").to_owned(), clean(var).into_owned())
        .append(clean(text).into_owned())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_response_says_ok() {
        let el = set_response();
        assert!(el.is("setResponse", xmlns::CONTROL));
        assert_eq!(el.attr("responseCode"), Some("OK"));
    }

    #[test]
    fn param_error_names_the_parameter_with_clean_text() {
        let el = param_error("speed\u{0}", "out of range\u{1}");
        assert!(el.is("paramError", xmlns::CONTROL));
        assert_eq!(el.attr("var"), Some("speed"));
        assert_eq!(el.text(), "out of range");
    }
}
