//! The serial adapter end to end: a real Prosody, the gateway binary, and `socat` pty pairs
//! standing in for the UARTs. The test holds one end of each pair (the "device") and writes the
//! lines a microcontroller would print; the gateway reads the other end. An XMPP user checks what
//! arrives: presence, XEP-0323 readouts (momentary and historical), XEP-0325 control.

use crate::support;
use crate::support::client::presence_status;
use crate::support::gateway_toml::{self, device, serial_adapter, Section};
use crate::support::readout::{field, momentary, readout, ReadoutField};
use crate::support::{Gateway, GatewayToml, Prosody, ProsodyOpts, PtyPair, TestClient, TIMEOUT};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::Type as PresenceType;
use xmpp_parsers::stanza_error::DefinedCondition;

const NS_CTL: &str = "urn:xmpp:iot:control";

/// Prosody with a component and two users: alice may control, bob may read.
async fn prosody() -> (Prosody, String) {
    let prosody = Prosody::start(ProsodyOpts::new().random_component()).await;
    for user in ["alice", "bob"] {
        prosody.register(user, "pw").await;
    }
    let domain = prosody.component_domain().to_owned();
    (prosody, domain)
}

/// The gateway's config: head (XMPP, access; alice may control, bob may read) and then what
/// `rest` adds (adapters and devices).
fn config(
    prosody: &Prosody,
    domain: &str,
    rest: impl FnOnce(GatewayToml) -> GatewayToml,
) -> String {
    rest(
        GatewayToml::new("serial test", prosody.component_toml(domain))
            .gateway("history", "1h")
            .access("read", &["bob@localhost"])
            .access("control", &["alice@localhost"])
            .publish_every_reading(),
    )
    .build()
}

fn jid(device: &str, domain: &str) -> Jid {
    Jid::new(&format!("{device}@{domain}")).expect("device JID")
}

fn el(xml: &str) -> Element {
    xml.parse().expect("test XML")
}

/// Subscribes to `device` and waits for the approval.
async fn subscribe(client: &mut TestClient, device: &Jid) {
    client.subscribe(device).await;
    client
        .recv_presence_from(device, PresenceType::Subscribed, TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("subscription to {device} approved"));
}

/// Waits for an available presence of `device` whose status contains `needle`.
async fn wait_status(client: &mut TestClient, device: &Jid, needle: &str) -> String {
    let p = client
        .recv_presence(TIMEOUT, |p| {
            p.type_ == PresenceType::None
                && p.from
                    .as_ref()
                    .is_some_and(|f| f.to_bare() == device.to_bare())
                && presence_status(p).is_some_and(|s| s.contains(needle))
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "no presence of {device} with {needle:?}; buffered: {}",
                client.dump_buffer()
            )
        });
    presence_status(&p).unwrap_or_default()
}

/// `f` is a `kind` field (`numeric`, `boolean`, `string`…) with `value` and `unit`.
fn check(f: &ReadoutField, kind: &str, value: &str, unit: Option<&str>) {
    let have_unit = Some(f.unit.as_str()).filter(|u| !u.is_empty());
    assert_eq!(
        (f.kind.as_str(), f.value.as_str(), have_unit),
        (kind, value, unit),
        "{f:?}"
    );
}

#[tokio::test]
async fn every_format_reaches_its_device_with_types_and_units() {
    let (prosody, domain) = prosody().await;
    let json = PtyPair::new().await;
    let kv = PtyPair::new().await;
    let xml = PtyPair::new().await;
    let re = PtyPair::new().await;
    let csv = PtyPair::new().await;
    let rest = |toml: GatewayToml| {
        toml.adapter(serial_adapter("json-port", json.port(), "json"))
            .adapter(
                serial_adapter("kv-port", kv.port(), "kv")
                    .set("baud", 115200_i64)
                    .set("line_ending", "\r\n"),
            )
            .adapter(serial_adapter("xml-port", xml.port(), "xml"))
            .adapter(
                serial_adapter("regex-port", re.port(), "regex")
                    .set("pattern", r"^(?P<id>\w+) (?P<temp>[-\d.]+) (?P<state>\w+)$"),
            )
            .adapter(serial_adapter("csv-port", csv.port(), "csv"))
            .device(
                device("jdev", "json-port")
                    .field(
                        gateway_toml::field("temperature")
                            .set("unit", "°C")
                            .set("json", "/t"),
                    )
                    .field(
                        gateway_toml::field("count")
                            .set("type", "integer")
                            .set("json", "/n/0"),
                    )
                    .field(
                        gateway_toml::field("on")
                            .set("type", "boolean")
                            .set("json", "/on"),
                    )
                    .field(
                        gateway_toml::field("label")
                            .set("type", "string")
                            .set("json", "/label"),
                    ),
            )
            .device(
                device("kdev", "kv-port")
                    .field(gateway_toml::field("temp").set("unit", "°C"))
                    .field(
                        gateway_toml::field("humidity")
                            .set("unit", "%")
                            .set("key", "hum"),
                    )
                    .field(gateway_toml::field("door").set("type", "boolean")),
            )
            .device(
                device("xdev", "xml-port").field(
                    gateway_toml::field("temperature")
                        .set("unit", "°C")
                        .set("key", "SensorTemp"),
                ),
            )
            .device(
                device("rdev", "regex-port")
                    .field(gateway_toml::field("temp").set("unit", "K"))
                    .field(gateway_toml::field("state").set("type", "string")),
            )
            .device(
                device("cdev", "csv-port")
                    .field(gateway_toml::field("temp").set("unit", "°F"))
                    .field(
                        gateway_toml::field("hum")
                            .set("type", "integer")
                            .set("unit", "%"),
                    ),
            )
    };
    let mut gateway = Gateway::spawn(&config(&prosody, &domain, rest));
    assert!(
        gateway.wait_upstream(TIMEOUT * 2).await,
        "gateway connected upstream"
    );
    let mut bob = TestClient::connect(&prosody, "bob", "pw").await;
    let devices = ["jdev", "kdev", "xdev", "rdev", "cdev"].map(|d| jid(d, &domain));
    for d in &devices {
        subscribe(&mut bob, d).await;
    }
    let [jdev, kdev, xdev, rdev, cdev] = devices;

    // Each device end starts with a bare line ending: a line begun right as the gateway opened
    // the port would be dropped as partial.
    let mut d = json.open_device();
    d.send(b"\n{\"t\": 21.5, \"n\": [7, 8], \"on\": true, \"label\": \"a<b & 'c'\"}\n")
        .await;
    wait_status(&mut bob, &jdev, "21.5").await;
    let f = momentary(&mut bob, &jdev, 1).await;
    check(field(&f, "temperature"), "numeric", "21.5", Some("°C"));
    check(field(&f, "count"), "numeric", "7", None);
    check(field(&f, "on"), "boolean", "true", None);
    check(field(&f, "label"), "string", "a<b & 'c'", None);

    let mut d = kv.open_device();
    d.send(b"\r\ntemp=19.25 hum=40 door=open extra=1\r\n").await;
    // `open` is no boolean: the door is dropped, the rest arrives.
    d.send(b"temp=19.5 hum=41 door=on\r\n").await;
    wait_status(&mut bob, &kdev, "19.5").await;
    let f = momentary(&mut bob, &kdev, 2).await;
    check(field(&f, "temp"), "numeric", "19.5", Some("°C"));
    check(field(&f, "humidity"), "numeric", "41", Some("%"));
    check(field(&f, "door"), "boolean", "true", None);

    let mut d = xml.open_device();
    d.send(b"\n<SensorTemp ID='250715' TimeDate='19:28:33 Jul 17 2015'> 22 </SensorTemp>\n")
        .await;
    wait_status(&mut bob, &xdev, "22").await;
    let f = momentary(&mut bob, &xdev, 3).await;
    check(field(&f, "temperature"), "numeric", "22", Some("°C"));

    let mut d = re.open_device();
    d.send(b"\nno match here\nprobe7 -3.5 heating\n").await;
    wait_status(&mut bob, &rdev, "-3.5").await;
    let f = momentary(&mut bob, &rdev, 4).await;
    check(field(&f, "temp"), "numeric", "-3.5", Some("K"));
    check(field(&f, "state"), "string", "heating", None);

    let mut d = csv.open_device();
    d.send(b"\nid,temp,hum\nc1, 70.5 ,33\n").await;
    wait_status(&mut bob, &cdev, "70.5").await;
    let f = momentary(&mut bob, &cdev, 5).await;
    check(field(&f, "temp"), "numeric", "70.5", Some("°F"));
    check(field(&f, "hum"), "numeric", "33", Some("%"));

    assert!(gateway.is_running());
    gateway.terminate().await;
}

#[tokio::test]
async fn xml_records_and_json_objects_are_routed_by_match() {
    let (prosody, domain) = prosody().await;
    let xml = PtyPair::new().await;
    let json = PtyPair::new().await;
    let rest = |toml: GatewayToml| {
        toml.adapter(serial_adapter("rf", xml.port(), "xml"))
            .adapter(serial_adapter("hub", json.port(), "json"))
            .device(
                device("boiler", "rf")
                    .inline("match", Section::new().set("id", "250715"))
                    .field(
                        gateway_toml::field("temperature")
                            .set("unit", "°C")
                            .set("key", "SensorTemp"),
                    ),
            )
            .device(
                device("attic", "rf")
                    .inline("match", Section::new().set("ID", "250716"))
                    .field(
                        gateway_toml::field("temperature")
                            .set("type", "integer")
                            .set("unit", "°C")
                            .set("key", "sensortemp"),
                    )
                    .field(
                        gateway_toml::field("note")
                            .set("type", "string")
                            .set("key", "Note"),
                    ),
            )
            .device(
                device("door", "rf")
                    .inline("match", Section::new().set("id", 7_i64))
                    .field(gateway_toml::field("open").set("type", "boolean")),
            )
            .device(
                device("left", "hub")
                    .inline("match", Section::new().set("id", "L"))
                    .field(
                        gateway_toml::field("power")
                            .set("unit", "W")
                            .set("json", "/p"),
                    ),
            )
            .device(
                device("right", "hub")
                    .inline("match", Section::new().set("/meta/id", 2_i64))
                    .field(
                        gateway_toml::field("power")
                            .set("unit", "W")
                            .set("json", "/p"),
                    ),
            )
    };
    let mut gateway = Gateway::spawn(&config(&prosody, &domain, rest));
    assert!(
        gateway.wait_upstream(TIMEOUT * 2).await,
        "gateway connected upstream"
    );
    let mut bob = TestClient::connect(&prosody, "bob", "pw").await;
    let [boiler, attic, door, left, right] =
        ["boiler", "attic", "door", "left", "right"].map(|d| jid(d, &domain));
    for d in [&boiler, &attic, &door, &left, &right] {
        subscribe(&mut bob, d).await;
    }

    let mut rf = xml.open_device();
    rf.send(
        b"\n<SensorTemp ID='250715' TimeDate='19:28:33 Jul 17 2015'> 22 </SensorTemp>\n\
          <SensorTemp  ID = \"250716\" >\t18 </SensorTemp>\n\
          <SensorTemp TimeDate='19:30:00 Jul 17 2015'>99</SensorTemp>\n\
          <Note ID='250716'>a &lt; b &amp;&amp; c&#233;</Note>\n\
          <?xml version='1.0'?><Door ID='7' open='true'/>\n",
    )
    .await;
    wait_status(&mut bob, &door, "open").await;
    let f = momentary(&mut bob, &boiler, 1).await;
    check(field(&f, "temperature"), "numeric", "22", Some("°C"));
    // The record's own time, read as local time, is the reading's time.
    let when = chrono::NaiveDate::from_ymd_opt(2015, 7, 17)
        .and_then(|d| d.and_hms_opt(19, 28, 33))
        .expect("date");
    let when = chrono::TimeZone::from_local_datetime(&chrono::Local, &when)
        .earliest()
        .expect("local time")
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(field(&f, "temperature").timestamp, when);
    let f = momentary(&mut bob, &attic, 2).await;
    check(field(&f, "temperature"), "numeric", "18", Some("°C"));
    check(field(&f, "note"), "string", "a < b && cé", None);
    assert_ne!(
        field(&f, "temperature").timestamp,
        when,
        "no TimeDate: arrival time"
    );
    let f = momentary(&mut bob, &door, 3).await;
    check(field(&f, "open"), "boolean", "true", None);
    // The record without ID went nowhere, and was counted and logged.
    assert!(
        gateway
            .wait_log("Record matches no device adapter=rf", TIMEOUT)
            .await,
        "unmatched record logged"
    );
    assert!(gateway.log_text().contains("unmatched=1"));

    let mut hub = json.open_device();
    hub.send(b"\n{\"id\": \"L\", \"p\": 100}\n{\"meta\": {\"id\": 2}, \"p\": 250.5}\n{\"id\": \"X\", \"p\": 1}\n")
        .await;
    wait_status(&mut bob, &right, "250.5").await;
    let f = momentary(&mut bob, &left, 4).await;
    check(field(&f, "power"), "numeric", "100", Some("W"));
    let f = momentary(&mut bob, &right, 5).await;
    check(field(&f, "power"), "numeric", "250.5", Some("W"));
    gateway.terminate().await;
}

#[tokio::test]
async fn a_closed_pty_makes_the_devices_unavailable_until_it_is_back() {
    let (prosody, domain) = prosody().await;
    let mut pty = PtyPair::new().await;
    let port = pty.port().to_owned();
    let rest = |toml: GatewayToml| {
        toml.adapter(serial_adapter("uart", &port, "kv"))
            .device(device("meter", "uart").field(gateway_toml::field("temp").set("unit", "°C")))
            .device(
                device("probe", "uart")
                    .inline("match", Section::new().set("id", "p"))
                    .field(gateway_toml::field("temp")),
            )
    };
    let mut gateway = Gateway::spawn(&config(&prosody, &domain, rest));
    assert!(
        gateway.wait_upstream(TIMEOUT * 2).await,
        "gateway connected upstream"
    );
    let pid = gateway.pid();
    let mut bob = TestClient::connect(&prosody, "bob", "pw").await;
    let meter = jid("meter", &domain);
    let probe = jid("probe", &domain);
    subscribe(&mut bob, &meter).await;
    subscribe(&mut bob, &probe).await;
    let mut dev = pty.open_device();
    dev.send(b"\ntemp=1.5 id=p\n").await;
    wait_status(&mut bob, &meter, "1.5").await;

    // The pty goes away: both devices become unavailable, with the reason.
    drop(dev);
    pty.kill().await;
    for d in [&meter, &probe] {
        let p = bob
            .recv_presence_from(d, PresenceType::Unavailable, TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("{d} goes unavailable"));
        let status = presence_status(&p).unwrap_or_default();
        assert!(
            status.contains("serial port") && status.contains(&pty.port().display().to_string()),
            "{status}"
        );
    }
    // Forget the presences from before the loss, then start a new socat on the same path: the
    // gateway finds it by itself.
    bob.drain();
    pty.start().await;
    for d in [&meter, &probe] {
        bob.recv_presence_from(d, PresenceType::None, TIMEOUT * 3)
            .await
            .unwrap_or_else(|| panic!("{d} comes back"));
    }
    let mut dev = pty.open_device();
    dev.send(b"\ntemp=2.5 id=p\n").await;
    wait_status(&mut bob, &probe, "2.5").await;
    assert_eq!(gateway.pid(), pid, "the same gateway process");
    assert!(gateway.is_running());
    assert!(gateway.log_text().contains("Serial port is back"));
    gateway.terminate().await;
}

#[tokio::test]
async fn a_write_sends_its_command_line_and_waits_for_the_acknowledgement() {
    let (prosody, domain) = prosody().await;
    let pty = PtyPair::new().await;
    let rest = |toml: GatewayToml| {
        toml.adapter(serial_adapter("uart", pty.port(), "kv"))
            .device(
                device("relay", "uart")
                    .field(
                        gateway_toml::field("on")
                            .set("type", "boolean")
                            .set("writable", true)
                            .set("command_template", "SET {field} {value}\n")
                            .set("ack_pattern", r"^OK\b")
                            .set("ack_timeout", "1s"),
                    )
                    .field(
                        gateway_toml::field("level")
                            .set("type", "integer")
                            .set("unit", "%")
                            .set("writable", true)
                            .set("command_template", "LEVEL {value}\r\n"),
                    )
                    .field(
                        gateway_toml::field("display")
                            .set("type", "string")
                            .set("writable", true)
                            .set("command_template", "TXT {value}\n"),
                    ),
            )
    };
    let mut gateway = Gateway::spawn(&config(&prosody, &domain, rest));
    assert!(
        gateway.wait_upstream(TIMEOUT * 2).await,
        "gateway connected upstream"
    );
    let mut alice = TestClient::connect(&prosody, "alice", "pw").await;
    let relay = jid("relay", &domain);
    let mut dev = pty.open_device();

    // The device answers `OK` once it has the command.
    let answer = tokio::spawn(async move {
        let line = dev.line().await;
        dev.send(b"level=3\nOK on\n").await;
        (dev, line)
    });
    let set = el(&format!(
        "<set xmlns='{NS_CTL}'><boolean name='on' value='true'/></set>"
    ));
    let resp = alice
        .iq_set(&relay, set)
        .await
        .expect("setResponse")
        .expect("payload");
    assert!(resp.is("setResponse", NS_CTL));
    assert_eq!(resp.attr("responseCode"), Some("OK"));
    let (mut dev, line) = answer.await.expect("device task");
    assert_eq!(line, "SET on true\n");

    // Without `ack_pattern`: done once written.
    let set = el(&format!(
        "<set xmlns='{NS_CTL}'><int name='level' value='42'/></set>"
    ));
    alice.iq_set(&relay, set).await.expect("setResponse");
    assert_eq!(dev.line().await, "LEVEL 42\r\n");
    let f = momentary(&mut alice, &relay, 1).await;
    check(field(&f, "on"), "boolean", "true", None);
    check(field(&f, "level"), "numeric", "42", Some("%"));

    // No acknowledgement: the write fails after `ack_timeout`, and says so.
    let set = el(&format!(
        "<set xmlns='{NS_CTL}'><boolean name='on' value='false'/></set>"
    ));
    let err = alice.iq_set(&relay, set).await.expect_err("no ack");
    assert_eq!(err.defined_condition, DefinedCondition::RemoteServerTimeout);
    assert_eq!(dev.line().await, "SET on false\n");
    let f = momentary(&mut alice, &relay, 2).await;
    check(field(&f, "on"), "boolean", "true", None);

    // A control character in a text value is refused before anything is sent. (XML turns
    // line breaks in attributes into spaces and chat commands end at the first line break, so a
    // tab is what can reach the adapter; it refuses every control character alike.)
    let answer = alice
        .chat_and_wait(&relay, "set display hi\tREBOOT", TIMEOUT)
        .await
        .expect("an answer");
    assert!(
        answer.starts_with("Not done") && answer.contains("control character"),
        "{answer}"
    );
    let set = el(&format!(
        "<set xmlns='{NS_CTL}'><string name='display' value='hi there'/></set>"
    ));
    alice.iq_set(&relay, set).await.expect("setResponse");
    assert_eq!(
        dev.line().await,
        "TXT hi there\n",
        "the refused text never went out"
    );
    gateway.terminate().await;
}

#[tokio::test]
async fn garbage_and_over_long_lines_are_counted_and_do_not_disturb_the_rest() {
    let (prosody, domain) = prosody().await;
    let pty = PtyPair::new().await;
    let rest = |toml: GatewayToml| {
        toml.adapter(serial_adapter("uart", pty.port(), "kv").set("max_line", 64_i64))
            .device(
                device("meter", "uart")
                    .field(gateway_toml::field("temp").set("unit", "°C"))
                    .field(gateway_toml::field("label").set("type", "string")),
            )
    };
    let mut gateway = Gateway::spawn(&config(&prosody, &domain, rest));
    assert!(
        gateway.wait_upstream(TIMEOUT * 2).await,
        "gateway connected upstream"
    );
    let mut bob = TestClient::connect(&prosody, "bob", "pw").await;
    let meter = jid("meter", &domain);
    subscribe(&mut bob, &meter).await;

    let mut dev = pty.open_device();
    let mut bytes = b"\ntemp=1\n".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, 0x00, 0x80, b'\n']);
    bytes.extend_from_slice(&[b'x'; 10_000]);
    bytes.extend_from_slice(b"\ntemp=2\nnot a record at all\ntemp=warm\n");
    bytes.extend_from_slice(b"label=\"\x01bell\x07 and \x1b[0mescape\"\ntemp=3\n");
    dev.send(&bytes).await;
    wait_status(&mut bob, &meter, "temp 3").await;

    // Every good reading arrived, in order, and nothing else did.
    let history = readout(&mut bob, &meter, 1, "historical='true'").await;
    let temps: Vec<&str> = history
        .iter()
        .filter(|f| f.name == "temp")
        .map(|f| f.value.as_str())
        .collect();
    assert_eq!(temps, ["1", "2", "3"], "{history:#?}");
    let f = momentary(&mut bob, &meter, 2).await;
    check(field(&f, "label"), "string", "bell and [0mescape", None);

    // Counted and logged: DEBUG per line with the totals, one WARN naming the port.
    let log = gateway.log_text();
    assert!(
        log.contains("too_long=1 not_utf8=1 partial=0 unparsable=1 bad_values=1"),
        "counters in the log:\n{}",
        support::tail(&log, 40)
    );
    let warns = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("Dropping bad input from serial port"))
        .count();
    assert_eq!(warns, 1, "one rate-limited warning");
    assert!(log.contains(&format!("serial port {}", pty.port().display())));
    gateway.terminate().await;
}

/// `rs485 = true` on a port whose driver has no RS-485 mode (a pseudo-terminal answers the
/// ioctl with ENOTTY, like a USB adapter's driver): the port is used as it is, the refusal is
/// counted at every open and said once in a WARN, and the line keeps working across a reopen.
#[tokio::test]
async fn rs485_on_a_port_without_it_is_warned_once_counted_and_the_line_works() {
    let (prosody, domain) = prosody().await;
    let mut pty = PtyPair::new().await;
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", support::free_port())
        .parse()
        .expect("metrics address");
    let port = pty.port().to_owned();
    let rest = |toml: GatewayToml| {
        toml.metrics(metrics)
            .adapter(
                serial_adapter("uart", &port, "kv")
                    .set("rs485", true)
                    .set("rts_on_send", "high")
                    .set("delay_after_send", "1ms"),
            )
            .device(device("meter", "uart").field(gateway_toml::field("temp")))
    };
    let mut gateway = Gateway::spawn(&config(&prosody, &domain, rest));
    assert!(
        gateway.wait_upstream(TIMEOUT * 2).await,
        "gateway connected upstream"
    );
    let mut bob = TestClient::connect(&prosody, "bob", "pw").await;
    let meter = jid("meter", &domain);
    subscribe(&mut bob, &meter).await;
    let mut dev = pty.open_device();
    dev.send(b"\ntemp=1.5\n").await;
    wait_status(&mut bob, &meter, "1.5").await;
    let failures = "xmpp_iot_gateway_serial_rs485_failures_total{adapter=\"uart\"}";
    let (_, text) = support::metrics::http_get(metrics, "/metrics").await;
    assert_eq!(
        support::metrics::sample(&text, failures),
        Some(1.0),
        "{text}"
    );

    // Unplugged and back: the new open is refused again and counted, but not warned about.
    drop(dev);
    pty.kill().await;
    bob.recv_presence_from(&meter, PresenceType::Unavailable, TIMEOUT)
        .await
        .expect("unavailable while the port is gone");
    bob.drain();
    pty.start().await;
    bob.recv_presence_from(&meter, PresenceType::None, TIMEOUT * 3)
        .await
        .expect("back once the port is");
    let mut dev = pty.open_device();
    dev.send(b"\ntemp=2.5\n").await;
    wait_status(&mut bob, &meter, "2.5").await;
    let (_, text) = support::metrics::http_get(metrics, "/metrics").await;
    assert_eq!(
        support::metrics::sample(&text, failures),
        Some(2.0),
        "{text}"
    );
    let log = gateway.log_text();
    let warns: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("RS-485"))
        .collect();
    assert_eq!(warns.len(), 1, "one warning:\n{}", support::tail(&log, 40));
    assert!(
        warns[0].contains("without RS-485 direction control")
            && warns[0].contains("the port's driver has no RS-485 mode"),
        "{}",
        warns[0]
    );
    gateway.terminate().await;
}
