//! Operations: the systemd unit (content, `systemd-analyze verify` and `security`), the
//! notify-socket protocol (READY, STATUS, WATCHDOG, STOPPING), the metrics endpoint under load,
//! the gateway's own XEP-0323 status readout (component and client mode), journald-friendly
//! logs, and two gateways with their own component domains on one server (deploy/scale-out.md).

use crate::support;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::gateway::BIN;
use crate::support::gateway_toml::{
    client_xmpp, device, field, sim_adapter, stepping_thermometer, xmpp, Section,
};
use crate::support::metrics::{http_get, sample};
use crate::support::{
    free_port, require_program, run_command, send_signal, wait_child, Gateway, GatewayOpts,
    GatewayToml, Prosody, ProsodyOpts, TestClient, TIMEOUT,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::DefinedCondition;

const NS_SD: &str = "urn:xmpp:iot:sensordata";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

// ---------------------------------------------------------------------------------------------
// The systemd unit
// ---------------------------------------------------------------------------------------------

/// Settings the unit must have (issue: systemd service), as `Key=value` lines.
const REQUIRED_LINES: &[&str] = &[
    "Type=notify",
    "NotifyAccess=main",
    "ExecStartPre=/usr/bin/xmpp-iot-gateway --config /etc/xmpp-iot-gateway/gateway.toml check",
    "ExecStart=/usr/bin/xmpp-iot-gateway --config /etc/xmpp-iot-gateway/gateway.toml run",
    "ExecReload=/bin/kill -HUP $MAINPID",
    "Restart=on-failure",
    "RestartPreventExitStatus=2",
    "User=xmpp-iot-gateway",
    "SupplementaryGroups=dialout",
    "StateDirectory=xmpp-iot-gateway",
    "ConfigurationDirectory=xmpp-iot-gateway",
    "LoadCredential=component.secret:/etc/xmpp-iot-gateway/component.secret",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectControlGroups=yes",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    "SystemCallFilter=@system-service",
    "CapabilityBoundingSet=",
    "WantedBy=multi-user.target",
];

/// The highest `systemd-analyze security` exposure accepted ("OK" and better).
const MAX_EXPOSURE: f64 = 2.0;

#[tokio::test]
async fn the_unit_file_is_complete_verified_and_hardened() {
    let unit_path = repo_file("deploy/xmpp-iot-gateway.service");
    let unit = std::fs::read_to_string(&unit_path).expect("read the unit file");
    let lines: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for want in REQUIRED_LINES {
        assert!(lines.contains(want), "the unit lacks `{want}`");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("WatchdogSec=")),
        "the unit sets no WatchdogSec="
    );
    // PrivateDevices= would hide the serial ports; DynamicUser= would not match the packaged user.
    for banned in ["PrivateDevices=", "DynamicUser="] {
        assert!(
            !lines.iter().any(|l| l.starts_with(banned)),
            "the unit must not set {banned}"
        );
    }

    require_program("systemd-analyze", "systemd");
    // Verify the unit as installed, except that ExecStart names the binary under test (verify
    // insists that the program exists).
    let dir = tempfile::tempdir().expect("tempdir");
    let installed = dir.path().join("xmpp-iot-gateway.service");
    std::fs::write(&installed, unit.replace("/usr/bin/xmpp-iot-gateway", BIN))
        .expect("write unit copy");

    let verify = run_command(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(&installed)
            .env("SYSTEMD_LOG_LEVEL", "notice"),
        dir.path(),
        Duration::from_secs(60),
    )
    .await;
    assert!(
        verify.success(),
        "systemd-analyze verify failed:\n{}{}",
        verify.stdout,
        verify.stderr
    );
    let complaints: Vec<&str> = verify
        .stderr
        .lines()
        .filter(|l| l.contains("xmpp-iot-gateway.service"))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify complains about the unit:\n{}",
        complaints.join("\n")
    );

    let security = run_command(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&installed),
        dir.path(),
        Duration::from_secs(60),
    )
    .await;
    let text = format!("{}{}", security.stdout, security.stderr);
    assert!(
        !text.contains("unrecognized option") && !text.contains("Unknown option"),
        "this systemd-analyze has no `security --offline` (systemd < 250): install the Debian \
         package `systemd` from Debian 12 or later:\n{text}"
    );
    let exposure = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for "))
        .and_then(|(_, rest)| rest.split_once(": "))
        .and_then(|(_, score)| score.split_whitespace().next())
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{text}"));
    println!("systemd-analyze security: exposure {exposure}");
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} is above {MAX_EXPOSURE}:\n{text}"
    );
}

#[tokio::test]
async fn the_packaged_config_passes_check() {
    let path = repo_file("deploy/gateway.toml");
    let path = path.to_str().expect("UTF-8 path");
    let out = Gateway::cli(None, &["--config", path, "check"]).await;
    assert!(out.success(), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("selftest@sensors.example.org"),
        "{}",
        out.stdout
    );
    // The only complaint about the example is the secret it cannot have.
    for line in out.stderr.lines() {
        assert!(
            line.starts_with("warning: ") && line.contains("component.secret"),
            "unexpected: {line}"
        );
    }
}

/// The repository files an asset source names: the file itself, or for `dir/*.ext` (the glob
/// form cargo-deb expands) the files of `dir` ending in `.ext`, as repository paths.
fn asset_files(source: &str) -> Vec<String> {
    let Some((dir, pattern)) = source.rsplit_once("/*") else {
        return if repo_file(source).is_file() {
            vec![source.to_owned()]
        } else {
            Vec::new()
        };
    };
    let mut files: Vec<String> = std::fs::read_dir(repo_file(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(pattern))
        .map(|name| format!("{dir}/{name}"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_debian_package_metadata_names_existing_files() {
    let manifest: toml::Table = std::fs::read_to_string(repo_file("Cargo.toml"))
        .expect("read Cargo.toml")
        .parse()
        .expect("Cargo.toml is TOML");
    let deb = &manifest["package"]["metadata"]["deb"];
    assert!(
        deb.get("maintainer").is_some(),
        "cargo-deb needs a maintainer"
    );
    let assets = deb["assets"].as_array().expect("assets");
    let mut dests = Vec::new();
    // Every file the package installs under /usr/share/doc, as `dest + file name`.
    let mut docs = Vec::new();
    for asset in assets {
        let a = asset.as_array().expect("[source, dest, mode]");
        let source = a[0].as_str().expect("source");
        let dest = a[1].as_str().expect("dest");
        dests.push(dest.to_owned());
        if source.starts_with("target/release/") {
            continue;
        }
        let files = asset_files(source);
        assert!(!files.is_empty(), "asset {source} names no file");
        for file in files {
            let name = file.rsplit('/').next().unwrap_or_default().to_owned();
            if dest.starts_with("usr/share/doc/") {
                docs.push(if dest.ends_with('/') {
                    format!("{dest}{name}")
                } else {
                    dest.to_owned()
                });
            }
        }
    }
    for want in ["usr/bin/", "etc/xmpp-iot-gateway/gateway.toml"] {
        assert!(
            dests.iter().any(|d| d == want),
            "no asset installed to {want}"
        );
    }
    // What the installed gateway.toml and the guides point to must be installed too: every
    // adapter's README, the example with every adapter, every page of docs/.
    let doc = |path: &str| format!("usr/share/doc/xmpp-iot-gateway/{path}");
    let mut wanted: Vec<String> = vec![
        doc("README.md"),
        doc("examples/gateway.example.toml"),
        doc("deploy/raspberry-pi.md"),
    ];
    for adapter in ["mqtt", "modbus", "serial", "simulated", "linux-sensors"] {
        wanted.push(doc(&format!("adapters/{adapter}/README.md")));
    }
    for page in asset_files("docs/*.md") {
        wanted.push(doc(&page));
    }
    for want in &wanted {
        assert!(
            docs.contains(want),
            "the package does not install {want}: {docs:#?}"
        );
    }
    let installed_config =
        std::fs::read_to_string(repo_file("deploy/gateway.toml")).expect("deploy/gateway.toml");
    for line in installed_config
        .lines()
        .filter(|l| l.contains("/usr/share/doc/"))
    {
        let path = line[line.find("/usr/share/doc/").unwrap_or_default() + 1..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_end_matches(['.', ',', ';', ')']);
        assert!(
            path.ends_with('/') || docs.iter().any(|d| d == path),
            "deploy/gateway.toml points to {path}, which the package does not install"
        );
    }
    let units = deb["systemd-units"].as_table().expect("systemd-units");
    assert_eq!(
        units["enable"].as_bool(),
        Some(false),
        "not enabled on install"
    );
    assert_eq!(
        units["start"].as_bool(),
        Some(false),
        "not started on install"
    );
    let dir = repo_file(units["unit-scripts"].as_str().expect("unit-scripts"));
    assert!(dir.join("xmpp-iot-gateway.service").is_file());
    let sysusers = std::fs::read_to_string(dir.join("xmpp-iot-gateway.sysusers"))
        .expect("the sysusers file creating the system user");
    assert!(
        sysusers
            .lines()
            .any(|l| l.starts_with("u xmpp-iot-gateway ")),
        "{sysusers}"
    );
    let scripts = repo_file(
        deb["maintainer-scripts"]
            .as_str()
            .expect("maintainer-scripts"),
    );
    for name in ["postinst", "postrm"] {
        use std::os::unix::fs::PermissionsExt;
        let path = scripts.join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains("#DEBHELPER#"), "{name} lacks #DEBHELPER#");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert!(mode & 0o111 != 0, "{name} is not executable");
    }
}

// ---------------------------------------------------------------------------------------------
// Gateways under the rig
// ---------------------------------------------------------------------------------------------

/// A gateway config for component `domain` of `prosody`, named `name`, with `devices` simulated
/// devices `<prefix>0..` polled every `poll`, readable by alice.
fn component_config(
    prosody: &Prosody,
    domain: &str,
    name: &str,
    prefix: &str,
    devices: usize,
    poll: &str,
) -> GatewayToml {
    GatewayToml::new(name, prosody.component_toml(domain))
        .gateway("history", "1h")
        .access("read", &["alice@localhost"])
        .publish_every_reading()
        .adapter(sim_adapter())
        .devices((0..devices).map(|i| stepping_thermometer(&format!("{prefix}{i}"), poll)))
}

#[tokio::test]
async fn the_notify_socket_gets_ready_status_watchdog_and_stopping() {
    let prosody = Prosody::start(ProsodyOpts::new().random_component()).await;
    let domain = prosody.component_domain().to_owned();
    let mut gw = Gateway::spawn_with(
        &component_config(&prosody, &domain, "notify", "d", 2, "500ms").build(),
        // Watchdog pings every half of WATCHDOG_USEC: every second here.
        GatewayOpts::new().env("WATCHDOG_USEC", "2000000"),
    );
    assert!(gw.wait_ready(TIMEOUT).await, "no READY=1");
    assert!(gw.wait_notify("STATUS=", TIMEOUT).await, "no STATUS=");
    assert!(
        gw.wait_notify("WATCHDOG=1", TIMEOUT).await,
        "no WATCHDOG=1 with WATCHDOG_USEC=2000000"
    );
    // STATUS= follows the state: both devices up, upstream connected.
    assert!(
        gw.wait_notify("STATUS=2 of 2 devices online, upstream connected", TIMEOUT)
            .await,
        "no STATUS= with both devices and the upstream up: {:?}",
        gw.notify_messages()
    );
    // The watchdog keeps coming while the core runs.
    let pings = |gw: &Gateway| {
        gw.notify_messages()
            .iter()
            .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
            .count()
    };
    let before = pings(&gw);
    assert!(
        support::eventually(TIMEOUT, || pings(&gw) > before).await,
        "only {before} WATCHDOG=1 pings, and no more"
    );
    let status = gw.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    assert!(gw.wait_notify("STOPPING=1", TIMEOUT).await, "no STOPPING=1");
    let messages = gw.notify_messages();
    let ready = messages.iter().position(|m| m == "READY=1");
    let stopping = messages.iter().position(|m| m == "STOPPING=1");
    assert!(ready < stopping, "READY=1 before STOPPING=1: {messages:?}");
}

#[tokio::test]
async fn the_metrics_endpoint_counts_under_load() {
    let prosody = Prosody::start(ProsodyOpts::new().random_component()).await;
    let domain = prosody.component_domain().to_owned();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let devices = 20;
    let gw = Gateway::spawn_with(
        &component_config(&prosody, &domain, "metrics", "load", devices, "50ms")
            .metrics(addr)
            .build(),
        GatewayOpts::new().rust_log("info"),
    );
    let mut gw = gw;
    assert!(gw.wait_ready(TIMEOUT).await, "no READY=1");

    let (code, first) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200, "{first}");
    for help in [
        "# TYPE xmpp_iot_gateway_readings_total counter",
        "# TYPE xmpp_iot_gateway_device_readings_total counter",
        "# TYPE xmpp_iot_gateway_adapter_readings_total counter",
        "# TYPE xmpp_iot_gateway_devices_online gauge",
        "# TYPE xmpp_iot_gateway_upstream_connected gauge",
        "# TYPE xmpp_iot_gateway_stanzas_sent_total counter",
        "# TYPE xmpp_iot_gateway_stanzas_received_total counter",
        "# TYPE xmpp_iot_gateway_upstream_reconnects_total counter",
        "# TYPE xmpp_iot_gateway_store_readings_written_total counter",
        "# HELP xmpp_iot_gateway_readings_total ",
    ] {
        assert!(first.contains(help), "no `{help}` in:\n{first}");
    }
    // At least the core, the session and the adapters' tasks.
    assert!(
        sample(&first, "xmpp_iot_gateway_runtime_alive_tasks").is_some_and(|v| v >= 3.0),
        "no runtime_alive_tasks in:\n{first}"
    );
    assert_eq!(
        sample(&first, "xmpp_iot_gateway_devices"),
        Some(devices as f64)
    );
    assert_eq!(
        sample(
            &first,
            "xmpp_iot_gateway_adapter_info{adapter=\"sim\",type=\"simulated\"}"
        ),
        Some(1.0)
    );

    // Counters move between two scrapes while the simulated devices produce readings.
    let keys = [
        "xmpp_iot_gateway_readings_total",
        "xmpp_iot_gateway_adapter_readings_total{adapter=\"sim\"}",
        "xmpp_iot_gateway_device_readings_total{device=\"load7\",adapter=\"sim\"}",
        "xmpp_iot_gateway_store_readings_written_total",
    ];
    let before: Vec<f64> = keys
        .iter()
        .map(|k| sample(&first, k).unwrap_or_else(|| panic!("no {k} in:\n{first}")))
        .collect();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let second = loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (code, text) = http_get(addr, "/metrics").await;
        assert_eq!(code, 200);
        let moved = keys
            .iter()
            .zip(&before)
            .all(|(k, b)| sample(&text, k).is_some_and(|v| v > *b));
        let settled = sample(&text, "xmpp_iot_gateway_devices_online") == Some(devices as f64)
            && sample(&text, "xmpp_iot_gateway_upstream_connected") == Some(1.0);
        if moved && settled {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "counters did not all move (before {before:?}) or devices/upstream not up:\n{text}"
        );
    };
    let total = sample(&second, "xmpp_iot_gateway_readings_total").expect("total");
    let per_adapter = sample(
        &second,
        "xmpp_iot_gateway_adapter_readings_total{adapter=\"sim\"}",
    )
    .expect("sim");
    assert!(
        per_adapter <= total,
        "one adapter's readings ({per_adapter}) within the total ({total})"
    );
    assert!(sample(&second, "xmpp_iot_gateway_upstream_connects_total").is_some_and(|v| v >= 1.0));
    assert_eq!(
        sample(
            &second,
            "xmpp_iot_gateway_device_online{device=\"load0\",adapter=\"sim\"}"
        ),
        Some(1.0)
    );

    // Other paths and garbage get HTTP errors, and the endpoint keeps serving.
    let (code, _) = http_get(addr, "/").await;
    assert_eq!(code, 404);
    let mut raw = tokio::net::TcpStream::connect(addr).await.expect("connect");
    raw.write_all(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        .await
        .expect("write garbage");
    let mut answer = Vec::new();
    tokio::time::timeout(TIMEOUT, raw.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    assert!(
        answer.starts_with(b"HTTP/1.1 400 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let (code, _) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(gw.is_running());
    assert!(gw.terminate().await.success());
}

fn req(seqnr: &str, fields: &[&str]) -> Element {
    let mut xml = format!("<req xmlns='{NS_SD}' seqnr='{seqnr}' momentary='true'>");
    for f in fields {
        xml.push_str(&format!("<field name='{f}'/>"));
    }
    xml.push_str("</req>");
    xml.parse().expect("req XML")
}

/// Sends a momentary readout request to `to`, expects `accepted`, and returns the fields
/// (name, value) of the `fields` messages up to the one with `done='true'`, with its node id.
async fn readout(
    client: &mut TestClient,
    to: &Jid,
    seqnr: &str,
    fields: &[&str],
) -> (String, Vec<(String, String)>) {
    let accepted = client
        .iq_get(to, req(seqnr, fields))
        .await
        .unwrap_or_else(|e| panic!("readout of {to} refused: {e:?}"))
        .expect("accepted payload");
    assert!(accepted.is("accepted", NS_SD), "{accepted:?}");
    let mut out = Vec::new();
    let mut node = String::new();
    loop {
        let m = client
            .recv_message(TIMEOUT, |m| {
                m.from.as_ref() == Some(to)
                    && m.payloads
                        .iter()
                        .any(|p| p.is("fields", NS_SD) && p.attr("seqnr") == Some(seqnr))
            })
            .await
            .unwrap_or_else(|| panic!("no fields message {seqnr} from {to}"));
        let payload = m
            .payloads
            .into_iter()
            .find(|p| p.is("fields", NS_SD))
            .expect("fields");
        for n in payload.children() {
            node = n.attr("nodeId").unwrap_or_default().to_owned();
            for ts in n.children() {
                for f in ts.children() {
                    out.push((
                        f.attr("name").unwrap_or_default().to_owned(),
                        f.attr("value").unwrap_or_default().to_owned(),
                    ));
                }
            }
        }
        if payload.attr("done") == Some("true") {
            return (node, out);
        }
    }
}

fn value_of<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn the_gateway_jid_answers_a_status_readout_in_component_mode() {
    let prosody = Prosody::start(ProsodyOpts::new().random_component()).await;
    prosody.register("alice", "pw").await;
    prosody.register("eve", "pw").await;
    let domain = prosody.component_domain().to_owned();
    let mut gw = Gateway::spawn(
        &component_config(&prosody, &domain, "status gateway", "s", 3, "200ms").build(),
    );
    // READY=1 comes once the first connection attempt is over, even a failed one (a slow
    // handshake on a loaded machine): the domain answers only once the component is connected.
    assert!(
        gw.wait_upstream(TIMEOUT).await,
        "gateway connected upstream"
    );
    let gateway = Jid::new(&domain).expect("domain jid");
    let mut alice = TestClient::connect(&prosody, "alice", "pw").await;

    let info = alice
        .iq_get(&gateway, Element::builder("query", DISCO_INFO).build())
        .await
        .expect("disco#info")
        .expect("payload");
    assert!(
        info.children()
            .any(|f| f.name() == "feature" && f.attr("var") == Some(NS_SD)),
        "the gateway announces sensor data: {info:?}"
    );

    // Wait until every device has produced a reading, so the per-device figures are there.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut seq = 0;
    let (node, fields) = loop {
        seq += 1;
        let (node, fields) = readout(&mut alice, &gateway, &seq.to_string(), &[]).await;
        let ready = value_of(&fields, "devices_online") == Some("3")
            && value_of(
                &fields,
                "device_readings_total{device=\"s2\",adapter=\"sim\"}",
            )
            .is_some_and(|v| v != "0");
        if ready {
            break (node, fields);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "devices never all online with readings: {fields:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(node, "status gateway", "node id is the gateway's name");
    assert_eq!(value_of(&fields, "devices"), Some("3"));
    assert_eq!(value_of(&fields, "upstream_connected"), Some("1"));
    for name in [
        "readings_total",
        "stanzas_received_total",
        "stanzas_sent_total",
        "upstream_reconnects_total",
        "store_readings_written_total",
        "adapter_readings_total{adapter=\"sim\"}",
    ] {
        let v = value_of(&fields, name).unwrap_or_else(|| panic!("no {name}: {fields:?}"));
        assert!(v.parse::<f64>().is_ok(), "{name} = {v:?}");
    }
    assert!(value_of(&fields, "readings_total").is_some_and(|v| v != "0"));

    // Field names filter, by exact name or by metric.
    let (_, only) = readout(&mut alice, &gateway, "101", &["devices_online"]).await;
    assert_eq!(only, vec![("devices_online".to_owned(), "3".to_owned())]);
    let (_, per_device) = readout(&mut alice, &gateway, "102", &["device_readings_total"]).await;
    assert_eq!(per_device.len(), 3, "{per_device:?}");

    // The `read` command prints the same figures as a table.
    let pass = tempfile::NamedTempFile::new().expect("password file");
    std::fs::write(pass.path(), "pw\n").expect("write password");
    let ca = prosody.ca_path().display().to_string();
    let c2s = prosody.c2s_addr().to_string();
    let pass_path = pass.path().display().to_string();
    let out = Gateway::cli(
        None,
        &[
            "read",
            &domain,
            "--field",
            "devices",
            "--jid",
            "alice@localhost",
            "--password-file",
            &pass_path,
            "--ca-file",
            &ca,
            "--server",
            &c2s,
        ],
    )
    .await;
    assert!(out.success(), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["devices", "3"]),
        "{}",
        out.stdout
    );

    // A requester the access lists do not know learns nothing.
    let mut eve = TestClient::connect(&prosody, "eve", "pw").await;
    let refused = eve
        .iq_get(&gateway, req("1", &[]))
        .await
        .expect_err("eve is refused");
    assert_eq!(refused.defined_condition, DefinedCondition::Forbidden);
    // Devices answer readouts as before: the gateway's figures are on the domain only.
    let device = Jid::new(&format!("s0@{domain}")).expect("device jid");
    let (node, fields) = readout(&mut alice, &device, "201", &[]).await;
    assert_eq!(node, "s0");
    assert!(value_of(&fields, "temperature").is_some(), "{fields:?}");
    assert!(gw.terminate().await.success());
}

#[tokio::test]
async fn the_gateway_session_answers_a_status_readout_in_client_mode() {
    let prosody = Prosody::start(ProsodyOpts::new()).await;
    prosody.register("gw", "gw-pw").await;
    prosody.register("alice", "pw").await;
    let config = GatewayToml::new(
        "client status",
        client_xmpp(prosody.c2s_addr(), prosody.ca_path()),
    )
    .access("read", &["alice@localhost"])
    .adapter(sim_adapter())
    .device(
        device("thermo", "sim").set("poll", "200ms").field(
            field("temperature")
                .set("generator", "constant")
                .set("value", 20.5),
        ),
    )
    .build();
    let mut gw = Gateway::spawn_with(&config, GatewayOpts::new().file("gw.pass", "gw-pw\n"));
    assert!(gw.wait_ready(TIMEOUT).await, "no READY=1");
    let gateway = Jid::new("gw@localhost/gateway").expect("jid");
    let mut alice = TestClient::connect(&prosody, "alice", "pw").await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut seq = 0;
    let (node, fields) = loop {
        seq += 1;
        // The gateway session may still be logging in: an error means "not yet".
        let attempt = alice.iq_get(&gateway, Element::builder("query", DISCO_ITEMS).build());
        if attempt.await.is_ok() {
            let r = readout(&mut alice, &gateway, &seq.to_string(), &[]).await;
            if value_of(&r.1, "devices_online") == Some("1") {
                break r;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no status readout with the device online"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(node, "client status");
    assert_eq!(value_of(&fields, "devices"), Some("1"));
    assert!(value_of(&fields, "upstream_connects_total").is_some_and(|v| v != "0"));
    assert!(gw.terminate().await.success());
}

// ---------------------------------------------------------------------------------------------
// Scale-out: two gateways, two component domains, one server
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn two_gateways_with_their_own_domains_share_one_server() {
    let north = format!("{}.localhost", support::random_id("north-"));
    let south = format!("{}.localhost", support::random_id("south-"));
    let prosody = Prosody::start(ProsodyOpts::new().component(&north).component(&south)).await;
    prosody.register("alice", "pw").await;
    let mut gw_north = Gateway::spawn(
        &component_config(&prosody, &north, "site north", "boiler", 2, "300ms").build(),
    );
    let mut gw_south = Gateway::spawn(
        &component_config(&prosody, &south, "site south", "pump", 2, "300ms").build(),
    );
    // Connected, not only READY=1: each domain answers only once its component is connected.
    assert!(gw_north.wait_upstream(TIMEOUT).await, "north: upstream");
    assert!(gw_south.wait_upstream(TIMEOUT).await, "south: upstream");

    let mut alice = TestClient::connect(&prosody, "alice", "pw").await;
    let mut seq = 0;
    for (domain, prefix) in [(&north, "boiler"), (&south, "pump")] {
        let items = alice
            .iq_get(
                Jid::new(domain).expect("domain"),
                Element::builder("query", DISCO_ITEMS).build(),
            )
            .await
            .expect("disco#items")
            .expect("payload");
        let jids: Vec<String> = items
            .children()
            .filter_map(|i| i.attr("jid").map(str::to_owned))
            .collect();
        assert_eq!(
            jids,
            vec![format!("{prefix}0@{domain}"), format!("{prefix}1@{domain}")],
            "disco#items of {domain}"
        );
        for i in 0..2 {
            let device = Jid::new(&format!("{prefix}{i}@{domain}")).expect("jid");
            let deadline = tokio::time::Instant::now() + TIMEOUT;
            loop {
                seq += 1;
                let (node, fields) = readout(&mut alice, &device, &seq.to_string(), &[]).await;
                if value_of(&fields, "temperature").is_some() {
                    assert_eq!(node, format!("{prefix}{i}"));
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{device} never had a value"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    // One gateway going away leaves the other serving.
    assert!(gw_north.terminate().await.success());
    let pump = Jid::new(&format!("pump0@{south}")).expect("jid");
    let (_, fields) = readout(&mut alice, &pump, "999", &[]).await;
    assert!(value_of(&fields, "temperature").is_some());
    assert!(gw_south.terminate().await.success());
}

// ---------------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------------

/// Runs the gateway (component mode towards a closed port: it logs, retries, and stops on
/// SIGTERM) with stderr to a file; `journal` sets `JOURNAL_STREAM` to that file's identity, or
/// to a stranger's. Returns what it logged.
async fn run_and_log(journal: Option<bool>) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "s3cret-never-logged";
    let closed = free_port();
    let config = GatewayToml::upstream(xmpp(
        Section::new()
            .set("domain", "logs.localhost")
            .set("server", format!("127.0.0.1:{closed}"))
            .set("secret", secret),
    ))
    .gateway("state_dir", dir.path().join("state").display().to_string())
    .adapter(sim_adapter())
    .device(device("d", "sim").set("poll", "100ms").field(field("t")))
    .build();
    let config_path = dir.path().join("gateway.toml");
    std::fs::write(&config_path, config).expect("write config");
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).expect("create log");
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(&config_path)
        .arg("run")
        .env("RUST_LOG", "trace")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.try_clone().expect("clone log handle"));
    if let Some(is_ours) = journal {
        use std::os::unix::fs::MetadataExt;
        let meta = log.metadata().expect("stat log");
        let ino = if is_ours { meta.ino() } else { meta.ino() + 1 };
        cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), ino));
    }
    let mut child = cmd.spawn().expect("start the gateway");
    let read = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let started = support::eventually(TIMEOUT, || read().contains("gateway started")).await;
    send_signal(child.id(), libc::SIGTERM);
    let status = wait_child(&mut child, TIMEOUT).await;
    if status.is_none() {
        support::kill_and_reap(&mut child);
    }
    let text = read();
    assert!(started, "the gateway never logged its start:\n{text}");
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}:\n{text}"
    );
    assert!(
        !text.contains(secret),
        "the secret appears in the log:\n{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "ANSI escapes in a file log:\n{text}"
    );
    text
}

/// Whether a log line starts with an RFC 3339 timestamp (`2026-11-26T00:02:07.986Z`).
fn timestamped(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[..4].iter().all(u8::is_ascii_digit)
}

#[tokio::test]
async fn logs_suit_the_journal_and_a_file() {
    // Under journald: no timestamps, a priority prefix per line, one line per event.
    let journal = run_and_log(Some(true)).await;
    let lines: Vec<&str> = journal.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let prefixed = ["<3>", "<4>", "<6>", "<7>"]
            .iter()
            .any(|p| line.starts_with(p));
        assert!(prefixed, "no priority prefix: {line:?}");
        assert!(
            !timestamped(&line[3..]),
            "a timestamp under journald: {line:?}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("gateway started")),
        "{journal}"
    );
    // The upstream is down: a warning, with its priority.
    assert!(lines.iter().any(|l| l.starts_with("<4>")), "{journal}");

    // A plain file (or an inherited JOURNAL_STREAM naming another stream): timestamps, no
    // prefixes.
    for journal_stream in [None, Some(false)] {
        let plain = run_and_log(journal_stream).await;
        for line in plain.lines() {
            assert!(
                timestamped(line),
                "no timestamp ({journal_stream:?}): {line:?}"
            );
        }
    }
}
