//! The core task: owns device state and subscribers, turns adapter events into presence and
//! answers what arrives from XMPP.
//!
//! One task, no locks. It never waits on XMPP: outgoing stanzas go into its own queues
//! (replies first, then presence) and leave as the upstream channel has room. Presence is state,
//! not events: a queued presence is built from the current values when it is sent, so a slow
//! upstream coalesces updates instead of piling them up.
//!
//! `Core` (this file) holds the device table and the loop, and dispatches; its state is kept in
//! parts with one job each:
//! - `outbox`: what is owed upstream (replies, then presence) and the channel it leaves on;
//! - `store_batch`: readings on their way to the store;
//! - `presence`: who subscribed to each device, presence held back for `min_interval`, and which
//!   upstream links have been up before (plus the RFC 6121 subscription decision);
//! - `publish`: presence, push headlines and PubSub items on a change, and `PubSubNodes`, each
//!   device's node and the gateway's own IQs to the PubSub service;
//! - `room`: the `[publish] room`, and `RoomSeats`, each device's seat and the other occupants;
//! - `alerts`, `discovered`, `shedding`: alerts, discovered devices, per-sender budgets.
//!
//! The rest handle what arrives: `iq`, `readout`, `control`, `messages`, `receipts`, `chart`,
//! `task_iq` (IQs sent for spawned tasks), `reload` (a new configuration); `sessions` opens and
//! closes device sessions in client mode.

mod alerts;
mod chart;
mod control;
mod discovered;
pub use discovered::Restarted;
#[cfg(any(fuzzing, test))]
pub(crate) mod fuzzing;
mod iq;
mod messages;
mod outbox;
pub mod presence;
mod publish;
mod readout;
mod receipts;
mod reload;
mod room;
mod sessions;
mod shedding;
mod store_batch;
mod task_iq;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gateway_api::{AdapterEvent, Reading, Request};
use minidom::Element;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::presence::Type as PresenceType;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::access::Permission;
use crate::config::Config;
use crate::devices::{Applied, Devices};
use crate::metrics::Registry;
use crate::stats::{DeviceStats, Stats, Summary};
use crate::store::{Store, Subscription};
use crate::translator;
use crate::xmpp::client::SessionChange;
use crate::xmpp::rejected::{self, Reason};
use crate::xmpp::{stanzas, Inbound};

/// With this many stanzas waiting for upstream, adapter events wait: the wait reaches the buses
/// (a broker holds its queue, a poll comes later) instead of stanzas being dropped here.
const URGENT_HIGH_WATER: usize = 256;
/// How long a write may take from request to the device's confirmation.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Events for not-yet-known devices held for the next reload.
const MAX_EARLY_EVENTS: usize = 10_000;
/// Housekeeping ticks (seconds) between returning free heap memory to the system (cheap: a walk
/// of the allocator's free lists).
const TRIM_EVERY_TICKS: u64 = 5;
/// How often to look whether the store has caught up while adapter events wait for it.
const STORE_RECHECK: Duration = Duration::from_millis(10);
/// Adapter events taken in one turn of the loop (each is published on its own).
const EVENT_BURST: usize = 64;
/// At most one log line per kind of hostile or refused input this often (the rest are counted).
const HOSTILE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Results of work the core handed to other tasks (writes, history queries, scheduled readouts).
#[derive(Debug)]
enum Deferred {
    Send(Element),
    Readings(Vec<Reading>),
    /// A queued XEP-0323 readout whose `when` has come.
    StartReadout(Box<readout::Pending>),
    ReadoutFinished {
        requester: String,
        seqnr: i32,
    },
    /// Try joining the room again (it was locked, or refused us for a moment).
    JoinRoom(gateway_api::DeviceId),
    /// An IQ a spawned task wants sent; its answer goes to `reply`.
    TaskIq {
        id: String,
        iq: Element,
        reply: oneshot::Sender<task_iq::IqAnswer>,
    },
}

/// What the main loop (`run`, on a reload) asks of the core.
#[derive(Debug)]
pub enum CoreCommand {
    /// Take this configuration; `requests` are the adapters' request senders for it.
    Reload {
        config: Arc<Config>,
        requests: Vec<mpsc::Sender<Request>>,
        /// Adapters the reload (re)started: they report their discovered devices again.
        restarted: Restarted,
    },
}

/// What the core needs from the rest of the gateway.
pub struct CoreParts {
    pub config: Arc<Config>,
    pub store: Store,
    pub subscriptions: Vec<Subscription>,
    /// Adapter events; the adapters hold the senders.
    pub events: mpsc::Receiver<AdapterEvent>,
    /// From the upstream session.
    pub inbound: mpsc::Receiver<Inbound>,
    /// To the upstream session; dropping it tells the session to close the stream.
    pub outbound: mpsc::Sender<Element>,
    /// Per adapter (indexed like `config.adapters`): where reads and writes go.
    pub requests: Vec<mpsc::Sender<Request>>,
    pub stats: Arc<Stats>,
    /// Commands from the main loop (reload).
    pub commands: mpsc::Receiver<CoreCommand>,
    /// Every metrics source (the gateway's own, the adapters'): the gateway's status readout.
    pub metrics: Arc<Registry>,
    /// Fired once the first upstream attempt finished, either way (for systemd READY=1).
    pub first_link: oneshot::Sender<()>,
    pub summary: watch::Sender<Summary>,
    /// Bumped on every loop turn of the housekeeping tick; the watchdog reads it.
    pub heartbeat: watch::Sender<Instant>,
    /// Client mode: opens and closes device sessions as devices come and go while the
    /// gateway runs (a reload, discovery). `None` in component mode.
    pub sessions: Option<mpsc::UnboundedSender<SessionChange>>,
}

pub struct Core {
    config: Arc<Config>,
    devices: Devices,
    /// Who sees each device's presence, and the presence updates held back for `min_interval`.
    presence: presence::PresenceBook,
    store: Store,
    /// The component domain, or `<account>/gateway` in client mode: answers about the gateway itself.
    gateway_jid: Jid,
    /// Client mode: the server keeps rosters and fans presence out; devices broadcast.
    client_mode: bool,
    /// Client mode: where device sessions are opened and closed.
    sessions: Option<mpsc::UnboundedSender<SessionChange>>,
    link_up: bool,
    /// What is owed upstream (replies, then presence) and the channel it goes out on.
    outbox: outbox::Outbox,
    requests: Vec<mpsc::Sender<Request>>,
    /// Cloned into spawned tasks; the core drains the receiver.
    deferred_tx: mpsc::Sender<Deferred>,
    /// Queued readouts by (requester full JID, seqnr), for `cancel`.
    scheduled: HashMap<(String, i32), AbortHandle>,
    /// `[publish] pubsub`: each device's node, and the IQs the gateway sent there.
    pubsub: publish::PubSubNodes,
    /// `[publish] room`: each device's place in the room, and the other occupants.
    seats: room::RoomSeats,
    /// Events for devices not (yet) in the device table, replayed after the next reload.
    early_events: Vec<AdapterEvent>,
    stats: Arc<Stats>,
    /// Per device index: its counters (readings, online), shared with the metrics endpoint.
    device_stats: Vec<Arc<DeviceStats>>,
    metrics: Arc<Registry>,
    first_link: Option<oneshot::Sender<()>>,
    summary: watch::Sender<Summary>,
    heartbeat: watch::Sender<Instant>,
    /// Housekeeping ticks so far.
    ticks: u64,
    /// Readings not yet handed to the store, and when they must go.
    store_batch: store_batch::StoreBatch,
    /// Whether a stanza for a domain the gateway does not serve has been reported yet.
    misrouted_reported: bool,
    /// Alerts: the engine, users' alerts, messages waiting for the upstream.
    alert_book: alerts::AlertBook,
    /// IQs sent for spawned tasks, by id, until their answer arrives.
    task_iqs: HashMap<String, oneshot::Sender<task_iq::IqAnswer>>,
    /// Per-sender budgets in front of the stanza handlers.
    budgets: shedding::SenderBudgets,
    /// Log lines about strangers and floods: rate-limited, so that no sender can make the
    /// gateway log once per stanza it sends.
    shed_log: shedding::LogLimit,
    rejected_log: shedding::LogLimit,
    refused_log: shedding::LogLimit,
    /// The devices adapters discovered (see `discovered.rs`).
    discovery: discovered::Discovery,
}

impl Core {
    pub fn new(parts: CoreParts) -> Result<(Core, CoreInputs), String> {
        let devices = Devices::from_config(&parts.config)?;
        let (gateway_jid, client_mode) = match &parts.config.xmpp {
            crate::config::XmppConfig::Component(c) => {
                (Jid::new(&c.domain).map_err(|e| e.to_string()), false)
            }
            crate::config::XmppConfig::Client(c) => (crate::xmpp::client::gateway_jid(c), true),
        };
        let gateway_jid =
            gateway_jid.map_err(|e| format!("the gateway's own JID is not valid: {e}"))?;
        let presence = presence::PresenceBook::load(parts.subscriptions, &devices, &parts.store);
        let (deferred_tx, deferred_rx) = mpsc::channel(1024);
        let n_devices = devices.len();
        let device_stats = parts.stats.set_devices(&parts.config);
        let discovery = discovered::Discovery::new(&parts.metrics);
        let core = Core {
            config: parts.config,
            devices,
            presence,
            store: parts.store,
            gateway_jid,
            client_mode,
            sessions: parts.sessions,
            link_up: false,
            outbox: outbox::Outbox::new(parts.outbound),
            requests: parts.requests,
            deferred_tx,
            scheduled: HashMap::new(),
            pubsub: publish::PubSubNodes::new(n_devices),
            seats: room::RoomSeats::new(n_devices),
            early_events: Vec::new(),
            stats: parts.stats,
            device_stats,
            metrics: parts.metrics,
            first_link: Some(parts.first_link),
            summary: parts.summary,
            heartbeat: parts.heartbeat,
            ticks: 0,
            store_batch: store_batch::StoreBatch::default(),
            misrouted_reported: false,
            alert_book: alerts::AlertBook::default(),
            task_iqs: HashMap::new(),
            budgets: shedding::SenderBudgets::default(),
            shed_log: shedding::LogLimit::new(HOSTILE_LOG_EVERY),
            rejected_log: shedding::LogLimit::new(HOSTILE_LOG_EVERY),
            refused_log: shedding::LogLimit::new(HOSTILE_LOG_EVERY),
            discovery,
        };
        Ok((
            core,
            CoreInputs {
                commands: parts.commands,
                events: parts.events,
                inbound: parts.inbound,
                deferred: deferred_rx,
            },
        ))
    }

    /// Runs until `shutdown` fires, then tells every subscriber that every device is gone.
    pub async fn run(mut self, mut inputs: CoreInputs, shutdown: CancellationToken) {
        self.load_alerts().await;
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        let store_timer = tokio::time::sleep(store_batch::STORE_DELAY);
        tokio::pin!(store_timer);
        let mut store_timer_at = None;
        loop {
            if self.store_batch.due() != store_timer_at {
                store_timer_at = self.store_batch.due();
                if let Some(at) = store_timer_at {
                    store_timer.as_mut().reset(at);
                }
            }
            let has_output = self.link_up && !self.outbox.is_empty();
            let store_room = self.store.has_room();
            let take_events = self.outbox.replies() < URGENT_HIGH_WATER && store_room;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(CoreCommand::Reload { config, requests, restarted }) = inputs.commands.recv() => self.reload(config, requests, &restarted),
                Some(d) = inputs.deferred.recv() => self.on_deferred(d),
                Some(inb) = inputs.inbound.recv() => self.on_inbound(inb),
                Some(ev) = inputs.events.recv(), if take_events => {
                    self.on_adapter_event(ev);
                    // Take what else is already queued without another turn of the loop.
                    for _ in 0..EVENT_BURST {
                        if self.outbox.replies() >= URGENT_HIGH_WATER || !self.store.has_room() {
                            break;
                        }
                        match inputs.events.try_recv() {
                            Ok(ev) => self.on_adapter_event(ev),
                            Err(_) => break,
                        }
                    }
                }
                Some(idx) = self.presence.next_due(), if self.presence.has_held() => self.on_timer(idx),
                Ok(permit) = self.outbox.out.clone().reserve_owned(), if has_output => self.send_queued(permit),
                _ = housekeeping.tick() => self.housekeeping(),
                () = &mut store_timer, if store_timer_at.is_some() => self.flush_store(),
                // Nothing wakes the loop when the store catches up: look again shortly.
                () = tokio::time::sleep(STORE_RECHECK), if !store_room => {}
            }
            self.finish_discovery();
        }
        self.shut_down(inputs).await;
    }

    fn housekeeping(&mut self) {
        self.heartbeat.send_replace(Instant::now());
        self.ticks = self.ticks.wrapping_add(1);
        self.alert_tick();
        if self.ticks % TRIM_EVERY_TICKS == 0 {
            self.budgets.prune(Instant::now());
            // After a burst the heap is mostly free: back to the baseline, not the peak.
            crate::memory::trim();
        }
        let summary = Summary {
            devices: self.devices.len(),
            online: self.devices.iter().filter(|(_, d)| d.is_online()).count(),
            upstream_up: self.link_up,
        };
        self.summary.send_if_modified(|s| {
            let changed = *s != summary;
            *s = summary;
            changed
        });
    }

    fn on_adapter_event(&mut self, ev: AdapterEvent) {
        let ev = match ev {
            AdapterEvent::DeviceFound(found) => return self.on_device_found(found),
            AdapterEvent::DeviceGone { device } => return self.on_device_gone(device),
            other => other,
        };
        let Some(device) = discovered::event_device(&ev) else {
            return;
        };
        if self.devices.index_of(device).is_none() {
            // A restarted adapter can report a device added by a reload a moment before the core
            // takes the new configuration, and an adapter may report a discovered device before
            // its `DeviceFound` is taken: hold its events until then.
            if self.early_events.len() < MAX_EARLY_EVENTS {
                self.early_events.push(ev);
            }
            return;
        }
        match ev {
            AdapterEvent::Readings(rs) => self.on_readings(&rs),
            AdapterEvent::Online { device } => {
                let Some(idx) = self.devices.index_of(&device) else {
                    return;
                };
                let dev = self.devices.get_mut(idx);
                self.device_stats[idx].online.store(true, Ordering::Relaxed);
                if dev.online != Some(true) {
                    tracing::info!(device = %device, "device online");
                    dev.online = Some(true);
                    dev.offline_reason = None;
                    self.publish_change(idx, true);
                }
                self.alert_availability(&device, true);
            }
            AdapterEvent::Offline { device, reason } => {
                let Some(idx) = self.devices.index_of(&device) else {
                    return;
                };
                self.device_stats[idx]
                    .online
                    .store(false, Ordering::Relaxed);
                let dev = self.devices.get_mut(idx);
                if dev.online != Some(false) || dev.offline_reason.as_deref() != Some(&reason) {
                    tracing::warn!(device = %device, reason = %reason, "device offline");
                    dev.online = Some(false);
                    dev.offline_reason = Some(reason);
                    self.publish_change(idx, true);
                }
                self.alert_availability(&device, false);
            }
            AdapterEvent::DeviceFound(_) | AdapterEvent::DeviceGone { .. } => {}
        }
    }

    /// Handles a held event again; one for a device still unknown is dropped.
    fn replay(&mut self, ev: AdapterEvent) {
        let before = self.early_events.len();
        self.on_adapter_event(ev);
        self.early_events.truncate(before);
    }

    /// Records readings taken together and publishes each device they changed, once.
    fn on_readings(&mut self, rs: &[Reading]) {
        let mut changed: Vec<usize> = Vec::new();
        if self.store.history_enabled() && self.store_batch.add(rs) {
            self.flush_store();
        }
        for r in rs {
            Stats::inc(&self.stats.readings);
            tracing::trace!(device = %r.device, field = %r.field, value = %r.value, "reading");
            let Some(idx) = self.devices.index_of(&r.device) else {
                continue;
            };
            Stats::inc(&self.device_stats[idx].readings);
            if self.devices.apply(idx, r, self.config.publish.deadband) == Applied::Changed {
                self.devices.get_mut(idx).values_dirty = true;
                if !changed.contains(&idx) {
                    changed.push(idx);
                }
            }
        }
        for idx in changed {
            self.publish_change(idx, false);
        }
        self.alert_readings(rs);
    }

    /// Hands the readings waiting for the store to its thread.
    fn flush_store(&mut self) {
        let batch = self.store_batch.take();
        if !batch.is_empty() {
            self.store.record(batch);
        }
    }

    /// Counts an upstream session that came up on `link`, and whether it is a reconnect.
    fn count_link_up(&mut self, link: &Jid) {
        Stats::inc(&self.stats.upstream_connects);
        if self.presence.link_up(link) {
            Stats::inc(&self.stats.upstream_reconnects);
        }
    }

    fn queue_presence_to_all(&mut self, idx: usize) {
        if self.client_mode {
            return self.queue_presence(idx, None);
        }
        let subs: Vec<String> = self.presence.subscribers(idx).iter().cloned().collect();
        for jid in subs {
            self.queue_presence(idx, Some(jid));
        }
    }

    fn queue_presence(&mut self, idx: usize, to: Option<String>) {
        if !self.link_up {
            return;
        }
        if !self.outbox.push_presence(idx, to) {
            Stats::inc(&self.stats.presence_coalesced);
        }
    }

    /// Queues a reply. Replies are never coalesced; past `MAX_URGENT` the oldest is dropped.
    fn reply(&mut self, el: Element) {
        if !self.link_up {
            return;
        }
        if !self.outbox.push_reply(el) {
            Stats::inc(&self.stats.replies_dropped);
        }
    }

    /// The current presence of device `idx`, addressed to `to` (or broadcast).
    fn presence_of(&self, idx: usize, to: Option<&Jid>) -> Element {
        let dev = self.devices.get(idx);
        if dev.is_online() {
            let status = if self.config.publish.presence {
                translator::status::status_line(&dev.current())
            } else {
                String::new()
            };
            stanzas::presence(&dev.jid, to, PresenceType::None, &status)
        } else {
            let reason = dev.offline_reason.as_deref().unwrap_or("not connected yet");
            stanzas::presence(&dev.jid, to, PresenceType::Unavailable, reason)
        }
    }

    fn next_output(&mut self) -> Option<Element> {
        let (idx, to) = match self.outbox.pop()? {
            outbox::Next::Reply(el) => return Some(el),
            outbox::Next::Presence(owed) => owed,
        };
        let to = match to {
            Some(t) => Some(Jid::new(&t).ok()?),
            None => None,
        };
        Some(self.presence_of(idx, to.as_ref()))
    }

    fn send_queued(&mut self, permit: mpsc::OwnedPermit<Element>) {
        let Some(first) = self.next_output() else {
            return;
        };
        let out = permit.send(first);
        Stats::inc(&self.stats.stanzas_out);
        // Fill whatever room there is without waiting.
        while let Ok(permit) = out.try_reserve() {
            let Some(el) = self.next_output() else { break };
            permit.send(el);
            Stats::inc(&self.stats.stanzas_out);
        }
    }

    fn on_inbound(&mut self, inb: Inbound) {
        match inb {
            Inbound::Up => {
                self.link_up = true;
                self.count_link_up(&self.gateway_jid.clone());
                if let Some(tx) = self.first_link.take() {
                    let _ = tx.send(());
                }
                // Nobody else re-announces a component's JIDs: tell every subscriber everything.
                for idx in 0..self.devices.len() {
                    self.announce(idx);
                }
                self.flush_alert_outbox();
                self.housekeeping();
            }
            Inbound::SessionUp { jid } => {
                self.link_up = true;
                self.count_link_up(&jid);
                if let Some(tx) = self.first_link.take() {
                    let _ = tx.send(());
                }
                for idx in 0..self.devices.len() {
                    let dev = self.devices.get(idx);
                    let own_account = dev.jid.resource().is_none() && jid.to_bare() == dev.jid;
                    if dev.jid != jid && !own_account {
                        continue;
                    }
                    self.announce(idx);
                }
                self.flush_alert_outbox();
                self.housekeeping();
            }
            Inbound::Down { reason } => {
                // Our own IQs in flight died with the link, and so did our room seats.
                self.pubsub.link_down();
                self.task_iqs.clear();
                self.seats.link_down();
                if let Some(tx) = self.first_link.take() {
                    let _ = tx.send(());
                }
                if self.link_up {
                    tracing::debug!(reason = %reason, "upstream down; holding presence until it returns");
                }
                self.link_up = false;
                self.outbox.clear();
                self.housekeeping();
            }
            Inbound::Stanza(el) => self.on_stanza(el),
        }
    }

    fn on_stanza(&mut self, el: Element) {
        Stats::inc(&self.stats.stanzas_in);
        // Kept for the error answer in case the stanza does not parse.
        let head = StanzaHead::of(&el);
        if self.misrouted(&head) {
            return;
        }
        if !self.within_budget(&head) {
            return;
        }
        if let Some(reason) = rejected::reason_of(&el) {
            return self.on_rejected(&head, reason);
        }
        match Stanza::try_from(el) {
            Ok(Stanza::Iq(iq)) => self.on_iq(iq),
            Ok(Stanza::Message(m)) => self.on_message(m),
            Ok(Stanza::Presence(p)) => self.on_presence(p),
            Err(e) => {
                Stats::inc(&self.stats.stanzas_malformed);
                tracing::debug!(error = %e, from = ?head.from, kind = %head.name, "malformed stanza");
                // An IQ request must be answered even when it is broken.
                self.answer_broken(&head, DefinedCondition::BadRequest, "malformed stanza");
            }
        }
    }

    /// Component mode: whether a stanza is addressed to a domain other than the component's.
    /// The server should never route one here, but an ejabberd listener with several `hosts`
    /// and the default `global_routes: true` routes all of them to every component on it. Only
    /// the addressee may answer a stanza with an error, and an answer from a JID the gateway
    /// does not serve would carry a `from` the server rejects (ejabberd's `check_from`), so such
    /// a stanza is dropped unanswered, counted, and reported once with the likely cause.
    fn misrouted(&mut self, head: &StanzaHead) -> bool {
        if self.client_mode {
            return false;
        }
        let Some(to) = head.to.as_deref().and_then(|t| Jid::new(t).ok()) else {
            return false;
        };
        if to.domain() == self.gateway_jid.domain() {
            return false;
        }
        Stats::inc(&self.stats.stanzas_misrouted);
        if self.misrouted_reported {
            tracing::debug!(to = %to, from = ?head.from, kind = %head.name, "dropped a stanza for a domain this gateway does not serve");
        } else {
            self.misrouted_reported = true;
            tracing::warn!(to = %to, from = ?head.from, kind = %head.name, domain = %self.gateway_jid.domain(),
                "the server routed a stanza for a domain this gateway does not serve; dropped unanswered \
                 (on ejabberd, set `global_routes: false` on the component listener; further ones are counted \
                 in stanzas_misrouted_total)");
        }
        true
    }

    /// Takes the stanza from its sender's budget. Answers (an IQ request) or drops it when the
    /// budget is spent. Answers to requests are not budgeted: they cost nothing to handle and
    /// some answer the gateway's own requests.
    fn within_budget(&mut self, head: &StanzaHead) -> bool {
        if head.name == "iq" && !head.is_iq_request() {
            return true;
        }
        let sender = head.from.as_deref().unwrap_or_default();
        let bare = sender.split('/').next().unwrap_or_default();
        if self.is_configured_service(bare) {
            return true;
        }
        let now = Instant::now();
        if self.budgets.allow(bare, now) {
            return true;
        }
        Stats::inc(&self.stats.stanzas_shed);
        if let Some(held_back) = self.shed_log.allow(now) {
            tracing::warn!(from = %bare, kind = %head.name, earlier = held_back, "a sender over its budget of {} stanzas/s: answering resource-constraint and dropping the rest (one line a minute; `earlier` counts the stanzas shed since the last)", shedding::SENDER_RATE);
        }
        self.answer_broken(
            head,
            DefinedCondition::ResourceConstraint,
            "too many requests; slow down",
        );
        false
    }

    /// Whether `bare` is the room or the PubSub service the configuration names. They are not
    /// one sender: a room hands every seated device its own copy of every message and of every
    /// occupant's presence (N devices joining make N² presences), so one busy room would spend a
    /// budget meant for one person, and a shed self-presence would leave a device unjoined.
    fn is_configured_service(&self, bare: &str) -> bool {
        let publish = &self.config.publish;
        [publish.room.as_deref(), publish.pubsub.as_deref()]
            .into_iter()
            .flatten()
            .any(|service| service.eq_ignore_ascii_case(bare))
    }

    /// A stanza the reader did not build (see `xmpp::rejected`): answered if it is an IQ
    /// request, else dropped; counted and logged (rate-limited) either way.
    fn on_rejected(&mut self, head: &StanzaHead, reason: Reason) {
        let (condition, text) = match reason {
            Reason::TooLarge => {
                Stats::inc(&self.stats.stanzas_rejected);
                (DefinedCondition::PolicyViolation, "stanza too large")
            }
            Reason::TooDeep => {
                Stats::inc(&self.stats.stanzas_rejected);
                (
                    DefinedCondition::PolicyViolation,
                    "stanza nested too deeply",
                )
            }
            Reason::Invalid => {
                Stats::inc(&self.stats.stanzas_malformed);
                (DefinedCondition::BadRequest, "malformed stanza")
            }
        };
        if let Some(held_back) = self.rejected_log.allow(Instant::now()) {
            tracing::warn!(from = ?head.from, kind = %head.name, id = ?head.id, reason = reason.as_str(), earlier = held_back, "skipped a stanza the gateway does not accept (one line a minute; `earlier` counts those since the last)");
        }
        self.answer_broken(head, condition, text);
    }

    /// Answers an IQ request (only) with an error, from the stanza's envelope alone.
    fn answer_broken(&mut self, head: &StanzaHead, condition: DefinedCondition, text: &str) {
        let (true, Some(id), Some(from), Some(to)) =
            (head.is_iq_request(), &head.id, &head.from, &head.to)
        else {
            return;
        };
        let (Ok(from), Ok(to)) = (Jid::new(from), Jid::new(to)) else {
            return;
        };
        let type_ = match condition {
            DefinedCondition::ResourceConstraint => ErrorType::Wait,
            _ => ErrorType::Modify,
        };
        let err = stanzas::error(type_, condition, text);
        self.reply(stanzas::iq_error(id, &to, &from, err));
    }

    /// One log line about a request the access lists refused, at most once a minute: a
    /// stranger must not be able to make the gateway log once per stanza.
    fn log_refused(&mut self, what: &str, target: &str, requester: &str) {
        // Every refusal at DEBUG: what an operator switches on to follow one requester.
        tracing::debug!(to = %target, jid = %requester, "{what} refused (answered)");
        if let Some(held_back) = self.refused_log.allow(Instant::now()) {
            tracing::info!(to = %target, jid = %requester, earlier = held_back, "{what} refused by the access lists (one line a minute; `earlier` counts refusals since the last)");
        }
    }

    fn on_presence(&mut self, p: xmpp_parsers::presence::Presence) {
        let (Some(from), Some(to)) = (p.from.clone(), p.to.clone()) else {
            return;
        };
        // Room presence is never answered: a room can kick an occupant over an error.
        if self.is_room(&from) {
            self.note_occupant(&p);
            if let Some(idx) = self.devices.by_jid(&to) {
                self.on_room_presence(idx, &p);
            }
            return;
        }
        let requester = from.to_bare().to_string();
        if self.client_mode {
            return self.on_account_presence(&p.type_, &from, &to);
        }
        let Some(idx) = self.devices.by_jid(&to) else {
            // RFC 6121 §8.5: for JIDs we do not host, refuse subscriptions and probes.
            if matches!(p.type_, PresenceType::Subscribe | PresenceType::Probe) {
                self.reply(stanzas::presence(
                    &to.to_bare().into(),
                    Some(&from.to_bare().into()),
                    PresenceType::Unsubscribed,
                    "",
                ));
            }
            return;
        };
        let allowed = self.devices.allows(idx, &requester, Permission::Read);
        let subscribed = self.presence.is_subscribed(idx, &requester);
        let dev_jid = self.devices.get(idx).jid.clone();
        let device_id = self.devices.get(idx).config.id.clone();
        let requester_jid: Jid = from.to_bare().into();
        match presence::decide(&p.type_, allowed, subscribed) {
            presence::SubAction::Approve => {
                if !subscribed {
                    tracing::info!(device = %device_id, jid = %requester, "subscription approved");
                    self.presence.subscribe(idx, requester.clone());
                    self.store.add_subscriber(&device_id, &requester);
                }
                self.reply(stanzas::presence(
                    &dev_jid,
                    Some(&requester_jid),
                    PresenceType::Subscribed,
                    "",
                ));
                let current = self.presence_of(idx, Some(&requester_jid));
                self.reply(current);
            }
            presence::SubAction::Refuse => {
                if p.type_ == PresenceType::Subscribe {
                    Stats::inc(&self.stats.access_refused);
                    self.log_refused("subscription", &device_id.to_string(), &requester);
                }
                self.reply(stanzas::presence(
                    &dev_jid,
                    Some(&requester_jid),
                    PresenceType::Unsubscribed,
                    "",
                ));
            }
            presence::SubAction::Remove => {
                tracing::info!(device = %device_id, jid = %requester, "subscription removed");
                self.presence.unsubscribe(idx, &requester);
                self.store.remove_subscriber(&device_id, &requester);
                self.reply(stanzas::presence(
                    &dev_jid,
                    Some(&requester_jid),
                    PresenceType::Unsubscribed,
                    "",
                ));
                self.reply(stanzas::presence(
                    &dev_jid,
                    Some(&requester_jid),
                    PresenceType::Unavailable,
                    "",
                ));
            }
            presence::SubAction::AnswerProbe => {
                let current = self.presence_of(idx, Some(&from));
                self.reply(current);
            }
            presence::SubAction::Ignore => {}
        }
    }

    /// Client mode: subscriptions are to an account (the shared one, or a device's own); the
    /// server keeps the roster and answers probes. Approve those the access lists let read a
    /// device of that account, ask back so both sides see each other, refuse the rest.
    fn on_account_presence(&mut self, type_: &PresenceType, from: &Jid, to: &Jid) {
        let account: Jid = to.to_bare().into();
        let requester = from.to_bare().to_string();
        let devices: Vec<usize> = self
            .devices
            .iter()
            .filter(|(_, d)| d.jid.to_bare() == account)
            .map(|(i, _)| i)
            .collect();
        let is_gateway_account = self.gateway_jid.to_bare() == account;
        if devices.is_empty() && !is_gateway_account {
            return;
        }
        // The answer to our own ask-back, probes and the like need nothing from the gateway.
        if *type_ != PresenceType::Subscribe {
            return;
        }
        let requester_jid: Jid = from.to_bare().into();
        if devices
            .iter()
            .any(|&i| self.devices.allows(i, &requester, Permission::Read))
        {
            tracing::info!(account = %account, jid = %requester, "subscription approved");
            self.reply(stanzas::presence(
                &account,
                Some(&requester_jid),
                PresenceType::Subscribed,
                "",
            ));
            self.reply(stanzas::presence(
                &account,
                Some(&requester_jid),
                PresenceType::Subscribe,
                "",
            ));
        } else {
            Stats::inc(&self.stats.access_refused);
            self.log_refused("subscription", &account.to_string(), &requester);
            self.reply(stanzas::presence(
                &account,
                Some(&requester_jid),
                PresenceType::Unsubscribed,
                "",
            ));
        }
    }

    fn on_deferred(&mut self, d: Deferred) {
        match d {
            Deferred::Send(el) => self.reply(el),
            Deferred::Readings(rs) => self.on_readings(&rs),
            Deferred::StartReadout(mut p) => {
                // The device table may have changed since: find the device by id.
                let Some(idx) = self.devices.index_of(&p.device_id) else {
                    return;
                };
                p.device = idx;
                self.scheduled
                    .remove(&(p.requester.to_string(), p.request.seqnr));
                self.reply(self.started_message(&p));
                self.run_readout(*p);
            }
            Deferred::JoinRoom(id) => {
                if let (true, Some(idx)) = (self.link_up, self.devices.index_of(&id)) {
                    self.join_room(idx);
                }
            }
            Deferred::TaskIq { id, iq, reply } => self.send_task_iq(id, iq, reply),
            Deferred::ReadoutFinished { requester, seqnr } => {
                self.scheduled.remove(&(requester, seqnr));
            }
        }
    }

    async fn shut_down(mut self, mut inputs: CoreInputs) {
        inputs.inbound.close();
        // What adapters already handed over is kept (stored, flushed at exit): an adapter that
        // acknowledges its bus once the core accepted a reading (as to a broker) must not lose
        // it. Closing first tells the adapters to stop handing over (their sends now fail).
        // `recv` returns `None` once the buffer is empty and no adapter holds a send permit any
        // more (one taken before the close may still be used); bounded in case one never is.
        inputs.events.close();
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(ev) = inputs.events.recv().await {
                self.on_adapter_event(ev);
            }
        })
        .await;
        self.flush_store();
        for (_, handle) in self.scheduled.drain() {
            handle.abort();
        }
        if self.link_up {
            let mut goodbye: Vec<Element> = self.outbox.take_replies();
            goodbye.extend(self.room_goodbyes());
            for (idx, dev) in self.devices.iter() {
                for jid in self.presence.subscribers(idx) {
                    if let Ok(to) = Jid::new(jid) {
                        goodbye.push(stanzas::presence(
                            &dev.jid,
                            Some(&to),
                            PresenceType::Unavailable,
                            "gateway stopped",
                        ));
                    }
                }
            }
            let n = goodbye.len();
            let send_all = async {
                for el in goodbye {
                    if self.outbox.out.send(el).await.is_err() {
                        break;
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(2), send_all)
                .await
                .is_err()
            {
                tracing::warn!(
                    stanzas = n,
                    "upstream too slow: not every unavailable presence was sent at shutdown"
                );
            }
        }
        // Dropping `self.outbox.out` lets the session close the stream after what is queued.
    }
}

/// Receivers the core loop drains; separate from `Core` so the loop can borrow both.
pub struct CoreInputs {
    commands: mpsc::Receiver<CoreCommand>,
    events: mpsc::Receiver<AdapterEvent>,
    inbound: mpsc::Receiver<Inbound>,
    deferred: mpsc::Receiver<Deferred>,
}

/// The addressing of a stanza, read before parsing so a broken one can still be answered.
struct StanzaHead {
    name: String,
    type_: Option<String>,
    id: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

impl StanzaHead {
    fn of(el: &Element) -> Self {
        StanzaHead {
            name: el.name().to_owned(),
            type_: el.attr("type").map(str::to_owned),
            id: el.attr("id").map(str::to_owned),
            from: el.attr("from").map(str::to_owned),
            to: el.attr("to").map(str::to_owned),
        }
    }

    fn is_iq_request(&self) -> bool {
        self.name == "iq" && matches!(self.type_.as_deref(), Some("get" | "set"))
    }
}
