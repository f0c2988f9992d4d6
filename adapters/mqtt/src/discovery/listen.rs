//! `discover` for one mqtt adapter: a short look at the broker. It connects with a client id
//! of its own and a clean session (the gateway's session and its queued messages stay
//! untouched), subscribes to the announcements, feeds what arrives for `wait` to a
//! [`Discovery`] and prints the devices it would report.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, QoS, SubscribeFilter};
use tokio::time::Instant;

use super::{pin, Discovery, Output};
use crate::config::BrokerConfig;
use crate::link;
use crate::stats::MqttStats;

/// Listens on `broker` for `wait`; the devices found as `[[device]]` blocks of `adapter`, or
/// why the broker could not be asked.
pub async fn listen(
    adapter: &str,
    broker: &BrokerConfig,
    client_id: &str,
    configured: Vec<String>,
    wait: Duration,
) -> Result<String, String> {
    let own_id = format!("{client_id}-discover-{}", std::process::id());
    let (mut options, network) = link::options(broker, &own_id).map_err(|e| e.to_string())?;
    options.set_clean_session(true);
    options.set_manual_acks(false);
    let (client, mut events) = AsyncClient::new(options, 16);
    events.set_network_options(network);
    let filters: Vec<SubscribeFilter> = broker
        .discovery
        .filters()
        .into_iter()
        .map(|f| SubscribeFilter::new(f, QoS::AtMostOnce))
        .collect();
    client
        .subscribe_many(filters)
        .await
        .map_err(|e| e.to_string())?;
    let stats = std::sync::Arc::new(MqttStats::default());
    let mut discovery = Discovery::new(
        adapter.into(),
        broker.discovery.clone(),
        configured,
        stats.clone(),
    );
    let mut out = Output::default();
    let deadline = Instant::now() + wait;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    discovery.on_message(&p.topic, &p.payload, broker.max_payload, Instant::now(), &mut out);
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(format!(
                        "MQTT broker {} unreachable: {}",
                        broker.url.host_port(),
                        link::describe(&e)
                    ))
                }
            },
        }
    }
    let _ = client.try_disconnect();
    discovery.flush(&mut out);
    let found = discovery.snapshot();
    let bad = MqttStats::get(&stats.discovery_bad_configs)
        + MqttStats::get(&stats.discovery_template_errors);
    let skipped = MqttStats::get(&stats.discovery_skipped);
    let mut text = format!(
        "# adapter `{adapter}` ({}): {} device(s) discovered in {} s",
        broker.url,
        found.len(),
        wait.as_secs_f64()
    );
    if bad > 0 {
        text.push_str(&format!("; {bad} announcement(s) refused (see the log)"));
    }
    if skipped > 0 {
        text.push_str(&format!(
            "; {skipped} left out (configured, excluded or over discover_max_devices)"
        ));
    }
    text.push('\n');
    text.push_str(&pin::blocks(adapter, &found));
    Ok(text)
}
