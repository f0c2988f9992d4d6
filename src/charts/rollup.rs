//! Pre-aggregated history for long charts: min, max, sum and count of every numeric field per
//! minute and per hour (the store's `rollups` table).
//!
//! A year of one-second readings is 31.5 million rows, seconds of SQLite to fold even with the
//! index; the same year is 8,760 hourly rows. The store adds each committed batch to its buckets
//! in the same transaction (one upsert per touched bucket, not per reading), prunes them with the
//! readings, and a chart picks the coarsest resolution that still gives every pixel column at
//! least one bucket, reading the partial buckets at the interval's edges from the raw rows so
//! that the totals stay exact. A store from before the rollups is rolled up on the store thread a
//! slice of rows at a time, between other commands; until that is done, charts fold raw rows.

use std::collections::HashMap;
use std::ops::Range;

use rusqlite::{params, Connection, OptionalExtension};

use super::series::{fill_from_store, Column, Series};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
/// Bucket lengths the store keeps, coarsest first.
pub const RESOLUTIONS: [i64; 2] = [HOUR_MS, MINUTE_MS];
/// Rows of an old store rolled up per step of the migration: a few tens of milliseconds on a Pi,
/// so readings and chat commands queued meanwhile wait no longer than that.
pub const BACKFILL_ROWS: i64 = 20_000;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rollups (
    device TEXT NOT NULL,
    field TEXT NOT NULL,
    res INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    vmin REAL NOT NULL,
    vmax REAL NOT NULL,
    vsum REAL NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (device, field, res, bucket)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollups_by_time ON rollups (bucket);
CREATE TABLE IF NOT EXISTS rollup_backfill (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    below_rowid INTEGER NOT NULL
);
";

/// The start of the bucket of length `res` that holds `ts` (also before 1970).
pub fn bucket_of(ts: i64, res: i64) -> i64 {
    ts.div_euclid(res) * res
}

/// The first bucket start at or after `ts`.
pub fn bucket_at_or_after(ts: i64, res: i64) -> i64 {
    let b = bucket_of(ts, res);
    if b == ts {
        b
    } else {
        b.saturating_add(res)
    }
}

/// The coarsest resolution with at least one bucket per column over `span_ms`; `None`: the span
/// is short enough to fold the raw readings.
pub fn resolution_for(span_ms: i64, columns: usize) -> Option<i64> {
    RESOLUTIONS
        .into_iter()
        .find(|&r| span_ms / r >= columns.max(1) as i64)
}

/// Readings folded per (device, field, resolution, bucket) before they are written.
#[derive(Debug, Default)]
pub struct Buckets(HashMap<(String, String), HashMap<(i64, i64), Column>>);

impl Buckets {
    /// Adds one numeric reading to its minute and hour buckets; NaN (stored as no number) is
    /// left out, as the raw fold leaves it out.
    pub fn add(&mut self, device: &str, field: &str, ts: i64, v: f64) {
        if v.is_nan() {
            return;
        }
        let per = match self.0.get_mut(&(device.to_owned(), field.to_owned())) {
            Some(per) => per,
            None => self
                .0
                .entry((device.to_owned(), field.to_owned()))
                .or_default(),
        };
        for res in RESOLUTIONS {
            let one = Column {
                min: v,
                max: v,
                sum: v,
                count: 1,
            };
            per.entry((res, bucket_of(ts, res)))
                .and_modify(|c| c.merge(&one))
                .or_insert(one);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds the folded buckets to the table (inside the caller's transaction).
    pub fn write(&self, conn: &Connection) -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached(
            "INSERT INTO rollups (device, field, res, bucket, vmin, vmax, vsum, n) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (device, field, res, bucket) DO UPDATE SET \
             vmin = min(vmin, excluded.vmin), vmax = max(vmax, excluded.vmax), \
             vsum = vsum + excluded.vsum, n = n + excluded.n",
        )?;
        for ((device, field), per) in &self.0 {
            for (&(res, bucket), c) in per {
                stmt.execute(params![
                    device,
                    field,
                    res,
                    bucket,
                    c.min,
                    c.max,
                    c.sum,
                    c.count as i64
                ])?;
            }
        }
        Ok(())
    }
}

/// Creates the tables. A store that had readings before it had rollups gets a migration mark:
/// rows below it are rolled up by [`backfill_step`]. Returns whether the rollups are complete.
pub fn prepare(conn: &Connection) -> rusqlite::Result<bool> {
    let tx = conn.unchecked_transaction()?;
    let existed: i64 = tx.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'rollups'",
        [],
        |r| r.get(0),
    )?;
    tx.execute_batch(SCHEMA)?;
    if existed == 0 {
        tx.execute(
            // `max(rowid)` is one look at the b-tree; `count(*)` would read every row.
            "INSERT OR REPLACE INTO rollup_backfill (id, below_rowid) \
             SELECT 0, top + 1 FROM (SELECT max(rowid) AS top FROM readings) WHERE top IS NOT NULL",
            [],
        )?;
    }
    let pending = backfill_mark(&tx)?.is_some();
    tx.commit()?;
    Ok(!pending)
}

fn backfill_mark(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT below_rowid FROM rollup_backfill", [], |r| r.get(0))
        .optional()
}

/// A batch was just inserted from `first_rowid` on while a migration is pending. SQLite gives a
/// new row the largest rowid plus one, so a rowid below the mark means every row from there up
/// was pruned: the mark comes down so that the new rows (already rolled up) are not counted
/// twice.
pub fn lower_mark(conn: &Connection, first_rowid: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE rollup_backfill SET below_rowid = ?1 WHERE below_rowid > ?1",
        params![first_rowid],
    )?;
    Ok(())
}

/// Rolls up the next slice of an old store's readings, from the highest rowid down, in one
/// transaction with the moved mark (a crash repeats nothing). Returns whether it is done.
pub fn backfill_step(conn: &Connection) -> rusqlite::Result<bool> {
    let tx = conn.unchecked_transaction()?;
    let Some(below) = backfill_mark(&tx)? else {
        return Ok(true);
    };
    let lowest: Option<i64> = tx.query_row("SELECT min(rowid) FROM readings", [], |r| r.get(0))?;
    let lo = below.saturating_sub(BACKFILL_ROWS);
    let mut buckets = Buckets::default();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT device, field, ts, num FROM readings \
             WHERE rowid >= ?1 AND rowid < ?2 AND num IS NOT NULL",
        )?;
        let mut rows = stmt.query(params![lo, below])?;
        while let Some(r) = rows.next()? {
            let (device, field): (String, String) = (r.get(0)?, r.get(1)?);
            buckets.add(&device, &field, r.get(2)?, r.get(3)?);
        }
    }
    buckets.write(&tx)?;
    let done = lowest.is_none_or(|l| lo <= l);
    if done {
        tx.execute("DELETE FROM rollup_backfill", [])?;
    } else {
        tx.execute("UPDATE rollup_backfill SET below_rowid = ?1", params![lo])?;
    }
    tx.commit()?;
    Ok(done)
}

/// Drops buckets that end at or before `cutoff` (the oldest reading the store keeps).
pub fn prune(conn: &Connection, cutoff: i64) -> rusqlite::Result<usize> {
    // The first condition lets the index on `bucket` narrow the scan.
    conn.execute(
        "DELETE FROM rollups WHERE bucket <= ?1 - ?2 AND bucket + res <= ?1",
        params![cutoff, MINUTE_MS],
    )
}

/// Adds `field`'s history in `window` to `series` from buckets of length `res`; the partial
/// buckets at the window's ends come from the raw readings.
pub fn fill_from_rollups(
    conn: &Connection,
    device: &str,
    field: &str,
    series: &mut Series,
    window: Range<i64>,
    res: i64,
) -> rusqlite::Result<()> {
    let (lo, hi) = (window.start.max(series.from), window.end.min(series.to));
    if lo >= hi {
        return Ok(());
    }
    let (first, end) = (bucket_at_or_after(lo, res), bucket_of(hi, res));
    if first >= end {
        return fill_from_store(conn, device, field, series, lo..hi);
    }
    if lo < first {
        fill_from_store(conn, device, field, series, lo..first)?;
    }
    let mut stmt = conn.prepare_cached(
        "SELECT bucket, vmin, vmax, vsum, n FROM rollups \
         WHERE device = ?1 AND field = ?2 AND res = ?3 AND bucket >= ?4 AND bucket < ?5",
    )?;
    let mut rows = stmt.query(params![device, field, res, first, end])?;
    while let Some(r) = rows.next()? {
        let count: i64 = r.get(4)?;
        if let (Some(i), true) = (series.column_of(r.get(0)?), count > 0) {
            series.merge_into(
                i,
                Column {
                    min: r.get(1)?,
                    max: r.get(2)?,
                    sum: r.get(3)?,
                    count: count as u64,
                },
            );
        }
    }
    if end < hi {
        fill_from_store(conn, device, field, series, end..hi)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_start_on_their_boundary_also_before_1970() {
        assert_eq!(bucket_of(0, MINUTE_MS), 0);
        assert_eq!(bucket_of(59_999, MINUTE_MS), 0);
        assert_eq!(bucket_of(60_000, MINUTE_MS), 60_000);
        assert_eq!(bucket_of(-1, MINUTE_MS), -60_000);
        assert_eq!(bucket_of(7_199_999, HOUR_MS), HOUR_MS);
        assert_eq!(bucket_at_or_after(60_000, MINUTE_MS), 60_000);
        assert_eq!(bucket_at_or_after(60_001, MINUTE_MS), 120_000);
        assert_eq!(bucket_at_or_after(-59_999, MINUTE_MS), 0);
        assert_eq!(bucket_at_or_after(i64::MAX - 5, HOUR_MS), i64::MAX);
    }

    #[test]
    fn the_coarsest_resolution_with_a_bucket_per_column_is_chosen() {
        const DAY: i64 = 86_400_000;
        assert_eq!(resolution_for(365 * DAY, 720), Some(HOUR_MS));
        assert_eq!(resolution_for(30 * DAY, 720), Some(HOUR_MS));
        assert_eq!(resolution_for(30 * DAY - 1, 720), Some(MINUTE_MS));
        assert_eq!(resolution_for(DAY, 720), Some(MINUTE_MS));
        assert_eq!(resolution_for(12 * HOUR_MS, 720), Some(MINUTE_MS));
        assert_eq!(resolution_for(6 * HOUR_MS, 720), None);
        assert_eq!(resolution_for(0, 0), None);
    }

    #[test]
    fn readings_fold_into_minute_and_hour_buckets() {
        let mut b = Buckets::default();
        b.add("d", "t", 0, 1.0);
        b.add("d", "t", 59_999, 3.0);
        b.add("d", "t", 60_000, -2.0);
        b.add("d", "t", 61_000, f64::NAN);
        b.add("e", "t", 0, 100.0);
        let per = &b.0[&("d".to_owned(), "t".to_owned())];
        assert_eq!(
            per[&(MINUTE_MS, 0)],
            Column {
                min: 1.0,
                max: 3.0,
                sum: 4.0,
                count: 2
            }
        );
        assert_eq!(per[&(MINUTE_MS, 60_000)].count, 1);
        assert_eq!(
            per[&(HOUR_MS, 0)],
            Column {
                min: -2.0,
                max: 3.0,
                sum: 2.0,
                count: 3
            }
        );
        assert_eq!(per.len(), 3);
        assert_eq!(b.0.len(), 2);
    }

    fn counts(conn: &Connection) -> Vec<(i64, i64, i64)> {
        let mut stmt = conn
            .prepare("SELECT res, bucket, n FROM rollups ORDER BY res, bucket")
            .expect("prepare");
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    }

    #[test]
    fn a_migration_counts_each_reading_once_and_buckets_are_pruned_whole() {
        let conn = Connection::open_in_memory().expect("sqlite");
        conn.execute_batch(
            "CREATE TABLE readings (device TEXT, field TEXT, ts INTEGER, num REAL);
             INSERT INTO readings VALUES ('d', 't', 1000, 1.0), ('d', 't', 2000, NULL),
                                         ('d', 't', 61000, 5.0);",
        )
        .expect("old store");
        assert!(!prepare(&conn).expect("prepare"), "a migration is pending");
        // Every old row is pruned, then a batch arrives: SQLite reuses rowid 1.
        conn.execute_batch("DELETE FROM readings; INSERT INTO readings VALUES ('d', 't', 0, 7.0);")
            .expect("prune and insert");
        let first = conn.last_insert_rowid();
        let mut batch = Buckets::default();
        batch.add("d", "t", 0, 7.0);
        batch.write(&conn).expect("write");
        lower_mark(&conn, first).expect("mark");
        while !backfill_step(&conn).expect("step") {}
        assert_eq!(counts(&conn), [(MINUTE_MS, 0, 1), (HOUR_MS, 0, 1)]);
        assert!(prepare(&conn).expect("reopen"), "nothing left to migrate");

        let mut more = Buckets::default();
        more.add("d", "t", 59_999, 1.0);
        more.add("d", "t", 60_000, 2.0);
        more.write(&conn).expect("write");
        assert_eq!(
            prune(&conn, 60_000).expect("prune"),
            1,
            "the first minute ended"
        );
        assert_eq!(
            counts(&conn),
            [(MINUTE_MS, 60_000, 1), (HOUR_MS, 0, 3)],
            "the hour still holds newer readings"
        );
    }
}
