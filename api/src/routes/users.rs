//! `/api/v1/users`: thin handlers. Extract, authorize, read the body into a command, execute
//! it, answer from the read model.

use std::collections::BTreeSet;

use axum::extract::{FromRequest, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use domain::{Changes, Email, OrganisationId, UserCommand};
use projections::{groups, users};
use serde_json::{Map, Value};

use crate::auth::Caller;
use crate::body::{Fields, JsonObject};
use crate::commands::{CommandError, Metadata, Source, MAX_ATTEMPTS};
use crate::dto::{CreateDraft, PageResponse, UpdateDraft, UserResponse};
use crate::error::ApiError;
use crate::pagination::{PageRequest, PageUrls};
use crate::policy::{self, Field};
use crate::request_id::RequestId;
use crate::routes::{history, route_both};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    let router = route_both(Router::new(), "/api/v1/users", get(list).post(create));
    route_both(
        router,
        "/api/v1/users/{id}",
        get(retrieve).put(update).patch(patch).delete(destroy),
    )
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Json<PageResponse>, ApiError> {
    let request = PageRequest::from_query(query.as_deref())?;
    let page = users::list(
        &state.pool,
        policy::list_scope(&caller),
        request.offset()?,
        request.page_size,
    )
    .await?;
    let urls = PageUrls::new(&headers, &uri, &request, page.count)?;
    Ok(Json(PageResponse {
        count: page.count,
        next: urls.next,
        previous: urls.previous,
        results: page.users.into_iter().map(UserResponse::from).collect(),
    }))
}

/// The user now, or with `?as_of=<RFC 3339>` as they were then (folded from the events;
/// `404` if they did not exist yet). Scope and permission are judged on the user as now.
async fn retrieve(
    State(state): State<AppState>,
    caller: Caller,
    UserId(id): UserId,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let as_of = history::as_of(query.as_deref())?;
    let target = find(&state, id).await?;
    policy::can_retrieve(&caller, &target)?;
    let Some(until) = as_of else {
        return Ok(user_response(StatusCode::OK, target));
    };
    let then = history::user_as_of(&state, id, until)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(user_response(StatusCode::OK, then))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Extension(request_id): Extension<RequestId>,
    request: Request,
) -> Result<Response, ApiError> {
    policy::can_begin_create(&caller)?;
    let JsonObject(body) = JsonObject::from_request(request, &()).await?;
    let mut fields = Fields::new(&body);
    let draft = CreateDraft::read(&mut fields);
    check_database(
        &state,
        &mut fields,
        draft.email.as_ref(),
        None,
        draft.groups.as_ref(),
    )
    .await?;
    fields.finish()?;
    let mut new_user = draft
        .complete()
        .ok_or_else(|| ApiError::internal("create body valid but incomplete"))?;
    if !body.contains_key("organisation_id") {
        new_user.organisation_id = caller
            .organisation_id()
            .and_then(|id| OrganisationId::parse(id).ok());
    }
    let organisation_id = new_user.organisation_id.map(OrganisationId::get);
    policy::can_create(&caller, organisation_id, &new_user.groups)?;
    let id = state.commands.next_user_id().await?;
    state
        .commands
        .execute(
            id,
            UserCommand::Create(new_user),
            &metadata(&caller, &request_id),
            None,
        )
        .await?;
    let user = users::find(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::internal("created user missing from the read model"))?;
    let mut response = user_response(StatusCode::CREATED, user);
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/users/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Extension(request_id): Extension<RequestId>,
    UserId(id): UserId,
    request: Request,
) -> Result<Response, ApiError> {
    let (write, target, body) = begin_change(&state, &caller, &request_id, id, request).await?;
    let mut fields = Fields::new(&body);
    let draft = UpdateDraft::read(&mut fields);
    let groups = draft.groups.as_ref().and_then(Option::as_ref);
    let email = draft.email.as_ref();
    check_database(&state, &mut fields, email, Some(target.id), groups).await?;
    fields.finish()?;
    let update = draft
        .complete()
        .ok_or_else(|| ApiError::internal("update body valid but incomplete"))?;
    write.change(&state, UserCommand::Update(update)).await
}

async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Extension(request_id): Extension<RequestId>,
    UserId(id): UserId,
    request: Request,
) -> Result<Response, ApiError> {
    let (write, _, body) = begin_change(&state, &caller, &request_id, id, request).await?;
    let mut fields = Fields::new(&body);
    let patch = crate::dto::read_patch(&mut fields);
    fields.finish()?;
    let patch = patch.ok_or_else(|| ApiError::internal("patch body valid but incomplete"))?;
    write.change(&state, UserCommand::Patch(patch)).await
}

/// The common start of PUT and PATCH, in DRF's order: the target (404), the permission
/// (403), the `If-Match` (412), then the body (415/413/400).
async fn begin_change<'a>(
    state: &AppState,
    caller: &'a Caller,
    request_id: &'a RequestId,
    id: i64,
    request: Request,
) -> Result<(DecidedWrite<'a>, users::UserView, Map<String, Value>), ApiError> {
    let target = find(state, id).await?;
    policy::can_begin_change(caller, &target)?;
    let write = DecidedWrite {
        caller,
        user_id: target.id,
        request_id,
        if_match: if_match(request.headers(), target.version)?,
    };
    let JsonObject(body) = JsonObject::from_request(request, &()).await?;
    Ok((write, target, body))
}

/// The fields a PUT or PATCH would really change on `target`.
fn changed_fields(requested: &Changes, target: &users::UserView) -> Vec<Field> {
    let current_groups: BTreeSet<&str> = target.groups.iter().map(|g| g.name.as_str()).collect();
    let mut changed = Vec::new();
    if requested
        .email
        .as_ref()
        .is_some_and(|e| e.as_str() != target.email)
    {
        changed.push(Field::Email);
    }
    if requested
        .first_name
        .as_ref()
        .is_some_and(|n| n.as_str() != target.first_name)
    {
        changed.push(Field::FirstName);
    }
    if requested
        .last_name
        .as_ref()
        .is_some_and(|n| n.as_str() != target.last_name)
    {
        changed.push(Field::LastName);
    }
    if requested
        .organisation_id
        .is_some_and(|id| id.map(OrganisationId::get) != target.organisation_id)
    {
        changed.push(Field::Organisation);
    }
    if requested
        .is_admin
        .is_some_and(|admin| admin != target.is_admin)
    {
        changed.push(Field::IsAdmin);
    }
    if requested
        .is_active
        .is_some_and(|active| active != target.is_active)
    {
        changed.push(Field::IsActive);
    }
    if let Some(groups) = &requested.groups {
        let wanted: BTreeSet<&str> = groups.iter().map(String::as_str).collect();
        if wanted != current_groups {
            changed.push(Field::Groups {
                touches_admin: wanted.contains(policy::ADMIN_GROUP)
                    != current_groups.contains(policy::ADMIN_GROUP),
            });
        }
    }
    changed
}

async fn destroy(
    State(state): State<AppState>,
    caller: Caller,
    Extension(request_id): Extension<RequestId>,
    UserId(id): UserId,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let target = find(&state, id).await?;
    policy::can_delete(&caller, &target)?;
    let write = DecidedWrite {
        caller: &caller,
        user_id: target.id,
        request_id: &request_id,
        if_match: if_match(&headers, target.version)?,
    };
    let authorize = |target: &users::UserView| policy::can_delete(&caller, target);
    write
        .run(&state, UserCommand::Deactivate, authorize)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A write whose permission depends on the target's current state (its organisation, its
/// flags, whether it is the caller). Under this process's turn for the user, the target is
/// read, authorized and written at exactly that version; when another instance wrote in
/// between, all of it is decided again (a bounded number of times, then `409`). With an
/// `If-Match`, a changed version is `412` instead.
struct DecidedWrite<'a> {
    caller: &'a Caller,
    user_id: i64,
    request_id: &'a RequestId,
    if_match: Option<i64>,
}

impl DecidedWrite<'_> {
    /// A PUT or PATCH, authorized on the fields it changes of the user as it then is.
    async fn change(self, state: &AppState, command: UserCommand) -> Result<Response, ApiError> {
        let requested = command.changes().unwrap_or_default();
        let caller = self.caller;
        let authorize = |target: &users::UserView| {
            policy::can_change(caller, target, &changed_fields(&requested, target))
        };
        let user = self.run(state, command, authorize).await?;
        Ok(user_response(StatusCode::OK, user))
    }

    async fn run(
        self,
        state: &AppState,
        command: UserCommand,
        authorize: impl Fn(&users::UserView) -> Result<(), ApiError>,
    ) -> Result<users::UserView, ApiError> {
        let metadata = metadata(self.caller, self.request_id);
        let turn = state.commands.turn(self.user_id).await;
        for _ in 0..MAX_ATTEMPTS {
            let target = find(state, self.user_id).await?;
            if self
                .if_match
                .is_some_and(|version| version != target.version)
            {
                return Err(ApiError::PreconditionFailed);
            }
            authorize(&target)?;
            let expected = Some(target.version);
            match state
                .commands
                .execute_in_turn(&turn, command.clone(), &metadata, expected)
                .await
            {
                Ok(()) => return find(state, self.user_id).await,
                Err(CommandError::Stale) if self.if_match.is_none() => {
                    tracing::debug!(user_id = self.user_id, "written meanwhile; deciding again");
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(ApiError::Conflict)
    }
}

/// A user id from the path. A non-integer or non-positive id (or an undecodable path) is
/// simply not found.
pub struct UserId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for UserId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        raw.parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(Self)
            .ok_or(ApiError::NotFound)
    }
}

async fn find(state: &AppState, id: i64) -> Result<users::UserView, ApiError> {
    users::find(&state.pool, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// The checks that need the database, added to the field errors so every error is reported
/// at once: the email is free (ignoring case), and every group exists.
async fn check_database(
    state: &AppState,
    fields: &mut Fields<'_>,
    email: Option<&Email>,
    owner: Option<i64>,
    groups: Option<&BTreeSet<String>>,
) -> Result<(), ApiError> {
    if let Some(email) = email {
        if users::email_taken(&state.pool, &email.normalized(), owner).await? {
            fields.error("email", EMAIL_TAKEN);
        }
    }
    if let Some(groups) = groups {
        let names: Vec<String> = groups.iter().cloned().collect();
        for name in groups::unknown(&state.pool, &names).await? {
            fields.error(
                "user_types",
                format!("Object with name={name} does not exist."),
            );
        }
    }
    Ok(())
}

pub const EMAIL_TAKEN: &str = "A user with this email already exists.";

fn metadata(caller: &Caller, request_id: &RequestId) -> Metadata {
    Metadata {
        actor_id: Some(caller.id()),
        request_id: request_id.0.clone(),
        source: Source::Http,
    }
}

/// The user object with its version as `ETag`.
fn user_response(status: StatusCode, user: users::UserView) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", user.version)).ok();
    let mut response = (status, Json(UserResponse::from(user))).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// The version an `If-Match` header demands, checked against the current one. `*` and
/// absence demand nothing; anything else that is not the current version is `412`.
fn if_match(headers: &HeaderMap, current: i64) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::PreconditionFailed)?
        .trim();
    if value == "*" {
        return Ok(None);
    }
    let matches = value.split(',').any(|tag| {
        let tag = tag.trim().trim_start_matches("W/").trim_matches('"');
        tag.parse::<i64>() == Ok(current)
    });
    if matches {
        Ok(Some(current))
    } else {
        Err(ApiError::PreconditionFailed)
    }
}
