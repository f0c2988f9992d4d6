//! Downsampling: readings in, one [`Column`] per pixel (or character) column out.
//!
//! Each column keeps the minimum and maximum (so a spike is never averaged away), the sum and
//! the count (for the mean). Folding is one pass with memory for the columns only: a year of
//! one-second readings (31.5 million) fits the same few kilobytes as a day of them.

/// The readings that fell into one column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Column {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
}

impl Column {
    fn one(v: f64) -> Self {
        Column {
            min: v,
            max: v,
            sum: v,
            count: 1,
        }
    }

    fn add(&mut self, v: f64) {
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
        self.count += 1;
    }

    pub(crate) fn merge(&mut self, other: &Column) {
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.count += other.count;
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// A field's history over `[from, to)` (milliseconds) in `columns.len()` equal slices; a slice
/// without readings is `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub from: i64,
    pub to: i64,
    pub columns: Vec<Option<Column>>,
}

impl Series {
    pub fn new(from: i64, to: i64, width: usize) -> Self {
        Series {
            from,
            to: to.max(from + 1),
            columns: vec![None; width.max(1)],
        }
    }

    /// The column a timestamp falls into, if inside the interval.
    pub fn column_of(&self, ts: i64) -> Option<usize> {
        if ts < self.from || ts >= self.to {
            return None;
        }
        let span = (self.to - self.from) as i128;
        let i = ((ts - self.from) as i128 * self.columns.len() as i128 / span) as usize;
        Some(i.min(self.columns.len() - 1))
    }

    /// Adds one reading; readings outside the interval or not finite are ignored.
    pub fn add(&mut self, ts: i64, v: f64) {
        if !v.is_finite() {
            return;
        }
        if let Some(i) = self.column_of(ts) {
            match &mut self.columns[i] {
                Some(c) => c.add(v),
                slot @ None => *slot = Some(Column::one(v)),
            }
        }
    }

    /// Adds a column computed elsewhere (a slice of the store's SQL fold) to column `i`.
    pub fn merge_into(&mut self, i: usize, c: Column) {
        if let Some(slot) = self.columns.get_mut(i) {
            match slot {
                Some(a) => a.merge(&c),
                None => *slot = Some(c),
            }
        }
    }

    /// The same interval in `width` columns (fewer than this one's), merging neighbours.
    pub fn resample(&self, width: usize) -> Series {
        let mut out = Series::new(self.from, self.to, width);
        let (n, w) = (self.columns.len(), out.columns.len());
        for (i, c) in self.columns.iter().enumerate() {
            let Some(c) = c else { continue };
            let slot = &mut out.columns[(i * w / n).min(w - 1)];
            *slot = Some(match *slot {
                None => *c,
                Some(mut a) => {
                    a.merge(c);
                    a
                }
            });
        }
        out
    }

    /// The whole interval as one column: overall min, max and mean; `None` without readings.
    pub fn total(&self) -> Option<Column> {
        self.columns.iter().flatten().fold(None, |acc, c| {
            Some(match acc {
                None => *c,
                Some(mut a) => {
                    a.merge(c);
                    a
                }
            })
        })
    }
}

/// The same fold in SQL over the store's `readings` table, in bounded memory (one row per
/// column comes back): the readings of `field` of `device` in `window` (a part of the series'
/// interval) are added to the series' columns. The store calls this a window at a time, so that
/// a long history is read in slices with other work in between.
pub fn fill_from_store(
    conn: &rusqlite::Connection,
    device: &str,
    field: &str,
    series: &mut Series,
    window: std::ops::Range<i64>,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT (ts - ?3) * ?5 / (?4 - ?3) AS col, MIN(num), MAX(num), SUM(num), COUNT(num) \
         FROM readings WHERE device = ?1 AND field = ?2 AND ts >= ?6 AND ts < ?7 AND num IS NOT NULL \
         GROUP BY col",
    )?;
    let width = series.columns.len() as i64;
    let (lo, hi) = (window.start.max(series.from), window.end.min(series.to));
    let mut rows = stmt.query(rusqlite::params![
        device,
        field,
        series.from,
        series.to,
        width,
        lo,
        hi
    ])?;
    while let Some(r) = rows.next()? {
        let col: i64 = r.get(0)?;
        let count: i64 = r.get(4)?;
        if count > 0 {
            series.merge_into(
                col.clamp(0, width - 1) as usize,
                Column {
                    min: r.get(1)?,
                    max: r.get(2)?,
                    sum: r.get(3)?,
                    count: count as u64,
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_fall_into_equal_columns_keeping_spikes() {
        let mut s = Series::new(0, 1000, 4);
        for ts in 0..1000 {
            s.add(ts, 1.0);
        }
        s.add(600, 99.0);
        s.add(-1, 1e9);
        s.add(1000, 1e9);
        s.add(10, f64::NAN);
        let cols: Vec<Column> = s.columns.iter().map(|c| c.expect("filled")).collect();
        assert_eq!(
            cols.iter().map(|c| c.count).collect::<Vec<_>>(),
            [250, 250, 251, 250]
        );
        assert_eq!(cols[2].max, 99.0, "a spike survives downsampling");
        assert_eq!(cols[0].mean(), 1.0);
        let total = s.total().expect("readings");
        assert_eq!((total.min, total.max, total.count), (1.0, 99.0, 1001));
    }

    #[test]
    fn resampling_merges_neighbours() {
        let mut s = Series::new(0, 100, 10);
        for ts in 0..100 {
            s.add(ts, ts as f64);
        }
        let r = s.resample(4);
        assert_eq!(r.columns.len(), 4);
        let first = r.columns[0].expect("filled");
        assert_eq!((first.min, first.count), (0.0, 30));
        assert_eq!(r.total(), s.total());
    }

    #[test]
    fn empty_columns_stay_empty_and_odd_intervals_do_not_panic() {
        let mut s = Series::new(0, 100, 10);
        s.add(95, 3.0);
        assert!(s.columns[..9].iter().all(Option::is_none));
        assert_eq!(s.total().map(|c| c.max), Some(3.0));
        let mut s = Series::new(50, 50, 0);
        assert_eq!(s.columns.len(), 1);
        s.add(50, 1.0);
        assert_eq!(s.total().map(|c| c.count), Some(1));
        let s = Series::new(i64::MIN / 2, i64::MAX / 2, 3);
        assert_eq!(s.column_of(i64::MAX / 2 - 1), Some(2));
    }
}
