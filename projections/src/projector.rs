//! Turns User events into rows of the `users` and `user_groups` tables. The same code serves
//! the inline path (inside the command's transaction) and a rebuild from the log.

use chrono::{DateTime, Utc};
use domain::UserEvent;
use sqlx::PgConnection;

/// One stored event, addressed by the numeric user id.
pub struct Envelope<'a> {
    pub user_id: i64,
    pub sequence: i64,
    pub recorded_at: DateTime<Utc>,
    pub event: &'a UserEvent,
}

/// Applies one event. An event at or below the row's `last_sequence` changes nothing, so
/// applying a prefix of the log twice is harmless.
pub async fn apply(conn: &mut PgConnection, envelope: Envelope<'_>) -> sqlx::Result<()> {
    let Envelope {
        user_id,
        sequence,
        recorded_at,
        event,
    } = envelope;
    let update = |set: &'static str| sqlx::query(set).bind(user_id).bind(sequence);
    let result = match event {
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
            let inserted = sqlx::query(
                r#"
                INSERT INTO users (id, email, first_name, last_name, organisation_id, is_admin,
                                   is_staff, is_active, is_email_verified, is_superuser,
                                   password_hash, created, last_sequence)
                VALUES ($1, $2, $3, $4, $5, $6, $7, true, false, $8, $9, $10, $11)
                ON CONFLICT (id) DO NOTHING
                "#,
            )
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
            .await?;
            if inserted.rows_affected() == 1 {
                replace_groups(conn, user_id, groups).await?;
            }
            return Ok(());
        }
        UserEvent::EmailChanged { email } => {
            update(
                "UPDATE users SET email = $3, is_email_verified = false, last_sequence = $2
                 WHERE id = $1 AND last_sequence < $2",
            )
            .bind(email)
            .execute(&mut *conn)
            .await?
        }
        UserEvent::FirstNameChanged { first_name } => {
            update("UPDATE users SET first_name = $3, last_sequence = $2 WHERE id = $1 AND last_sequence < $2")
                .bind(first_name)
                .execute(&mut *conn)
                .await?
        }
        UserEvent::LastNameChanged { last_name } => {
            update("UPDATE users SET last_name = $3, last_sequence = $2 WHERE id = $1 AND last_sequence < $2")
                .bind(last_name)
                .execute(&mut *conn)
                .await?
        }
        UserEvent::OrganisationChanged { organisation_id } => {
            update("UPDATE users SET organisation_id = $3, last_sequence = $2 WHERE id = $1 AND last_sequence < $2")
                .bind(organisation_id)
                .execute(&mut *conn)
                .await?
        }
        UserEvent::AdminGranted | UserEvent::AdminRevoked => {
            update("UPDATE users SET is_admin = $3, last_sequence = $2 WHERE id = $1 AND last_sequence < $2")
                .bind(matches!(event, UserEvent::AdminGranted))
                .execute(&mut *conn)
                .await?
        }
        UserEvent::Deactivated | UserEvent::Reactivated => {
            update("UPDATE users SET is_active = $3, last_sequence = $2 WHERE id = $1 AND last_sequence < $2")
                .bind(matches!(event, UserEvent::Reactivated))
                .execute(&mut *conn)
                .await?
        }
        UserEvent::StaffGranted | UserEvent::StaffRevoked => {
            update("UPDATE users SET is_staff = $3, last_sequence = $2 WHERE id = $1 AND last_sequence < $2")
                .bind(matches!(event, UserEvent::StaffGranted))
                .execute(&mut *conn)
                .await?
        }
        UserEvent::SuperuserGranted | UserEvent::SuperuserRevoked => {
            update("UPDATE users SET is_superuser = $3, last_sequence = $2 WHERE id = $1 AND last_sequence < $2")
                .bind(matches!(event, UserEvent::SuperuserGranted))
                .execute(&mut *conn)
                .await?
        }
        UserEvent::GroupsChanged { groups } => {
            let result = update(
                "UPDATE users SET last_sequence = $2 WHERE id = $1 AND last_sequence < $2",
            )
            .execute(&mut *conn)
            .await?;
            if result.rows_affected() == 1 {
                replace_groups(conn, user_id, groups).await?;
            }
            result
        }
    };
    if result.rows_affected() == 0 {
        tracing::debug!(user_id, sequence, "event already applied; skipped");
    }
    Ok(())
}

async fn replace_groups(
    conn: &mut PgConnection,
    user_id: i64,
    groups: &[String],
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM user_groups WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO user_groups (user_id, group_name) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(groups)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
