//! `/api/v1/auth`: login and refresh (simplejwt shapes).

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use projections::users;
use serde_json::{json, Value};

use crate::auth::TokenType;
use crate::body::{Fields, JsonObject};
use crate::error::ApiError;
use crate::routes::route_both;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    let router = route_both(Router::new(), "/api/v1/auth/login", post(login));
    route_both(router, "/api/v1/auth/refresh", post(refresh))
}

/// Unknown email, wrong password and inactive user get the same answer after the same work:
/// a password check always runs (against a dummy hash when there is no account).
async fn login(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let (email, password) = crate::dto::parse_login(&body)?;
    let account = users::credentials_by_email(&state.pool, &email).await?;
    let matched = state
        .hasher
        .verify(
            &password,
            account.as_ref().map(|a| a.password_hash.as_str()),
        )
        .await;
    let account = account
        .filter(|account| matched && account.is_active)
        .ok_or(ApiError::LoginFailed)?;
    Ok(Json(json!({
        "tokens": {
            "access": state.tokens.issue(account.id, TokenType::Access)?,
            "refresh": state.tokens.issue(account.id, TokenType::Refresh)?,
        },
        "email": account.email,
    })))
}

async fn refresh(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let mut fields = Fields::new(&body);
    let token = fields.required_string("refresh");
    fields.finish()?;
    let user_id = token
        .and_then(|token| state.tokens.verify(&token, TokenType::Refresh))
        .ok_or(ApiError::InvalidToken)?;
    let user = users::find(&state.pool, user_id)
        .await?
        .filter(|user| user.is_active)
        .ok_or(ApiError::InvalidToken)?;
    Ok(Json(
        json!({"access": state.tokens.issue(user.id, TokenType::Access)?}),
    ))
}
