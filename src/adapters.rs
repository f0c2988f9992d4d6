//! Builds and starts one adapter per `[[adapter]]` section: a closed match over the adapter
//! types this build supports.

use std::sync::Arc;

use gateway_api::{Adapter, AdapterContext, EventSink, Metric, MetricKind, MetricsSource, Request};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{AdapterKind, Config};
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
            AdapterKind::Simulated => {
                tasks.spawn(simulated(config, index).run(ctx));
            }
            AdapterKind::Modbus(_) => {
                if let Some(bus) = crate::config::modbus_adapter(config, index) {
                    metrics.register(bus.stats());
                    tasks.spawn(bus.run(ctx));
                }
            }
            AdapterKind::Mqtt(broker) => {
                tasks.spawn(mqtt(config, index, &adapter.id, broker).run(ctx));
            }
            AdapterKind::Serial(port) => {
                tasks.spawn(serial(config, index, port).run(ctx));
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

fn simulated(config: &Config, index: usize) -> gateway_simulated::SimulatedAdapter {
    use crate::config::{DeviceBinding, FieldBinding, Generator};
    use gateway_simulated::{Generator as G, SimDevice, SimField};
    let devices = config
        .devices
        .iter()
        .filter(|d| d.adapter_index == index)
        .filter_map(|d| {
            let DeviceBinding::Simulated(sim) = &d.binding else {
                return None;
            };
            let fields = d
                .fields
                .iter()
                .filter_map(|f| {
                    let FieldBinding::Simulated(g) = &f.binding else {
                        return None;
                    };
                    let generator = match g.clone() {
                        Generator::Sine { min, max, period } => G::Sine { min, max, period },
                        Generator::Step {
                            min,
                            max,
                            period,
                            start,
                        } => G::Step {
                            min,
                            max,
                            period,
                            start,
                        },
                        Generator::Random { min, max, start } => G::Random { min, max, start },
                        Generator::Constant { value } => G::Constant { value },
                    };
                    Some(SimField {
                        spec: f.spec.clone(),
                        generator,
                    })
                })
                .collect();
            Some(SimDevice {
                id: d.id.clone(),
                poll: sim.poll,
                offline_every: sim.offline_every,
                offline_for: sim.offline_for,
                fields,
            })
        })
        .collect();
    gateway_simulated::SimulatedAdapter::new(devices)
}

/// The MQTT adapter for `[[adapter]]` number `index`: its devices, and the client id (as
/// configured, else derived from the gateway's name and the adapter id).
fn mqtt(
    config: &Config,
    index: usize,
    adapter_id: &str,
    broker: &gateway_mqtt::BrokerConfig,
) -> gateway_mqtt::MqttAdapter {
    use crate::config::{DeviceBinding, FieldBinding};
    use gateway_mqtt::{MqttDevice, MqttField};
    let devices = config
        .devices
        .iter()
        .filter(|d| d.adapter_index == index)
        .filter_map(|d| {
            let DeviceBinding::Mqtt(binding) = &d.binding else {
                return None;
            };
            let fields = d
                .fields
                .iter()
                .filter_map(|f| match &f.binding {
                    FieldBinding::Mqtt(c) => Some(MqttField {
                        spec: f.spec.clone(),
                        config: c.clone(),
                    }),
                    _ => None,
                })
                .collect();
            Some(MqttDevice {
                id: d.id.clone(),
                config: binding.clone(),
                fields,
            })
        })
        .collect();
    let client_id = broker
        .client_id
        .clone()
        .unwrap_or_else(|| gateway_mqtt::default_client_id(&config.gateway.name, adapter_id));
    gateway_mqtt::MqttAdapter::new(broker.clone(), client_id, devices)
}

fn serial(
    config: &Config,
    index: usize,
    port: &gateway_serial::SerialAdapterConfig,
) -> gateway_serial::SerialAdapter {
    use crate::config::{DeviceBinding, FieldBinding};
    use gateway_serial::{SerialDevice, SerialField};
    let devices = config
        .devices
        .iter()
        .filter(|d| d.adapter_index == index)
        .filter_map(|d| {
            // The loader gives every device of a serial adapter a serial binding.
            let DeviceBinding::Serial(binding) = &d.binding else {
                return None;
            };
            let fields = d
                .fields
                .iter()
                .filter_map(|f| match &f.binding {
                    FieldBinding::Serial(b) => Some(SerialField {
                        spec: f.spec.clone(),
                        config: b.clone(),
                    }),
                    _ => None,
                })
                .collect();
            Some(SerialDevice {
                id: d.id.clone(),
                config: binding.clone(),
                fields,
            })
        })
        .collect();
    gateway_serial::SerialAdapter::new(port.clone(), devices)
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
pub const SUPPORTED: &[&str] = &["mqtt", "simulated", "modbus-rtu", "modbus-tcp", "serial"];
