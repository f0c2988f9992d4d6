//! One bus, one task: the scheduler that polls devices, serves writes, and keeps the link up.
//!
//! Exactly one request is in flight at a time (an RS-485 line is half-duplex; a TCP server is
//! asked one thing at a time too). Between two requests the task first serves queued reads and
//! writes from XMPP, so a write waits for at most the request in flight, never a whole poll
//! cycle. Each device has its own poll interval; its points are read with the request plan
//! computed at start ([`crate::plan`]).
//!
//! Failures are kept apart by kind:
//! - a **Modbus exception** is the device refusing one request: the link and the device stay
//!   up, the request's points are reported with their last value and quality `Bad`, and the
//!   exception is logged once with its name until it clears;
//! - a **timeout** or a garbled answer is the device failing: the rest of its cycle is skipped
//!   (so it costs the other devices at most one timeout per cycle), it goes offline ("no
//!   response from unit 3 on rs485"), and after `backoff_after` failed polls in a row it is
//!   polled with a back-off until it answers;
//! - a **transport error** is the link failing: every device goes offline with the reason, and
//!   the port or connection is reopened with the shared [`Backoff`], cancellable by shutdown.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use gateway_api::{
    AdapterContext, AdapterEvent, Backoff, DeviceId, EventSink, Quality, Reading, Request,
    RequestError, RequestKind, Value,
};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_modbus::{ExceptionCode, Request as MbRequest, Response};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, trace, warn};

use crate::codec;
use crate::config::{BusSettings, ModbusDevice, Point, RegisterKind, Transport};
use crate::link::{classify, exception_name, Connector, Link, Outcome};
use crate::plan::{plan, Limits, ReadRequest};
use crate::stats::{BusStats, Count};

/// The longest back-off between polls of a device that does not answer.
const MAX_DEVICE_BACKOFF: Duration = Duration::from_secs(60);
/// The shortest connect timeout, whatever the request timeout.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The adapter is stopping (shutdown, or the core closed its event channel).
#[derive(Debug)]
pub(crate) struct Stop;

type Flow = Result<(), Stop>;

/// The running bus.
pub(crate) struct Bus<C: Connector> {
    /// The adapter id, for logs and presence reasons.
    name: Arc<str>,
    settings: BusSettings,
    connector: C,
    devices: Vec<DeviceState>,
    stats: Arc<BusStats>,
    /// Into the core; bounded, so a slow core slows the polling down.
    events: EventSink,
    /// XMPP reads and writes; the core holds the sender and drops it when it stops.
    requests: mpsc::Receiver<Request>,
    requests_open: bool,
    /// Cancelled by the core at shutdown.
    shutdown: CancellationToken,
    /// The open link, `None` while it is down (or being reopened).
    link: Option<C::Link>,
    /// Why the link is down, while it is; also the `Unreachable` answer to requests.
    down_reason: Option<String>,
    /// The link is to be reopened at once (after a garbled answer, or a TCP timeout), not
    /// after a failure: no back-off and no offline presence.
    resync: bool,
    /// Reconnect delays of the link.
    backoff: Backoff,
    /// When the last transaction ended, for the silence between requests.
    last_end: Option<Instant>,
    /// The silence kept between requests: `delay_between_requests`, at least the line's own.
    gap: Duration,
}

/// What the task knows about one device.
struct DeviceState {
    config: ModbusDevice,
    /// The fields' points, indexed like `config.fields`.
    points: Vec<Point>,
    limits: Limits,
    /// The reads of a whole poll.
    plan: Vec<ReadRequest>,
    next_poll: Instant,
    /// Failed polls in a row.
    failures: u32,
    /// Poll delays once `failures` reached `backoff_after`.
    backoff: Backoff,
    /// What the core was last told: `None` before the first poll.
    online: Option<bool>,
    /// The reason it was last given for being offline.
    offline_reason: Option<String>,
    /// The last good value of each field, reported with quality `Bad` while a point fails.
    last_good: Vec<Option<Value>>,
    /// The exception each plan request got last time (logged once until it clears).
    refused: Vec<Option<ExceptionCode>>,
    /// Fields whose bad value was logged (until it is good again).
    bad_logged: HashSet<usize>,
}

impl DeviceState {
    fn new(config: ModbusDevice, now: Instant) -> Self {
        let points: Vec<Point> = config.fields.iter().map(|f| f.point.clone()).collect();
        let limits = Limits {
            max_gap: config.settings.max_gap,
            max_registers: config.settings.max_registers_per_request,
        };
        let plan = plan(&points, limits, |_| true);
        let n = points.len();
        let slow = (config.settings.poll * 2).max(Duration::from_secs(1));
        DeviceState {
            refused: vec![None; plan.len()],
            plan,
            limits,
            points,
            next_poll: now,
            failures: 0,
            backoff: Backoff::new(slow, MAX_DEVICE_BACKOFF.max(slow)),
            online: None,
            offline_reason: None,
            last_good: vec![None; n],
            bad_logged: HashSet::new(),
            config,
        }
    }

    fn id(&self) -> &DeviceId {
        &self.config.id
    }

    fn unit(&self) -> u8 {
        self.config.settings.unit
    }

    fn field_index(&self, name: &str) -> Option<usize> {
        self.config
            .fields
            .iter()
            .position(|f| &*f.spec.name == name)
    }
}

/// The data of an answered read.
enum Data {
    Bits(Vec<bool>),
    Words(Vec<u16>),
}

/// The Modbus request that reads `r`.
fn read_request(r: &ReadRequest) -> MbRequest<'static> {
    match r.kind {
        RegisterKind::Coil => MbRequest::ReadCoils(r.start, r.count),
        RegisterKind::Discrete => MbRequest::ReadDiscreteInputs(r.start, r.count),
        RegisterKind::Holding => MbRequest::ReadHoldingRegisters(r.start, r.count),
        RegisterKind::Input => MbRequest::ReadInputRegisters(r.start, r.count),
    }
}

/// The data of an answer to `r`, checked for kind and length.
fn read_data(r: &ReadRequest, response: Response) -> Result<Data, String> {
    let count = usize::from(r.count);
    match (r.kind, response) {
        (RegisterKind::Coil, Response::ReadCoils(mut bits))
        | (RegisterKind::Discrete, Response::ReadDiscreteInputs(mut bits))
            if bits.len() >= count =>
        {
            // Bits come in whole bytes: the padding goes.
            bits.truncate(count);
            Ok(Data::Bits(bits))
        }
        (RegisterKind::Holding, Response::ReadHoldingRegisters(words))
        | (RegisterKind::Input, Response::ReadInputRegisters(words))
            if words.len() == count =>
        {
            Ok(Data::Words(words))
        }
        (_, other) => Err(format!("an answer that does not fit {r}: {other:?}")),
    }
}

/// One checked write, ready to go on the bus.
enum WriteOp {
    Coil(u16, bool),
    Registers(u16, Vec<u16>),
    /// One bit of a holding register: read, change, write back.
    Bit(u16, codec::Encoding, bool),
}

impl<C: Connector> Bus<C> {
    pub(crate) fn new(
        settings: BusSettings,
        connector: C,
        devices: Vec<ModbusDevice>,
        stats: Arc<BusStats>,
        ctx: AdapterContext,
    ) -> Self {
        let AdapterContext {
            adapter: name,
            events,
            requests,
            shutdown,
        } = ctx;
        let now = Instant::now();
        let gap = settings.delay_between_requests.max(connector.min_gap());
        Bus {
            name,
            settings,
            connector,
            devices: devices
                .into_iter()
                .map(|d| DeviceState::new(d, now))
                .collect(),
            stats,
            events,
            requests,
            requests_open: true,
            shutdown,
            link: None,
            down_reason: None,
            resync: false,
            backoff: Backoff::default(),
            last_end: None,
            gap,
        }
    }

    /// Runs until shutdown (or until the core closes the event channel).
    pub(crate) async fn run(mut self) {
        debug!(adapter = %self.name, devices = self.devices.len(), endpoint = self.settings.transport.endpoint(), "Modbus bus started");
        let _ = self.main_loop().await;
        debug!(adapter = %self.name, "Modbus bus stopped");
    }

    async fn main_loop(&mut self) -> Flow {
        loop {
            if self.shutdown.is_cancelled() {
                return Err(Stop);
            }
            if self.link.is_none() {
                self.connect().await?;
                continue;
            }
            let next = (0..self.devices.len()).min_by_key(|&i| self.devices[i].next_poll);
            let due = next.map(|i| self.devices[i].next_poll);
            enum Step {
                Stop,
                Request(Option<Request>),
                Poll(usize),
            }
            let step = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => Step::Stop,
                req = self.requests.recv(), if self.requests_open => Step::Request(req),
                () = sleep_until_opt(due) => Step::Poll(next.unwrap_or(0)),
            };
            match step {
                Step::Stop => return Err(Stop),
                Step::Request(Some(req)) => self.serve(req).await?,
                Step::Request(None) => self.requests_open = false,
                Step::Poll(i) => self.poll(i).await?,
            }
        }
    }

    /// Opens the link, retrying with back-off; requests meanwhile get `Unreachable`.
    async fn connect(&mut self) -> Flow {
        loop {
            let resync = std::mem::take(&mut self.resync);
            let limit = self.settings.timeout.max(MIN_CONNECT_TIMEOUT);
            let attempt = tokio::select! {
                () = self.shutdown.cancelled() => return Err(Stop),
                r = tokio::time::timeout(limit, self.connector.connect()) => r,
            };
            let error = match attempt {
                Ok(Ok(link)) => {
                    self.link = Some(link);
                    self.stats
                        .connects
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.backoff.connected();
                    match self.down_reason.take() {
                        Some(_) => {
                            info!(adapter = %self.name, endpoint = self.settings.transport.endpoint(), "Modbus link restored");
                            // Everyone is polled at once: presence returns without waiting a cycle.
                            let now = Instant::now();
                            for d in &mut self.devices {
                                d.next_poll = d.next_poll.min(now);
                            }
                        }
                        None if resync => {
                            debug!(adapter = %self.name, "Modbus link reopened to resynchronise")
                        }
                        None => {
                            debug!(adapter = %self.name, endpoint = self.settings.transport.endpoint(), "Modbus link open")
                        }
                    }
                    return Ok(());
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {}", fmt_duration(limit)),
            };
            let reason = match &self.settings.transport {
                Transport::Rtu(s) => format!("cannot open {}: {error}", s.port),
                Transport::Tcp { address, .. } => format!("cannot connect to {address}: {error}"),
            };
            self.stats.count(None, Count::Transport);
            self.link_down(reason).await?;
            let delay = self.backoff.failed();
            self.wait_serving_unreachable(delay).await?;
        }
    }

    /// Marks the link down with `reason`: every device goes offline (once per reason), and the
    /// first failure of a series is a warning, the rest debug.
    async fn link_down(&mut self, reason: String) -> Flow {
        self.link = None;
        if self.backoff.failures() == 0 && self.down_reason.is_none() {
            warn!(adapter = %self.name, error = %reason, "Modbus link down; retrying with back-off");
        } else {
            debug!(adapter = %self.name, error = %reason, "Modbus link still down");
        }
        let changed = self.down_reason.as_deref() != Some(reason.as_str());
        self.down_reason = Some(reason.clone());
        if changed {
            for i in 0..self.devices.len() {
                self.set_offline(i, reason.clone()).await?;
            }
        }
        Ok(())
    }

    /// Sleeps `delay` while answering requests (with `Unreachable`, once they are checked).
    async fn wait_serving_unreachable(&mut self, delay: Duration) -> Flow {
        let until = Instant::now() + delay;
        loop {
            let req = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Err(Stop),
                req = self.requests.recv(), if self.requests_open => req,
                () = sleep_until(until) => return Ok(()),
            };
            match req {
                // With the link down this only checks the request and answers `Unreachable`.
                Some(req) => self.serve(req).await?,
                None => self.requests_open = false,
            }
        }
    }

    /// Serves every request already queued (writes go ahead of the rest of a poll).
    async fn serve_queued(&mut self) -> Flow {
        while self.requests_open && self.link.is_some() {
            match self.requests.try_recv() {
                Ok(req) => self.serve(req).await?,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => self.requests_open = false,
            }
        }
        Ok(())
    }

    /// One transaction on the bus, with the timeout, the silence before it, the counters, and
    /// what a failure means for the link.
    async fn transact(
        &mut self,
        dev: Option<usize>,
        unit: u8,
        request: MbRequest<'static>,
    ) -> Outcome<Response> {
        if let Some(end) = self.last_end {
            let ready = end + self.gap;
            if ready > Instant::now() {
                tokio::select! {
                    () = self.shutdown.cancelled() => return Outcome::Lost(io::Error::other("stopping")),
                    () = sleep_until(ready) => {}
                }
            }
        }
        let Some(link) = self.link.as_mut() else {
            return Outcome::Lost(io::Error::new(
                io::ErrorKind::NotConnected,
                "the link is down",
            ));
        };
        trace!(adapter = %self.name, unit, request = ?request, "Modbus request");
        self.stats.count(dev, Count::Request);
        let started = Instant::now();
        let result = tokio::select! {
            () = self.shutdown.cancelled() => return Outcome::Lost(io::Error::other("stopping")),
            r = tokio::time::timeout(self.settings.timeout, link.call(unit, request)) => r,
        };
        let now = Instant::now();
        self.last_end = Some(now);
        let outcome = classify(result);
        match &outcome {
            Outcome::Ok(_) => {
                self.stats.count(dev, Count::Response);
                self.stats.round_trip(dev, now - started);
            }
            Outcome::Exception(_) => {
                self.stats.count(dev, Count::Exception);
                self.stats.round_trip(dev, now - started);
            }
            Outcome::Timeout => {
                self.stats.count(dev, Count::Timeout);
                if self.connector.resync_after_timeout() {
                    self.link = None;
                    self.resync = true;
                }
            }
            Outcome::BadFrame(_) | Outcome::Mismatch(_) => {
                let what = if matches!(outcome, Outcome::BadFrame(_)) {
                    Count::Crc
                } else {
                    Count::Protocol
                };
                self.stats.count(dev, what);
                // The decoder may be mid-frame or out of step, and after a decode error
                // tokio-util's `Framed` ends the stream once (the next request would fail with
                // "broken pipe"): start afresh.
                self.link = None;
                self.resync = true;
            }
            Outcome::Lost(e) => {
                self.stats.count(dev, Count::Transport);
                let reason = match &self.settings.transport {
                    Transport::Rtu(s) => format!("serial port {} failed: {e}", s.port),
                    Transport::Tcp { address, .. } => format!("connection to {address} lost: {e}"),
                };
                self.resync = false;
                if self.link_down(reason).await.is_err() {
                    return Outcome::Lost(io::Error::other("stopping"));
                }
            }
        }
        outcome
    }

    /// Reads `r` for device `i`; a wrong-sized answer is a mismatch.
    async fn read(&mut self, i: usize, r: &ReadRequest) -> Outcome<Data> {
        let unit = self.devices[i].unit();
        match self.transact(Some(i), unit, read_request(r)).await {
            Outcome::Ok(response) => match read_data(r, response) {
                Ok(data) => Outcome::Ok(data),
                Err(why) => {
                    self.stats.count(Some(i), Count::Protocol);
                    Outcome::Mismatch(why)
                }
            },
            Outcome::Exception(c) => Outcome::Exception(c),
            Outcome::Timeout => Outcome::Timeout,
            Outcome::BadFrame(m) => Outcome::BadFrame(m),
            Outcome::Mismatch(m) => Outcome::Mismatch(m),
            Outcome::Lost(e) => Outcome::Lost(e),
        }
    }

    /// Polls device `i`: every request of its plan, writes served in between.
    async fn poll(&mut self, i: usize) -> Flow {
        let scheduled = self.devices[i].next_poll;
        let mut readings = Vec::new();
        let mut r = 0;
        while r < self.devices[i].plan.len() {
            self.serve_queued().await?;
            if self.link.is_none() {
                // Lost while serving a write: this poll is over; it is retried after reconnect.
                return Ok(());
            }
            let req = self.devices[i].plan[r].clone();
            match self.read(i, &req).await {
                Outcome::Ok(data) => {
                    if let Some(code) = self.devices[i].refused[r].take() {
                        info!(adapter = %self.name, device = %self.devices[i].id(), request = %req, was = %exception_name(code), "Device answers the request again");
                    }
                    self.decode_into(i, &req, &data, &mut readings);
                }
                Outcome::Exception(ExceptionCode::IllegalDataAddress) if req.points.len() > 1 => {
                    // Some register in the combined range does not exist: read the points in
                    // smaller requests from now on (contiguous runs first, then one by one).
                    let d = &mut self.devices[i];
                    let exact = Limits {
                        max_gap: 0,
                        ..d.limits
                    };
                    let mut parts = plan(&d.points, exact, |p| req.points.contains(&p));
                    if parts.len() == 1 {
                        parts = req
                            .points
                            .iter()
                            .flat_map(|&p| plan(&d.points, exact, |q| q == p))
                            .collect();
                    }
                    info!(adapter = %self.name, device = %d.config.id, request = %req, parts = parts.len(), "Device refused a combined read (illegal data address); reading its points separately");
                    let n = parts.len();
                    d.plan.splice(r..=r, parts);
                    d.refused.splice(r..=r, vec![None; n]);
                    // The first part is read now, in this same poll.
                    continue;
                }
                Outcome::Exception(code) => {
                    let d = &mut self.devices[i];
                    if d.refused[r] != Some(code) {
                        warn!(adapter = %self.name, device = %d.config.id, unit = d.unit(), request = %req, error = %exception_name(code), "Device refused a read; its points are marked bad");
                        d.refused[r] = Some(code);
                    }
                    for &p in &req.points {
                        if let Some(v) = d.last_good[p].clone() {
                            readings.push(bad(d, p, v));
                        }
                    }
                }
                Outcome::Timeout => {
                    let reason = format!(
                        "no response from unit {} on {}",
                        self.devices[i].unit(),
                        self.name
                    );
                    return self.device_failed(i, reason, scheduled).await;
                }
                Outcome::BadFrame(m) => {
                    let reason = format!(
                        "garbled answers from unit {} on {} ({m})",
                        self.devices[i].unit(),
                        self.name
                    );
                    return self.device_failed(i, reason, scheduled).await;
                }
                Outcome::Mismatch(m) => {
                    let reason = format!(
                        "unexpected answer from unit {} on {}: {m}",
                        self.devices[i].unit(),
                        self.name
                    );
                    return self.device_failed(i, reason, scheduled).await;
                }
                Outcome::Lost(_) => return Ok(()),
            }
            r += 1;
        }
        self.device_answered(i, scheduled).await?;
        if !readings.is_empty() {
            self.emit(AdapterEvent::Readings(readings)).await?;
        }
        Ok(())
    }

    /// Turns the data of `req` into readings of its points.
    fn decode_into(&mut self, i: usize, req: &ReadRequest, data: &Data, out: &mut Vec<Reading>) {
        // The points of one response were read at one time.
        let read_at = chrono::Utc::now();
        let d = &mut self.devices[i];
        for &p in &req.points {
            let point = &d.points[p];
            let off = req.offset_of(point);
            let decoded = match data {
                Data::Bits(bits) => Ok(codec::decode_bit(bits[off])),
                Data::Words(words) => {
                    let n = usize::from(point.encoding.registers());
                    codec::decode(&point.encoding, &words[off..off + n])
                }
            };
            let spec = &d.config.fields[p].spec;
            let value = decoded.map_err(|e| e.to_string()).and_then(|v| {
                v.coerce(spec.kind).map_err(|e| {
                    format!("the value does not fit the field's type {}: {e}", spec.kind)
                })
            });
            match value {
                Ok(v) => {
                    if d.bad_logged.remove(&p) {
                        info!(adapter = %self.name, device = %d.config.id, field = %spec.name, "Field has a good value again");
                    }
                    d.last_good[p] = Some(v.clone());
                    out.push(Reading {
                        timestamp: read_at,
                        ..Reading::now(d.config.id.clone(), spec.name.clone(), v)
                    });
                }
                Err(error) => {
                    self.stats.count(Some(i), Count::BadValue);
                    if d.bad_logged.insert(p) {
                        warn!(adapter = %self.name, device = %d.config.id, field = %spec.name, error = %error, "Device sent a value that is not usable; the field is marked bad");
                    }
                    if let Some(v) = d.last_good[p].clone() {
                        out.push(bad(d, p, v));
                    }
                }
            }
        }
    }

    async fn device_answered(&mut self, i: usize, scheduled: Instant) -> Flow {
        let d = &mut self.devices[i];
        if d.failures > 0 {
            info!(adapter = %self.name, device = %d.config.id, unit = d.unit(), failures = d.failures, "Device answers again");
            let slow = (d.config.settings.poll * 2).max(Duration::from_secs(1));
            d.backoff = Backoff::new(slow, MAX_DEVICE_BACKOFF.max(slow));
        }
        d.failures = 0;
        d.next_poll = next_after(scheduled, d.config.settings.poll, Instant::now());
        if d.online != Some(true) {
            d.online = Some(true);
            d.offline_reason = None;
            let device = d.config.id.clone();
            self.emit(AdapterEvent::Online { device }).await?;
        }
        Ok(())
    }

    async fn device_failed(&mut self, i: usize, reason: String, scheduled: Instant) -> Flow {
        let name = self.name.clone();
        let d = &mut self.devices[i];
        d.failures = d.failures.saturating_add(1);
        let now = Instant::now();
        if d.failures == 1 {
            // Once per outage; the rest is debug until it answers again (info).
            warn!(adapter = %name, device = %d.config.id, unit = d.unit(), error = %reason, "Device not answering");
        }
        if d.failures >= d.config.settings.backoff_after.max(1) {
            let delay = d.backoff.failed();
            d.next_poll = now + delay;
            debug!(adapter = %name, device = %d.config.id, failures = d.failures, next_in = ?delay, error = %reason, "Device still not answering; polling it less often");
        } else {
            d.next_poll = next_after(scheduled, d.config.settings.poll, now);
        }
        self.set_offline(i, reason).await
    }

    /// Tells the core device `i` is offline, unless it was already told so for this reason.
    async fn set_offline(&mut self, i: usize, reason: String) -> Flow {
        let d = &mut self.devices[i];
        if d.online == Some(false) && d.offline_reason.as_deref() == Some(reason.as_str()) {
            return Ok(());
        }
        d.online = Some(false);
        d.offline_reason = Some(reason.clone());
        let device = d.config.id.clone();
        self.emit(AdapterEvent::Offline { device, reason }).await
    }

    /// Sends an event to the core, waiting while it is behind (unless shutdown comes first).
    async fn emit(&mut self, event: AdapterEvent) -> Flow {
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => Err(Stop),
            sent = self.events.send(event) => sent.map_err(|_| Stop),
        }
    }

    /// Answers one request from XMPP.
    async fn serve(&mut self, req: Request) -> Flow {
        let Some(i) = self.devices.iter().position(|d| d.id() == &req.device) else {
            let _ = req.reply.send(Err(RequestError::Refused(format!(
                "no device {} on this adapter",
                req.device
            ))));
            return Ok(());
        };
        let result = match req.kind {
            RequestKind::Read { fields } => self.serve_read(i, &fields).await,
            RequestKind::Write { values } => self.serve_write(i, &values).await,
        };
        // The core may have given up waiting; nothing to do about it then.
        let _ = req.reply.send(result);
        if self.shutdown.is_cancelled() {
            return Err(Stop);
        }
        Ok(())
    }

    /// Why a request cannot go on the bus now, if it cannot.
    fn unreachable(&self) -> Option<RequestError> {
        if self.link.is_some() {
            return None;
        }
        Some(RequestError::Unreachable(
            self.down_reason.clone().unwrap_or_else(|| {
                format!(
                    "the link to {} is being reopened",
                    self.settings.transport.endpoint()
                )
            }),
        ))
    }

    fn request_error(&self, i: usize, outcome: Outcome<()>) -> RequestError {
        let d = &self.devices[i];
        match outcome {
            Outcome::Exception(code) => RequestError::Refused(format!(
                "unit {} answered {}",
                d.unit(),
                exception_name(code)
            )),
            Outcome::Timeout => RequestError::Timeout,
            Outcome::BadFrame(m) | Outcome::Mismatch(m) => {
                RequestError::Unreachable(format!("unit {} on {}: {m}", d.unit(), self.name))
            }
            Outcome::Lost(e) => {
                RequestError::Unreachable(self.down_reason.clone().unwrap_or_else(|| e.to_string()))
            }
            // Not an error; callers only pass failures.
            Outcome::Ok(()) => RequestError::Closed,
        }
    }

    /// Reads fields `wanted` (indices) of device `i` now.
    async fn read_fields(
        &mut self,
        i: usize,
        wanted: &[usize],
    ) -> Result<Vec<Reading>, RequestError> {
        if let Some(e) = self.unreachable() {
            return Err(e);
        }
        let reqs = plan(&self.devices[i].points, self.devices[i].limits, |p| {
            wanted.contains(&p)
        });
        let mut readings = Vec::new();
        for r in &reqs {
            match self.read(i, r).await {
                Outcome::Ok(data) => {
                    let mut all = Vec::new();
                    self.decode_into(i, r, &data, &mut all);
                    readings.extend(all.into_iter().filter(|rd| rd.quality == Quality::Good));
                }
                other => return Err(self.request_error(i, drop_data(other))),
            }
        }
        // In the order asked for; a field whose value is not usable is left out.
        let d = &self.devices[i];
        let mut ordered = Vec::new();
        for &p in wanted {
            let name = &d.config.fields[p].spec.name;
            if let Some(r) = readings.iter().find(|r| &r.field == name) {
                if !ordered.iter().any(|o: &Reading| &o.field == name) {
                    ordered.push(r.clone());
                }
            }
        }
        Ok(ordered)
    }

    async fn serve_read(
        &mut self,
        i: usize,
        fields: &[Arc<str>],
    ) -> Result<Vec<Reading>, RequestError> {
        let d = &self.devices[i];
        let wanted: Vec<usize> = if fields.is_empty() {
            (0..d.config.fields.len()).collect()
        } else {
            fields
                .iter()
                .map(|f| {
                    d.field_index(f)
                        .ok_or_else(|| RequestError::UnknownField(f.to_string()))
                })
                .collect::<Result<_, _>>()?
        };
        self.read_fields(i, &wanted).await
    }

    /// Checks every value, then writes them in order, then reads them back.
    async fn serve_write(
        &mut self,
        i: usize,
        values: &[(Arc<str>, Value)],
    ) -> Result<Vec<Reading>, RequestError> {
        let d = &self.devices[i];
        let mut ops = Vec::with_capacity(values.len());
        let mut written = Vec::new();
        for (name, value) in values {
            let p = d
                .field_index(name)
                .ok_or_else(|| RequestError::UnknownField(name.to_string()))?;
            let field = &d.config.fields[p];
            let point = &field.point;
            if !field.spec.writable || !point.kind.is_writable() {
                return Err(RequestError::NotWritable(name.to_string()));
            }
            let out_of_range = |reason: String| RequestError::OutOfRange {
                field: name.to_string(),
                reason,
            };
            let op = match (point.kind, point.encoding.bit) {
                (RegisterKind::Coil, _) => WriteOp::Coil(
                    point.address,
                    codec::to_bool(value).map_err(|e| out_of_range(e.to_string()))?,
                ),
                (_, Some(_)) => WriteOp::Bit(
                    point.address,
                    point.encoding.clone(),
                    codec::to_bool(value).map_err(|e| out_of_range(e.to_string()))?,
                ),
                _ => WriteOp::Registers(
                    point.address,
                    codec::encode(&point.encoding, value)
                        .map_err(|e| out_of_range(e.to_string()))?,
                ),
            };
            ops.push((name.clone(), op));
            if !written.contains(&p) {
                written.push(p);
            }
        }
        if let Some(e) = self.unreachable() {
            return Err(e);
        }
        let unit = self.devices[i].unit();
        for (name, op) in ops {
            let request = match op {
                WriteOp::Coil(addr, on) => MbRequest::WriteSingleCoil(addr, on),
                WriteOp::Registers(addr, words) if words.len() == 1 => {
                    MbRequest::WriteSingleRegister(addr, words[0])
                }
                WriteOp::Registers(addr, words) => {
                    MbRequest::WriteMultipleRegisters(addr, Cow::Owned(words))
                }
                WriteOp::Bit(addr, enc, on) => {
                    let current = match self
                        .transact(Some(i), unit, MbRequest::ReadHoldingRegisters(addr, 1))
                        .await
                    {
                        Outcome::Ok(Response::ReadHoldingRegisters(w)) if w.len() == 1 => w[0],
                        Outcome::Ok(_) => {
                            return Err(self.request_error(
                                i,
                                Outcome::Mismatch("an answer that does not fit the read".into()),
                            ))
                        }
                        other => return Err(self.request_error(i, drop_data(other))),
                    };
                    MbRequest::WriteSingleRegister(addr, codec::with_bit(&enc, current, on))
                }
            };
            match self.transact(Some(i), unit, request).await {
                Outcome::Ok(_) => {
                    debug!(adapter = %self.name, device = %self.devices[i].id(), field = %name, "Modbus write confirmed");
                }
                other => {
                    let e = self.request_error(i, drop_data(other));
                    warn!(adapter = %self.name, device = %self.devices[i].id(), field = %name, error = %e, "Modbus write failed");
                    return Err(e);
                }
            }
        }
        // The answer is what the device holds now, not what we sent.
        self.read_fields(i, &written).await
    }
}

/// The same outcome without its data.
fn drop_data<T>(o: Outcome<T>) -> Outcome<()> {
    match o {
        Outcome::Ok(_) => Outcome::Ok(()),
        Outcome::Exception(c) => Outcome::Exception(c),
        Outcome::Timeout => Outcome::Timeout,
        Outcome::BadFrame(m) => Outcome::BadFrame(m),
        Outcome::Mismatch(m) => Outcome::Mismatch(m),
        Outcome::Lost(e) => Outcome::Lost(e),
    }
}

/// A reading of field `p` with its last good value and quality `Bad`.
fn bad(d: &DeviceState, p: usize, value: Value) -> Reading {
    Reading {
        quality: Quality::Bad,
        ..Reading::now(
            d.config.id.clone(),
            d.config.fields[p].spec.name.clone(),
            value,
        )
    }
}

/// The next poll after one scheduled at `scheduled`: on the grid, skipping missed slots.
fn next_after(scheduled: Instant, poll: Duration, now: Instant) -> Instant {
    let next = scheduled + poll;
    if next <= now {
        now + poll
    } else {
        next
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    //! The scheduler against an in-memory bus, under paused time: exact and fast.

    use super::*;
    use crate::codec::{ByteOrder, DataType, Encoding};
    use crate::config::{DeviceSettings, ModbusField, Parity, SerialSettings};
    use gateway_api::testing::AdapterHarness;
    use gateway_api::{FieldSpec, FieldType};
    use std::collections::HashMap;
    use std::future::Future;
    use std::sync::Mutex;
    use tokio::time::timeout;

    /// One simulated unit.
    #[derive(Default)]
    struct Unit {
        holding: HashMap<u16, u16>,
        input: HashMap<u16, u16>,
        coils: HashMap<u16, bool>,
        /// Never answers.
        dead: bool,
        /// Answers with this exception to every request.
        refuse: Option<ExceptionCode>,
        /// Time to answer.
        latency: Duration,
    }

    #[derive(Default)]
    struct State {
        units: HashMap<u8, Unit>,
        /// Every request: (unit, what, seconds since start as ms).
        log: Vec<(u8, String)>,
        /// The next this many connects fail.
        failing_connects: u32,
        connects: u32,
        /// The next call fails as if the cable was pulled.
        lose_link: bool,
        /// The next call gets an answer with a bad CRC.
        garble: bool,
    }

    type Shared = Arc<Mutex<State>>;

    struct FakeConnector {
        state: Shared,
        resync: bool,
    }

    struct FakeLink {
        state: Shared,
    }

    impl Connector for FakeConnector {
        type Link = FakeLink;
        fn connect(&mut self) -> impl Future<Output = io::Result<FakeLink>> + Send {
            let state = self.state.clone();
            async move {
                let mut s = state.lock().unwrap();
                if s.failing_connects > 0 {
                    s.failing_connects -= 1;
                    return Err(io::Error::from(io::ErrorKind::ConnectionRefused));
                }
                s.connects += 1;
                drop(s);
                Ok(FakeLink { state })
            }
        }
        fn resync_after_timeout(&self) -> bool {
            self.resync
        }
        fn min_gap(&self) -> Duration {
            Duration::ZERO
        }
    }

    fn describe(r: &MbRequest<'_>) -> String {
        match r {
            MbRequest::ReadCoils(a, n) => format!("coil {a} {n}"),
            MbRequest::ReadHoldingRegisters(a, n) => format!("holding {a} {n}"),
            MbRequest::ReadInputRegisters(a, n) => format!("input {a} {n}"),
            MbRequest::WriteSingleCoil(a, v) => format!("fc5 {a} {v}"),
            MbRequest::WriteSingleRegister(a, v) => format!("fc6 {a} {v:#06x}"),
            MbRequest::WriteMultipleRegisters(a, w) => format!("fc16 {a} {w:04x?}"),
            other => format!("{other:?}"),
        }
    }

    fn answer(u: &mut Unit, r: MbRequest<'static>) -> Result<Response, ExceptionCode> {
        if let Some(code) = u.refuse {
            return Err(code);
        }
        let regs = |m: &HashMap<u16, u16>, a: u16, n: u16| {
            (a..a + n)
                .map(|x| m.get(&x).copied().ok_or(ExceptionCode::IllegalDataAddress))
                .collect::<Result<Vec<u16>, _>>()
        };
        Ok(match r {
            MbRequest::ReadHoldingRegisters(a, n) => {
                Response::ReadHoldingRegisters(regs(&u.holding, a, n)?)
            }
            MbRequest::ReadInputRegisters(a, n) => {
                Response::ReadInputRegisters(regs(&u.input, a, n)?)
            }
            MbRequest::ReadCoils(a, n) => {
                let mut bits = (a..a + n)
                    .map(|x| {
                        u.coils
                            .get(&x)
                            .copied()
                            .ok_or(ExceptionCode::IllegalDataAddress)
                    })
                    .collect::<Result<Vec<bool>, _>>()?;
                // Padded to whole bytes, as on the wire.
                bits.resize(bits.len().div_ceil(8) * 8, false);
                Response::ReadCoils(bits)
            }
            MbRequest::WriteSingleCoil(a, v) => {
                *u.coils
                    .get_mut(&a)
                    .ok_or(ExceptionCode::IllegalDataAddress)? = v;
                Response::WriteSingleCoil(a, v)
            }
            MbRequest::WriteSingleRegister(a, v) => {
                *u.holding
                    .get_mut(&a)
                    .ok_or(ExceptionCode::IllegalDataAddress)? = v;
                Response::WriteSingleRegister(a, v)
            }
            MbRequest::WriteMultipleRegisters(a, w) => {
                for (i, v) in w.iter().enumerate() {
                    *u.holding
                        .get_mut(&(a + i as u16))
                        .ok_or(ExceptionCode::IllegalDataAddress)? = *v;
                }
                Response::WriteMultipleRegisters(a, w.len() as u16)
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        })
    }

    impl Link for FakeLink {
        fn call(
            &mut self,
            unit: u8,
            request: MbRequest<'static>,
        ) -> impl Future<Output = tokio_modbus::Result<Response>> + Send {
            let state = self.state.clone();
            async move {
                let (dead, latency) = {
                    let mut s = state.lock().unwrap();
                    s.log.push((unit, describe(&request)));
                    if std::mem::take(&mut s.lose_link) {
                        return Err(io::Error::from(io::ErrorKind::BrokenPipe).into());
                    }
                    if std::mem::take(&mut s.garble) {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "Invalid CRC: expected = 0x1234, actual = 0x4321",
                        )
                        .into());
                    }
                    match s.units.get(&unit) {
                        Some(u) => (u.dead, u.latency),
                        None => (true, Duration::ZERO),
                    }
                };
                if dead {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(latency).await;
                let mut s = state.lock().unwrap();
                let u = s.units.get_mut(&unit).expect("a live unit exists");
                Ok(answer(u, request))
            }
        }
    }

    fn field(
        name: &str,
        kind: RegisterKind,
        address: u16,
        t: DataType,
        writable: bool,
    ) -> ModbusField {
        ModbusField {
            spec: FieldSpec {
                name: name.into(),
                unit: "".into(),
                kind: match t {
                    DataType::Bool => FieldType::Boolean,
                    DataType::String => FieldType::String,
                    _ => FieldType::Numeric,
                },
                writable,
            },
            point: Point {
                kind,
                address,
                encoding: Encoding::plain(t),
            },
        }
    }

    fn device(id: &str, unit: u8, poll_ms: u64, fields: Vec<ModbusField>) -> ModbusDevice {
        ModbusDevice {
            id: DeviceId::new(id).unwrap(),
            settings: DeviceSettings {
                unit,
                poll: Duration::from_millis(poll_ms),
                ..DeviceSettings::default()
            },
            fields,
        }
    }

    fn settings() -> BusSettings {
        BusSettings {
            transport: Transport::Rtu(SerialSettings {
                port: "/dev/ttyFAKE".into(),
                baud: 9600,
                data_bits: 8,
                parity: Parity::None,
                stop_bits: 1,
                rs485: None,
            }),
            timeout: Duration::from_millis(500),
            delay_between_requests: Duration::ZERO,
        }
    }

    /// The shared harness, with the fake units' state and the bus counters.
    struct Harness {
        adapter: AdapterHarness,
        state: Shared,
        stats: Arc<BusStats>,
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

    /// Under paused time, so a wait may be long: time jumps to the next timer.
    fn spawn(state: State, devices: Vec<ModbusDevice>, resync: bool) -> Harness {
        let state = Arc::new(Mutex::new(state));
        let stats = Arc::new(BusStats::new(
            "rs485".into(),
            devices.iter().map(|d| d.id.clone()),
        ));
        let connector = FakeConnector {
            state: state.clone(),
            resync,
        };
        let bus_stats = stats.clone();
        let adapter = AdapterHarness::start("rs485", 256, |ctx| {
            Bus::new(settings(), connector, devices, bus_stats, ctx).run()
        })
        .with_deadline(Duration::from_secs(3600));
        Harness {
            adapter,
            state,
            stats,
        }
    }

    impl Harness {
        fn ms(&self) -> u128 {
            self.elapsed().as_millis()
        }

        /// Events until `n` readings of `device` have come, as text with their time.
        async fn log_until(&mut self, device: &str, n: usize) -> Vec<String> {
            let mut out = Vec::new();
            let mut seen = 0;
            while seen < n {
                let e = self.next().await;
                let t = self.ms();
                match e {
                    AdapterEvent::Online { device } => out.push(format!("{t} {device} online")),
                    AdapterEvent::Offline { device, reason } => {
                        out.push(format!("{t} {device} offline: {reason}"))
                    }
                    other @ (AdapterEvent::DeviceFound(_) | AdapterEvent::DeviceGone { .. }) => {
                        panic!("Modbus has no discovery, yet: {other:?}")
                    }
                    AdapterEvent::Readings(rs) => {
                        for r in rs {
                            if r.device.as_str() == device {
                                seen += 1;
                            }
                            let q = if r.quality == Quality::Good {
                                ""
                            } else {
                                " (bad)"
                            };
                            out.push(format!("{t} {} {}={}{q}", r.device, r.field, r.value));
                        }
                    }
                }
            }
            out
        }

        fn log(&self) -> Vec<(u8, String)> {
            self.state.lock().unwrap().log.clone()
        }

        fn with_unit<R>(&self, unit: u8, f: impl FnOnce(&mut Unit) -> R) -> R {
            f(self.state.lock().unwrap().units.get_mut(&unit).unwrap())
        }
    }

    fn meter() -> Unit {
        let mut u = Unit::default();
        // holding 0-1: float32 21.5; 2: int16 -7; 10: uint16 (gap of 7: same request)
        for (a, v) in [(0, 0x41AC), (1, 0), (2, 0xFFF9), (10, 500), (100, 1)] {
            u.holding.insert(a, v);
        }
        // The unused registers between points exist (read as 0).
        for a in 3..10 {
            u.holding.insert(a, 0);
        }
        u.input.insert(0, 42);
        u.coils.insert(3, true);
        u
    }

    fn meter_fields() -> Vec<ModbusField> {
        vec![
            field("temp", RegisterKind::Holding, 0, DataType::Float32, false),
            field("offset", RegisterKind::Holding, 2, DataType::Int16, true),
            field("limit", RegisterKind::Holding, 10, DataType::Uint16, true),
            field("far", RegisterKind::Holding, 100, DataType::Uint16, false),
            field("count", RegisterKind::Input, 0, DataType::Uint16, false),
            field("relay", RegisterKind::Coil, 3, DataType::Bool, true),
        ]
    }

    fn state_with(units: Vec<(u8, Unit)>) -> State {
        State {
            units: units.into_iter().collect(),
            ..State::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn polls_every_point_with_the_planned_requests() {
        let mut h = spawn(
            state_with(vec![(1, meter())]),
            vec![device("meter", 1, 1000, meter_fields())],
            false,
        );
        let log = h.log_until("meter", 12).await;
        assert_eq!(
            log,
            [
                "0 meter online",
                "0 meter relay=true",
                "0 meter temp=21.5",
                "0 meter offset=-7",
                "0 meter limit=500",
                "0 meter far=1",
                "0 meter count=42",
                "1000 meter relay=true",
                "1000 meter temp=21.5",
                "1000 meter offset=-7",
                "1000 meter limit=500",
                "1000 meter far=1",
                "1000 meter count=42",
            ]
        );
        let calls: Vec<String> = h.log().into_iter().map(|(_, c)| c).collect();
        assert_eq!(
            calls[..4],
            ["coil 3 1", "holding 0 11", "holding 100 1", "input 0 1"]
        );
        let s = h.stats.total.snapshot();
        assert_eq!((s.requests, s.responses, s.timeouts), (8, 8, 0));
        h.shutdown.cancel();
        timeout(Duration::from_millis(1), h.adapter.task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_unit_costs_one_timeout_per_cycle_and_is_polled_less_often() {
        let mut dead = meter();
        dead.dead = true;
        let mut h = spawn(
            state_with(vec![(1, meter()), (3, dead)]),
            vec![
                device(
                    "good",
                    1,
                    1000,
                    vec![field(
                        "temp",
                        RegisterKind::Holding,
                        0,
                        DataType::Float32,
                        false,
                    )],
                ),
                device("dead", 3, 1000, meter_fields()),
            ],
            false,
        );
        let log = h.log_until("good", 30).await;
        // The healthy unit reads every second, at most one timeout (500 ms) late.
        let good: Vec<u128> = log
            .iter()
            .filter(|l| l.contains("good temp"))
            .map(|l| l.split(' ').next().unwrap().parse().unwrap())
            .collect();
        for (n, t) in good.iter().enumerate() {
            let slot = n as u128 * 1000;
            assert!(
                *t >= slot && *t <= slot + 500,
                "reading {n} at {t}: {log:?}"
            );
        }
        let offline: Vec<&String> = log.iter().filter(|l| l.contains("dead offline")).collect();
        assert_eq!(offline.len(), 1, "told once: {log:?}");
        assert!(offline[0].ends_with("dead offline: no response from unit 3 on rs485"));
        // One request per failed cycle, and after three failures far fewer cycles than seconds.
        let dead_calls = h.log().iter().filter(|(u, _)| *u == 3).count();
        assert!(
            (4..=10).contains(&dead_calls),
            "{dead_calls} polls of the dead unit in 30 s"
        );
        let s = h
            .stats
            .device(&DeviceId::new("dead").unwrap())
            .unwrap()
            .snapshot();
        assert_eq!(s.timeouts as usize, dead_calls);
        assert_eq!(s.responses, 0);

        // It comes back: answered at its next (backed-off) poll, and online again.
        h.with_unit(3, |u| u.dead = false);
        loop {
            if let AdapterEvent::Online { device } = h.next().await {
                assert_eq!(device.as_str(), "dead");
                break;
            }
        }
        assert!(h.ms() <= 30_000 + 61_000);
    }

    #[tokio::test(start_paused = true)]
    async fn an_exception_marks_the_points_bad_and_keeps_link_and_device_up() {
        let mut h = spawn(
            state_with(vec![(1, meter())]),
            vec![device("meter", 1, 1000, meter_fields())],
            true,
        );
        h.log_until("meter", 6).await;
        h.with_unit(1, |u| u.refuse = Some(ExceptionCode::ServerDeviceFailure));
        let log = h.log_until("meter", 12).await;
        // Every point is reported with its last value and quality bad; nobody goes offline.
        assert!(log.iter().all(|l| !l.contains("offline")), "{log:?}");
        let bad: Vec<&String> = log.iter().filter(|l| l.ends_with("(bad)")).collect();
        assert_eq!(bad.len(), 12, "{log:?}");
        assert!(log.contains(&"1000 meter temp=21.5 (bad)".to_owned()));
        let s = h.stats.total.snapshot();
        assert_eq!(s.exceptions, 8);
        assert_eq!(h.state.lock().unwrap().connects, 1, "the link stays up");
        // Cleared: good again.
        h.with_unit(1, |u| u.refuse = None);
        let log = h.log_until("meter", 6).await;
        assert!(log.iter().all(|l| !l.ends_with("(bad)")), "{log:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_point_refused_from_the_start_reports_nothing_but_the_others_do() {
        let mut fields = meter_fields();
        fields.push(field(
            "ghost",
            RegisterKind::Holding,
            500,
            DataType::Int16,
            false,
        ));
        let mut h = spawn(
            state_with(vec![(1, meter())]),
            vec![device("meter", 1, 1000, fields)],
            false,
        );
        let log = h.log_until("meter", 12).await;
        assert_eq!(log[0], "0 meter online");
        assert!(log.iter().all(|l| !l.contains("ghost")), "{log:?}");
        assert_eq!(h.stats.total.snapshot().exceptions, 2);
        let calls: Vec<String> = h.log().into_iter().map(|(_, c)| c).collect();
        assert_eq!(
            calls[..5],
            [
                "coil 3 1",
                "holding 0 11",
                "holding 100 1",
                "holding 500 1",
                "input 0 1"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_combined_read_over_a_hole_is_split_into_its_points() {
        let mut unit = meter();
        for a in 3..10 {
            unit.holding.remove(&a);
        }
        let mut h = spawn(
            state_with(vec![(1, unit)]),
            vec![device("meter", 1, 1000, meter_fields())],
            false,
        );
        let log = h.log_until("meter", 12).await;
        assert!(log.iter().all(|l| !l.contains("bad")), "{log:?}");
        assert_eq!(log.iter().filter(|l| l.contains("limit=500")).count(), 2);
        let calls: Vec<String> = h.log().into_iter().map(|(_, c)| c).collect();
        assert_eq!(
            calls[..9],
            [
                "coil 3 1",
                "holding 0 11", // refused: 3..=9 do not exist
                "holding 0 3",  // the contiguous run 0..=2
                "holding 10 1",
                "holding 100 1",
                "input 0 1",
                "coil 3 1", // the next poll uses the split plan directly
                "holding 0 3",
                "holding 10 1",
            ]
        );
        assert_eq!(h.stats.total.snapshot().exceptions, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_go_ahead_of_the_rest_of_a_poll_and_answer_with_the_read_back() {
        let mut unit = meter();
        unit.latency = Duration::from_millis(100);
        let mut h = spawn(
            state_with(vec![(1, unit)]),
            vec![device("meter", 1, 10_000, meter_fields())],
            false,
        );
        h.log_until("meter", 6).await;
        // The second poll starts at 10 s; the write arrives during its first request.
        tokio::time::sleep_until(h.start + Duration::from_millis(10_050)).await;
        let reply = h
            .write(
                "meter",
                &[
                    ("offset", Value::Float(-300.0)),
                    ("relay", Value::Bool(false)),
                ],
            )
            .await
            .unwrap();
        let values: Vec<(String, Value)> = reply
            .iter()
            .map(|r| (r.field.to_string(), r.value.clone()))
            .collect();
        assert_eq!(
            values,
            [
                ("offset".into(), Value::Float(-300.0)),
                ("relay".into(), Value::Bool(false))
            ]
        );
        let calls: Vec<String> = h.log().into_iter().map(|(_, c)| c).skip(4).collect();
        assert_eq!(
            calls[..6],
            [
                "coil 3 1",     // the poll's first request, in flight when the write came
                "fc6 2 0xfed4", // the write, ahead of the rest of the poll
                "fc5 3 false",
                "coil 3 1", // read back
                "holding 2 1",
                "holding 0 11", // the poll goes on
            ]
        );
        assert_eq!(h.with_unit(1, |u| u.holding[&2]), 0xFED4);
    }

    #[tokio::test(start_paused = true)]
    async fn multi_register_writes_use_fc16_and_bits_are_read_modify_write() {
        let mut fields = vec![
            field(
                "setpoint",
                RegisterKind::Holding,
                0,
                DataType::Float32,
                true,
            ),
            field("flag", RegisterKind::Holding, 10, DataType::Bool, true),
        ];
        fields[0].point.encoding.byte_order = ByteOrder::Cdab;
        fields[1].point.encoding.bit = Some(3);
        let mut h = spawn(
            state_with(vec![(1, meter())]),
            vec![device("d", 1, 10_000, fields)],
            false,
        );
        h.log_until("d", 2).await;
        let reply = h
            .write(
                "d",
                &[
                    ("setpoint", Value::Float(-1.25)),
                    ("flag", Value::Bool(true)),
                ],
            )
            .await
            .unwrap();
        assert_eq!(reply[0].value, Value::Float(-1.25));
        assert_eq!(reply[1].value, Value::Bool(true));
        let calls: Vec<String> = h.log().into_iter().map(|(_, c)| c).skip(1).collect();
        assert_eq!(
            calls[..4],
            [
                "fc16 0 [0000, bfa0]",
                "holding 10 1",
                "fc6 10 0x01fc",
                "holding 0 11"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bad_writes_are_refused_before_anything_is_written() {
        let mut fields = meter_fields();
        fields[4].spec.writable = true; // an input register marked writable by mistake
        let mut h = spawn(
            state_with(vec![(1, meter())]),
            vec![device("meter", 1, 10_000, fields)],
            false,
        );
        h.log_until("meter", 6).await;
        let before = h.log().len();
        let err = h
            .write(
                "meter",
                &[("limit", Value::Int(1)), ("offset", Value::Int(40_000))],
            )
            .await
            .unwrap_err();
        assert_eq!(
            err,
            RequestError::OutOfRange {
                field: "offset".into(),
                reason: "40000 does not fit: this int16 field holds -32768 to 32767".into()
            }
        );
        assert_eq!(
            h.write("meter", &[("temp", Value::Float(1.0))]).await,
            Err(RequestError::NotWritable("temp".into()))
        );
        assert_eq!(
            h.write("meter", &[("count", Value::Float(1.0))]).await,
            Err(RequestError::NotWritable("count".into()))
        );
        assert_eq!(
            h.write("meter", &[("nope", Value::Float(1.0))]).await,
            Err(RequestError::UnknownField("nope".into()))
        );
        assert!(matches!(
            h.write("meter", &[("relay", Value::Int(5))]).await,
            Err(RequestError::OutOfRange { .. })
        ));
        assert!(matches!(
            h.write("nosuch", &[("relay", Value::Bool(true))]).await,
            Err(RequestError::Refused(_))
        ));
        assert_eq!(h.log().len(), before, "nothing went on the bus");
        // A refused write is an error naming the exception.
        h.with_unit(1, |u| u.refuse = Some(ExceptionCode::IllegalDataValue));
        assert_eq!(
            h.write("meter", &[("limit", Value::Int(1))]).await,
            Err(RequestError::Refused(
                "unit 1 answered illegal data value (exception 3)".into()
            ))
        );
        // Reads are served too.
        h.with_unit(1, |u| u.refuse = None);
        let read = h
            .request(
                "meter",
                RequestKind::Read {
                    fields: vec!["count".into(), "temp".into()],
                },
            )
            .await
            .unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(
            (&*read[0].field, &read[0].value),
            ("count", &Value::Float(42.0))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_link_takes_every_device_offline_and_is_reopened_with_back_off() {
        let mut h = spawn(
            state_with(vec![(1, meter()), (2, meter())]),
            vec![
                device(
                    "a",
                    1,
                    1000,
                    vec![field(
                        "t",
                        RegisterKind::Holding,
                        0,
                        DataType::Float32,
                        false,
                    )],
                ),
                device(
                    "b",
                    2,
                    1000,
                    vec![field(
                        "t",
                        RegisterKind::Holding,
                        0,
                        DataType::Float32,
                        false,
                    )],
                ),
            ],
            true,
        );
        h.log_until("b", 1).await;
        {
            let mut s = h.state.lock().unwrap();
            s.lose_link = true;
            s.failing_connects = 2;
        }
        let log = h.log_until("b", 1).await;
        let text = log.join("\n");
        assert!(
            text.contains("a offline: serial port /dev/ttyFAKE failed: broken pipe")
                && text.contains("b offline: serial port /dev/ttyFAKE failed: broken pipe"),
            "{text}"
        );
        // Connect failures update the reason.
        assert!(
            text.contains("a offline: cannot open /dev/ttyFAKE: connection refused"),
            "{text}"
        );
        // 1 s then 2 s of back-off (±20 %), then both devices are back.
        let back: u128 = log
            .iter()
            .find(|l| l.ends_with("a online"))
            .and_then(|l| l.split(' ').next())
            .and_then(|t| t.parse().ok())
            .expect("a comes back");
        assert!((3400..=4600).contains(&back), "{text}");
        assert_eq!(h.state.lock().unwrap().connects, 2);
        assert_eq!(h.stats.total.snapshot().transport_errors, 3);
        // While the link was down, requests were answered at once.
        h.state.lock().unwrap().lose_link = true;
        h.state.lock().unwrap().failing_connects = 1;
        loop {
            if let AdapterEvent::Offline { .. } = h.next().await {
                break;
            }
        }
        assert!(matches!(
            h.write("a", &[("t", Value::Float(1.0))]).await,
            Err(RequestError::NotWritable(_))
        ));
        let err = h
            .request("a", RequestKind::Read { fields: vec![] })
            .await
            .unwrap_err();
        assert!(
            matches!(err, RequestError::Unreachable(ref r) if r.contains("/dev/ttyFAKE")),
            "{err:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_tcp_timeout_reconnects_without_back_off_and_nan_is_bad() {
        let mut unit = meter();
        unit.holding.insert(0, 0x7FC0); // NaN
        let mut h = spawn(
            state_with(vec![
                (1, unit),
                (
                    3,
                    Unit {
                        dead: true,
                        ..meter()
                    },
                ),
            ]),
            vec![
                device(
                    "a",
                    1,
                    1000,
                    vec![field(
                        "t",
                        RegisterKind::Holding,
                        0,
                        DataType::Float32,
                        false,
                    )],
                ),
                device(
                    "z",
                    3,
                    1000,
                    vec![field(
                        "t",
                        RegisterKind::Holding,
                        0,
                        DataType::Float32,
                        false,
                    )],
                ),
            ],
            true,
        );
        // NaN: no reading (no good value yet), but counted.
        match h.next().await {
            AdapterEvent::Online { device } => assert_eq!(device.as_str(), "a"),
            other => panic!("{other:?}"),
        }
        match h.next().await {
            AdapterEvent::Offline { device, .. } => assert_eq!(device.as_str(), "z"),
            other => panic!("{other:?}"),
        }
        assert_eq!(h.stats.total.snapshot().bad_values, 1);
        // The timeout on z reopened the link at once (no back-off).
        assert_eq!(h.state.lock().unwrap().connects, 2);
        h.with_unit(1, |u| u.holding.insert(0, 0x41AC));
        let log = h.log_until("a", 1).await;
        assert!(log.last().unwrap().ends_with("a t=21.5"), "{log:?}");
        h.with_unit(1, |u| u.holding.insert(0, 0xFF80)); // -inf
        let log = h.log_until("a", 1).await;
        assert!(log.last().unwrap().ends_with("a t=21.5 (bad)"), "{log:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_garbled_answer_fails_the_poll_and_reopens_the_link_at_once() {
        let mut h = spawn(
            state_with(vec![(1, meter())]),
            vec![device("meter", 1, 1000, meter_fields())],
            false,
        );
        h.log_until("meter", 6).await;
        h.state.lock().unwrap().garble = true;
        let log = h.log_until("meter", 6).await;
        assert_eq!(
            log[0],
            "1000 meter offline: garbled answers from unit 1 on rs485 (Invalid CRC: expected = 0x1234, actual = 0x4321)"
        );
        // Reopened without back-off; the next poll (on time) brings it back.
        assert_eq!(log[1], "2000 meter online");
        assert_eq!(h.state.lock().unwrap().connects, 2);
        let s = h.stats.total.snapshot();
        assert_eq!((s.crc_errors, s.transport_errors), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_promptly_even_mid_request() {
        let mut dead = meter();
        dead.dead = true;
        let h = spawn(
            state_with(vec![(3, dead)]),
            vec![device("dead", 3, 1000, meter_fields())],
            false,
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        h.shutdown.cancel();
        timeout(Duration::from_millis(1), h.adapter.task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn stops_when_the_core_closes_the_event_channel() {
        let h = spawn(
            state_with(vec![(1, meter())]),
            vec![device("meter", 1, 1000, meter_fields())],
            false,
        );
        drop(h.adapter.events);
        timeout(Duration::from_secs(2), h.adapter.task)
            .await
            .unwrap()
            .unwrap();
    }
}
