//! The OpenAPI 3.1 document, derived from the handlers' `#[utoipa::path]` attributes and the
//! response types. Request bodies are read field by field (unknown fields ignored, every
//! error reported at once), so their schemas below describe what is accepted rather than
//! being deserialised from.

#![allow(dead_code)] // the request schemas exist for the document only

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::dto::{GroupResponse, PageResponse, PermissionResponse, UserResponse};
use crate::routes::{auth, docs, health, history, users};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Users service",
        description = "The Users resource of the Finput public API, event-sourced. \
            Every write is an immutable event; `/api/v1/users/{id}/history` replays them.",
        license(name = "Proprietary"),
    ),
    paths(
        users::list,
        users::create,
        users::retrieve,
        users::update,
        users::patch,
        users::destroy,
        history::history_page,
        auth::login,
        auth::refresh,
        health::healthz,
        health::readyz,
        health::metrics,
        docs::openapi_json,
        docs::docs_index,
        docs::docs_asset,
    ),
    components(schemas(
        UserResponse,
        GroupResponse,
        PermissionResponse,
        PageResponse,
        CreateUserRequest,
        UpdateUserRequest,
        PatchUserRequest,
        LoginRequest,
        LoginResponse,
        TokenPair,
        RefreshRequest,
        RefreshResponse,
        HistoryEntry,
        ErrorBody,
        ValidationErrors,
        BadRequest,
        Status,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "Users: list, create, retrieve, update, deactivate."),
        (name = "auth", description = "JWT login and refresh (simplejwt shapes)."),
        (name = "operations", description = "Health, readiness, metrics and documentation."),
    )
)]
pub struct ApiDoc;

/// The document as served at `/api/v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An access token from `POST /api/v1/auth/login`."))
                    .build(),
            ),
        );
    }
}

/// Every error but validation: a human message and a stable machine code.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// e.g. `Not found.`
    detail: String,
    /// e.g. `not_found`, `permission_denied`, `token_not_valid`.
    code: String,
}

/// Validation errors: messages per field; errors of no single field under
/// `non_field_errors`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"email": ["A user with this email already exists."]}))]
pub struct ValidationErrors(BTreeMap<String, Vec<String>>);

/// A `400`: validation errors per field, or (for a body that is not JSON) a parse error.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum BadRequest {
    Validation(ValidationErrors),
    Parse(ErrorBody),
}

/// `POST /api/v1/users`. `is_*` fields are ignored.
#[derive(ToSchema)]
pub struct CreateUserRequest {
    /// Trimmed; unique among all users ignoring case.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// Stored only as an argon2id hash.
    #[schema(min_length = 8, max_length = 128)]
    password: String,
    /// Not blank after trimming.
    #[schema(min_length = 1, max_length = 150)]
    first_name: String,
    #[schema(min_length = 1, max_length = 150)]
    last_name: String,
    /// Existing group names. Omitted: no groups.
    user_types: Option<Vec<String>>,
    /// Omitted: the caller's organisation.
    #[schema(minimum = 1)]
    organisation_id: Option<Option<i64>>,
}

/// `PUT /api/v1/users/{id}`: omitted optional fields are left unchanged.
#[derive(ToSchema)]
pub struct UpdateUserRequest {
    #[schema(format = Email, max_length = 254)]
    email: String,
    #[schema(min_length = 1, max_length = 150)]
    first_name: String,
    #[schema(min_length = 1, max_length = 150)]
    last_name: String,
    #[schema(minimum = 1)]
    organisation_id: Option<Option<i64>>,
    is_admin: Option<bool>,
    /// `false` deactivates, `true` reactivates.
    is_active: Option<bool>,
    /// Replaces the user's groups.
    user_types: Option<Vec<String>>,
}

/// `PATCH /api/v1/users/{id}`: every field optional; `{}` changes nothing.
#[derive(ToSchema)]
pub struct PatchUserRequest {
    #[schema(min_length = 1, max_length = 150)]
    first_name: Option<String>,
    #[schema(min_length = 1, max_length = 150)]
    last_name: Option<String>,
    #[schema(minimum = 1)]
    organisation_id: Option<Option<i64>>,
    is_admin: Option<bool>,
    is_active: Option<bool>,
}

#[derive(ToSchema)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(ToSchema)]
pub struct TokenPair {
    access: String,
    refresh: String,
}

#[derive(ToSchema)]
pub struct LoginResponse {
    tokens: TokenPair,
    email: String,
}

#[derive(ToSchema)]
pub struct RefreshRequest {
    refresh: String,
}

#[derive(ToSchema)]
pub struct RefreshResponse {
    access: String,
}

/// One event of a user's audit history.
#[derive(ToSchema)]
pub struct HistoryEntry {
    sequence: i64,
    event_type: String,
    event_version: String,
    #[schema(format = DateTime)]
    recorded_at: String,
    /// The user who made the change; `null` for the CLI and imports.
    actor_id: Option<i64>,
    request_id: Option<String>,
    /// The fields this event set; a password shows as `[redacted]`.
    changes: BTreeMap<String, serde_json::Value>,
}

/// Health and readiness.
#[derive(ToSchema)]
pub struct Status {
    /// `ok` or `unavailable`.
    status: String,
}
