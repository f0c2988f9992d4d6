//! The adapter's state machine, between the broker link and the core: no I/O of its own.
//!
//! It takes [`Link`] messages from the poller, requests from the core and clock ticks, and
//! produces two queues: `out` (events for the core, each received message followed by its
//! acknowledgement, so a message is acknowledged only after the core accepted what it carried)
//! and `mqtt` (acknowledgements, command publishes and subscriptions for rumqttc). The task in
//! `lib.rs` moves both queues as their channels have room.
//!
//! Per device it tracks what decides presence: whether the broker is reachable, what the
//! availability topic last said, whether data stopped for `stale_after`, whether the broker
//! refused a subscription the device needs. The core is told only when that changes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use gateway_api::{
    AdapterEvent, DeviceId, Quality, Reading, Request, RequestError, RequestKind, Value,
};
use rumqttc::{Publish, SubAck, SubscribeReasonCode};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, trace, warn};

use crate::config::{BrokerConfig, MqttDevice, TopicBinding};
use crate::discovery::{self, Discovery, LinkView};
use crate::link::Link;
use crate::payload::{self, Problem};
use crate::rate_limit::RateLimit;
use crate::stats::MqttStats;
use crate::topic;

/// Filters per SUBSCRIBE packet.
const SUBSCRIBE_BATCH: usize = 64;
/// Above this many queued events the adapter stops taking messages from the link (back-pressure
/// then reaches the broker, which queues for us).
const OUT_HIGH_WATER: usize = 1024;

/// What rumqttc should send, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum MqttRequest {
    Ack(Publish),
    Publish { topic: String, payload: Vec<u8> },
    Subscribe(Vec<String>),
}

/// Towards the core, in order.
#[derive(Debug)]
enum Out {
    Event(AdapterEvent),
    /// Acknowledge this message once the events before it were accepted; only if the
    /// connection it came on (`epoch`) is still the current one.
    Ack {
        publish: Publish,
        epoch: u64,
    },
}

/// What presence should say about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Online,
    Offline(String),
}

/// Where a received message goes.
#[derive(Debug)]
struct Route {
    filter: String,
    device: usize,
    kind: RouteKind,
}

#[derive(Debug)]
enum RouteKind {
    /// These fields (indices into the device's fields) read from messages on the filter.
    Data(Vec<usize>),
    Availability,
}

/// Every route, with exact topics in a map and wildcard filters in a list.
#[derive(Debug, Default)]
struct Routes {
    list: Vec<Route>,
    exact: HashMap<String, Vec<usize>>,
    wild: Vec<usize>,
}

impl Routes {
    fn build(devices: &[MqttDevice]) -> Routes {
        let mut routes = Routes::default();
        for (d, dev) in devices.iter().enumerate() {
            // Fields grouped by the topic they read, in configured order.
            let mut groups: Vec<(&TopicBinding, Vec<usize>)> = Vec::new();
            for (i, f) in dev.fields.iter().enumerate() {
                let Some(b) = f.config.topic.as_ref().or(dev.config.topic.as_ref()) else {
                    continue;
                };
                match groups.iter_mut().find(|(g, _)| g.filter == b.filter) {
                    Some((_, fields)) => fields.push(i),
                    None => groups.push((b, vec![i])),
                }
            }
            for (b, fields) in groups {
                routes.add(b.filter.clone(), d, RouteKind::Data(fields));
            }
            if let Some(a) = &dev.config.availability {
                routes.add(a.topic.filter.clone(), d, RouteKind::Availability);
            }
        }
        routes
    }

    fn add(&mut self, filter: String, device: usize, kind: RouteKind) {
        let at = self.list.len();
        if topic::has_wildcard(&filter) {
            self.wild.push(at);
        } else {
            self.exact.entry(filter.clone()).or_default().push(at);
        }
        self.list.push(Route {
            filter,
            device,
            kind,
        });
    }

    /// Indices of the routes a message on `topic` takes.
    fn lookup(&self, topic: &str) -> Vec<usize> {
        let mut hits: Vec<usize> = self.exact.get(topic).cloned().unwrap_or_default();
        hits.extend(
            self.wild
                .iter()
                .copied()
                .filter(|&r| topic::matches(&self.list[r].filter, topic)),
        );
        hits.sort_unstable();
        hits
    }
}

#[derive(Debug, Default)]
struct DeviceState {
    /// What the core was last told; `None` before the first word.
    announced: Option<Status>,
    /// What the availability topic last said (`None`: nothing yet).
    avail: Option<bool>,
    /// When a message for this device last arrived.
    last_data: Option<Instant>,
    /// Nothing arrived for `stale_after`.
    stale: bool,
    /// A subscription this device needs was refused by the broker (the filter).
    refused: Option<String>,
    /// The last good value of each field, for reads.
    last: Vec<Option<Value>>,
    warn: RateLimit,
}

/// The broker link as far as devices care.
#[derive(Debug)]
enum LinkState {
    /// No connection attempt has finished yet.
    Starting,
    Up {
        since: Instant,
    },
    Down {
        reason: String,
    },
}

/// A write waiting for the broker to acknowledge its command messages.
#[derive(Debug)]
struct PendingWrite {
    reply: oneshot::Sender<Result<Vec<Reading>, RequestError>>,
    readings: Vec<Reading>,
    /// Command messages not acknowledged yet.
    outstanding: usize,
}

pub struct Bridge {
    adapter: Arc<str>,
    /// `host:port` of the broker, for reasons shown to people.
    broker: String,
    max_payload: usize,
    devices: Vec<MqttDevice>,
    state: Vec<DeviceState>,
    by_id: HashMap<DeviceId, usize>,
    routes: Routes,
    /// What is subscribed, already reduced to the filters that cover all devices.
    subscriptions: Vec<String>,
    link: LinkState,
    /// Counts connections; an acknowledgement only goes out on the connection its message came on.
    epoch: u64,
    /// Every subscription of this run was acknowledged (so a resumed session has them all).
    subscribed: bool,
    out: VecDeque<Out>,
    /// For rumqttc, in order; drained by the task in lib.rs.
    pub mqtt: VecDeque<MqttRequest>,
    writes: HashMap<u64, PendingWrite>,
    next_write: u64,
    /// One entry per queued command message (its write), in publish order, until rumqttc says
    /// which packet id it got.
    awaiting_pkid: VecDeque<u64>,
    /// Packet id of a command in flight -> its write.
    inflight: HashMap<u16, u64>,
    /// Subscribe batches in the order queued, until they get a packet id; then by packet id.
    sub_awaiting_pkid: VecDeque<Vec<String>>,
    sub_inflight: HashMap<u16, Vec<String>>,
    /// Devices that announce themselves, when `discovery` is on.
    discovery: Option<Discovery>,
    stats: Arc<MqttStats>,
}

impl Bridge {
    pub fn new(
        adapter: Arc<str>,
        broker: &BrokerConfig,
        devices: Vec<MqttDevice>,
        stats: Arc<MqttStats>,
    ) -> Bridge {
        let routes = Routes::build(&devices);
        let mut wanted: Vec<String> = Vec::new();
        for dev in &devices {
            for f in &dev.fields {
                if let Some(b) = f.config.topic.as_ref().or(dev.config.topic.as_ref()) {
                    wanted.push(b.subscribe.clone());
                }
            }
            if let Some(a) = &dev.config.availability {
                wanted.push(a.topic.subscribe.clone());
            }
        }
        let discovery = broker.discovery.enabled().then(|| {
            Discovery::new(
                adapter.clone(),
                broker.discovery.clone(),
                devices.iter().map(|d| d.id.as_str().to_owned()),
                stats.clone(),
            )
        });
        if let Some(d) = &discovery {
            wanted.extend(d.topics());
        }
        let subscriptions = topic::reduce(&wanted);
        let state = devices
            .iter()
            .map(|d| DeviceState {
                last: vec![None; d.fields.len()],
                ..DeviceState::default()
            })
            .collect();
        let by_id = devices
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.clone(), i))
            .collect();
        Bridge {
            adapter,
            broker: broker.url.host_port(),
            max_payload: broker.max_payload,
            devices,
            state,
            by_id,
            routes,
            subscriptions,
            link: LinkState::Starting,
            epoch: 0,
            subscribed: false,
            out: VecDeque::new(),
            mqtt: VecDeque::new(),
            writes: HashMap::new(),
            next_write: 0,
            awaiting_pkid: VecDeque::new(),
            inflight: HashMap::new(),
            sub_awaiting_pkid: VecDeque::new(),
            sub_inflight: HashMap::new(),
            discovery,
            stats,
        }
    }

    /// The link as discovered devices see it.
    fn link_view(&self) -> LinkView {
        match &self.link {
            LinkState::Starting => LinkView::Unknown,
            LinkState::Down { reason } => LinkView::Down(reason.clone()),
            LinkState::Up { .. } if !self.subscribed => LinkView::Unknown,
            LinkState::Up { .. } => LinkView::Up,
        }
    }

    /// Tells discovery how the link is, and passes on what it says.
    fn discovery_link(&mut self) {
        let view = self.link_view();
        let mut out = discovery::Output::default();
        if let Some(d) = &mut self.discovery {
            d.set_link(view, &mut out);
        }
        self.absorb(out);
    }

    /// Discovery's events go to the core; the topics of newly found devices are subscribed
    /// (now when connected, else with everything on the next connection).
    fn absorb(&mut self, out: discovery::Output) {
        for ev in out.events {
            self.out.push_back(Out::Event(ev));
        }
        if out.subscribe.is_empty() {
            return;
        }
        self.subscriptions.extend(out.subscribe.iter().cloned());
        if matches!(self.link, LinkState::Up { .. }) {
            for batch in out.subscribe.chunks(SUBSCRIBE_BATCH) {
                self.mqtt.push_back(MqttRequest::Subscribe(batch.to_vec()));
                self.sub_awaiting_pkid.push_back(batch.to_vec());
            }
        }
        // Until the broker confirms them, a resumed session may lack them.
        self.subscribed = false;
    }

    /// The filters this adapter subscribes to.
    pub fn subscriptions(&self) -> &[String] {
        &self.subscriptions
    }

    /// Whether the adapter may take another message from the link.
    pub fn accepts_input(&self) -> bool {
        self.out.len() < OUT_HIGH_WATER
    }

    /// Moves the acknowledgements at the head of `out` (their events were accepted) to `mqtt`.
    fn settle(&mut self) {
        while let Some(Out::Ack { .. }) = self.out.front() {
            if let Some(Out::Ack { publish, epoch }) = self.out.pop_front() {
                if epoch == self.epoch && matches!(self.link, LinkState::Up { .. }) {
                    self.mqtt.push_back(MqttRequest::Ack(publish));
                }
            }
        }
    }

    /// Whether an event for the core is ready.
    pub fn has_event(&mut self) -> bool {
        self.settle();
        matches!(self.out.front(), Some(Out::Event(_)))
    }

    /// The next event for the core (call when a send permit is at hand).
    pub fn pop_event(&mut self) -> Option<AdapterEvent> {
        self.settle();
        match self.out.pop_front() {
            Some(Out::Event(e)) => {
                self.settle();
                Some(e)
            }
            Some(other) => {
                self.out.push_front(other);
                None
            }
            None => None,
        }
    }

    pub fn on_link(&mut self, link: Link, now: Instant) {
        match link {
            Link::Up { session_present } => self.on_up(session_present, now),
            Link::Down { reason } => self.on_down(reason),
            Link::Publish(p) => self.on_publish(p, now),
            Link::PubAck(pkid) => self.on_puback(pkid),
            Link::SubAck(ack) => self.on_suback(ack),
            Link::Published(pkid) => {
                if self.inflight.contains_key(&pkid) {
                    return; // a retransmission
                }
                match self.awaiting_pkid.pop_front() {
                    Some(w) => {
                        self.inflight.insert(pkid, w);
                    }
                    None => {
                        debug!(adapter = %self.adapter, pkid, "Publish of a command already answered")
                    }
                }
            }
            Link::Subscribed(pkid) => {
                if let Some(batch) = self.sub_awaiting_pkid.pop_front() {
                    self.sub_inflight.insert(pkid, batch);
                }
            }
        }
    }

    fn on_up(&mut self, session_present: bool, now: Instant) {
        self.epoch += 1;
        self.link = LinkState::Up { since: now };
        if !session_present || !self.subscribed {
            self.subscribe_all();
        } else {
            debug!(adapter = %self.adapter, "The broker kept the session and its subscriptions");
        }
        for d in 0..self.devices.len() {
            self.state[d].stale = false;
            self.update_status(d);
        }
        self.discovery_link();
    }

    fn subscribe_all(&mut self) {
        self.subscribed = false;
        self.sub_awaiting_pkid.clear();
        self.sub_inflight.clear();
        self.mqtt
            .retain(|r| !matches!(r, MqttRequest::Subscribe(_)));
        for s in &mut self.state {
            s.refused = None;
        }
        for batch in self.subscriptions.chunks(SUBSCRIBE_BATCH) {
            self.mqtt.push_back(MqttRequest::Subscribe(batch.to_vec()));
            self.sub_awaiting_pkid.push_back(batch.to_vec());
        }
        if self.subscriptions.is_empty() {
            self.subscribed = true;
        }
        debug!(adapter = %self.adapter, filters = self.subscriptions.len(), "Subscribing");
    }

    fn on_down(&mut self, reason: String) {
        let was_up = matches!(self.link, LinkState::Up { .. });
        self.link = LinkState::Down {
            reason: format!("MQTT broker {} unreachable: {reason}", self.broker),
        };
        // The poller dropped our queued publishes and subscribes; what the core was promised
        // cannot be confirmed any more.
        let lost = if was_up {
            "the connection to the MQTT broker was lost before it confirmed the command \
             (it may or may not have been delivered)"
        } else {
            "the MQTT broker is not connected"
        };
        self.fail_writes(&RequestError::Unreachable(lost.into()));
        self.mqtt.clear();
        // Subscriptions still unacknowledged leave `subscribed` false: the next connection
        // subscribes again even if the broker kept the session.
        self.sub_awaiting_pkid.clear();
        self.sub_inflight.clear();
        for d in 0..self.devices.len() {
            self.update_status(d);
        }
        self.discovery_link();
    }

    /// Answers every pending write with `err`.
    fn fail_writes(&mut self, err: &RequestError) {
        for (_, w) in self.writes.drain() {
            // The core may have stopped waiting; nothing to do then.
            let _ = w.reply.send(Err(err.clone()));
        }
        self.awaiting_pkid.clear();
        self.inflight.clear();
    }

    /// The adapter stops: pending writes are answered.
    pub fn close(&mut self) {
        self.fail_writes(&RequestError::Closed);
    }

    /// The client could not be set up at all: every device is unreachable for `reason`.
    pub fn setup_failed(&mut self, reason: String) {
        self.link = LinkState::Down { reason };
        for d in 0..self.devices.len() {
            self.update_status(d);
        }
        self.discovery_link();
    }

    fn on_publish(&mut self, p: Publish, now: Instant) {
        MqttStats::inc(&self.stats.messages);
        let mut used = false;
        if let Some(d) = &mut self.discovery {
            let mut out = discovery::Output::default();
            used = d.on_message(&p.topic, &p.payload, self.max_payload, now, &mut out);
            self.absorb(out);
        }
        let hits = self.routes.lookup(&p.topic);
        if hits.is_empty() && !used {
            MqttStats::inc(&self.stats.unrouted);
            debug!(adapter = %self.adapter, topic = %p.topic, "Message on a topic no device uses");
        }
        let mut touched: Vec<usize> = Vec::new();
        for r in hits {
            let route = &self.routes.list[r];
            let d = route.device;
            let mut problems = Vec::new();
            match &route.kind {
                RouteKind::Data(fields) => {
                    let decoded =
                        payload::decode(&self.devices[d], fields, &p.payload, self.max_payload);
                    let dev = &self.devices[d];
                    let st = &mut self.state[d];
                    st.last_data = Some(now);
                    st.stale = false;
                    let timestamp = Utc::now();
                    let mut readings = Vec::with_capacity(decoded.values.len());
                    for (fi, value) in decoded.values {
                        let field = &dev.fields[fi];
                        trace!(adapter = %self.adapter, device = %dev.id, field = %field.spec.name, value = %value, "Reading");
                        st.last[fi] = Some(value.clone());
                        MqttStats::inc(&self.stats.readings);
                        readings.push(Reading {
                            device: dev.id.clone(),
                            field: field.spec.name.clone(),
                            value,
                            timestamp,
                            quality: Quality::Good,
                        });
                    }
                    if !readings.is_empty() {
                        self.out
                            .push_back(Out::Event(AdapterEvent::Readings(readings)));
                    }
                    problems = decoded.problems;
                }
                RouteKind::Availability => {
                    let avail = self.devices[d].config.availability.as_ref();
                    match avail.map(|a| payload::availability(&p.payload, a)) {
                        Some(Ok(online)) => {
                            debug!(adapter = %self.adapter, device = %self.devices[d].id, online, "Availability");
                            self.state[d].avail = Some(online);
                        }
                        Some(Err(problem)) => problems.push(problem),
                        // Availability routes exist only for devices that have a topic for it.
                        None => {}
                    }
                }
            }
            if !problems.is_empty() {
                self.bad_input(d, &p.topic, &problems, now);
            }
            if !touched.contains(&d) {
                touched.push(d);
            }
        }
        for d in touched {
            self.update_status(d);
        }
        self.out.push_back(Out::Ack {
            publish: p,
            epoch: self.epoch,
        });
    }

    /// Logs (at most once a minute per device at WARN) and counts a message's problems.
    fn bad_input(&mut self, d: usize, topic: &str, problems: &[Problem], now: Instant) {
        let total = MqttStats::inc(&self.stats.bad_payloads);
        let id = &self.devices[d].id;
        let first = &problems[0];
        let more = problems.len() - 1;
        match self.state[d].warn.allow(now) {
            Some(suppressed) => warn!(
                adapter = %self.adapter, device = %id, topic = %topic, error = %first,
                more_problems = more, suppressed, bad_payloads = total,
                "Bad MQTT payload; the fields keep their last good values"
            ),
            None => debug!(
                adapter = %self.adapter, device = %id, topic = %topic, error = %first,
                more_problems = more, bad_payloads = total, "Bad MQTT payload"
            ),
        }
    }

    fn on_puback(&mut self, pkid: u16) {
        let Some(w) = self.inflight.remove(&pkid) else {
            return;
        };
        MqttStats::inc(&self.stats.commands);
        let done = match self.writes.get_mut(&w) {
            Some(pending) => {
                pending.outstanding = pending.outstanding.saturating_sub(1);
                pending.outstanding == 0
            }
            None => false,
        };
        if done {
            if let Some(pending) = self.writes.remove(&w) {
                let _ = pending.reply.send(Ok(pending.readings));
            }
        }
    }

    fn on_suback(&mut self, ack: SubAck) {
        let Some(filters) = self.sub_inflight.remove(&ack.pkid) else {
            return;
        };
        for (filter, code) in filters.iter().zip(&ack.return_codes) {
            if *code == SubscribeReasonCode::Failure {
                warn!(adapter = %self.adapter, topic = %filter,
                    "The MQTT broker refused the subscription (check its ACL)");
                for (d, dev) in self.devices.iter().enumerate() {
                    let needs = dev
                        .fields
                        .iter()
                        .filter_map(|f| f.config.topic.as_ref().or(dev.config.topic.as_ref()))
                        .chain(dev.config.availability.as_ref().map(|a| &a.topic))
                        .any(|b| topic::covers(filter, &b.subscribe));
                    if needs {
                        self.state[d].refused = Some(filter.clone());
                    }
                }
            }
        }
        if self.sub_inflight.is_empty() && self.sub_awaiting_pkid.is_empty() {
            self.subscribed = true;
            debug!(adapter = %self.adapter, "Subscriptions acknowledged");
        }
        for d in 0..self.devices.len() {
            self.update_status(d);
        }
        self.discovery_link();
    }

    /// What presence should say about device `d` now; `None` while nothing is known.
    fn status(&self, d: usize) -> Option<Status> {
        let st = &self.state[d];
        let dev = &self.devices[d];
        match &self.link {
            LinkState::Starting => return None,
            LinkState::Down { reason } => return Some(Status::Offline(reason.clone())),
            // Not listening yet: what was said before stands until the broker confirms.
            LinkState::Up { .. } if !self.subscribed => return None,
            LinkState::Up { .. } => {}
        }
        if let Some(filter) = &st.refused {
            return Some(Status::Offline(format!(
                "the MQTT broker refused the subscription to {filter}"
            )));
        }
        if let Some(a) = &dev.config.availability {
            if st.avail == Some(false) {
                return Some(Status::Offline(format!(
                    "{} says {}",
                    a.topic.filter, a.offline
                )));
            }
        }
        if st.stale {
            let secs = dev.config.stale_after.unwrap_or_default();
            return Some(Status::Offline(format!("no data for {}", seconds(secs))));
        }
        if let Some(a) = &dev.config.availability {
            if st.avail.is_none() && st.last_data.is_none() {
                // Neither its availability topic nor any data has spoken yet. At start-up that
                // is the core's "not connected yet"; after an outage, the old reason is replaced.
                return st
                    .announced
                    .as_ref()
                    .map(|_| Status::Offline(format!("no word yet on {}", a.topic.filter)));
            }
        }
        Some(Status::Online)
    }

    fn update_status(&mut self, d: usize) {
        let Some(now) = self.status(d) else { return };
        if self.state[d].announced.as_ref() == Some(&now) {
            return;
        }
        let device = self.devices[d].id.clone();
        let event = match &now {
            Status::Online => AdapterEvent::Online { device },
            Status::Offline(reason) => AdapterEvent::Offline {
                device,
                reason: reason.clone(),
            },
        };
        self.state[d].announced = Some(now);
        self.out.push_back(Out::Event(event));
    }

    /// When the next device may go stale.
    pub fn next_deadline(&self) -> Option<Instant> {
        let discovery = self.discovery.as_ref().and_then(Discovery::next_deadline);
        let LinkState::Up { since } = self.link else {
            return discovery;
        };
        let stale = self
            .devices
            .iter()
            .zip(&self.state)
            .filter(|(_, st)| !st.stale)
            .filter_map(|(dev, st)| {
                let after = dev.config.stale_after?;
                let base = st.last_data.map_or(since, |t| t.max(since));
                Some(base + after)
            })
            .min();
        match (stale, discovery) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Marks devices stale whose `stale_after` has passed.
    pub fn on_tick(&mut self, now: Instant) {
        if let Some(d) = &mut self.discovery {
            let mut out = discovery::Output::default();
            d.on_tick(now, &mut out);
            self.absorb(out);
        }
        let LinkState::Up { since } = self.link else {
            return;
        };
        for d in 0..self.devices.len() {
            let Some(after) = self.devices[d].config.stale_after else {
                continue;
            };
            let st = &mut self.state[d];
            let base = st.last_data.map_or(since, |t| t.max(since));
            if !st.stale && now >= base + after {
                st.stale = true;
                info!(adapter = %self.adapter, device = %self.devices[d].id, "No MQTT data for {}", seconds(after));
                self.update_status(d);
            }
        }
    }

    /// Why device `d` cannot take a command or answer a read now, if it cannot.
    fn unreachable(&self, d: usize) -> Option<String> {
        match self.status(d) {
            Some(Status::Offline(reason)) => Some(reason),
            Some(Status::Online) => None,
            None => match &self.link {
                LinkState::Up { .. } => None,
                _ => Some("not connected to the MQTT broker yet".into()),
            },
        }
    }

    pub fn on_request(&mut self, req: Request) {
        let Request {
            device,
            kind,
            reply,
        } = req;
        let Some(&d) = self.by_id.get(&device) else {
            match (&mut self.discovery, kind) {
                (Some(disc), RequestKind::Read { fields }) if disc.has(&device) => {
                    let _ = reply.send(disc.read(&device, &fields));
                }
                (Some(disc), RequestKind::Write { values }) if disc.has(&device) => {
                    match disc.write(&device, values) {
                        Ok((commands, readings)) => {
                            self.publish_write(&device, commands, readings, reply)
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
                _ => {
                    let _ = reply.send(Err(RequestError::Refused(format!(
                        "no device {device} on this adapter"
                    ))));
                }
            }
            return;
        };
        match kind {
            RequestKind::Read { fields } => {
                let _ = reply.send(self.read(d, &fields));
            }
            RequestKind::Write { values } => self.write(d, values, reply),
        }
    }

    fn field_index(&self, d: usize, name: &str) -> Result<usize, RequestError> {
        self.devices[d]
            .fields
            .iter()
            .position(|f| &*f.spec.name == name)
            .ok_or_else(|| RequestError::UnknownField(name.to_owned()))
    }

    /// The last good values (MQTT devices cannot be polled).
    fn read(&self, d: usize, fields: &[Arc<str>]) -> Result<Vec<Reading>, RequestError> {
        let wanted: Vec<usize> = if fields.is_empty() {
            (0..self.devices[d].fields.len()).collect()
        } else {
            fields
                .iter()
                .map(|n| self.field_index(d, n))
                .collect::<Result<_, _>>()?
        };
        if let Some(reason) = self.unreachable(d) {
            return Err(RequestError::Unreachable(reason));
        }
        let dev = &self.devices[d];
        Ok(wanted
            .into_iter()
            .filter_map(|i| {
                let v = self.state[d].last[i].clone()?;
                Some(Reading::now(
                    dev.id.clone(),
                    dev.fields[i].spec.name.clone(),
                    v,
                ))
            })
            .collect())
    }

    fn write(
        &mut self,
        d: usize,
        values: Vec<(Arc<str>, Value)>,
        reply: oneshot::Sender<Result<Vec<Reading>, RequestError>>,
    ) {
        // Everything is checked before anything is sent; the last value for a field wins.
        let mut checked: Vec<(usize, Value)> = Vec::with_capacity(values.len());
        for (name, value) in values {
            let i = match self.field_index(d, &name) {
                Ok(i) => i,
                Err(e) => {
                    let _ = reply.send(Err(e));
                    return;
                }
            };
            let spec = &self.devices[d].fields[i].spec;
            if !spec.writable {
                let _ = reply.send(Err(RequestError::NotWritable(name.to_string())));
                return;
            }
            let limits = &self.devices[d].fields[i].config.limits;
            let checked_value = value
                .coerce(spec.kind)
                .map_err(|e| e.to_string())
                .and_then(|v| limits.check(v));
            let value = match checked_value {
                Ok(v) => v,
                Err(reason) => {
                    let _ = reply.send(Err(RequestError::OutOfRange {
                        field: name.to_string(),
                        reason,
                    }));
                    return;
                }
            };
            match checked.iter_mut().find(|(j, _)| *j == i) {
                Some(slot) => slot.1 = value,
                None => checked.push((i, value)),
            }
        }
        if let Some(reason) = self.unreachable(d) {
            let _ = reply.send(Err(RequestError::Unreachable(reason)));
            return;
        }
        let dev = &self.devices[d];
        let commands = match payload::encode(dev, &checked) {
            Ok(c) => c,
            Err(e) => {
                let _ = reply.send(Err(RequestError::Refused(e.to_string())));
                return;
            }
        };
        let readings: Vec<Reading> = checked
            .iter()
            .map(|(i, v)| Reading::now(dev.id.clone(), dev.fields[*i].spec.name.clone(), v.clone()))
            .collect();
        for (i, v) in &checked {
            self.state[d].last[*i] = Some(v.clone());
        }
        let id = self.devices[d].id.clone();
        self.publish_write(&id, commands, readings, reply);
    }

    /// Publishes a write's command messages; `reply` gets `readings` once the broker has
    /// acknowledged all of them (at once when there are none).
    fn publish_write(
        &mut self,
        device: &DeviceId,
        commands: Vec<payload::Command>,
        readings: Vec<Reading>,
        reply: oneshot::Sender<Result<Vec<Reading>, RequestError>>,
    ) {
        if let Some(big) = commands.iter().find(|c| c.payload.len() > self.max_payload) {
            let _ = reply.send(Err(RequestError::Refused(format!(
                "the command payload ({} bytes) exceeds the limit of {} bytes",
                big.payload.len(),
                self.max_payload
            ))));
            return;
        }
        if commands.is_empty() {
            let _ = reply.send(Ok(readings));
            return;
        }
        let w = self.next_write;
        self.next_write += 1;
        debug!(adapter = %self.adapter, device = %device, messages = commands.len(), "Publishing a command");
        for c in &commands {
            self.awaiting_pkid.push_back(w);
            self.mqtt.push_back(MqttRequest::Publish {
                topic: c.topic.clone(),
                payload: c.payload.clone(),
            });
        }
        self.writes.insert(
            w,
            PendingWrite {
                reply,
                readings,
                outstanding: commands.len(),
            },
        );
    }
}

/// `30 s`, or `500 ms` below a second.
fn seconds(d: Duration) -> String {
    if d >= Duration::from_secs(1) && d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else if d >= Duration::from_secs(1) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        Availability, BrokerUrl, DeviceConfig, FieldConfig, MqttField, DEFAULT_OFFLINE,
        DEFAULT_ONLINE,
    };
    use crate::rate_limit::WARN_EVERY;
    use gateway_api::{FieldSpec, FieldType};
    use rumqttc::QoS;

    fn field(name: &str, kind: FieldType, json: Option<&str>, writable: bool) -> MqttField {
        MqttField {
            spec: FieldSpec {
                name: name.into(),
                unit: "".into(),
                kind,
                writable,
            },
            config: FieldConfig {
                json: json.map(str::to_owned),
                ..FieldConfig::default()
            },
        }
    }

    fn binding(t: &str) -> Option<TopicBinding> {
        Some(TopicBinding::new(t, "x", false).unwrap())
    }

    fn devices() -> Vec<MqttDevice> {
        let fleet = |id: &str| MqttDevice {
            id: DeviceId::new(id).unwrap(),
            config: DeviceConfig {
                topic: Some(TopicBinding::new("tele/{id}/SENSOR", id, true).unwrap()),
                availability: Some(Availability {
                    topic: TopicBinding::new("tele/{id}/LWT", id, true).unwrap(),
                    online: "Online".into(),
                    offline: "Offline".into(),
                }),
                ..DeviceConfig::default()
            },
            fields: vec![field(
                "power",
                FieldType::Numeric,
                Some("/ENERGY/Power"),
                false,
            )],
        };
        vec![
            MqttDevice {
                id: DeviceId::new("boiler").unwrap(),
                config: DeviceConfig {
                    topic: binding("plant/boiler/state"),
                    availability: Some(Availability {
                        topic: TopicBinding::new("plant/boiler/status", "x", false).unwrap(),
                        online: DEFAULT_ONLINE.into(),
                        offline: DEFAULT_OFFLINE.into(),
                    }),
                    command_topic: Some("plant/boiler/set".into()),
                    ..DeviceConfig::default()
                },
                fields: vec![
                    field("temperature", FieldType::Numeric, Some("/temp"), false),
                    field("setpoint", FieldType::Numeric, Some("/setpoint"), true),
                    field("pump", FieldType::Boolean, Some("/pump"), true),
                ],
            },
            MqttDevice {
                id: DeviceId::new("outdoor").unwrap(),
                config: DeviceConfig {
                    topic: binding("weather/outdoor/temp"),
                    stale_after: Some(Duration::from_secs(30)),
                    ..DeviceConfig::default()
                },
                fields: vec![field("temp", FieldType::Numeric, None, false)],
            },
            fleet("kitchen"),
            fleet("hall"),
        ]
    }

    fn bridge() -> Bridge {
        let broker = BrokerConfig::new(BrokerUrl::parse("mqtt://127.0.0.1:1883").unwrap());
        Bridge::new("broker".into(), &broker, devices(), Arc::default())
    }

    fn publish(topic: &str, payload: &str, pkid: u16) -> Publish {
        let mut p = Publish::new(topic, QoS::AtLeastOnce, payload);
        p.pkid = pkid;
        p
    }

    /// Connects and has the broker acknowledge every subscription.
    fn connect(b: &mut Bridge, t: Instant) {
        b.on_link(
            Link::Up {
                session_present: false,
            },
            t,
        );
        b.on_link(Link::Subscribed(100), t);
        let n = b.subscriptions().len();
        let codes = vec![SubscribeReasonCode::Success(QoS::AtLeastOnce); n];
        b.on_link(Link::SubAck(SubAck::new(100, codes)), t);
        b.mqtt.retain(|r| !matches!(r, MqttRequest::Subscribe(_)));
    }

    /// Everything the bridge has for the core, as text.
    fn drain(b: &mut Bridge) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(e) = b.pop_event() {
            match e {
                AdapterEvent::Readings(rs) => out.extend(
                    rs.iter()
                        .map(|r| format!("{} {}={}", r.device, r.field, r.value)),
                ),
                AdapterEvent::Online { device } => out.push(format!("{device} online")),
                AdapterEvent::Offline { device, reason } => {
                    out.push(format!("{device} offline: {reason}"))
                }
                AdapterEvent::DeviceFound(d) => out.push(format!("{} found", d.id)),
                AdapterEvent::DeviceGone { device } => out.push(format!("{device} gone")),
            }
        }
        out
    }

    fn acks(b: &mut Bridge) -> Vec<u16> {
        let mut out = Vec::new();
        b.mqtt.retain(|r| match r {
            MqttRequest::Ack(p) => {
                out.push(p.pkid);
                false
            }
            _ => true,
        });
        out
    }

    #[test]
    fn subscriptions_cover_every_device_once() {
        let b = bridge();
        assert_eq!(
            b.subscriptions(),
            [
                "plant/boiler/state",
                "plant/boiler/status",
                "weather/outdoor/temp",
                "tele/+/SENSOR",
                "tele/+/LWT"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn readings_availability_and_acks_in_order() {
        let mut b = bridge();
        let t0 = Instant::now();
        assert!(
            drain(&mut b).is_empty(),
            "nothing is said before the first connection"
        );
        b.on_link(
            Link::Up {
                session_present: false,
            },
            t0,
        );
        assert_eq!(b.mqtt.len(), 1, "one SUBSCRIBE");
        assert!(matches!(&b.mqtt[0], MqttRequest::Subscribe(f) if f.len() == 5));
        assert!(
            drain(&mut b).is_empty(),
            "nothing is online before the broker confirmed the subscriptions"
        );
        b.mqtt.clear();
        b.on_link(Link::Subscribed(1), t0);
        let codes = vec![SubscribeReasonCode::Success(QoS::AtLeastOnce); 5];
        b.on_link(Link::SubAck(SubAck::new(1, codes)), t0);
        // Devices without availability topic are online then; the others wait for a word.
        assert_eq!(drain(&mut b), ["outdoor online"]);

        b.on_link(
            Link::Publish(publish(
                "plant/boiler/state",
                r#"{"temp": 61.5, "setpoint": 60, "pump": true}"#,
                7,
            )),
            t0,
        );
        // Not acknowledged before the core took the events.
        assert!(acks(&mut b).is_empty());
        assert_eq!(
            drain(&mut b),
            [
                "boiler temperature=61.5",
                "boiler setpoint=60",
                "boiler pump=true",
                "boiler online"
            ]
        );
        assert_eq!(acks(&mut b), [7]);

        b.on_link(
            Link::Publish(publish("plant/boiler/status", "offline", 8)),
            t0,
        );
        assert_eq!(
            drain(&mut b),
            ["boiler offline: plant/boiler/status says offline"]
        );
        b.on_link(
            Link::Publish(publish("plant/boiler/status", r#"{"state":"online"}"#, 9)),
            t0,
        );
        assert_eq!(drain(&mut b), ["boiler online"]);
        assert_eq!(acks(&mut b), [8, 9]);

        // The fleet: one subscription, routed by the member's own topic.
        b.on_link(
            Link::Publish(publish(
                "tele/hall/SENSOR",
                r#"{"ENERGY":{"Power":12}}"#,
                10,
            )),
            t0,
        );
        b.on_link(
            Link::Publish(publish("tele/kitchen/LWT", "Offline", 11)),
            t0,
        );
        b.on_link(
            Link::Publish(publish(
                "tele/garage/SENSOR",
                r#"{"ENERGY":{"Power":1}}"#,
                12,
            )),
            t0,
        );
        assert_eq!(
            drain(&mut b),
            [
                "hall power=12",
                "hall online",
                "kitchen offline: tele/kitchen/LWT says Offline"
            ]
        );
        assert_eq!(
            acks(&mut b),
            [10, 11, 12],
            "unrouted messages are acknowledged too"
        );
        assert_eq!(MqttStats::get(&b.stats.unrouted), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn bad_payloads_are_counted_and_change_nothing_else() {
        let mut b = bridge();
        let t0 = Instant::now();
        connect(&mut b, t0);
        drain(&mut b);
        b.on_link(Link::Publish(publish("plant/boiler/state", "{oops", 1)), t0);
        b.on_link(
            Link::Publish(publish(
                "plant/boiler/state",
                r#"{"temp": "hot", "setpoint": 50, "pump": 0}"#,
                2,
            )),
            t0,
        );
        b.on_link(
            Link::Publish(publish("weather/outdoor/temp", "12.5", 3)),
            t0,
        );
        b.on_link(
            Link::Publish(publish("plant/boiler/status", "dunno", 4)),
            t0,
        );
        assert_eq!(
            drain(&mut b),
            [
                "boiler online",
                "boiler setpoint=50",
                "boiler pump=false",
                "outdoor temp=12.5"
            ]
        );
        assert_eq!(MqttStats::get(&b.stats.bad_payloads), 3);
        assert_eq!(acks(&mut b), [1, 2, 3, 4]);
        // The rate limit: one warning a minute per device.
        let st = &mut b.state[0].warn;
        assert_eq!(st.suppressed, 2);
        assert_eq!(st.allow(t0 + WARN_EVERY), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn stale_devices_go_offline_and_come_back_with_data() {
        let mut b = bridge();
        let t0 = Instant::now();
        connect(&mut b, t0);
        drain(&mut b);
        assert_eq!(b.next_deadline(), Some(t0 + Duration::from_secs(30)));
        b.on_link(
            Link::Publish(publish("weather/outdoor/temp", "3", 1)),
            t0 + Duration::from_secs(20),
        );
        assert_eq!(b.next_deadline(), Some(t0 + Duration::from_secs(50)));
        b.on_tick(t0 + Duration::from_secs(49));
        assert_eq!(drain(&mut b), ["outdoor temp=3"]);
        b.on_tick(t0 + Duration::from_secs(50));
        assert_eq!(drain(&mut b), ["outdoor offline: no data for 30 s"]);
        assert_eq!(b.next_deadline(), None);
        b.on_link(
            Link::Publish(publish("weather/outdoor/temp", "4", 2)),
            t0 + Duration::from_secs(70),
        );
        assert_eq!(drain(&mut b), ["outdoor temp=4", "outdoor online"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_broker_makes_every_device_unavailable_with_the_reason() {
        let mut b = bridge();
        let t0 = Instant::now();
        b.on_link(
            Link::Down {
                reason: "connection refused".into(),
            },
            t0,
        );
        let down = drain(&mut b);
        assert_eq!(down.len(), 4);
        assert!(
            down.iter().all(|l| l
                .ends_with("offline: MQTT broker 127.0.0.1:1883 unreachable: connection refused")),
            "{down:?}"
        );
        b.on_link(
            Link::Up {
                session_present: true,
            },
            t0,
        );
        assert!(
            matches!(b.mqtt.front(), Some(MqttRequest::Subscribe(_))),
            "first connection of the run subscribes even with a session"
        );
        assert!(drain(&mut b).is_empty());
        connect(&mut b, t0);
        assert_eq!(
            drain(&mut b),
            [
                "boiler offline: no word yet on plant/boiler/status",
                "outdoor online",
                "kitchen offline: no word yet on tele/kitchen/LWT",
                "hall offline: no word yet on tele/hall/LWT"
            ]
        );
        // Messages taken before a disconnect are not acknowledged on the next connection.
        b.mqtt.clear();
        b.on_link(Link::Publish(publish("weather/outdoor/temp", "1", 5)), t0);
        b.on_link(
            Link::Down {
                reason: "connection reset".into(),
            },
            t0,
        );
        b.on_link(
            Link::Up {
                session_present: true,
            },
            t0,
        );
        drain(&mut b);
        assert!(acks(&mut b).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn resubscribes_only_when_the_session_is_lost_or_incomplete() {
        let mut b = bridge();
        let t0 = Instant::now();
        b.on_link(
            Link::Up {
                session_present: false,
            },
            t0,
        );
        b.mqtt.clear();
        b.on_link(Link::Subscribed(1), t0);
        let codes = vec![SubscribeReasonCode::Success(QoS::AtLeastOnce); 5];
        b.on_link(Link::SubAck(SubAck::new(1, codes)), t0);
        b.on_link(Link::Down { reason: "x".into() }, t0);
        b.on_link(
            Link::Up {
                session_present: true,
            },
            t0,
        );
        assert!(b.mqtt.is_empty(), "the broker kept the subscriptions");
        b.on_link(Link::Down { reason: "x".into() }, t0);
        b.on_link(
            Link::Up {
                session_present: false,
            },
            t0,
        );
        assert!(matches!(b.mqtt.front(), Some(MqttRequest::Subscribe(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_subscription_makes_its_devices_unavailable() {
        let mut b = bridge();
        let t0 = Instant::now();
        b.on_link(
            Link::Up {
                session_present: false,
            },
            t0,
        );
        b.on_link(Link::Subscribed(3), t0);
        let mut codes = vec![SubscribeReasonCode::Success(QoS::AtLeastOnce); 5];
        codes[3] = SubscribeReasonCode::Failure;
        b.on_link(Link::SubAck(SubAck::new(3, codes)), t0);
        let events = drain(&mut b);
        assert!(
            events.contains(
                &"kitchen offline: the MQTT broker refused the subscription to tele/+/SENSOR"
                    .to_owned()
            ),
            "{events:?}"
        );
        assert!(
            events.contains(
                &"hall offline: the MQTT broker refused the subscription to tele/+/SENSOR"
                    .to_owned()
            ),
            "{events:?}"
        );
    }

    fn write(
        b: &mut Bridge,
        device: &str,
        values: &[(&str, Value)],
    ) -> oneshot::Receiver<Result<Vec<Reading>, RequestError>> {
        let (tx, rx) = oneshot::channel();
        b.on_request(Request {
            device: DeviceId::new(device).unwrap(),
            kind: RequestKind::Write {
                values: values
                    .iter()
                    .map(|(n, v)| (Arc::from(*n), v.clone()))
                    .collect(),
            },
            reply: tx,
        });
        rx
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_is_answered_once_the_broker_acknowledged_it() {
        let mut b = bridge();
        let t0 = Instant::now();
        let mut early = write(&mut b, "boiler", &[("setpoint", Value::Float(1.0))]);
        assert_eq!(
            early.try_recv().unwrap(),
            Err(RequestError::Unreachable(
                "not connected to the MQTT broker yet".into()
            ))
        );
        connect(&mut b, t0);
        b.on_link(
            Link::Publish(publish("plant/boiler/status", "online", 1)),
            t0,
        );
        drain(&mut b);
        b.mqtt.clear();

        let mut rx = write(
            &mut b,
            "boiler",
            &[
                ("setpoint", Value::Text("55.5".into())),
                ("pump", Value::Bool(true)),
            ],
        );
        assert_eq!(
            b.mqtt.pop_front(),
            Some(MqttRequest::Publish {
                topic: "plant/boiler/set".into(),
                payload: br#"{"pump":true,"setpoint":55.5}"#.to_vec()
            })
        );
        assert!(
            rx.try_recv().is_err(),
            "no answer before the broker's PUBACK"
        );
        b.on_link(Link::Published(42), t0);
        b.on_link(Link::Published(42), t0); // a retransmission changes nothing
        b.on_link(Link::PubAck(42), t0);
        let readings = rx.try_recv().unwrap().unwrap();
        let shown: Vec<String> = readings
            .iter()
            .map(|r| format!("{}={}", r.field, r.value))
            .collect();
        assert_eq!(shown, ["setpoint=55.5", "pump=true"]);

        // Refusals come before anything is sent.
        let mut rx = write(&mut b, "boiler", &[("temperature", Value::Float(1.0))]);
        assert_eq!(
            rx.try_recv().unwrap(),
            Err(RequestError::NotWritable("temperature".into()))
        );
        let mut rx = write(
            &mut b,
            "boiler",
            &[("setpoint", Value::Float(1.0)), ("nope", Value::Float(1.0))],
        );
        assert_eq!(
            rx.try_recv().unwrap(),
            Err(RequestError::UnknownField("nope".into()))
        );
        let mut rx = write(&mut b, "boiler", &[("pump", Value::Text("maybe".into()))]);
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(RequestError::OutOfRange { .. })
        ));
        assert!(b.mqtt.is_empty());

        // A connection lost before the PUBACK fails the write.
        let mut rx = write(&mut b, "boiler", &[("setpoint", Value::Float(2.0))]);
        b.on_link(Link::Published(43), t0);
        b.on_link(
            Link::Down {
                reason: "connection reset".into(),
            },
            t0,
        );
        assert!(
            matches!(rx.try_recv().unwrap(), Err(RequestError::Unreachable(r)) if r.contains("may or may not"))
        );
        // An offline device refuses commands with its reason.
        b.on_link(
            Link::Up {
                session_present: true,
            },
            t0,
        );
        b.on_link(
            Link::Publish(publish("plant/boiler/status", "offline", 2)),
            t0,
        );
        let mut rx = write(&mut b, "boiler", &[("setpoint", Value::Float(2.0))]);
        assert_eq!(
            rx.try_recv().unwrap(),
            Err(RequestError::Unreachable(
                "plant/boiler/status says offline".into()
            ))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reads_return_the_last_good_values() {
        let mut b = bridge();
        let t0 = Instant::now();
        connect(&mut b, t0);
        b.on_link(Link::Publish(publish("weather/outdoor/temp", "7.5", 1)), t0);
        let (tx, mut rx) = oneshot::channel();
        b.on_request(Request {
            device: DeviceId::new("outdoor").unwrap(),
            kind: RequestKind::Read { fields: vec![] },
            reply: tx,
        });
        let r = rx.try_recv().unwrap().unwrap();
        assert_eq!((r.len(), &r[0].value), (1, &Value::Float(7.5)));
        let (tx, mut rx) = oneshot::channel();
        b.on_request(Request {
            device: DeviceId::new("nosuch").unwrap(),
            kind: RequestKind::Read { fields: vec![] },
            reply: tx,
        });
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(RequestError::Refused(_))
        ));
    }

    /// Discovery through the bridge: announcements are acknowledged, the device is found once
    /// the burst settles, its state topic subscribed, its values read and its writes published;
    /// configured devices are unaffected and a configured id is never reported.
    #[tokio::test(start_paused = true)]
    async fn discovered_devices_live_next_to_configured_ones() {
        let mut broker = BrokerConfig::new(BrokerUrl::parse("mqtt://127.0.0.1:1883").unwrap());
        broker.discovery.homeassistant = true;
        let mut b = Bridge::new("broker".into(), &broker, devices(), Arc::default());
        assert!(b
            .subscriptions()
            .contains(&"homeassistant/+/+/config".to_owned()));
        let t0 = Instant::now();
        connect(&mut b, t0);
        drain(&mut b);
        b.mqtt.clear();
        let pump = r#"{"name":"Pump","stat_t":"garden/pump","cmd_t":"garden/pump/set","dev":{"ids":"p1","name":"Garden Pump"}}"#;
        b.on_link(
            Link::Publish(publish("homeassistant/switch/p1/pump/config", pump, 1)),
            t0,
        );
        // Named like a configured device: left to the configuration.
        let outdoor = r#"{"stat_t":"x/t","dev":{"ids":"o","name":"Outdoor"}}"#;
        b.on_link(
            Link::Publish(publish("homeassistant/sensor/o/t/config", outdoor, 2)),
            t0,
        );
        assert!(drain(&mut b).is_empty(), "nothing before the burst settles");
        assert_eq!(acks(&mut b), [1, 2]);
        assert_eq!(MqttStats::get(&b.stats.unrouted), 0);
        assert_eq!(b.next_deadline(), Some(t0 + discovery::QUIET));
        b.on_tick(t0 + discovery::QUIET);
        assert_eq!(drain(&mut b), ["garden-pump found", "garden-pump online"]);
        assert_eq!(
            b.mqtt.pop_front(),
            Some(MqttRequest::Subscribe(vec!["garden/pump".into()]))
        );
        b.on_link(Link::Subscribed(5), t0);
        b.on_link(
            Link::SubAck(SubAck::new(
                5,
                vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
            )),
            t0,
        );
        b.on_link(Link::Publish(publish("garden/pump", "ON", 3)), t0);
        b.on_link(Link::Publish(publish("weather/outdoor/temp", "9", 4)), t0);
        assert_eq!(drain(&mut b), ["garden-pump pump=true", "outdoor temp=9"]);
        acks(&mut b);

        let mut rx = write(&mut b, "garden-pump", &[("pump", Value::Bool(false))]);
        assert_eq!(
            b.mqtt.pop_front(),
            Some(MqttRequest::Publish {
                topic: "garden/pump/set".into(),
                payload: b"OFF".to_vec()
            })
        );
        b.on_link(Link::Published(9), t0);
        b.on_link(Link::PubAck(9), t0);
        let r = rx.try_recv().unwrap().unwrap();
        assert_eq!(r[0].value, Value::Bool(false));

        // Withdrawn: it says goodbye; a lost broker no longer concerns it.
        b.on_link(
            Link::Publish(publish("homeassistant/switch/p1/pump/config", "", 5)),
            t0,
        );
        b.on_tick(t0 + discovery::QUIET * 2);
        assert_eq!(drain(&mut b), ["garden-pump gone"]);
        let mut rx = write(&mut b, "garden-pump", &[("pump", Value::Bool(true))]);
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(RequestError::Refused(_))
        ));
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(seconds(Duration::from_secs(30)), "30 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(seconds(Duration::from_millis(500)), "500 ms");
    }
}
