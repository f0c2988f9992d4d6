//! The embedded store under `state_dir`: presence subscribers and reading history (SQLite).
//!
//! SQLite calls block, so the store lives on a thread of its own and the async side talks to it
//! through a bounded channel that it never waits on. Readings are written in batches, one
//! transaction per batch window, so that an SD card is not worn by one write per reading; a crash
//! loses at most the last window. WAL mode keeps a killed process's store consistent.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use gateway_api::{DeviceId, Quality, Reading, Value};
use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use crate::alerts::persist::{self as alerts, AlertOp};
use crate::charts::rollup::{self, Buckets};
use crate::charts::Series;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("store query failed: {0}")]
    Query(#[from] rusqlite::Error),
    #[error("the store has stopped")]
    Stopped,
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Readings older than this are pruned; zero turns history off.
    pub history: Duration,
    /// How long readings wait before they are committed together.
    pub batch_window: Duration,
    /// The oldest readings are pruned once the store is larger than this.
    pub max_bytes: Option<u64>,
}

/// One stored subscription: `jid` (a bare JID) sees the presence of `device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub device: String,
    pub jid: String,
}

/// A query for stored readings of one device.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub device: DeviceId,
    /// Empty: every field.
    pub fields: Vec<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// At most this many rows, oldest first.
    pub limit: usize,
}

/// One write from XMPP, for the audit table.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub time: DateTime<Utc>,
    /// Full JID of whoever asked.
    pub requester: String,
    pub device: String,
    pub field: String,
    /// The value before the write, if one was known.
    pub old: Option<String>,
    pub new: String,
    /// `ok`, or the error.
    pub result: String,
}

enum Command {
    Audit(AuditEntry),
    AuditQuery(String, oneshot::Sender<Result<Vec<AuditEntry>, StoreError>>),
    AddSubscriber(Subscription),
    RemoveSubscriber(Subscription),
    /// Readings taken together (one adapter event).
    Record(Vec<Reading>),
    History(
        HistoryQuery,
        oneshot::Sender<Result<Vec<Reading>, StoreError>>,
    ),
    Flush(oneshot::Sender<()>),
    /// Alerts set by chat and the phase of every alert.
    Alert(AlertOp),
    /// One time window of a field's history folded into columns (`chart`), from the rollups of
    /// that resolution or (`None`) from the raw readings.
    Series(
        DeviceId,
        String,
        Series,
        std::ops::Range<i64>,
        Option<i64>,
        oneshot::Sender<Result<Series, StoreError>>,
    ),
    LoadAlerts(oneshot::Sender<Result<alerts::Stored, StoreError>>),
    /// Rolls up the rest of an old store's readings at once (tests).
    #[cfg(test)]
    FinishBackfill(oneshot::Sender<()>),
    /// Prune now (tests, and an operator's future `vacuum`).
    #[cfg_attr(not(test), allow(dead_code))]
    Prune(oneshot::Sender<()>),
}

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub readings_written: AtomicU64,
    /// Readings dropped because the store thread was behind (its queue was full).
    pub readings_dropped: AtomicU64,
    pub write_errors: AtomicU64,
}

/// Handle to the store thread. Cheap to clone; the thread ends when every handle is dropped.
#[derive(Clone)]
pub struct Store {
    /// Owned by every handle; the store thread ends when the last sender is dropped.
    tx: std_mpsc::SyncSender<Command>,
    /// Commands sent and not yet taken by the store thread.
    queued: Arc<AtomicUsize>,
    pub stats: Arc<StoreStats>,
    history_on: bool,
    /// Whether every stored reading is in the rollups (false while an old store migrates).
    rollups_ready: Arc<AtomicBool>,
}

/// Joins the store thread when the gateway stops, after the last batch is committed.
pub struct StoreThread(JoinHandle<()>);

impl StoreThread {
    /// Waits (on a blocking-friendly thread) until the store has committed and closed.
    pub async fn join(self) {
        let _ = tokio::task::spawn_blocking(move || self.0.join()).await;
    }
}

/// The history a chart reads per store command: six hours are about 21,600 rows of a field read
/// once a second, a few milliseconds of SQLite; over rollups, as many buckets.
const SERIES_WINDOW_ROWS: i64 = 6 * 3600;
const SERIES_WINDOW_MS: i64 = SERIES_WINDOW_ROWS * 1000;
/// Commands waiting for the store thread; a reading batch is one command.
const QUEUE: usize = 4096;
/// Readings held for one transaction at most, whatever `commit_interval` says (bounds memory).
const MAX_BATCH: usize = 8192;
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS subscriptions (
    device TEXT NOT NULL,
    jid TEXT NOT NULL,
    since INTEGER NOT NULL,
    PRIMARY KEY (device, jid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS readings (
    device TEXT NOT NULL,
    field TEXT NOT NULL,
    ts INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    num REAL,
    txt TEXT,
    quality INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_by_device_time ON readings (device, ts);
CREATE INDEX IF NOT EXISTS readings_by_time ON readings (ts);
CREATE TABLE IF NOT EXISTS audit (
    ts INTEGER NOT NULL,
    requester TEXT NOT NULL,
    device TEXT NOT NULL,
    field TEXT NOT NULL,
    old TEXT,
    new TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_device ON audit (device, ts);
";

impl Store {
    /// Opens (creating if needed) `state_dir/gateway.db` and returns the handle, the thread to
    /// join at shutdown, and the stored subscriptions.
    pub fn open(
        state_dir: &Path,
        opts: StoreOptions,
    ) -> Result<(Store, StoreThread, Vec<Subscription>), StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::CreateDir {
            path: state_dir.to_owned(),
            source,
        })?;
        let path = state_dir.join("gateway.db");
        let conn = open_connection(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let subs = load_subscriptions(&conn)?;
        let rollups_ready = Arc::new(AtomicBool::new(rollup::prepare(&conn)?));
        let thread_ready = rollups_ready.clone();
        let (tx, rx) = std_mpsc::sync_channel(QUEUE);
        let stats = Arc::new(StoreStats::default());
        let history_on = !opts.history.is_zero();
        let thread_stats = stats.clone();
        let queued = Arc::new(AtomicUsize::new(0));
        let thread_queued = queued.clone();
        let handle = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                Worker::new(conn, opts, thread_stats, thread_ready).run(rx, &thread_queued)
            })
            .map_err(|e| StoreError::CreateDir {
                path: state_dir.to_owned(),
                source: e,
            })?;
        Ok((
            Store {
                tx,
                queued,
                stats,
                history_on,
                rollups_ready,
            },
            StoreThread(handle),
            subs,
        ))
    }

    fn send(&self, cmd: Command) -> bool {
        self.queued.fetch_add(1, Ordering::Relaxed);
        let sent = self.tx.try_send(cmd);
        if sent.is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
        match sent {
            Ok(()) => true,
            Err(std_mpsc::TrySendError::Full(Command::Record(rs))) => {
                self.stats
                    .readings_dropped
                    .fetch_add(rs.len() as u64, Ordering::Relaxed);
                false
            }
            Err(std_mpsc::TrySendError::Full(_)) => {
                tracing::warn!("the store is behind; a subscription change was not saved");
                false
            }
            Err(std_mpsc::TrySendError::Disconnected(_)) => false,
        }
    }

    /// Records a write from XMPP (kept as long as the store; writes are rare).
    pub fn audit(&self, entry: AuditEntry) {
        self.send(Command::Audit(entry));
    }

    /// The audit entries of one device, oldest first.
    pub async fn audit_log(&self, device: &DeviceId) -> Result<Vec<AuditEntry>, StoreError> {
        let (tx, rx) = oneshot::channel();
        if !self.send(Command::AuditQuery(device.to_string(), tx)) {
            return Err(StoreError::Stopped);
        }
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    pub fn add_subscriber(&self, device: &DeviceId, jid: &str) {
        self.send(Command::AddSubscriber(Subscription {
            device: device.to_string(),
            jid: jid.to_owned(),
        }));
    }

    pub fn remove_subscriber(&self, device: &DeviceId, jid: &str) {
        self.send(Command::RemoveSubscriber(Subscription {
            device: device.to_string(),
            jid: jid.to_owned(),
        }));
    }

    /// Queues a reading for the history (a no-op when history is off).
    /// Records readings taken together. Callers that must not lose any wait for
    /// [`Store::has_room`] first: a full queue drops (and counts) them.
    pub fn record(&self, readings: Vec<Reading>) {
        if self.history_on && !readings.is_empty() {
            self.send(Command::Record(readings));
        }
    }

    /// Whether the store thread keeps up: half the queue stays free for everything else, so a
    /// caller that checks this before recording never loses a reading.
    pub fn has_room(&self) -> bool {
        self.queued.load(Ordering::Relaxed) < QUEUE / 2
    }

    pub fn history_enabled(&self) -> bool {
        self.history_on
    }

    pub async fn history(&self, query: HistoryQuery) -> Result<Vec<Reading>, StoreError> {
        let (tx, rx) = oneshot::channel();
        if !self.send(Command::History(query, tx)) {
            return Err(StoreError::Stopped);
        }
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Saves or removes an alert set by chat, or an alert's phase.
    pub fn alert(&self, op: AlertOp) {
        self.send(Command::Alert(op));
    }

    /// The stored alerts set by chat and the phases of all alerts.
    pub async fn stored_alerts(&self) -> Result<alerts::Stored, StoreError> {
        let (tx, rx) = oneshot::channel();
        if !self.send(Command::LoadAlerts(tx)) {
            return Err(StoreError::Stopped);
        }
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// `series` (its interval and width) filled with `field`'s stored numeric readings.
    pub async fn series(
        &self,
        device: &DeviceId,
        field: &str,
        mut series: Series,
    ) -> Result<Series, StoreError> {
        // A long period reads the coarsest rollups that still give each column a bucket; until
        // an old store's migration is done, the raw readings.
        let res = if self.rollups_ready.load(Ordering::Acquire) {
            rollup::resolution_for(series.to - series.from, series.columns.len())
        } else {
            None
        };
        // One window per command: readings arriving meanwhile are taken between two windows
        // instead of waiting for the whole history to be read. Windows over rollups end on a
        // bucket boundary, so only the interval's own ends read raw rows.
        let window = res.map_or(SERIES_WINDOW_MS, |r| r.saturating_mul(SERIES_WINDOW_ROWS));
        let mut at = series.from;
        while at < series.to {
            let mut end = at.saturating_add(window);
            if let Some(r) = res {
                end = rollup::bucket_of(end, r).max(at + 1);
            }
            let end = end.min(series.to);
            let (tx, rx) = oneshot::channel();
            let cmd = Command::Series(device.clone(), field.to_owned(), series, at..end, res, tx);
            if !self.send(cmd) {
                return Err(StoreError::Stopped);
            }
            series = rx.await.map_err(|_| StoreError::Stopped)??;
            at = end;
        }
        Ok(series)
    }

    /// Commits everything queued so far.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Flush(tx)) {
            let _ = rx.await;
        }
    }
}

fn open_connection(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL mode: a power cut may lose the last commits but never corrupts the file.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(alerts::SCHEMA)?;
    Ok(conn)
}

fn load_subscriptions(conn: &Connection) -> Result<Vec<Subscription>, StoreError> {
    let mut stmt = conn.prepare("SELECT device, jid FROM subscriptions ORDER BY device, jid")?;
    let rows = stmt.query_map([], |r| {
        Ok(Subscription {
            device: r.get(0)?,
            jid: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

struct Worker {
    conn: Connection,
    opts: StoreOptions,
    stats: Arc<StoreStats>,
    batch: Vec<Reading>,
    batch_started: Option<Instant>,
    last_prune: Instant,
    /// Set once an old store's readings are all rolled up.
    rollups_ready: Arc<AtomicBool>,
    /// An old store's migration is under way (stopped by an error until the next start).
    backfill_on: bool,
}

const PRUNE_EVERY: Duration = Duration::from_secs(60);

impl Worker {
    fn new(
        conn: Connection,
        opts: StoreOptions,
        stats: Arc<StoreStats>,
        rollups_ready: Arc<AtomicBool>,
    ) -> Self {
        Worker {
            conn,
            opts,
            stats,
            batch: Vec::new(),
            batch_started: None,
            last_prune: Instant::now(),
            backfill_on: !rollups_ready.load(Ordering::Acquire),
            rollups_ready,
        }
    }

    fn backfilling(&self) -> bool {
        self.backfill_on
    }

    /// One slice of an old store's migration to rollups.
    fn backfill_step(&mut self) {
        match rollup::backfill_step(&self.conn) {
            Ok(true) => {
                tracing::info!("store: the history's rollups are complete; long charts use them");
                self.backfill_on = false;
                self.rollups_ready.store(true, Ordering::Release);
            }
            Ok(false) => {}
            Err(e) => {
                // Charts keep folding raw rows; the next start tries again.
                self.note(Err(e), "rolling up stored readings");
                self.backfill_on = false;
            }
        }
    }

    fn run(mut self, rx: std_mpsc::Receiver<Command>, queued: &AtomicUsize) {
        self.prune();
        loop {
            let wait = match self.batch_started {
                // Migrating: only take what is already queued between two slices.
                _ if self.backfilling() => Duration::ZERO,
                Some(t) => self.opts.batch_window.saturating_sub(t.elapsed()),
                None => PRUNE_EVERY,
            };
            match rx.recv_timeout(wait) {
                Ok(cmd) => {
                    queued.fetch_sub(1, Ordering::Relaxed);
                    self.handle(cmd);
                    // Migrating: everything already queued goes before the next slice, so that
                    // readings do not wait a slice each.
                    while self.backfilling() && self.batch.len() < MAX_BATCH {
                        let Ok(cmd) = rx.try_recv() else { break };
                        queued.fetch_sub(1, Ordering::Relaxed);
                        self.handle(cmd);
                    }
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if self.batch.len() >= MAX_BATCH
                || self
                    .batch_started
                    .is_some_and(|t| t.elapsed() >= self.opts.batch_window)
            {
                self.commit();
            }
            if self.last_prune.elapsed() >= PRUNE_EVERY {
                self.prune();
            }
            if self.backfilling() {
                self.backfill_step();
            }
        }
        self.commit();
        // Fold the WAL back into the main file so a copied store is complete.
        if let Err(e) = self.conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
            tracing::debug!(error = %e, "WAL checkpoint at shutdown failed");
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Record(rs) => {
                self.batch_started.get_or_insert_with(Instant::now);
                self.batch.extend(rs);
            }
            Command::Audit(a) => {
                let res = self.conn.execute(
                    "INSERT INTO audit (ts, requester, device, field, old, new, result) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![a.time.timestamp_millis(), a.requester, a.device, a.field, a.old, a.new, a.result],
                );
                self.note(res.map(|_| ()), "recording a write in the audit table");
            }
            Command::AuditQuery(device, reply) => {
                let _ = reply.send(self.audit_entries(&device));
            }
            Command::AddSubscriber(s) => {
                let res = self.conn.execute(
                    "INSERT OR IGNORE INTO subscriptions (device, jid, since) VALUES (?1, ?2, ?3)",
                    params![s.device, s.jid, Utc::now().timestamp()],
                );
                self.note(res.map(|_| ()), "saving a subscription");
            }
            Command::RemoveSubscriber(s) => {
                let res = self.conn.execute(
                    "DELETE FROM subscriptions WHERE device = ?1 AND jid = ?2",
                    params![s.device, s.jid],
                );
                self.note(res.map(|_| ()), "removing a subscription");
            }
            Command::History(q, reply) => {
                // Readings still in the batch must be visible to the query.
                self.commit();
                let _ = reply.send(self.query(&q));
            }
            Command::Alert(op) => {
                let res = alerts::apply(&self.conn, op);
                self.note(res, "saving an alert");
            }
            Command::Series(device, field, mut series, window, res, reply) => {
                self.commit();
                let (conn, device) = (&self.conn, device.as_str());
                let res = match res {
                    Some(r) => {
                        rollup::fill_from_rollups(conn, device, &field, &mut series, window, r)
                    }
                    None => crate::charts::series::fill_from_store(
                        conn,
                        device,
                        &field,
                        &mut series,
                        window,
                    ),
                };
                let _ = reply.send(res.map(|()| series).map_err(StoreError::from));
            }
            Command::LoadAlerts(reply) => {
                let _ = reply.send(alerts::load(&self.conn).map_err(StoreError::from));
            }
            Command::Flush(reply) => {
                self.commit();
                let _ = reply.send(());
            }
            #[cfg(test)]
            Command::FinishBackfill(reply) => {
                while self.backfilling() {
                    self.backfill_step();
                }
                let _ = reply.send(());
            }
            Command::Prune(reply) => {
                self.commit();
                self.prune();
                let _ = reply.send(());
            }
        }
    }

    fn note(&self, res: Result<(), rusqlite::Error>, what: &str) {
        if let Err(e) = res {
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "store: {what} failed");
        }
    }

    fn commit(&mut self) {
        self.batch_started = None;
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let n = batch.len() as u64;
        let backfilling = !self.rollups_ready.load(Ordering::Acquire);
        let res = (|| -> Result<(), rusqlite::Error> {
            let tx = self.conn.transaction()?;
            // The batch's buckets go in with its readings: one upsert per touched bucket.
            let mut buckets = Buckets::default();
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO readings (device, field, ts, kind, num, txt, quality) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for r in &batch {
                    let (kind, num, txt) = encode_value(&r.value);
                    let ts = r.timestamp.timestamp_millis();
                    if let Some(v) = num {
                        buckets.add(r.device.as_str(), &r.field, ts, v);
                    }
                    stmt.execute(params![
                        r.device.as_str(),
                        &*r.field,
                        ts,
                        kind,
                        num,
                        txt,
                        encode_quality(r.quality)
                    ])?;
                }
            }
            if backfilling {
                let first = tx.last_insert_rowid() - batch.len() as i64 + 1;
                rollup::lower_mark(&tx, first)?;
            }
            buckets.write(&tx)?;
            tx.commit()
        })();
        match res {
            Ok(()) => {
                self.stats.readings_written.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => self.note(Err(e), "writing readings"),
        }
    }

    fn prune(&mut self) {
        self.last_prune = Instant::now();
        let cutoff = Utc::now()
            - chrono::Duration::from_std(self.opts.history).unwrap_or(chrono::Duration::MAX);
        let res = self.conn.execute(
            "DELETE FROM readings WHERE ts < ?1",
            params![cutoff.timestamp_millis()],
        );
        match res {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "pruned old readings"),
            Err(e) => self.note(Err(e), "pruning old readings"),
        }
        let res = rollup::prune(&self.conn, cutoff.timestamp_millis());
        self.note(res.map(|_| ()), "pruning old rollups");
        if let Some(max) = self.opts.max_bytes {
            self.enforce_size(max);
        }
    }

    /// Drops the oldest tenth of the readings until the database is below `max` bytes.
    fn enforce_size(&mut self, max: u64) {
        for _ in 0..10 {
            let size: i64 = self
                .conn
                .query_row(
                    "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()",
                    [],
                    |r| r.get(0),
                )
                .unwrap_or(0);
            if size as u64 <= max {
                return;
            }
            let res = self.conn.execute(
                "DELETE FROM readings WHERE rowid IN (SELECT rowid FROM readings ORDER BY ts LIMIT (SELECT count(*) / 10 + 1 FROM readings))",
                [],
            );
            let oldest: Result<Option<i64>, _> =
                self.conn
                    .query_row("SELECT min(ts) FROM readings", [], |r| r.get(0));
            if let Ok(Some(oldest)) = oldest {
                let res = rollup::prune(&self.conn, oldest);
                self.note(res.map(|_| ()), "pruning rollups for size");
            }
            match res {
                Ok(0) => return,
                Ok(n) => tracing::info!(
                    rows = n,
                    max_bytes = max,
                    "store over history_max_mb: pruned the oldest readings"
                ),
                Err(e) => return self.note(Err(e), "pruning for size"),
            }
        }
    }

    fn audit_entries(&self, device: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ts, requester, device, field, old, new, result FROM audit WHERE device = ?1 ORDER BY ts, rowid",
        )?;
        let rows = stmt.query_map(params![device], |r| {
            Ok(AuditEntry {
                time: Utc
                    .timestamp_millis_opt(r.get(0)?)
                    .single()
                    .unwrap_or_default(),
                requester: r.get(1)?,
                device: r.get(2)?,
                field: r.get(3)?,
                old: r.get(4)?,
                new: r.get(5)?,
                result: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn query(&self, q: &HistoryQuery) -> Result<Vec<Reading>, StoreError> {
        let from = q.from.map(|t| t.timestamp_millis()).unwrap_or(i64::MIN);
        let to = q.to.map(|t| t.timestamp_millis()).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT field, ts, kind, num, txt, quality FROM readings \
             WHERE device = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts, rowid",
        )?;
        let mut rows = stmt.query(params![q.device.as_str(), from, to])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let field: String = row.get(0)?;
            if !q.fields.is_empty() && !q.fields.contains(&field) {
                continue;
            }
            let ts: i64 = row.get(1)?;
            let Some(value) = decode_value(row.get(2)?, row.get(3)?, row.get(4)?) else {
                continue;
            };
            out.push(Reading {
                device: q.device.clone(),
                field: field.into(),
                value,
                timestamp: Utc.timestamp_millis_opt(ts).single().unwrap_or_default(),
                quality: decode_quality(row.get(5)?),
            });
            if out.len() >= q.limit {
                break;
            }
        }
        Ok(out)
    }
}

fn encode_value(v: &Value) -> (i64, Option<f64>, Option<String>) {
    match v {
        Value::Bool(b) => (0, Some(if *b { 1.0 } else { 0.0 }), None),
        // Integers go in as text too, so that 64-bit values beyond 2^53 survive exactly.
        Value::Int(i) => (1, Some(*i as f64), Some(i.to_string())),
        Value::Float(f) => (2, Some(*f), None),
        Value::Text(t) => (3, None, Some(t.clone())),
    }
}

fn decode_value(kind: i64, num: Option<f64>, txt: Option<String>) -> Option<Value> {
    Some(match kind {
        0 => Value::Bool(num? != 0.0),
        1 => Value::Int(match txt {
            Some(t) => t.parse().ok()?,
            None => num? as i64,
        }),
        2 => Value::Float(num?),
        3 => Value::Text(txt?),
        _ => return None,
    })
}

fn encode_quality(q: Quality) -> i64 {
    match q {
        Quality::Good => 0,
        Quality::Uncertain => 1,
        Quality::Bad => 2,
    }
}

fn decode_quality(q: i64) -> Quality {
    match q {
        1 => Quality::Uncertain,
        2 => Quality::Bad,
        _ => Quality::Good,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::Series;

    fn opts() -> StoreOptions {
        StoreOptions {
            history: Duration::from_secs(3600),
            batch_window: Duration::from_millis(50),
            max_bytes: None,
        }
    }

    fn dev(s: &str) -> DeviceId {
        DeviceId::new(s).expect("valid id")
    }

    #[tokio::test]
    async fn subscriptions_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, thread, subs) = Store::open(dir.path(), opts()).expect("open");
        assert!(subs.is_empty());
        store.add_subscriber(&dev("boiler"), "alice@example.org");
        store.add_subscriber(&dev("boiler"), "alice@example.org");
        store.add_subscriber(&dev("pump"), "bob@example.org");
        store.remove_subscriber(&dev("pump"), "bob@example.org");
        store.flush().await;
        drop(store);
        thread.join().await;
        let (_store, _thread, subs) = Store::open(dir.path(), opts()).expect("reopen");
        assert_eq!(
            subs,
            vec![Subscription {
                device: "boiler".into(),
                jid: "alice@example.org".into()
            }]
        );
    }

    #[tokio::test]
    async fn writes_are_audited() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _thread, _) = Store::open(dir.path(), opts()).expect("open");
        let entry = AuditEntry {
            time: Utc::now(),
            requester: "alice@example.org/phone".into(),
            device: "pump".into(),
            field: "speed".into(),
            old: Some("1200".into()),
            new: "900".into(),
            result: "ok".into(),
        };
        store.audit(entry.clone());
        let got = store.audit_log(&dev("pump")).await.expect("query");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].requester, entry.requester);
        assert_eq!(got[0].old.as_deref(), Some("1200"));
        assert!(store
            .audit_log(&dev("other"))
            .await
            .expect("query")
            .is_empty());
    }

    #[tokio::test]
    async fn the_size_cap_prunes_the_oldest_readings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let small = StoreOptions {
            max_bytes: Some(64 * 1024),
            ..opts()
        };
        let (store, _thread, _) = Store::open(dir.path(), small).expect("open");
        let t0 = Utc::now() - chrono::Duration::seconds(3000);
        for i in 0..3000 {
            store.record(vec![Reading {
                device: dev("boiler"),
                field: "f".into(),
                value: Value::Text(format!("{i:0>40}")),
                timestamp: t0 + chrono::Duration::seconds(i),
                quality: Quality::Good,
            }]);
        }
        store.flush().await;
        store.send(Command::Flush(oneshot::channel().0));
        let (tx, rx) = oneshot::channel();
        store.send(Command::Prune(tx));
        rx.await.expect("pruned");
        let rows = store
            .history(HistoryQuery {
                device: dev("boiler"),
                fields: vec![],
                from: None,
                to: None,
                limit: 10_000,
            })
            .await
            .expect("query");
        assert!(rows.len() < 3000, "some rows were pruned ({})", rows.len());
        // What remains is the newest.
        assert_eq!(
            rows.last().map(|r| r.value.clone()),
            Some(Value::Text(format!("{:0>40}", 2999)))
        );
    }

    #[tokio::test]
    async fn a_series_read_window_by_window_matches_the_fold_in_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let week = StoreOptions {
            history: Duration::from_secs(7 * 86_400),
            ..opts()
        };
        let (store, _thread, _) = Store::open(dir.path(), week).expect("open");
        // Two days, a reading a minute (whole numbers: sums are exact in any order), across
        // several store windows; plus a text reading and another field, which do not count.
        // On a minute boundary: each reading starts its own minute bucket, so the fold over
        // rollups puts it in the same column as the raw fold.
        let t0 =
            rollup::bucket_of(Utc::now().timestamp_millis(), rollup::MINUTE_MS) - 2 * 86_400_000;
        let mut expected = Series::new(t0, t0 + 2 * 86_400_000, 97);
        let mut batch = Vec::new();
        for i in 0..2 * 1440 {
            let (ts, v) = (t0 + i * 60_000, (i % 50) as f64 - 20.0);
            expected.add(ts, v);
            let at = Utc.timestamp_millis_opt(ts).single().expect("ts");
            batch.push(Reading {
                device: dev("freezer"),
                field: "t".into(),
                value: Value::Int(v as i64),
                timestamp: at,
                quality: Quality::Good,
            });
            batch.push(Reading {
                device: dev("freezer"),
                field: "other".into(),
                value: Value::Float(1e9),
                timestamp: at,
                quality: Quality::Good,
            });
        }
        batch.push(Reading::now(
            dev("freezer"),
            "t".into(),
            Value::Text("x".into()),
        ));
        store.record(batch);
        let got = store
            .series(
                &dev("freezer"),
                "t",
                Series::new(t0, t0 + 2 * 86_400_000, 97),
            )
            .await
            .expect("series");
        assert_eq!(got, expected);
        assert_eq!(got.total().map(|c| c.count), Some(2 * 1440));
    }

    /// `days` of one reading a minute from `t0`: (timestamp, value).
    fn minute_values(t0: i64, days: i64) -> impl Iterator<Item = (i64, f64)> {
        (0..days * 1440).map(move |i| {
            let ts = t0 + i * 60_000 + (i % 7) * 1000;
            (ts, (i as f64 / 97.0).sin() * 20.0 + (i % 13) as f64 * 0.1)
        })
    }

    /// `days` of one reading a minute of `freezer`'s `t` from `t0`, in memory and in the store.
    fn minute_readings(store: &Store, t0: i64, days: i64, expected: &mut Series) {
        let mut batch = Vec::new();
        for (ts, v) in minute_values(t0, days) {
            expected.add(ts, v);
            batch.push(Reading {
                device: dev("freezer"),
                field: "t".into(),
                value: Value::Float(v),
                timestamp: Utc.timestamp_millis_opt(ts).single().expect("ts"),
                quality: Quality::Good,
            });
        }
        store.record(batch);
    }

    /// Min, max and count equal; the mean within float rounding (sums are added in another order).
    fn assert_same_columns(got: &Series, expected: &Series) {
        assert_eq!(got.columns.len(), expected.columns.len());
        for (i, (g, e)) in got.columns.iter().zip(&expected.columns).enumerate() {
            match (g, e) {
                (None, None) => {}
                (Some(g), Some(e)) => {
                    assert_eq!(
                        (g.min, g.max, g.count),
                        (e.min, e.max, e.count),
                        "column {i}"
                    );
                    assert!((g.mean() - e.mean()).abs() < 1e-9, "column {i} mean");
                }
                _ => panic!("column {i}: {g:?} vs {e:?}"),
            }
        }
    }

    /// Drops every raw reading behind the store's back: what a chart still shows came from the
    /// rollups.
    fn delete_raw_readings(dir: &Path) {
        let conn = Connection::open(dir.join("gateway.db")).expect("second connection");
        conn.busy_timeout(Duration::from_secs(30)).expect("timeout");
        conn.execute("DELETE FROM readings", []).expect("delete");
    }

    fn long_opts() -> StoreOptions {
        StoreOptions {
            history: Duration::from_secs(90 * 86_400),
            ..opts()
        }
    }

    #[tokio::test]
    async fn a_chart_over_rollups_equals_the_fold_over_raw_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _thread, _) = Store::open(dir.path(), long_opts()).expect("open");
        // 40 days on hour boundaries in 480 columns: two hourly buckets per column.
        let t0 =
            rollup::bucket_of(Utc::now().timestamp_millis(), rollup::HOUR_MS) - 41 * 86_400_000;
        let (from, to) = (t0, t0 + 40 * 86_400_000);
        let mut expected = Series::new(from, to, 480);
        minute_readings(&store, t0, 40, &mut expected);
        // An unaligned interval: its partial edge buckets come from the raw rows.
        let (ufrom, uto) = (t0 + 7 * 60_000 + 13_000, t0 + 20 * 86_400_000 + 5_000);
        let unaligned = store
            .series(&dev("freezer"), "t", Series::new(ufrom, uto, 97))
            .await
            .expect("series");
        let mut raw = Series::new(ufrom, uto, 97);
        minute_values(t0, 40).for_each(|(ts, v)| raw.add(ts, v));
        let (g, e) = (unaligned.total().expect("some"), raw.total().expect("some"));
        assert_eq!((g.min, g.max, g.count), (e.min, e.max, e.count));
        assert!((g.mean() - e.mean()).abs() < 1e-9);
        delete_raw_readings(dir.path());
        let got = store
            .series(&dev("freezer"), "t", Series::new(from, to, 480))
            .await
            .expect("series");
        assert_same_columns(&got, &expected);
        assert_eq!(got.total().map(|c| c.count), Some(40 * 1440));
    }

    #[tokio::test]
    async fn an_old_store_is_rolled_up_when_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t0 =
            rollup::bucket_of(Utc::now().timestamp_millis(), rollup::HOUR_MS) - 31 * 86_400_000;
        let (from, to) = (t0, t0 + 30 * 86_400_000);
        let mut expected = Series::new(from, to, 360);
        {
            let (store, thread, _) = Store::open(dir.path(), long_opts()).expect("open");
            minute_readings(&store, t0, 30, &mut expected);
            store.flush().await;
            drop(store);
            thread.join().await;
        }
        // The store as it was before it kept rollups.
        let conn = Connection::open(dir.path().join("gateway.db")).expect("open");
        conn.execute_batch("DROP TABLE rollups; DROP TABLE rollup_backfill;")
            .expect("drop");
        drop(conn);
        let (store, _thread, _) = Store::open(dir.path(), long_opts()).expect("reopen");
        let (tx, rx) = oneshot::channel();
        store.send(Command::FinishBackfill(tx));
        rx.await.expect("rolled up");
        delete_raw_readings(dir.path());
        let got = store
            .series(&dev("freezer"), "t", Series::new(from, to, 360))
            .await
            .expect("series");
        assert_same_columns(&got, &expected);
        assert_eq!(got.total().map(|c| c.count), Some(30 * 1440));
    }

    #[tokio::test]
    async fn history_returns_the_readings_inside_the_interval() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _thread, _) = Store::open(dir.path(), opts()).expect("open");
        let t0 = Utc::now() - chrono::Duration::seconds(100);
        let values = [
            Value::Float(1.5),
            Value::Int(-3),
            Value::Bool(true),
            Value::Text("x".into()),
        ];
        for (i, v) in values.iter().enumerate() {
            store.record(vec![Reading {
                device: dev("boiler"),
                field: "f".into(),
                value: v.clone(),
                timestamp: t0 + chrono::Duration::seconds(10 * i as i64),
                quality: Quality::Good,
            }]);
        }
        store.record(vec![Reading::now(
            dev("other"),
            "f".into(),
            Value::Float(9.0),
        )]);
        let all = store
            .history(HistoryQuery {
                device: dev("boiler"),
                fields: vec![],
                from: None,
                to: None,
                limit: 100,
            })
            .await
            .expect("query");
        assert_eq!(
            all.iter().map(|r| r.value.clone()).collect::<Vec<_>>(),
            values.to_vec()
        );
        let some = store
            .history(HistoryQuery {
                device: dev("boiler"),
                fields: vec!["f".into()],
                from: Some(t0 + chrono::Duration::seconds(5)),
                to: Some(t0 + chrono::Duration::seconds(20)),
                limit: 100,
            })
            .await
            .expect("query");
        assert_eq!(some.len(), 2);
        assert_eq!(some[0].value, Value::Int(-3));
        assert_eq!(
            some[0].timestamp.timestamp_millis(),
            (t0 + chrono::Duration::seconds(10)).timestamp_millis()
        );
    }
}
