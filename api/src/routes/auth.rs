//! `/api/v1/auth`: login and refresh (simplejwt shapes).

use axum::extract::State;
use axum::http::Method;
use axum::Json;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use domain::user::values::normalize_email;
use projections::{login_throttle, users};
use serde_json::{json, Value};

use crate::auth::TokenType;
use crate::body::{Fields, JsonObject};
use crate::error::ApiError;
use crate::openapi::{
    BadRequest, ErrorBody, LoginRequest, LoginResponse, RefreshRequest, RefreshResponse,
};
use crate::routes::Routes;
use crate::state::AppState;

pub fn routes(routes: Routes) -> Routes {
    routes.add(Method::POST, "/api/v1/auth/login", login).add(
        Method::POST,
        "/api/v1/auth/refresh",
        refresh,
    )
}

/// Unknown email, wrong password and inactive user get the same answer after the same work:
/// a password check always runs (against a dummy hash when there is no account) and a
/// failure is recorded. Too many recent failures for the email or the client address
/// answer `429` without checking anything.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body(content = LoginRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Access and refresh tokens.", body = LoginResponse),
        (status = 400, description = "A field missing or not a string, or malformed JSON.", body = BadRequest),
        (status = 401, description = "No active account found with the given credentials.", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB.", body = ErrorBody),
        (status = 415, description = "Not `application/json`.", body = ErrorBody),
        (status = 429, description = "Too many failed logins; see `Retry-After`.", body = ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds."))),
        (status = 503, description = "The database is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn login(
    State(state): State<AppState>,
    client: ClientAddress,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let (email, password) = crate::dto::parse_login(&body)?;
    let limits = state.login_throttle;
    // NUL cannot be stored in PostgreSQL text; no real address has one.
    let email_key = format!("email:{}", normalize_email(&email).replace('\0', ""));
    let client_key = format!("client:{}", client.0);
    for (key, limit) in [
        (&email_key, limits.max_failures_per_email),
        (&client_key, limits.max_failures_per_client),
    ] {
        if let Some(retry_after_secs) =
            login_throttle::retry_after(&state.pool, key, limit, limits.window_secs).await?
        {
            crate::observability::login_throttled();
            return Err(ApiError::Throttled { retry_after_secs });
        }
    }
    let account = users::credentials_by_email(&state.pool, &email).await?;
    let stored_hash = account.as_ref().map(|a| a.password_hash.as_str());
    let matched = state.hasher.verify(&password, stored_hash).await;
    let Some(account) = account.filter(|account| matched && account.is_active) else {
        let keys = [email_key, client_key];
        crate::observability::login_failure();
        login_throttle::record_failure(&state.pool, &keys, limits.window_secs).await?;
        return Err(ApiError::LoginFailed);
    };
    login_throttle::clear(&state.pool, &email_key).await?;
    Ok(Json(json!({
        "tokens": {
            "access": state.tokens.issue(account.id, TokenType::Access)?,
            "refresh": state.tokens.issue(account.id, TokenType::Refresh)?,
        },
        "email": account.email,
    })))
}

/// The client's IP address as the socket sees it ("unknown" without connection info).
/// Proxies' forwarding headers are not trusted.
pub(crate) struct ClientAddress(String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<crate::limits::PeerAddr>>()
                .map_or_else(|| "unknown".to_owned(), |info| info.0 .0.ip().to_string()),
        ))
    }
}

/// A new access token for a refresh token of an active user.
#[utoipa::path(
    post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body(content = RefreshRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "A new access token.", body = RefreshResponse),
        (status = 400, description = "`refresh` missing or not a string, or malformed JSON.", body = BadRequest),
        (status = 401, description = "Not a valid refresh token of an active user.", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB.", body = ErrorBody),
        (status = 415, description = "Not `application/json`.", body = ErrorBody),
        (status = 503, description = "The database is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let mut fields = Fields::new(&body);
    let token = fields.required_string("refresh");
    fields.finish()?;
    let user_id = token
        .and_then(|token| state.tokens.verify(&token, TokenType::Refresh))
        .ok_or(ApiError::InvalidToken)?;
    let user = state
        .read
        .find(user_id)
        .await?
        .filter(|user| user.is_active)
        .ok_or(ApiError::InvalidToken)?;
    Ok(Json(
        json!({"access": state.tokens.issue(user.id, TokenType::Access)?}),
    ))
}
