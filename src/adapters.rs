//! Builds and starts one adapter per `[[adapter]]` section, through the adapter type
//! registered for its `type` (`src/adapter_registry.rs`).

use std::sync::Arc;

use gateway_api::{Adapter, AdapterContext, EventSink, Metric, MetricKind, MetricsSource, Request};
use gateway_toolkit::{AdapterSlice, DeviceSlice, FieldSlice, StartEnv};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{AdapterKind, Config, DeviceBinding, FieldBinding};
use crate::metrics::Registry;

/// Requests queued per adapter before XMPP writers wait.
const REQUEST_QUEUE: usize = 64;

/// Starts every adapter. Returns the request sender of each (indexed like `config.adapters`)
/// and the tasks, which end once `shutdown` is cancelled.
///
/// An adapter that counts its bus traffic registers its counters in `metrics` here, e.g.
/// `let bus = gateway_api::BusStats::new(adapter.id.clone()); metrics.register(bus.clone());`
/// and hands `bus` to the adapter it builds; they then appear on `/metrics` and in the
/// gateway's XEP-0323 status readout.
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
        match &adapter.kind {
            AdapterKind::Registered { type_name, .. } => {
                let registered = crate::adapter_registry::find(type_name);
                if let (Some((_, ty)), Some(slice)) = (registered, slice(config, index)) {
                    let register = |source: Arc<dyn MetricsSource>| metrics.register(source);
                    let env = StartEnv {
                        gateway_name: &config.gateway.name,
                        metrics: &register,
                    };
                    tasks.spawn(ty.start(slice, &env, ctx));
                }
            }
            AdapterKind::Modbus(_) => {
                if let Some(bus) = crate::config::modbus_adapter(config, index) {
                    metrics.register(bus.stats());
                    tasks.spawn(bus.run(ctx));
                }
            }
        }
        metrics.register(Arc::new(AdapterInfo {
            adapter: adapter.id.clone(),
            kind: adapter.kind.type_name(),
        }));
        tracing::debug!(adapter = %adapter.id, kind = adapter.kind.type_name(), "adapter started");
    }
    (senders, tasks)
}

/// Adapter `index` of `config` (of a registered type) and its devices, as its type starts it.
pub(crate) fn slice(config: &Config, index: usize) -> Option<AdapterSlice<'_>> {
    let adapter = config.adapters.get(index)?;
    let AdapterKind::Registered {
        type_name,
        settings,
    } = &adapter.kind
    else {
        return None;
    };
    let devices = config
        .devices
        .iter()
        .filter(|d| d.adapter_index == index)
        .filter_map(|d| {
            let DeviceBinding::Registered(settings) = &d.binding else {
                return None;
            };
            let fields = d
                .fields
                .iter()
                .filter_map(|f| match &f.binding {
                    FieldBinding::Registered(settings) => Some(FieldSlice {
                        spec: &f.spec,
                        settings,
                    }),
                    _ => None,
                })
                .collect();
            Some(DeviceSlice {
                id: &d.id,
                settings,
                fields,
            })
        })
        .collect();
    Some(AdapterSlice {
        id: &adapter.id,
        type_name,
        settings,
        devices,
    })
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
