//! Persistence: the User event repository (events, email claims and the inline projection
//! in one transaction), the projector that turns events into read-model rows, and the
//! queries the API reads with. Every table is created by `../migrations`.

pub mod event_store;
pub mod groups;
pub mod history;
pub mod idempotency;
pub mod login_throttle;
pub mod projector;
pub mod rebuild;
pub mod users;

pub use event_store::{EmailTaken, UserEventRepository};

/// The schema, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Pool exhaustion and lost connections: the database is unavailable (a `503` to callers),
/// which is not a bug in the request.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
    )
}
