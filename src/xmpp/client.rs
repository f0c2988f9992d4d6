//! Client mode: every device is a c2s session (STARTTLS, SASL, stream management), for a gateway
//! that reaches an XMPP server it does not run.
//!
//! Devices on the shared account log in as `<xmpp.jid>/<device id>`; a device with an account of
//! its own logs in to that account. One more session, `<xmpp.jid>/gateway`, answers for the
//! gateway itself and handles the shared account's roster (subscription requests reach only
//! sessions that fetched the roster). The server broadcasts each session's presence to the
//! account's subscribers, so the core sends device presence without a `to`.
//!
//! Each session is a tokio-xmpp `StanzaStream` (through [`C2sStream`], not tokio-xmpp's `Client`,
//! whose worker can stall: see `c2s.rs`), which reconnects and resumes by itself; each runs in
//! its own task so a failing one never disturbs the others. Stanzas from the core are routed by
//! their `from`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::parsers::presence::Presence;
use tokio_xmpp::parsers::roster::Roster;
use tokio_xmpp::parsers::stanza::Stanza;
use tokio_xmpp::xmlstream::Timeouts;

use super::c2s::{C2sEvent, C2sStream};
use super::connector::{ChurnWatch, Connector, Target};
use super::tls::{client_config, TlsSetupError};
use super::Inbound;
use crate::config::{ClientConfig, Config, Secret, TlsMode, XmppConfig};

/// The resource of the session that speaks for the gateway on the shared account.
pub const GATEWAY_RESOURCE: &str = "gateway";
/// The resource a device on an account of its own logs in with.
pub const DEVICE_RESOURCE: &str = "xmpp-iot-gateway";
/// A session that is not online after this long gets a warning (tokio-xmpp retries a wrong
/// password forever without telling anyone).
const ONLINE_DEADLINE: Duration = Duration::from_secs(30);
const SESSION_QUEUE: usize = 256;
/// Stanzas held for a session whose queue is full (a burst of answers, or the link is down);
/// beyond this the oldest are dropped. The core's own queue bounds what arrives here anyway.
const SESSION_BACKLOG: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("{0}")]
    Config(String),
}

/// One c2s login.
#[derive(Debug, Clone)]
struct SessionSpec {
    jid: FullJid,
    password: Secret,
    /// Fetches the roster and so receives (and answers) subscription requests for its account.
    roster: bool,
    /// Presence priority: the gateway session outranks device sessions, so that chat to the
    /// bare account reaches the gateway rather than every device.
    priority: i8,
}

pub struct ClientSessions {
    specs: Vec<SessionSpec>,
    connector: Connector,
    /// The shared account's password, for device sessions opened while the gateway runs.
    password: Secret,
}

/// A change to the set of sessions while the gateway runs: a device that a reload added or an
/// adapter discovered gets a session of its own, and a device that left has its session closed
/// (the server then tells the account's subscribers it is unavailable).
#[derive(Debug, Clone)]
pub enum SessionChange {
    /// A session for the device with this JID: `<account>/<id>` on the shared account, or a
    /// bare JID with `password` for a device with an account of its own.
    Open {
        device: Jid,
        password: Option<Secret>,
    },
    /// Close the session of the device with this JID, after what it was already given.
    Close { device: Jid },
}

/// The gateway's own JID in client mode.
pub fn gateway_jid(c: &ClientConfig) -> Result<Jid, String> {
    Jid::new(&format!("{}/{GATEWAY_RESOURCE}", c.jid)).map_err(|e| e.to_string())
}

/// The login of a device with JID `device`: a resource of the shared account, or (with a
/// password of its own) its own account.
fn device_spec(
    device: &str,
    own: Option<&Secret>,
    shared: &Secret,
) -> Result<SessionSpec, ClientSetupError> {
    let full = |s: &str| {
        FullJid::new(s)
            .map_err(|e| ClientSetupError::Config(format!("{s:?} is not a full JID: {e}")))
    };
    Ok(match own {
        Some(own) => SessionSpec {
            jid: full(&format!("{device}/{DEVICE_RESOURCE}"))?,
            password: own.clone(),
            roster: true,
            priority: 0,
        },
        None => SessionSpec {
            jid: full(device)?,
            password: shared.clone(),
            roster: false,
            priority: 0,
        },
    })
}

impl ClientSessions {
    pub fn from_config(config: &Config) -> Result<ClientSessions, ClientSetupError> {
        let XmppConfig::Client(c) = &config.xmpp else {
            return Err(ClientSetupError::Config("not in client mode".into()));
        };
        let tls = match c.tls {
            TlsMode::Required => Some(client_config(c.ca_file.as_deref())?),
            TlsMode::None => None,
        };
        let password = c.password.clone().ok_or_else(|| {
            ClientSetupError::Config("no password for the gateway account".into())
        })?;
        let mut specs = vec![SessionSpec {
            jid: FullJid::new(&format!("{}/{GATEWAY_RESOURCE}", c.jid))
                .map_err(|e| ClientSetupError::Config(format!("{:?}: {e}", c.jid)))?,
            password: password.clone(),
            roster: true,
            priority: 1,
        }];
        for d in &config.devices {
            specs.push(device_spec(&d.jid, d.password.as_ref(), &password)?);
        }
        // Process-wide in the patched tokio-xmpp (vendor/tokio-xmpp/PATCHED.md): one limit for
        // every session's reader, as in component mode.
        tokio_xmpp::xmlstream::limits::set_max_stanza_bytes(c.max_stanza_size);
        let target = if c.servers.is_empty() {
            Target::Domain
        } else {
            Target::Addresses(c.servers.clone())
        };
        Ok(ClientSessions {
            specs,
            connector: Connector {
                target,
                tls,
                label: "".into(),
                failures: Arc::new(AtomicU32::new(0)),
                churn: ChurnWatch::default(),
            },
            password,
        })
    }

    /// Runs every session until the core closes `outgoing`; `changes` opens and closes device
    /// sessions on the way.
    pub async fn run(
        self,
        mut outgoing: mpsc::Receiver<Element>,
        mut changes: mpsc::UnboundedReceiver<SessionChange>,
        inbound: mpsc::Sender<Inbound>,
        shutdown: CancellationToken,
    ) {
        let mut router = Router {
            slots: Vec::with_capacity(self.specs.len()),
            exact: HashMap::new(),
            by_account: HashMap::new(),
            accounts: HashMap::new(),
            tasks: JoinSet::new(),
            connector: self.connector,
            inbound,
            shutdown,
        };
        for spec in self.specs {
            router.open(spec);
        }
        let mut changes_open = true;
        loop {
            let waiting = router.waiting();
            let any_waiting = !waiting.is_empty();
            let room = async move {
                let reserves = waiting
                    .into_iter()
                    .map(|(i, tx)| Box::pin(async move { (i, tx.reserve_owned().await) }));
                futures::future::select_all(reserves).await.0
            };
            tokio::select! {
                // Changes first: a session opened for a device must exist before the stanzas
                // the core sent after opening it are routed.
                biased;
                change = changes.recv(), if changes_open => match change {
                    Some(SessionChange::Open { device, password }) => {
                        match device_spec(&device.to_string(), password.as_ref(), &self.password) {
                            Ok(spec) => router.open_if_new(spec),
                            Err(e) => tracing::warn!(device = %device, error = %e, "cannot open a session for a device"),
                        }
                    }
                    Some(SessionChange::Close { device }) => router.close(&device),
                    None => changes_open = false,
                },
                el = outgoing.recv() => {
                    let Some(el) = el else { break };
                    router.route(el);
                }
                (i, permit) = room, if any_waiting => {
                    // A closed session (shutdown) takes nothing more.
                    let Ok(permit) = permit else {
                        router.slots[i] = None;
                        continue;
                    };
                    router.refill(i, permit);
                }
                Some(_) = router.tasks.join_next(), if !router.tasks.is_empty() => {}
            }
        }
        // The core is done: every session closes its stream after what it was given.
        router.slots.clear();
        let mut tasks = router.tasks;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
    }
}

/// One running session, as the router sees it.
struct Slot {
    jid: FullJid,
    roster: bool,
    tx: mpsc::Sender<Element>,
    /// What did not fit in the session's queue (a burst of answers to a flood, a link that is
    /// down) waits here, in order, without holding up the other sessions, so that no answer is
    /// lost to a burst.
    backlog: VecDeque<Element>,
}

/// The sessions and the routing of the core's stanzas to them, by their `from`.
struct Router {
    /// Indexed by session number; `None` once closed (numbers are not reused).
    slots: Vec<Option<Slot>>,
    exact: HashMap<Jid, usize>,
    /// Per account with a roster session: where stanzas from the bare account go.
    by_account: HashMap<Jid, usize>,
    /// What the sessions of one account share: one warning about replaced sessions.
    accounts: HashMap<BareJid, ChurnWatch>,
    tasks: JoinSet<()>,
    connector: Connector,
    inbound: mpsc::Sender<Inbound>,
    shutdown: CancellationToken,
}

impl Router {
    fn open_if_new(&mut self, spec: SessionSpec) {
        let jid: Jid = spec.jid.clone().into();
        if let Some(&i) = self.exact.get(&jid) {
            match &self.slots[i] {
                Some(slot) if slot.roster == spec.roster => return,
                // The same JID with another kind of login (a reload gave the device an account
                // of its own, or took it away): log in anew.
                _ => self.close(&jid),
            }
        }
        tracing::debug!(session = %spec.jid, "opening a session");
        self.open(spec);
    }

    fn open(&mut self, spec: SessionSpec) {
        let i = self.slots.len();
        let bare = spec.jid.to_bare();
        self.exact.insert(spec.jid.clone().into(), i);
        if spec.roster {
            self.by_account.entry(bare.clone().into()).or_insert(i);
        }
        let account = self.accounts.entry(bare).or_insert_with(|| ChurnWatch {
            sessions_on_account: Arc::new(AtomicUsize::new(0)),
            ..ChurnWatch::default()
        });
        account.sessions_on_account.fetch_add(1, Ordering::Relaxed);
        let connector = Connector {
            label: spec.jid.to_string().into(),
            failures: Arc::new(AtomicU32::new(0)),
            churn: ChurnWatch {
                state: Arc::default(),
                ..account.clone()
            },
            ..self.connector.clone()
        };
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        self.slots.push(Some(Slot {
            jid: spec.jid.clone(),
            roster: spec.roster,
            tx,
            backlog: VecDeque::new(),
        }));
        self.tasks.spawn(session(
            spec,
            connector,
            rx,
            self.inbound.clone(),
            self.shutdown.clone(),
        ));
    }

    /// Ends the session of `device` (its JID as the core knows it: full on the shared account,
    /// bare for an account of its own) once it has written what it was given.
    fn close(&mut self, device: &Jid) {
        let found = self.exact.get(device).copied().or_else(|| {
            let own = Jid::new(&format!("{device}/{DEVICE_RESOURCE}")).ok()?;
            self.exact.get(&own).copied()
        });
        let Some(i) = found else {
            return;
        };
        let Some(slot) = self.slots[i].take() else {
            return;
        };
        tracing::debug!(session = %slot.jid, held = slot.backlog.len(), "closing a session");
        self.exact.remove(&Jid::from(slot.jid.clone()));
        let bare = slot.jid.to_bare();
        if self.by_account.get(&Jid::from(bare.clone())) == Some(&i) {
            self.by_account.remove(&Jid::from(bare.clone()));
        }
        if let Some(account) = self.accounts.get(&bare) {
            if account.sessions_on_account.fetch_sub(1, Ordering::Relaxed) <= 1 {
                self.accounts.remove(&bare);
            }
        }
        // Dropping the sender lets the session drain its queue, then close its stream.
    }

    /// Sessions with stanzas waiting for room in their queue, with their queue.
    fn waiting(&self) -> Vec<(usize, mpsc::Sender<Element>)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Some(s) if !s.backlog.is_empty() => Some((i, s.tx.clone())),
                _ => None,
            })
            .collect()
    }

    /// Hands `el` to the session its `from` names.
    fn route(&mut self, el: Element) {
        let Some(from) = el.attr("from").and_then(|f| Jid::new(f).ok()) else {
            tracing::debug!(
                element = el.name(),
                "a stanza without `from` has no session to go out on"
            );
            return;
        };
        let Some(i) = self.session_of(&from) else {
            tracing::debug!(from = %from, "no session for this address; dropped a stanza");
            return;
        };
        let Some(slot) = self.slots[i].as_mut() else {
            return;
        };
        if !slot.backlog.is_empty() {
            hold(&mut slot.backlog, el, &from);
        } else if let Err(mpsc::error::TrySendError::Full(el)) = slot.tx.try_send(el) {
            hold(&mut slot.backlog, el, &from);
        }
    }

    /// A full JID goes out on its own session only: a device whose session was closed must
    /// not speak through another one (the gateway's, on the same account). A bare JID goes out
    /// on its account's roster session.
    fn session_of(&self, from: &Jid) -> Option<usize> {
        if let Some(&i) = self.exact.get(from) {
            return Some(i);
        }
        if from.resource().is_some() {
            return None;
        }
        self.by_account.get(from).copied()
    }

    /// Moves session `i`'s backlog into its queue, starting with `permit`, as far as it fits.
    fn refill(&mut self, i: usize, permit: mpsc::OwnedPermit<Element>) {
        let Some(slot) = self.slots[i].as_mut() else {
            return;
        };
        if let Some(el) = slot.backlog.pop_front() {
            permit.send(el);
        }
        while let Some(el) = slot.backlog.pop_front() {
            if let Err(mpsc::error::TrySendError::Full(el)) = slot.tx.try_send(el) {
                slot.backlog.push_front(el);
                break;
            }
        }
    }
}

async fn session(
    spec: SessionSpec,
    connector: Connector,
    mut rx: mpsc::Receiver<Element>,
    inbound: mpsc::Sender<Inbound>,
    shutdown: CancellationToken,
) {
    let failures = connector.failures.clone();
    let churn = connector.clone();
    // Not tokio-xmpp's `Client`: its internal worker can lose its wakeup and stop delivering
    // incoming stanzas for good (see `c2s.rs` and docs/design.md).
    let mut stream = C2sStream::new(
        connector,
        spec.jid.clone().into(),
        spec.password.expose().to_owned(),
        Timeouts::default(),
    );
    let deadline = tokio::time::sleep(ONLINE_DEADLINE);
    tokio::pin!(deadline);
    let mut ever_online = false;
    loop {
        tokio::select! {
            ev = stream.next() => match ev {
                Some(C2sEvent::Online { resumed }) => {
                    if failures.swap(0, Ordering::Relaxed) > 0 || ever_online {
                        tracing::info!(session = %spec.jid, resumed, "XMPP session restored");
                    } else {
                        tracing::info!(session = %spec.jid, "XMPP session online");
                    }
                    ever_online = true;
                    churn.online();
                    if resumed {
                        continue;
                    }
                    if spec.roster {
                        // Fetching the roster is what makes the server pass subscription requests on.
                        let get = Iq::from_get("roster", Roster { ver: None, items: vec![] });
                        stream.send(get.into()).await;
                        let mut p = Presence::available().with_priority(spec.priority);
                        p.set_status("", "xmpp-iot-gateway");
                        stream.send(p.into()).await;
                    }
                    let _ = inbound.send(Inbound::SessionUp { jid: spec.jid.clone().into() }).await;
                }
                Some(C2sEvent::Stanza(st)) => {
                    // Some servers (ejabberd) hand a subscription request to every session of
                    // the account; only the one that fetched the roster answers it, or a request
                    // would get one answer per device.
                    if !spec.roster && is_subscription_request(&st) {
                        tracing::trace!(session = %spec.jid, "subscription request left to the roster session");
                        continue;
                    }
                    // The server copies every presence of the account's sessions to its other
                    // sessions (RFC 6121 §4.4.2): one per device session for each presence a
                    // device sends. The core has nothing to do with them; dropping them here
                    // spares their conversion and the core's parse of each.
                    if is_own_account_presence(&st, &spec.jid) {
                        continue;
                    }
                    tracing::trace!(session = %spec.jid, "stanza in");
                    let _ = inbound.send(Inbound::Stanza(Element::from(*st))).await;
                }
                Some(C2sEvent::Suspended) => {
                    tracing::debug!(session = %spec.jid, "XMPP connection lost; reconnecting")
                }
                None => return,
            },
            out = rx.recv() => match out {
                Some(el) => match Stanza::try_from(el) {
                    Ok(mut st) => {
                        // The server stamps our address; a `from` of ours it would only check.
                        clear_from(&mut st);
                        // Queued, not awaited until written: the loop goes straight back to
                        // reading.
                        stream.send(st).await;
                    }
                    Err(e) => tracing::error!(session = %spec.jid, error = %e, "the core produced an invalid stanza"),
                },
                None => {
                    if tokio::time::timeout(Duration::from_secs(2), stream.close()).await.is_err() {
                        tracing::debug!(session = %spec.jid, "the stream did not close in time");
                    }
                    return;
                }
            },
            _ = &mut deadline, if !ever_online => {
                tracing::warn!(session = %spec.jid, "not online after {}s: check the password, the account and the server (see earlier warnings)", ONLINE_DEADLINE.as_secs());
            }
            _ = shutdown.cancelled(), if !ever_online => return,
        }
    }
}

/// Presence that asks for, grants or ends a subscription (RFC 6121 §3).
fn is_subscription_request(st: &Stanza) -> bool {
    use tokio_xmpp::parsers::presence::Type;
    matches!(st, Stanza::Presence(p) if matches!(
        p.type_,
        Type::Subscribe | Type::Subscribed | Type::Unsubscribe | Type::Unsubscribed
    ))
}

/// Availability presence from a session of the same account (not a subscription request, which
/// the roster session answers whatever its origin).
fn is_own_account_presence(st: &Stanza, session: &FullJid) -> bool {
    match st {
        Stanza::Presence(p) if !is_subscription_request(st) => p
            .from
            .as_ref()
            .is_some_and(|from| from.node() == session.node() && from.domain() == session.domain()),
        _ => false,
    }
}

/// Keeps `el` for a session whose queue is full, dropping the oldest beyond the bound.
fn hold(backlog: &mut VecDeque<Element>, el: Element, session: &Jid) {
    if backlog.len() >= SESSION_BACKLOG {
        backlog.pop_front();
        tracing::debug!(session = %session, "session backlog full; dropped the oldest stanza");
    }
    backlog.push_back(el);
}

fn clear_from(st: &mut Stanza) {
    match st {
        Stanza::Iq(iq) => *iq.from_mut() = None,
        Stanza::Message(m) => m.from = None,
        Stanza::Presence(p) => p.from = None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_xmpp::parsers::presence::Type;

    fn presence(from: &str, type_: Type) -> Stanza {
        let mut p = Presence::new(type_);
        p.from = Some(Jid::new(from).expect("test jid"));
        p.into()
    }

    #[test]
    fn only_availability_from_the_own_account_is_dropped() {
        let session = FullJid::new("gw@example.org/d1").expect("test jid");
        assert!(is_own_account_presence(
            &presence("gw@example.org/d2", Type::None),
            &session
        ));
        assert!(is_own_account_presence(
            &presence("gw@example.org/gateway", Type::Unavailable),
            &session
        ));
        // Another account, a subscription request, a presence without `from`: kept.
        assert!(!is_own_account_presence(
            &presence("alice@example.org/phone", Type::None),
            &session
        ));
        assert!(!is_own_account_presence(
            &presence("gw@example.org/d2", Type::Subscribe),
            &session
        ));
        assert!(!is_own_account_presence(
            &Presence::new(Type::None).into(),
            &session
        ));
    }
}
