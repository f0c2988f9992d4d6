//! One open port: reading lines into readings and writing commands, until the port is lost or
//! the gateway stops.
//!
//! Generic over the port type so that unit tests drive it with an in-memory duplex stream. One
//! `select!` loop serves, in priority order: shutdown, requests from XMPP (reads are answered
//! from the last values; writes are checked and queued), the core's event channel (readings wait
//! in [`Link::out`]; while any wait, the port is not read, so back-pressure reaches the bus), the
//! write in progress, the acknowledgement deadline, and the port. Writes run one at a time: the
//! command line is written, then, if the field has an `ack_pattern`, the next line matching it
//! confirms the write (that line is not parsed as a record); no match within `ack_timeout` fails
//! the write with a timeout and the queue moves on.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use gateway_api::{
    AdapterEvent, DeviceId, EventSink, Reading, Request, RequestError, RequestKind, Value,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::SerialDevice;
use crate::input::Input;
use crate::stats::SerialStats;

/// Bytes that arrive this soon after the port was opened continue a line the device had
/// already started: they are dropped up to the first line ending.
pub const PARTIAL_GUARD: Duration = Duration::from_millis(50);

/// A write that has not completed in this time means the port is stuck.
pub const WRITE_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What a serial port is to the adapter.
pub trait Port: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Port for T {}

/// The adapter's side of the core: what outlives one session.
pub struct Link {
    pub adapter: Arc<str>,
    /// To the core; closed by the core when it stops.
    pub events: EventSink,
    /// From the core; the core drops the sender at shutdown or when it replaces the adapter.
    pub requests: mpsc::Receiver<Request>,
    pub requests_open: bool,
    /// Cancelled by the core at shutdown.
    pub shutdown: CancellationToken,
    /// Events produced but not yet accepted by the core, oldest first.
    pub out: VecDeque<AdapterEvent>,
}

/// Why a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Shutdown, or the core closed the event channel: the adapter stops.
    Stop,
    /// The port failed; the text says how (shown to people as part of the offline reason).
    Lost(String),
}

/// The adapter's state that outlives one session.
pub struct State {
    pub port: Arc<str>,
    pub devices: Vec<SerialDevice>,
    pub input: Input,
    pub stats: Arc<SerialStats>,
    /// The last reading of each field, indexed like `devices[d].fields[f]`, for reads.
    pub last: Vec<Vec<Option<Reading>>>,
}

/// One queued write request.
struct Job {
    device: usize,
    steps: Vec<Step>,
    /// The next step to run.
    next: usize,
    /// The confirmed values so far.
    done: Vec<Reading>,
    reply: oneshot::Sender<Result<Vec<Reading>, RequestError>>,
}

/// One field's command of a write.
struct Step {
    field: usize,
    value: Value,
    bytes: Vec<u8>,
    ack: Option<(regex::Regex, Duration)>,
}

type WriteFuture<P> = Pin<Box<dyn Future<Output = (WriteHalf<P>, std::io::Result<()>)> + Send>>;

impl State {
    /// Checks a request and answers it, or queues a write.
    fn serve(&mut self, req: Request, jobs: &mut VecDeque<Job>) {
        let Some(di) = self.devices.iter().position(|d| d.id == req.device) else {
            let _ = req.reply.send(Err(RequestError::Refused(format!(
                "no device {} on this adapter",
                req.device
            ))));
            return;
        };
        match req.kind {
            RequestKind::Read { fields } => {
                let _ = req.reply.send(self.read(di, &fields));
            }
            RequestKind::Write { values } => match self.plan(di, values) {
                Ok(steps) => jobs.push_back(Job {
                    device: di,
                    steps,
                    next: 0,
                    done: Vec::new(),
                    reply: req.reply,
                }),
                Err(e) => {
                    let _ = req.reply.send(Err(e));
                }
            },
        }
    }

    /// The last values of `fields` (all when empty); a device only speaks when it wants to.
    fn read(&self, di: usize, fields: &[Arc<str>]) -> Result<Vec<Reading>, RequestError> {
        let dev = &self.devices[di];
        if fields.is_empty() {
            return Ok(self.last[di].iter().flatten().cloned().collect());
        }
        let mut out = Vec::new();
        for name in fields {
            let fi = dev
                .fields
                .iter()
                .position(|f| f.spec.name == *name)
                .ok_or_else(|| RequestError::UnknownField(name.to_string()))?;
            out.extend(self.last[di][fi].clone());
        }
        Ok(out)
    }

    /// Checks every value of a write before anything is sent.
    fn plan(&self, di: usize, values: Vec<(Arc<str>, Value)>) -> Result<Vec<Step>, RequestError> {
        let dev = &self.devices[di];
        let mut steps = Vec::with_capacity(values.len());
        for (name, value) in values {
            let fi = dev
                .fields
                .iter()
                .position(|f| f.spec.name == name)
                .ok_or_else(|| RequestError::UnknownField(name.to_string()))?;
            let field = &dev.fields[fi];
            let command = match (&field.config.command, field.spec.writable) {
                (Some(c), true) => c,
                _ => return Err(RequestError::NotWritable(name.to_string())),
            };
            let out_of_range = |reason: String| RequestError::OutOfRange {
                field: name.to_string(),
                reason,
            };
            let value = value
                .coerce(field.spec.kind)
                .map_err(|e| out_of_range(e.to_string()))?;
            let bytes = command
                .template
                .render(&field.spec.name, &value.to_string(), dev.id.as_str())
                .map_err(|e| out_of_range(e.to_string()))?;
            steps.push(Step {
                field: fi,
                value,
                bytes,
                ack: command.ack.clone().map(|re| (re, command.ack_timeout)),
            });
        }
        Ok(steps)
    }

    fn device_id(&self, di: usize) -> &DeviceId {
        &self.devices[di].id
    }

    fn remember(&mut self, r: &Reading) {
        let Some(di) = self.devices.iter().position(|d| d.id == r.device) else {
            return;
        };
        if let Some(fi) = self.devices[di]
            .fields
            .iter()
            .position(|f| f.spec.name == r.field)
        {
            self.last[di][fi] = Some(r.clone());
        }
    }
}

/// Answers every queued write with `err`.
fn fail_all(jobs: &mut VecDeque<Job>, err: &RequestError) {
    for job in jobs.drain(..) {
        let _ = job.reply.send(Err(err.clone()));
    }
}

async fn wait_write<P>(fut: &mut Option<WriteFuture<P>>) -> (WriteHalf<P>, std::io::Result<()>) {
    match fut {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn start_write<P: Port>(mut w: WriteHalf<P>, bytes: Vec<u8>) -> WriteFuture<P> {
    Box::pin(async move {
        let io = async {
            w.write_all(&bytes).await?;
            w.flush().await
        };
        let result = match tokio::time::timeout(WRITE_IO_TIMEOUT, io).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "a write did not complete in time",
            )),
        };
        (w, result)
    })
}

/// Runs one open port until it fails or the adapter must stop.
pub async fn run<P: Port>(port: P, link: &mut Link, st: &mut State) -> End {
    st.input.reset();
    let opened = Instant::now();
    let mut first_read = true;
    let (mut reader, writer): (ReadHalf<P>, WriteHalf<P>) = tokio::io::split(port);
    let mut writer = Some(writer);
    let mut writing: Option<WriteFuture<P>> = None;
    let mut jobs: VecDeque<Job> = VecDeque::new();
    let mut ack_deadline: Option<Instant> = None;
    let mut buf = vec![0u8; 1024];
    let mut lines = Vec::new();
    let mut readings = Vec::new();
    let end = loop {
        // Start the next command when none is in flight.
        while writing.is_none() && ack_deadline.is_none() {
            let Some(job) = jobs.front() else { break };
            let finished = job.next == job.steps.len();
            if finished || job.reply.is_closed() {
                // The core stopped waiting for an unfinished write: drop the rest of it.
                if let Some(job) = jobs.pop_front().filter(|_| finished) {
                    SerialStats::inc(&st.stats.writes);
                    let _ = job.reply.send(Ok(job.done));
                }
                continue;
            }
            let Some(w) = writer.take() else { break };
            let step = &job.steps[job.next];
            debug!(adapter = %link.adapter, port = %st.port, device = %st.devices[job.device].id,
                command = %crate::stats::preview(&step.bytes), "Writing a command");
            writing = Some(start_write(w, step.bytes.clone()));
        }
        tokio::select! {
            biased;
            () = link.shutdown.cancelled() => break End::Stop,
            req = link.requests.recv(), if link.requests_open => match req {
                Some(req) => st.serve(req, &mut jobs),
                None => link.requests_open = false,
            },
            permit = link.events.reserve(), if !link.out.is_empty() => match (permit, link.out.pop_front()) {
                (Ok(permit), Some(ev)) => permit.send(ev),
                _ => break End::Stop,
            },
            (w, result) = wait_write(&mut writing) => {
                writing = None;
                writer = Some(w);
                if let Err(e) = result {
                    break End::Lost(format!("write failed: {e}"));
                }
                if let Some(job) = jobs.front_mut() {
                    let step = &job.steps[job.next];
                    match &step.ack {
                        Some((_, timeout)) => ack_deadline = Some(Instant::now() + *timeout),
                        None => {
                            let r = Reading::now(
                                st.devices[job.device].id.clone(),
                                st.devices[job.device].fields[step.field].spec.name.clone(),
                                step.value.clone(),
                            );
                            job.done.push(r);
                            job.next += 1;
                        }
                    }
                }
            }
            () = sleep_until_opt(ack_deadline) => {
                ack_deadline = None;
                if let Some(job) = jobs.pop_front() {
                    SerialStats::inc(&st.stats.write_failures);
                    warn!(adapter = %link.adapter, port = %st.port, device = %st.device_id(job.device),
                        "No acknowledgement of a command in time");
                    let _ = job.reply.send(Err(RequestError::Timeout));
                }
            }
            read = reader.read(&mut buf), if link.out.is_empty() => {
                let n = match read {
                    Ok(0) => break End::Lost("the port was closed".into()),
                    Ok(n) => n,
                    Err(e) => break End::Lost(e.to_string()),
                };
                let now = Instant::now();
                if std::mem::take(&mut first_read) && now.duration_since(opened) < PARTIAL_GUARD {
                    st.input.skip_partial();
                }
                st.input.lines(&buf[..n], now, &mut lines);
                for line in lines.drain(..) {
                    if ack_deadline.is_some() {
                        if let Some(job) = jobs.front_mut() {
                            let step = &job.steps[job.next];
                            if step.ack.as_ref().is_some_and(|(re, _)| re.is_match(&line)) {
                                debug!(adapter = %link.adapter, port = %st.port, line = %crate::stats::preview(line.as_bytes()),
                                    "Command acknowledged");
                                let r = Reading::now(
                                    st.devices[job.device].id.clone(),
                                    st.devices[job.device].fields[step.field].spec.name.clone(),
                                    step.value.clone(),
                                );
                                job.done.push(r);
                                job.next += 1;
                                ack_deadline = None;
                                continue;
                            }
                        }
                    }
                    st.input.record(&line, Utc::now(), now, &mut readings);
                    // One record's readings of one device travel together.
                    let mut batch: Vec<Reading> = Vec::new();
                    for r in readings.drain(..) {
                        st.remember(&r);
                        if batch.first().is_some_and(|b| b.device != r.device) {
                            link.out.push_back(AdapterEvent::Readings(std::mem::take(&mut batch)));
                        }
                        batch.push(r);
                    }
                    if !batch.is_empty() {
                        link.out.push_back(AdapterEvent::Readings(batch));
                    }
                }
            }
        }
    };
    let err = match &end {
        End::Stop => RequestError::Closed,
        End::Lost(why) => RequestError::Unreachable(format!("serial port {} lost: {why}", st.port)),
    };
    fail_all(&mut jobs, &err);
    end
}
