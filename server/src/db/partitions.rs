//! Retention by partition: `predictions` and `feedback` are partitioned by day (UTC) of the
//! prediction's time, so dropping a day costs the same at a million rows or a billion, and a
//! prediction's feedback lives and dies in the matching `feedback` partition. Partitions are made a few
//! days ahead and dropped once wholly past the retention, by whichever replica holds the schema lock.
//! Neither step blocks the writer: a partition is created as a table and then attached, and detached
//! CONCURRENTLY before it is dropped (both take SHARE UPDATE EXCLUSIVE on the parent, which inserts do
//! not conflict with).

use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

use super::migrate::{schema_connection, with_schema_lock};

/// The partitioned tables, each by the day of its prediction.
pub const TABLES: [&str; 2] = ["feedback", "predictions"];

/// Days made ahead of today, so that rows keep landing if maintenance stops for a while.
pub const DAYS_AHEAD: u64 = 3;

pub fn partition_name(table: &str, day: NaiveDate) -> String {
    format!("{table}_{}", day.format("%Y%m%d"))
}

/// The day of a partition of `table`, from its name; `None` for a table that is not one.
pub fn partition_day(table: &str, name: &str) -> Option<NaiveDate> {
    let digits = name.strip_prefix(table)?.strip_prefix('_')?;
    (digits.len() == 8).then(|| NaiveDate::parse_from_str(digits, "%Y%m%d").ok()).flatten()
}

fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

fn next(day: NaiveDate) -> NaiveDate {
    day.checked_add_days(Days::new(1)).unwrap_or(day)
}

/// What one maintenance pass does to one table.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub create: Vec<NaiveDate>,
    pub drop: Vec<NaiveDate>,
}

/// Drop every day whose end is older than `now - retention` (never with a zero retention); create
/// yesterday (a replica whose clock is behind) through DAYS_AHEAD days from today where missing.
pub fn plan(existing: &[NaiveDate], now: DateTime<Utc>, retention: Duration) -> Plan {
    let expired = |day: NaiveDate| {
        !retention.is_zero()
            && chrono::Duration::from_std(retention).is_ok_and(|r| start_of(next(day)) <= now - r)
    };
    let today = now.date_naive();
    let first = today.checked_sub_days(Days::new(1)).unwrap_or(today);
    let wanted = first.iter_days().take(usize::try_from(DAYS_AHEAD).unwrap_or(3) + 2);
    let mut drop: Vec<NaiveDate> = existing.iter().copied().filter(|&d| expired(d)).collect();
    drop.sort();
    Plan { create: wanted.filter(|d| !existing.contains(d) && !expired(*d)).collect(), drop }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Done {
    pub created: usize,
    pub dropped: usize,
}

/// One maintenance pass; does nothing when another replica holds the schema lock.
pub async fn maintain(pool: &PgPool, retention: Duration, now: DateTime<Utc>) -> Result<Done, sqlx::Error> {
    let work = async |conn: &mut PgConnection| maintain_locked(conn, retention, now).await;
    let done = with_schema_lock(pool, work).await?.unwrap_or_default();
    if done != Done::default() {
        tracing::info!(
            created = done.created,
            dropped = done.dropped,
            "prediction log partitions maintained"
        );
    }
    Ok(done)
}

async fn maintain_locked(
    conn: &mut PgConnection,
    retention: Duration,
    now: DateTime<Utc>,
) -> Result<Done, sqlx::Error> {
    let mut done = Done::default();
    // Feedback first: a day's feedback is dropped before its predictions, so none outlives them.
    for table in TABLES {
        let existing = partitions(conn, table).await?;
        let days: Vec<NaiveDate> = existing.iter().map(|p| p.day).collect();
        let plan = plan(&days, now, retention);
        for day in plan.create {
            create(conn, table, day).await?;
            done.created += 1;
        }
        for day in plan.drop {
            let pending = existing.iter().any(|p| p.day == day && p.detach_pending);
            drop_partition(conn, table, day, pending).await?;
            done.dropped += 1;
        }
    }
    super::rollups::expire(conn, now, retention).await?;
    Ok(done)
}

/// Makes sure both tables have partitions for every day in `days` (the backfill and tests need days
/// outside the usual window).
pub async fn ensure_days(pool: &PgPool, days: &[NaiveDate]) -> Result<(), sqlx::Error> {
    let mut conn = schema_connection(pool).await?;
    for table in TABLES {
        let existing: Vec<NaiveDate> = partitions(&mut conn, table).await?.iter().map(|p| p.day).collect();
        for &day in days.iter().filter(|d| !existing.contains(d)) {
            create(&mut conn, table, day).await?;
        }
    }
    conn.close().await
}

struct Partition {
    day: NaiveDate,
    detach_pending: bool,
}

async fn partitions(conn: &mut PgConnection, table: &str) -> Result<Vec<Partition>, sqlx::Error> {
    let rows: Vec<(String, bool)> = sqlx::query_as(
        "SELECT c.relname::text, i.inhdetachpending FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = $1::regclass",
    )
    .bind(table)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(name, detach_pending)| {
            Some(Partition { day: partition_day(table, &name)?, detach_pending })
        })
        .collect())
}

/// Creates the day's table and attaches it. CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE on
/// the parent, blocking the writer; ATTACH takes only SHARE UPDATE EXCLUSIVE. A table left unattached
/// by an earlier pass is reused.
async fn create(conn: &mut PgConnection, table: &str, day: NaiveDate) -> Result<(), sqlx::Error> {
    let name = partition_name(table, day);
    let (from, to) = (start_of(day).to_rfc3339(), start_of(next(day)).to_rfc3339());
    // Names and bounds come from TABLES and a date, never from input: safe to format into the SQL.
    for sql in [
        format!(
            "CREATE TABLE IF NOT EXISTS {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMPRESSION)"
        ),
        format!("ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ('{from}') TO ('{to}')"),
    ] {
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Detaches the day CONCURRENTLY (finishing a detach an earlier pass left pending), then drops it.
async fn drop_partition(
    conn: &mut PgConnection,
    table: &str,
    day: NaiveDate,
    pending: bool,
) -> Result<(), sqlx::Error> {
    let name = partition_name(table, day);
    let detach = if pending { "FINALIZE" } else { "CONCURRENTLY" };
    for sql in [format!("ALTER TABLE {table} DETACH PARTITION {name} {detach}"), format!("DROP TABLE {name}")]
    {
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn partition_names_carry_their_day_and_nothing_else_parses_as_one() {
        assert_eq!(partition_name("predictions", day("2026-11-30")), "predictions_20261130");
        assert_eq!(partition_day("predictions", "predictions_20261130"), Some(day("2026-11-30")));
        assert_eq!(partition_day("predictions", "predictions_unpartitioned"), None);
        assert_eq!(partition_day("predictions", "feedback_20261130"), None);
        assert_eq!(partition_day("predictions", "predictions_20261399"), None);
    }

    #[test]
    fn a_fresh_log_gets_yesterday_today_and_three_days_ahead() {
        let p = plan(&[], at("2026-11-30T10:00:00Z"), Duration::from_secs(30 * 86400));
        assert_eq!(
            p.create,
            ["2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02", "2026-12-03"].map(day).to_vec()
        );
        assert_eq!(p.drop, []);
    }

    #[test]
    fn a_day_is_dropped_only_once_all_of_it_is_past_the_retention() {
        let existing = [day("2026-11-28"), day("2026-11-29"), day("2026-11-30")];
        let two_days = Duration::from_secs(2 * 86400);
        // 2026-11-28 ends at 11-29T00:00, which is 2 days before 12-01T00:00 but not before 11-30T23:59.
        assert_eq!(plan(&existing, at("2026-11-30T23:59:59Z"), two_days).drop, []);
        assert_eq!(plan(&existing, at("2026-12-01T00:00:00Z"), two_days).drop, [day("2026-11-28")]);
    }

    #[test]
    fn a_zero_retention_keeps_every_day() {
        let existing = [day("2020-01-01")];
        assert_eq!(plan(&existing, at("2026-11-30T10:00:00Z"), Duration::ZERO).drop, []);
    }

    #[test]
    fn a_retention_shorter_than_a_day_never_creates_a_day_it_would_drop() {
        let p = plan(&[], at("2026-11-30T13:00:00Z"), Duration::from_secs(12 * 3600));
        assert_eq!(p.create.first(), Some(&day("2026-11-30")));
    }
}
