//! The read side of a port: bytes in, text lines and readings out, every dropped line counted.
//!
//! [`Input::lines`] frames the byte stream ([`LineFramer`]), drops lines that are too long,
//! fragments from before the port was opened and lines that are not UTF-8; [`Input::record`]
//! parses one text line in the configured format and routes the record to its devices. Each
//! drop is counted in [`SerialStats`], logged at DEBUG with the line's first bytes, and at most
//! once a minute at WARN naming the port (the rate limit is per port). A record that matches no
//! device is counted and logged at DEBUG only: on a shared bus that is normal.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gateway_api::Reading;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::{SerialAdapterConfig, SerialDevice};
use crate::framer::{Frame, LineFramer};
use crate::parse::Parser;
use crate::route::Router;
use crate::stats::{preview, RateLimit, SerialStats, WARN_INTERVAL};

/// Parsing state of one port.
#[derive(Debug)]
pub struct Input {
    /// The adapter id and port path, for logs.
    adapter: Arc<str>,
    port: Arc<str>,
    framer: LineFramer,
    /// The line ending is `\n`: a `\r` before it (Arduino's `println`) is dropped too.
    strip_cr: bool,
    parser: Parser,
    router: Router,
    stats: Arc<SerialStats>,
    /// Bad-input WARNs of this port.
    warn: RateLimit,
    /// Scratch space for framed lines, reused between reads.
    frames: Vec<Frame>,
}

impl Input {
    pub fn new(
        adapter: Arc<str>,
        config: &SerialAdapterConfig,
        devices: &[SerialDevice],
        stats: Arc<SerialStats>,
    ) -> Self {
        Input {
            adapter,
            port: Arc::from(config.port.as_str()),
            framer: LineFramer::new(&config.line_ending, config.max_line),
            strip_cr: config.line_ending == b"\n",
            parser: Parser::new(&config.format),
            router: Router::new(devices, config.time_keys.clone()),
            stats,
            warn: RateLimit::new(WARN_INTERVAL),
            frames: Vec::new(),
        }
    }

    /// The port was (re)opened: forget the unfinished line of the previous connection.
    pub fn reset(&mut self) {
        self.framer.reset();
    }

    /// The next bytes continue a line that started before the port was opened.
    pub fn skip_partial(&mut self) {
        self.framer.skip_partial();
    }

    /// Feeds bytes read from the port; complete text lines are appended to `out`.
    pub fn lines(&mut self, bytes: &[u8], now: Instant, out: &mut Vec<String>) {
        let mut frames = std::mem::take(&mut self.frames);
        self.framer.push(bytes, &mut frames);
        for frame in frames.drain(..) {
            SerialStats::inc(&self.stats.lines);
            match frame {
                Frame::Line(mut line) => {
                    if self.strip_cr && line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    match String::from_utf8(line) {
                        Ok(text) => out.push(text),
                        Err(e) => {
                            SerialStats::inc(&self.stats.not_utf8);
                            let bytes = e.into_bytes();
                            self.dropped(now, "the line is not UTF-8 text", &bytes);
                        }
                    }
                }
                Frame::TooLong(len) => {
                    SerialStats::inc(&self.stats.too_long);
                    let why = format!("the line is longer than max_line ({len} bytes)");
                    self.dropped(now, &why, b"");
                }
                Frame::Partial(len) => {
                    SerialStats::inc(&self.stats.partial);
                    let why =
                        format!("a partial line from before the port was opened ({len} bytes)");
                    self.dropped(now, &why, b"");
                }
            }
        }
        self.frames = frames;
    }

    /// Parses and routes one text line; its readings are appended to `out`. `received` is the
    /// reading time for records without a timestamp of their own.
    pub fn record(
        &mut self,
        line: &str,
        received: DateTime<Utc>,
        now: Instant,
        out: &mut Vec<Reading>,
    ) {
        let record = match self.parser.parse(line) {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(e) => {
                SerialStats::inc(&self.stats.unparsable);
                self.dropped(now, &e.to_string(), line.as_bytes());
                return;
            }
        };
        SerialStats::inc(&self.stats.records);
        let routed = self.router.route(&record, received);
        if routed.matched == 0 {
            SerialStats::inc(&self.stats.unmatched);
            debug!(adapter = %self.adapter, port = %self.port, line = %preview(line.as_bytes()),
                unmatched = self.stats.snapshot().unmatched, "Record matches no device");
        }
        for bad in &routed.bad_values {
            SerialStats::inc(&self.stats.bad_values);
            let why = format!(
                "field `{}` of device `{}`: {}",
                bad.field, bad.device, bad.error
            );
            self.dropped(now, &why, line.as_bytes());
        }
        for r in &routed.readings {
            tracing::trace!(adapter = %self.adapter, device = %r.device, field = %r.field,
                value = %r.value, "Reading");
        }
        self.stats.readings.fetch_add(
            routed.readings.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        out.extend(routed.readings);
    }

    fn dropped(&mut self, now: Instant, why: &str, line: &[u8]) {
        let s = self.stats.snapshot();
        let line = preview(line);
        debug!(adapter = %self.adapter, port = %self.port, reason = why, line = %line,
            too_long = s.too_long, not_utf8 = s.not_utf8, partial = s.partial,
            unparsable = s.unparsable, bad_values = s.bad_values, "Dropped serial input");
        if let Some(suppressed) = self.warn.allow(now) {
            warn!(adapter = %self.adapter, port = %self.port, reason = why, line = %line,
                dropped = s.dropped(), suppressed,
                "Dropping bad input from serial port {} (at most one warning a minute)", self.port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, SerialDeviceConfig, SerialField, SerialFieldConfig};
    use crate::parse::kv::KvSyntax;
    use crate::record::Selector;
    use gateway_api::{DeviceId, FieldSpec, FieldType, Value};

    fn input(format: Format, max_line: usize) -> (Input, Arc<SerialStats>) {
        let mut config = SerialAdapterConfig::new("/dev/ttyTEST", format);
        config.max_line = max_line;
        let devices = vec![SerialDevice {
            id: DeviceId::new("d").unwrap(),
            config: SerialDeviceConfig {
                matcher: vec![(Selector::Key("id".into()), "1".into())],
            },
            fields: vec![SerialField {
                spec: FieldSpec {
                    name: "temp".into(),
                    unit: "°C".into(),
                    kind: FieldType::Numeric,
                    writable: false,
                },
                config: SerialFieldConfig {
                    source: Selector::Key("temp".into()),
                    command: None,
                },
            }],
        }];
        let stats = Arc::new(SerialStats::default());
        (
            Input::new("uart".into(), &config, &devices, stats.clone()),
            stats,
        )
    }

    fn run(input: &mut Input, bytes: &[u8]) -> Vec<Value> {
        let now = Instant::now();
        let mut lines = Vec::new();
        input.lines(bytes, now, &mut lines);
        let mut out = Vec::new();
        for l in lines {
            input.record(&l, Utc::now(), now, &mut out);
        }
        out.into_iter().map(|r| r.value).collect()
    }

    #[tokio::test]
    async fn garbage_is_counted_and_the_next_line_still_counts() {
        let (mut i, stats) = input(Format::Kv(KvSyntax::default()), 32);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"id=1 temp=20\r\n");
        bytes.extend_from_slice(&[0xff, 0xfe, 0x00, b'\n']);
        bytes.extend_from_slice(&[b'x'; 100]);
        bytes.extend_from_slice(b"\nnot a record\nid=2 temp=5\nid=1 temp=warm\nid=1 temp=21.5\n\n");
        let values = run(&mut i, &bytes);
        assert_eq!(values, [Value::Float(20.0), Value::Float(21.5)]);
        let s = stats.snapshot();
        assert_eq!(
            (
                s.lines,
                s.not_utf8,
                s.too_long,
                s.unparsable,
                s.unmatched,
                s.bad_values
            ),
            (8, 1, 1, 1, 1, 1)
        );
        assert_eq!((s.records, s.readings), (4, 2));
    }

    #[tokio::test]
    async fn partial_first_lines_and_resets() {
        let (mut i, stats) = input(Format::Kv(KvSyntax::default()), 64);
        i.skip_partial();
        assert_eq!(
            run(&mut i, b"mp=99 id=1\nid=1 temp=1\nid=1 te"),
            [Value::Float(1.0)]
        );
        assert_eq!(stats.snapshot().partial, 1);
        i.reset();
        assert_eq!(run(&mut i, b"mp=2\n"), [], "the old half line is gone");
        assert_eq!(
            stats.snapshot().unparsable,
            0,
            "`mp=2` is a record without our id"
        );
        assert_eq!(stats.snapshot().unmatched, 1);
    }

    #[tokio::test]
    async fn other_line_endings_keep_carriage_returns() {
        let (mut i, _) = input(Format::Json, 64);
        i.framer = LineFramer::new(b";", 64);
        i.strip_cr = false;
        assert_eq!(
            run(
                &mut i,
                b"{\"id\":1,\"temp\":3};{\"id\":\"1\",\"temp\":\"4\"}\r;"
            ),
            [Value::Float(3.0), Value::Float(4.0)],
            "JSON allows the trailing \\r as whitespace"
        );
    }
}
