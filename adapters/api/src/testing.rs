//! A harness for an adapter crate's own tests: it runs the adapter with an [`AdapterContext`]
//! of test channels, and lets a test wait for the next event, send a request and await the
//! answer, and stop the adapter. Every adapter crate's tests used to carry a copy of this.
//!
//! Every wait has a deadline ([`AdapterHarness::with_deadline`], ten seconds unless a test says
//! otherwise): a test under paused time (`tokio::test(start_paused = true)`) sets a long one, as
//! paused time jumps straight to the next timer anyway.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    AdapterContext, AdapterEvent, DeviceId, Reading, Request, RequestError, RequestKind, Value,
};

/// An adapter running in a task of the test's runtime, with the core's ends of its channels.
pub struct AdapterHarness {
    /// The core's end of the event channel.
    pub events: mpsc::Receiver<AdapterEvent>,
    /// Events already received but not yet handed out (the rest of a split batch).
    pending: VecDeque<AdapterEvent>,
    /// The core's end of the request channel; `None` once a test dropped it (as the core does
    /// when it replaces the adapter).
    pub requests: Option<mpsc::Sender<Request>>,
    /// Cancelled to stop the adapter, as the core does at shutdown.
    pub shutdown: CancellationToken,
    /// The adapter's task.
    pub task: JoinHandle<()>,
    /// When the adapter was started.
    pub start: Instant,
    /// The deadline of one wait.
    deadline: Duration,
    /// Whether [`next`](Self::next) hands out a batch of readings one reading at a time.
    split: bool,
}

impl AdapterHarness {
    /// Starts the adapter that `run` makes of its context (e.g. `|ctx| adapter.run(ctx)`), named
    /// `adapter`, with an event channel of `capacity` (the back-pressure the adapter sees).
    pub fn start<F>(
        adapter: &str,
        capacity: usize,
        run: impl FnOnce(AdapterContext) -> F,
    ) -> AdapterHarness
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (events_tx, events) = mpsc::channel(capacity);
        let (requests, requests_rx) = mpsc::channel(8);
        let shutdown = CancellationToken::new();
        let start = Instant::now();
        let task = tokio::spawn(run(AdapterContext {
            adapter: adapter.into(),
            events: events_tx,
            requests: requests_rx,
            shutdown: shutdown.clone(),
        }));
        AdapterHarness {
            events,
            pending: VecDeque::new(),
            requests: Some(requests),
            shutdown,
            task,
            start,
            deadline: Duration::from_secs(10),
            split: false,
        }
    }

    /// Every wait may take up to `deadline`.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// [`next`](Self::next) hands out a batch of readings as one event per reading (for tests
    /// that look at readings one at a time); an empty batch fails the test.
    pub fn split_batches(mut self) -> Self {
        self.split = true;
        self
    }

    /// The next event (one reading of a batch, with [`split_batches`](Self::split_batches)).
    pub async fn next(&mut self) -> AdapterEvent {
        if let Some(e) = self.pending.pop_front() {
            return e;
        }
        let e = timeout(self.deadline, self.events.recv())
            .await
            .unwrap_or_else(|_| panic!("no event within {:?}", self.deadline))
            .expect("the adapter is running");
        if !self.split {
            return e;
        }
        assert_ne!(e, AdapterEvent::Readings(Vec::new()), "an empty batch");
        self.pending.extend(e.split());
        self.pending.pop_front().expect("one event at least")
    }

    /// The next event, which must be a reading (the first of its batch).
    pub async fn reading(&mut self) -> Reading {
        match self.next().await {
            AdapterEvent::Readings(mut rs) => rs.remove(0),
            other => panic!("expected a reading, got {other:?}"),
        }
    }

    /// Sends a request for `device` and awaits the adapter's answer.
    pub async fn request(
        &self,
        device: &str,
        kind: RequestKind,
    ) -> Result<Vec<Reading>, RequestError> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .as_ref()
            .expect("the request channel is open")
            .send(Request {
                device: DeviceId::new(device).expect("a valid device id"),
                kind,
                reply,
            })
            .await
            .expect("the adapter takes requests");
        timeout(self.deadline, rx)
            .await
            .unwrap_or_else(|_| panic!("no answer within {:?}", self.deadline))
            .expect("the adapter answers")
    }

    /// Writes `values` (field, value) to `device` and awaits the answer.
    pub async fn write(
        &self,
        device: &str,
        values: &[(&str, Value)],
    ) -> Result<Vec<Reading>, RequestError> {
        let values = values
            .iter()
            .map(|(field, value)| (Arc::from(*field), value.clone()))
            .collect();
        self.request(device, RequestKind::Write { values }).await
    }

    /// Time since the adapter was started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Cancels the adapter and waits until its task has returned.
    pub async fn stop(self) {
        self.shutdown.cancel();
        timeout(self.deadline, self.task)
            .await
            .unwrap_or_else(|_| panic!("the adapter did not stop within the deadline"))
            .expect("the adapter's task did not panic");
    }
}
