//! The User event repository (architecture §1). Reads are delegated to postgres-es; `persist`
//! writes the events, the email claims they imply and the inline users projection in one
//! transaction, so an acknowledged write is never missing from the read model and an email
//! is never taken twice.

use crate::connections::Connections;
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

/// Metadata key by which a command demands that its events directly follow a version.
/// Checked and removed by [`UserEventRepository::persist`], never stored.
pub const EXPECTED_VERSION: &str = "expected_version";

/// The email a command wanted is claimed by another user. Travels as
/// `PersistenceError::UnknownError` and is told apart by downcasting.
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

/// SQLSTATE 40P01 (deadlock detected) or 40001 (serialization failure).
fn is_lost_race(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
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

/// The inline write path of the service: stores `events` (which take `user_id` from
/// `before` to `after`) and writes the read model in **one statement**, so one round trip
/// and one atomic commit, with the same guarantees as [`UserEventRepository::persist`]:
/// a taken sequence is `OptimisticLockError`, a taken email is `EmailTaken`, and either
/// everything is written or nothing.
///
/// The users row gets `after` whole: the aggregate's state is by definition the fold of its
/// events, which is what the event-by-event projector computes during a rebuild. Tests
/// rebuild after a random workload of every command and compare the tables row for row.
pub async fn append(
    connections: &Connections,
    user_id: i64,
    before: &User,
    after: &User,
    events: &[SerializedEvent],
) -> Result<(), PersistenceError> {
    let Some(last) = events.last() else {
        return Ok(());
    };
    let Some(password_hash) = &after.password_hash else {
        return Err(PersistenceError::UnknownError(
            "a user without a password hash".into(),
        ));
    };
    let sequences = events
        .iter()
        .map(sequence_of)
        .collect::<Result<Vec<_>, _>>()?;
    let event_types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let event_versions: Vec<&str> = events.iter().map(|e| e.event_version.as_str()).collect();
    let payloads: Vec<&Value> = events.iter().map(|e| &e.payload).collect();
    let metadata: Vec<&Value> = events.iter().map(|e| &e.metadata).collect();
    let groups: Vec<&str> = after.groups.iter().map(String::as_str).collect();

    // The events: one (the usual case) as plain values, several through arrays.
    let single = events.len() == 1;
    let mut parts = vec![if single {
        r#"inserted AS (
            INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                event_version, payload, metadata)
            VALUES ('User', $1::bigint::text, $2::bigint, $3::text, $4::text, $5::jsonb,
                    $6::jsonb)
            RETURNING 1)"#
    } else {
        r#"inserted AS (
            INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                event_version, payload, metadata)
            SELECT 'User', $1::bigint::text, e.sequence, e.event_type, e.event_version,
                   e.payload, e.metadata
              FROM unnest($2::bigint[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[])
                   AS e (sequence, event_type, event_version, payload, metadata)
            RETURNING 1)"#
    }
    .to_owned()];
    // The users row is the statement itself (cheaper than one more CTE read by a SELECT);
    // it answers one row, carrying how many events went in, if the row was written.
    let written = if before.exists {
        // A plain UPDATE (not an upsert, which tries an insert first): unchanged indexed
        // columns keep it a HOT update.
        r#"UPDATE users
               SET email = $7, first_name = $8, last_name = $9, organisation_id = $10,
                   is_admin = $11, is_staff = $12, is_active = $13, is_email_verified = $14,
                   is_superuser = $15, password_hash = $16, last_sequence = $17,
                   group_names = $18
             WHERE id = $1
            RETURNING (SELECT count(*) FROM inserted)"#
    } else {
        r#"INSERT INTO users (id, email, first_name, last_name, organisation_id, is_admin,
                               is_staff, is_active, is_email_verified, is_superuser,
                               password_hash, created, last_sequence, group_names)
            VALUES ($1, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, now(), $17, $18)
            RETURNING (SELECT count(*) FROM inserted)"#
    };
    let email_changed =
        !before.exists || normalize_email(&before.email) != normalize_email(&after.email);
    if !before.exists {
        parts.push(
            "claimed AS (INSERT INTO email_claims (email, user_id) VALUES ($19, $1) RETURNING 1)"
                .to_owned(),
        );
    } else if email_changed {
        parts.push(
            "claimed AS (UPDATE email_claims SET email = $19 WHERE user_id = $1 RETURNING 1)"
                .to_owned(),
        );
    }
    if !before.exists || before.groups != after.groups {
        parts.push(
            "left_groups AS (DELETE FROM user_groups WHERE user_id = $1 AND group_name <> ALL($18))"
                .to_owned(),
        );
        parts.push(
            "joined_groups AS (INSERT INTO user_groups (user_id, group_name)
                SELECT $1, unnest($18::text[]) ON CONFLICT DO NOTHING)"
                .to_owned(),
        );
    }
    let mut count_changes: Vec<(i64, i64)> = Vec::new();
    if !before.exists {
        count_changes.push((after.organisation_id.unwrap_or(0), 1));
    } else if before.organisation_id != after.organisation_id {
        count_changes.push((before.organisation_id.unwrap_or(0), -1));
        count_changes.push((after.organisation_id.unwrap_or(0), 1));
    }
    if !count_changes.is_empty() {
        parts.push(
            "counted AS (INSERT INTO user_counts (organisation_id, users)
                SELECT * FROM unnest($20::bigint[], $21::bigint[])
                ON CONFLICT (organisation_id) DO UPDATE
                   SET users = user_counts.users + EXCLUDED.users)"
                .to_owned(),
        );
    }
    let sql = format!("WITH {}\n{written}", parts.join(",\n"));
    // Count rows are locked in organisation order, so that two opposite moves cannot
    // deadlock.
    count_changes.sort_unstable();
    let (organisations, deltas): (Vec<i64>, Vec<i64>) = count_changes.into_iter().unzip();
    // `fetch_all`, not `fetch_one`: the whole answer is read up to the end, so an error
    // PostgreSQL reports after the row (a CTE the statement does not read runs to
    // completion after it) is returned here, never left for the next user of the
    // connection.
    let last_sequence = sequence_of(last)?;
    let query = sqlx::query_as(&sql).bind(user_id);
    let query = if single {
        query
            .bind(sequences[0])
            .bind(event_types[0])
            .bind(event_versions[0])
            .bind(payloads[0])
            .bind(metadata[0])
    } else {
        query
            .bind(&sequences)
            .bind(&event_types)
            .bind(&event_versions)
            .bind(&payloads)
            .bind(&metadata)
    };
    let query = query
        .bind(&after.email)
        .bind(&after.first_name)
        .bind(&after.last_name)
        .bind(after.organisation_id)
        .bind(after.is_admin)
        .bind(after.is_staff)
        .bind(after.is_active)
        .bind(after.is_email_verified)
        .bind(after.is_superuser)
        .bind(password_hash.expose())
        .bind(last_sequence)
        .bind(&groups)
        .bind(normalize_email(&after.email))
        .bind(&organisations)
        .bind(&deltas);
    let rows: Vec<(i64,)> =
        connections
            .fetch_all(query)
            .await
            .map_err(|e| match violated_constraint(&e) {
                Some("events_pkey") => PersistenceError::OptimisticLockError,
                Some("email_claims_pkey") => PersistenceError::UnknownError(Box::new(EmailTaken)),
                // A deadlock or serialization failure lost to a concurrent write: decide again.
                _ if is_lost_race(&e) => PersistenceError::OptimisticLockError,
                _ => unknown_error(e),
            })?;
    let (inserted, written) = (rows.first().map_or(0, |row| row.0), rows.len());
    if inserted != events.len() as i64 || written != 1 {
        return Err(PersistenceError::UnknownError(
            format!("append wrote {inserted} events and {written} rows").into(),
        ));
    }
    Ok(())
}
