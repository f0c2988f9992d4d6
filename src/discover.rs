//! `xmpp-iot-gateway discover`: asks every adapter whose type can discover devices (and has
//! discovery on in its settings) what announces itself on its bus, for a few seconds, and
//! returns what each found as configuration to paste.

use std::sync::Arc;
use std::time::Duration;

use gateway_toolkit::DiscoverEnv;

use crate::config::Config;

/// What one adapter's look found: pastable `[[device]]` blocks, or why it could not look.
pub struct Found {
    pub adapter: Arc<str>,
    pub result: Result<String, String>,
}

/// Looks on every adapter that discovers, all at once, for `wait`; in configuration order.
/// Empty when no adapter has discovery on.
pub async fn discover_all(config: &Config, wait: Duration) -> Vec<Found> {
    let env = DiscoverEnv {
        gateway_name: &config.gateway.name,
        wait,
    };
    let mut tasks = Vec::new();
    for (index, adapter) in config.adapters.iter().enumerate() {
        let Some((_, ty)) = crate::adapter_registry::find(adapter.type_name) else {
            continue;
        };
        if let Some(task) = ty.discover(&crate::adapter_start::slice(config, index), &env) {
            tasks.push((adapter.id.clone(), tokio::spawn(task)));
        }
    }
    let mut found = Vec::with_capacity(tasks.len());
    for (adapter, task) in tasks {
        let result = task
            .await
            .unwrap_or_else(|e| Err(format!("the look at the bus failed: {e}")));
        found.push(Found { adapter, result });
    }
    found
}
