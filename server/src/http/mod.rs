//! The HTTP API: routes, the shared error and metrics plumbing. Each feature module exposes `router()`.

mod auth;
mod body;
mod close;
pub mod health;
mod infer;
pub mod limits;
pub mod log_row;
pub mod models;
pub mod openapi;
mod predictions;
mod predictions_params;
mod schemas;
pub mod web;

use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::Error;
use crate::state::AppState;

pub type SharedState = Arc<AppState>;

/// What probes and scrapers call (route templates): never behind an API key, never turned away by load.
fn is_probe(route: &str) -> bool {
    matches!(route, "/v2/health/live" | "/v2/health/ready" | "/metrics")
}

/// The whole application, ready to serve or to drive with `tower::ServiceExt::oneshot` in tests.
pub fn app(state: SharedState) -> Router {
    api_app(state, true)
}

/// The API, with /metrics on it or (`--metrics-port`) not.
pub fn api_app(state: SharedState, with_metrics: bool) -> Router {
    let mut router = Router::new()
        .merge(health::router())
        .merge(predictions::router())
        .merge(web::router())
        .merge(models::router())
        .merge(infer::router())
        .merge(openapi::router());
    if with_metrics {
        router = router.route("/metrics", get(metrics));
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), auth::authorize))
        .layer(middleware::from_fn_with_state(state.clone(), limits::admit))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(middleware::from_fn(close::close_unread))
        .with_state(state)
}

/// `--metrics-port`: /metrics alone, with no API key and no admission limit (a scraper must get through
/// when the API is saturated).
pub fn metrics_app(state: SharedState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Prometheus' text exposition format. Never behind an API key; with --metrics-port, on that port only.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Every metric", content_type = "text/plain; version=0.0.4", body = String)))]
async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

async fn not_found(request: Request) -> Error {
    Error::RouteNotFound(format!("{} {}", request.method(), request.uri().path()))
}

async fn method_not_allowed(request: Request) -> Error {
    Error::MethodNotAllowed(format!("{} {}", request.method(), request.uri().path()))
}

/// Counts and times every request by its route template (never the raw path, so label values stay few).
async fn track(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let route = route.as_deref().unwrap_or("unmatched");
    // One span per request: the handler records the inference request's `id` in it, the batch queue
    // carries it to the instance thread, and JSON logs print its fields with every line.
    let span = tracing::info_span!("request", method, route, id = tracing::field::Empty);
    let mut response = next.run(request).instrument(span).await;
    if response.status().is_client_error() && !is_json(&response) {
        response = as_json_error(response).await;
    }
    let m = &state.metrics;
    m.http_duration.with_label_values(&[route, method]).observe(started.elapsed().as_secs_f64());
    m.http_requests.with_label_values(&[route, method, response.status().as_str()]).inc();
    response
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

/// Rejections axum's extractors answer with plain text (an undecodable path segment, a body over a
/// route's limit) get the same `{"error": ...}` body as every other error, so clients parse one shape.
async fn as_json_error(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
        _ => parts.status.canonical_reason().unwrap_or("request refused").to_string(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    let body = serde_json::json!({ "error": text }).to_string();
    Response::from_parts(parts, axum::body::Body::from(body))
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}
