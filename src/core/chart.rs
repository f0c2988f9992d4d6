//! `chart <field…> [duration]` in a chat: the fields' stored history as a picture, uploaded
//! through the server's XEP-0363 service and shown inline (`jabber:x:oob`), followed by a text
//! line per field with a sparkline and min/max/mean. Without an upload service, or when the
//! upload fails, the text lines alone are the answer, so that any client shows something.
//!
//! The work runs in a task of its own (the store query may scan a long history, drawing takes
//! a few milliseconds, the upload a network round trip); its IQs go through the core
//! ([`super::task_iq`]) and its messages come back through the deferred queue.

use std::time::Duration;

use chrono::Utc;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{MessageType, Thread};

use super::task_iq::IqClient;
use super::{Core, Deferred};
use crate::charts::picture::{self, Panel};
use crate::charts::upload::{self, UploadError};
use crate::charts::{self, sparkline, Series};
use crate::store::Store;
use crate::xmpp::stanzas;

/// Columns of a sparkline: what a phone shows on one or two lines.
const SPARK_COLUMNS: usize = 32;
/// How long the store may take before the answer says it was too slow.
const QUERY_TIMEOUT: Duration = Duration::from_secs(20);
/// Disco items looked at for the upload service.
const MAX_ITEMS: usize = 20;
const PNG: &str = "image/png";
/// Charts drawn at once: each may scan a long history in the store thread, which readings also
/// need; more requests get "busy" rather than queueing behind them.
const MAX_RUNNING: usize = 2;

/// Permits for [`MAX_RUNNING`], shared by every chart task of the process.
fn permits() -> &'static std::sync::Arc<tokio::sync::Semaphore> {
    static PERMITS: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> =
        std::sync::OnceLock::new();
    PERMITS.get_or_init(|| std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_RUNNING)))
}

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
            match crate::translator::chat::numeric_field(dev.specs(), f, "it has no chart") {
                Ok(spec) => fields.push((spec.name.to_string(), spec.unit.to_string())),
                Err(answer) => return Some(answer),
            }
        }
        let Ok(permit) = permits().clone().try_acquire_owned() else {
            return Some("Busy drawing other charts; try again in a moment.".into());
        };
        let device = dev.config.id.to_string();
        // Readings still waiting for their batch belong in the chart: the store takes commands
        // in order, so handing them over first is enough.
        self.flush_store();
        let to = Utc::now().timestamp_millis();
        let job = ChartJob {
            store: self.store.clone(),
            iq: IqClient::new(self.deferred_tx.clone()),
            deferred: self.deferred_tx.clone(),
            server: self.upload_server(),
            device,
            fields,
            from: to.saturating_sub(req.period.as_millis().min(i64::MAX as u128) as i64),
            to,
            period: crate::alerts::text::human_duration(req.period),
            reply,
        };
        tokio::spawn(async move {
            job.run().await;
            drop(permit);
        });
        None
    }

    /// The server whose disco items may list an upload service: in component mode the server's
    /// own domain, in client mode the account's.
    fn upload_server(&self) -> Option<Jid> {
        match &self.config.xmpp {
            crate::config::XmppConfig::Component(c) => Jid::new(&c.ping_target).ok(),
            crate::config::XmppConfig::Client(_) => {
                Jid::new(self.gateway_jid.domain().as_str()).ok()
            }
        }
    }
}

/// One `chart` request, off the core task.
struct ChartJob {
    store: Store,
    iq: IqClient,
    deferred: tokio::sync::mpsc::Sender<Deferred>,
    server: Option<Jid>,
    device: String,
    /// (name, unit)
    fields: Vec<(String, String)>,
    from: i64,
    to: i64,
    /// The period as the answer names it (`24 h`).
    period: String,
    reply: ChartReply,
}

impl ChartJob {
    async fn run(self) {
        let mut panels: Vec<(String, String, Series)> = Vec::new();
        let mut lines = Vec::new();
        let Ok(device) = gateway_api::DeviceId::new(&self.device) else {
            return;
        };
        for (name, unit) in &self.fields {
            let query = self.store.series(
                &device,
                name,
                Series::new(self.from, self.to, picture::COLUMNS),
            );
            match tokio::time::timeout(QUERY_TIMEOUT, query).await {
                Ok(Ok(series)) => {
                    let spark = series.resample(SPARK_COLUMNS);
                    lines.push(sparkline::line(name, unit, &self.period, &spark));
                    panels.push((name.clone(), unit.clone(), series));
                }
                Ok(Err(e)) => {
                    tracing::warn!(device = %self.device, field = %name, error = %e, "chart query failed");
                    lines.push(format!("{name}: the history cannot be read right now"));
                }
                Err(_) => lines.push(format!("{name}: the history took too long to read")),
            }
        }
        let has_data = panels.iter().any(|(_, _, s)| s.total().is_some());
        if has_data {
            match self.picture(&panels).await {
                Ok(url) => {
                    let r = &self.reply;
                    let el = upload::picture_message(
                        r.type_.clone(),
                        &r.from,
                        &r.to,
                        &url,
                        r.thread.clone(),
                    );
                    let _ = self.deferred.send(Deferred::Send(el)).await;
                }
                Err(e) => {
                    tracing::info!(device = %self.device, error = %e, "chart sent as text");
                }
            }
        }
        let r = &self.reply;
        let el = stanzas::text_message(
            r.type_.clone(),
            &r.from,
            &r.to,
            &lines.join("\n"),
            r.thread.clone(),
        );
        let _ = self.deferred.send(Deferred::Send(el)).await;
    }

    /// Draws, finds the upload service, uploads; the URL to show.
    async fn picture(&self, panels: &[(String, String, Series)]) -> Result<String, UploadError> {
        let server = self.server.as_ref().ok_or(UploadError::NoService)?;
        let service = self.find_service(server).await?;
        let owned: Vec<(String, String, Series)> = panels.to_vec();
        let offset = *chrono::Local::now().offset();
        let png = tokio::task::spawn_blocking(move || {
            let panels: Vec<Panel<'_>> = owned
                .iter()
                .map(|(name, unit, series)| Panel { name, unit, series })
                .collect();
            picture::render(&panels, offset)
        })
        .await
        .map_err(|e| UploadError::Http(e.to_string()))?
        .map_err(|e| UploadError::Http(e.to_string()))?;
        let name = format!("{}-{}.png", self.device, Utc::now().format("%Y%m%d-%H%M%S"));
        let answer = self
            .iq
            .get(
                &self.reply.from,
                &service,
                upload::slot_request(&name, png.len(), PNG),
            )
            .await?;
        let slot = upload::parse_slot(answer.as_ref())?;
        let get = slot.get.clone();
        tokio::task::spawn_blocking(move || upload::put(&slot, &png, PNG))
            .await
            .map_err(|e| UploadError::Http(e.to_string()))??;
        Ok(get)
    }

    /// The first disco item of the server that offers XEP-0363.
    async fn find_service(&self, server: &Jid) -> Result<Jid, UploadError> {
        let from = &self.reply.from;
        let items = upload::items(
            self.iq
                .get(from, server, upload::disco_items())
                .await?
                .as_ref(),
        );
        for jid in items.iter().take(MAX_ITEMS) {
            // An item that does not answer (or refuses) is simply not the service.
            if let Ok(info) = self.iq.get(from, jid, upload::disco_info()).await {
                if upload::offers_upload(info.as_ref()) {
                    return Ok(jid.clone());
                }
            }
        }
        Err(UploadError::NoService)
    }
}
