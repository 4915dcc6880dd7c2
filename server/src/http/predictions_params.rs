//! The /api routes' parameters, checked before any query runs: the listing's filters, feedback bodies,
//! prediction ids and stats windows, each refused with a message naming what was wrong.

use axum::extract::rejection::QueryRejection;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::db::queries::{Cursor, ListFilter, OutcomeFilter};
use crate::error::Error;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this model's predictions.
    model: Option<String>,
    /// Only those sent with this `X-Client-Id`.
    client: Option<String>,
    /// success, failure (any other), invalid, rejected, timeout, shed or error.
    outcome: Option<String>,
    /// RFC 3339 time, inclusive.
    since: Option<String>,
    /// RFC 3339 time, exclusive.
    until: Option<String>,
    /// 1 to 500, default 50.
    limit: Option<String>,
    /// The previous page's next_cursor.
    cursor: Option<String>,
    /// `feedback`: each prediction's feedback too.
    include: Option<String>,
}

fn time(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, Error> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                Error::BadRequest(format!(
                    "{name} must be an RFC 3339 time such as 2026-11-25T10:00:00Z, got {v:?}"
                ))
            })
        })
        .transpose()
}

/// Checks the query string; returns the filter and whether feedback was asked for.
pub fn parse_list(p: &ListParams) -> Result<(ListFilter, bool), Error> {
    let limit = match &p.limit {
        None => 50,
        Some(l) => l.parse::<i64>().ok().filter(|n| (1..=500).contains(n)).ok_or_else(|| {
            Error::BadRequest(format!("limit must be a whole number from 1 to 500, got {l:?}"))
        })?,
    };
    let outcome = match p.outcome.as_deref() {
        None => None,
        Some("failure") => Some(OutcomeFilter::Failure),
        Some(o @ ("success" | "invalid" | "rejected" | "timeout" | "shed" | "error")) => {
            Some(OutcomeFilter::Exactly(o.into()))
        }
        Some(o) => {
            return Err(Error::BadRequest(format!(
                "outcome must be success, failure, invalid, rejected, timeout, shed or error, got {o:?}"
            )));
        }
    };
    let after = match &p.cursor {
        None => None,
        Some(c) => Some(Cursor::decode(c).ok_or_else(|| {
            Error::BadRequest("cursor is not valid: pass the next_cursor of a previous page unchanged".into())
        })?),
    };
    let feedback = match p.include.as_deref() {
        None | Some("") => false,
        Some("feedback") => true,
        Some(other) => {
            return Err(Error::BadRequest(format!("include may only be \"feedback\", got {other:?}")));
        }
    };
    let filter = ListFilter {
        model: p.model.clone(),
        client: p.client.clone(),
        outcome,
        since: time("since", p.since.as_deref())?,
        until: time("until", p.until.as_deref())?,
        after,
        limit,
    };
    Ok((filter, feedback))
}

pub fn query_error(e: QueryRejection) -> Error {
    Error::BadRequest(format!("bad query string: {}", e.body_text()))
}

pub fn prediction_id(id: &str) -> Result<Uuid, Error> {
    id.parse().map_err(|_| Error::BadRequest(format!("prediction id {id:?} is not a UUID")))
}

/// Feedback on a prediction: the true label, a score, a comment (at least one).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackBody {
    pub label: Option<String>,
    pub score: Option<f64>,
    pub comment: Option<String>,
}

pub fn check_feedback(b: &FeedbackBody) -> Result<(), Error> {
    let bad = |m: &str| Err(Error::BadRequest(m.to_string()));
    if b.label.is_none() && b.score.is_none() && b.comment.is_none() {
        return bad("feedback needs at least one of label, score or comment");
    }
    if b.label.as_ref().is_some_and(|l| l.is_empty() || l.len() > 256) {
        return bad("label must be 1 to 256 bytes");
    }
    if b.comment.as_ref().is_some_and(|c| c.len() > 4096) {
        return bad("comment must be at most 4096 bytes");
    }
    if b.score.is_some_and(|s| !s.is_finite()) {
        return bad("score must be a finite number");
    }
    Ok(())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// 5m, 1h (the default), 24h or 7d.
    pub window: Option<String>,
}

/// The stats windows: a fixed set, so that the cache holds at most four entries per model and no
/// query string can make every request a miss.
pub const WINDOWS: [(&str, u64); 4] = [("5m", 300), ("1h", 3600), ("24h", 86400), ("7d", 7 * 86400)];

/// The seconds of a stats window, which must be one of WINDOWS.
pub fn window_seconds(window: &str) -> Result<u64, Error> {
    WINDOWS
        .iter()
        .find(|(name, _)| *name == window)
        .map(|&(_, seconds)| seconds)
        .ok_or_else(|| Error::BadRequest(format!("window must be one of 5m, 1h, 24h or 7d, got {window:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_windows_come_from_a_fixed_set() {
        assert_eq!(window_seconds("5m").unwrap(), 300);
        assert_eq!(window_seconds("1h").unwrap(), 3600);
        assert_eq!(window_seconds("24h").unwrap(), 86400);
        assert_eq!(window_seconds("7d").unwrap(), 604800);
        assert_eq!(
            window_seconds("2h").unwrap_err().to_string(),
            "window must be one of 5m, 1h, 24h or 7d, got \"2h\""
        );
        assert!(window_seconds("").is_err());
    }

    #[test]
    fn list_parameters_are_checked_with_messages() {
        let p = ListParams { limit: Some("501".into()), ..Default::default() };
        assert_eq!(
            parse_list(&p).unwrap_err().to_string(),
            "limit must be a whole number from 1 to 500, got \"501\""
        );
        let p = ListParams { outcome: Some("ok".into()), ..Default::default() };
        assert!(parse_list(&p).unwrap_err().to_string().starts_with("outcome must be success, failure"));
        let p = ListParams { since: Some("yesterday".into()), ..Default::default() };
        assert!(parse_list(&p).unwrap_err().to_string().starts_with("since must be an RFC 3339 time"));
        let (f, feedback) =
            parse_list(&ListParams { include: Some("feedback".into()), ..Default::default() }).unwrap();
        assert_eq!((f.limit, feedback), (50, true));
    }

    #[test]
    fn empty_feedback_is_refused() {
        let b = FeedbackBody { label: None, score: None, comment: None };
        assert_eq!(
            check_feedback(&b).unwrap_err().to_string(),
            "feedback needs at least one of label, score or comment"
        );
        let b = FeedbackBody { label: None, score: Some(f64::NAN), comment: None };
        assert!(check_feedback(&b).is_err());
    }
}
