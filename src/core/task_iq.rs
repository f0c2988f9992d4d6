//! IQ requests on behalf of tasks the core spawned (a chart's disco and upload slot): the task
//! hands the request to the core, which sends it and routes the answer back by id.
//!
//! The core owns the upstream, so a task cannot send on its own; waiting for the answer must
//! not block the core either. A request whose task gave up (timeout) is forgotten at the next
//! request; every waiting task hears "link lost" when the upstream goes down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use minidom::Element;
use tokio::sync::{mpsc, oneshot};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza_error::StanzaError;

use super::{Core, Deferred};
use crate::charts::upload::UploadError;

/// The answer to a task's IQ: the result's payload, or the error.
pub(super) type IqAnswer = Result<Option<Element>, StanzaError>;

/// How many task IQs may wait for answers at once; beyond this new ones fail at once.
const MAX_WAITING: usize = 256;
/// How long a task waits for an answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Numbers task IQs across every client, so that concurrent tasks never share an id.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Cloned into tasks: sends IQs through the core.
#[derive(Clone)]
pub(super) struct IqClient {
    tx: mpsc::Sender<Deferred>,
}

impl IqClient {
    pub fn new(tx: mpsc::Sender<Deferred>) -> Self {
        IqClient { tx }
    }

    /// Sends a `get` from `from` to `to` and waits for the answer's payload.
    pub async fn get(
        &self,
        from: &Jid,
        to: &Jid,
        payload: Element,
    ) -> Result<Option<Element>, UploadError> {
        let id = format!("task-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let iq: Element = Iq::Get {
            from: Some(from.clone()),
            to: Some(to.clone()),
            id: id.clone(),
            payload,
        }
        .into();
        let (reply, answer) = oneshot::channel();
        if self
            .tx
            .send(Deferred::TaskIq { id, iq, reply })
            .await
            .is_err()
        {
            return Err(UploadError::LinkLost);
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Err(_) => Err(UploadError::Timeout),
            Ok(Err(_)) => Err(UploadError::LinkLost),
            Ok(Ok(Ok(payload))) => Ok(payload),
            Ok(Ok(Err(e))) => Err(UploadError::Refused(
                e.texts
                    .values()
                    .next()
                    .cloned()
                    .unwrap_or_else(|| format!("{:?}", e.defined_condition)),
            )),
        }
    }
}

impl Core {
    /// Sends a task's IQ and remembers where its answer goes.
    pub(super) fn send_task_iq(
        &mut self,
        id: String,
        iq: Element,
        reply: oneshot::Sender<IqAnswer>,
    ) {
        self.task_iqs.retain(|_, r| !r.is_closed());
        // Without a link, or with too many waiting, dropping `reply` tells the task at once.
        if !self.link_up || self.task_iqs.len() >= MAX_WAITING {
            return;
        }
        self.task_iqs.insert(id, reply);
        self.reply(iq);
    }

    /// Routes an IQ answer to the task waiting for it (gone if it gave up).
    pub(super) fn task_iq_answer(&mut self, id: &str, answer: IqAnswer) {
        if let Some(reply) = self.task_iqs.remove(id) {
            let _ = reply.send(answer);
        }
    }
}
