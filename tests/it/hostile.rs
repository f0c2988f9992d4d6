//! Hostile input from the XMPP side, in both modes, against the real Prosody: a user in no
//! access list sends what a stock server forwards (long attributes and text, a long namespace,
//! deep nesting, thousands of attributes, escaped special characters, unknown payloads, answers
//! that must not be answered) and then floods. The upstream session must stay as it was (no
//! reconnect, no new session on the server), every `get`/`set` must get exactly one answer,
//! and an allowed user's readouts must still be answered during the flood.
//!
//! The gateway runs with `max_stanza_size = 131072`, so that the 200 KiB stanzas (which
//! Prosody's 256 KiB c2s limit lets through) exercise the path above the limit, and the
//! 9 KiB and 64 KiB ones the path below it.

use crate::support;
use std::net::SocketAddr;
use std::time::Duration;

use crate::support::gateway_toml::{self, client_xmpp, field, sim_adapter};
use crate::support::metrics::metric;
use crate::support::stranger::condition;
use crate::support::{
    free_port, Gateway, GatewayOpts, GatewayToml, Prosody, ProsodyOpts, Stranger, TestClient,
    TIMEOUT,
};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza::Stanza;

const NS_SD: &str = "urn:xmpp:iot:sensordata";
/// Generous: a loaded CI machine answering a few thousand stanzas.
const FLOOD_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_STANZA_SIZE: usize = 131_072;

struct Rig {
    prosody: Prosody,
    gateway: Gateway,
    metrics: SocketAddr,
    /// The one device, `s1`.
    device: String,
    /// What a new upstream session looks like in Prosody's log, and how many there were.
    session_marker: &'static str,
    sessions_at_start: usize,
}

impl Rig {
    async fn component() -> Rig {
        let prosody = Prosody::start(ProsodyOpts::new().random_component()).await;
        for user in ["alice", "bob"] {
            prosody.register(user, "pw").await;
        }
        let domain = prosody.component_domain().to_owned();
        let xmpp = prosody.component_toml(&domain);
        Rig::spawn(
            prosody,
            &xmpp,
            GatewayOpts::new(),
            format!("s1@{domain}"),
            "External component successfully authenticated",
        )
        .await
    }

    async fn client() -> Rig {
        let prosody = Prosody::start(ProsodyOpts::new()).await;
        for (user, pw) in [("gw", "gw-pw"), ("alice", "pw"), ("bob", "pw")] {
            prosody.register(user, pw).await;
        }
        let xmpp = client_xmpp(prosody.c2s_addr(), prosody.ca_path());
        Rig::spawn(
            prosody,
            &xmpp,
            GatewayOpts::new().file("gw.pass", "gw-pw\n"),
            "gw@localhost/s1".to_owned(),
            "Authenticated as gw@localhost",
        )
        .await
    }

    async fn spawn(
        prosody: Prosody,
        xmpp: &str,
        opts: GatewayOpts,
        device: String,
        session_marker: &'static str,
    ) -> Rig {
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        // alice may read the one device, `s1`, which is never polled again after the start.
        let config = GatewayToml::upstream(xmpp)
            .xmpp("max_stanza_size", MAX_STANZA_SIZE as i64)
            .metrics(metrics)
            .access("read", &["alice@localhost"])
            .publish_every_reading()
            .adapter(sim_adapter())
            .device(
                gateway_toml::device("s1", "sim").set("poll", "1h").field(
                    field("temperature")
                        .set("unit", "°C")
                        .set("generator", "constant")
                        .set("value", 21.5),
                ),
            )
            .build();
        let mut gateway = Gateway::spawn_with(&config, opts);
        assert!(gateway.wait_upstream(TIMEOUT).await, "gateway upstream");
        let mut rig = Rig {
            prosody,
            gateway,
            metrics,
            device,
            session_marker,
            sessions_at_start: 0,
        };
        // The device answers (its session is bound, in client mode) before anything starts.
        let mut alice = rig.alice().await;
        let jid = Jid::new(&rig.device).expect("device jid");
        assert!(alice.wait_answering(&jid, TIMEOUT).await, "device answers");
        rig.sessions_at_start = rig.sessions();
        assert!(
            rig.sessions_at_start > 0,
            "no `{}` in Prosody's log",
            rig.session_marker
        );
        rig
    }

    async fn alice(&self) -> TestClient {
        TestClient::connect(&self.prosody, "alice", "pw").await
    }

    async fn bob(&self) -> Stranger {
        Stranger::connect(self.prosody.c2s_addr(), "localhost", "bob", "pw").await
    }

    /// Upstream sessions the server has seen authenticate so far.
    fn sessions(&self) -> usize {
        self.prosody.log_text().matches(self.session_marker).count()
    }

    /// Nothing about the upstream changed: no reconnect as the gateway counts it, no stream
    /// given up, no new session as the server logs it.
    async fn assert_upstream_untouched(&self) {
        assert_eq!(metric(self.metrics, "upstream_reconnects_total").await, 0.0);
        assert_eq!(metric(self.metrics, "upstream_unreadable_total").await, 0.0);
        assert_eq!(metric(self.metrics, "upstream_connected").await, 1.0);
        assert_eq!(
            self.sessions(),
            self.sessions_at_start,
            "a new upstream session on the server"
        );
        let log = self.gateway.log_text();
        assert!(!log.contains("connection lost"), "{log}");
        assert!(!log.contains("panicked"), "{log}");
    }
}

/// One hostile stanza: its XML, and the id under which an answer is expected (get/set) or
/// `None` (no answer may come).
struct Case {
    answer_id: Option<String>,
    xml: String,
}

fn iq(type_: &str, id: &str, to: &str, payload: &str) -> Case {
    Case {
        answer_id: matches!(type_, "get" | "set").then(|| id.to_owned()),
        xml: format!("<iq type='{type_}' id='{id}' to='{to}'>{payload}</iq>"),
    }
}

fn no_answer(xml: String) -> Case {
    Case {
        answer_id: None,
        xml,
    }
}

/// The corpus, addressed to `to`.
fn corpus(to: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for (kib, tag) in [(9, "9k"), (64, "64k"), (200, "200k")] {
        let long = "A".repeat(kib * 1024);
        cases.push(iq(
            "set",
            &format!("attr-{tag}"),
            to,
            &format!("<big xmlns='urn:x:big' a='{long}'/>"),
        ));
        cases.push(iq(
            "get",
            &format!("text-{tag}"),
            to,
            &format!("<big xmlns='urn:x:big'>{long}</big>"),
        ));
        cases.push(no_answer(format!(
            "<message to='{to}' type='chat' id='msg-{tag}'><body>{long}</body></message>"
        )));
        cases.push(no_answer(format!(
            "<presence to='{to}' id='pres-{tag}'><x xmlns='urn:x:big' a='{long}'/></presence>"
        )));
    }
    let ns = format!("urn:x:{}", "n".repeat(2000));
    cases.push(iq("get", "long-ns", to, &format!("<q xmlns='{ns}'/>")));
    cases.push(iq(
        "set",
        "deep-1000",
        to,
        &format!(
            "<a xmlns='urn:x:deep'>{}{}</a>",
            "<a>".repeat(999),
            "</a>".repeat(999)
        ),
    ));
    let attrs: String = (0..3000).map(|i| format!(" a{i}='{i}'")).collect();
    cases.push(iq(
        "get",
        "attrs-3000",
        to,
        &format!("<q xmlns='urn:x:attrs'{attrs}/>"),
    ));
    // Every character XML makes special, escaped, in attributes and text; and characters at
    // the edges of what XML allows.
    let special = "&lt;&gt;&amp;&apos;&quot;&#x9;&#xA;&#xD;&#xFFFD;&#x10FFFF;]]&gt;";
    cases.push(iq(
        "get",
        "escaped",
        to,
        &format!("<req xmlns='{NS_SD}' seqnr='{special}' momentary='true'>{special}</req>"),
    ));
    cases.push(no_answer(format!(
        "<message to='{to}' type='chat' id='msg-escaped'><body>{special}</body><x xmlns='urn:x:{special}'/></message>"
    )));
    // Unknown payloads in every kind of stanza.
    cases.push(iq(
        "get",
        "unknown-get",
        to,
        "<x xmlns='urn:x:unknown'><y/></x>",
    ));
    cases.push(iq("set", "unknown-set", to, "<x xmlns='urn:x:unknown'/>"));
    cases.push(no_answer(format!(
        "<message to='{to}' id='msg-unknown'><x xmlns='urn:x:unknown'/></message>"
    )));
    cases.push(no_answer(format!(
        "<presence to='{to}' id='pres-unknown'><x xmlns='urn:x:unknown'/></presence>"
    )));
    // IQ requests that are not valid IQs: no payload, two payloads.
    cases.push(iq("get", "no-payload", to, ""));
    cases.push(iq(
        "set",
        "two-payloads",
        to,
        "<a xmlns='urn:x:a'/><b xmlns='urn:x:b'/>",
    ));
    // Bad XEP-0323 and XEP-0325 requests.
    cases.push(iq(
        "get",
        "bad-req",
        to,
        &format!("<req xmlns='{NS_SD}' seqnr='x'/>"),
    ));
    cases.push(iq(
        "set",
        "bad-set",
        to,
        "<set xmlns='urn:xmpp:iot:control'><int name='temperature' value='NaN'/></set>",
    ));
    // Answers are never answered.
    cases.push(iq("result", "result-1", to, ""));
    cases.push(iq(
        "error",
        "error-1",
        to,
        "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
    ));
    cases.push(iq(
        "result",
        "result-big",
        to,
        &format!("<x xmlns='urn:x' a='{}'/>", "A".repeat(200 * 1024)),
    ));
    cases
}

async fn corpus_leaves_the_upstream_untouched(rig: Rig) {
    let mut bob = rig.bob().await;
    let cases = corpus(&rig.device);
    for case in &cases {
        bob.send_raw(&case.xml).await;
    }
    // The gateway handles stanzas in order: once this is answered, so is everything before it.
    let last = iq("get", "last", &rig.device, "<ping xmlns='urn:xmpp:ping'/>");
    bob.send_raw(&last.xml).await;
    let mut ids: Vec<String> = cases.iter().filter_map(|c| c.answer_id.clone()).collect();
    ids.push("last".into());
    let answers = bob.answers(&ids, FLOOD_TIMEOUT).await;
    for (id, answer) in ids.iter().zip(&answers) {
        assert_eq!(
            answer.attr("type"),
            Some("error"),
            "a stranger gets errors, never data: {id}: {}",
            String::from(answer)
        );
        let cond = condition(answer).unwrap_or_default();
        let want: &[&str] = match id.as_str() {
            // Above max_stanza_size, or nested too deeply: skipped unread.
            "attr-200k" | "text-200k" | "deep-1000" => &["policy-violation"],
            // Not valid IQs: the gateway (or, in client mode, the server) refuses them.
            "no-payload" | "two-payloads" => &["bad-request", "service-unavailable"],
            // Everything else reaches the access check.
            _ => &["forbidden"],
        };
        assert!(
            want.contains(&cond.as_str()),
            "{id}: {cond}: {}",
            String::from(answer)
        );
    }
    let unclaimed = bob.unclaimed();
    assert!(unclaimed.is_empty(), "answers to answers: {unclaimed:?}");
    rig.assert_upstream_untouched().await;
    assert!(metric(rig.metrics, "stanzas_rejected_total").await >= 3.0);

    // The device still serves those it should.
    let mut alice = rig.alice().await;
    let req = Element::builder("req", NS_SD)
        .attr(
            xmpp_parsers::minidom::rxml::xml_ncname!("seqnr").to_owned(),
            "1",
        )
        .attr(
            xmpp_parsers::minidom::rxml::xml_ncname!("momentary").to_owned(),
            "true",
        )
        .build();
    let accepted = alice
        .iq_get(Jid::new(&rig.device).expect("jid"), req)
        .await
        .expect("alice may read")
        .expect("payload");
    assert!(
        accepted.is("accepted", NS_SD),
        "{}",
        String::from(&accepted)
    );
    rig.assert_upstream_untouched().await;
}

#[tokio::test]
async fn component_mode_corpus_leaves_the_upstream_untouched() {
    corpus_leaves_the_upstream_untouched(Rig::component().await).await;
}

#[tokio::test]
async fn client_mode_corpus_leaves_the_upstream_untouched() {
    corpus_leaves_the_upstream_untouched(Rig::client().await).await;
}

/// 2,000 mixed malformed IQs from bob as fast as the socket takes them, alice's readouts during
/// it: every IQ answered, alice's readouts too. Prints the readout latencies.
async fn flood_starves_nobody(rig: Rig, mode: &str) {
    const FLOOD: usize = 2000;
    let mut bob = rig.bob().await;
    let mut alice = rig.alice().await;
    let device = Jid::new(&rig.device).expect("jid");
    let mut ids = Vec::with_capacity(FLOOD);
    let mut batch = String::new();
    for i in 0..FLOOD {
        let id = format!("f{i}");
        let payload = match i % 8 {
            0 => "<x xmlns='urn:x:unknown'/>".to_owned(),
            1 => format!("<req xmlns='{NS_SD}'/>"),
            2 => format!("<req xmlns='{NS_SD}' seqnr='{i}' momentary='maybe'/>"),
            3 => "<set xmlns='urn:xmpp:iot:control'><boolean name='x' value='2'/></set>".to_owned(),
            4 => format!("<x xmlns='urn:x:{}'/>", "n".repeat(500)),
            5 if i % 80 == 5 => format!("<x xmlns='urn:x' a='{}'/>", "A".repeat(20_000)),
            6 if i % 80 == 6 => format!(
                "<a xmlns='urn:x'>{}{}</a>",
                "<a>".repeat(300),
                "</a>".repeat(300)
            ),
            _ => "<query xmlns='http://jabber.org/protocol/disco#info'/>".to_owned(),
        };
        let type_ = if i % 2 == 0 { "get" } else { "set" };
        batch.push_str(&iq(type_, &id, &rig.device, &payload).xml);
        ids.push(id);
    }
    let flood = async {
        bob.send_raw(&batch).await;
        bob.answers(&ids, FLOOD_TIMEOUT).await
    };
    let readouts = async {
        let mut latencies = Vec::new();
        for n in 0..10 {
            let seqnr = (100 + n).to_string();
            let req = Element::builder("req", NS_SD)
                .attr(
                    xmpp_parsers::minidom::rxml::xml_ncname!("seqnr").to_owned(),
                    seqnr.as_str(),
                )
                .attr(
                    xmpp_parsers::minidom::rxml::xml_ncname!("momentary").to_owned(),
                    "true",
                )
                .build();
            let started = tokio::time::Instant::now();
            let answer = alice
                .iq(
                    Iq::Get {
                        from: None,
                        to: Some(device.clone()),
                        id: format!("r{n}"),
                        payload: req,
                    },
                    FLOOD_TIMEOUT,
                )
                .await
                .unwrap_or_else(|| panic!("alice's readout {n} unanswered during the flood"));
            assert!(matches!(answer, Iq::Result { .. }), "{answer:?}");
            latencies.push(started.elapsed());
        }
        latencies
    };
    let (answers, latencies) = tokio::join!(flood, readouts);
    assert_eq!(answers.len(), FLOOD);
    let mut shed = 0;
    for a in &answers {
        assert_eq!(a.attr("type"), Some("error"), "{}", String::from(a));
        if condition(a).as_deref() == Some("resource-constraint") {
            shed += 1;
        }
    }
    let max = latencies.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{mode}: {FLOOD} flood IQs all answered ({shed} with resource-constraint); \
         alice's readout answers during the flood: max {max:?}, all {latencies:?}"
    );
    // Nothing but answers reached alice from the gateway's side because of bob.
    let stray: Vec<String> = alice
        .drain()
        .iter()
        .filter(|s| matches!(s, Stanza::Presence(_)))
        .map(support::client::show)
        .collect();
    assert!(stray.len() <= 2, "presence storm: {stray:?}");
    rig.assert_upstream_untouched().await;
    assert_eq!(
        metric(rig.metrics, "stanzas_rate_limited_total").await,
        f64::from(shed)
    );
}

#[tokio::test]
async fn component_mode_flood_starves_nobody() {
    flood_starves_nobody(Rig::component().await, "component").await;
}

#[tokio::test]
async fn client_mode_flood_starves_nobody() {
    flood_starves_nobody(Rig::client().await, "client").await;
}
