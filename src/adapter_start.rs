//! Builds and starts one adapter per `[[adapter]]` section, through the adapter type
//! registered for its `type` (`src/adapter_registry.rs`).

use std::sync::Arc;

use gateway_api::{AdapterContext, EventSink, Metric, MetricKind, MetricsSource, Request};
use gateway_toolkit::{AdapterSlice, DeviceSlice, FieldSlice, StartEnv};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Registry;

/// Requests queued per adapter before XMPP writers wait.
const REQUEST_QUEUE: usize = 64;

/// Starts every adapter. Returns the request sender of each (indexed like `config.adapters`)
/// and the tasks, which end once `shutdown` is cancelled.
///
/// Each adapter type's `start` builds its adapter and hands the counters it keeps to
/// `metrics`; they then appear on `/metrics` and in the gateway's XEP-0323 status readout.
pub fn spawn_all(
    config: &Config,
    events: EventSink,
    shutdown: &CancellationToken,
    metrics: &Registry,
) -> (Vec<mpsc::Sender<Request>>, JoinSet<()>) {
    let mut senders = Vec::with_capacity(config.adapters.len());
    let mut tasks = JoinSet::new();
    for (index, adapter) in config.adapters.iter().enumerate() {
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        senders.push(tx);
        let ctx = AdapterContext {
            adapter: adapter.id.clone(),
            events: events.clone(),
            requests: rx,
            shutdown: shutdown.child_token(),
        };
        // The loader only accepts registered types.
        if let Some((_, ty)) = crate::adapter_registry::find(adapter.type_name) {
            let register = |source: Arc<dyn MetricsSource>| metrics.register(source);
            let env = StartEnv {
                gateway_name: &config.gateway.name,
                metrics: &register,
            };
            tasks.spawn(ty.start(slice(config, index), &env, ctx));
        }
        metrics.register(Arc::new(AdapterInfo {
            adapter: adapter.id.clone(),
            kind: adapter.type_name,
        }));
        tracing::debug!(adapter = %adapter.id, kind = adapter.type_name, "adapter started");
    }
    (senders, tasks)
}

/// Adapter `index` of `config` and its devices, as its type starts it.
///
/// # Panics
/// When `index` is not an adapter of `config`.
pub(crate) fn slice(config: &Config, index: usize) -> AdapterSlice<'_> {
    let adapter = &config.adapters[index];
    let devices = config
        .devices
        .iter()
        .filter(|d| d.adapter_index == index)
        .map(|d| DeviceSlice {
            id: &d.id,
            settings: &d.settings,
            fields: d
                .fields
                .iter()
                .map(|f| FieldSlice {
                    spec: &f.spec,
                    settings: &f.settings,
                })
                .collect(),
        })
        .collect();
    AdapterSlice {
        id: &adapter.id,
        type_name: adapter.type_name,
        settings: &adapter.settings,
        devices,
    }
}

/// `adapter_info{adapter, type} 1`: which adapter id is of which type.
struct AdapterInfo {
    adapter: Arc<str>,
    kind: &'static str,
}

impl MetricsSource for AdapterInfo {
    fn collect(&self, out: &mut Vec<Metric>) {
        out.push(Metric {
            name: "adapter_info",
            help: "Always 1; the labels name each adapter and its type.",
            kind: MetricKind::Gauge,
            samples: vec![gateway_api::MetricSample::new(
                vec![
                    ("adapter", self.adapter.to_string()),
                    ("type", self.kind.to_owned()),
                ],
                1.0,
            )],
        });
    }
}

/// The `type = ...` names this build supports, for `version`.
pub fn supported() -> Vec<&'static str> {
    crate::config::adapter_type_names()
}
