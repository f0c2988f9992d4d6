//! The store: exact historical readouts, the audit trail of writes, and a kill -9 in the middle
//! of a flow of readings.

use crate::support;
use std::time::Duration;

use crate::support::gateway_toml::{device, field, integer_setting, sim_adapter};
use crate::support::{Gateway, GatewayToml, Prosody, ProsodyOpts, TestClient, TIMEOUT};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

const NS_SD: &str = "urn:xmpp:iot:sensordata";
const NS_CTL: &str = "urn:xmpp:iot:control";

fn config(prosody: &Prosody, domain: &str) -> String {
    GatewayToml::new("store gateway", prosody.component_toml(domain))
        .gateway("history", "1h")
        .gateway("commit_interval", "100ms")
        .access("control", &["alice@localhost"])
        .adapter(sim_adapter())
        .device(
            device("thermo", "sim").set("poll", "50ms").field(
                field("temperature")
                    .set("unit", "°C")
                    .set("generator", "random")
                    .set("min", 10.0)
                    .set("max", 20.0),
            ),
        )
        .device(
            device("relay", "sim")
                .set("poll", "1s")
                .field(integer_setting("level", 5)),
        )
        .build()
}

fn db(gw: &Gateway) -> rusqlite::Connection {
    rusqlite::Connection::open(gw.state_dir().join("gateway.db")).expect("open the store")
}

/// Every (timestamp, value) the store holds for thermo's temperature in [from, to] (ms).
fn stored(conn: &rusqlite::Connection, from: i64, to: i64) -> Vec<(i64, f64)> {
    let mut stmt = conn
        .prepare("SELECT ts, num FROM readings WHERE device = 'thermo' AND field = 'temperature' AND ts >= ?1 AND ts <= ?2 ORDER BY ts")
        .expect("query");
    stmt.query_map([from, to], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn parse_ts(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("timestamp")
        .timestamp_millis()
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("time")
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[tokio::test]
async fn a_historical_readout_returns_exactly_the_stored_samples() {
    let prosody = Prosody::start(ProsodyOpts::new().random_component()).await;
    prosody.register("alice", "pw").await;
    let domain = prosody.component_domain().to_owned();
    let mut gw = Gateway::spawn(&config(&prosody, &domain));
    let thermo = Jid::new(&format!("thermo@{domain}")).expect("jid");
    let mut alice = TestClient::connect(&prosody, "alice", "pw").await;
    assert!(
        alice.wait_answering(&thermo, Duration::from_secs(10)).await,
        "the gateway is up"
    );

    // Let readings accumulate, then stop the gateway so the store is final.
    let start = chrono::Utc::now().timestamp_millis();
    assert!(
        support::eventually(Duration::from_secs(10), || stored(
            &db(&gw),
            start,
            i64::MAX
        )
        .len()
            >= 30)
        .await
    );
    assert!(gw.terminate().await.success());
    let all = stored(&db(&gw), start, i64::MAX);
    let (from, to) = (all[5].0, all[20].0);
    let expected = stored(&db(&gw), from, to);
    gw.start();
    assert!(
        alice.wait_answering(&thermo, Duration::from_secs(10)).await,
        "the gateway is back"
    );

    let req = format!(
        "<req xmlns='{NS_SD}' seqnr='4' historical='true' from='{}' to='{}'/>",
        iso(from),
        iso(to)
    );
    alice
        .iq_get(&thermo, req.parse::<Element>().expect("xml"))
        .await
        .expect("accepted");
    let mut got = Vec::new();
    loop {
        let m = alice
            .recv_message(TIMEOUT, |m| {
                m.payloads
                    .iter()
                    .any(|p| p.is("fields", NS_SD) && p.attr("seqnr") == Some("4"))
            })
            .await
            .expect("fields messages until done");
        let fields = m
            .payloads
            .iter()
            .find(|p| p.is("fields", NS_SD))
            .expect("fields");
        for node in fields.children() {
            for ts in node.children() {
                let t = parse_ts(ts.attr("value").expect("timestamp value"));
                for f in ts.children() {
                    let v: f64 = f.attr("value").expect("value").parse().expect("number");
                    got.push((t, v));
                }
            }
        }
        if fields.attr("done") == Some("true") {
            break;
        }
    }
    assert_eq!(
        got, expected,
        "the readout must be exactly the stored samples in [from, to]"
    );
}

#[tokio::test]
async fn every_write_is_audited() {
    let prosody = Prosody::start(ProsodyOpts::new().random_component()).await;
    prosody.register("alice", "pw").await;
    let domain = prosody.component_domain().to_owned();
    let mut gw = Gateway::spawn(&config(&prosody, &domain));
    assert!(
        gw.wait_upstream(TIMEOUT).await,
        "gateway connected upstream"
    );
    let relay = Jid::new(&format!("relay@{domain}")).expect("jid");
    let mut alice = TestClient::connect(&prosody, "alice", "pw").await;
    let set = format!("<set xmlns='{NS_CTL}'><int name='level' value='9'/></set>");
    alice
        .iq_set(&relay, set.parse::<Element>().expect("xml"))
        .await
        .expect("setResponse");
    assert!(gw.terminate().await.success());
    let conn = db(&gw);
    let row: (String, String, String, Option<String>, String, String) = conn
        .query_row(
            "SELECT requester, device, field, old, new, result FROM audit",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .expect("one audit row");
    assert_eq!(row.0, alice.full_jid().to_string());
    assert_eq!((row.1.as_str(), row.2.as_str()), ("relay", "level"));
    assert_eq!(row.3.as_deref(), Some("5"));
    assert_eq!((row.4.as_str(), row.5.as_str()), ("9", "ok"));
}

#[tokio::test]
async fn a_killed_gateway_leaves_a_store_that_opens_with_its_committed_readings() {
    let prosody = Prosody::start(ProsodyOpts::new().random_component()).await;
    prosody.register("alice", "pw").await;
    let domain = prosody.component_domain().to_owned();
    let mut gw = Gateway::spawn(&config(&prosody, &domain));
    assert!(
        gw.wait_upstream(TIMEOUT).await,
        "gateway connected upstream"
    );
    let thermo = Jid::new(&format!("thermo@{domain}")).expect("jid");
    let mut alice = TestClient::connect(&prosody, "alice", "pw").await;
    alice.subscribe(&thermo).await;
    alice
        .recv_presence_from(&thermo, xmpp_parsers::presence::Type::None, TIMEOUT)
        .await
        .expect("available");

    assert!(
        support::eventually(Duration::from_secs(10), || stored(&db(&gw), 0, i64::MAX)
            .len()
            >= 40)
        .await
    );
    gw.kill();
    let conn = db(&gw);
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check");
    assert_eq!(check, "ok");
    let before = stored(&conn, 0, i64::MAX).len();
    assert!(
        before >= 40,
        "committed readings survive a kill -9 ({before})"
    );
    drop(conn);

    // It starts again on the same store, remembers alice, and keeps recording.
    alice.drain();
    gw.start();
    alice
        .recv_presence_from(&thermo, xmpp_parsers::presence::Type::None, TIMEOUT)
        .await
        .expect("subscribers get presence again");
    assert!(
        support::eventually(Duration::from_secs(10), || stored(&db(&gw), 0, i64::MAX)
            .len()
            > before)
        .await
    );
}
