//! The small web page at `/`: the served models and a form to run an inference. Its script and
//! stylesheet are compiled in and served under content-hashed names, so that a proxy may cache them for a
//! year; the page itself is never cached.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::SharedState;
use super::models::all_metadata;
use crate::error::Error;

const INDEX: &str = include_str!("../../web/index.html");

/// One static file, by the name the page links it under.
pub struct Asset {
    pub path: String,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

fn asset(stem: &str, extension: &str, content_type: &'static str, bytes: &'static [u8]) -> Asset {
    let hash = format!("{:x}", Sha256::digest(bytes));
    Asset { path: format!("/assets/{stem}.{}.{extension}", &hash[..12]), content_type, bytes }
}

pub static ASSETS: LazyLock<[Asset; 3]> = LazyLock::new(|| {
    [
        asset("app", "js", "text/javascript; charset=utf-8", include_bytes!("../../web/app.js")),
        asset("app", "css", "text/css; charset=utf-8", include_bytes!("../../web/app.css")),
        asset("log", "js", "text/javascript; charset=utf-8", include_bytes!("../../web/log.js")),
    ]
});

pub fn router() -> Router<SharedState> {
    Router::new().route("/", get(index)).route("/assets/{file}", get(static_file))
}

/// The page with its asset links and the models' metadata filled in. The JSON sits inside a <script>
/// element, so '<' (and '>' and '&') are escaped to keep a model name from closing it.
pub fn render(models_json: &str) -> String {
    let safe = models_json.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026");
    INDEX
        .replace("{{app.js}}", &ASSETS[0].path)
        .replace("{{app.css}}", &ASSETS[1].path)
        .replace("{{log.js}}", &ASSETS[2].path)
        .replace("{{models}}", &safe)
}

/// The web page: served models, an inference form, the prediction log.
#[utoipa::path(get, path = "/", tag = "web",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
async fn index(State(state): State<SharedState>) -> Response {
    let models = match state.registry() {
        Ok(registry) => serde_json::to_string(&all_metadata(registry)).unwrap_or_else(|_| "[]".into()),
        Err(_) => "[]".into(),
    };
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
        render(&models),
    )
        .into_response()
}

/// The page's script and stylesheet, under content-hashed names (cacheable for a year).
#[utoipa::path(get, path = "/assets/{file}", tag = "web", params(("file" = String, Path)), responses(
    (status = 200, description = "The file", content((String = "text/javascript"), (String = "text/css"))),
    (status = 404, description = "No such asset", body = super::schemas::ErrorBody,
     example = json!({"error": "no such route: GET /assets/missing.js"}))))]
async fn static_file(Path(file): Path<String>) -> Response {
    let wanted = format!("/assets/{file}");
    match ASSETS.iter().find(|a| a.path == wanted) {
        Some(a) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            a.bytes,
        )
            .into_response(),
        None => Error::RouteNotFound(format!("GET {wanted}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_hashed_assets_and_escapes_the_model_list() {
        let page = render(r#"[{"name":"</script><b>"}]"#);
        assert!(!page.contains("{{"));
        assert!(page.contains(&format!("href=\"{}\"", ASSETS[1].path)));
        assert!(page.contains(&format!("src=\"{}\"", ASSETS[0].path)));
        // log.js defines what app.js uses, so it comes first.
        let (log, app) = (page.find(&ASSETS[2].path), page.find(&ASSETS[0].path));
        assert!(log.is_some() && log < app, "log.js is linked before app.js");
        assert!(page.contains(r#"[{"name":"\u003c/script\u003e\u003cb\u003e"}]"#));
        assert!(!page.contains("</script><b>"));
    }

    #[test]
    fn asset_names_carry_twelve_hex_digits_of_their_content_hash() {
        let js = &ASSETS[0].path;
        let hash = js.trim_start_matches("/assets/app.").trim_end_matches(".js");
        assert_eq!(hash.len(), 12);
        assert_eq!(hash, &format!("{:x}", Sha256::digest(ASSETS[0].bytes))[..12]);
    }
}
