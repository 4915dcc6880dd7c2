//! The predictions' unique key (created_at, id), built online on the partitions that predate it
//! (migration 0011 says why it replaces the primary key and the created_at index). Each partition's copy
//! is built with CREATE UNIQUE INDEX CONCURRENTLY and attached to the parent's key; once every partition
//! has one, PostgreSQL marks the key valid and the old primary key and index are dropped. Every step can
//! be repeated, so a pass that was interrupted (a restart, a lock not had in time) is finished by the
//! next one, and a build left INVALID is dropped and started again.

use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

use super::migrate::with_schema_lock;
use super::partitions::partition_day;

/// The parent's key, made by migration 0011.
pub const KEY: &str = "predictions_created_id_key";

/// The longest the final drop may queue for its lock. It needs the whole table to itself for a moment,
/// and every write queues behind it while it waits: the writer must not stall longer than this. A
/// query that holds the table for longer makes it give up until the next pass.
const DROP_LOCK_TIMEOUT: &str = "100ms";

/// Where one partition of `predictions` stands with the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionKey {
    pub partition: String,
    /// Its copy of the key is attached to the parent's.
    pub attached: bool,
    /// An unattached copy named `<partition>_created_id_key`, left by an earlier pass: whether it is
    /// valid (an interrupted build leaves it INVALID); `None` when there is none.
    pub built: Option<bool>,
}

/// One step towards every partition having the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Drop the partition's copy that an interrupted build left INVALID.
    DropInvalid(String),
    Build(String),
    Attach(String),
}

/// The steps that give every partition an attached copy of the key, in order.
pub fn steps(partitions: &[PartitionKey]) -> Vec<Step> {
    let mut steps = Vec::new();
    for p in partitions.iter().filter(|p| !p.attached) {
        let name = p.partition.clone();
        match p.built {
            Some(true) => {}
            Some(false) => steps.extend([Step::DropInvalid(name.clone()), Step::Build(name.clone())]),
            None => steps.push(Step::Build(name.clone())),
        }
        steps.push(Step::Attach(name));
    }
    steps
}

fn copy_name(partition: &str) -> String {
    format!("{partition}_created_id_key")
}

/// The SQL of a step. Partition names come from the catalog and are only used when they parse as a
/// day's partition (`predictions_YYYYMMDD`), so they are safe to format into it.
fn sql(step: &Step) -> String {
    match step {
        Step::DropInvalid(p) => format!("DROP INDEX CONCURRENTLY IF EXISTS {}", copy_name(p)),
        Step::Build(p) => format!(
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {} ON {p} (created_at DESC, id DESC)",
            copy_name(p)
        ),
        Step::Attach(p) => format!("ALTER INDEX {KEY} ATTACH PARTITION {}", copy_name(p)),
    }
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Converged {
    /// Partitions whose copy of the key was attached in this pass.
    pub attached: usize,
    /// The old primary key and index were dropped in this pass.
    pub old_dropped: bool,
}

/// One pass; does nothing when another replica holds the schema lock, or when migration 0011 has not
/// been applied yet (with `--migrate=off`, before `kubeinfer-server migrate` ran).
pub async fn converge(pool: &PgPool) -> Result<Converged, sqlx::Error> {
    // A build waits for the transactions that could see the table without the index; its waits are
    // bounded like every lock wait of schema work.
    let done = with_schema_lock(pool, converge_locked).await?.unwrap_or_default();
    if done != Converged::default() {
        tracing::info!(
            attached = done.attached,
            old_dropped = done.old_dropped,
            "prediction log unique key (created_at, id) built"
        );
    }
    Ok(done)
}

async fn converge_locked(conn: &mut PgConnection) -> Result<Converged, sqlx::Error> {
    let mut done = Converged::default();
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(KEY).fetch_one(&mut *conn).await?;
    if !exists {
        return Ok(done);
    }
    for step in steps(&partition_keys(conn).await?) {
        if let Step::Attach(_) = step {
            done.attached += 1;
        }
        sqlx::query(AssertSqlSafe(sql(&step))).execute(&mut *conn).await?;
    }
    done.old_dropped = drop_old_keys(conn).await?;
    Ok(done)
}

/// Every partition of `predictions` (but one being detached) and where it stands with the key.
async fn partition_keys(conn: &mut PgConnection) -> Result<Vec<PartitionKey>, sqlx::Error> {
    let rows: Vec<(String, bool, Option<bool>)> = sqlx::query_as(
        "SELECT c.relname::text, \
           EXISTS (SELECT 1 FROM pg_inherits k JOIN pg_index x ON x.indexrelid = k.inhrelid \
                   WHERE k.inhparent = $1::regclass AND x.indrelid = c.oid), \
           (SELECT x.indisvalid FROM pg_class i JOIN pg_index x ON x.indexrelid = i.oid \
             WHERE i.relname = c.relname || '_created_id_key' AND i.relnamespace = c.relnamespace) \
         FROM pg_inherits p JOIN pg_class c ON c.oid = p.inhrelid \
         WHERE p.inhparent = 'predictions'::regclass AND NOT p.inhdetachpending ORDER BY 1",
    )
    .bind(KEY)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|(name, _, _)| partition_day("predictions", name).is_some())
        .map(|(partition, attached, built)| PartitionKey { partition, attached, built })
        .collect())
}

/// Once the key is valid (every partition has it), drops the primary key (id, created_at) and the
/// index on (created_at DESC, id DESC) it replaces. Returns whether it dropped them now; a lock not had
/// within DROP_LOCK_TIMEOUT leaves them to the next pass.
async fn drop_old_keys(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let (valid, old_left): (bool, bool) = sqlx::query_as(
        "SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = $1::regclass), \
                to_regclass('predictions_pkey') IS NOT NULL OR to_regclass('predictions_created_idx') IS NOT NULL",
    )
    .bind(KEY)
    .fetch_one(&mut *conn)
    .await?;
    if !valid || !old_left {
        return Ok(false);
    }
    let mut tx = conn.begin().await?;
    let dropped = async {
        sqlx::query(AssertSqlSafe(format!("SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'")))
            .execute(&mut *tx)
            .await?;
        sqlx::query("ALTER TABLE predictions DROP CONSTRAINT IF EXISTS predictions_pkey")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DROP INDEX IF EXISTS predictions_created_idx").execute(&mut *tx).await?;
        Ok::<(), sqlx::Error>(())
    }
    .await;
    match dropped {
        Ok(()) => tx.commit().await.map(|()| true),
        // 55P03: lock_not_available.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
            tracing::info!("the old prediction log keys are in use; dropping them at the next pass");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(name: &str, attached: bool, built: Option<bool>) -> PartitionKey {
        PartitionKey { partition: name.into(), attached, built }
    }

    #[test]
    fn a_partition_without_the_key_has_it_built_then_attached() {
        let p = [partition("predictions_20261130", false, None)];
        assert_eq!(
            steps(&p),
            [Step::Build("predictions_20261130".into()), Step::Attach("predictions_20261130".into())]
        );
    }

    #[test]
    fn partitions_that_have_the_key_attached_need_nothing() {
        let p = [
            partition("predictions_20261130", true, None),
            partition("predictions_20261201", true, Some(true)),
        ];
        assert_eq!(steps(&p), []);
    }

    #[test]
    fn a_copy_built_by_an_interrupted_pass_is_attached_if_valid_and_built_again_if_not() {
        let p = [
            partition("predictions_20261130", false, Some(true)),
            partition("predictions_20261201", false, Some(false)),
        ];
        assert_eq!(
            steps(&p),
            [
                Step::Attach("predictions_20261130".into()),
                Step::DropInvalid("predictions_20261201".into()),
                Step::Build("predictions_20261201".into()),
                Step::Attach("predictions_20261201".into()),
            ]
        );
    }

    #[test]
    fn each_step_names_the_partition_and_its_copy_of_the_key() {
        let p = "predictions_20261130".to_string();
        assert_eq!(
            sql(&Step::Build(p.clone())),
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS predictions_20261130_created_id_key \
             ON predictions_20261130 (created_at DESC, id DESC)"
        );
        assert_eq!(
            sql(&Step::Attach(p.clone())),
            "ALTER INDEX predictions_created_id_key ATTACH PARTITION predictions_20261130_created_id_key"
        );
        assert_eq!(
            sql(&Step::DropInvalid(p)),
            "DROP INDEX CONCURRENTLY IF EXISTS predictions_20261130_created_id_key"
        );
    }
}
