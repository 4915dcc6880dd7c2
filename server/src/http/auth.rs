//! Which route needs which API key scope, checked before the handler runs (the keys are `crate::auth`'s).

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::SharedState;
use crate::auth::Scope;

/// The scope a route template needs, or `None` for what probes and scrapers use (liveness, readiness,
/// model readiness, metrics) and the web page's static files.
pub fn required_scope(route: &str, method: &Method) -> Option<Scope> {
    match route {
        r if super::is_probe(r) => None,
        "/v2/models/{model}/ready"
        | "/v2/models/{model}/versions/{version}/ready"
        | "/"
        | "/assets/{file}" => None,
        r if r.starts_with("/api/") => Some(if method == Method::POST { Scope::Write } else { Scope::Read }),
        r if r == "/v2" || r.starts_with("/v2/") => Some(Scope::Infer),
        _ => None,
    }
}

/// Refuses the request (401, 403) unless its key grants the route's scope. Unmatched paths go on to
/// the 404 fallback.
pub async fn authorize(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str());
    if let Some((route, scope)) = route.and_then(|r| Some((r, required_scope(r, request.method())?))) {
        let authorization = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
        if let Err(e) = state.access.allow(route, authorization, scope) {
            return e.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_metrics_and_the_page_are_open_and_everything_else_needs_its_scope() {
        for open in [
            "/v2/health/live",
            "/v2/health/ready",
            "/v2/models/{model}/ready",
            "/metrics",
            "/",
            "/openapi.json",
        ] {
            assert_eq!(required_scope(open, &Method::GET), None, "{open}");
        }
        assert_eq!(required_scope("/v2/models/{model}/infer", &Method::POST), Some(Scope::Infer));
        assert_eq!(required_scope("/v2/models/{model}/config", &Method::GET), Some(Scope::Infer));
        assert_eq!(required_scope("/v2/models/stats", &Method::GET), Some(Scope::Infer));
        assert_eq!(required_scope("/v2", &Method::GET), Some(Scope::Infer));
        assert_eq!(required_scope("/api/predictions/{id}", &Method::GET), Some(Scope::Read));
        assert_eq!(required_scope("/api/models", &Method::GET), Some(Scope::Read));
        assert_eq!(required_scope("/api/predictions/{id}/feedback", &Method::POST), Some(Scope::Write));
    }
}
