//! Queries of the users read model. Every GET of the API is answered from here.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use domain::user::events::PasswordHash;
use domain::User;
use sqlx::{FromRow, PgPool};

use crate::connections::Connections;

use crate::groups::{self, GroupView};

/// A user as the API shows it (no password hash).
#[derive(Debug, Clone, PartialEq)]
pub struct UserView {
    pub id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub organisation_id: Option<i64>,
    pub is_admin: bool,
    pub is_staff: bool,
    pub is_active: bool,
    pub is_email_verified: bool,
    pub is_superuser: bool,
    pub created: DateTime<Utc>,
    pub groups: Vec<GroupView>,
    /// Sequence of the last event applied: the user's version.
    pub version: i64,
}

#[derive(FromRow)]
struct UserRow {
    id: i64,
    email: String,
    first_name: String,
    last_name: String,
    organisation_id: Option<i64>,
    is_admin: bool,
    is_staff: bool,
    is_active: bool,
    is_email_verified: bool,
    is_superuser: bool,
    created: DateTime<Utc>,
    last_sequence: i64,
    group_names: Vec<String>,
    /// `group_catalog.version` as this statement saw it.
    catalog_version: i64,
}

impl UserRow {
    fn into_view(self, catalog: &Catalog) -> UserView {
        UserView {
            id: self.id,
            email: self.email,
            first_name: self.first_name,
            last_name: self.last_name,
            organisation_id: self.organisation_id,
            is_admin: self.is_admin,
            is_staff: self.is_staff,
            is_active: self.is_active,
            is_email_verified: self.is_email_verified,
            is_superuser: self.is_superuser,
            created: self.created,
            // A group deleted since simply stops being shown.
            groups: self
                .group_names
                .iter()
                .filter_map(|name| catalog.groups.get(name).cloned())
                .collect(),
            version: self.last_sequence,
        }
    }
}

macro_rules! user_columns {
    () => {
        "id, email, first_name, last_name, organisation_id, is_admin, is_staff, \
         is_active, is_email_verified, is_superuser, created, last_sequence, group_names, \
         (SELECT version FROM group_catalog) AS catalog_version"
    };
}
const USER_COLUMNS: &str = user_columns!();

/// Which users a list may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListScope {
    All,
    Organisation(i64),
    OnlyUser(i64),
}

pub struct Page {
    pub count: i64,
    pub users: Vec<UserView>,
}

/// The groups with their permissions, as of `version` of `group_catalog`.
#[derive(Default)]
struct Catalog {
    version: i64,
    groups: HashMap<String, GroupView>,
}

/// Reads of the users read model, each one round trip: a user row carries its group names,
/// and the groups' permissions come from a cached catalog that is re-read whenever a row
/// shows that `group_catalog.version` has moved (any change to groups or permissions, by
/// any process, moves it). Cheap to clone; clones share the cache.
///
/// The reads of single users and pages (and the writes, through [`Self::connections`]) use
/// [`Connections`], which save a round trip per query over sqlx's pool.
#[derive(Clone)]
pub struct ReadModel {
    pool: PgPool,
    connections: Connections,
    catalog: Arc<RwLock<Arc<Catalog>>>,
}

impl ReadModel {
    /// With as many request-path connections as `pool` may open.
    pub fn new(pool: PgPool) -> Self {
        let max = pool.options().get_max_connections();
        let connections = Connections::like(&pool, max);
        Self::with_connections(pool, connections)
    }

    pub fn with_connections(pool: PgPool, connections: Connections) -> Self {
        Self {
            pool,
            connections,
            catalog: Arc::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// The catalog at least as new as `version`.
    async fn catalog(&self, version: i64) -> sqlx::Result<Arc<Catalog>> {
        {
            let current = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
            if current.version >= version && version > 0 {
                return Ok(current.clone());
            }
        }
        let (version, groups) = groups::catalog(&self.pool).await?;
        let fresh = Arc::new(Catalog {
            version,
            groups: groups
                .into_iter()
                .map(|group| (group.name.clone(), group))
                .collect(),
        });
        let mut current = self.catalog.write().unwrap_or_else(PoisonError::into_inner);
        if fresh.version >= current.version {
            *current = fresh.clone();
        }
        Ok(fresh)
    }

    async fn views(&self, rows: Vec<UserRow>) -> sqlx::Result<Vec<UserView>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let newest = rows
            .iter()
            .map(|row| row.catalog_version)
            .max()
            .unwrap_or(0);
        let catalog = self.catalog(newest).await?;
        Ok(rows
            .into_iter()
            .map(|row| row.into_view(&catalog))
            .collect())
    }

    pub async fn find(&self, id: i64) -> sqlx::Result<Option<UserView>> {
        Ok(self.find_many(&[id]).await?.pop())
    }

    /// The users with these ids that exist, in id order.
    pub async fn find_many(&self, ids: &[i64]) -> sqlx::Result<Vec<UserView>> {
        let query = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = ANY($1) ORDER BY id"
        ));
        let rows: Vec<UserRow> = self.connections.fetch_all(query.bind(ids)).await?;
        self.views(rows).await
    }

    /// The user as the API shows it and as the aggregate decides on it, both from one row:
    /// the row is written in the same statement that stores the events, so it is exactly
    /// the fold of the user's events up to `version` (a snapshot that never lags).
    pub async fn find_for_write(&self, id: i64) -> sqlx::Result<Option<(UserView, User)>> {
        Ok(self.find_many_for_write(&[id]).await?.pop())
    }

    /// [`Self::find_for_write`] for several users in one round trip, in id order.
    pub async fn find_many_for_write(&self, ids: &[i64]) -> sqlx::Result<Vec<(UserView, User)>> {
        let query = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            ", password_hash FROM users WHERE id = ANY($1) ORDER BY id"
        ));
        let found: Vec<UserRowWithHash> = self.connections.fetch_all(query.bind(ids)).await?;
        let mut states = Vec::with_capacity(found.len());
        let mut rows = Vec::with_capacity(found.len());
        for UserRowWithHash { row, password_hash } in found {
            states.push(User {
                exists: true,
                email: row.email.clone(),
                first_name: row.first_name.clone(),
                last_name: row.last_name.clone(),
                organisation_id: row.organisation_id,
                is_admin: row.is_admin,
                is_staff: row.is_staff,
                is_superuser: row.is_superuser,
                is_active: row.is_active,
                is_email_verified: row.is_email_verified,
                groups: row.group_names.iter().cloned().collect(),
                password_hash: Some(PasswordHash::new(password_hash)),
            });
            rows.push(row);
        }
        Ok(self.views(rows).await?.into_iter().zip(states).collect())
    }

    /// `before` as it is after a write left the user in `state` at `version`, without a
    /// query: groups come from the cached catalog (fresh: `before` was just read with it).
    pub fn view_after(&self, before: &UserView, state: &User, version: i64) -> UserView {
        let catalog = self
            .catalog
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        view_of(before.id, state, before.created, version, |name| {
            catalog.groups.get(name).cloned()
        })
    }

    /// One page of users in id order, with the number of users in the scope (kept in
    /// `user_counts`, never counted per request).
    pub async fn list(&self, scope: ListScope, offset: i64, limit: i64) -> sqlx::Result<Page> {
        let (filter, count_sql, value) = match scope {
            ListScope::All => (
                "$3::bigint IS NULL",
                "SELECT coalesce(sum(users), 0)::bigint FROM user_counts WHERE $1::bigint IS NULL",
                None,
            ),
            ListScope::Organisation(org) => (
                "organisation_id = $3",
                "SELECT coalesce(sum(users), 0)::bigint FROM user_counts WHERE organisation_id = $1",
                Some(org),
            ),
            ListScope::OnlyUser(id) => (
                "id = $3",
                "SELECT count(*) FROM users WHERE id = $1",
                Some(id),
            ),
        };
        let page_sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE {filter} ORDER BY id OFFSET $1 LIMIT $2"
        );
        let mut connection = self.connections.acquire().await?;
        let count = sqlx::query_scalar(count_sql)
            .bind(value)
            .fetch_one(&mut *connection)
            .await;
        let count: i64 = match count {
            Ok(count) => count,
            Err(error) => return connection.finish(Err(error)),
        };
        let result = sqlx::query_as(&page_sql)
            .bind(offset)
            .bind(limit)
            .bind(value)
            .fetch_all(&mut *connection)
            .await;
        let rows: Vec<UserRow> = connection.finish(result)?;
        Ok(Page {
            count,
            users: self.views(rows).await?,
        })
    }
}

/// User `id` as the API shows it, in `state` at `version`; `group` finds a group with its
/// permissions (a group that no longer exists is left out).
pub fn view_of(
    id: i64,
    state: &User,
    created: DateTime<Utc>,
    version: i64,
    group: impl Fn(&str) -> Option<GroupView>,
) -> UserView {
    UserView {
        id,
        email: state.email.clone(),
        first_name: state.first_name.clone(),
        last_name: state.last_name.clone(),
        organisation_id: state.organisation_id,
        is_admin: state.is_admin,
        is_staff: state.is_staff,
        is_active: state.is_active,
        is_email_verified: state.is_email_verified,
        is_superuser: state.is_superuser,
        created,
        groups: state.groups.iter().filter_map(|name| group(name)).collect(),
        version,
    }
}

#[derive(FromRow)]
struct UserRowWithHash {
    #[sqlx(flatten)]
    row: UserRow,
    password_hash: String,
}

/// What login needs: the stored hash and whether the account may log in.
pub struct Credentials {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub is_active: bool,
}

pub async fn credentials_by_email(pool: &PgPool, email: &str) -> sqlx::Result<Option<Credentials>> {
    // PostgreSQL text cannot hold NUL, and no stored address has one.
    if email.contains('\0') {
        return Ok(None);
    }
    let row: Option<(i64, String, String, bool)> = sqlx::query_as(
        "SELECT id, email, password_hash, is_active FROM users WHERE lower(email) = lower($1)",
    )
    .bind(email.trim())
    .fetch_optional(pool)
    .await?;
    Ok(
        row.map(|(id, email, password_hash, is_active)| Credentials {
            id,
            email,
            password_hash,
            is_active,
        }),
    )
}

/// Whether `normalized_email` is claimed by a user other than `except`. Advisory (for
/// reporting every validation error at once); the claim in the write transaction decides.
pub async fn email_taken(
    pool: &PgPool,
    normalized_email: &str,
    except: Option<i64>,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM email_claims WHERE email = $1 AND user_id IS DISTINCT FROM $2)",
    )
    .bind(normalized_email)
    .bind(except)
    .fetch_one(pool)
    .await
}

pub async fn any_exist(pool: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users)")
        .fetch_one(pool)
        .await
}

/// The id of the user with this email (ignoring case).
pub async fn id_by_email(pool: &PgPool, email: &str) -> sqlx::Result<Option<i64>> {
    if email.contains('\0') {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT user_id FROM email_claims WHERE email = lower(trim($1))")
        .bind(email)
        .fetch_optional(pool)
        .await
}
