//! The Modbus adapter end to end: pymodbus's simulator (tests/fixtures/modbus_server.py, an
//! independent implementation with a register map computed by Python's `struct`) over TCP and
//! over RTU through a `socat` pty pair, the gateway binary, a real Prosody, and an XMPP user who
//! reads and writes through XEP-0323/0325 as any client would.
//!
//! Needs `socat` and the test venv with pymodbus (`scripts/install-deps.sh` installs both).

use std::time::Duration;

use crate::support::client::presence_status;
use crate::support::gateway_toml::{
    device, modbus_rtu_adapter, modbus_tcp_adapter, register_field, xmpp, Section,
};
use crate::support::{
    eventually, free_port, Gateway, GatewayToml, ModbusServer, Prosody, ProsodyOpts, PtyPair,
    TestClient, TIMEOUT,
};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::Type as PresenceType;
use xmpp_parsers::stanza_error::DefinedCondition;

const NS_SD: &str = "urn:xmpp:iot:sensordata";
const NS_CTL: &str = "urn:xmpp:iot:control";

/// Prosody with one component and the user alice (who may read and control), and a gateway
/// running `body` (which adds the adapters and devices).
struct Rig {
    prosody: Prosody,
    gateway: Gateway,
    domain: String,
}

impl Rig {
    async fn start(body: impl FnOnce(GatewayToml) -> GatewayToml) -> Rig {
        let prosody = Prosody::start(ProsodyOpts::new().random_component()).await;
        prosody.register("alice", "pw").await;
        let domain = prosody.component_domain().to_owned();
        let mut gateway = Gateway::spawn(&config(&prosody, &domain, body));
        assert!(
            gateway.wait_upstream(TIMEOUT).await,
            "gateway connected upstream"
        );
        Rig {
            prosody,
            gateway,
            domain,
        }
    }

    fn jid(&self, device: &str) -> Jid {
        Jid::new(&format!("{device}@{}", self.domain)).expect("device jid")
    }

    async fn alice(&self) -> TestClient {
        TestClient::connect(&self.prosody, "alice", "pw").await
    }
}

fn config(
    prosody: &Prosody,
    domain: &str,
    body: impl FnOnce(GatewayToml) -> GatewayToml,
) -> String {
    body(
        GatewayToml::new("modbus test", prosody.component_toml(domain))
            .gateway("history", "1h")
            .access("read", &["alice@localhost"])
            .access("control", &["alice@localhost"])
            .publish_every_reading(),
    )
    .build()
}

/// Every data type and byte order of the fixture's map, with the values Python packed there.
fn all_types_device(id: &str, adapter: &str, unit: u8) -> Section {
    let fields = [
        register_field("i16", "holding", 0).set("data_type", "int16"),
        register_field("u16", "holding", 1).set("data_type", "UINT16"),
        register_field("i32", "holding", 2).set("data_type", "int32"),
        register_field("u32", "holding", 4).set("data_type", "uint32"),
        register_field("i64", "holding", 6)
            .set("data_type", "int64")
            .set("type", "integer"),
        register_field("u64", "holding", 10).set("data_type", "uint64"),
        register_field("f32", "holding", 14).set("data_type", "FLOAT32-IEEE"),
        register_field("f64", "holding", 16).set("data_type", "float64"),
        register_field("f32_cdab", "holding", 20)
            .set("data_type", "float32")
            .set("byte_order", "CDAB"),
        register_field("f32_badc", "holding", 22)
            .set("data_type", "float32")
            .set("byte_order", "byte"),
        register_field("f32_dcba", "holding", 24)
            .set("data_type", "float32")
            .set("byte_order", "DCBA"),
        register_field("i32_cdab", "holding", 26)
            .set("data_type", "int32")
            .set("byte_order", "word"),
        register_field("u32_dcba", "holding", 28)
            .set("data_type", "uint32")
            .set("byte_order", "word_byte"),
        register_field("i64_cdab", "holding", 30)
            .set("data_type", "int64")
            .set("byte_order", "GHEFCDAB")
            .set("type", "integer"),
        register_field("f64_dcba", "holding", 34)
            .set("data_type", "float64")
            .set("byte_order", "HGFEDCBA"),
        register_field("u64_badc", "holding", 38)
            .set("data_type", "uint64")
            .set("byte_order", "BADCFEHG"),
        register_field("i16_badc", "holding", 42)
            .set("data_type", "int16")
            .set("byte_order", "BADC"),
        register_field("text", "holding", 43)
            .set("data_type", "string")
            .set("length", 4_i64),
        register_field("bit0", "holding", 47).set("bit", 0_i64),
        register_field("bit1", "holding", 47).set("bit", 1_i64),
        register_field("bit15", "holding", 47).set("bit", 15_i64),
        register_field("tenths", "holding", 48)
            .set("scale", 0.1)
            .set("unit", "°C"),
        register_field("scaled", "holding", 49)
            .set("data_type", "uint16")
            .set("scale", 0.5)
            .set("offset", -40_i64),
        register_field("negative", "holding", 50).set("scale", -2_i64),
        register_field("coil0", "coil", 0),
        register_field("coil1", "coil", 1),
        register_field("input0", "input", 0).set("data_type", "uint16"),
        register_field("input3", "input", 3).set("data_type", "uint16"),
        register_field("discrete1", "discrete", 1),
    ];
    fields.into_iter().fold(
        device(id, adapter)
            .set("unit_id", i64::from(unit))
            .set("poll", "500ms"),
        Section::field,
    )
}

/// What the fixture's map holds, as XEP-0323 `value` attributes.
const ALL_TYPES_VALUES: &[(&str, &str)] = &[
    ("i16", "-12345"),
    ("u16", "54321"),
    ("i32", "-123456789"),
    ("u32", "3000000000"),
    ("i64", "-1234567890123456789"),
    // The nearest double of 12345678901234567890 (a numeric field is a double).
    ("u64", "12345678901234567000"),
    ("f32", "21.5"),
    ("f64", "-1234.5678"),
    ("f32_cdab", "21.5"),
    ("f32_badc", "21.5"),
    ("f32_dcba", "21.5"),
    ("i32_cdab", "-123456789"),
    ("u32_dcba", "3000000000"),
    ("i64_cdab", "-1234567890123456789"),
    ("f64_dcba", "-1234.5678"),
    ("u64_badc", "12345678901234567000"),
    ("i16_badc", "-12345"),
    ("text", "HELLO-42"),
    ("bit0", "true"),
    ("bit1", "false"),
    ("bit15", "true"),
    ("tenths", "21.5"),
    ("scaled", "10"),
    ("negative", "40"),
    ("coil0", "true"),
    ("coil1", "false"),
    ("input0", "42"),
    ("input3", "45"),
    ("discrete1", "true"),
];

fn req(seqnr: u32) -> Element {
    format!("<req xmlns='{NS_SD}' seqnr='{seqnr}' momentary='true'/>")
        .parse()
        .expect("req")
}

/// Field name → (value, error flag) of a `fields` payload.
fn fields_of(fields: &Element) -> Vec<(String, String, bool)> {
    fields
        .children()
        .flat_map(|node| node.children())
        .flat_map(|ts| ts.children())
        .filter_map(|f| {
            Some((
                f.attr("name")?.to_owned(),
                f.attr("value")?.to_owned(),
                f.attr("error") == Some("true"),
            ))
        })
        .collect()
}

/// Momentary readouts of `jid` until `done` accepts the fields (a device's first readings
/// may still be on their way when its presence arrives).
async fn readout_until(
    client: &mut TestClient,
    jid: &Jid,
    mut done: impl FnMut(&[(String, String, bool)]) -> bool,
) -> Vec<(String, String, bool)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut seqnr = rand::random::<u16>() as u32;
    loop {
        seqnr += 1;
        client
            .iq_get(jid, req(seqnr))
            .await
            .expect("readout accepted");
        let wanted = seqnr.to_string();
        let m = client
            .recv_message(TIMEOUT, |m| {
                m.from.as_ref() == Some(jid)
                    && m.payloads
                        .iter()
                        .any(|p| p.is("fields", NS_SD) && p.attr("seqnr") == Some(&wanted))
            })
            .await
            .expect("the readout's fields");
        let payload = m
            .payloads
            .iter()
            .find(|p| p.is("fields", NS_SD))
            .expect("fields payload");
        let fields = fields_of(payload);
        if done(&fields) {
            return fields;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readout never satisfied the test: {fields:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn value_of<'a>(fields: &'a [(String, String, bool)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, v, _)| v.as_str())
}

/// Every value of `expected` is in `fields`.
fn has_all(fields: &[(String, String, bool)], expected: &[(&str, &str)]) -> bool {
    expected
        .iter()
        .all(|(name, value)| value_of(fields, name) == Some(value))
}

fn assert_all(fields: &[(String, String, bool)], expected: &[(&str, &str)]) {
    for (name, value) in expected {
        assert_eq!(
            value_of(fields, name),
            Some(*value),
            "field {name} in {fields:?}"
        );
    }
}

/// Subscribes `client` to `jid` and returns the first presence of `type_` from it.
async fn subscribe(client: &mut TestClient, jid: &Jid, type_: PresenceType) -> String {
    client.subscribe(jid).await;
    client
        .recv_presence_from(jid, PresenceType::Subscribed, TIMEOUT)
        .await
        .expect("subscription approved");
    let p = client
        .recv_presence_from(jid, type_.clone(), Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("no {type_:?} presence from {jid}"));
    presence_status(&p).unwrap_or_default()
}

/// The server's requests for `unit`, without the `unit=` prefix.
fn requests_of(server: &ModbusServer, unit: u8) -> Vec<String> {
    let prefix = format!("unit={unit} ");
    server
        .requests()
        .into_iter()
        .filter_map(|r| r.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

fn tcp_adapter(id: &str, port: u16) -> Section {
    modbus_tcp_adapter(id, &format!("127.0.0.1:{port}")).set("timeout", "1s")
}

/// `temp`, the fixture's float32 at holding register 14 (21.5).
fn float_temp() -> Section {
    register_field("temp", "holding", 14).set("data_type", "float32")
}

/// Points with gaps on unit 2, for the request planner.
fn gappy_device(adapter: &str) -> Section {
    device("gappy", adapter)
        .set("unit_id", 2_i64)
        .set("poll", "300ms")
        .field(register_field("a", "holding", 100).set("data_type", "uint16"))
        .field(register_field("b", "holding", 101).set("data_type", "float32"))
        .field(register_field("c", "holding", 104))
        .field(register_field("d", "holding", 130).set("data_type", "int32"))
        .field(register_field("e", "input", 0))
        .field(register_field("f", "input", 3))
        .field(register_field("g", "coil", 0))
        .field(register_field("h", "coil", 5))
}

#[tokio::test]
async fn tcp_decodes_every_type_and_byte_order_and_coalesces_requests() {
    let port = free_port();
    let server =
        ModbusServer::start(&["--tcp", &format!("127.0.0.1:{port}"), "--units", "1,2"]).await;
    let body = |toml: GatewayToml| {
        toml.adapter(tcp_adapter("plc", port))
            .device(all_types_device("all", "plc", 1))
            .device(gappy_device("plc"))
    };

    // `check` prints the request plan.
    let check_config = body(GatewayToml::upstream(xmpp(
        Section::new()
            .set("domain", "sensors.example.org")
            .set("secret_file", "absent.secret"),
    )))
    .build();
    let check = Gateway::cli(Some(&check_config), &["check"]).await;
    assert!(check.success(), "check failed: {}", check.stderr);
    let plan: Vec<&str> = check
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("MODBUS DEVICE"))
        .collect();
    let requests: Vec<&str> = plan
        .iter()
        .skip(1)
        .map(|l| {
            l.split("  ")
                .filter(|c| !c.is_empty())
                .last()
                .unwrap_or("")
                .trim()
        })
        .collect();
    assert_eq!(
        requests,
        [
            "coil start 0 count 2",
            "discrete start 1 count 1",
            "holding start 0 count 51",
            "input start 0 count 4",
            "coil start 0 count 6",
            "holding start 100 count 5",
            "holding start 130 count 2",
            "input start 0 count 4",
        ],
        "{}",
        check.stdout
    );

    let rig = Rig::start(body).await;
    let mut alice = rig.alice().await;
    let all = rig.jid("all");
    subscribe(&mut alice, &all, PresenceType::None).await;
    let fields = readout_until(&mut alice, &all, |f| has_all(f, ALL_TYPES_VALUES)).await;
    assert_all(&fields, ALL_TYPES_VALUES);
    assert!(fields.iter().all(|(_, _, error)| !error));

    let gappy = rig.jid("gappy");
    let fields = readout_until(&mut alice, &gappy, |f| f.len() == 8).await;
    assert_all(
        &fields,
        &[
            ("a", "7"),
            ("b", "-0.5"),
            ("c", "300"),
            ("d", "99999"),
            ("e", "42"),
            ("f", "45"),
            ("g", "true"),
            ("h", "true"),
        ],
    );

    // The server saw exactly the planned requests for unit 2, one of each per poll.
    assert!(
        eventually(Duration::from_secs(20), || requests_of(&server, 2).len()
            >= 20)
        .await,
        "unit 2 is polled"
    );
    let seen = requests_of(&server, 2);
    let planned = [
        "fc=1 address=0 count=6",
        "fc=3 address=100 count=5",
        "fc=3 address=130 count=2",
        "fc=4 address=0 count=4",
    ];
    assert!(
        seen.iter().all(|r| planned.contains(&r.as_str())),
        "unplanned requests: {seen:?}"
    );
    let counts: Vec<usize> = planned
        .iter()
        .map(|p| seen.iter().filter(|r| r == p).count())
        .collect();
    let polls = counts[0];
    assert!(
        counts.iter().all(|c| *c == polls || *c + 1 == polls),
        "one of each per poll: {counts:?}"
    );
    // And unit 1 (the all-types device) needed four requests per poll, not one per field.
    let unit1 = requests_of(&server, 1);
    assert!(
        unit1.iter().all(|r| [
            "fc=1 address=0 count=2",
            "fc=2 address=1 count=1",
            "fc=3 address=0 count=51",
            "fc=4 address=0 count=4",
        ]
        .contains(&r.as_str())),
        "{unit1:?}"
    );
}

#[tokio::test]
async fn tcp_writes_change_the_server_and_answer_with_the_read_back() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let server = ModbusServer::start(&["--tcp", &address, "--units", "1"]).await;
    let body = |toml: GatewayToml| {
        toml.adapter(tcp_adapter("plc", port)).device(
            device("act", "plc")
                .set("poll", "1s")
                .field(register_field("relay", "coil", 1).set("writable", true))
                .field(
                    register_field("setpoint", "holding", 60)
                        .set("type", "integer")
                        .set("writable", true),
                )
                .field(
                    register_field("level", "holding", 62)
                        .set("data_type", "float32")
                        .set("byte_order", "CDAB")
                        .set("writable", true),
                ),
        )
    };
    let rig = Rig::start(body).await;
    let mut alice = rig.alice().await;
    let act = rig.jid("act");
    subscribe(&mut alice, &act, PresenceType::None).await;
    readout_until(&mut alice, &act, |f| {
        has_all(f, &[("relay", "false"), ("setpoint", "0"), ("level", "0")])
    })
    .await;

    let set: Element = format!(
        "<set xmlns='{NS_CTL}'><boolean name='relay' value='true'/>\
         <int name='setpoint' value='-300'/><double name='level' value='-1.25'/></set>"
    )
    .parse()
    .expect("set");
    let resp = alice
        .iq_set(&act, set)
        .await
        .expect("the write succeeds")
        .expect("setResponse");
    assert!(resp.is("setResponse", NS_CTL));
    assert_eq!(resp.attr("responseCode"), Some("OK"));

    // FC5 for the coil, FC6 for the int16, FC16 for the float32.
    let writes: Vec<String> = requests_of(&server, 1)
        .into_iter()
        .filter(|r| r.starts_with("fc=5") || r.starts_with("fc=6") || r.starts_with("fc=16"))
        .collect();
    assert_eq!(writes.len(), 3, "{writes:?}");
    assert!(writes[0].starts_with("fc=5 address=1"), "{writes:?}");
    assert!(writes[1].starts_with("fc=6 address=60"), "{writes:?}");
    assert!(writes[2].starts_with("fc=16 address=62"), "{writes:?}");
    // The server's registers, read by pymodbus's own client: -300 = 0xFED4; -1.25f32 =
    // 0xBFA00000, low word first (CDAB).
    assert_eq!(
        server.read(&address, "holding", 60, 4).await,
        "65236 0 0 49056"
    );
    assert_eq!(server.read(&address, "coil", 1, 1).await, "1");
    // The gateway reports the read-back values.
    let fields = readout_until(&mut alice, &act, |f| {
        has_all(
            f,
            &[("relay", "true"), ("setpoint", "-300"), ("level", "-1.25")],
        )
    })
    .await;
    assert_all(&fields, &[("setpoint", "-300")]);

    // A value that does not fit an int16 is refused, never truncated: nothing is written.
    let before = requests_of(&server, 1)
        .iter()
        .filter(|r| r.starts_with("fc=6"))
        .count();
    let set: Element = format!("<set xmlns='{NS_CTL}'><int name='setpoint' value='40000'/></set>")
        .parse()
        .expect("set");
    let err = alice.iq_set(&act, set).await.expect_err("out of range");
    assert_eq!(err.defined_condition, DefinedCondition::BadRequest);
    let text = err.texts.values().next().cloned().unwrap_or_default();
    assert!(text.contains("does not fit"), "{text}");
    let after = requests_of(&server, 1)
        .iter()
        .filter(|r| r.starts_with("fc=6"))
        .count();
    assert_eq!(before, after);
    assert_eq!(server.read(&address, "holding", 60, 1).await, "65236");
}

#[tokio::test]
async fn tcp_exception_is_reported_and_the_link_stays_up() {
    let port = free_port();
    let server =
        ModbusServer::start(&["--tcp", &format!("127.0.0.1:{port}"), "--units", "1"]).await;
    let body = |toml: GatewayToml| {
        toml.adapter(tcp_adapter("plc", port)).device(
            device("meter", "plc")
                .set("poll", "300ms")
                .field(register_field("count", "input", 0))
                .field(float_temp()),
        )
    };
    let rig = Rig::start(body).await;
    let mut alice = rig.alice().await;
    let meter = rig.jid("meter");
    subscribe(&mut alice, &meter, PresenceType::None).await;
    readout_until(&mut alice, &meter, |f| {
        has_all(f, &[("count", "42"), ("temp", "21.5")])
    })
    .await;

    // The device refuses input reads: those points keep their last value, flagged as errors.
    std::fs::write(server.fault_path(), "").expect("fault file");
    assert!(
        rig.gateway
            .wait_log("server device failure (exception 4)", TIMEOUT)
            .await,
        "the exception is logged by name"
    );
    let fields = readout_until(&mut alice, &meter, |f| {
        f.iter().any(|(n, _, error)| n == "count" && *error)
    })
    .await;
    assert!(
        fields.contains(&("count".into(), "42".into(), true)),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("temp".into(), "21.5".into(), false)),
        "{fields:?}"
    );
    // A few more refused polls: logged once, the device stays available, the link stays up.
    let fc4 = |s: &ModbusServer| {
        requests_of(s, 1)
            .iter()
            .filter(|r| r.starts_with("fc=4"))
            .count()
    };
    let now = fc4(&server);
    assert!(eventually(TIMEOUT, || fc4(&server) >= now + 5).await);
    let log = rig.gateway.log_text();
    assert_eq!(
        log.matches("Device refused a read").count(),
        1,
        "logged once"
    );
    assert_eq!(
        log.matches("Modbus link open").count(),
        1,
        "never reconnected"
    );
    assert!(!log.contains("Modbus link down"));
    assert!(
        alice
            .recv_presence_from(
                &meter,
                PresenceType::Unavailable,
                Duration::from_millis(500)
            )
            .await
            .is_none(),
        "an exception is no reason to go unavailable"
    );

    // Cleared: good values again.
    std::fs::remove_file(server.fault_path()).expect("remove fault file");
    readout_until(&mut alice, &meter, |f| {
        f.iter()
            .any(|(n, v, error)| n == "count" && v == "42" && !*error)
    })
    .await;
    assert!(
        rig.gateway
            .wait_log("Device answers the request again", TIMEOUT)
            .await
    );
}

#[tokio::test]
async fn tcp_server_restart_is_reconnected_without_restarting_the_gateway() {
    let port = free_port();
    let mut server =
        ModbusServer::start(&["--tcp", &format!("127.0.0.1:{port}"), "--units", "1"]).await;
    let body = |toml: GatewayToml| {
        toml.adapter(tcp_adapter("plc", port)).device(
            device("meter", "plc")
                .set("poll", "300ms")
                .field(float_temp()),
        )
    };
    let mut rig = Rig::start(body).await;
    let mut alice = rig.alice().await;
    let meter = rig.jid("meter");
    subscribe(&mut alice, &meter, PresenceType::None).await;
    let pid = rig.gateway.pid();

    server.stop().await;
    let gone = alice
        .recv_presence_from(&meter, PresenceType::Unavailable, Duration::from_secs(20))
        .await
        .expect("unavailable while the server is down");
    let reason = presence_status(&gone).unwrap_or_default();
    assert!(reason.contains(&format!("127.0.0.1:{port}")), "{reason}");

    alice.drain();
    server.spawn().await;
    let back = alice
        .recv_presence(Duration::from_secs(40), |p| {
            p.type_ == PresenceType::None
                && p.from
                    .as_ref()
                    .is_some_and(|f| f.to_bare() == meter.to_bare())
        })
        .await
        .expect("available again after the server restarts");
    assert!(presence_status(&back).unwrap_or_default().contains("temp"));
    assert!(rig.gateway.is_running());
    assert_eq!(rig.gateway.pid(), pid, "the same gateway process");
    assert!(rig.gateway.wait_log("Modbus link restored", TIMEOUT).await);
    readout_until(&mut alice, &meter, |f| has_all(f, &[("temp", "21.5")])).await;
}

#[tokio::test]
async fn rtu_over_a_pty_decodes_every_type_and_a_dead_unit_does_not_stall_the_bus() {
    let pty = PtyPair::new().await;
    let server = ModbusServer::start(&[
        "--serial",
        &pty.device_path().to_string_lossy(),
        "--units",
        "1",
    ])
    .await;
    let body = |toml: GatewayToml| {
        toml.adapter(
            modbus_rtu_adapter("rs485", pty.port())
                .set("baud", 19200_i64)
                .set("timeout", "300ms"),
        )
        .device(all_types_device("all", "rs485", 1))
        .device(
            device("ghost", "rs485")
                .set("unit_id", 3_i64)
                .set("poll", "500ms")
                .field(float_temp()),
        )
    };
    let rig = Rig::start(body).await;
    let mut alice = rig.alice().await;
    let ghost = rig.jid("ghost");
    let all = rig.jid("all");

    alice.subscribe(&ghost).await;
    alice
        .recv_presence(Duration::from_secs(20), |p| {
            p.type_ == PresenceType::Unavailable
                && p.from
                    .as_ref()
                    .is_some_and(|f| f.to_bare() == ghost.to_bare())
                && presence_status(p).as_deref() == Some("no response from unit 3 on rs485")
        })
        .await
        .expect("the dead unit is unavailable, and says why");
    subscribe(&mut alice, &all, PresenceType::None).await;
    let fields = readout_until(&mut alice, &all, |f| has_all(f, ALL_TYPES_VALUES)).await;
    assert_all(&fields, ALL_TYPES_VALUES);

    // The healthy unit keeps being polled while the dead one keeps not answering: ten more
    // polls of unit 1 (four requests each) go by, and the dead unit, polled less often after
    // three failures, gets far fewer requests than the healthy one in that time.
    let start1 = requests_of(&server, 1).len();
    let start3 = requests_of(&server, 3).len();
    assert!(
        eventually(Duration::from_secs(30), || requests_of(&server, 1).len()
            >= start1 + 40)
        .await,
        "unit 1 stalled"
    );
    let polls1 = (requests_of(&server, 1).len() - start1) / 4;
    let polls3 = requests_of(&server, 3).len() - start3;
    assert!(
        polls3 < polls1,
        "dead unit polled {polls3} times, healthy {polls1}"
    );
    let fields = readout_until(&mut alice, &all, |f| has_all(f, &[("f32", "21.5")])).await;
    assert!(fields.iter().all(|(_, _, error)| !error));
    assert!(
        alice
            .recv_presence_from(&all, PresenceType::Unavailable, Duration::from_millis(300))
            .await
            .is_none(),
        "the healthy unit never went unavailable"
    );
}

/// Also with `rs485 = true`, which a pseudo-terminal refuses (ENOTTY, as a USB adapter's
/// driver does): the port is used as it is, and the refusal is warned about once, not at
/// every reopen.
#[tokio::test]
async fn rtu_serial_port_that_vanishes_is_reopened_with_back_off() {
    let mut pty = PtyPair::new().await;
    let b = pty.device_path().to_string_lossy().into_owned();
    let mut server = ModbusServer::start(&["--serial", &b, "--units", "1"]).await;
    let body = |toml: GatewayToml| {
        toml.adapter(
            modbus_rtu_adapter("rs485", pty.port())
                .set("timeout", "300ms")
                .set("rs485", true),
        )
        .device(
            device("meter", "rs485")
                .set("poll", "300ms")
                .field(float_temp()),
        )
    };
    let rig = Rig::start(body).await;
    let mut alice = rig.alice().await;
    let meter = rig.jid("meter");
    subscribe(&mut alice, &meter, PresenceType::None).await;
    let pid = rig.gateway.pid();

    // "Unplug the adapter": the pty and the server go away.
    server.stop().await;
    pty.kill().await;
    let gone = alice
        .recv_presence_from(&meter, PresenceType::Unavailable, Duration::from_secs(20))
        .await
        .expect("unavailable once the port is gone");
    let reason = presence_status(&gone).unwrap_or_default();
    assert!(
        reason.contains(&pty.port().display().to_string()),
        "the reason names the port: {reason}"
    );

    // Plugged back in: reopened by the back-off loop, no gateway restart.
    alice.drain();
    pty.start().await;
    server.spawn().await;
    alice
        .recv_presence(Duration::from_secs(40), |p| {
            p.type_ == PresenceType::None
                && p.from
                    .as_ref()
                    .is_some_and(|f| f.to_bare() == meter.to_bare())
        })
        .await
        .expect("available again once the port is back");
    assert_eq!(rig.gateway.pid(), pid, "the same gateway process");
    readout_until(&mut alice, &meter, |f| has_all(f, &[("temp", "21.5")])).await;
    let log = rig.gateway.log_text();
    let warns: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("RS-485"))
        .collect();
    assert_eq!(warns.len(), 1, "one RS-485 warning:\n{log}");
    assert!(
        warns[0].contains("the port's driver has no RS-485 mode"),
        "{}",
        warns[0]
    );
}
