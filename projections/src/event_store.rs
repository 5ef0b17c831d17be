//! The User event repository (architecture §1). Reads are delegated to postgres-es; `persist`
//! writes the events, the email claims they imply and the inline users projection in one
//! transaction, so an acknowledged write is never missing from the read model and an email
//! is never taken twice.

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use domain::{user::values::normalize_email, User, UserEvent};
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::postgres::PgDatabaseError;
use sqlx::{PgConnection, PgPool};

use crate::projector::{self, Envelope, Tables};

/// The email a command wanted is claimed by another user. Travels through cqrs-es as
/// `PersistenceError::UnknownError` and is told apart by downcasting.
/// Metadata key by which a command demands that its events directly follow a version (an
/// HTTP `If-Match`). Checked and removed here, never stored.
pub const EXPECTED_VERSION: &str = "expected_version";

#[derive(Debug, thiserror::Error)]
#[error("a user with this email already exists")]
pub struct EmailTaken;

pub struct UserEventRepository {
    pool: PgPool,
    reads: PostgresEventRepository,
}

impl UserEventRepository {
    pub fn new(pool: PgPool) -> Self {
        Self {
            reads: PostgresEventRepository::new(pool.clone()),
            pool,
        }
    }

    async fn persist_in_tx(
        &self,
        events: &[SerializedEvent],
        snapshot: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let mut tx = self.pool.begin().await.map_err(connection_error)?;
        for (index, event) in events.iter().enumerate() {
            let event = &without_expected_version(event, index == 0)?;
            let recorded_at = insert_event(&mut tx, event).await?;
            if event.aggregate_type == User::TYPE {
                let user_event: UserEvent = serde_json::from_value(event.payload.clone())?;
                let user_id = event.aggregate_id.parse::<i64>().map_err(|e| {
                    PersistenceError::UnknownError(format!("user aggregate id: {e}").into())
                })?;
                claim_email(&mut tx, user_id, &user_event).await?;
                projector::apply(
                    &mut tx,
                    &Tables::live(),
                    Envelope {
                        user_id,
                        sequence: sequence_of(event)?,
                        recorded_at,
                        event: &user_event,
                    },
                )
                .await
                .map_err(unknown_error)?;
            }
        }
        if let Some((aggregate_id, payload, current_snapshot)) = snapshot {
            save_snapshot(&mut tx, events, aggregate_id, payload, current_snapshot).await?;
        }
        tx.commit().await.map_err(connection_error)?;
        Ok(())
    }
}

impl PersistedEventRepository for UserEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.reads.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if events.is_empty() && snapshot_update.is_none() {
            return Ok(());
        }
        self.persist_in_tx(events, snapshot_update).await
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_events::<A>(aggregate_id).await
    }

    /// Delegated for completeness only: it orders by per-aggregate sequence, so anything
    /// that needs the whole log reads it by `global_position` instead (architecture §2).
    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_all_events::<A>().await
    }
}

/// Strips `EXPECTED_VERSION` from the metadata. When it was set, the event must be the one
/// right after that version, otherwise another write got in between: a conflict.
fn without_expected_version(
    event: &SerializedEvent,
    first_of_commit: bool,
) -> Result<SerializedEvent, PersistenceError> {
    let mut event = event.clone();
    let expected = event
        .metadata
        .as_object_mut()
        .and_then(|metadata| metadata.remove(EXPECTED_VERSION));
    if let (Some(expected), true) = (expected, first_of_commit) {
        let follows = expected
            .as_str()
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|version| version + 1 == event.sequence);
        if !follows {
            return Err(PersistenceError::OptimisticLockError);
        }
    }
    Ok(event)
}

fn sequence_of(event: &SerializedEvent) -> Result<i64, PersistenceError> {
    i64::try_from(event.sequence).map_err(|e| PersistenceError::UnknownError(Box::new(e)))
}

/// Inserts one event and returns its commit timestamp. A primary-key violation is another
/// writer that got to this sequence first: an optimistic-lock conflict, retried by the caller.
async fn insert_event(
    conn: &mut PgConnection,
    event: &SerializedEvent,
) -> Result<chrono::DateTime<chrono::Utc>, PersistenceError> {
    sqlx::query_scalar(
        r#"
        INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                            payload, metadata)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        RETURNING recorded_at
        "#,
    )
    .bind(&event.aggregate_type)
    .bind(&event.aggregate_id)
    .bind(sequence_of(event)?)
    .bind(&event.event_type)
    .bind(&event.event_version)
    .bind(&event.payload)
    .bind(&event.metadata)
    .fetch_one(conn)
    .await
    .map_err(|e| match violated_constraint(&e) {
        Some("events_pkey") => PersistenceError::OptimisticLockError,
        _ => unknown_error(e),
    })
}

/// Keeps `email_claims` in step with the events: a create claims its email, a change moves
/// the claim. A unique violation means the email belongs to someone else.
async fn claim_email(
    conn: &mut PgConnection,
    user_id: i64,
    event: &UserEvent,
) -> Result<(), PersistenceError> {
    let query = match event {
        UserEvent::Created { email, .. } => {
            sqlx::query("INSERT INTO email_claims (email, user_id) VALUES ($1, $2)")
                .bind(normalize_email(email))
        }
        UserEvent::EmailChanged { email } => {
            sqlx::query("UPDATE email_claims SET email = $1 WHERE user_id = $2")
                .bind(normalize_email(email))
        }
        _ => return Ok(()),
    };
    query
        .bind(user_id)
        .execute(conn)
        .await
        .map_err(|e| match violated_constraint(&e) {
            Some("email_claims_pkey") => PersistenceError::UnknownError(Box::new(EmailTaken)),
            _ => unknown_error(e),
        })?;
    Ok(())
}

async fn save_snapshot(
    conn: &mut PgConnection,
    events: &[SerializedEvent],
    aggregate_id: String,
    payload: Value,
    current_snapshot: usize,
) -> Result<(), PersistenceError> {
    let (Some(last), Some(first)) = (events.last(), events.first()) else {
        return Ok(());
    };
    let current_snapshot =
        i64::try_from(current_snapshot).map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
    sqlx::query(
        r#"
        INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
           SET last_sequence = EXCLUDED.last_sequence,
               current_snapshot = EXCLUDED.current_snapshot,
               payload = EXCLUDED.payload
        "#,
    )
    .bind(&first.aggregate_type)
    .bind(aggregate_id)
    .bind(sequence_of(last)?)
    .bind(current_snapshot)
    .bind(payload)
    .execute(conn)
    .await
    .map_err(unknown_error)?;
    Ok(())
}

fn violated_constraint(error: &sqlx::Error) -> Option<&str> {
    let db = error.as_database_error()?;
    if db.kind() != sqlx::error::ErrorKind::UniqueViolation {
        return None;
    }
    db.try_downcast_ref::<PgDatabaseError>()
        .and_then(PgDatabaseError::constraint)
}

fn connection_error(error: sqlx::Error) -> PersistenceError {
    PersistenceError::ConnectionError(Box::new(error))
}

/// An unavailable database is a connection error (a `503`); anything else is unexpected.
fn unknown_error(error: sqlx::Error) -> PersistenceError {
    if crate::is_unavailable(&error) {
        connection_error(error)
    } else {
        PersistenceError::UnknownError(Box::new(error))
    }
}
