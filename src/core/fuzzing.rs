//! The body of the `stanza` fuzz target: arbitrary XML, read off a stream exactly as the
//! upstream session reads it, through the core's handlers (IQ, messages, readouts, control,
//! presence, the room), with everything the core would send collected and checked.
//!
//! Each input gets a fresh core on a fresh single-threaded runtime, with the real parts it
//! runs with: an adapter that needs no hardware and answers reads and writes (the devices are
//! in `fuzz/stanza-devices.toml`), a store (one SQLite file for the whole process) and its
//! channels. Nothing leaves the process.
//!
//! Input: byte 0 picks the mode (bit 3: client mode, else component) and how the rest is
//! wrapped (bits 0-2: as raw stream content, or inside an IQ get/set, a chat body, a presence
//! type, a message with an arbitrary child, a room message); byte 1 picks the sender and the
//! addressee of a wrapped stanza. What the core sends must serialise to XML that reads back as
//! one stanza.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use minidom::Element;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::jid::Jid;

use super::{Core, CoreInputs, CoreParts};
use crate::config::{self, Config, Env, LoadMode};
use crate::metrics::Registry;
use crate::stats::Stats;
use crate::store::{Store, StoreOptions, StoreThread};
use crate::xmlns;
use crate::xmpp::line_ends::LineEnds;
use crate::xmpp::wire::{self, StanzaReader};
use crate::xmpp::Inbound;

/// The devices every fuzzed core serves (numbers, a writable boolean and integer, a device with
/// its own access list; a room and PubSub to publish to): kept with the fuzz targets, as the
/// adapter type they use is named only there.
const COMMON: &str = include_str!("../../fuzz/stanza-devices.toml");

const COMPONENT: &str = r#"
[gateway]
name = "fuzz-gateway"
state_dir = "/nonexistent/state"
history = "1h"

[xmpp]
mode = "component"
domain = "sensors.localhost"
server = "127.0.0.1:5347"
secret_file = "component.secret"
"#;

const CLIENT: &str = r#"
[gateway]
name = "fuzz-gateway"
state_dir = "/nonexistent/state"
history = "1h"

[xmpp]
mode = "client"
jid = "gateway@localhost"
password_file = "gateway.pass"
"#;

/// Senders of wrapped stanzas: controller, reader, stranger, room occupant, the server, a
/// device itself.
const FROM: [[&str; 6]; 2] = [
    [
        "alice@localhost/phone",
        "bob@localhost/desk",
        "eve@elsewhere.example/x",
        "plant@conference.localhost/alice",
        "localhost",
        "pump@sensors.localhost",
    ],
    [
        "alice@localhost/phone",
        "bob@localhost/desk",
        "eve@elsewhere.example/x",
        "plant@conference.localhost/alice",
        "localhost",
        "gateway@localhost/pump",
    ],
];

/// Addressees: each device, the gateway, a JID nobody serves.
const TO: [[&str; 6]; 2] = [
    [
        "greenhouse@sensors.localhost",
        "pump@sensors.localhost",
        "vault@sensors.localhost",
        "sensors.localhost",
        "nobody@sensors.localhost",
        "pump@sensors.localhost/room",
    ],
    [
        "gateway@localhost/greenhouse",
        "gateway@localhost/pump",
        "gateway@localhost/vault",
        "gateway@localhost/gateway",
        "gateway@localhost",
        "gateway@localhost/nobody",
    ],
];

pub(super) struct Setup {
    /// Component mode, client mode.
    pub(super) configs: [Arc<Config>; 2],
    pub(super) store: Store,
    _store_thread: StoreThread,
}

/// The configurations and the store every core of this process shares (other tests of the
/// core use them too).
pub(super) fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let load = |text: &str| {
            let path = std::path::Path::new("/nonexistent/xmpp-iot-gateway-fuzz/gateway.toml");
            let loaded = config::load_with(path, text, LoadMode::Check, &Env::default())
                .unwrap_or_else(|e| panic!("the fuzz configuration is invalid: {e:?}"));
            Arc::new(loaded.config)
        };
        let configs = [
            load(&format!("{COMPONENT}{COMMON}")),
            load(&format!("{CLIENT}{COMMON}")),
        ];
        let dir = std::env::temp_dir().join(format!("{STORE_PREFIX}{}", std::process::id()));
        remove_stale_stores();
        let opts = StoreOptions {
            history: Duration::from_secs(3600),
            batch_window: Duration::from_millis(50),
            max_bytes: Some(16 << 20),
        };
        let (store, thread, _) = Store::open(&dir, opts).expect("a store in the temp folder");
        Setup {
            configs,
            store,
            _store_thread: thread,
        }
    })
}

/// The store of a fuzzing process is `<temp>/<prefix><pid>`.
const STORE_PREFIX: &str = "xmpp-iot-gateway-fuzz-";

/// Removes the stores that processes no longer running left behind (a fuzzer is stopped, not
/// shut down), and any earlier one of this pid.
fn remove_stale_stores() {
    let proc = std::path::Path::new("/proc");
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(STORE_PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        // Without /proc there is no telling which processes still run: leave them.
        let gone = proc.join("self").exists() && !proc.join(pid.to_string()).exists();
        if gone || pid == std::process::id() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Target `stanza`.
pub fn stanza(data: &[u8]) {
    let [head, addr, rest @ ..] = data else {
        return;
    };
    let mode = usize::from(head & 0x08 != 0);
    let stream = wrap(*head & 0x07, *addr, rest, mode);
    let setup = setup();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let sent = rt.block_on(serve(
        setup.configs[mode].clone(),
        setup.store.clone(),
        stream,
    ));
    let ns = if mode == 1 {
        xmlns::CLIENT
    } else {
        xmlns::COMPONENT
    };
    for el in &sent {
        rt.block_on(check_sent(el, ns));
    }
}

/// The stream content for the input: the bytes as they are, or inside a stanza.
fn wrap(kind: u8, addr: u8, rest: &[u8], mode: usize) -> Vec<u8> {
    let from = escape(FROM[mode][usize::from(addr >> 4) % FROM[mode].len()]);
    let to = escape(TO[mode][usize::from(addr & 0x0f) % TO[mode].len()]);
    let text = || escape(&String::from_utf8_lossy(rest));
    let addressed = format!("from='{from}' to='{to}'");
    let mut out = Vec::with_capacity(rest.len() + 128);
    match kind {
        1 | 2 => {
            let t = if kind == 1 { "get" } else { "set" };
            out.extend_from_slice(format!("<iq type='{t}' id='q{kind}' {addressed}>").as_bytes());
            out.extend_from_slice(rest);
            out.extend_from_slice(b"</iq>");
        }
        3 => out.extend_from_slice(
            format!(
                "<message type='chat' id='m1' {addressed}><body>{}</body></message>",
                text()
            )
            .as_bytes(),
        ),
        4 if rest.is_empty() => {
            out.extend_from_slice(format!("<presence {addressed}/>").as_bytes());
        }
        4 => out.extend_from_slice(format!("<presence type='{}' {addressed}/>", text()).as_bytes()),
        5 => {
            out.extend_from_slice(format!("<message id='m2' {addressed}>").as_bytes());
            out.extend_from_slice(rest);
            out.extend_from_slice(b"</message>");
        }
        6 => out.extend_from_slice(
            format!(
                "<message type='groupchat' id='m3' {addressed}><body>{}</body></message>",
                text()
            )
            .as_bytes(),
        ),
        _ => out.extend_from_slice(rest),
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// Runs a core with the link up, hands it every stanza read from `content`, and returns what
/// it would have sent upstream in answer.
async fn serve(config: Arc<Config>, store: Store, content: Vec<u8>) -> Vec<Element> {
    let shutdown = CancellationToken::new();
    let metrics = Arc::new(Registry::new());
    let (events_tx, events_rx) = mpsc::channel(1024);
    let (requests, _adapters) =
        crate::adapter_start::spawn_all(&config, events_tx, &shutdown, &metrics);
    let (_inbound_tx, inbound_rx) = mpsc::channel(1);
    let (outbound_tx, _outbound_rx) = mpsc::channel(1);
    let (_commands_tx, commands_rx) = mpsc::channel(1);
    let (first_link, _first_link_rx) = oneshot::channel();
    let client_mode = matches!(config.xmpp, config::XmppConfig::Client(_));
    let (mut core, mut inputs) = Core::new(CoreParts {
        config,
        store,
        subscriptions: Vec::new(),
        events: events_rx,
        inbound: inbound_rx,
        outbound: outbound_tx,
        requests,
        stats: Arc::new(Stats::default()),
        commands: commands_rx,
        metrics,
        first_link,
        summary: watch::channel(Default::default()).0,
        heartbeat: watch::channel(Instant::now()).0,
        sessions: None,
    })
    .expect("the fuzz configuration makes a core");

    let mut sent = Vec::new();
    // The adapter's first readings, then the link.
    settle(&mut core, &mut inputs, &mut sent).await;
    if client_mode {
        let mut jids: Vec<Jid> = core.devices.iter().map(|(_, d)| d.jid.clone()).collect();
        jids.push(core.gateway_jid.clone());
        for jid in jids {
            core.on_inbound(Inbound::SessionUp { jid });
        }
    } else {
        core.on_inbound(Inbound::Up);
    }
    settle(&mut core, &mut inputs, &mut sent).await;
    // What the link-up announced does not depend on the input; the checks are for the rest.
    sent.clear();

    let mut stream = wire::stream_open(xmlns::COMPONENT, "fuzz").into_bytes();
    stream.extend_from_slice(&content);
    stream.extend_from_slice(wire::STREAM_CLOSE.as_bytes());
    // Read as `component.rs` reads: line ends normalised first.
    let mut reader = StanzaReader::new(
        tokio::io::BufReader::new(LineEnds::new(&stream[..])),
        xmlns::COMPONENT,
        wire::DEFAULT_MAX_STANZA_BYTES,
    );
    if reader.read_header().await.is_ok() {
        while let Ok(el) = reader.next().await {
            core.on_inbound(Inbound::Stanza(el));
            settle(&mut core, &mut inputs, &mut sent).await;
        }
    }
    for (_, task) in core.scheduled.drain() {
        task.abort();
    }
    shutdown.cancel();
    sent
}

/// Lets spawned work (reads, writes, history queries) run, feeding what comes back to the core
/// as its loop would, until a few turns pass with nothing new; collects what the core sends.
pub(super) async fn settle(core: &mut Core, inputs: &mut CoreInputs, sent: &mut Vec<Element>) {
    let mut quiet = 0;
    while quiet < 4 {
        tokio::task::yield_now().await;
        let mut busy = false;
        while let Ok(ev) = inputs.events.try_recv() {
            core.on_adapter_event(ev);
            busy = true;
        }
        while let Ok(d) = inputs.deferred.try_recv() {
            core.on_deferred(d);
            busy = true;
        }
        while let Some(el) = core.next_output() {
            sent.push(el);
            busy = true;
        }
        quiet = if busy { 0 } else { quiet + 1 };
    }
}

/// A stanza the core sends must serialise, and read back as one stanza of the same name.
async fn check_sent(el: &Element, ns: &'static str) {
    let bytes = wire::encode(el, ns);
    assert!(
        !bytes.is_empty(),
        "a stanza that does not serialise: {el:?}"
    );
    let mut stream = wire::stream_open(ns, "fuzz").into_bytes();
    stream.extend_from_slice(&bytes);
    stream.extend_from_slice(wire::STREAM_CLOSE.as_bytes());
    let mut reader = StanzaReader::new(&stream[..], ns, wire::DEFAULT_MAX_STANZA_BYTES);
    reader.read_header().await.expect("our own stream header");
    let back = reader.next().await.unwrap_or_else(|e| {
        panic!(
            "a stanza that does not read back ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(back.name(), el.name());
    assert!(
        matches!(reader.next().await, Err(wire::WireError::Closed)),
        "one stanza serialised as more: {}",
        String::from_utf8_lossy(&bytes)
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use gateway_api::fuzzing::Mutator;

    #[test]
    fn stanza_seeds_and_mutations_pass() {
        Mutator::new(0x2545_f491_4f6c_dd1d).run(
            Path::new(env!("CARGO_MANIFEST_DIR")),
            "stanza",
            b"<>/='\"&; x",
            300,
            super::stanza,
        );
    }

    /// Every wrapper and addressing reaches the core and gets the answers it should.
    #[test]
    fn wrapped_requests_are_answered() {
        for mode in [0u8, 8] {
            let sent = answers(&[
                &[mode | 1, 0x00][..],
                b"<query xmlns='http://jabber.org/protocol/disco#info'/>",
            ]);
            assert!(
                sent.iter()
                    .any(|s| s.contains("type='result'") && s.contains("id='q1'")),
                "{sent:?}"
            );
            let sent = answers(&[&[mode | 3, 0x01][..], b"get speed"]);
            assert!(sent.iter().any(|s| s.contains("1200")), "{sent:?}");
            let sent = answers(&[&[mode | 3, 0x22][..], b"get"]);
            assert!(sent.iter().any(|s| s.contains("forbidden")), "{sent:?}");
        }
    }

    /// Skipped stanzas are answered from their envelope; a sender over its budget gets
    /// `resource-constraint` and others are still served.
    #[test]
    fn rejected_stanzas_and_floods_are_answered() {
        // Far more than the budget refills in the time the core takes, even on a slow machine.
        const FLOOD: usize = 2000;
        let mut raw = String::new();
        // Kind 0: the rest is stream content as it is.
        raw.push_str(&format!(
            "<iq type='set' id='deep' from='eve@elsewhere.example/x' to='pump@sensors.localhost'>{}{}</iq>",
            "<a xmlns='urn:x'>".repeat(300),
            "</a>".repeat(300)
        ));
        raw.push_str(&format!(
            "<iq type='get' id='big' from='eve@elsewhere.example/x' to='pump@sensors.localhost'><x xmlns='urn:x' a='{}'/></iq>",
            "A".repeat(super::wire::DEFAULT_MAX_STANZA_BYTES)
        ));
        for i in 0..FLOOD {
            raw.push_str(&format!(
                "<iq type='get' id='f{i}' from='eve@elsewhere.example/x' to='sensors.localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
            ));
        }
        raw.push_str("<iq type='get' id='alice' from='alice@localhost/phone' to='sensors.localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
        let sent = answers(&[&[0u8, 0x00][..], raw.as_bytes()]);
        let answer = |id: &str| {
            sent.iter()
                .filter(|s| s.contains(&format!("id='{id}'")))
                .cloned()
                .collect::<Vec<_>>()
        };
        for id in ["deep", "big"] {
            let a = answer(id);
            assert_eq!(a.len(), 1, "{a:?}");
            assert!(a[0].contains("policy-violation"), "{a:?}");
        }
        let mut shed = 0;
        for i in 0..FLOOD {
            let a = answer(&format!("f{i}"));
            assert_eq!(a.len(), 1, "f{i}: {a:?}");
            if a[0].contains("resource-constraint") {
                shed += 1;
            }
        }
        // The budget refills while the core works, so not exactly the burst: but most are over.
        let burst = super::super::shedding::SENDER_BURST as usize;
        assert!(shed > 0 && shed <= FLOOD + 2 - burst, "{shed} shed");
        let a = answer("alice");
        assert!(a.len() == 1 && a[0].contains("type='result'"), "{a:?}");
    }

    /// The configured room is not budgeted as one sender: every occupant (and every device's
    /// copy of the room's traffic) comes from its bare JID.
    #[test]
    fn the_configured_room_is_not_shed() {
        const FLOOD: usize = 2000;
        let mut raw = String::new();
        for i in 0..FLOOD {
            raw.push_str(&format!(
                "<iq type='get' id='r{i}' from='plant@conference.localhost/bob' to='sensors.localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
            ));
        }
        let sent = answers(&[&[0u8, 0x00][..], raw.as_bytes()]);
        let shed = sent
            .iter()
            .filter(|s| s.contains("resource-constraint"))
            .count();
        assert_eq!(shed, 0, "the room was rate-limited");
        let answered = sent.iter().filter(|s| s.contains("id='r")).count();
        assert_eq!(answered, FLOOD);
    }

    /// What the core sends for one input, serialised.
    fn answers(parts: &[&[u8]]) -> Vec<String> {
        let data = parts.concat();
        let mode = usize::from(data[0] & 0x08 != 0);
        let setup = super::setup();
        let stream = super::wrap(data[0] & 0x07, data[1], &data[2..], mode);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let sent = rt.block_on(super::serve(
            setup.configs[mode].clone(),
            setup.store.clone(),
            stream,
        ));
        super::stanza(&data);
        sent.iter()
            .map(|el| {
                let mut buf = Vec::new();
                el.write_to(&mut buf).expect("serialises");
                String::from_utf8(buf).expect("UTF-8")
            })
            .collect()
    }
}
