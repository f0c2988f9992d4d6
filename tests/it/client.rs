//! Client mode end to end: the gateway logs its devices in to a real server over STARTTLS,
//! trusting the test CA through `ca_file` only, and users see them as ordinary contacts. The
//! interoperability tests run against Prosody and ejabberd.
//! Also the `read` and `set` commands, which use the same client.

use crate::per_server;
use crate::support;
use std::time::Duration;

use crate::support::client::presence_status;
use crate::support::gateway_toml::{
    client_xmpp, device, field, integer_setting, sim_adapter, stepping_thermo, xmpp, Section,
};
use crate::support::{
    tail, Ejabberd, EjabberdOpts, Gateway, GatewayOpts, GatewayToml, Kind, Server, ServerOpts,
    TestClient, TIMEOUT,
};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza_error::DefinedCondition;

const NS_SD: &str = "urn:xmpp:iot:sensordata";

async fn prosody(kind: Kind) -> Server {
    let prosody = Server::start(kind, ServerOpts::new()).await;
    for (user, pw) in [
        ("gw", "gw-pw"),
        ("relay", "relay-pw"),
        ("alice", "pw"),
        ("eve", "pw"),
    ] {
        prosody.register(user, pw).await;
    }
    prosody
}

/// alice may read and control; `thermo` steps through its temperatures every 300 ms on the
/// gateway's account, `relay` has an account of its own.
fn config(prosody: &Server, ca_file: &str) -> String {
    GatewayToml::new(
        "client-mode gateway",
        client_xmpp(prosody.c2s_addr(), ca_file),
    )
    .access("read", &["alice@localhost"])
    .access("control", &["alice@localhost"])
    .publish_every_reading()
    .adapter(sim_adapter())
    .device(stepping_thermo("300ms"))
    .device(
        device("relay", "sim")
            .set("jid", "relay@localhost")
            .set("password_file", "relay.pass")
            .field(integer_setting("level", 1)),
    )
    .build()
}

fn gateway(prosody: &Server, ca_file: &str) -> Gateway {
    Gateway::spawn_with(
        &config(prosody, ca_file),
        GatewayOpts::new()
            .file("gw.pass", "gw-pw\n")
            .file("relay.pass", "relay-pw\n"),
    )
}

fn jid(s: &str) -> Jid {
    Jid::new(s).expect("jid")
}

fn from_is(p: &Presence, want: &str) -> bool {
    p.from.as_ref().is_some_and(|f| f.to_string() == want)
}

/// alice subscribes to `account`, approves the gateway's ask-back, and waits for the presence of
/// `resource` (a full JID) with a status.
pub(crate) async fn subscribe(alice: &mut TestClient, account: &str, full: &str) -> Presence {
    alice.subscribe(jid(account)).await;
    alice
        .recv_presence_from(jid(account), PresenceType::Subscribed, TIMEOUT)
        .await
        .expect("subscription approved");
    alice
        .recv_presence_from(jid(account), PresenceType::Subscribe, TIMEOUT)
        .await
        .expect("the gateway asks back");
    alice
        .send(Presence::subscribed().with_to(jid(account)))
        .await;
    alice
        .recv_presence(TIMEOUT, |p| {
            from_is(p, full) && p.type_ == PresenceType::None && presence_status(p).is_some()
        })
        .await
        .unwrap_or_else(|| panic!("no presence from {full}"))
}

async fn devices_log_in_over_starttls_and_behave_like_component_devices(kind: Kind) {
    let prosody = prosody(kind).await;
    let ca = prosody.ca_path().display().to_string();
    let mut gw = gateway(&prosody, &ca);
    assert!(gw.wait_ready(Duration::from_secs(20)).await, "READY=1");
    assert!(
        gw.wait_log("XMPP session online", Duration::from_secs(20))
            .await,
        "{}",
        gw.log_text()
    );

    let mut alice = TestClient::connect(&prosody, "alice", "pw").await;
    assert!(wait_online(&mut alice, "gw@localhost/thermo").await);
    assert!(wait_online(&mut alice, "relay@localhost/xmpp-iot-gateway").await);
    let p = subscribe(&mut alice, "gw@localhost", "gw@localhost/thermo").await;
    assert!(
        presence_status(&p).is_some_and(|s| s.contains("temperature")),
        "{p:?}"
    );

    // The same handlers as in component mode: disco, ping, a momentary readout.
    let thermo = jid("gw@localhost/thermo");
    let info = alice
        .iq_get(
            &thermo,
            "<query xmlns='http://jabber.org/protocol/disco#info'/>"
                .parse::<Element>()
                .expect("xml"),
        )
        .await
        .expect("disco result")
        .expect("payload");
    assert!(info.children().any(|c| c.attr("var") == Some(NS_SD)));
    alice
        .iq_get(
            &thermo,
            "<ping xmlns='urn:xmpp:ping'/>"
                .parse::<Element>()
                .expect("xml"),
        )
        .await
        .expect("pong");
    let req: Element = format!("<req xmlns='{NS_SD}' seqnr='1' momentary='true'/>")
        .parse()
        .expect("xml");
    alice.iq_get(&thermo, req).await.expect("accepted");
    let m = alice
        .recv_message(TIMEOUT, |m| {
            m.payloads.iter().any(|p| p.is("fields", NS_SD))
        })
        .await
        .expect("fields");
    let fields = m
        .payloads
        .iter()
        .find(|p| p.is("fields", NS_SD))
        .expect("fields");
    assert_eq!(fields.attr("done"), Some("true"));

    // A device on an account of its own.
    let p = subscribe(
        &mut alice,
        "relay@localhost",
        "relay@localhost/xmpp-iot-gateway",
    )
    .await;
    assert!(
        presence_status(&p).is_some_and(|s| s.contains("level")),
        "{p:?}"
    );

    // Strangers are refused.
    let mut eve = TestClient::connect(&prosody, "eve", "pw").await;
    eve.subscribe(jid("gw@localhost")).await;
    eve.recv_presence_from(jid("gw@localhost"), PresenceType::Unsubscribed, TIMEOUT)
        .await
        .expect("refused");
    let err = eve
        .iq_get(
            &thermo,
            "<ping xmlns='urn:xmpp:ping'/>"
                .parse::<Element>()
                .expect("xml"),
        )
        .await
        .expect_err("forbidden");
    assert_eq!(err.defined_condition, DefinedCondition::Forbidden);
    assert!(
        !gw.log_text().contains("gw-pw"),
        "passwords never reach the log"
    );
}

async fn presence_returns_after_the_server_restarts(kind: Kind) {
    let mut prosody = prosody(kind).await;
    let ca = prosody.ca_path().display().to_string();
    let gw = gateway(&prosody, &ca);
    let mut alice = TestClient::connect(&prosody, "alice", "pw").await;
    assert!(wait_online(&mut alice, "gw@localhost/thermo").await);
    subscribe(&mut alice, "gw@localhost", "gw@localhost/thermo").await;

    drop(alice);
    prosody.restart().await;
    let mut alice = TestClient::connect(&prosody, "alice", "pw").await;
    alice
        .recv_presence(Duration::from_secs(45), |p| {
            from_is(p, "gw@localhost/thermo") && p.type_ == PresenceType::None
        })
        .await
        .expect("the device is back without a gateway restart");
    drop(gw);
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused() {
    let prosody = prosody(Kind::Prosody).await;
    // A CA of its own that did not sign the server's certificate.
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("other-ca.pem");
    let key = dir.path().join("other-ca.key");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Some Other CA",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&ca)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gw = gateway(&prosody, &ca.display().to_string());
    assert!(
        gw.wait_log("does not verify", Duration::from_secs(20))
            .await,
        "{}",
        gw.log_text()
    );
    assert!(
        !gw.log_text().contains("XMPP session online"),
        "no session may come up with an untrusted certificate"
    );
}

#[tokio::test]
async fn read_and_set_from_the_command_line() {
    let prosody = prosody(Kind::Prosody).await;
    let ca = prosody.ca_path().display().to_string();
    let _gw = gateway(&prosody, &ca);
    let pwfile = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(pwfile.path(), "pw\n").expect("write");
    let login = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend([
            "--jid".into(),
            "alice@localhost".into(),
            "--password-file".into(),
            pwfile.path().display().to_string(),
            "--ca-file".into(),
            ca.clone(),
            "--server".into(),
            prosody.c2s_addr().to_string(),
        ]);
        v
    };
    // Wait until the device's session is online (a ping answers).
    let mut alice = TestClient::connect(&prosody, "alice", "pw").await;
    assert!(wait_online(&mut alice, "gw@localhost/thermo").await);
    assert!(wait_online(&mut alice, "relay@localhost/xmpp-iot-gateway").await);

    let args = login(&["read", "gw@localhost/thermo"]);
    let out = Gateway::cli(None, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(out.success(), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("temperature") && out.stdout.contains("°C"),
        "{}",
        out.stdout
    );

    let args = login(&["read", "gw@localhost/thermo", "--json"]);
    let out = Gateway::cli(None, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(out.success(), "{}", out.stderr);
    assert!(
        out.stdout.trim_start().starts_with('{') && out.stdout.contains("\"name\":\"temperature\""),
        "{}",
        out.stdout
    );

    let args = login(&["set", "relay@localhost/xmpp-iot-gateway", "level=7"]);
    let out = Gateway::cli(None, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(out.success(), "{}{}", out.stdout, out.stderr);
    let args = login(&[
        "read",
        "relay@localhost/xmpp-iot-gateway",
        "--field",
        "level",
    ]);
    let out = Gateway::cli(None, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("level") && l.contains(" 7")),
        "{}",
        out.stdout
    );

    // An XMPP error is exit 1 with its condition; a usage error is exit 2.
    let args = login(&["set", "relay@localhost/xmpp-iot-gateway", "voltage=1"]);
    let out = Gateway::cli(None, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("item-not-found"), "{}", out.stderr);
    let out = Gateway::cli(None, &["set", "relay@localhost", "level=1"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);

    // A field the device does not have is named, not silently left out.
    let args = login(&["read", "gw@localhost/thermo", "--field", "nope"]);
    let out = Gateway::cli(None, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("has no field \"nope\""),
        "{}",
        out.stderr
    );
}

/// `read` of alice's own JID as alice, with `options` (name, value) in place of the defaults
/// or added; a timeout far beyond the rig's own limit for a command, so that a command that
/// retried instead of stopping would fail the test.
async fn read_as_alice(prosody: &Server, options: &[(&str, &str)]) -> support::CmdOutput {
    let pwfile = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(pwfile.path(), "pw\n").expect("write");
    let pw = pwfile.path().display().to_string();
    let server = prosody.c2s_addr().to_string();
    let mut all: Vec<(&str, &str)> = vec![
        ("--jid", "alice@localhost"),
        ("--password-file", &pw),
        ("--server", &server),
        ("--timeout", "10min"),
    ];
    for (name, value) in options {
        all.retain(|(n, _)| n != name);
        all.push((name, value));
    }
    let mut args = vec!["read", "alice@localhost"];
    for (name, value) in all {
        args.extend([name, value]);
    }
    Gateway::cli(None, &args).await
}

/// One line on stderr, exit status `code`, and `wanted` in that line.
fn one_line_error(out: &support::CmdOutput, code: i32, wanted: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "one line:\n{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains(wanted),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn read_and_set_stop_at_once_on_errors_that_cannot_heal() {
    let prosody = prosody(Kind::Prosody).await;
    let ca = prosody.ca_path().display().to_string();

    // A wrong password, a certificate nobody vouches for, nothing listening: one attempt, one
    // line, exit 1 (a retrying command would run into the rig's 60 s limit for a command).
    let wrong = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(wrong.path(), "wrong\n").expect("write");
    let wrong = wrong.path().display().to_string();
    let out = read_as_alice(&prosody, &[("--ca-file", &ca), ("--password-file", &wrong)]).await;
    one_line_error(&out, 1, "refused the login (not-authorized)");
    let out = read_as_alice(&prosody, &[]).await;
    one_line_error(&out, 1, "certificate does not verify");
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").to_string()
    };
    let out = read_as_alice(&prosody, &[("--ca-file", &ca), ("--server", &closed)]).await;
    one_line_error(&out, 1, "connection refused");

    // Usage errors: exit 2 before any connection, never a panic.
    let out = read_as_alice(&prosody, &[("--ca-file", &ca), ("--jid", "localhost")]).await;
    one_line_error(&out, 2, "has no account name");
    let out = read_as_alice(&prosody, &[("--ca-file", &ca), ("--server", "localhost")]).await;
    one_line_error(&out, 2, "has no port");
    let out = read_as_alice(&prosody, &[("--ca-file", "nope.pem")]).await;
    one_line_error(&out, 2, "cannot read --ca-file nope.pem");
    let out = read_as_alice(
        &prosody,
        &[
            ("--from", "2026-01-02T00:00:00Z"),
            ("--to", "2026-01-01T00:00:00Z"),
        ],
    )
    .await;
    one_line_error(&out, 2, "later than --to");
    let out = read_as_alice(&prosody, &[("--log", "warning")]).await;
    one_line_error(&out, 2, "did you mean `warn`");
    let out = Gateway::cli(
        None,
        &["set", "relay@localhost", "=5", "--jid", "alice@localhost"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("\"=5\" has no field name"),
        "{}",
        out.stderr
    );
}

/// Waits until the session `full` answers pings.
async fn wait_online(alice: &mut TestClient, full: &str) -> bool {
    alice
        .wait_answering(&jid(full), Duration::from_secs(20))
        .await
}

/// ejabberd hands an inbound subscription request to every session of the account, device
/// sessions included: it must still be answered once. (The server drops a repeated answer on
/// its way to the user, so the gateway's log tells how many it sent.)
async fn a_subscription_request_is_answered_once(kind: Kind) {
    let prosody = prosody(kind).await;
    let ca = prosody.ca_path().display().to_string();
    let gw = gateway(&prosody, &ca);
    let mut alice = TestClient::connect(&prosody, "alice", "pw").await;
    assert!(wait_online(&mut alice, "gw@localhost/thermo").await);
    assert!(wait_online(&mut alice, "gw@localhost/gateway").await);
    subscribe(&mut alice, "gw@localhost", "gw@localhost/thermo").await;
    let mut eve = TestClient::connect(&prosody, "eve", "pw").await;
    eve.subscribe(jid("gw@localhost")).await;
    eve.recv_presence_from(jid("gw@localhost"), PresenceType::Unsubscribed, TIMEOUT)
        .await
        .expect("refused");
    // Every copy of both requests reached the core before this ping, and the core handles its
    // input in order: once the pong is in, every answer has been logged.
    alice
        .iq_get(
            &jid("gw@localhost/gateway"),
            "<ping xmlns='urn:xmpp:ping'/>"
                .parse::<Element>()
                .expect("xml"),
        )
        .await
        .expect("pong");
    let log = gw.log_text();
    assert_eq!(
        log.matches("subscription approved").count(),
        1,
        "alice's request was answered more than once:\n{log}"
    );
    assert_eq!(
        // One DEBUG line per refusal sent (the INFO line about refusals is rate-limited).
        log.matches("subscription refused (answered)").count(),
        1,
        "eve's request was answered more than once:\n{log}"
    );
}

per_server!(
    devices_log_in_over_starttls_and_behave_like_component_devices,
    presence_returns_after_the_server_restarts,
    a_subscription_request_is_answered_once,
);

/// More sessions on one account than ejabberd allows (`max_user_sessions`): each login throws
/// an older session out with `conflict`. The gateway must back off instead of logging in again
/// at once, forever, and say once what to change.
#[tokio::test]
async fn sessions_beyond_the_servers_limit_back_off_and_warn_once() {
    let server = Ejabberd::start(
        EjabberdOpts::new()
            .gateway_account("not-this-gateway")
            .max_user_sessions(2),
    )
    .await;
    server.register("gw", "gw-pw").await;
    let config = GatewayToml::upstream(client_xmpp(server.c2s_addr(), server.ca_path()))
        .adapter(sim_adapter())
        .devices(["a", "b", "c"].map(|id| {
            device(id, "sim").field(
                field("level")
                    .set("type", "integer")
                    .set("generator", "constant")
                    .set("value", 1_i64),
            )
        }))
        .build();
    let gw = Gateway::spawn_with(&config, GatewayOpts::new().file("gw.pass", "gw-pw\n"));
    const WARNING: &str = "the server keeps ending this XMPP session";
    assert!(
        gw.wait_log(WARNING, Duration::from_secs(60)).await,
        "no warning about replaced sessions:\n{}",
        tail(&gw.log_text(), 40)
    );
    // The sessions keep replacing each other (four sessions, two allowed), more slowly: the
    // warning is not repeated for them.
    let restored = |log: &str| log.matches("XMPP session restored").count();
    let at_warning = restored(&gw.log_text());
    assert!(
        support::eventually(Duration::from_secs(60), || restored(&gw.log_text())
            >= at_warning + 4)
        .await,
        "the sessions stopped logging in again:\n{}",
        tail(&gw.log_text(), 40)
    );
    assert_eq!(gw.log_text().matches(WARNING).count(), 1);
}

/// A server that accepts connections and drops them at once: tokio-xmpp retries (after 1 s,
/// 2 s, 4 s…) and would log an ERROR for every attempt. The failure is logged once.
#[tokio::test]
async fn a_failing_server_is_reported_once_not_at_every_attempt() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = GatewayToml::upstream(xmpp(
        Section::new()
            .set("mode", "client")
            .set("jid", "gw@localhost")
            .set("password", "pw")
            .set("server", addr.to_string())
            .set("tls", "none"),
    ))
    .build();
    let gw = Gateway::spawn(&config);
    for attempt in 1..=3 {
        let (sock, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
            .await
            .unwrap_or_else(|_| panic!("attempt {attempt} within 30 s"))
            .expect("accept");
        drop(sock);
    }
    // The third attempt has failed once the gateway says so at debug level, or a fourth
    // connection arrives; either way the first two failures are logged by now.
    let _ = tokio::time::timeout(TIMEOUT, listener.accept()).await;
    let log = gw.log_text();
    assert_eq!(
        log.matches("cannot connect to the XMPP server").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");
}

/// In client mode the server copies a device's presence to every session of the gateway's
/// account and to every contact: a device whose values change every 50 ms pushes every change,
/// but its presence (the status line) follows at most once a second.
#[tokio::test]
async fn fast_values_are_pushed_each_and_presence_follows_at_most_once_a_second() {
    let prosody = prosody(Kind::Prosody).await;
    let ca = prosody.ca_path().display().to_string();
    let toml = GatewayToml::new(
        "fast client-mode device",
        client_xmpp(prosody.c2s_addr(), &ca),
    )
    .access("read", &["alice@localhost"])
    .publish_every_reading()
    .section(
        "publish",
        Section::new().list("notify", &["alice@localhost"]),
    )
    .adapter(sim_adapter())
    .device(stepping_thermo("50ms"))
    .build();
    let _gw = Gateway::spawn_with(&toml, GatewayOpts::new().file("gw.pass", "gw-pw\n"));
    let mut alice = TestClient::connect(&prosody, "alice", "pw").await;
    assert!(wait_online(&mut alice, "gw@localhost/thermo").await);
    subscribe(&mut alice, "gw@localhost", "gw@localhost/thermo").await;
    while alice.recv_until(Duration::ZERO, |_| true).await.is_some() {}

    let window = Duration::from_secs(3);
    let start = tokio::time::Instant::now();
    let (mut pushes, mut presences) = (0u32, 0u32);
    let _ = alice
        .recv_until(window, |st| {
            match st {
                xmpp_parsers::stanza::Stanza::Message(m)
                    if m.type_ == xmpp_parsers::message::MessageType::Headline =>
                {
                    pushes += 1
                }
                xmpp_parsers::stanza::Stanza::Presence(p)
                    if from_is(p, "gw@localhost/thermo") && p.type_ == PresenceType::None =>
                {
                    presences += 1
                }
                _ => {}
            }
            false
        })
        .await;
    // Counted over at least `window`: at most one presence per started second, plus one that
    // was on its way when counting began. A slow machine only lowers both counts.
    let seconds = start.elapsed().as_secs_f64().ceil() as u32;
    assert!(
        presences <= seconds + 1,
        "{presences} presences in {seconds} s ({pushes} pushes)"
    );
    assert!(pushes > presences, "{pushes} pushes, {presences} presences");
}
