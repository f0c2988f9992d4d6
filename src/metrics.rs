//! Metrics: a [`Registry`] of [`MetricsSource`]s (the gateway's own counters and whatever the
//! adapters register), rendered as Prometheus text by a small HTTP/1.1 endpoint
//! (`[metrics] listen`), and read by the core for the gateway's XEP-0323 status readout.
//!
//! The endpoint is deliberately tiny: one request per connection (`Connection: close`), `GET`
//! or `HEAD /metrics`, 404 for other paths, a bounded request head read under a timeout, a cap
//! on concurrent connections. Anything it cannot parse gets a 400 and the connection closed;
//! nothing a peer sends can make it panic or grow without bound.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gateway_api::{AdapterEvent, Metric, MetricKind, MetricSample, MetricsSource};
use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::stats::{Stats, Summary};
use crate::store::StoreStats;

/// Prepended to every metric name on the Prometheus side.
pub const PREFIX: &str = "xmpp_iot_gateway_";
/// The Prometheus text exposition format, version 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The longest request head (request line and headers) read; longer requests get a 431.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head, and to take the response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at the same time; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 8;

/// Every source of metrics, asked at scrape time.
#[derive(Default)]
pub struct Registry {
    /// Added at start-up (the gateway's own figures, then one per adapter that counts
    /// something); read at every scrape and status readout.
    sources: RwLock<Vec<Arc<dyn MetricsSource>>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a source; its metrics appear from the next scrape on.
    pub fn register(&self, source: Arc<dyn MetricsSource>) {
        // A poisoned lock only means a source panicked mid-collect; the list is intact.
        self.sources
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(source);
    }

    /// Every metric of every source, those of the same name merged (first `HELP`/`TYPE` wins),
    /// in the order they first appear.
    pub fn collect(&self) -> Vec<Metric> {
        let sources = self
            .sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut raw = Vec::new();
        for s in &sources {
            s.collect(&mut raw);
        }
        let mut out: Vec<Metric> = Vec::with_capacity(raw.len());
        let mut index: HashMap<&'static str, usize> = HashMap::new();
        for m in raw {
            match index.get(m.name) {
                Some(&i) => out[i].samples.extend(m.samples),
                None => {
                    index.insert(m.name, out.len());
                    out.push(m);
                }
            }
        }
        out
    }

    /// The Prometheus text format of [`collect`](Self::collect).
    pub fn render(&self) -> String {
        render(&self.collect())
    }
}

/// Prometheus text exposition format 0.0.4 of `metrics`.
pub fn render(metrics: &[Metric]) -> String {
    let mut out = String::with_capacity(64 * metrics.len());
    for m in metrics {
        let name = format!("{PREFIX}{}", sanitize_name(m.name));
        let _ = writeln!(out, "# HELP {name} {}", escape_help(m.help));
        let _ = writeln!(out, "# TYPE {name} {}", m.kind.as_str());
        for s in &m.samples {
            out.push_str(&name);
            out.push_str(&sanitize_name(s.suffix));
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{}=\"{}\"", sanitize_name(k), escape_label(v));
                }
                out.push('}');
            }
            out.push(' ');
            out.push_str(&format_value(s.value));
            out.push('\n');
        }
    }
    out
}

/// Metric and label names: `[a-zA-Z_:][a-zA-Z0-9_:]*`; anything else becomes `_`.
fn sanitize_name(name: &str) -> std::borrow::Cow<'_, str> {
    let ok = |(i, c): (usize, char)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    };
    if name.chars().enumerate().all(ok) {
        return name.into();
    }
    name.chars()
        .enumerate()
        .map(|(i, c)| if ok((i, c)) { c } else { '_' })
        .collect::<String>()
        .into()
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Whole numbers without a fraction, the rest as Rust prints them, and the Prometheus spellings
/// of the non-finite values.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The gateway's own figures: the core's counters, the store's, device and upstream state,
/// queue depths.
pub struct GatewayMetrics {
    pub stats: Arc<Stats>,
    pub store: Arc<StoreStats>,
    /// The core's summary (devices, online, upstream), refreshed every second.
    pub summary: watch::Receiver<Summary>,
    /// The adapters' event queue, for its depth (weak: does not keep the channel open).
    pub events: mpsc::WeakSender<AdapterEvent>,
    /// The queue to the upstream session, for its depth.
    pub upstream: mpsc::WeakSender<Element>,
    pub started: SystemTime,
}

impl MetricsSource for GatewayMetrics {
    fn collect(&self, out: &mut Vec<Metric>) {
        use MetricKind::{Counter, Gauge};
        let s = &self.stats;
        let get = |c: &std::sync::atomic::AtomicU64| Stats::get(c) as f64;
        let summary = self.summary.borrow().clone();
        let started = self
            .started
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        out.push(Metric {
            name: "build_info",
            help: "Always 1; the labels say which version runs.",
            kind: Gauge,
            samples: vec![MetricSample::new(
                vec![("version", env!("CARGO_PKG_VERSION").to_owned())],
                1.0,
            )],
        });
        out.push(Metric::single(
            "start_time_seconds",
            "When the gateway started, in seconds since the Unix epoch.",
            Gauge,
            started.floor(),
        ));
        out.push(Metric::single(
            "devices",
            "Devices hosted (configured and discovered).",
            Gauge,
            summary.devices as f64,
        ));
        out.push(Metric::single(
            "devices_online",
            "Devices their adapter currently reaches.",
            Gauge,
            summary.online as f64,
        ));
        out.push(Metric::single(
            "upstream_connected",
            "1 while the XMPP upstream link is up, else 0.",
            Gauge,
            if summary.upstream_up { 1.0 } else { 0.0 },
        ));
        for (name, help, counter) in [
            (
                "readings_total",
                "Readings received from the adapters.",
                &s.readings,
            ),
            (
                "stanzas_received_total",
                "Stanzas received from the XMPP server.",
                &s.stanzas_in,
            ),
            (
                "stanzas_sent_total",
                "Stanzas sent to the XMPP server.",
                &s.stanzas_out,
            ),
            (
                "stanzas_malformed_total",
                "Received stanzas that were not valid stanzas.",
                &s.stanzas_malformed,
            ),
            (
                "stanzas_misrouted_total",
                "Received stanzas addressed to a domain the gateway does not serve (dropped).",
                &s.stanzas_misrouted,
            ),
            (
                "presence_coalesced_total",
                "Presence updates folded into a later one (min_interval or a busy upstream).",
                &s.presence_coalesced,
            ),
            (
                "pushes_joined_total",
                "Push readings that joined a push still waiting for a busy upstream.",
                &s.pushes_joined,
            ),
            (
                "replies_dropped_total",
                "Replies dropped because the upstream queue stayed full.",
                &s.replies_dropped,
            ),
            (
                "upstream_connects_total",
                "Upstream sessions established (first connections and reconnects, every link).",
                &s.upstream_connects,
            ),
            (
                "upstream_reconnects_total",
                "Upstream sessions established again on a link that had been up before.",
                &s.upstream_reconnects,
            ),
            (
                "access_refused_total",
                "Requests and subscriptions refused by the access lists.",
                &s.access_refused,
            ),
            (
                "alert_events_total",
                "Alerts that fired, reminded or cleared.",
                &s.alert_messages,
            ),
            (
                "stanzas_rejected_total",
                "Received stanzas skipped unread: above max_stanza_size or nested too deeply.",
                &s.stanzas_rejected,
            ),
            (
                "stanzas_rate_limited_total",
                "Received stanzas refused because their sender exceeded its rate.",
                &s.stanzas_shed,
            ),
            (
                "store_readings_written_total",
                "Readings committed to the history store.",
                &self.store.readings_written,
            ),
            (
                "store_readings_dropped_total",
                "Readings not stored because the store was behind.",
                &self.store.readings_dropped,
            ),
            (
                "store_write_errors_total",
                "Failed writes to the store.",
                &self.store.write_errors,
            ),
        ] {
            out.push(Metric::single(name, help, Counter, get(counter)));
        }
        out.push(Metric::single(
            "upstream_unreadable_total",
            "Upstream streams given up because their XML could not be read (a token beyond the limit, XML that is not well-formed).",
            Counter,
            crate::xmpp::wire::unreadable_streams() as f64,
        ));
        let depth = |q: Option<(usize, usize)>| q.map_or(0.0, |(max, free)| (max - free) as f64);
        out.push(Metric::single(
            "adapter_event_queue_depth",
            "Adapter events waiting for the core.",
            Gauge,
            depth(
                self.events
                    .upgrade()
                    .map(|t| (t.max_capacity(), t.capacity())),
            ),
        ));
        out.push(Metric::single(
            "upstream_queue_depth",
            "Stanzas waiting for the upstream session.",
            Gauge,
            depth(
                self.upstream
                    .upgrade()
                    .map(|t| (t.max_capacity(), t.capacity())),
            ),
        ));

        // Steady under a steady load; a task leak shows as growth (bench/soak.sh plots it).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            out.push(Metric::single(
                "runtime_alive_tasks",
                "Tasks alive on the gateway's async runtime.",
                Gauge,
                runtime.metrics().num_alive_tasks() as f64,
            ));
        }

        let devices = s.devices();
        let mut per_device = Vec::with_capacity(devices.len());
        let mut online = Vec::with_capacity(devices.len());
        let mut per_adapter: Vec<(Arc<str>, u64)> = Vec::new();
        for d in &devices {
            let n = Stats::get(&d.readings);
            let labels = vec![
                ("device", d.device.to_string()),
                ("adapter", d.adapter.to_string()),
            ];
            per_device.push(MetricSample::new(labels.clone(), n as f64));
            let up = d.online.load(std::sync::atomic::Ordering::Relaxed);
            online.push(MetricSample::new(labels, if up { 1.0 } else { 0.0 }));
            match per_adapter.iter_mut().find(|(a, _)| *a == d.adapter) {
                Some((_, total)) => *total += n,
                None => per_adapter.push((d.adapter.clone(), n)),
            }
        }
        out.push(Metric {
            name: "adapter_readings_total",
            help: "Readings received per adapter.",
            kind: Counter,
            samples: per_adapter
                .into_iter()
                .map(|(a, n)| MetricSample::new(vec![("adapter", a.to_string())], n as f64))
                .collect(),
        });
        out.push(Metric {
            name: "device_readings_total",
            help: "Readings received per device.",
            kind: Counter,
            samples: per_device,
        });
        out.push(Metric {
            name: "device_online",
            help: "1 while the device's adapter reaches it, else 0.",
            kind: Gauge,
            samples: online,
        });
    }
}

/// Binds the metrics endpoint. A failure is the caller's to report; the gateway runs on
/// without metrics rather than not at all.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    let mut accept_failing = false;
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        // Reap finished connection tasks so the set stays small.
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, _peer)) => {
                accept_failing = false;
                let registry = registry.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    if let Err(e) = handle(stream, &registry).await {
                        tracing::debug!(error = %e, "metrics connection ended with an error");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: say so once, then wait a little.
                if !accept_failing {
                    tracing::warn!(error = %e, "metrics endpoint cannot accept connections");
                    accept_failing = true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    connections.shutdown().await;
}

/// What the request head said, as far as the endpoint cares.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    Request { method: String, path: String },
    TooLarge,
    Malformed,
}

async fn handle(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let head = match tokio::time::timeout(IO_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        // Closed before a full head, or too slow: nothing worth answering.
        Ok(Ok(None)) | Err(_) => return Ok(()),
        Ok(Err(e)) => return Err(e),
    };
    let response = respond(&head, registry);
    tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(&response).await?;
        stream.shutdown().await?;
        // Lingering close: read what the client still sends (a body, the rest of an
        // oversized head) so that closing does not reset the connection under the response.
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok(())
    })
    .await
    .unwrap_or(Ok(()))
}

/// Reads up to the blank line ending the request head. `None` when the peer closed first.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Head>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = head_end(&buf) {
            return Ok(Some(parse_head(&buf[..end])));
        }
        if buf.len() >= MAX_HEAD {
            return Ok(Some(Head::TooLarge));
        }
        let want = chunk.len().min(MAX_HEAD - buf.len());
        let n = stream.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Where the head ends: after `\r\n\r\n` (or a bare `\n\n`, which lenient clients send).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn parse_head(head: &[u8]) -> Head {
    let Ok(text) = std::str::from_utf8(head) else {
        return Head::Malformed;
    };
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Head::Malformed;
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic());
    if !token(method) || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Head::Malformed;
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Head::Request {
        method: method.to_owned(),
        path: path.to_owned(),
    }
}

fn respond(head: &Head, registry: &Registry) -> Vec<u8> {
    match head {
        Head::Request { method, path } if path == "/metrics" => match method.as_str() {
            "GET" => response(
                "200 OK",
                CONTENT_TYPE,
                &[],
                registry.render().as_bytes(),
                true,
            ),
            "HEAD" => response(
                "200 OK",
                CONTENT_TYPE,
                &[],
                registry.render().as_bytes(),
                false,
            ),
            _ => response(
                "405 Method Not Allowed",
                "text/plain; charset=utf-8",
                &[("Allow", "GET, HEAD")],
                b"only GET and HEAD\n",
                true,
            ),
        },
        Head::Request { method, .. } => response(
            "404 Not Found",
            "text/plain; charset=utf-8",
            &[],
            b"not found; metrics are at /metrics\n",
            method != "HEAD",
        ),
        Head::TooLarge => response(
            "431 Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            &[],
            b"request head too large\n",
            true,
        ),
        Head::Malformed => response(
            "400 Bad Request",
            "text/plain; charset=utf-8",
            &[],
            b"bad request\n",
            true,
        ),
    }
}

/// A complete HTTP/1.1 response that closes the connection. `with_body` false (HEAD) keeps the
/// `Content-Length` of the body it leaves out.
fn response(
    status: &str,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    with_body: bool,
) -> Vec<u8> {
    let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT");
    let mut out = format!(
        "HTTP/1.1 {status}\r\nDate: {date}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if with_body {
        bytes.extend_from_slice(body);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_api::BusStats;

    struct Fixed(Vec<Metric>);
    impl MetricsSource for Fixed {
        fn collect(&self, out: &mut Vec<Metric>) {
            out.extend(self.0.iter().cloned());
        }
    }

    #[test]
    fn renders_help_type_labels_and_escapes() {
        let m = Metric {
            name: "device_readings_total",
            help: "Readings per device.\nSecond line \\ here.",
            kind: MetricKind::Counter,
            samples: vec![
                MetricSample::new(vec![("device", "a\"b\\c\nd".into())], 3.0),
                MetricSample::new(vec![], 0.25),
            ],
        };
        let text = render(&[m]);
        assert_eq!(
            text,
            "# HELP xmpp_iot_gateway_device_readings_total Readings per device.\\nSecond line \\\\ here.\n\
             # TYPE xmpp_iot_gateway_device_readings_total counter\n\
             xmpp_iot_gateway_device_readings_total{device=\"a\\\"b\\\\c\\nd\"} 3\n\
             xmpp_iot_gateway_device_readings_total 0.25\n"
        );
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(-2.0), "-2");
        assert_eq!(sanitize_name("bad name-1"), "bad_name_1");
        assert_eq!(sanitize_name("9lives"), "_lives");
    }

    #[test]
    fn sources_of_the_same_metric_are_merged_under_one_header() {
        let registry = Registry::new();
        registry.register(BusStats::new("a".into()));
        registry.register(BusStats::new("b".into()));
        registry.register(Arc::new(Fixed(vec![Metric::single(
            "other",
            "x",
            MetricKind::Gauge,
            1.0,
        )])));
        let text = registry.render();
        assert_eq!(
            text.matches("# TYPE xmpp_iot_gateway_bus_requests_total counter")
                .count(),
            1,
            "{text}"
        );
        assert!(text.contains("xmpp_iot_gateway_bus_requests_total{adapter=\"a\"} 0\n"));
        assert!(text.contains("xmpp_iot_gateway_bus_requests_total{adapter=\"b\"} 0\n"));
        assert!(text.contains("xmpp_iot_gateway_bus_round_trip_seconds_count{adapter=\"b\"} 0\n"));
        assert!(text.ends_with("xmpp_iot_gateway_other 1\n"));
    }

    #[test]
    fn request_heads_are_parsed_strictly() {
        let req = |m: &str, p: &str| Head::Request {
            method: m.into(),
            path: p.into(),
        };
        assert_eq!(
            parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            req("GET", "/metrics")
        );
        assert_eq!(
            parse_head(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            req("GET", "/metrics")
        );
        assert_eq!(parse_head(b"HEAD / HTTP/1.1\n\n"), req("HEAD", "/"));
        for bad in [
            &b"GET /metrics\r\n\r\n"[..],
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"G3T /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/2\r\n\r\n",
            b"\xff\xfe /metrics HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
        ] {
            assert_eq!(
                parse_head(bad),
                Head::Malformed,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }

    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request).await.expect("write");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("answered in time")
            .expect("read");
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn the_endpoint_answers_metrics_404_and_garbage() {
        let registry = Arc::new(Registry::new());
        registry.register(BusStats::new("a".into()));
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, registry, stop.clone()));

        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (head, body) = ok.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{head}"
        );
        assert!(body.contains("xmpp_iot_gateway_bus_requests_total{adapter=\"a\"} 0"));

        let head_only = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(head_only.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head_only.ends_with("\r\n\r\n"), "{head_only}");

        let missing = exchange(addr, b"GET /other HTTP/1.1\r\n\r\n").await;
        assert!(
            missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{missing}"
        );
        let post = exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{post}"
        );
        assert!(post.contains("Allow: GET, HEAD\r\n"));
        let garbage = exchange(addr, b"\x00\x01\x02 hello\r\n\r\n").await;
        assert!(
            garbage.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{garbage}"
        );
        let huge = vec![b'A'; MAX_HEAD + 100];
        let too_large = exchange(addr, &huge).await;
        assert!(too_large.starts_with("HTTP/1.1 431 "), "{too_large}");
        // A client that says nothing and closes gets nothing and does not hurt the server.
        drop(TcpStream::connect(addr).await.expect("connect"));
        let again = exchange(addr, b"GET /metrics HTTP/1.0\r\n\r\n").await;
        assert!(again.starts_with("HTTP/1.1 200 OK\r\n"));

        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops")
            .expect("server task");
    }
}
