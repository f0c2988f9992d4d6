//! Faults under load: while a steady QoS 1 load flows from Mosquitto through the gateway, the
//! XMPP server restarts, the broker restarts, a Modbus server goes away and comes back, a serial
//! port is pulled out and plugged in again, and the gateway itself is killed with SIGKILL. The
//! gateway must recover by itself each time, its devices' presence must end right, and its store
//! must hold every reading that reached it: the tests count them in the SQLite file against what
//! the broker acknowledged to the publisher, what the Modbus server was asked, and what was
//! written to the serial port.
//!
//! Needs Prosody, Mosquitto, `socat` and the test venv with pymodbus
//! (`scripts/install-deps.sh`).

use crate::support;
use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::client::presence_status;
use crate::support::gateway_toml::{
    device, field, modbus_tcp_adapter, mqtt_adapter, register_field, serial_adapter, Section,
};
use crate::support::mosquitto::{Load, LoadReport};
use crate::support::{
    eventually, free_port, Gateway, GatewayToml, ModbusServer, Mosquitto, MqttRig, Prosody,
    PtyPair, TestClient, TIMEOUT,
};
use rusqlite::{Connection, OpenFlags};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::presence::Type as PresenceType;

/// The MQTT devices under load, one topic each.
const LOAD_DEVICES: [&str; 3] = ["load-0", "load-1", "load-2"];
/// One message to each load topic per tick: 3 × 20/s = 60 messages a second.
const LOAD_INTERVAL: Duration = Duration::from_millis(50);
/// Messages acknowledged by the broker before and after a fault (about 3 s of load each).
const LOAD_STEP: u64 = 180;
/// Reconnecting after an outage can take a few back-off steps.
const RECOVERY: Duration = Duration::from_secs(40);

fn topic(device: &str) -> String {
    format!("load/{device}/state")
}

fn topics() -> Vec<String> {
    LOAD_DEVICES.map(topic).to_vec()
}

/// The user bob, and a gateway with the load devices plus `extra` (one more adapter and its
/// device).
async fn rig(extra: Option<(Section, Section)>) -> MqttRig {
    MqttRig::start(&["bob"], |prosody, domain, mosquitto| {
        config(prosody, domain, mosquitto, extra)
    })
    .await
}

/// The load on every load topic, once it has reached every load device (so that they are
/// available before a fault).
async fn start_load(rig: &MqttRig, bob: &mut TestClient) -> Load {
    let load = rig.mosquitto.start_load(&topics(), LOAD_INTERVAL);
    for d in LOAD_DEVICES {
        wait_available(bob, &rig.jid(d), TIMEOUT).await;
    }
    load
}

fn config(
    prosody: &Prosody,
    domain: &str,
    mosquitto: &Mosquitto,
    extra: Option<(Section, Section)>,
) -> String {
    let toml = GatewayToml::new("fault test", prosody.component_toml(domain))
        .gateway("history", "1h")
        .gateway("commit_interval", "200ms")
        .access("read", &["bob@localhost"])
        .section("publish", Section::new().set("min_interval", "500ms"))
        .adapter(mqtt_adapter("broker", &mosquitto.url()).set("keep_alive", "5s"))
        .device(
            Section::new()
                .list("fleet", &LOAD_DEVICES)
                .set("adapter", "broker")
                .set("topic", "load/{id}/state")
                .field(field("seq").set("type", "integer").set("json", "/seq")),
        );
    match extra {
        Some((adapter, device)) => toml.adapter(adapter).device(device),
        None => toml,
    }
    .build()
}

fn from_device(p: &xmpp_parsers::presence::Presence, jid: &Jid) -> bool {
    p.from
        .as_ref()
        .is_some_and(|f| f.to_bare() == jid.to_bare())
}

/// The next available presence of `device` (buffered or new).
async fn wait_available(client: &mut TestClient, device: &Jid, timeout: Duration) -> String {
    let p = client
        .recv_presence(timeout, |p| {
            from_device(p, device) && p.type_ == PresenceType::None
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "{device} is not available; buffered:\n{}",
                client.dump_buffer()
            )
        });
    presence_status(&p).unwrap_or_default()
}

/// The next unavailable presence of `device` whose status contains `needle`.
async fn wait_unavailable(client: &mut TestClient, device: &Jid, needle: &str) -> String {
    let p = client
        .recv_presence(RECOVERY, |p| {
            from_device(p, device)
                && p.type_ == PresenceType::Unavailable
                && presence_status(p).is_some_and(|s| s.contains(needle))
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "{device} did not go unavailable with {needle:?}; buffered:\n{}",
                client.dump_buffer()
            )
        });
    presence_status(&p).unwrap_or_default()
}

/// Whether a presence from `device` of type `type_` is buffered (arrived, not yet taken).
async fn got_presence(client: &mut TestClient, device: &Jid, type_: PresenceType) -> bool {
    client
        .recv_presence(Duration::ZERO, |p| {
            from_device(p, device) && p.type_ == type_
        })
        .await
        .is_some()
}

/// Asserts that none of `devices` went unavailable in what `client` has received so far.
async fn assert_stayed_available(client: &mut TestClient, rig: &MqttRig, devices: &[&str]) {
    for d in devices {
        assert!(
            !got_presence(client, &rig.jid(d), PresenceType::Unavailable).await,
            "{d} went unavailable; buffered:\n{}",
            client.dump_buffer()
        );
    }
}

/// The gateway's store, read-only (the gateway may be running: WAL lets both in).
fn store(gw: &Gateway) -> Connection {
    Connection::open_with_flags(
        gw.state_dir().join("gateway.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open the gateway's store")
}

/// The integer readings of `device`'s `field`, in the order they were stored.
fn stored_ints(conn: &Connection, device: &str, field: &str) -> Vec<u64> {
    let mut stmt = conn
        .prepare("SELECT txt FROM readings WHERE device = ?1 AND field = ?2 ORDER BY rowid")
        .expect("prepare");
    stmt.query_map([device, field], |r| r.get::<_, String>(0))
        .expect("query")
        .map(|t| {
            t.expect("row")
                .parse()
                .expect("an integer reading is stored as its decimal text")
        })
        .collect()
}

/// Every load device's stored sequence numbers.
fn stored_load(gw: &Gateway) -> Vec<Vec<u64>> {
    let conn = store(gw);
    LOAD_DEVICES
        .iter()
        .map(|d| stored_ints(&conn, d, "seq"))
        .collect()
}

/// Every load device is available again to `client`.
async fn wait_load_available(client: &mut TestClient, rig: &MqttRig) {
    for d in LOAD_DEVICES {
        wait_available(client, &rig.jid(d), RECOVERY).await;
    }
}

/// Checks that the load still flows after the fault, then stops it.
async fn finish_load(mut load: Load) -> LoadReport {
    let after = load.acked() + LOAD_STEP;
    assert!(load.wait_acked(after, TIMEOUT).await, "the load flows on");
    load.stop().await
}

/// Waits until the store holds, for every load device, the last sequence number the broker
/// acknowledged (QoS 1 keeps the order, so everything before it has arrived too).
async fn wait_load_stored(gw: &Gateway, report: &LoadReport) {
    let last: Vec<Option<u64>> = LOAD_DEVICES
        .iter()
        .map(|d| report.acked(&topic(d)).last().copied())
        .collect();
    let arrived = eventually(RECOVERY, || {
        stored_load(gw)
            .iter()
            .zip(&last)
            .all(|(stored, last)| last.is_none_or(|l| stored.contains(&l)))
    })
    .await;
    assert!(
        arrived,
        "the last acknowledged messages {last:?} never reached the store"
    );
}

/// How one load device's stored sequence numbers compare with what the load sent.
struct Tally {
    /// Acknowledged by the broker, not in the store.
    missing: Vec<u64>,
    /// In the store, but neither acknowledged nor sent without an answer.
    unsent: Vec<u64>,
    /// Stored more than once (QoS 1 is at least once).
    duplicates: usize,
}

fn tally(device: &str, stored: &[u64], report: &LoadReport) -> Tally {
    let acked = report.acked(&topic(device));
    let unsure = report.unsure(&topic(device));
    let distinct: BTreeSet<u64> = stored.iter().copied().collect();
    Tally {
        missing: acked
            .iter()
            .copied()
            .filter(|s| !distinct.contains(s))
            .collect(),
        unsent: distinct
            .iter()
            .copied()
            .filter(|s| !acked.contains(s) && !unsure.contains(s))
            .collect(),
        duplicates: stored.len() - distinct.len(),
    }
}

/// With the broker up throughout: the store holds exactly the acknowledged messages, in order.
fn assert_load_stored_exactly(gw: &Gateway, report: &LoadReport) {
    assert!(
        report.unsure.is_empty() && report.not_sent == 0,
        "the broker was up: every message was acknowledged ({report:?})"
    );
    for (device, stored) in LOAD_DEVICES.iter().zip(stored_load(gw)) {
        let acked = report.acked(&topic(device));
        assert_eq!(
            stored.len(),
            acked.len(),
            "{device}: stored {} readings, the broker acknowledged {}",
            stored.len(),
            acked.len()
        );
        assert_eq!(
            stored, acked,
            "{device}: the store holds every message, in order"
        );
    }
}

#[tokio::test]
async fn a_prosody_restart_under_load_loses_no_reading_and_presence_comes_back() {
    let mut rig = rig(None).await;
    let mut bob = rig.subscriber("bob", &LOAD_DEVICES).await;
    let pid = rig.gateway.pid();
    let mut load = start_load(&rig, &mut bob).await;
    assert!(load.wait_acked(LOAD_STEP, TIMEOUT).await, "the load flows");

    // The server goes away with every session on it; the load goes on meanwhile.
    drop(bob);
    rig.prosody.restart().await;
    assert!(
        rig.gateway
            .wait_log("component connection restored", RECOVERY)
            .await,
        "the gateway reconnects to the server by itself"
    );
    // A fresh login sees every device available again (the gateway's announcement or its answer
    // to the server's probe: either needs the gateway back on the server).
    let mut bob = rig.user("bob").await;
    wait_load_available(&mut bob, &rig).await;
    let report = finish_load(load).await;

    // The XMPP link has nothing to do with recording: every message is in the store.
    wait_load_stored(&rig.gateway, &report).await;
    assert_eq!(rig.gateway.pid(), pid, "the same gateway process");
    assert!(rig.gateway.terminate().await.success());
    assert_load_stored_exactly(&rig.gateway, &report);
    eprintln!(
        "prosody restart: {} messages acknowledged and stored",
        report.total_acked()
    );
}

#[tokio::test]
async fn a_broker_restart_under_load_loses_no_acknowledged_message() {
    let mut rig = rig(None).await;
    let mut bob = rig.subscriber("bob", &LOAD_DEVICES).await;
    let pid = rig.gateway.pid();
    let mut load = start_load(&rig, &mut bob).await;
    assert!(load.wait_acked(LOAD_STEP, TIMEOUT).await, "the load flows");

    // SIGTERM: Mosquitto saves the gateway's session with whatever it still had queued for it.
    rig.mosquitto.stop().await;
    let port = rig.mosquitto.port();
    for d in LOAD_DEVICES {
        wait_unavailable(
            &mut bob,
            &rig.jid(d),
            &format!("MQTT broker 127.0.0.1:{port} unreachable"),
        )
        .await;
    }
    // Down long enough for the gateway's second attempt to fail (back-off) and for the load to
    // find no broker either.
    assert!(
        rig.gateway
            .wait_log("MQTT broker still unreachable", TIMEOUT)
            .await,
        "a second attempt failed while the broker was down"
    );
    // Forget the presences from before the outage, so that the next available ones are news.
    bob.drain();
    rig.mosquitto.start_again().await;
    wait_load_available(&mut bob, &rig).await;
    let report = finish_load(load).await;

    // Every message the broker acknowledged reaches the store, before, during (queued in the
    // saved session) and after the outage. A message whose PUBACK was lost with the broker may
    // or may not have arrived, and one the gateway took just before the broker went away may be
    // delivered twice (QoS 1 is at least once); nothing else may be there.
    wait_load_stored(&rig.gateway, &report).await;
    assert_eq!(rig.gateway.pid(), pid, "the same gateway process");
    assert!(rig.gateway.terminate().await.success());
    let mut duplicates = 0;
    for (device, stored) in LOAD_DEVICES.iter().zip(stored_load(&rig.gateway)) {
        let t = tally(device, &stored, &report);
        assert!(t.missing.is_empty(), "{device}: lost {:?}", t.missing);
        assert!(t.unsent.is_empty(), "{device}: never sent {:?}", t.unsent);
        duplicates += t.duplicates;
    }
    assert!(report.not_sent > 0, "the load ran into the outage");
    let log = rig.gateway.log_text();
    assert_eq!(log.matches("MQTT broker reachable again").count(), 1);
    eprintln!(
        "broker restart: {} acknowledged and stored, {} unsure, {} not sent while the broker was \
         down, {duplicates} delivered twice",
        report.total_acked(),
        report.unsure.values().map(Vec::len).sum::<usize>(),
        report.not_sent
    );
}

#[tokio::test]
async fn a_modbus_server_outage_under_load_is_recovered_and_every_answered_poll_is_stored() {
    let port = free_port();
    let mut server =
        ModbusServer::start(&["--tcp", &format!("127.0.0.1:{port}"), "--units", "1"]).await;
    let extra = (
        modbus_tcp_adapter("plc", &format!("127.0.0.1:{port}")).set("timeout", "1s"),
        device("meter", "plc")
            .set("poll", "200ms")
            .field(register_field("temp", "holding", 14).set("data_type", "float32")),
    );
    let mut rig = rig(Some(extra)).await;
    let meter = rig.jid("meter");
    let mut devices = LOAD_DEVICES.to_vec();
    devices.push("meter");
    let mut bob = rig.subscriber("bob", &devices).await;
    wait_available(&mut bob, &meter, TIMEOUT).await;
    let pid = rig.gateway.pid();
    let mut load = start_load(&rig, &mut bob).await;
    assert!(load.wait_acked(LOAD_STEP, TIMEOUT).await, "the load flows");
    assert!(
        eventually(TIMEOUT, || server.requests().len() >= 10).await,
        "the meter is polled"
    );

    server.stop().await;
    let reason = wait_unavailable(&mut bob, &meter, &format!("127.0.0.1:{port}")).await;
    eprintln!("modbus outage: meter unavailable: {reason}");
    // The load devices have nothing to do with the Modbus server. Forget the meter's presences
    // from before, so that the next available one is news.
    assert_stayed_available(&mut bob, &rig, &LOAD_DEVICES).await;
    bob.drain();
    server.spawn().await;
    wait_available(&mut bob, &meter, RECOVERY).await;
    // The meter may have said why it was down again, with a newer reason, before it came back;
    // from now on every device stays available.
    assert_stayed_available(&mut bob, &rig, &LOAD_DEVICES).await;
    bob.drain();
    assert!(
        rig.gateway.wait_log("Modbus link restored", TIMEOUT).await,
        "the gateway says the link is back"
    );
    let polled = server.requests().len();
    assert!(
        eventually(TIMEOUT, || server.requests().len() >= polled + 10).await,
        "the meter is polled again"
    );
    let report = finish_load(load).await;
    wait_load_stored(&rig.gateway, &report).await;
    assert_stayed_available(&mut bob, &rig, &devices).await;
    assert_eq!(rig.gateway.pid(), pid, "the same gateway process");
    assert!(rig.gateway.terminate().await.success());

    // Stopped, the gateway polls no more and its store is final: one reading per answered
    // request. A request the server logged can go unanswered only when the server stopped or
    // the gateway stopped while it was in flight: one request each at most.
    let requests = server
        .requests()
        .iter()
        .filter(|r| r.as_str() == "unit=1 fc=3 address=14 count=2")
        .count();
    assert_eq!(
        requests,
        server.requests().len(),
        "every request is the meter's poll: {:?}",
        server.requests()
    );
    let conn = store(&rig.gateway);
    let temps: Vec<f64> = conn
        .prepare("SELECT num FROM readings WHERE device = 'meter' AND field = 'temp'")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(temps.iter().all(|t| *t == 21.5), "{temps:?}");
    assert!(
        temps.len() <= requests && temps.len() + 2 >= requests,
        "{} readings stored for {requests} requests",
        temps.len()
    );
    drop(conn);
    assert_load_stored_exactly(&rig.gateway, &report);
    eprintln!(
        "modbus outage: {requests} requests, {} readings stored; {} MQTT messages stored",
        temps.len(),
        report.total_acked()
    );
}

#[tokio::test]
async fn a_serial_port_pulled_out_under_load_is_reopened_and_every_line_is_stored() {
    const LINES: u64 = 60;
    let mut pty = PtyPair::new().await;
    let extra = (
        serial_adapter("uart", pty.port(), "kv"),
        device("counter", "uart").field(field("n").set("type", "integer")),
    );
    let mut rig = rig(Some(extra)).await;
    let counter = rig.jid("counter");
    let mut devices = LOAD_DEVICES.to_vec();
    devices.push("counter");
    let mut bob = rig.subscriber("bob", &devices).await;
    let pid = rig.gateway.pid();
    let mut load = start_load(&rig, &mut bob).await;

    // Lines 1..=LINES, then the port goes away, then LINES+1..=2*LINES once it is back.
    let mut dev = pty.open_device();
    send_lines(&mut dev, 1..=LINES).await;
    assert!(
        eventually(TIMEOUT, || stored_ints(
            &store(&rig.gateway),
            "counter",
            "n"
        )
        .len()
            == LINES as usize)
        .await,
        "the lines before the loss are stored"
    );
    assert!(load.wait_acked(LOAD_STEP, TIMEOUT).await, "the load flows");
    drop(dev);
    pty.kill().await;
    wait_unavailable(&mut bob, &counter, "serial port").await;
    assert_stayed_available(&mut bob, &rig, &LOAD_DEVICES).await;
    bob.drain();
    pty.start().await;
    // Available means the gateway has the port open again: what is written now reaches it.
    wait_available(&mut bob, &counter, RECOVERY).await;
    assert_stayed_available(&mut bob, &rig, &LOAD_DEVICES).await;
    bob.drain();
    assert!(rig.gateway.wait_log("Serial port is back", TIMEOUT).await);
    let mut dev = pty.open_device();
    send_lines(&mut dev, LINES + 1..=2 * LINES).await;
    assert!(
        eventually(TIMEOUT, || stored_ints(
            &store(&rig.gateway),
            "counter",
            "n"
        )
        .len()
            >= 2 * LINES as usize)
        .await,
        "the lines after the reopening are stored"
    );
    let report = finish_load(load).await;
    wait_load_stored(&rig.gateway, &report).await;
    assert_stayed_available(&mut bob, &rig, &devices).await;
    assert_eq!(rig.gateway.pid(), pid, "the same gateway process");
    assert!(rig.gateway.terminate().await.success());
    assert_eq!(
        stored_ints(&store(&rig.gateway), "counter", "n"),
        (1..=2 * LINES).collect::<Vec<_>>(),
        "every line written before the loss and after the return, once, in order"
    );
    assert_load_stored_exactly(&rig.gateway, &report);
}

/// Writes `n=<i>` lines, a few at a time, as a sensor printing steadily would.
async fn send_lines(dev: &mut support::pty::Device, range: std::ops::RangeInclusive<u64>) {
    // A leading newline ends whatever partial line the port may hold from before.
    dev.send(b"\n").await;
    let lines: Vec<u64> = range.collect();
    for chunk in lines.chunks(5) {
        let text: String = chunk.iter().map(|i| format!("n={i}\n")).collect();
        dev.send(text.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_gateway_killed_under_load_reopens_its_store_and_announces_presence_again() {
    let mut rig = rig(None).await;
    let mut bob = rig.subscriber("bob", &LOAD_DEVICES).await;
    let mut load = start_load(&rig, &mut bob).await;
    assert!(load.wait_acked(LOAD_STEP, TIMEOUT).await, "the load flows");
    assert!(
        eventually(TIMEOUT, || stored_load(&rig.gateway)
            .iter()
            .all(|s| !s.is_empty()))
        .await,
        "readings are committed"
    );

    rig.gateway.kill();
    // What was committed before the kill is there, in a consistent file.
    let at_kill = {
        let conn = store(&rig.gateway);
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity check");
        assert_eq!(check, "ok");
        LOAD_DEVICES
            .iter()
            .map(|d| stored_ints(&conn, d, "seq"))
            .collect::<Vec<_>>()
    };

    // Started again on the same state dir: it opens the store, remembers bob's subscriptions
    // and tells him unprompted.
    bob.drain();
    rig.gateway.start();
    assert!(rig.gateway.wait_ready(TIMEOUT).await, "the store opens");
    wait_load_available(&mut bob, &rig).await;
    let report = finish_load(load).await;
    wait_load_stored(&rig.gateway, &report).await;
    assert!(rig.gateway.terminate().await.success());

    // Per device: the committed readings stay as they were; the broker redelivers what the
    // killed gateway had not acknowledged. Only readings acknowledged but not yet committed
    // (the last commit window) can be lost: one run right after the last committed one.
    assert!(report.unsure.is_empty() && report.not_sent == 0);
    let mut lost_total = 0;
    for ((device, stored), before) in LOAD_DEVICES
        .iter()
        .zip(stored_load(&rig.gateway))
        .zip(&at_kill)
    {
        assert!(
            stored.starts_with(before),
            "{device}: the readings committed before the kill are kept"
        );
        let t = tally(device, &stored, &report);
        assert!(t.unsent.is_empty(), "{device}: never sent {:?}", t.unsent);
        let lost = t.missing;
        let last_committed = before.last().copied().unwrap_or(0);
        if let (Some(first), Some(last)) = (lost.first(), lost.last()) {
            assert_eq!(
                *first,
                last_committed + 1,
                "{device}: lost {lost:?} after {last_committed}"
            );
            assert_eq!(
                lost.len() as u64,
                last - first + 1,
                "{device}: lost one run only: {lost:?}"
            );
        }
        lost_total += lost.len();
    }
    eprintln!(
        "kill -9: {} acknowledged, {} committed before the kill, {lost_total} lost in the last \
         commit window",
        report.total_acked(),
        at_kill.iter().map(Vec::len).sum::<usize>()
    );
}
