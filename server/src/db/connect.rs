//! The prediction log's two connection pools. The writer and the query API never share connections,
//! so a slow /api query cannot starve the writer; every connection carries Postgres's own statement
//! and idle-transaction timeouts, and pools wait a bounded time for a connection.

use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::DatabaseArgs;
use crate::error::Error;

pub struct Pools {
    pub writer: PgPool,
    pub api: PgPool,
}

/// `url` with the server-side timeouts set at connection start (the `options` startup parameter), and
/// a name that says in pg_stat_activity which pool a connection belongs to.
pub fn connect_options(
    url: &str,
    statement_timeout: Duration,
    name: &str,
) -> Result<PgConnectOptions, Error> {
    let ms = statement_timeout.as_millis();
    Ok(PgConnectOptions::from_str(url)
        .map_err(|source| Error::Database { what: "DATABASE_URL is not usable", source })?
        .application_name(name)
        .options([
            ("statement_timeout", ms.to_string()),
            // Twice the statement limit: a transaction is allowed its statements, not a forgotten session.
            ("idle_in_transaction_session_timeout", (2 * ms).to_string()),
            // Plans for the values at hand: a generic plan of a query on the day partitions locks and
            // opens every partition, where a custom one keeps only the days its values name.
            ("plan_cache_mode", "force_custom_plan".to_string()),
        ]))
}

/// Both pools, connecting lazily: the server starts while the database is down.
pub fn pools(url: &str, args: &DatabaseArgs) -> Result<Pools, Error> {
    let pool = |name: &str, size: u32| -> Result<PgPool, Error> {
        Ok(PgPoolOptions::new()
            .max_connections(size.max(1))
            .acquire_timeout(args.db_acquire_timeout)
            .connect_lazy_with(connect_options(url, args.db_statement_timeout, name)?))
    };
    Ok(Pools {
        writer: pool("kubeinfer-writer", args.db_writer_connections)?,
        api: pool("kubeinfer-api", args.db_api_connections)?,
    })
}

/// The client's own deadline on a query: Postgres enforces statement_timeout only while it runs, so a
/// server that stopped answering (paused, partitioned away) would otherwise hold the caller forever.
pub fn client_deadline(statement_timeout: Duration) -> Duration {
    statement_timeout + Duration::from_millis(500)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_starts_with_the_statement_and_idle_transaction_timeouts() {
        let options =
            connect_options("postgres://u@127.0.0.1/db", Duration::from_millis(2500), "kubeinfer-api")
                .unwrap();
        assert_eq!(
            options.get_options(),
            Some(
                "-c statement_timeout=2500 -c idle_in_transaction_session_timeout=5000 \
                 -c plan_cache_mode=force_custom_plan"
            )
        );
        assert_eq!(options.get_application_name(), Some("kubeinfer-api"));
    }

    #[test]
    fn a_url_that_is_not_one_is_refused_with_the_reason() {
        let e =
            connect_options("postgres://u@127.0.0.1:notaport/db", Duration::from_secs(1), "x").unwrap_err();
        assert!(e.to_string().starts_with("database: DATABASE_URL is not usable"), "{e}");
    }
}
