//! One user's events, read straight from the event store (not the read model), for the
//! audit history, time travel and the `audit` command.

use chrono::{DateTime, Utc};
use domain::user::upcasters::decode;
use domain::UserEvent;
use serde_json::Value;
use sqlx::{FromRow, PgPool};

#[derive(Debug, Clone, FromRow)]
pub struct StoredEvent {
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    /// The event in its current shape (old versions are upcast).
    pub fn decode(&self) -> serde_json::Result<UserEvent> {
        decode(&self.event_type, &self.event_version, self.payload.clone())
    }

    /// A metadata entry (`actor_id`, `request_id`, `source`).
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }
}

const COLUMNS: &str = "sequence, event_type, event_version, payload, metadata, recorded_at";

/// Events of user `id` after sequence `after`, oldest first, at most `limit`.
pub async fn page(
    pool: &PgPool,
    id: i64,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM events
          WHERE aggregate_type = 'User' AND aggregate_id = $1 AND sequence > $2
          ORDER BY sequence LIMIT $3"
    ))
    .bind(id.to_string())
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Events of user `id` recorded at or before `until`, oldest first.
pub async fn until(pool: &PgPool, id: i64, until: DateTime<Utc>) -> sqlx::Result<Vec<StoredEvent>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM events
          WHERE aggregate_type = 'User' AND aggregate_id = $1 AND recorded_at <= $2
          ORDER BY sequence"
    ))
    .bind(id.to_string())
    .bind(until)
    .fetch_all(pool)
    .await
}
