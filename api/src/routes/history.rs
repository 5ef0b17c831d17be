//! The audit history of a user and time travel, both read from the event store.

use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::Json;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::User;
use projections::history::{self, StoredEvent};
use projections::users::UserView;
use projections::{groups, users};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::openapi::{ErrorBody, HistoryEntry, ValidationErrors};
use crate::pagination::{clamped_positive, param, query_params};
use crate::policy;
use crate::routes::users::UserId;
use crate::routes::Routes;
use crate::state::AppState;

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

pub fn routes(routes: Routes) -> Routes {
    routes.add(Method::GET, "/api/v1/users/{id}/history", history_page)
}

/// The user's audit history, oldest first, `after` exclusive.
#[utoipa::path(
    get, path = "/api/v1/users/{id}/history", tag = "users", security(("bearer" = [])),
    params(
        ("id" = i64, Path, minimum = 1, description = "The user's id."),
        ("after" = Option<i64>, Query, minimum = 0, description = "Events after this sequence (default 0)."),
        ("limit" = Option<i64>, Query, minimum = 1, description = "At most this many (default 100, max 1000)."),
    ),
    responses(
        (status = 200, description = "The events.", body = Vec<HistoryEntry>),
        (status = 400, description = "`after` is not a non-negative integer.", body = ValidationErrors),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "In scope, but not allowed.", body = ErrorBody),
        (status = 404, description = "No such user in the caller's scope.", body = ErrorBody),
        (status = 503, description = "The database is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn history_page(
    State(state): State<AppState>,
    caller: Caller,
    UserId(id): UserId,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<Value>>, ApiError> {
    let target = state.read.find(id).await?.ok_or(ApiError::NotFound)?;
    policy::can_retrieve(&caller, &target)?;
    let params = query_params(query.as_deref());
    let after = match param(&params, "after") {
        None => 0,
        Some(raw) => raw
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|after| *after >= 0)
            .ok_or_else(|| ApiError::field("after", "A valid integer is required."))?,
    };
    let limit = param(&params, "limit").map_or(DEFAULT_LIMIT, |raw| {
        clamped_positive(raw, DEFAULT_LIMIT, MAX_LIMIT)
    });
    let events = history::page(&state.pool, id, after, limit).await?;
    events.iter().map(entry).collect::<Result<_, _>>().map(Json)
}

/// One history entry (contract §3 "Audit history").
pub fn entry(event: &StoredEvent) -> Result<Value, ApiError> {
    let decoded = event.decode().map_err(|e| {
        ApiError::internal(format!(
            "event {} of type {} unreadable: {e}",
            event.sequence, event.event_type
        ))
    })?;
    let actor_id = event.meta("actor_id").and_then(|id| id.parse::<i64>().ok());
    Ok(json!({
        "sequence": event.sequence,
        "event_type": event.event_type,
        "event_version": event.event_version,
        "recorded_at": crate::dto::format_time(event.recorded_at),
        "actor_id": actor_id,
        "request_id": event.meta("request_id"),
        "changes": decoded.changes(),
    }))
}

/// The `as_of` query parameter of a retrieve, if given: `None` when absent.
pub fn as_of(query: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let params = query_params(query);
    let Some(raw) = param(&params, "as_of") else {
        return Ok(None);
    };
    // An unencoded `+` of an offset arrives as a space: take it back.
    DateTime::parse_from_rfc3339(&raw.trim().replace(' ', "+"))
        .map(|time| Some(time.with_timezone(&Utc)))
        .map_err(|_| {
            ApiError::field(
                "as_of",
                "Enter a valid RFC 3339 date-time, e.g. 2024-01-15T09:30:00Z.",
            )
        })
}

/// The user as the events recorded up to `until` make them; `None` if not yet created.
pub async fn user_as_of(
    state: &AppState,
    id: i64,
    until: DateTime<Utc>,
) -> Result<Option<UserView>, ApiError> {
    let events = history::until(&state.pool, id, until).await?;
    let Some(first) = events.first() else {
        return Ok(None);
    };
    let created = first.recorded_at;
    let mut user = User::default();
    let mut version = 0;
    for event in &events {
        let decoded = event.decode().map_err(ApiError::internal)?;
        user.apply(decoded);
        version = event.sequence;
    }
    if !user.exists {
        return Ok(None);
    }
    let all_groups = groups::list_all(&state.pool).await?;
    Ok(Some(users::view_of(id, &user, created, version, |name| {
        all_groups.iter().find(|group| group.name == name).cloned()
    })))
}
