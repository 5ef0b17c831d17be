//! One error type for every HTTP failure, mapped to status and body in one place. Bodies
//! follow the API contract (DRF shapes); 5xx bodies are generic and the cause is logged once.

use std::collections::BTreeMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Validation messages per field, as DRF reports them.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("JSON parse error")]
    MalformedJson(String),
    #[error("authentication credentials were not provided")]
    NotAuthenticated,
    #[error("token not valid")]
    InvalidToken,
    #[error("user inactive or gone")]
    InactiveUser,
    #[error("login failed")]
    LoginFailed,
    #[error("permission denied")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("invalid page")]
    InvalidPage,
    #[error("method not allowed")]
    MethodNotAllowed(String),
    #[error("conflicting concurrent write")]
    Conflict,
    #[error("stale version")]
    PreconditionFailed,
    #[error("body too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType(String),
    #[error("too many failed logins")]
    Throttled { retry_after_secs: i64 },
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("request timed out")]
    Timeout,
    #[error("idempotency key reused with another body")]
    IdempotencyMismatch,
    #[error("idempotency key in use")]
    IdempotencyInProgress,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(BTreeMap::from([(field.to_owned(), vec![message.into()])]))
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    /// Whether the request was refused before anything could have been written (a 4xx
    /// other than a conflict): retrying it unchanged is pointless, and nothing happened.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Self::Validation(_)
                | Self::MalformedJson(_)
                | Self::NotAuthenticated
                | Self::InvalidToken
                | Self::InactiveUser
                | Self::Forbidden
                | Self::NotFound
                | Self::PayloadTooLarge
                | Self::UnsupportedMediaType(_)
        )
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if projections::is_unavailable(&error) {
            Self::Unavailable(error.to_string())
        } else {
            Self::Internal(error.to_string())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, detail) = match &self {
            Self::Validation(errors) => {
                return (StatusCode::BAD_REQUEST, Json(errors)).into_response();
            }
            Self::MalformedJson(cause) => (
                StatusCode::BAD_REQUEST,
                "parse_error",
                format!("JSON parse error - {cause}"),
            ),
            Self::NotAuthenticated => (
                StatusCode::UNAUTHORIZED,
                "not_authenticated",
                "Authentication credentials were not provided.".to_owned(),
            ),
            Self::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "token_not_valid",
                "Given token not valid for any token type".to_owned(),
            ),
            Self::InactiveUser => (
                StatusCode::UNAUTHORIZED,
                "user_inactive",
                "User is inactive".to_owned(),
            ),
            Self::LoginFailed => (
                StatusCode::UNAUTHORIZED,
                "no_active_account",
                "No active account found with the given credentials".to_owned(),
            ),
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "permission_denied",
                "You do not have permission to perform this action.".to_owned(),
            ),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found.".to_owned()),
            Self::InvalidPage => (
                StatusCode::NOT_FOUND,
                "not_found",
                "Invalid page.".to_owned(),
            ),
            Self::MethodNotAllowed(method) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("Method \"{method}\" not allowed."),
            ),
            Self::Conflict => (
                StatusCode::CONFLICT,
                "conflict",
                "The user was changed by another request at the same time; retry.".to_owned(),
            ),
            Self::PreconditionFailed => (
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "The user has changed since the version given in If-Match.".to_owned(),
            ),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Request body exceeds 64 KiB.".to_owned(),
            ),
            Self::UnsupportedMediaType(media_type) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Unsupported media type \"{media_type}\" in request."),
            ),
            Self::Throttled { retry_after_secs } => {
                let body = json!({
                    "detail": format!(
                        "Request was throttled. Expected available in {retry_after_secs} seconds."
                    ),
                    "code": "throttled",
                });
                let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
                return response;
            }
            Self::Unavailable(cause) => {
                tracing::warn!(%cause, "database unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "Service temporarily unavailable, try again later.".to_owned(),
                )
            }
            Self::IdempotencyMismatch => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different request body.".to_owned(),
            ),
            Self::IdempotencyInProgress => (
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "A request with this Idempotency-Key is still being processed; retry later."
                    .to_owned(),
            ),
            Self::Timeout => {
                tracing::warn!("request timed out");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    "The request took too long; try again later.".to_owned(),
                )
            }
            Self::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "error",
                    "A server error occurred.".to_owned(),
                )
            }
        };
        let mut response = (status, Json(json!({"detail": detail, "code": code}))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<crate::commands::CommandError> for ApiError {
    fn from(error: crate::commands::CommandError) -> Self {
        use crate::commands::CommandError;
        use domain::UserError;
        match error {
            CommandError::Domain(UserError::NotFound) => Self::NotFound,
            CommandError::Domain(UserError::AlreadyExists) | CommandError::Conflict => {
                Self::Conflict
            }
            CommandError::Domain(UserError::PasswordHashing) => {
                Self::internal("password hashing failed")
            }
            CommandError::EmailTaken => Self::field("email", crate::routes::users::EMAIL_TAKEN),
            CommandError::Stale => Self::PreconditionFailed,
            CommandError::Invalid(cause) => Self::Internal(cause),
            CommandError::Unavailable(cause) => Self::Unavailable(cause),
            CommandError::Unexpected(cause) => Self::Internal(cause),
        }
    }
}
