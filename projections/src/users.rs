//! Queries of the users read model. Every GET of the API is answered from here.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};

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
}

impl UserRow {
    fn into_view(self, groups: Vec<GroupView>) -> UserView {
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
            groups,
            version: self.last_sequence,
        }
    }
}

const USER_COLUMNS: &str =
    "id, email, first_name, last_name, organisation_id, is_admin, is_staff, \
     is_active, is_email_verified, is_superuser, created, last_sequence";

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

pub async fn find(pool: &PgPool, id: i64) -> sqlx::Result<Option<UserView>> {
    let row: Option<UserRow> =
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?;
    let Some(row) = row else { return Ok(None) };
    let mut groups = groups::of_users(pool, &[row.id]).await?;
    Ok(Some(row.into_view(groups.remove(&id).unwrap_or_default())))
}

/// One page of users in id order, with the total count of the scope.
pub async fn list(pool: &PgPool, scope: ListScope, offset: i64, limit: i64) -> sqlx::Result<Page> {
    // `$N` is the scope's value; both queries bind it (as NULL for `All`).
    let (filter, value) = match scope {
        ListScope::All => ("$N::bigint IS NULL", None),
        ListScope::Organisation(org) => ("organisation_id = $N", Some(org)),
        ListScope::OnlyUser(id) => ("id = $N", Some(id)),
    };
    let count: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM users WHERE {}",
        filter.replace("$N", "$1")
    ))
    .bind(value)
    .fetch_one(pool)
    .await?;
    let rows: Vec<UserRow> = sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE {} ORDER BY id OFFSET $1 LIMIT $2",
        filter.replace("$N", "$3")
    ))
    .bind(offset)
    .bind(limit)
    .bind(value)
    .fetch_all(pool)
    .await?;
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    let mut groups: HashMap<i64, Vec<GroupView>> = groups::of_users(pool, &ids).await?;
    let users = rows
        .into_iter()
        .map(|row| {
            let user_groups = groups.remove(&row.id).unwrap_or_default();
            row.into_view(user_groups)
        })
        .collect();
    Ok(Page { count, users })
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
