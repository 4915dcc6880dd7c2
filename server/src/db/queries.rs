//! The prediction log's read queries. Each is built so that one index serves it (see the comments in
//! server/migrations/), and a page with its feedback takes two queries, never one per row.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use uuid::{NoContext, Timestamp, Uuid};

/// Most feedback entries one prediction takes: a label, a correction or two, not a chat log.
pub const MAX_FEEDBACK_PER_PREDICTION: i64 = 100;

/// A UUIDv7 stamped with `t`'s millisecond: the writer makes a row's id from its created_at, so that
/// the id alone says which day's partition holds the row.
pub fn id_at(t: DateTime<Utc>) -> Uuid {
    let seconds = u64::try_from(t.timestamp()).unwrap_or(0);
    Uuid::new_v7(Timestamp::from_unix(NoContext, seconds, t.timestamp_subsec_nanos()))
}

/// How far a row's created_at may be from the millisecond of its UUIDv7 id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Around {
    /// The id's own millisecond: every row written since ids are made from created_at (migration 0007).
    Millisecond,
    /// A second either side: rows logged before that (two clock readings apart), moved into the
    /// partitions by the backfill.
    Second,
}

/// The created_at range a UUIDv7 id allows, to prune a lookup to one partition and a few index
/// entries. `None` for ids of other versions, which are looked up in every partition.
pub fn created_range(id: Uuid, around: Around) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    if id.get_version_num() != 7 {
        return None;
    }
    let (seconds, nanos) = id.get_timestamp()?.to_unix();
    let at = DateTime::from_timestamp(i64::try_from(seconds).ok()?, nanos)?;
    Some(match around {
        Around::Millisecond => (at, at + chrono::Duration::milliseconds(1)),
        Around::Second => (at - chrono::Duration::seconds(1), at + chrono::Duration::seconds(1)),
    })
}

/// The query for the created_at of the prediction `id`, within `range` when given.
pub fn locate_query(id: Uuid, range: Option<(DateTime<Utc>, DateTime<Utc>)>) -> QueryBuilder<Postgres> {
    let mut q = QueryBuilder::new("SELECT created_at FROM predictions WHERE id = ");
    q.push_bind(id);
    if let Some((from, to)) = range {
        q.push(" AND created_at >= ").push_bind(from).push(" AND created_at < ").push_bind(to);
    }
    q
}

/// The created_at of the prediction `id`, which names its partition and, with the id, its unique key:
/// looked for in the id's millisecond first, then a second either side.
pub async fn locate(pool: &PgPool, id: Uuid) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    for around in [Around::Millisecond, Around::Second] {
        let range = created_range(id, around);
        let found = locate_query(id, range).build_query_scalar().fetch_optional(pool).await?;
        if found.is_some() || range.is_none() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// A listed prediction (without its payload, which only the single-prediction route returns).
#[derive(Debug, Clone, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct Prediction {
    pub id: Uuid,
    pub request_id: Option<String>,
    pub model: String,
    pub model_version: i64,
    pub client_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub queue_us: i64,
    pub compute_us: i64,
    pub total_us: i64,
    pub batch_size: i32,
    pub outcome: String,
    /// `rest` or `grpc`.
    pub protocol: String,
    pub error: Option<String>,
    /// For a classifier (one 2-D FP32 output, one row): the argmax class and its score.
    pub predicted_class: Option<i32>,
    pub predicted_score: Option<f32>,
}

impl Prediction {
    /// A successful REST prediction of `model` at `created_at`, with a new id and nothing else set: for
    /// tools and tests that write rows directly, which override the fields they need.
    pub fn answered(model: &str, model_version: i64, created_at: DateTime<Utc>) -> Prediction {
        Prediction {
            id: Uuid::now_v7(),
            request_id: None,
            model: model.into(),
            model_version,
            client_id: None,
            created_at,
            queue_us: 0,
            compute_us: 0,
            total_us: 0,
            batch_size: 1,
            outcome: "success".into(),
            protocol: "rest".into(),
            error: None,
            predicted_class: None,
            predicted_score: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct Feedback {
    pub id: i64,
    pub prediction_id: Uuid,
    pub label: Option<String>,
    pub score: Option<f64>,
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Filters of GET /api/predictions, already validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    pub model: Option<String>,
    pub client: Option<String>,
    pub outcome: Option<OutcomeFilter>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub after: Option<Cursor>,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OutcomeFilter {
    /// Every outcome but success: served by the partial failures index.
    Failure,
    Exactly(String),
}

/// A keyset position: the (created_at, id) of the last row of the previous page. Ties on created_at are
/// broken by id, so every row is listed exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}.{}", self.created_at.timestamp_micros(), self.id))
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(s).ok()?).ok()?;
        let (micros, id) = text.split_once('.')?;
        let created_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        Some(Cursor { created_at, id: id.parse().ok()? })
    }
}

/// The columns of `Prediction`, as a literal so that `concat!` can build static SQL from it.
macro_rules! columns {
    () => {
        "id, request_id, model, model_version, client_id, created_at, queue_us, compute_us, total_us, batch_size, outcome, protocol, error, predicted_class, predicted_score"
    };
}

/// The SQL of a list query, with only the filters that are set, so the planner picks the matching index.
pub fn list_query(f: &ListFilter) -> QueryBuilder<Postgres> {
    let mut q = QueryBuilder::new(concat!("SELECT ", columns!(), " FROM predictions WHERE true"));
    if let Some(model) = &f.model {
        q.push(" AND model = ").push_bind(model);
    }
    if let Some(client) = &f.client {
        q.push(" AND client_id = ").push_bind(client);
    }
    match &f.outcome {
        // Written as the partial index's own predicate, so the planner can use it.
        Some(OutcomeFilter::Failure) => {
            q.push(" AND outcome <> 'success'");
        }
        Some(OutcomeFilter::Exactly(o)) => {
            q.push(" AND outcome = ").push_bind(o);
        }
        None => {}
    }
    if let Some(since) = f.since {
        q.push(" AND created_at >= ").push_bind(since);
    }
    if let Some(until) = f.until {
        q.push(" AND created_at < ").push_bind(until);
    }
    if let Some(c) = f.after {
        // The plain bound beside the row comparison lets the planner skip the newer days' partitions.
        q.push(" AND created_at <= ").push_bind(c.created_at);
        q.push(" AND (created_at, id) < (").push_bind(c.created_at).push(", ").push_bind(c.id).push(")");
    }
    // One row more than asked for says whether there is a next page.
    q.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(f.limit + 1);
    q
}

/// How many days back a listing looks first, then next, before it looks at everything: a page usually
/// fills from the newest day, and a query bounded in time plans and reads only the partitions it names
/// (an unbounded one opens every day's indexes, which costs more than the rows at 30 partitions).
const LIST_WINDOWS_DAYS: [i64; 2] = [1, 7];

/// A page and the cursor of the next one.
pub async fn list(pool: &PgPool, f: &ListFilter) -> Result<(Vec<Prediction>, Option<Cursor>), sqlx::Error> {
    let newest = f.after.map(|c| c.created_at).or(f.until).unwrap_or_else(Utc::now);
    let limit = usize::try_from(f.limit).unwrap_or(0);
    for days in LIST_WINDOWS_DAYS {
        let floor = newest - chrono::Duration::days(days);
        if f.since.is_some_and(|since| since >= floor) {
            break;
        }
        let recent = ListFilter { since: Some(floor), ..f.clone() };
        let rows: Vec<Prediction> = list_query(&recent).build_query_as().fetch_all(pool).await?;
        // More than a page within the window: the same page as without it, and the rest is older.
        if rows.len() > limit {
            return Ok(page(rows, limit));
        }
    }
    Ok(page(list_query(f).build_query_as().fetch_all(pool).await?, limit))
}

fn page(mut rows: Vec<Prediction>, limit: usize) -> (Vec<Prediction>, Option<Cursor>) {
    let next = (rows.len() > limit).then(|| {
        rows.truncate(limit);
        rows.last().map(|r| Cursor { created_at: r.created_at, id: r.id })
    });
    (rows, next.flatten())
}

pub const FEEDBACK_FOR: &str = "SELECT id, prediction_id, label, score, comment, created_at FROM feedback \
     WHERE prediction_id = ANY($1) AND prediction_created_at BETWEEN $2 AND $3 \
     ORDER BY prediction_id, created_at, id";

/// The feedback of every prediction in `rows`, in one query; the rows' own times bound the partitions
/// it reads.
pub async fn feedback_for(pool: &PgPool, rows: &[Prediction]) -> Result<Vec<Feedback>, sqlx::Error> {
    let (Some(first), Some(last)) =
        (rows.iter().map(|r| r.created_at).min(), rows.iter().map(|r| r.created_at).max())
    else {
        return Ok(Vec::new());
    };
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    sqlx::query_as(FEEDBACK_FOR).bind(ids).bind(first).bind(last).fetch_all(pool).await
}

/// One prediction with its request payload and response.
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct PredictionDetail {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub prediction: Prediction,
    pub payload: Option<serde_json::Value>,
    pub response: Option<serde_json::Value>,
}

/// One prediction with its payload and response, by its unique key ($1 id, $2 created_at).
pub const GET: &str =
    concat!("SELECT ", columns!(), ", payload, response FROM predictions WHERE id = $1 AND created_at = $2");

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<PredictionDetail>, sqlx::Error> {
    let Some(created_at) = locate(pool, id).await? else { return Ok(None) };
    sqlx::query_as(GET).bind(id).bind(created_at).fetch_optional(pool).await
}

/// What became of a feedback entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Added {
    Feedback(Feedback),
    NoSuchPrediction,
    /// The prediction already has MAX_FEEDBACK_PER_PREDICTION entries.
    Full,
}

/// Adds feedback to an existing prediction, in its partition, while it has room for more.
pub async fn add_feedback(
    pool: &PgPool,
    prediction: Uuid,
    label: Option<&str>,
    score: Option<f64>,
    comment: Option<&str>,
) -> Result<Added, sqlx::Error> {
    let Some(created_at) = locate(pool, prediction).await? else { return Ok(Added::NoSuchPrediction) };
    // The existence check, the cap and the insert are one statement: no race with retention's drop.
    let added = sqlx::query_as(
        "INSERT INTO feedback (prediction_id, prediction_created_at, label, score, comment) \
         SELECT id, created_at, $3, $4, $5 FROM predictions WHERE id = $1 AND created_at = $2 \
         AND (SELECT count(*) FROM feedback WHERE prediction_id = $1 AND prediction_created_at = $2) < $6 \
         RETURNING id, prediction_id, label, score, comment, created_at",
    )
    .bind(prediction)
    .bind(created_at)
    .bind(label)
    .bind(score)
    .bind(comment)
    .bind(MAX_FEEDBACK_PER_PREDICTION)
    .fetch_optional(pool)
    .await?;
    if let Some(added) = added {
        return Ok(Added::Feedback(added));
    }
    // Full, unless retention dropped the prediction's day in between.
    Ok(if locate(pool, prediction).await?.is_some() { Added::Full } else { Added::NoSuchPrediction })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_made_at_a_time_gives_back_its_millisecond_or_a_second_around_it() {
        let t = DateTime::parse_from_rfc3339("2026-11-30T10:00:00.123456Z").unwrap().with_timezone(&Utc);
        let id = id_at(t);
        assert_eq!(id.get_version_num(), 7);
        let millis = DateTime::parse_from_rfc3339("2026-11-30T10:00:00.123Z").unwrap().with_timezone(&Utc);
        assert_eq!(
            created_range(id, Around::Millisecond),
            Some((millis, millis + chrono::Duration::milliseconds(1)))
        );
        assert_eq!(
            created_range(id, Around::Second),
            Some((millis - chrono::Duration::seconds(1), millis + chrono::Duration::seconds(1)))
        );
        assert_eq!(created_range(Uuid::nil(), Around::Second), None);
    }

    #[test]
    fn a_lookup_by_id_is_bounded_to_the_range_given() {
        let (id, t) = (Uuid::nil(), Utc::now());
        assert_eq!(
            locate_query(id, Some((t, t))).sql().as_str(),
            "SELECT created_at FROM predictions WHERE id = $1 AND created_at >= $2 AND created_at < $3"
        );
        assert_eq!(locate_query(id, None).sql().as_str(), "SELECT created_at FROM predictions WHERE id = $1");
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("not-a-cursor"), None);
        assert_eq!(Cursor::decode(""), None);
    }

    #[test]
    fn only_the_filters_given_appear_in_the_query() {
        let f = ListFilter {
            model: Some("digits".into()),
            outcome: Some(OutcomeFilter::Failure),
            limit: 50,
            ..Default::default()
        };
        assert_eq!(
            list_query(&f).sql().as_str(),
            concat!(
                "SELECT ",
                columns!(),
                " FROM predictions WHERE true AND model = $1 AND outcome <> 'success' ",
                "ORDER BY created_at DESC, id DESC LIMIT $2"
            )
        );
    }

    #[test]
    fn a_cursor_becomes_a_row_comparison_on_the_sort_key() {
        let c = Cursor { created_at: Utc::now(), id: Uuid::nil() };
        let f = ListFilter { after: Some(c), limit: 10, ..Default::default() };
        assert!(list_query(&f).sql().as_str().ends_with(
            "AND created_at <= $1 AND (created_at, id) < ($2, $3) ORDER BY created_at DESC, id DESC LIMIT $4"
        ));
    }
}
