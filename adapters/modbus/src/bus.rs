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
    AdapterEvent, Backoff, DeviceId, EventSink, Quality, Reading, Request, RequestError,
    RequestKind, Value,
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
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: Arc<str>,
        settings: BusSettings,
        connector: C,
        devices: Vec<ModbusDevice>,
        stats: Arc<BusStats>,
        events: EventSink,
        requests: mpsc::Receiver<Request>,
        shutdown: CancellationToken,
    ) -> Self {
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
                            info!(adapter = %self.name, endpoint = self.settings.transport.endpoint(), "Modbus link restored")
                        }
                        None if resync => {
                            debug!(adapter = %self.name, "Modbus link reopened to resynchronise")
                        }
                        None => {
                            debug!(adapter = %self.name, endpoint = self.settings.transport.endpoint(), "Modbus link open")
                        }
                    }
                    // Everyone is polled at once: presence comes back without waiting a cycle.
                    let now = Instant::now();
                    for d in &mut self.devices {
                        d.next_poll = d.next_poll.min(now);
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

    /// Sleeps `delay` while answering requests with `Unreachable`.
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
                Some(req) => {
                    let reason = self.down_reason.clone().unwrap_or_default();
                    let _ = req.reply.send(Err(RequestError::Unreachable(reason)));
                }
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
    async fn transact(&mut self, dev: Option<usize>, unit: u8, request: MbRequest<'static>) -> Outcome<Response> {
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
            return Outcome::Lost(io::Error::new(io::ErrorKind::NotConnected, "the link is down"));
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
                // The decoder may be mid-frame or out of step: start afresh.
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
        for r in 0..self.devices[i].plan.len() {
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
                    let reason = format!("no response from unit {} on {}", self.devices[i].unit(), self.name);
                    return self.device_failed(i, reason, scheduled).await;
                }
                Outcome::BadFrame(m) => {
                    let reason = format!("garbled answers from unit {} on {} ({m})", self.devices[i].unit(), self.name);
                    return self.device_failed(i, reason, scheduled).await;
                }
                Outcome::Mismatch(m) => {
                    let reason = format!("unexpected answer from unit {} on {}: {m}", self.devices[i].unit(), self.name);
                    return self.device_failed(i, reason, scheduled).await;
                }
                Outcome::Lost(_) => return Ok(()),
            }
        }
        self.device_answered(i, scheduled).await?;
        for r in readings {
            self.emit(AdapterEvent::Reading(r)).await?;
        }
        Ok(())
    }

    /// Turns the data of `req` into readings of its points.
    fn decode_into(&mut self, i: usize, req: &ReadRequest, data: &Data, out: &mut Vec<Reading>) {
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
                    out.push(Reading::now(d.config.id.clone(), spec.name.clone(), v));
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
        if d.failures >= d.config.settings.backoff_after.max(1) {
            let delay = d.backoff.failed();
            d.next_poll = now + delay;
            debug!(adapter = %name, device = %d.config.id, failures = d.failures, next_in = ?delay, error = %reason, "Device still not answering; polling it less often");
        } else {
            d.next_poll = next_after(scheduled, d.config.settings.poll, now);
            if d.failures == 1 {
                warn!(adapter = %name, device = %d.config.id, unit = d.unit(), error = %reason, "Device not answering");
            }
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
            self.down_reason
                .clone()
                .unwrap_or_else(|| format!("the link to {} is being reopened", self.settings.transport.endpoint())),
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
            Outcome::BadFrame(m) | Outcome::Mismatch(m) => RequestError::Unreachable(format!(
                "unit {} on {}: {m}",
                d.unit(),
                self.name
            )),
            Outcome::Lost(e) => RequestError::Unreachable(
                self.down_reason.clone().unwrap_or_else(|| e.to_string()),
            ),
            Outcome::Ok(()) => RequestError::Closed,
        }
    }

    /// Reads fields `wanted` (indices) of device `i` now.
    async fn read_fields(&mut self, i: usize, wanted: &[usize]) -> Result<Vec<Reading>, RequestError> {
        if let Some(e) = self.unreachable() {
            return Err(e);
        }
        let reqs = plan(&self.devices[i].points, self.devices[i].limits, |p| wanted.contains(&p));
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

    async fn serve_read(&mut self, i: usize, fields: &[Arc<str>]) -> Result<Vec<Reading>, RequestError> {
        let d = &self.devices[i];
        let wanted: Vec<usize> = if fields.is_empty() {
            (0..d.config.fields.len()).collect()
        } else {
            fields
                .iter()
                .map(|f| d.field_index(f).ok_or_else(|| RequestError::UnknownField(f.to_string())))
                .collect::<Result<_, _>>()?
        };
        self.read_fields(i, &wanted).await
    }

    /// Checks every value, then writes them in order, then reads them back.
    async fn serve_write(&mut self, i: usize, values: &[(Arc<str>, Value)]) -> Result<Vec<Reading>, RequestError> {
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
                    codec::encode(&point.encoding, value).map_err(|e| out_of_range(e.to_string()))?,
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
                    let current = match self.transact(Some(i), unit, MbRequest::ReadHoldingRegisters(addr, 1)).await {
                        Outcome::Ok(Response::ReadHoldingRegisters(w)) if w.len() == 1 => w[0],
                        Outcome::Ok(_) => {
                            return Err(self.request_error(i, Outcome::Mismatch("an answer that does not fit the read".into())))
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
        ..Reading::now(d.config.id.clone(), d.config.fields[p].spec.name.clone(), value)
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
