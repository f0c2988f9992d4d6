//! `chart <field…> [duration]` in a chat: the fields' stored history, downsampled by the store
//! and answered as one sparkline line per field with min/max/mean.
//!
//! The store query runs off the core task (it may scan a long history); its answer comes back
//! as a ready message through the deferred queue, in the request's thread.

use std::time::Duration;

use chrono::Utc;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{MessageType, Thread};

use super::{Core, Deferred};
use crate::charts::{self, sparkline, Series};
use crate::xmpp::stanzas;

/// Columns of a sparkline: what a phone shows on one or two lines.
const SPARK_COLUMNS: usize = 32;
/// How long the store may take before the answer says it was too slow.
const QUERY_TIMEOUT: Duration = Duration::from_secs(20);

/// Where a chart answer goes.
pub(super) struct ChartReply {
    pub from: Jid,
    pub to: Jid,
    pub type_: MessageType,
    pub thread: Option<Thread>,
}

impl Core {
    /// Starts a `chart` for device `idx`; returns an immediate answer when there is nothing to
    /// query (bad request, history off).
    pub(super) fn chart_command(
        &mut self,
        idx: usize,
        rest: &str,
        reply: ChartReply,
    ) -> Option<String> {
        let req = match charts::parse_request(rest) {
            Ok(r) => r,
            Err(why) => return Some(why),
        };
        if !self.store.history_enabled() {
            return Some("This gateway keeps no history (`[gateway] history` is off).".into());
        }
        let dev = self.devices.get(idx);
        let mut fields = Vec::new();
        for f in &req.fields {
            match super::messages::numeric_field(dev, f, "it has no chart") {
                Ok(spec) => fields.push((spec.name.to_string(), spec.unit.to_string())),
                Err(answer) => return Some(answer),
            }
        }
        let device = dev.config.id.clone();
        // Readings still waiting for their batch belong in the chart: the store takes commands
        // in order, so handing them over first is enough.
        self.flush_store();
        let store = self.store.clone();
        let tx = self.deferred_tx.clone();
        let to = Utc::now().timestamp_millis();
        let from = to.saturating_sub(req.period.as_millis().min(i64::MAX as u128) as i64);
        let period = crate::alerts::text::human_duration(req.period);
        tokio::spawn(async move {
            let mut lines = Vec::new();
            for (name, unit) in fields {
                let query = store.series(&device, &name, Series::new(from, to, SPARK_COLUMNS));
                let line = match tokio::time::timeout(QUERY_TIMEOUT, query).await {
                    Ok(Ok(series)) => sparkline::line(&name, &unit, &period, &series),
                    Ok(Err(e)) => {
                        tracing::warn!(device = %device, field = %name, error = %e, "chart query failed");
                        format!("{name}: the history cannot be read right now")
                    }
                    Err(_) => format!("{name}: the history took too long to read"),
                };
                lines.push(line);
            }
            let el = stanzas::text_message(
                reply.type_,
                &reply.from,
                &reply.to,
                &lines.join("\n"),
                reply.thread,
            );
            let _ = tx.send(Deferred::Send(el)).await;
        });
        None
    }
}
