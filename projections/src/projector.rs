//! Turns User events into rows of the users read model. The same code serves the inline
//! path (inside the command's transaction, on the live tables) and rebuilds (on fresh
//! tables): `Tables` says which.

use chrono::{DateTime, Utc};
use domain::UserEvent;
use sqlx::{PgConnection, Postgres};

/// The pair of read-model tables an event is applied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub users: String,
    pub user_groups: String,
}

impl Tables {
    /// The tables the API reads.
    pub fn live() -> Self {
        Self::with_suffix("")
    }

    /// `users{suffix}` and `user_groups{suffix}`.
    pub fn with_suffix(suffix: &str) -> Self {
        Self {
            users: format!("users{suffix}"),
            user_groups: format!("user_groups{suffix}"),
        }
    }
}

/// One stored event, addressed by the numeric user id.
pub struct Envelope<'a> {
    pub user_id: i64,
    pub sequence: i64,
    pub recorded_at: DateTime<Utc>,
    pub event: &'a UserEvent,
}

/// Applies one event. An event at or below the row's `last_sequence` changes nothing, so
/// applying a prefix of the log twice is harmless.
pub async fn apply(
    conn: &mut PgConnection,
    tables: &Tables,
    envelope: Envelope<'_>,
) -> sqlx::Result<()> {
    let Envelope {
        user_id,
        sequence,
        recorded_at,
        event,
    } = envelope;
    let row = Row {
        tables,
        user_id,
        sequence,
    };
    let applied = match event {
        UserEvent::Created {
            email,
            first_name,
            last_name,
            organisation_id,
            is_admin,
            is_staff,
            is_superuser,
            groups,
            password_hash,
        } => {
            let inserted = sqlx::query(&format!(
                r#"
                INSERT INTO {} (id, email, first_name, last_name, organisation_id, is_admin,
                                is_staff, is_active, is_email_verified, is_superuser,
                                password_hash, created, last_sequence)
                VALUES ($1, $2, $3, $4, $5, $6, $7, true, false, $8, $9, $10, $11)
                ON CONFLICT (id) DO NOTHING
                "#,
                tables.users
            ))
            .bind(user_id)
            .bind(email)
            .bind(first_name)
            .bind(last_name)
            .bind(organisation_id)
            .bind(is_admin)
            .bind(is_staff)
            .bind(is_superuser)
            .bind(password_hash.expose())
            .bind(recorded_at)
            .bind(sequence)
            .execute(&mut *conn)
            .await?
            .rows_affected()
                == 1;
            if inserted {
                row.replace_groups(conn, groups).await?;
            }
            inserted
        }
        UserEvent::EmailChanged { email } => {
            row.set(conn, "email = $3, is_email_verified = false", email.clone())
                .await?
        }
        UserEvent::FirstNameChanged { first_name } => {
            row.set(conn, "first_name = $3", first_name.clone()).await?
        }
        UserEvent::LastNameChanged { last_name } => {
            row.set(conn, "last_name = $3", last_name.clone()).await?
        }
        UserEvent::OrganisationChanged { organisation_id } => {
            row.set(conn, "organisation_id = $3", *organisation_id)
                .await?
        }
        UserEvent::AdminGranted => row.set(conn, "is_admin = $3", true).await?,
        UserEvent::AdminRevoked => row.set(conn, "is_admin = $3", false).await?,
        UserEvent::Deactivated => row.set(conn, "is_active = $3", false).await?,
        UserEvent::Reactivated => row.set(conn, "is_active = $3", true).await?,
        UserEvent::StaffGranted => row.set(conn, "is_staff = $3", true).await?,
        UserEvent::StaffRevoked => row.set(conn, "is_staff = $3", false).await?,
        UserEvent::SuperuserGranted => row.set(conn, "is_superuser = $3", true).await?,
        UserEvent::SuperuserRevoked => row.set(conn, "is_superuser = $3", false).await?,
        UserEvent::GroupsChanged { groups } => {
            let advanced = row.advance(conn).await?;
            if advanced {
                row.replace_groups(conn, groups).await?;
            }
            advanced
        }
    };
    if !applied {
        tracing::debug!(user_id, sequence, "event already applied; skipped");
    }
    Ok(())
}

struct Row<'a> {
    tables: &'a Tables,
    user_id: i64,
    sequence: i64,
}

impl Row<'_> {
    /// Runs `SET {assignment}, last_sequence = $2` with `$3` bound to `value`, unless the
    /// row is already at or past this event. Returns whether the row changed.
    async fn set<T>(
        &self,
        conn: &mut PgConnection,
        assignment: &str,
        value: T,
    ) -> sqlx::Result<bool>
    where
        T: for<'q> sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + Send + 'static,
    {
        let sql = format!(
            "UPDATE {} SET {assignment}, last_sequence = $2 WHERE id = $1 AND last_sequence < $2",
            self.tables.users
        );
        let result = sqlx::query(&sql)
            .bind(self.user_id)
            .bind(self.sequence)
            .bind(value)
            .execute(&mut *conn)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Moves the row to this event's sequence, for events kept in other tables.
    async fn advance(&self, conn: &mut PgConnection) -> sqlx::Result<bool> {
        let sql = format!(
            "UPDATE {} SET last_sequence = $2 WHERE id = $1 AND last_sequence < $2",
            self.tables.users
        );
        let result = sqlx::query(&sql)
            .bind(self.user_id)
            .bind(self.sequence)
            .execute(&mut *conn)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn replace_groups(&self, conn: &mut PgConnection, groups: &[String]) -> sqlx::Result<()> {
        let user_groups = &self.tables.user_groups;
        sqlx::query(&format!("DELETE FROM {user_groups} WHERE user_id = $1"))
            .bind(self.user_id)
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO {user_groups} (user_id, group_name) SELECT $1, unnest($2::text[])
             ON CONFLICT DO NOTHING"
        ))
        .bind(self.user_id)
        .bind(groups)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
