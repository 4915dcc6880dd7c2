//! Per-minute and per-hour rollups of the prediction log (migration 0010): what the writer adds with
//! each batch it inserts, and the latency histogram the stats read their percentiles from. Folding is
//! pure; `add` is the one statement that writes.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sqlx::PgConnection;

use super::queries::Prediction;

/// Latency bucket bounds in microseconds: ceil(2^(j/8)) for j = 24..=208, eight buckets per doubling
/// from 8 us to 2^26 us (67 s). Migration 0010's `prediction_latency_bounds()` holds the same numbers.
pub static BOUNDS: LazyLock<Vec<i64>> =
    LazyLock::new(|| (24..=208).map(|j| 2f64.powf(f64::from(j) / 8.0).ceil() as i64).collect());

/// Buckets in a histogram: one under the first bound, one from each bound on.
pub fn buckets() -> usize {
    BOUNDS.len() + 1
}

/// The bucket of a latency, as SQL's `width_bucket(total_us, bounds)`: how many bounds are at or below it.
pub fn bucket(total_us: i64) -> usize {
    BOUNDS.partition_point(|&b| b <= total_us)
}

/// The latencies bucket `b` holds: [lower, upper); the last bucket is open above and reads as its lower
/// bound.
fn range(b: usize) -> (f64, f64) {
    let at = |i: usize| BOUNDS.get(i).copied().unwrap_or(i64::MAX) as f64;
    match b {
        0 => (0.0, at(0)),
        b if b >= BOUNDS.len() => (at(BOUNDS.len() - 1), at(BOUNDS.len() - 1)),
        b => (at(b - 1), at(b)),
    }
}

/// Counts per latency bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram(pub Vec<i64>);

impl Default for Histogram {
    fn default() -> Self {
        Histogram(vec![0; buckets()])
    }
}

impl Histogram {
    pub fn record(&mut self, total_us: i64) {
        if let Some(n) = self.0.get_mut(bucket(total_us)) {
            *n += 1;
        }
    }

    /// Adds counts that start at bucket `first` (a stored histogram's non-empty range).
    pub fn add_at(&mut self, first: usize, counts: &[i64]) {
        for (n, m) in self.0.iter_mut().skip(first).zip(counts) {
            *n += m;
        }
    }

    /// The buckets from the first non-empty one to the last, and where they start: what is stored.
    pub fn trimmed(&self) -> (usize, &[i64]) {
        let first = self.0.iter().position(|&n| n != 0);
        let last = self.0.iter().rposition(|&n| n != 0);
        match (first, last) {
            (Some(first), Some(last)) => (first, &self.0[first..=last]),
            _ => (0, &[]),
        }
    }

    pub fn count(&self) -> i64 {
        self.0.iter().sum()
    }

    /// The `q` quantile, interpolated linearly within its bucket (as `percentile_cont` would between the
    /// bucket's bounds): within one bucket's width, 9 %, of the exact value. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0i64;
        for (b, &n) in self.0.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let (lo, hi) = range(b);
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                return Some(lo + (hi - lo) * within);
            }
            below += n;
        }
        None
    }
}

/// The two rollup granularities: the 5m and 1h windows read minutes, the 24h and 7d windows hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Period {
    Minute,
    Hour,
}

impl Period {
    pub const ALL: [Period; 2] = [Period::Minute, Period::Hour];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Minute => "minute",
            Period::Hour => "hour",
        }
    }

    fn length(self) -> TimeDelta {
        match self {
            Period::Minute => TimeDelta::minutes(1),
            Period::Hour => TimeDelta::hours(1),
        }
    }

    /// The start of the period holding `t`.
    pub fn start(self, t: DateTime<Utc>) -> DateTime<Utc> {
        t.duration_trunc(self.length()).unwrap_or(t)
    }

    /// The rows a window of `seconds` ending at `now` reads: minutes up to an hour, hours beyond, from the
    /// start of the period holding `now - seconds` (so a window covers up to one period more than its
    /// length, never less).
    pub fn window(seconds: f64, now: DateTime<Utc>) -> (Period, DateTime<Utc>) {
        let period = if seconds <= 3600.0 { Period::Minute } else { Period::Hour };
        let from = now - TimeDelta::milliseconds((seconds * 1000.0) as i64);
        (period, period.start(from))
    }
}

/// One rollup row's additions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rollup {
    pub requests: i64,
    pub errors: i64,
    pub successes: i64,
    pub batch_rows: i64,
    pub latency: Histogram,
}

/// Rollup rows by (model, period, start), in the key order the upsert takes them in (so that two
/// writers lock shared rows in the same order and never deadlock).
pub type Rollups = BTreeMap<(String, Period, DateTime<Utc>), Rollup>;

/// What `rows` add to each minute and hour they fall in.
pub fn fold<'a>(rows: impl IntoIterator<Item = &'a Prediction>) -> Rollups {
    let mut rollups = Rollups::new();
    for p in rows {
        for period in Period::ALL {
            let r = rollups.entry((p.model.clone(), period, period.start(p.created_at))).or_default();
            r.requests += 1;
            if p.outcome == "success" {
                r.successes += 1;
                r.batch_rows += i64::from(p.batch_size);
                r.latency.record(p.total_us);
            } else {
                r.errors += 1;
            }
        }
    }
    rollups
}

// The histograms travel as one flat array of their stored ranges, each row's cut out by its offset and
// length (migration 0010).
const ADD: &str = "SELECT prediction_rollups_add($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// Adds `rollups` to the table, in the caller's transaction (the one that inserted their rows).
pub async fn add(conn: &mut PgConnection, rollups: &Rollups) -> Result<(), sqlx::Error> {
    if rollups.is_empty() {
        return Ok(());
    }
    let keys = rollups.keys();
    let values = rollups.values();
    let stored: Vec<(usize, &[i64])> = values.clone().map(|r| r.latency.trimmed()).collect();
    let index = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let offsets = stored.iter().scan(0, |at, (_, counts)| {
        let offset = *at;
        *at += counts.len();
        Some(index(offset))
    });
    sqlx::query(ADD)
        .bind(keys.clone().map(|(m, _, _)| m.as_str()).collect::<Vec<_>>())
        .bind(keys.clone().map(|(_, p, _)| p.as_str()).collect::<Vec<_>>())
        .bind(keys.map(|(_, _, s)| *s).collect::<Vec<_>>())
        .bind(values.clone().map(|r| r.requests).collect::<Vec<_>>())
        .bind(values.clone().map(|r| r.errors).collect::<Vec<_>>())
        .bind(values.clone().map(|r| r.successes).collect::<Vec<_>>())
        .bind(values.map(|r| r.batch_rows).collect::<Vec<_>>())
        .bind(stored.iter().map(|(first, _)| index(*first)).collect::<Vec<_>>())
        .bind(offsets.collect::<Vec<_>>())
        .bind(stored.iter().map(|(_, counts)| index(counts.len())).collect::<Vec<_>>())
        .bind(stored.iter().flat_map(|(_, counts)| counts.iter().copied()).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(())
}

/// How long minute rows are kept: the 5m and 1h windows need the last hour; a day leaves room to look.
pub const MINUTES_KEPT: TimeDelta = TimeDelta::days(1);

/// The starts before which rows are expired: minute rows after MINUTES_KEPT, hour rows with the log's
/// retention (never, with a zero retention).
pub fn cutoffs(now: DateTime<Utc>, retention: std::time::Duration) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
    let hours = (!retention.is_zero()).then(|| TimeDelta::from_std(retention).ok()).flatten();
    (now - MINUTES_KEPT, hours.map(|r| now - r))
}

/// Deletes expired rollup rows (a day's minutes are 1,440 rows a model: small enough for a DELETE).
pub async fn expire(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    retention: std::time::Duration,
) -> Result<u64, sqlx::Error> {
    let (minutes, hours) = cutoffs(now, retention);
    let done = sqlx::query(
        "DELETE FROM prediction_rollups WHERE (period = 'minute' AND start < $1) OR (period = 'hour' AND start < $2)",
    )
    .bind(minutes)
    .bind(hours)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn prediction(model: &str, created_at: &str, outcome: &str, total_us: i64, batch: i32) -> Prediction {
        Prediction {
            total_us,
            batch_size: batch,
            outcome: outcome.into(),
            ..Prediction::answered(model, 1, at(created_at))
        }
    }

    #[test]
    fn the_bounds_are_the_ones_migration_0010_gives_postgres() {
        let list = BOUNDS.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let migration = include_str!("../../migrations/0010_stats_rollups.sql");
        assert!(migration.contains(&format!("RETURN '{{{list}}}'::BIGINT[];")));
        assert_eq!(BOUNDS.len(), 185);
        assert_eq!((BOUNDS[0], BOUNDS[1], BOUNDS[8], BOUNDS[184]), (8, 9, 16, 67_108_864));
    }

    #[test]
    fn a_latency_falls_in_the_bucket_whose_bounds_hold_it_as_width_bucket_does() {
        assert_eq!([bucket(0), bucket(7), bucket(8), bucket(9), bucket(15), bucket(16)], [0, 0, 1, 2, 8, 9]);
        assert_eq!(bucket(67_108_863), 184);
        assert_eq!(bucket(67_108_864), 185);
        assert_eq!(bucket(i64::MAX), 185);
        assert_eq!(buckets(), 186);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_that_holds_the_rank() {
        let mut h = Histogram::default();
        // 1,000 to 1,019 us: all in the bucket [ceil(1024 * 2^(-1/8)), 1024) = [940, 1024).
        for us in 1000..1020 {
            h.record(us);
        }
        assert_eq!(h.count(), 20);
        assert_eq!(h.quantile(0.5), Some(982.0));
        assert_eq!(h.quantile(1.0), Some(1024.0));
        assert_eq!(h.quantile(0.0), Some(940.0));
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn a_histogram_is_stored_from_its_first_non_empty_bucket_to_its_last_and_added_back_there() {
        let mut h = Histogram::default();
        assert_eq!(h.trimmed(), (0, &[][..]));
        h.record(1000);
        h.record(1000);
        h.record(2048);
        // 2048 us is a bound itself, so it opens bucket 65: [2048, 2234).
        assert_eq!(h.trimmed(), (56, &[2, 0, 0, 0, 0, 0, 0, 0, 0, 1][..]));
        let mut sum = Histogram::default();
        let (first, counts) = h.trimmed();
        sum.add_at(first, counts);
        sum.add_at(first, counts);
        assert_eq!((sum.0[56], sum.0[65], sum.count()), (4, 2, 6));
    }

    #[test]
    fn a_quantile_of_spread_latencies_is_within_a_bucket_of_the_exact_one() {
        let mut h = Histogram::default();
        let values: Vec<i64> = (1..=1000).map(|i| i * 997).collect();
        values.iter().for_each(|&v| h.record(v));
        for (q, exact) in [(0.5, 498_500.0), (0.95, 947_150.0), (0.99, 987_030.0)] {
            let estimate = h.quantile(q).unwrap();
            assert!((estimate / exact - 1.0).abs() < 0.09, "q{q}: {estimate} against {exact}");
        }
    }

    #[test]
    fn folding_counts_each_row_once_per_minute_and_hour_and_times_only_successes() {
        let rows = [
            prediction("a", "2026-11-30T10:15:30Z", "success", 1000, 4),
            prediction("a", "2026-11-30T10:15:59Z", "success", 1000, 2),
            prediction("a", "2026-11-30T10:16:00Z", "timeout", 5_000_000, 0),
            prediction("b", "2026-11-30T11:00:00Z", "success", 8, 1),
        ];
        let rollups = fold(&rows);
        let key = |m: &str, p, s: &str| (m.to_string(), p, at(s));
        assert_eq!(rollups.len(), 5);
        let minute = &rollups[&key("a", Period::Minute, "2026-11-30T10:15:00Z")];
        assert_eq!((minute.requests, minute.errors, minute.successes, minute.batch_rows), (2, 0, 2, 6));
        assert_eq!(minute.latency.0[bucket(1000)], 2);
        let next = &rollups[&key("a", Period::Minute, "2026-11-30T10:16:00Z")];
        assert_eq!((next.requests, next.errors, next.successes, next.latency.count()), (1, 1, 0, 0));
        let hour = &rollups[&key("a", Period::Hour, "2026-11-30T10:00:00Z")];
        assert_eq!((hour.requests, hour.errors, hour.successes, hour.batch_rows), (3, 1, 2, 6));
        assert_eq!(rollups[&key("b", Period::Hour, "2026-11-30T11:00:00Z")].latency.0[1], 1);
        assert_eq!(rollups.keys().next(), Some(&key("a", Period::Minute, "2026-11-30T10:15:00Z")));
    }

    #[test]
    fn minute_rows_expire_after_a_day_and_hour_rows_with_the_retention_unless_it_is_zero() {
        let now = at("2026-11-30T10:00:00Z");
        let month = std::time::Duration::from_secs(30 * 86400);
        assert_eq!(cutoffs(now, month), (at("2026-11-29T10:00:00Z"), Some(at("2026-10-31T10:00:00Z"))));
        assert_eq!(cutoffs(now, std::time::Duration::ZERO), (at("2026-11-29T10:00:00Z"), None));
    }

    #[test]
    fn windows_up_to_an_hour_read_minutes_and_longer_ones_hours_from_a_whole_period() {
        let now = at("2026-11-30T10:15:30Z");
        assert_eq!(Period::window(300.0, now), (Period::Minute, at("2026-11-30T10:10:00Z")));
        assert_eq!(Period::window(3600.0, now), (Period::Minute, at("2026-11-30T09:15:00Z")));
        assert_eq!(Period::window(86400.0, now), (Period::Hour, at("2026-11-29T10:00:00Z")));
        assert_eq!(Period::window(7.0 * 86400.0, now), (Period::Hour, at("2026-11-23T10:00:00Z")));
    }
}
