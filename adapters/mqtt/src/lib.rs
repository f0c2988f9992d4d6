//! The MQTT adapter: devices on an MQTT broker (ESP32 firmware, Tasmota, zigbee2mqtt, Shelly...)
//! become XMPP devices.
//!
//! Map of the crate:
//! - [`config`]: what the adapter is told (broker, per device and field topics, pointers,
//!   templates) and the checks its keys go through ([`config::keys`]);
//! - [`topic`]: topic filters, wildcard matching, reducing many filters to few subscriptions;
//! - [`payload`]: payloads to values (JSON pointers, bare values, availability) and writes to
//!   command messages;
//! - `link`: rumqttc's options and the poller task that drives its event loop with the shared
//!   back-off;
//! - `bridge`: the state machine between the link and the core (routing, presence, writes);
//! - [`discovery`]: devices that announce themselves (Home Assistant MQTT discovery,
//!   zigbee2mqtt), a state machine the bridge hands messages, reads and writes to, and the
//!   `discover` command's look at the broker;
//! - [`stats`] holds the counters; `fuzzing`, the body of the `mqtt_payload`
//!   fuzz target (built only for the fuzz targets and the tests).
//!
//! One task ([`MqttAdapter::run`]) moves messages between the poller, the bridge, the core's
//! event channel and rumqttc's request channel; it never blocks on one while another waits.
//! MQTT 3.1.1 on a persistent session (clean session off, a stable client id), QoS 1
//! subscriptions, and manual acknowledgements sent once the core accepted what a message
//! carried: what was published while the gateway was stopped arrives when it returns.

mod bridge;
pub mod config;
pub mod discovery;
#[cfg(any(fuzzing, test))]
pub mod fuzzing;
pub mod limits;
mod link;
pub mod payload;
mod rate_limit;
pub mod stats;
pub mod topic;

use std::sync::Arc;
use std::time::Duration;

use gateway_api::{Adapter, AdapterContext};
use rumqttc::{AsyncClient, ClientError, QoS, SubscribeFilter};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

pub use config::{
    default_client_id, Availability, BrokerConfig, BrokerUrl, DeviceConfig, FieldConfig, Mqtt,
    MqttDevice, MqttField, Password, Template, TopicBinding,
};
pub use stats::MqttStats;

use bridge::{Bridge, MqttRequest};
use link::{Link, LinkInfo};

/// Requests (acknowledgements, commands, subscriptions) queued in rumqttc before the adapter
/// waits for room.
const CLIENT_QUEUE: usize = 256;
/// Messages from the poller waiting for the adapter task.
const LINK_QUEUE: usize = 64;
/// How long the DISCONNECT may take at shutdown.
const DISCONNECT_TIMEOUT: Duration = Duration::from_millis(300);

/// The adapter for one `[[adapter]]` of `type = "mqtt"`.
#[derive(Debug)]
pub struct MqttAdapter {
    broker: BrokerConfig,
    /// As configured, or [`default_client_id`].
    client_id: String,
    devices: Vec<MqttDevice>,
    stats: Arc<MqttStats>,
}

impl MqttAdapter {
    pub fn new(broker: BrokerConfig, client_id: String, devices: Vec<MqttDevice>) -> Self {
        MqttAdapter {
            broker,
            client_id,
            devices,
            stats: Arc::default(),
        }
    }

    /// The adapter's counters (messages, readings, bad payloads, commands, connections).
    pub fn stats(&self) -> Arc<MqttStats> {
        self.stats.clone()
    }
}

impl Adapter for MqttAdapter {
    async fn run(self, ctx: AdapterContext) {
        let AdapterContext {
            adapter,
            events,
            mut requests,
            shutdown,
        } = ctx;
        let MqttAdapter {
            broker,
            client_id,
            devices,
            stats,
        } = self;
        debug!(adapter = %adapter, devices = devices.len(), url = %broker.url, "MQTT adapter started");
        let mut bridge = Bridge::new(adapter.clone(), &broker, devices, stats.clone());
        debug!(adapter = %adapter, subscriptions = ?bridge.subscriptions(), "MQTT subscriptions");

        // The poller and the client, unless the options cannot even be built (e.g. a CA file
        // that vanished since the configuration was checked): then every device is unavailable
        // with that reason until shutdown.
        let poller_stop = CancellationToken::new();
        let (client, mut link_rx, poller) = match link::options(&broker, &client_id) {
            Ok((options, network)) => {
                let (client, mut eventloop) = AsyncClient::new(options, CLIENT_QUEUE);
                eventloop.set_network_options(network);
                let (tx, rx) = mpsc::channel(LINK_QUEUE);
                let info = LinkInfo {
                    adapter: adapter.clone(),
                    url: broker.url.to_string(),
                    client_id: client_id.clone(),
                };
                let poller = tokio::spawn(link::drive(
                    eventloop,
                    tx,
                    poller_stop.clone(),
                    info,
                    stats.clone(),
                ));
                (Some(client), Some(rx), Some(poller))
            }
            Err(e) => {
                error!(adapter = %adapter, url = %broker.url, error = %e, "Cannot set up the MQTT client");
                bridge.setup_failed(format!("MQTT client setup failed: {e}"));
                (None, None, None)
            }
        };

        let mut requests_open = true;
        loop {
            if let Some(client) = &client {
                pump(client, &mut bridge);
            }
            // A request rumqttc had no room for: awaited below while everything else goes on.
            let blocked = match (&client, bridge.mqtt.front()) {
                (Some(c), Some(r)) => Some((c.clone(), r.clone())),
                _ => None,
            };
            let deadline = bridge.next_deadline();
            let has_event = bridge.has_event();
            let take_link = link_rx.is_some() && bridge.accepts_input();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                permit = events.reserve(), if has_event => match permit {
                    Ok(permit) => {
                        if let Some(ev) = bridge.pop_event() {
                            permit.send(ev);
                        }
                    }
                    // The core closed its channel: it is stopping. Nothing more is
                    // acknowledged, so the broker keeps what we did not hand over.
                    Err(_) => break,
                },
                link = recv_link(&mut link_rx), if take_link => match link {
                    Some(link) => bridge.on_link(link, Instant::now()),
                    None => link_rx = None,
                },
                req = requests.recv(), if requests_open => match req {
                    Some(req) => bridge.on_request(req),
                    None => requests_open = false,
                },
                sent = send(blocked.as_ref()), if blocked.is_some() => {
                    if sent.is_ok() {
                        bridge.mqtt.pop_front();
                    } else {
                        // The event loop is gone (only at shutdown).
                        bridge.mqtt.clear();
                    }
                },
                () = sleep_until_opt(deadline) => bridge.on_tick(Instant::now()),
            }
        }

        bridge.close();
        if let Some(client) = &client {
            // A polite DISCONNECT; the session (and what it queues) stays with the broker.
            let _ = client.try_disconnect();
        }
        if let Some(mut poller) = poller {
            if tokio::time::timeout(DISCONNECT_TIMEOUT, &mut poller)
                .await
                .is_err()
            {
                poller_stop.cancel();
                let _ = poller.await;
            }
        }
        info!(
            adapter = %adapter,
            messages = MqttStats::get(&stats.messages),
            readings = MqttStats::get(&stats.readings),
            bad_payloads = MqttStats::get(&stats.bad_payloads),
            commands = MqttStats::get(&stats.commands),
            "MQTT adapter stopped"
        );
    }
}

async fn recv_link(rx: &mut Option<mpsc::Receiver<Link>>) -> Option<Link> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Hands queued requests to rumqttc while its channel has room.
fn pump(client: &AsyncClient, bridge: &mut Bridge) {
    while let Some(r) = bridge.mqtt.front() {
        let result = match r {
            MqttRequest::Ack(p) => client.try_ack(p),
            MqttRequest::Publish { topic, payload } => {
                client.try_publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
            }
            MqttRequest::Subscribe(filters) => client.try_subscribe_many(filters_of(filters)),
        };
        match result {
            Ok(()) => {
                bridge.mqtt.pop_front();
            }
            // Full: `send` waits for room. (Disconnected: the same, until shutdown.)
            Err(ClientError::TryRequest(_) | ClientError::Request(_)) => break,
        }
    }
}

/// Waits until rumqttc takes `request`.
async fn send(request: Option<&(AsyncClient, MqttRequest)>) -> Result<(), ClientError> {
    let Some((client, r)) = request else {
        return std::future::pending().await;
    };
    match r {
        MqttRequest::Ack(p) => client.ack(p).await,
        MqttRequest::Publish { topic, payload } => {
            client
                .publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
                .await
        }
        MqttRequest::Subscribe(filters) => client.subscribe_many(filters_of(filters)).await,
    }
}

fn filters_of(filters: &[String]) -> Vec<SubscribeFilter> {
    filters
        .iter()
        .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_api::testing::AdapterHarness;
    use gateway_api::{AdapterEvent, DeviceId, FieldSpec, FieldType, RequestError, Value};

    /// A loopback port nothing listens on (bound, then released).
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    fn device() -> MqttDevice {
        MqttDevice {
            id: DeviceId::new("d").unwrap(),
            config: DeviceConfig {
                topic: Some(TopicBinding::new("d/state", "d", false).unwrap()),
                command_topic: Some("d/set".into()),
                ..DeviceConfig::default()
            },
            fields: vec![MqttField {
                spec: FieldSpec {
                    name: "v".into(),
                    unit: "".into(),
                    kind: FieldType::Numeric,
                    writable: true,
                },
                config: FieldConfig::default(),
            }],
        }
    }

    fn start(broker: BrokerConfig) -> AdapterHarness {
        let adapter = MqttAdapter::new(broker, "test".into(), vec![device()]);
        AdapterHarness::start("broker", 16, |ctx| adapter.run(ctx))
    }

    async fn offline_reason(r: &mut AdapterHarness) -> String {
        match r.next().await {
            AdapterEvent::Offline { reason, .. } => reason,
            other => panic!("expected the device to go offline, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn without_a_broker_devices_are_unavailable_and_writes_refused() {
        let port = closed_port();
        let url = BrokerUrl::parse(&format!("mqtt://127.0.0.1:{port}")).unwrap();
        let mut r = start(BrokerConfig::new(url));
        let reason = offline_reason(&mut r).await;
        assert!(
            reason.starts_with(&format!("MQTT broker 127.0.0.1:{port} unreachable: ")),
            "{reason}"
        );
        let answer = r.write("d", &[("v", Value::Float(1.0))]).await;
        assert!(
            matches!(answer, Err(RequestError::Unreachable(_))),
            "{answer:?}"
        );
        r.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), r.task)
            .await
            .expect("stops promptly while backing off")
            .unwrap();
    }

    #[tokio::test]
    async fn a_client_that_cannot_be_set_up_says_why_until_shutdown() {
        let mut broker = BrokerConfig::new(BrokerUrl::parse("mqtts://localhost:8883").unwrap());
        broker.ca_file = Some("/nonexistent/ca.pem".into());
        let mut r = start(broker);
        let reason = offline_reason(&mut r).await;
        assert!(
            reason.starts_with("MQTT client setup failed: cannot read the CA file"),
            "{reason}"
        );
        assert!(!r.task.is_finished());
        r.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), r.task)
            .await
            .unwrap()
            .unwrap();
    }
}
