//! The OpenAPI document and its interactive page. The Swagger UI files are compiled into
//! the binary (`utoipa-swagger-ui`'s vendored copy): the page works offline, no CDN.

use std::sync::{Arc, OnceLock};

use axum::extract::Path;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_swagger_ui::Config;

use crate::error::ApiError;
use crate::openapi::ErrorBody;
use crate::routes::Routes;

pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

pub fn routes(routes: Routes) -> Routes {
    routes
        .add(Method::GET, OPENAPI_PATH, openapi_json)
        .add(Method::GET, "/docs", docs_index)
        .add(Method::GET, "/docs/{file}", docs_asset)
}

/// The document, serialised once.
fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        crate::openapi::document()
            .to_json()
            .expect("the OpenAPI document serialises")
    })
}

/// This OpenAPI 3.1 document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object,
        content_type = "application/json")))]
pub(crate) async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

/// Interactive documentation (Swagger UI) of this document.
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "The documentation page.", body = String,
        content_type = "text/html")))]
pub(crate) async fn docs_index() -> Response {
    // Served at `/docs` and `/docs/` alike: a base element makes the page's relative asset
    // links resolve under `/docs/` either way.
    match swagger_file("index.html") {
        Some((bytes, _)) => {
            let html = String::from_utf8_lossy(&bytes).replacen(
                "<head>",
                "<head>\n    <base href=\"/docs/\">",
                1,
            );
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                )],
                html,
            )
                .into_response()
        }
        None => ApiError::NotFound.into_response(),
    }
}

/// A file of the documentation page (scripts, styles, icons).
#[utoipa::path(get, path = "/docs/{file}", tag = "operations",
    params(("file" = String, Path, description = "e.g. `swagger-ui.css`.")),
    responses(
        (status = 200, description = "The file.", body = String, content_type = "application/octet-stream"),
        (status = 404, description = "No such file.", body = ErrorBody),
    ))]
pub(crate) async fn docs_asset(Path(file): Path<String>) -> Response {
    match swagger_file(&file) {
        Some((bytes, content_type)) => {
            let content_type = HeaderValue::from_str(&content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, content_type)],
                bytes,
            )
                .into_response()
        }
        None => ApiError::NotFound.into_response(),
    }
}

fn swagger_file(file: &str) -> Option<(Vec<u8>, String)> {
    static CONFIG: OnceLock<Arc<Config<'static>>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| Arc::new(Config::from(OPENAPI_PATH)));
    match utoipa_swagger_ui::serve(file, config.clone()) {
        Ok(Some(found)) => Some((found.bytes.into_owned(), found.content_type)),
        Ok(None) => None,
        Err(error) => {
            tracing::error!(%error, file, "documentation asset unavailable");
            None
        }
    }
}
