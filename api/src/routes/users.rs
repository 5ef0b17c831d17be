//! `/api/v1/users`: thin handlers. Extract, authorize, read the body into a command, execute
//! it, answer from the read model.

use std::collections::BTreeSet;

use axum::extract::{FromRequest, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use domain::{Changes, Email, OrganisationId, UserCommand};
use projections::idempotency::Claim;
use projections::{groups, users};
use serde_json::{Map, Value};

use crate::auth::{Absent, Caller, Prefetched};
use crate::body::{Fields, JsonObject};
use crate::commands::{CommandError, Metadata, Source, MAX_ATTEMPTS};
use crate::dto::{CreateDraft, PageResponse, UpdateDraft, UserResponse};
use crate::error::ApiError;
use crate::idempotency;
use crate::openapi::{
    BadRequest, CreateUserRequest, ErrorBody, PatchUserRequest, UpdateUserRequest, ValidationErrors,
};
use crate::pagination::{PageRequest, PageUrls};
use crate::policy::{self, Field};
use crate::request_id::RequestId;
use crate::routes::{history, Routes};
use crate::state::AppState;

pub fn routes(routes: Routes) -> Routes {
    routes
        .add(Method::GET, "/api/v1/users", list)
        .add(Method::POST, "/api/v1/users", create)
        .add(Method::GET, "/api/v1/users/{id}", retrieve)
        .add(Method::PUT, "/api/v1/users/{id}", update)
        .add(Method::PATCH, "/api/v1/users/{id}", patch)
        .add(Method::DELETE, "/api/v1/users/{id}", destroy)
}

/// Users in the caller's scope, `id` ascending.
#[utoipa::path(
    get, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    params(
        ("page" = Option<i64>, Query, minimum = 1, description = "1-based page number (default 1)."),
        ("page_size" = Option<i64>, Query, minimum = 1,
            description = "Users per page (default 50, larger than 1000 is clamped)."),
    ),
    responses(
        (status = 200, description = "One page of users.", body = PageResponse),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 404, description = "`Invalid page.`: past the last page.", body = ErrorBody),
        (status = 503, description = "The database is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Json<PageResponse>, ApiError> {
    let request = PageRequest::from_query(query.as_deref())?;
    let page = state
        .read
        .list(
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
#[utoipa::path(
    get, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(
        ("id" = i64, Path, minimum = 1, description = "The user's id."),
        ("as_of" = Option<String>, Query, format = DateTime,
            description = "Time travel: the user as the events recorded up to this time make them."),
    ),
    responses(
        (status = 200, description = "The user.", body = UserResponse,
            headers(("ETag" = String, description = "The user's version, e.g. `\"3\"`."))),
        (status = 400, description = "`as_of` is not an RFC 3339 date-time.", body = ValidationErrors),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "In scope, but not allowed.", body = ErrorBody),
        (status = 404, description = "No such user in the caller's scope.", body = ErrorBody),
        (status = 503, description = "The database is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn retrieve(
    State(state): State<AppState>,
    caller: Caller,
    UserId(id): UserId,
    RawQuery(query): RawQuery,
    prefetched: Option<Extension<Prefetched>>,
    absent: Option<Extension<Absent>>,
) -> Result<Response, ApiError> {
    let as_of = history::as_of(query.as_deref())?;
    let target = match (prefetched, absent) {
        (Some(Extension(Prefetched { view, .. })), _) if view.id == id => view,
        (_, Some(Extension(Absent(missing)))) if missing == id => return Err(ApiError::NotFound),
        _ => find(&state, id).await?,
    };
    policy::can_retrieve(&caller, &target)?;
    let Some(until) = as_of else {
        return Ok(user_response(StatusCode::OK, target));
    };
    let then = history::user_as_of(&state, id, until)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(user_response(StatusCode::OK, then))
}

/// Creates a user (`201`, `Location: /api/v1/users/{id}`).
#[utoipa::path(
    post, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    params(
        ("Idempotency-Key" = Option<String>, Header,
            description = "Retries with the same key and body answer the first response \
                without creating again (kept 24 h); the same key with another body is `422`."),
    ),
    request_body(content = CreateUserRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created.", body = UserResponse,
            headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Invalid fields, all at once, or malformed JSON.", body = BadRequest),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "Not allowed to create (here).", body = ErrorBody),
        (status = 409, description = "A request with this Idempotency-Key is still running.", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB.", body = ErrorBody),
        (status = 415, description = "Not `application/json`.", body = ErrorBody),
        (status = 422, description = "Idempotency-Key reused with another body.", body = ErrorBody),
        (status = 503, description = "The database is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Extension(request_id): Extension<RequestId>,
    request: Request,
) -> Result<Response, ApiError> {
    policy::can_begin_create(&caller)?;
    let key = idempotency::key(request.headers())?;
    let JsonObject(body) = JsonObject::from_request(request, &()).await?;
    let Some(key) = key else {
        let user = create_user(&state, &caller, &request_id, &body, None).await?;
        return Ok(created_response(user));
    };
    let fingerprint = idempotency::fingerprint(&state.idempotency_secret, &body);
    let new_id = state.commands.next_user_id().await?;
    let claim = projections::idempotency::claim(
        &state.pool,
        caller.id(),
        &key,
        &fingerprint,
        new_id,
        idempotency::TTL_SECS,
        idempotency::ABANDON_SECS,
    )
    .await?;
    let (user_id, response, version) = match claim {
        Claim::Mismatch => return Err(ApiError::IdempotencyMismatch),
        Claim::Run { user_id } => {
            // A key taken over from a request that died may have created its user already.
            let user = match state.read.find(user_id).await? {
                Some(user) => user,
                None => {
                    match create_user(&state, &caller, &request_id, &body, Some(user_id)).await {
                        Ok(user) => user,
                        Err(error) => {
                            // Free the key only when the create surely did not happen; after
                            // a 5xx its user may exist, and a retry finds it by the id.
                            if error.is_client_error() {
                                projections::idempotency::release(&state.pool, caller.id(), &key)
                                    .await?;
                            }
                            return Err(error);
                        }
                    }
                }
            };
            let version = user.version;
            let json =
                serde_json::to_value(UserResponse::from(user)).map_err(ApiError::internal)?;
            projections::idempotency::complete(&state.pool, caller.id(), &key, &json, version)
                .await?;
            (user_id, json, version)
        }
        Claim::Replay {
            user_id,
            response,
            version,
        } => (user_id, response, version),
        // The first request has not recorded its answer: still running, or its process died
        // after the commit (then its user is there to answer with).
        Claim::InProgress { user_id } => {
            let user = state
                .read
                .find(user_id)
                .await?
                .ok_or(ApiError::IdempotencyInProgress)?;
            let version = user.version;
            (
                user_id,
                serde_json::to_value(UserResponse::from(user)).map_err(ApiError::internal)?,
                version,
            )
        }
    };
    Ok(respond(
        StatusCode::CREATED,
        response,
        version,
        Some(user_id),
    ))
}

/// Validates a create body against the database, authorizes it and creates the user, with
/// the id given or a new one.
async fn create_user(
    state: &AppState,
    caller: &Caller,
    request_id: &RequestId,
    body: &Map<String, Value>,
    id: Option<i64>,
) -> Result<users::UserView, ApiError> {
    let mut fields = Fields::new(body);
    let draft = CreateDraft::read(&mut fields);
    check_database(
        state,
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
    policy::can_create(caller, organisation_id, &new_user.groups)?;
    let id = match id {
        Some(id) => id,
        None => state.commands.next_user_id().await?,
    };
    state
        .commands
        .execute(
            id,
            UserCommand::Create(new_user),
            &metadata(caller, request_id),
            None,
        )
        .await?;
    state
        .read
        .find(id)
        .await?
        .ok_or_else(|| ApiError::internal("created user missing from the read model"))
}

/// `201` with the user, `ETag` and `Location`.
fn created_response(user: users::UserView) -> Response {
    let (id, version) = (user.id, user.version);
    respond(
        StatusCode::CREATED,
        UserResponse::from(user),
        version,
        Some(id),
    )
}

/// Full update: required fields must be present; omitted optional fields stay.
#[utoipa::path(
    put, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(
        ("id" = i64, Path, minimum = 1, description = "The user's id."),
        ("If-Match" = Option<String>, Header, description = "The version from `ETag`: stale → `412`."),
    ),
    request_body(content = UpdateUserRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated user.", body = UserResponse,
            headers(("ETag" = String))),
        (status = 400, description = "Invalid fields, all at once, or malformed JSON.", body = BadRequest),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "In scope, but not allowed.", body = ErrorBody),
        (status = 404, description = "No such user in the caller's scope.", body = ErrorBody),
        (status = 409, description = "Lost to concurrent writes too many times; retry.", body = ErrorBody),
        (status = 412, description = "`If-Match` is stale.", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB.", body = ErrorBody),
        (status = 415, description = "Not `application/json`.", body = ErrorBody),
        (status = 503, description = "The database is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn update(
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

/// Partial update.
#[utoipa::path(
    patch, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(
        ("id" = i64, Path, minimum = 1, description = "The user's id."),
        ("If-Match" = Option<String>, Header, description = "The version from `ETag`: stale → `412`."),
    ),
    request_body(content = PatchUserRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated user.", body = UserResponse,
            headers(("ETag" = String))),
        (status = 400, description = "Invalid fields, all at once, or malformed JSON.", body = BadRequest),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "In scope, but not allowed.", body = ErrorBody),
        (status = 404, description = "No such user in the caller's scope.", body = ErrorBody),
        (status = 409, description = "Lost to concurrent writes too many times; retry.", body = ErrorBody),
        (status = 412, description = "`If-Match` is stale.", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB.", body = ErrorBody),
        (status = 415, description = "Not `application/json`.", body = ErrorBody),
        (status = 503, description = "The database is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn patch(
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
    mut request: Request,
) -> Result<(DecidedWrite<'a>, users::UserView, Map<String, Value>), ApiError> {
    let prefetched = request.extensions_mut().remove::<Prefetched>();
    let absent = request.extensions_mut().remove::<Absent>();
    let (target, user) = current_target(state, id, prefetched, absent).await?;
    policy::can_begin_change(caller, &target)?;
    let (if_match, first) =
        checked_if_match(state, request.headers(), target.clone(), user).await?;
    let write = DecidedWrite {
        caller,
        user_id: target.id,
        request_id,
        if_match,
        first: Some(first),
    };
    let JsonObject(body) = JsonObject::from_request(request, &()).await?;
    Ok((write, target, body))
}

/// The target of a write: read with the caller if it was, otherwise now.
async fn current_target(
    state: &AppState,
    id: i64,
    prefetched: Option<Prefetched>,
    absent: Option<Absent>,
) -> Result<(users::UserView, domain::User), ApiError> {
    match (prefetched, absent) {
        (
            Some(Prefetched {
                view,
                state: Some(state),
            }),
            _,
        ) if view.id == id => Ok((view, state)),
        (_, Some(Absent(missing))) if missing == id => Err(ApiError::NotFound),
        _ => state
            .read
            .find_for_write(id)
            .await?
            .ok_or(ApiError::NotFound),
    }
}

/// The version `If-Match` demands, checked against `target`; a mismatch is re-checked on a
/// fresh read (the target may have been read before a write that just finished) before it
/// is `412`. Returns the target to decide on first.
async fn checked_if_match(
    state: &AppState,
    headers: &HeaderMap,
    target: users::UserView,
    user: domain::User,
) -> Result<(Option<i64>, (users::UserView, domain::User)), ApiError> {
    match if_match(headers, target.version) {
        Ok(version) => Ok((version, (target, user))),
        Err(_) => {
            let (fresh, user) = state
                .read
                .find_for_write(target.id)
                .await?
                .ok_or(ApiError::NotFound)?;
            Ok((if_match(headers, fresh.version)?, (fresh, user)))
        }
    }
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

/// Deactivates the user (nothing is erased); again on an inactive user records nothing.
#[utoipa::path(
    delete, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(
        ("id" = i64, Path, minimum = 1, description = "The user's id."),
        ("If-Match" = Option<String>, Header, description = "The version from `ETag`: stale → `412`."),
    ),
    responses(
        (status = 204, description = "Deactivated."),
        (status = 401, description = "No valid access token.", body = ErrorBody),
        (status = 403, description = "In scope, but not allowed (or oneself).", body = ErrorBody),
        (status = 404, description = "No such user in the caller's scope.", body = ErrorBody),
        (status = 409, description = "Lost to concurrent writes too many times; retry.", body = ErrorBody),
        (status = 412, description = "`If-Match` is stale.", body = ErrorBody),
        (status = 503, description = "The database is unavailable.", body = ErrorBody),
    )
)]
pub(crate) async fn destroy(
    State(state): State<AppState>,
    caller: Caller,
    Extension(request_id): Extension<RequestId>,
    UserId(id): UserId,
    headers: HeaderMap,
    prefetched: Option<Extension<Prefetched>>,
    absent: Option<Extension<Absent>>,
) -> Result<StatusCode, ApiError> {
    let prefetched = prefetched.map(|Extension(p)| p);
    let absent = absent.map(|Extension(a)| a);
    let (target, user) = current_target(&state, id, prefetched, absent).await?;
    policy::can_delete(&caller, &target)?;
    let (if_match, first) = checked_if_match(&state, &headers, target.clone(), user).await?;
    let write = DecidedWrite {
        caller: &caller,
        user_id: target.id,
        request_id: &request_id,
        if_match,
        first: Some(first),
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
    /// The target as already read, for the first attempt (a stale one only costs a retry).
    first: Option<(users::UserView, domain::User)>,
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
        mut self,
        state: &AppState,
        command: UserCommand,
        authorize: impl Fn(&users::UserView) -> Result<(), ApiError>,
    ) -> Result<users::UserView, ApiError> {
        let metadata = metadata(self.caller, self.request_id);
        let turn = state.commands.turn(self.user_id).await;
        if turn.waited() {
            self.first = None;
        }
        for attempt in 1..=MAX_ATTEMPTS {
            let (target, user) = match self.first.take() {
                Some(first) => first,
                None => state
                    .read
                    .find_for_write(self.user_id)
                    .await?
                    .ok_or(ApiError::NotFound)?,
            };
            if self
                .if_match
                .is_some_and(|version| version != target.version)
            {
                return Err(ApiError::PreconditionFailed);
            }
            authorize(&target)?;
            match state
                .commands
                .decide(&turn, user, target.version, command.clone(), &metadata)
                .await
            {
                Ok(decided) => {
                    return Ok(state
                        .read
                        .view_after(&target, &decided.state, decided.version));
                }
                Err(CommandError::Conflict) => {
                    crate::commands::backoff(self.user_id, attempt).await;
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
    state.read.find(id).await?.ok_or(ApiError::NotFound)
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
    let version = user.version;
    respond(status, UserResponse::from(user), version, None)
}

/// A user body with its `ETag` (the version) and, for a create, its `Location`.
fn respond(
    status: StatusCode,
    body: impl serde::Serialize,
    version: i64,
    location: Option<i64>,
) -> Response {
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{version}\"")) {
        headers.insert(header::ETAG, etag);
    }
    if let Some(id) = location {
        if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/users/{id}")) {
            headers.insert(header::LOCATION, location);
        }
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
