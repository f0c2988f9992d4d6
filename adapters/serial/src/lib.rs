//! The serial line adapter: microcontrollers and sensor boxes that print one reading per line
//! on a UART (Arduino, ESP, weather stations, energy meters).
//!
//! One adapter owns one port. It opens the port ([`SystemPorts`], on tokio-serial), reads it
//! line by line, parses each line in the configured format (JSON, `key=value`, one XML element,
//! a regex, CSV) and routes the record to the devices whose `match` it satisfies; each of their
//! fields found in the record becomes a reading. Writes from XMPP are sent as the field's
//! `command_template` and confirmed by an optional `ack_pattern`. When the port cannot be opened
//! or is lost (USB unplugged, pty closed), every device of the port goes offline with the reason
//! and the port is reopened with the shared [`gateway_api::Backoff`]; requests are answered
//! meanwhile.
//!
//! Modules: [`config`] (validated settings; its keys and registration in [`config::keys`]),
//! [`framer`] (bytes to bounded lines), [`parse`]
//! (one pure parser per format), [`record`] (looking values up in a parsed line), [`time`]
//! (device timestamps), [`route`] (records to readings), [`template`] (command templates),
//! [`stats`] (counters, rate-limited warnings), `input` (the read pipeline), `session` (one
//! open port: the I/O loop), `fuzzing` (the bodies of the fuzz targets in `fuzz/`, built only for
//! them and for the tests).

pub mod config;
pub mod framer;
#[cfg(any(fuzzing, test))]
pub mod fuzzing;
mod input;
pub mod parse;
pub mod record;
pub mod route;
mod session;
pub mod stats;
pub mod template;
pub mod time;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use gateway_api::rs485::{Rs485, Rs485Error};
use gateway_api::{Adapter, AdapterContext, AdapterEvent, Backoff, RequestError};
use gateway_toolkit::serial_port::LineSettings;
use tokio::time::Instant;
use tracing::{debug, info, warn};

pub use config::{
    Command, Format, Parity, Serial, SerialAdapterConfig, SerialDevice, SerialDeviceConfig,
    SerialField, SerialFieldConfig,
};
pub use record::Selector;
/// The regex crate this adapter compiles `pattern` and `ack_pattern` with.
pub use regex;
pub use session::Port;
pub use stats::{SerialStats, StatsSnapshot};
pub use template::Template;

use input::Input;
use session::{End, Link, State};

/// Opens the port, once per attempt.
pub trait Opener: Send + 'static {
    type Port: Port;
    /// Opens the port; an error is shown to people as the reason the devices are offline.
    fn open(&mut self, config: &SerialAdapterConfig) -> std::io::Result<Self::Port>;
    /// Puts the just-opened `port` into RS-485 mode (`rs485 = true`).
    fn rs485(&mut self, port: &Self::Port, settings: &Rs485) -> Result<(), Rs485Error>;
}

/// Real serial ports, through tokio-serial.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemPorts;

impl Opener for SystemPorts {
    type Port = tokio_serial::SerialStream;

    fn open(&mut self, c: &SerialAdapterConfig) -> std::io::Result<tokio_serial::SerialStream> {
        LineSettings {
            port: &c.port,
            baud: c.baud,
            data_bits: c.data_bits,
            parity: c.parity,
            stop_bits: c.stop_bits,
        }
        .open()
    }

    fn rs485(
        &mut self,
        port: &tokio_serial::SerialStream,
        settings: &Rs485,
    ) -> Result<(), Rs485Error> {
        gateway_api::rs485::enable(port, settings)
    }
}

/// The serial adapter: one port and the devices on it.
pub struct SerialAdapter<O = SystemPorts> {
    config: SerialAdapterConfig,
    devices: Vec<SerialDevice>,
    opener: O,
    /// Shared with whoever wants to read the counters (a metrics endpoint, tests).
    stats: Arc<SerialStats>,
}

impl SerialAdapter<SystemPorts> {
    pub fn new(config: SerialAdapterConfig, devices: Vec<SerialDevice>) -> Self {
        Self::with_opener(config, devices, SystemPorts)
    }
}

impl<O: Opener> SerialAdapter<O> {
    /// An adapter that opens its port with `opener` (tests use an in-memory one).
    pub fn with_opener(config: SerialAdapterConfig, devices: Vec<SerialDevice>, opener: O) -> Self {
        SerialAdapter {
            config,
            devices,
            opener,
            stats: Arc::new(SerialStats::default()),
        }
    }

    /// The adapter's counters; they keep counting while it runs.
    pub fn stats(&self) -> Arc<SerialStats> {
        self.stats.clone()
    }
}

impl<O: Opener> Adapter for SerialAdapter<O> {
    async fn run(self, ctx: AdapterContext) {
        let SerialAdapter {
            config,
            devices,
            mut opener,
            stats,
        } = self;
        let AdapterContext {
            adapter,
            events,
            requests,
            shutdown,
        } = ctx;
        let port: Arc<str> = Arc::from(config.port.as_str());
        debug!(adapter = %adapter, port = %port, devices = devices.len(), format = config.format.name(),
            "Serial adapter started");
        let mut link = Link {
            adapter: adapter.clone(),
            events,
            requests,
            requests_open: true,
            shutdown,
            out: VecDeque::new(),
        };
        let mut st = State {
            port: port.clone(),
            input: Input::new(adapter.clone(), &config, &devices, stats.clone()),
            last: devices.iter().map(|d| vec![None; d.fields.len()]).collect(),
            devices,
            stats,
        };
        let mut backoff = Backoff::default();
        // Why the devices are offline now (`None` while the port is open, and before the
        // first attempt).
        let mut down: Option<String> = None;
        // A warning was logged for the current outage: further failures are logged at DEBUG.
        let mut warned = false;
        // The port refused RS-485 mode once already: later opens say so at DEBUG only.
        let mut rs485_warned = false;
        loop {
            if link.shutdown.is_cancelled() {
                break;
            }
            match opener.open(&config) {
                Ok(p) => {
                    backoff.connected();
                    SerialStats::inc(&st.stats.opens);
                    if let Some(rs485) = &config.rs485 {
                        // A driver without RS-485 mode will not grow one on a retry, and an
                        // adapter that switches direction itself (USB) works without it: go on
                        // with the port as it is, and say so once.
                        if let Err(e) = opener.rs485(&p, rs485) {
                            SerialStats::inc(&st.stats.rs485_failures);
                            if rs485_warned {
                                debug!(adapter = %adapter, port = %port, error = %e, "Serial port still without RS-485 mode");
                            } else {
                                warn!(adapter = %adapter, port = %port, error = %e,
                                    "Serial port is used without RS-485 direction control (`rs485 = true`): a transceiver that needs RTS to send will not transmit");
                                rs485_warned = true;
                            }
                        }
                    }
                    if warned {
                        info!(adapter = %adapter, port = %port, "Serial port is back");
                    } else {
                        debug!(adapter = %adapter, port = %port, "Serial port open");
                    }
                    down = None;
                    for d in &st.devices {
                        link.out.push_back(AdapterEvent::Online {
                            device: d.id.clone(),
                        });
                    }
                    match session::run(p, &mut link, &mut st).await {
                        End::Stop => break,
                        End::Lost(why) => {
                            SerialStats::inc(&st.stats.losses);
                            warn!(adapter = %adapter, port = %port, error = %why,
                                "Lost the serial port; reopening it with back-off");
                            warned = true;
                            set_offline(
                                &mut link,
                                &st,
                                &mut down,
                                format!("serial port {port} lost: {why}"),
                            );
                        }
                    }
                }
                Err(e) => {
                    if warned {
                        debug!(adapter = %adapter, port = %port, error = %e, "Serial port still cannot be opened");
                    } else {
                        warn!(adapter = %adapter, port = %port, error = %e,
                            "Cannot open the serial port; retrying with back-off");
                        warned = true;
                    }
                    set_offline(
                        &mut link,
                        &st,
                        &mut down,
                        format!("cannot open serial port {port}: {e}"),
                    );
                }
            }
            let delay = backoff.failed();
            if !idle(
                &mut link,
                delay,
                down.as_deref().unwrap_or("the serial port is closed"),
            )
            .await
            {
                break;
            }
        }
        debug!(adapter = %adapter, port = %port, stats = ?st.stats.snapshot(), "Serial adapter stopped");
    }
}

/// Marks every device offline with `reason`, unless they already are with that very reason.
fn set_offline(link: &mut Link, st: &State, down: &mut Option<String>, reason: String) {
    if down.as_deref() == Some(reason.as_str()) {
        return;
    }
    for d in &st.devices {
        link.out.push_back(AdapterEvent::Offline {
            device: d.id.clone(),
            reason: reason.clone(),
        });
    }
    *down = Some(reason);
}

/// Waits `delay` while the port is closed: events still flow to the core and requests are
/// answered as unreachable. Returns `false` when the adapter must stop.
async fn idle(link: &mut Link, delay: Duration, reason: &str) -> bool {
    let until = Instant::now() + delay;
    loop {
        tokio::select! {
            biased;
            () = link.shutdown.cancelled() => return false,
            req = link.requests.recv(), if link.requests_open => match req {
                Some(req) => {
                    let _ = req.reply.send(Err(RequestError::Unreachable(reason.to_owned())));
                }
                None => link.requests_open = false,
            },
            permit = link.events.reserve(), if !link.out.is_empty() => match (permit, link.out.pop_front()) {
                (Ok(permit), Some(ev)) => permit.send(ev),
                _ => return false,
            },
            () = tokio::time::sleep_until(until) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::kv::KvSyntax;
    use gateway_api::testing::AdapterHarness;
    use gateway_api::{DeviceId, FieldSpec, FieldType, Reading, Request, RequestKind, Value};
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::sync::oneshot;

    /// Hands out the ports a test queued; an empty queue is "no such file".
    #[derive(Clone, Default)]
    struct MockPorts(Arc<Mutex<VecDeque<std::io::Result<DuplexStream>>>>);

    impl MockPorts {
        /// Queues a port; returns the device's end of it.
        fn plug(&self) -> DuplexStream {
            let (ours, theirs) = tokio::io::duplex(4096);
            self.0.lock().unwrap().push_back(Ok(ours));
            theirs
        }
    }

    impl Opener for MockPorts {
        type Port = DuplexStream;
        fn open(&mut self, _: &SerialAdapterConfig) -> std::io::Result<DuplexStream> {
            self.0
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| Err(std::io::Error::from(std::io::ErrorKind::NotFound)))
        }
        fn rs485(&mut self, _: &DuplexStream, _: &Rs485) -> Result<(), Rs485Error> {
            Err(Rs485Error::Unsupported(std::io::Error::from_raw_os_error(
                25, // ENOTTY, as a pseudo-terminal answers
            )))
        }
    }

    /// The shared harness, with the adapter's counters.
    struct Harness {
        adapter: AdapterHarness,
        stats: Arc<SerialStats>,
    }

    impl std::ops::Deref for Harness {
        type Target = AdapterHarness;
        fn deref(&self) -> &AdapterHarness {
            &self.adapter
        }
    }

    impl std::ops::DerefMut for Harness {
        fn deref_mut(&mut self) -> &mut AdapterHarness {
            &mut self.adapter
        }
    }

    impl Harness {
        async fn write(
            &self,
            device: &str,
            field: &str,
            value: Value,
        ) -> Result<Vec<Reading>, RequestError> {
            self.adapter.write(device, &[(field, value)]).await
        }
    }

    fn field(name: &str, kind: FieldType, command: Option<Command>) -> SerialField {
        SerialField {
            spec: FieldSpec {
                name: name.into(),
                unit: "".into(),
                kind,
                writable: command.is_some(),
            },
            config: SerialFieldConfig {
                source: Selector::Key(name.into()),
                command,
            },
        }
    }

    fn command(template: &str, ack: Option<&str>) -> Command {
        Command {
            template: Template::parse(template).unwrap(),
            ack: ack.map(|a| regex::Regex::new(a).unwrap()),
            ack_timeout: Duration::from_secs(2),
        }
    }

    fn start(ports: &MockPorts) -> Harness {
        start_with(ports, None)
    }

    fn start_with(ports: &MockPorts, rs485: Option<Rs485>) -> Harness {
        let mut config = SerialAdapterConfig::new("/dev/ttyMOCK", Format::Kv(KvSyntax::default()));
        config.rs485 = rs485;
        let devices = vec![
            SerialDevice {
                id: DeviceId::new("meter").unwrap(),
                config: SerialDeviceConfig::default(),
                fields: vec![
                    field("temp", FieldType::Numeric, None),
                    field(
                        "relay",
                        FieldType::Boolean,
                        Some(command("SET {field} {value}\n", Some("^OK"))),
                    ),
                    field(
                        "label",
                        FieldType::String,
                        Some(command("L {value}\r\n", None)),
                    ),
                ],
            },
            SerialDevice {
                id: DeviceId::new("other").unwrap(),
                config: SerialDeviceConfig {
                    matcher: vec![(Selector::Key("id".into()), "2".into())],
                },
                fields: vec![field("temp", FieldType::Integer, None)],
            },
        ];
        let adapter = SerialAdapter::with_opener(config, devices, ports.clone());
        let stats = adapter.stats();
        // Under paused time, so a wait may be long: time jumps to the next timer.
        let adapter = AdapterHarness::start("uart", 16, |ctx| adapter.run(ctx))
            .with_deadline(Duration::from_secs(600))
            .split_batches();
        Harness { adapter, stats }
    }

    async fn online(h: &mut Harness) {
        for id in ["meter", "other"] {
            assert_eq!(
                h.next().await,
                AdapterEvent::Online {
                    device: DeviceId::new(id).unwrap()
                }
            );
        }
    }

    async fn offline(h: &mut Harness) -> String {
        let mut reason = String::new();
        for id in ["meter", "other"] {
            match h.next().await {
                AdapterEvent::Offline { device, reason: r } if device.as_str() == id => reason = r,
                other => panic!("expected {id} offline, got {other:?}"),
            }
        }
        reason
    }

    /// Lets the adapter get past the start-up guard for partial lines.
    async fn settle() {
        tokio::time::sleep(session::PARTIAL_GUARD * 2).await;
    }

    async fn read_line(dev: &mut DuplexStream) -> String {
        let mut got = Vec::new();
        let mut byte = [0u8];
        while !got.ends_with(b"\n") {
            dev.read_exact(&mut byte).await.unwrap();
            got.push(byte[0]);
        }
        String::from_utf8(got).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn readings_flow_and_a_lost_port_comes_back() {
        let ports = MockPorts::default();
        let mut dev = ports.plug();
        let mut h = start(&ports);
        online(&mut h).await;
        settle().await;
        // `meter` takes every record; `other` only those with id=2. `temp=21.5` does not fit
        // `other`'s integer field: dropped and counted, `meter` still gets it.
        dev.write_all(b"temp=21.5 id=2\ntemp=21 id=2\n")
            .await
            .unwrap();
        let r = h.reading().await;
        assert_eq!(
            (r.device.as_str(), &*r.field, r.value.clone()),
            ("meter", "temp", Value::Float(21.5))
        );
        let r = h.reading().await;
        assert_eq!(
            (r.device.as_str(), r.value.clone()),
            ("meter", Value::Float(21.0))
        );
        let r = h.reading().await;
        assert_eq!(
            (r.device.as_str(), r.value.clone()),
            ("other", Value::Int(21))
        );
        assert_eq!(h.stats.snapshot().bad_values, 1);
        // Reads answer from the last values.
        let now = h
            .request("other", RequestKind::Read { fields: vec![] })
            .await
            .unwrap();
        assert_eq!(now[0].value, Value::Int(21));

        // The device end closes: both devices go offline with the reason, and requests fail.
        drop(dev);
        let reason = offline(&mut h).await;
        assert_eq!(reason, "serial port /dev/ttyMOCK lost: the port was closed");
        // Nothing to open now: the reason changes, once.
        let reason = offline(&mut h).await;
        assert!(
            reason.starts_with("cannot open serial port /dev/ttyMOCK: "),
            "{reason}"
        );
        assert!(matches!(
            h.request("meter", RequestKind::Read { fields: vec![] }).await,
            Err(RequestError::Unreachable(r)) if r.starts_with("cannot open")
        ));
        // Plugged back in: the next attempt (within the back-off) opens it.
        let mut dev = ports.plug();
        online(&mut h).await;
        settle().await;
        dev.write_all(b"temp=7\n").await.unwrap();
        assert_eq!(h.reading().await.value, Value::Float(7.0));
        let s = h.stats.snapshot();
        assert_eq!((s.opens, s.losses), (2, 1));
        h.shutdown.cancel();
        h.adapter.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_port_without_rs485_mode_is_counted_and_used_as_it_is() {
        let ports = MockPorts::default();
        let mut dev = ports.plug();
        let mut h = start_with(&ports, Some(Rs485::default()));
        online(&mut h).await;
        settle().await;
        dev.write_all(b"temp=4\n").await.unwrap();
        assert_eq!(h.reading().await.value, Value::Float(4.0));
        assert_eq!(h.stats.snapshot().rs485_failures, 1);
        // Each open tries again (and counts again): the port may have been swapped for one
        // that can.
        drop(dev);
        offline(&mut h).await;
        let _dev = ports.plug();
        online(&mut h).await;
        let s = h.stats.snapshot();
        assert_eq!((s.opens, s.rs485_failures), (2, 2));
        // Without `rs485`, nothing is tried.
        let ports = MockPorts::default();
        let _dev = ports.plug();
        let mut h = start(&ports);
        online(&mut h).await;
        assert_eq!(h.stats.snapshot().rs485_failures, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_absent_port_is_retried_with_backoff() {
        let ports = MockPorts::default();
        let mut h = start(&ports);
        let reason = offline(&mut h).await;
        assert!(reason.contains("/dev/ttyMOCK"), "{reason}");
        let t0 = Instant::now();
        // Appears after a while: the adapter finds it without being told.
        tokio::time::sleep(Duration::from_secs(20)).await;
        let _dev = ports.plug();
        online(&mut h).await;
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_secs(20) && waited < Duration::from_secs(60),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn partial_lines_right_after_opening_are_dropped() {
        let ports = MockPorts::default();
        let mut dev = ports.plug();
        dev.write_all(b"5 temp=99\ntemp=1\n").await.unwrap();
        let mut h = start(&ports);
        online(&mut h).await;
        assert_eq!(h.reading().await.value, Value::Float(1.0));
        assert_eq!(h.stats.snapshot().partial, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_wait_for_the_acknowledgement() {
        let ports = MockPorts::default();
        let mut dev = ports.plug();
        let mut h = start(&ports);
        online(&mut h).await;
        settle().await;
        let requests = h.requests.clone().expect("the request channel");
        let write = tokio::spawn(async move {
            let (reply, rx) = oneshot::channel();
            requests
                .send(Request {
                    device: DeviceId::new("meter").unwrap(),
                    kind: RequestKind::Write {
                        values: vec![
                            ("relay".into(), Value::Text("on".into())),
                            ("label".into(), Value::Text("a b".into())),
                        ],
                    },
                    reply,
                })
                .await
                .unwrap();
            rx.await.unwrap()
        });
        assert_eq!(read_line(&mut dev).await, "SET relay true\n");
        // Other lines before the acknowledgement are still readings.
        dev.write_all(b"temp=3\nOK relay\n").await.unwrap();
        assert_eq!(h.reading().await.value, Value::Float(3.0));
        assert_eq!(read_line(&mut dev).await, "L a b\r\n");
        let done = write.await.unwrap().unwrap();
        let values: Vec<_> = done.iter().map(|r| (&*r.field, r.value.clone())).collect();
        assert_eq!(
            values,
            [
                ("relay", Value::Bool(true)),
                ("label", Value::Text("a b".into()))
            ]
        );

        // No acknowledgement: a timeout, and the next write goes ahead.
        let t0 = Instant::now();
        assert_eq!(
            h.write("meter", "relay", Value::Bool(false)).await,
            Err(RequestError::Timeout)
        );
        assert_eq!(t0.elapsed(), Duration::from_secs(2));
        assert_eq!(read_line(&mut dev).await, "SET relay false\n");
        assert!(h
            .write("meter", "label", Value::Text("x".into()))
            .await
            .is_ok());
        let s = h.stats.snapshot();
        assert_eq!((s.writes, s.write_failures), (2, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn bad_writes_send_nothing() {
        let ports = MockPorts::default();
        let mut dev = ports.plug();
        let mut h = start(&ports);
        online(&mut h).await;
        assert_eq!(
            h.write("meter", "temp", Value::Float(1.0)).await,
            Err(RequestError::NotWritable("temp".into()))
        );
        assert_eq!(
            h.write("meter", "nope", Value::Float(1.0)).await,
            Err(RequestError::UnknownField("nope".into()))
        );
        assert!(matches!(
            h.write("meter", "label", Value::Text("a\nREBOOT".into())).await,
            Err(RequestError::OutOfRange { field, .. }) if field == "label"
        ));
        assert!(matches!(
            h.write("meter", "relay", Value::Text("maybe".into())).await,
            Err(RequestError::OutOfRange { .. })
        ));
        assert!(matches!(
            h.write("ghost", "relay", Value::Bool(true)).await,
            Err(RequestError::Refused(_))
        ));
        // Nothing reached the device: the next thing it sees is this write.
        assert!(h
            .write("meter", "label", Value::Text("ok".into()))
            .await
            .is_ok());
        assert_eq!(read_line(&mut dev).await, "L ok\r\n");
        h.shutdown.cancel();
        tokio::time::timeout(Duration::from_millis(1), h.adapter.task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_pending_when_the_port_is_lost_fails_as_unreachable() {
        let ports = MockPorts::default();
        let dev = ports.plug();
        let mut h = start(&ports);
        online(&mut h).await;
        let requests = h.requests.clone().expect("the request channel");
        let write = tokio::spawn(async move {
            let (reply, rx) = oneshot::channel();
            let values = vec![("relay".into(), Value::Bool(true))];
            requests
                .send(Request {
                    device: DeviceId::new("meter").unwrap(),
                    kind: RequestKind::Write { values },
                    reply,
                })
                .await
                .unwrap();
            rx.await.unwrap()
        });
        // Let the command go out, then unplug before any acknowledgement.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(dev);
        assert!(
            matches!(write.await.unwrap(), Err(RequestError::Unreachable(r)) if r.contains("lost"))
        );
        offline(&mut h).await;
    }

    #[tokio::test(start_paused = true)]
    async fn stops_on_shutdown_even_when_the_core_is_not_reading() {
        let ports = MockPorts::default();
        let mut dev = ports.plug();
        let h = start(&ports);
        settle().await;
        for _ in 0..40 {
            dev.write_all(b"temp=1\n").await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!h.task.is_finished());
        h.shutdown.cancel();
        tokio::time::timeout(Duration::from_millis(1), h.adapter.task)
            .await
            .unwrap()
            .unwrap();
    }
}
