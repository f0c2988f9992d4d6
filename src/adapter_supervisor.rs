//! Keeps the adapters running, and on a reload restarts only those whose settings changed.
//!
//! Each adapter is started on a slice of the configuration holding just that adapter and its
//! devices, so it can be stopped and started again alone; an adapter whose slice is unchanged
//! keeps running across a reload (its devices never notice).

use std::sync::Arc;
use std::time::Duration;

use gateway_api::{EventSink, Request};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::adapter_start;
use crate::config::{AdapterConfig, Config, DeviceConfig};
use crate::metrics::Registry;

struct Running {
    id: Arc<str>,
    /// What the adapter was started with; a reload compares it to decide on a restart.
    started_with: Slice,
    /// Cancelled to stop this adapter alone.
    stop: CancellationToken,
    tasks: JoinSet<()>,
    requests: mpsc::Sender<Request>,
}

pub struct Adapters {
    events: EventSink,
    /// Where adapters register their counters.
    metrics: Arc<Registry>,
    /// In the order of `config.adapters`.
    running: Vec<Running>,
}

/// The configuration of adapter `index` alone: that adapter and its devices (re-indexed to 0).
fn slice(config: &Config, index: usize) -> Config {
    let mut one = config.clone();
    one.adapters = vec![config.adapters[index].clone()];
    one.devices = config
        .devices
        .iter()
        .filter(|d| d.adapter_index == index)
        .cloned()
        .map(|mut d| {
            d.adapter_index = 0;
            d
        })
        .collect();
    one
}

/// What an adapter is started with and restarted on a change of: its settings, its devices
/// (settings, fields, common keys) and the gateway's name (an adapter may derive names from it,
/// as a client id on its bus).
/// Compared by value, secrets included.
#[derive(Debug, PartialEq)]
struct Slice {
    adapters: Vec<AdapterConfig>,
    devices: Vec<DeviceConfig>,
    gateway_name: String,
}

impl Slice {
    fn of(config: &Config) -> Slice {
        Slice {
            adapters: config.adapters.clone(),
            devices: config.devices.clone(),
            gateway_name: config.gateway.name.clone(),
        }
    }
}

impl Adapters {
    pub fn start(config: &Config, events: EventSink, metrics: Arc<Registry>) -> Adapters {
        let mut a = Adapters {
            events,
            metrics,
            running: Vec::new(),
        };
        for index in 0..config.adapters.len() {
            let r = a.start_one(config, index);
            a.running.push(r);
        }
        a
    }

    fn start_one(&self, config: &Config, index: usize) -> Running {
        let one = slice(config, index);
        let stop = CancellationToken::new();
        let (mut senders, tasks) =
            adapter_start::spawn_all(&one, self.events.clone(), &stop, &self.metrics);
        // `spawn_all` returns one sender per adapter of the slice: exactly one.
        let requests = senders.remove(0);
        Running {
            id: config.adapters[index].id.clone(),
            started_with: Slice::of(&one),
            stop,
            tasks,
            requests,
        }
    }

    /// Request senders, indexed like `config.adapters`.
    pub fn senders(&self) -> Vec<mpsc::Sender<Request>> {
        self.running.iter().map(|r| r.requests.clone()).collect()
    }

    /// Brings the running adapters in line with `config`: unchanged ones keep running, changed
    /// and removed ones stop, new and changed ones start. Returns the ids that (re)started.
    pub async fn apply(&mut self, config: &Config) -> Vec<Arc<str>> {
        let mut old: Vec<Running> = std::mem::take(&mut self.running);
        let mut started = Vec::new();
        for index in 0..config.adapters.len() {
            let now = Slice::of(&slice(config, index));
            let id = &config.adapters[index].id;
            match old
                .iter()
                .position(|r| &r.id == id && r.started_with == now)
            {
                Some(pos) => self.running.push(old.swap_remove(pos)),
                None => {
                    if let Some(pos) = old.iter().position(|r| &r.id == id) {
                        stop(old.swap_remove(pos)).await;
                    }
                    self.running.push(self.start_one(config, index));
                    started.push(id.clone());
                }
            }
        }
        for r in old {
            tracing::info!(adapter = %r.id, "adapter removed");
            stop(r).await;
        }
        started
    }

    /// Stops every adapter, waiting at most `timeout` for them to finish.
    pub async fn stop_all(self, timeout: Duration) {
        for r in &self.running {
            r.stop.cancel();
        }
        let _ = tokio::time::timeout(timeout, async {
            for mut r in self.running {
                while r.tasks.join_next().await.is_some() {}
            }
        })
        .await;
    }
}

async fn stop(mut r: Running) {
    r.stop.cancel();
    if tokio::time::timeout(Duration::from_secs(2), async {
        while r.tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(adapter = %r.id, "the adapter did not stop in time; abandoning it");
        r.tasks.abort_all();
    }
}
