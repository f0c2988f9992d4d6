//! xmpp-iot-gateway: gives every sensor and actuator on a local bus its own XMPP address.
//!
//! Map of the crate, every module with what it is (a module's own map, where it has parts, is
//! at its top). Data flows adapters → core → translator → xmpp:
//! - [`config`]: the configuration file, validated once into [`config::Config`], with every
//!   problem and its position.
//! - [`adapter_start`]: builds and starts one bus adapter (crates under `adapters/`) per
//!   `[[adapter]]` section; adapters send readings and serve reads and writes.
//! - [`adapter_registry`]: the adapter types this build knows, one line each.
//! - [`adapter_supervisor`]: keeps the adapters running; on a reload restarts only those whose
//!   settings changed.
//! - [`core`]: the one task that owns device state and subscribers and answers XMPP; its
//!   parts (outgoing queues, store batches, presence, PubSub nodes, room seats) are listed at
//!   its top.
//! - [`devices`]: what the gateway knows about each device.
//! - [`access`]: who may read and who may control, from the `[access]` lists.
//! - [`translator`]: pure functions, readings to stanzas and chat text to commands.
//! - [`xmpp`]: the XMPP wire: stream framing and the upstream session (component or client
//!   mode), stanza helpers.
//! - [`xmlns`]: every XML namespace the gateway reads or writes, named once.
//! - [`store`]: the embedded SQLite store (subscribers, history, alert state, audit log).
//! - [`alerts`]: conditions on readings that message people (`[[alert]]` and chat).
//! - [`charts`]: a field's history downsampled for `chart`: sparkline text, or a picture
//!   uploaded with HTTP upload.
//! - [`stats`]: the counters and the summary the gateway's tasks share.
//! - [`metrics`]: counters of the gateway and its adapters, served as Prometheus text.
//! - [`systemd`]: readiness, status and watchdog notifications (`sd_notify`).
//! - [`memory`]: hands freed heap memory back to the system after a burst of work.
//! - [`device_client`]: the `read` and `set` commands, a short-lived XMPP client that asks a
//!   device as a user's client would.
//! - [`discover`]: the `discover` command: runs the adapters' discovery for a few seconds and
//!   prints what it finds as `[[device]]` blocks to pin.
//! - `fuzzing`: the bodies of the fuzz targets in `fuzz/` (built only with `--cfg fuzzing`, as
//!   `scripts/fuzz.sh` and cargo-fuzz build them, and for the tests).
//!
//! [`run`] wires them together and returns after a graceful shutdown.

pub mod access;
pub mod adapter_registry;
pub mod adapter_start;
pub mod adapter_supervisor;
pub mod alerts;
pub mod charts;
pub mod config;
pub mod core;
pub mod device_client;
pub mod devices;
pub mod discover;
#[cfg(any(fuzzing, test))]
pub mod fuzzing;
pub mod memory;
pub mod metrics;
pub mod stats;
pub mod store;
pub mod systemd;
pub mod translator;
pub mod xmlns;
pub mod xmpp;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::adapter_supervisor::Adapters;
use crate::config::{Config, XmppConfig};
use crate::core::{Core, CoreCommand, CoreParts, Restarted};
use crate::metrics::{GatewayMetrics, Registry};
use crate::stats::Stats;
use crate::stats::Summary;
use crate::store::{Store, StoreOptions};
use crate::systemd::Notifier;
use crate::xmpp::client::ClientSessions;
use crate::xmpp::component::{ComponentSession, Timeouts};

/// Capacity of the adapters' shared event channel: when the core is behind, adapters wait.
const EVENT_QUEUE: usize = 1024;
/// Capacity of the upstream session's inbound channel (stanzas read, for the core).
const UPSTREAM_QUEUE: usize = 1024;
/// Capacity of the core's outgoing channel. The core keeps what does not fit in its own queue
/// (and stops taking adapter events past its high-water mark), so this only needs to cover one
/// write of the session (about 64 KiB of stanzas); every stanza waiting here is an element
/// tree of several KiB, which a flood would otherwise hold by the thousand.
const OUTBOUND_QUEUE: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Setup(String),
}

/// Runs the gateway until `shutdown` is cancelled, then stops within about 5 s: every device's
/// presence goes unavailable, the upstream stream is closed, the store is flushed.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    // Nobody asks for reloads here; the sender lives as long as the gateway runs.
    let (_reload_tx, reload_rx) = mpsc::channel(1);
    serve(config, shutdown, reload_rx).await
}

/// [`run`], and each message on `reloads` (SIGHUP) re-reads the configuration file: devices,
/// fields, access lists and publish settings change without dropping the upstream session;
/// adapters whose settings changed restart alone; a bad file is refused and the old config stays.
pub async fn serve(
    config: Config,
    shutdown: CancellationToken,
    mut reloads: mpsc::Receiver<()>,
) -> Result<(), RunError> {
    let config = Arc::new(config);
    let notifier = Arc::new(Notifier::from_env());
    let (store, store_thread, subscriptions) = Store::open(
        &config.gateway.state_dir,
        StoreOptions {
            history: config.gateway.history,
            batch_window: config.gateway.commit_interval,
            max_bytes: config.gateway.history_max_bytes,
        },
    )?;
    let stats = Arc::new(Stats::default());

    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let (inbound_tx, inbound_rx) = mpsc::channel(UPSTREAM_QUEUE);
    let (outbound_tx, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let (summary_tx, summary_rx) = watch::channel(Summary::default());
    let metrics = Arc::new(Registry::new());
    metrics.register(Arc::new(GatewayMetrics {
        stats: stats.clone(),
        store: store.stats.clone(),
        summary: summary_rx.clone(),
        events: events_tx.downgrade(),
        upstream: outbound_tx.downgrade(),
        started: SystemTime::now(),
    }));

    // Adapters outlive the core's last presence broadcast: they are stopped after it.
    let mut adapters = Adapters::start(&config, events_tx, metrics.clone());
    let requests = adapters.senders();

    let session_stop = CancellationToken::new();
    let (sessions_tx, sessions_rx) = mpsc::unbounded_channel();
    let session = match &config.xmpp {
        XmppConfig::Component(c) => {
            let s = ComponentSession {
                config: c.clone(),
                timeouts: Timeouts::default(),
            };
            tokio::spawn(s.run(outbound_rx, inbound_tx, session_stop.clone()))
        }
        XmppConfig::Client(_) => {
            let sessions =
                ClientSessions::from_config(&config).map_err(|e| RunError::Setup(e.to_string()))?;
            tokio::spawn(sessions.run(outbound_rx, sessions_rx, inbound_tx, session_stop.clone()))
        }
    };

    let (first_link_tx, first_link_rx) = oneshot::channel();
    let (heartbeat_tx, heartbeat_rx) = watch::channel(Instant::now());
    let (commands_tx, commands_rx) = mpsc::channel(4);
    let (core, inputs) = Core::new(CoreParts {
        config: config.clone(),
        store: store.clone(),
        subscriptions,
        commands: commands_rx,
        events: events_rx,
        inbound: inbound_rx,
        outbound: outbound_tx,
        requests,
        stats: stats.clone(),
        metrics: metrics.clone(),
        first_link: first_link_tx,
        summary: summary_tx,
        heartbeat: heartbeat_tx,
        sessions: matches!(config.xmpp, XmppConfig::Client(_)).then_some(sessions_tx),
    })
    .map_err(RunError::Setup)?;
    let core_task = tokio::spawn(core.run(inputs, shutdown.clone()));
    let metrics_task = match &config.metrics {
        Some(m) => match metrics::bind(m.listen).await {
            Ok(listener) => {
                let addr = listener.local_addr().unwrap_or(m.listen);
                tracing::info!(listen = %addr, "metrics endpoint at http://{addr}/metrics");
                Some(tokio::spawn(metrics::serve(
                    listener,
                    metrics.clone(),
                    shutdown.clone(),
                )))
            }
            Err(e) => {
                tracing::error!(listen = %m.listen, error = %e, "cannot open the metrics endpoint; running without it");
                None
            }
        },
        None => None,
    };
    let systemd_task = tokio::spawn(notify_systemd(
        notifier.clone(),
        first_link_rx,
        summary_rx,
        heartbeat_rx,
        shutdown.clone(),
    ));
    tracing::info!(
        devices = config.devices.len(),
        adapters = config.adapters.len(),
        "gateway started"
    );

    let mut current = config.clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(()) = reloads.recv() => {
                if let Some(new) = reload(&current, &mut adapters, &commands_tx).await {
                    current = new;
                }
            }
        }
    }
    notifier.notify("STOPPING=1");
    tracing::info!("stopping");
    let _ = core_task.await;
    systemd_task.abort();
    if let Some(task) = metrics_task {
        let _ = tokio::time::timeout(Duration::from_millis(500), task).await;
    }
    // The session closes the stream once it has sent what the core queued last.
    let mut session = session;
    if tokio::time::timeout(Duration::from_millis(1500), &mut session)
        .await
        .is_err()
    {
        session_stop.cancel();
        session.abort();
    }
    adapters.stop_all(Duration::from_millis(500)).await;
    store.flush().await;
    drop(store);
    if tokio::time::timeout(Duration::from_secs(1), store_thread.join())
        .await
        .is_err()
    {
        tracing::warn!("the store did not close in time");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Whether `new` changes what a reload cannot apply: the upstream session (`[xmpp]`, compared
/// by value, so a changed secret or password counts) and the store (`state_dir`).
fn needs_restart(current: &Config, new: &Config) -> bool {
    new.xmpp != current.xmpp || new.gateway.state_dir != current.gateway.state_dir
}

/// Re-reads the configuration file; returns the new configuration if it was taken.
async fn reload(
    current: &Arc<Config>,
    adapters: &mut Adapters,
    core: &mpsc::Sender<CoreCommand>,
) -> Option<Arc<Config>> {
    tracing::info!(config = %current.path.display(), "reloading the configuration");
    let loaded = match config::load(&current.path, config::LoadMode::Run) {
        Ok(l) => l,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!("{e}");
            }
            tracing::error!("the new configuration has errors; keeping the one that runs");
            return None;
        }
    };
    let new = Arc::new(loaded.config);
    if needs_restart(current, &new) {
        tracing::error!("[xmpp] or state_dir changed: restart the gateway to apply them; keeping the configuration that runs");
        return None;
    }
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let since = tokio::time::Instant::now();
    let restarted = adapters.apply(&new).await;
    for id in &restarted {
        tracing::info!(adapter = %id, "adapter (re)started with its new settings");
    }
    let _ = core
        .send(CoreCommand::Reload {
            config: new.clone(),
            requests: adapters.senders(),
            restarted: Restarted {
                adapters: restarted,
                since,
            },
        })
        .await;
    Some(new)
}

/// Tells systemd when the gateway is ready, what it is doing, and that it is alive.
async fn notify_systemd(
    notifier: Arc<Notifier>,
    first_link: oneshot::Receiver<()>,
    mut summary: watch::Receiver<Summary>,
    heartbeat: watch::Receiver<Instant>,
    shutdown: CancellationToken,
) {
    // Ready once the adapters run and the first upstream attempt finished, either way.
    let _ = tokio::time::timeout(Duration::from_secs(30), first_link).await;
    notifier.notify("READY=1");
    let watchdog = Notifier::watchdog_interval();
    let mut tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    loop {
        let status = {
            let s = summary.borrow_and_update();
            format!(
                "STATUS={} of {} devices online, upstream {}",
                s.online,
                s.devices,
                if s.upstream_up {
                    "connected"
                } else {
                    "disconnected"
                }
            )
        };
        notifier.notify(&status);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = summary.changed() => if r.is_err() { return },
            _ = tick.tick(), if watchdog.is_some() => {
                // Only a core loop that still turns may keep the watchdog quiet.
                let age = heartbeat.borrow().elapsed();
                if age < watchdog.unwrap_or_default() * 2 {
                    notifier.notify("WATCHDOG=1");
                } else {
                    tracing::error!(stalled_for = ?age, "the core loop is stuck; letting the watchdog fire");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::needs_restart;
    use crate::config::testing::ok;

    fn component(secret: &str, rest: &str) -> crate::config::Config {
        ok(&format!(
            "[xmpp]\ndomain = \"sensors.example.org\"\nsecret = \"{secret}\"\n{rest}"
        ))
        .config
    }

    fn client(password: &str) -> crate::config::Config {
        ok(&format!(
            "[xmpp]\nmode = \"client\"\njid = \"gw@example.org\"\npassword = \"{password}\"\n"
        ))
        .config
    }

    #[test]
    fn a_changed_secret_or_password_needs_a_restart() {
        let now = component("s", "");
        assert!(!needs_restart(&now, &component("s", "")));
        assert!(needs_restart(&now, &component("t", "")));
        assert!(!needs_restart(&client("p"), &client("p")));
        assert!(needs_restart(&client("p"), &client("q")));
        assert!(needs_restart(&now, &client("s")));
    }

    #[test]
    fn a_changed_state_dir_needs_a_restart() {
        let now = component("s", "");
        let moved = component("s", "[gateway]\nstate_dir = \"/tmp/elsewhere\"\n");
        assert!(needs_restart(&now, &moved));
        assert!(!needs_restart(
            &now,
            &component("s", "[publish]\nmin_interval = \"5s\"\n")
        ));
    }
}
