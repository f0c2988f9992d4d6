//! XEP-0323 sensor data (`urn:xmpp:iot:sensordata`): requests in, readouts out.
//!
//! Parses `<req>` and `<cancel>` into plain structs and builds the answers (`<accepted>`,
//! `<started>`, `<cancelled>`, `<fields>`, `<failure>`, `<done>`) as minidom elements for the XMPP
//! layer to wrap in IQ results and messages (XEP-0323). Built for what real clients read:
//! integers go out as `numeric` (slixmpp drops `int`/`long`), `numeric` always carries a `unit`
//! (the schema requires it), timestamps are UTC with `Z`, and every string is cleaned of
//! characters XML cannot carry. [`parse_fields`] and [`parse_failure`] are the client side, for
//! the `read` command.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use gateway_api::{FieldSpec, Quality, Value};
use minidom::Element;
use rxml::{xml_ncname, NcNameStr};

use super::xml_text::clean;
use crate::xmlns::SENSOR_DATA;

const SEQNR: &NcNameStr = xml_ncname!("seqnr");
const DONE: &NcNameStr = xml_ncname!("done");
const QUEUED: &NcNameStr = xml_ncname!("queued");
const NODE_ID: &NcNameStr = xml_ncname!("nodeId");
const VALUE: &NcNameStr = xml_ncname!("value");
const NAME: &NcNameStr = xml_ncname!("name");
const UNIT: &NcNameStr = xml_ncname!("unit");
const TIMESTAMP: &NcNameStr = xml_ncname!("timestamp");
const MOMENTARY: &NcNameStr = xml_ncname!("momentary");
const WRITABLE: &NcNameStr = xml_ncname!("writable");
const AUTOMATIC_READOUT: &NcNameStr = xml_ncname!("automaticReadout");
const AUTOMATIC_ESTIMATE: &NcNameStr = xml_ncname!("automaticEstimate");
const ERROR: &NcNameStr = xml_ncname!("error");

/// The `historical*` field-type hints of a `<req>`; any of them (or `all`) asks for history.
const HISTORICAL_HINTS: [&str; 10] = [
    "historical",
    "historicalSecond",
    "historicalMinute",
    "historicalHour",
    "historicalDay",
    "historicalWeek",
    "historicalMonth",
    "historicalQuarter",
    "historicalYear",
    "historicalOther",
];

/// The other field-type hints; only whether one is set matters here
/// (see [`ReadoutRequest::type_hints`]).
const OTHER_HINTS: [&str; 4] = ["peak", "status", "computed", "identity"];

/// Longest piece of a peer's input echoed back in an error text.
const ECHO_MAX_CHARS: usize = 64;

/// A `<req>`: what a client asks to read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReadoutRequest {
    /// Chosen by the client, unique per client: sessions are keyed by (requester, seqnr).
    pub seqnr: i32,
    pub momentary: bool,
    /// Any `historical*` hint, or `all`.
    pub historical: bool,
    pub all: bool,
    /// Whether the request carried any field-type hint at all (momentary, peak, status, computed,
    /// identity, historical*, all) set to true.
    pub type_hints: bool,
    /// Historical interval.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Scheduled readout: answer `accepted queued='true'`, then `started` at that time.
    pub when: Option<DateTime<Utc>>,
    /// `<node nodeId/>` children: empty means the device itself.
    pub node_ids: Vec<String>,
    /// `<field name/>` children: empty means every field.
    pub field_names: Vec<String>,
}

impl ReadoutRequest {
    /// Whether to send current values: asked for `momentary` or `all`, or no type asked for at
    /// all (the XEP leaves that choice to the device; current values are what people expect).
    pub fn wants_momentary(&self) -> bool {
        self.momentary || self.all || !self.type_hints
    }
}

/// Why a sensor-data element could not be understood. The text goes into the `<text>` of a
/// `modify/bad-request` error, or into the `read` command's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReqError {
    #[error(
        "expected <{expected}/> in namespace {SENSOR_DATA}, found <{found}/> in namespace {ns}"
    )]
    WrongElement {
        expected: &'static str,
        found: String,
        ns: String,
    },
    #[error("<{element}/> lacks the required attribute '{attr}'")]
    Missing { element: String, attr: &'static str },
    #[error("attribute '{attr}' of <{element}/> is not a valid {kind}: {value:?}")]
    Invalid {
        element: String,
        attr: &'static str,
        kind: &'static str,
        value: String,
    },
}

/// Parses a `<req>` element.
pub fn parse_req(el: &Element) -> Result<ReadoutRequest, ReqError> {
    expect(el, "req")?;
    let seqnr = seqnr(el)?;
    let momentary = flag(el, "momentary")?;
    let all = flag(el, "all")?;
    let mut historical = all;
    for hint in HISTORICAL_HINTS {
        historical |= flag(el, hint)?;
    }
    let mut type_hints = momentary || historical;
    for hint in OTHER_HINTS {
        type_hints |= flag(el, hint)?;
    }
    let mut node_ids = Vec::new();
    let mut field_names = Vec::new();
    for child in el.children() {
        if child.is("node", SENSOR_DATA) {
            node_ids.push(required(child, "nodeId")?.to_owned());
        } else if child.is("field", SENSOR_DATA) {
            field_names.push(required(child, "name")?.to_owned());
        }
    }
    Ok(ReadoutRequest {
        seqnr,
        momentary,
        historical,
        all,
        type_hints,
        from: optional_datetime(el, "from")?,
        to: optional_datetime(el, "to")?,
        when: optional_datetime(el, "when")?,
        node_ids,
        field_names,
    })
}

/// Parses a `<cancel seqnr/>` element into its `seqnr`.
pub fn parse_cancel(el: &Element) -> Result<i32, ReqError> {
    expect(el, "cancel")?;
    seqnr(el)
}

/// `<accepted seqnr [queued='true']/>`: the IQ result to a `<req>`.
pub fn accepted(seqnr: i32, queued: bool) -> Element {
    Element::builder("accepted", SENSOR_DATA)
        .attr(SEQNR.to_owned(), seqnr)
        .attr(QUEUED.to_owned(), queued.then_some("true"))
        .build()
}

/// `<started seqnr/>`: a queued readout begins.
pub fn started(seqnr: i32) -> Element {
    Element::builder("started", SENSOR_DATA)
        .attr(SEQNR.to_owned(), seqnr)
        .build()
}

/// `<cancelled seqnr/>`: the IQ result to a `<cancel>`.
pub fn cancelled(seqnr: i32) -> Element {
    Element::builder("cancelled", SENSOR_DATA)
        .attr(SEQNR.to_owned(), seqnr)
        .build()
}

/// `<done seqnr/>`: ends a readout whose last message did not carry `done='true'` (slixmpp
/// ignores it, so prefer `done` on the last `fields` or `failure`).
pub fn done(seqnr: i32) -> Element {
    Element::builder("done", SENSOR_DATA)
        .attr(SEQNR.to_owned(), seqnr)
        .build()
}

/// The values of a device at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub timestamp: DateTime<Utc>,
    pub values: Vec<(&'a FieldSpec, &'a Value, Quality)>,
    /// Current values (flagged `momentary='true'`) rather than history.
    pub momentary: bool,
}

/// `<fields seqnr [done='true']><node nodeId><timestamp value>…</timestamp>…</node></fields>`:
/// one `timestamp` per sample, one field element per value.
pub fn fields(seqnr: i32, node_id: &str, samples: &[Sample<'_>], done: bool) -> Element {
    fields_of_node(seqnr, node_id, done, samples.iter().map(sample))
}

/// `<fields seqnr [done='true']><node nodeId>timestamps</node></fields>`.
fn fields_of_node(
    seqnr: i32,
    node_id: &str,
    done: bool,
    timestamps: impl IntoIterator<Item = Element>,
) -> Element {
    let node = Element::builder("node", SENSOR_DATA)
        .attr(NODE_ID.to_owned(), &*clean(node_id))
        .append_all(timestamps)
        .build();
    Element::builder("fields", SENSOR_DATA)
        .attr(SEQNR.to_owned(), seqnr)
        .attr(DONE.to_owned(), done.then_some("true"))
        .append(node)
        .build()
}

/// How much a `<fields>` payload spells out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Style {
    /// What a push carries by default: one `<timestamp>` per distinct time as written (to the
    /// millisecond), and no `automaticReadout='true'`, which XEP-0323 assumes for a field that
    /// sets none of its quality flags. Every push passes through the server, and the server's
    /// cost grows with every element and attribute it parses and writes again.
    #[default]
    Compact,
    /// Every flag spelled out and one `<timestamp>` per run of readings taken at the same instant:
    /// the form of readout answers, for readers that want the flags explicit.
    Full,
}

/// [`fields`] in the given [`Style`]: a push's `<fields seqnr='0' done='true'>`.
pub fn fields_styled(
    seqnr: i32,
    node_id: &str,
    samples: &[Sample<'_>],
    done: bool,
    style: Style,
) -> Element {
    if style == Style::Full {
        return fields(seqnr, node_id, samples, done);
    }
    // Readings of one batch may differ below the millisecond, which the timestamp does not
    // show: group by the time as written, so that one `<timestamp>` holds them all.
    let mut groups: Vec<(String, bool, Vec<Element>)> = Vec::new();
    for s in samples {
        let time = format_datetime(s.timestamp);
        let elements = s
            .values
            .iter()
            .map(|(spec, value, quality)| field(spec, value, *quality, s.momentary, style));
        match groups
            .iter_mut()
            .find(|(t, momentary, _)| *t == time && *momentary == s.momentary)
        {
            Some((_, _, children)) => children.extend(elements),
            None => groups.push((time, s.momentary, elements.collect())),
        }
    }
    let timestamps = groups.into_iter().map(|(time, _, children)| {
        Element::builder("timestamp", SENSOR_DATA)
            .attr(VALUE.to_owned(), time)
            .append_all(children)
            .build()
    });
    fields_of_node(seqnr, node_id, done, timestamps)
}

/// `<failure seqnr [done='true']><error nodeId timestamp>text</error></failure>`.
pub fn failure(
    seqnr: i32,
    node_id: &str,
    timestamp: DateTime<Utc>,
    text: &str,
    done: bool,
) -> Element {
    let error = Element::builder("error", SENSOR_DATA)
        .attr(NODE_ID.to_owned(), &*clean(node_id))
        .attr(TIMESTAMP.to_owned(), format_datetime(timestamp))
        .append(clean(text).into_owned())
        .build();
    Element::builder("failure", SENSOR_DATA)
        .attr(SEQNR.to_owned(), seqnr)
        .attr(DONE.to_owned(), done.then_some("true"))
        .append(error)
        .build()
}

fn sample(s: &Sample<'_>) -> Element {
    Element::builder("timestamp", SENSOR_DATA)
        .attr(VALUE.to_owned(), format_datetime(s.timestamp))
        .append_all(
            s.values.iter().map(|(spec, value, quality)| {
                field(spec, value, *quality, s.momentary, Style::Full)
            }),
        )
        .build()
}

/// One field element: `numeric` (with `unit`), `boolean` or `string`, chosen by the field's
/// configured type. A value that does not convert to that type goes out as what it is, rather
/// than being lost. A compact field leaves out `automaticReadout='true'` when it is the only
/// quality flag (the XEP's assumption when none is set).
fn field(
    spec: &FieldSpec,
    value: &Value,
    quality: Quality,
    momentary: bool,
    style: Style,
) -> Element {
    let converted = value.clone().coerce(spec.kind);
    let (element, text, numeric) = match converted.as_ref().unwrap_or(value) {
        Value::Bool(b) => ("boolean", b.to_string(), false),
        Value::Int(i) => ("numeric", i.to_string(), true),
        Value::Float(f) => ("numeric", xs_double(*f), true),
        Value::Text(t) => ("string", clean(t).into_owned(), false),
    };
    let (readout, estimate, error) = match quality {
        Quality::Good => (true, false, false),
        Quality::Uncertain => (false, true, false),
        Quality::Bad => (true, false, true),
    };
    let readout = readout && !(style == Style::Compact && quality == Quality::Good);
    Element::builder(element, SENSOR_DATA)
        .attr(NAME.to_owned(), &*clean(&spec.name))
        .attr(VALUE.to_owned(), text)
        .attr(
            UNIT.to_owned(),
            numeric.then(|| clean(&spec.unit).into_owned()),
        )
        .attr(MOMENTARY.to_owned(), momentary.then_some("true"))
        .attr(AUTOMATIC_READOUT.to_owned(), readout.then_some("true"))
        .attr(AUTOMATIC_ESTIMATE.to_owned(), estimate.then_some("true"))
        .attr(ERROR.to_owned(), error.then_some("true"))
        .attr(WRITABLE.to_owned(), spec.writable.then_some("true"))
        .build()
}

/// An `f64` as xs:double: Rust's shortest round-trip form, with the XML spellings of the
/// non-finite values.
fn xs_double(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "INF" } else { "-INF" }.to_owned()
    } else {
        f.to_string()
    }
}

/// A UTC xs:dateTime: `YYYY-MM-DDTHH:MM:SSZ`, with `.fff` when there are milliseconds.
pub fn format_datetime(t: DateTime<Utc>) -> String {
    let precision = if t.timestamp_subsec_millis() == 0 {
        SecondsFormat::Secs
    } else {
        SecondsFormat::Millis
    };
    t.to_rfc3339_opts(precision, true)
}

/// An xs:dateTime as UTC. A time without a zone ("undefined zone" in the XEP) is taken as UTC.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// One field of a received `<fields>` message, as text: what the `read` command prints.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedField {
    pub node_id: String,
    pub timestamp: DateTime<Utc>,
    /// The element name: `numeric`, `boolean`, `string`, `int`, `enum`, …
    pub kind: String,
    pub name: String,
    pub value: String,
    pub unit: Option<String>,
    pub writable: bool,
}

/// Every field of a `<fields>` element, in document order. Elements of other namespaces are
/// skipped; a node, timestamp or field without its required attributes is an error.
pub fn parse_fields(el: &Element) -> Result<Vec<ParsedField>, ReqError> {
    expect(el, "fields")?;
    seqnr(el)?;
    let mut out = Vec::new();
    for node in el.children().filter(|c| c.is("node", SENSOR_DATA)) {
        let node_id = required(node, "nodeId")?;
        for ts in node.children().filter(|c| c.is("timestamp", SENSOR_DATA)) {
            let timestamp = datetime(ts, "value", required(ts, "value")?)?;
            for f in ts.children().filter(|c| c.has_ns(SENSOR_DATA)) {
                out.push(ParsedField {
                    node_id: node_id.to_owned(),
                    timestamp,
                    kind: f.name().to_owned(),
                    name: required(f, "name")?.to_owned(),
                    value: required(f, "value")?.to_owned(),
                    unit: f.attr("unit").map(str::to_owned),
                    writable: matches!(f.attr("writable").map(xs_boolean), Some(Some(true))),
                });
            }
        }
    }
    Ok(out)
}

/// One `<error>` of a received `<failure>`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedError {
    pub node_id: Option<String>,
    pub timestamp: Option<DateTime<Utc>>,
    pub text: String,
}

/// Every error of a `<failure>` element. Lenient about the attributes of `<error>`: the text is
/// what a person needs to see.
pub fn parse_failure(el: &Element) -> Result<Vec<ParsedError>, ReqError> {
    expect(el, "failure")?;
    seqnr(el)?;
    Ok(el
        .children()
        .filter(|c| c.is("error", SENSOR_DATA))
        .map(|e| ParsedError {
            node_id: e.attr("nodeId").map(str::to_owned),
            timestamp: e.attr("timestamp").and_then(parse_datetime),
            text: e.text(),
        })
        .collect())
}

/// The `seqnr` of any sensor-data element and whether it ends its readout: `done='true'` on
/// `fields`/`failure`, or a `<done/>` element.
pub fn seqnr_and_done(el: &Element) -> Result<(i32, bool), ReqError> {
    if !el.has_ns(SENSOR_DATA) {
        return Err(ReqError::WrongElement {
            expected: "fields",
            found: el.name().to_owned(),
            ns: el.ns(),
        });
    }
    let done = el.name() == "done" || flag(el, "done")?;
    Ok((seqnr(el)?, done))
}

fn expect(el: &Element, name: &'static str) -> Result<(), ReqError> {
    if el.is(name, SENSOR_DATA) {
        Ok(())
    } else {
        Err(ReqError::WrongElement {
            expected: name,
            found: el.name().to_owned(),
            ns: el.ns(),
        })
    }
}

fn required<'a>(el: &'a Element, attr: &'static str) -> Result<&'a str, ReqError> {
    el.attr(attr).ok_or_else(|| ReqError::Missing {
        element: el.name().to_owned(),
        attr,
    })
}

fn invalid(el: &Element, attr: &'static str, kind: &'static str, value: &str) -> ReqError {
    ReqError::Invalid {
        element: el.name().to_owned(),
        attr,
        kind,
        value: value.chars().take(ECHO_MAX_CHARS).collect(),
    }
}

/// `seqnr` as xs:int (surrounding whitespace allowed, as XML Schema collapses it).
fn seqnr(el: &Element) -> Result<i32, ReqError> {
    let raw = required(el, "seqnr")?;
    raw.trim()
        .parse()
        .map_err(|_| invalid(el, "seqnr", "xs:int", raw))
}

/// An optional xs:boolean attribute (`true`, `false`, `1`, `0`); absent is false.
fn flag(el: &Element, attr: &'static str) -> Result<bool, ReqError> {
    match el.attr(attr) {
        None => Ok(false),
        Some(raw) => xs_boolean(raw).ok_or_else(|| invalid(el, attr, "xs:boolean", raw)),
    }
}

fn xs_boolean(raw: &str) -> Option<bool> {
    match raw.trim() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn datetime(el: &Element, attr: &'static str, raw: &str) -> Result<DateTime<Utc>, ReqError> {
    parse_datetime(raw).ok_or_else(|| invalid(el, attr, "xs:dateTime", raw))
}

fn optional_datetime(el: &Element, attr: &'static str) -> Result<Option<DateTime<Utc>>, ReqError> {
    el.attr(attr).map(|raw| datetime(el, attr, raw)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use gateway_api::FieldType;

    fn xml(el: &Element) -> String {
        String::from(el)
    }

    fn parse(s: &str) -> Element {
        s.parse().expect("test XML is well-formed")
    }

    fn spec(name: &str, unit: &str, kind: FieldType, writable: bool) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            unit: unit.into(),
            kind,
            writable,
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 7, 16, 24, 30).unwrap()
    }

    const X: &str = "xmlns='urn:xmpp:iot:sensordata'";

    #[test]
    fn parses_a_momentary_request() {
        let r = parse_req(&parse(&format!("<req {X} seqnr='1' momentary='true'/>"))).unwrap();
        assert_eq!(
            r,
            ReadoutRequest {
                seqnr: 1,
                momentary: true,
                type_hints: true,
                ..Default::default()
            }
        );
        assert!(r.wants_momentary());
    }

    #[test]
    fn parses_a_historical_request_with_nodes_and_fields() {
        let r = parse_req(&parse(&format!(
            "<req {X} seqnr=' +42 ' historicalHour='1' from='2026-01-01T00:00:00Z' \
             to='2026-01-02T01:00:00.250+01:00' serviceToken='ignored'>\
               <node nodeId='d1'/><field name='temperature'/><node nodeId='d2' sourceId='s'/>\
               <field name='humidity'/><other xmlns='urn:x'/></req>"
        )))
        .unwrap();
        assert_eq!(r.seqnr, 42);
        assert!(r.historical && !r.momentary && !r.all && r.type_hints);
        assert!(!r.wants_momentary());
        assert_eq!(
            r.from,
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(
            r.to,
            Some(
                Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap()
                    + chrono::Duration::milliseconds(250)
            )
        );
        assert_eq!(r.when, None);
        assert_eq!(r.node_ids, ["d1", "d2"]);
        assert_eq!(r.field_names, ["temperature", "humidity"]);
    }

    #[test]
    fn all_implies_historical_and_no_hint_means_momentary() {
        let r = parse_req(&parse(&format!(
            "<req {X} seqnr='3' all='true' when='2026-03-07T16:24:30'/>"
        )))
        .unwrap();
        assert!(r.all && r.historical && r.wants_momentary());
        // No zone: taken as UTC.
        assert_eq!(r.when, Some(t0()));
        let r = parse_req(&parse(&format!("<req {X} seqnr='-4'/>"))).unwrap();
        assert_eq!(r.seqnr, -4);
        assert!(!r.type_hints && r.wants_momentary() && !r.historical);
        let r = parse_req(&parse(&format!("<req {X} seqnr='5' identity='true'/>"))).unwrap();
        assert!(r.type_hints && !r.wants_momentary());
    }

    #[test]
    fn rejects_bad_requests_with_a_reason() {
        let err = |s: &str| parse_req(&parse(s)).unwrap_err().to_string();
        assert_eq!(
            err(&format!("<req {X} momentary='true'/>")),
            "<req/> lacks the required attribute 'seqnr'"
        );
        assert_eq!(
            err(&format!("<req {X} seqnr='abc'/>")),
            "attribute 'seqnr' of <req/> is not a valid xs:int: \"abc\""
        );
        // Out of xs:int range.
        assert!(err(&format!("<req {X} seqnr='2147483648'/>")).contains("xs:int"));
        assert!(err(&format!("<req {X} seqnr='1.5'/>")).contains("xs:int"));
        assert_eq!(
            err(&format!("<req {X} seqnr='1' momentary='yes'/>")),
            "attribute 'momentary' of <req/> is not a valid xs:boolean: \"yes\""
        );
        assert_eq!(
            err(&format!("<req {X} seqnr='1' from='yesterday'/>")),
            "attribute 'from' of <req/> is not a valid xs:dateTime: \"yesterday\""
        );
        assert!(err(&format!("<req {X} seqnr='1' to='2026-13-01T00:00:00Z'/>")).contains("'to'"));
        assert_eq!(
            err(&format!("<req {X} seqnr='1'><node/></req>")),
            "<node/> lacks the required attribute 'nodeId'"
        );
        assert_eq!(
            err(&format!("<req {X} seqnr='1'><field nam='x'/></req>")),
            "<field/> lacks the required attribute 'name'"
        );
        assert_eq!(
            err("<req xmlns='urn:xmpp:sn' seqnr='1'/>"),
            "expected <req/> in namespace urn:xmpp:iot:sensordata, found <req/> in namespace urn:xmpp:sn"
        );
        // A long hostile value is echoed only in part.
        let long = "9".repeat(500);
        let e = parse_req(&parse(&format!("<req {X} seqnr='{long}'/>"))).unwrap_err();
        assert!(e.to_string().len() < 150, "{e}");
    }

    #[test]
    fn parses_cancel() {
        assert_eq!(
            parse_cancel(&parse(&format!("<cancel {X} seqnr='8'/>"))),
            Ok(8)
        );
        assert!(parse_cancel(&parse(&format!("<cancel {X}/>"))).is_err());
        assert!(parse_cancel(&parse(&format!("<req {X} seqnr='8'/>"))).is_err());
    }

    #[test]
    fn builds_the_small_answers() {
        assert_eq!(
            xml(&accepted(1, false)),
            "<accepted xmlns='urn:xmpp:iot:sensordata' seqnr='1'/>"
        );
        assert_eq!(
            xml(&accepted(-2, true)),
            "<accepted xmlns='urn:xmpp:iot:sensordata' queued='true' seqnr='-2'/>"
        );
        assert_eq!(
            xml(&started(3)),
            "<started xmlns='urn:xmpp:iot:sensordata' seqnr='3'/>"
        );
        assert_eq!(
            xml(&cancelled(4)),
            "<cancelled xmlns='urn:xmpp:iot:sensordata' seqnr='4'/>"
        );
        assert_eq!(
            xml(&done(5)),
            "<done xmlns='urn:xmpp:iot:sensordata' seqnr='5'/>"
        );
        assert_eq!(
            accepted(7, true),
            parse(&format!("<accepted {X} seqnr='7' queued='true'/>"))
        );
    }

    #[test]
    fn builds_fields_for_every_type() {
        let temp = spec("temperature", "°C", FieldType::Numeric, false);
        let count = spec("count", "", FieldType::Integer, false);
        let heater = spec("heater", "", FieldType::Boolean, true);
        let serial = spec("serial", "", FieldType::String, false);
        let level = spec("level", "%", FieldType::Numeric, false);
        let (v_temp, v_count, v_heater, v_serial, v_level) = (
            Value::Float(23.4),
            Value::Int(17),
            Value::Bool(true),
            Value::Text("A-17".into()),
            Value::Float(40.0),
        );
        let samples = [Sample {
            timestamp: t0(),
            values: vec![
                (&temp, &v_temp, Quality::Good),
                (&count, &v_count, Quality::Good),
                (&heater, &v_heater, Quality::Good),
                (&serial, &v_serial, Quality::Good),
                (&level, &v_level, Quality::Uncertain),
                (&count, &v_count, Quality::Bad),
            ],
            momentary: true,
        }];
        let el = fields(1, "temp1", &samples, true);
        let expected = concat!(
            "<fields xmlns='urn:xmpp:iot:sensordata' done='true' seqnr='1'>",
            "<node nodeId='temp1'><timestamp value='2026-03-07T16:24:30Z'>",
            "<numeric automaticReadout='true' momentary='true' name='temperature' unit='°C' value='23.4'/>",
            "<numeric automaticReadout='true' momentary='true' name='count' unit='' value='17'/>",
            "<boolean automaticReadout='true' momentary='true' name='heater' value='true' writable='true'/>",
            "<string automaticReadout='true' momentary='true' name='serial' value='A-17'/>",
            "<numeric automaticEstimate='true' momentary='true' name='level' unit='%' value='40'/>",
            "<numeric automaticReadout='true' error='true' momentary='true' name='count' unit='' value='17'/>",
            "</timestamp></node></fields>",
        );
        assert_eq!(xml(&el), expected);
        // And it reads back as what was sent.
        let back = parse_fields(&parse(&xml(&el))).unwrap();
        let rows: Vec<_> = back
            .iter()
            .map(|f| {
                (
                    f.kind.as_str(),
                    f.name.as_str(),
                    f.value.as_str(),
                    f.unit.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("numeric", "temperature", "23.4", Some("°C")),
                ("numeric", "count", "17", Some("")),
                ("boolean", "heater", "true", None),
                ("string", "serial", "A-17", None),
                ("numeric", "level", "40", Some("%")),
                ("numeric", "count", "17", Some("")),
            ]
        );
        assert!(back
            .iter()
            .all(|f| f.node_id == "temp1" && f.timestamp == t0()));
        assert!(back[2].writable && !back[0].writable);
        assert_eq!(seqnr_and_done(&el), Ok((1, true)));
    }

    #[test]
    fn historical_samples_have_one_timestamp_each_and_no_momentary_flag() {
        let temp = spec("t", "K", FieldType::Numeric, false);
        let (a, b) = (Value::Float(1.5), Value::Int(2));
        let later = t0() + chrono::Duration::milliseconds(1250);
        let samples = [
            Sample {
                timestamp: t0(),
                values: vec![(&temp, &a, Quality::Good)],
                momentary: false,
            },
            Sample {
                timestamp: later,
                values: vec![(&temp, &b, Quality::Good)],
                momentary: false,
            },
        ];
        let el = fields(9, "d", &samples, false);
        let expected = parse(&format!(
            "<fields {X} seqnr='9'><node nodeId='d'>\
               <timestamp value='2026-03-07T16:24:30Z'>\
                 <numeric name='t' value='1.5' unit='K' automaticReadout='true'/></timestamp>\
               <timestamp value='2026-03-07T16:24:31.250Z'>\
                 <numeric name='t' value='2' unit='K' automaticReadout='true'/></timestamp>\
             </node></fields>"
        ));
        assert_eq!(parse(&xml(&el)), expected);
        assert_eq!(seqnr_and_done(&el), Ok((9, false)));
        assert_eq!(
            xml(&fields(2, "d", &[], true)),
            "<fields xmlns='urn:xmpp:iot:sensordata' done='true' seqnr='2'><node nodeId='d'/></fields>"
        );
    }

    #[test]
    fn compact_fields_share_a_timestamp_and_leave_out_the_assumed_flag() {
        let temp = spec("temp", "°C", FieldType::Numeric, false);
        let tag = spec("tag", "", FieldType::String, false);
        let heater = spec("heater", "", FieldType::Boolean, true);
        let (a, b, c) = (
            Value::Float(21.5),
            Value::Text("x".into()),
            Value::Bool(false),
        );
        // One batch whose readings differ below the millisecond, and an older reading.
        let at = |us| t0() + chrono::Duration::microseconds(us);
        let one = |t, spec, value, quality| Sample {
            timestamp: t,
            values: vec![(spec, value, quality)],
            momentary: true,
        };
        let samples = [
            one(at(250_100), &temp, &a, Quality::Good),
            one(at(-5_000_000), &heater, &c, Quality::Good),
            one(at(250_900), &tag, &b, Quality::Uncertain),
        ];
        let el = fields_styled(0, "d0", &samples, true, Style::Compact);
        assert_eq!(
            xml(&el),
            concat!(
                "<fields xmlns='urn:xmpp:iot:sensordata' done='true' seqnr='0'><node nodeId='d0'>",
                "<timestamp value='2026-03-07T16:24:30.250Z'>",
                "<numeric momentary='true' name='temp' unit='°C' value='21.5'/>",
                "<string automaticEstimate='true' momentary='true' name='tag' value='x'/>",
                "</timestamp><timestamp value='2026-03-07T16:24:25Z'>",
                "<boolean momentary='true' name='heater' value='false' writable='true'/>",
                "</timestamp></node></fields>",
            )
        );
        // A bad value keeps both its flags: with one quality flag set, none is assumed.
        let bad = [one(t0(), &temp, &a, Quality::Bad)];
        let s = xml(&fields_styled(0, "d0", &bad, true, Style::Compact));
        assert!(s.contains("automaticReadout='true' error='true'"), "{s}");
        // The full form is the readout form.
        assert_eq!(
            fields_styled(3, "d0", &samples, false, Style::Full),
            fields(3, "d0", &samples, false)
        );
        // Either reads back as the same fields.
        let compact = parse_fields(&el).unwrap();
        let full = parse_fields(&fields(0, "d0", &samples, true)).unwrap();
        let key = |f: &ParsedField| (f.name.clone(), f.value.clone(), f.kind.clone());
        let mut a: Vec<_> = compact.iter().map(key).collect();
        let mut b: Vec<_> = full.iter().map(key).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn values_follow_the_field_type_and_stay_xml_safe() {
        let num = spec("n", "", FieldType::Numeric, false);
        let boo = spec("b", "", FieldType::Boolean, false);
        let txt = spec("s\u{0}", "", FieldType::String, false);
        let values = [
            (&num, Value::Int(3), "<numeric", "value='3'"),
            (&num, Value::Text("warm".into()), "<string", "value='warm'"),
            (&num, Value::Float(f64::NAN), "<numeric", "value='NaN'"),
            (
                &num,
                Value::Float(f64::NEG_INFINITY),
                "<numeric",
                "value='-INF'",
            ),
            (&boo, Value::Int(0), "<boolean", "value='false'"),
            (&txt, Value::Float(1.25), "<string", "value='1.25'"),
            (
                &txt,
                Value::Text("<&>\"'\u{1}\u{FFFE}".into()),
                "<string",
                "value='&lt;&amp;&gt;&#34;&#39;'",
            ),
        ];
        for (spec, value, element, attr) in &values {
            let sample = Sample {
                timestamp: t0(),
                values: vec![(*spec, value, Quality::Good)],
                momentary: true,
            };
            let s = xml(&fields(1, "n\u{1}ode", &[sample], true));
            assert!(s.contains(element) && s.contains(attr), "{value:?}: {s}");
            assert!(s.contains("nodeId='node'"));
            parse_fields(&parse(&s)).unwrap();
        }
    }

    #[test]
    fn builds_and_parses_a_failure() {
        let el = failure(3, "temp1", t0(), "Bus timeout\u{0} <after 500 ms>", true);
        assert_eq!(
            xml(&el),
            "<failure xmlns='urn:xmpp:iot:sensordata' done='true' seqnr='3'>\
             <error nodeId='temp1' timestamp='2026-03-07T16:24:30Z'>Bus timeout &lt;after 500 ms&gt;</error></failure>"
        );
        assert_eq!(
            parse_failure(&el),
            Ok(vec![ParsedError {
                node_id: Some("temp1".into()),
                timestamp: Some(t0()),
                text: "Bus timeout <after 500 ms>".into(),
            }])
        );
        assert_eq!(seqnr_and_done(&el), Ok((3, true)));
        let bare = parse(&format!(
            "<failure {X} seqnr='4'><error>oops</error></failure>"
        ));
        assert_eq!(parse_failure(&bare).unwrap()[0].node_id, None);
        assert_eq!(seqnr_and_done(&bare), Ok((4, false)));
    }

    #[test]
    fn parse_fields_accepts_other_types_and_rejects_broken_input() {
        let ok = parse(&format!(
            "<fields {X} seqnr='1'><node nodeId='n'><timestamp value='2026-03-07T16:24:30Z'>\
               <int name='i' value='5'/><enum name='e' value='x' dataType='t'/>\
               <foreign xmlns='urn:other' name='z'/></timestamp></node></fields>"
        ));
        let f = parse_fields(&ok).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].kind.as_str(), f[1].kind.as_str()), ("int", "enum"));

        let bad =
            |body: &str| parse_fields(&parse(&format!("<fields {X} seqnr='1'>{body}</fields>")));
        assert!(matches!(
            bad("<node/>"),
            Err(ReqError::Missing { attr: "nodeId", .. })
        ));
        assert!(matches!(
            bad("<node nodeId='n'><timestamp/></node>"),
            Err(ReqError::Missing { attr: "value", .. })
        ));
        assert!(matches!(
            bad("<node nodeId='n'><timestamp value='now'/></node>"),
            Err(ReqError::Invalid {
                kind: "xs:dateTime",
                ..
            })
        ));
        assert!(matches!(
            bad("<node nodeId='n'><timestamp value='2026-03-07T16:24:30Z'><numeric name='x'/></timestamp></node>"),
            Err(ReqError::Missing { attr: "value", .. })
        ));
        assert!(parse_fields(&parse(&format!("<fields {X}/>"))).is_err());
        assert!(parse_fields(&parse(&format!("<failure {X} seqnr='1'/>"))).is_err());
        assert_eq!(
            seqnr_and_done(&parse(&format!("<done {X} seqnr='6'/>"))),
            Ok((6, true))
        );
        assert!(seqnr_and_done(&parse("<done xmlns='urn:x' seqnr='6'/>")).is_err());
    }

    #[test]
    fn datetimes_are_utc_with_z() {
        assert_eq!(format_datetime(t0()), "2026-03-07T16:24:30Z");
        let ms = t0() + chrono::Duration::milliseconds(5);
        assert_eq!(format_datetime(ms), "2026-03-07T16:24:30.005Z");
        // Below a millisecond is not worth a longer attribute.
        let us = t0() + chrono::Duration::microseconds(7);
        assert_eq!(format_datetime(us), "2026-03-07T16:24:30Z");
        assert_eq!(parse_datetime("2026-03-07T17:24:30+01:00"), Some(t0()));
        assert_eq!(parse_datetime(" 2026-03-07T16:24:30.000Z "), Some(t0()));
        assert_eq!(parse_datetime("2026-03-07"), None);
        assert_eq!(parse_datetime(""), None);
    }
}
