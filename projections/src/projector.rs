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
    /// `user_counts`, kept only on the live tables (a rebuild recounts when it swaps).
    pub counts: Option<String>,
}

impl Tables {
    /// The tables the API reads.
    pub fn live() -> Self {
        Self {
            counts: Some("user_counts".to_owned()),
            ..Self::with_suffix("")
        }
    }

    /// `users{suffix}` and `user_groups{suffix}`, without counts.
    pub fn with_suffix(suffix: &str) -> Self {
        Self {
            users: format!("users{suffix}"),
            user_groups: format!("user_groups{suffix}"),
            counts: None,
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
                                password_hash, created, last_sequence, group_names)
                VALUES ($1, $2, $3, $4, $5, $6, $7, true, false, $8, $9, $10, $11,
                        ARRAY(SELECT DISTINCT g COLLATE "C" FROM unnest($12::text[]) AS u (g) ORDER BY 1))
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
            .bind(groups)
            .execute(&mut *conn)
            .await?
            .rows_affected()
                == 1;
            if inserted {
                row.replace_groups(conn, groups).await?;
                row.count(conn, &[(*organisation_id, 1)]).await?;
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
            let before: Option<Option<i64>> = sqlx::query_scalar(&format!(
                "SELECT organisation_id FROM {} WHERE id = $1 AND last_sequence < $2",
                tables.users
            ))
            .bind(user_id)
            .bind(sequence)
            .fetch_optional(&mut *conn)
            .await?;
            let changed = row
                .set(conn, "organisation_id = $3", *organisation_id)
                .await?;
            if let (true, Some(before)) = (changed, before) {
                row.count(conn, &[(before, -1), (*organisation_id, 1)])
                    .await?;
            }
            changed
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
            let changed = row
                .set(
                    conn,
                    "group_names = ARRAY(SELECT DISTINCT g COLLATE \"C\" FROM unnest($3::text[]) AS u (g) ORDER BY 1)",
                    groups.clone(),
                )
                .await?;
            if changed {
                row.replace_groups(conn, groups).await?;
            }
            changed
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

    /// Adds `delta` users to each organisation's count (live tables only).
    async fn count(
        &self,
        conn: &mut PgConnection,
        deltas: &[(Option<i64>, i64)],
    ) -> sqlx::Result<()> {
        let Some(counts) = &self.tables.counts else {
            return Ok(());
        };
        // In organisation order, so that concurrent opposite moves cannot deadlock.
        let mut deltas: Vec<(i64, i64)> = deltas
            .iter()
            .map(|(org, delta)| (org.unwrap_or(0), *delta))
            .collect();
        deltas.sort_unstable();
        let (organisations, changes): (Vec<i64>, Vec<i64>) = deltas.into_iter().unzip();
        sqlx::query(&format!(
            "INSERT INTO {counts} (organisation_id, users)
             SELECT organisation_id, sum(delta)
               FROM unnest($1::bigint[], $2::bigint[]) AS d (organisation_id, delta)
              GROUP BY organisation_id
             ON CONFLICT (organisation_id) DO UPDATE SET users = {counts}.users + EXCLUDED.users"
        ))
        .bind(organisations)
        .bind(changes)
        .execute(&mut *conn)
        .await?;
        Ok(())
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
