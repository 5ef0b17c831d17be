//! Persistence: the User event repository (events, email claims and the inline projection
//! in one transaction), the projector that turns events into read-model rows, and the
//! queries the API reads with. Every table is created by `../migrations`.

pub mod connections;
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

/// Pool exhaustion, lost connections and a server that refuses to serve (shutting down,
/// out of connections or resources, the database gone): the database is unavailable (a
/// `503` to callers), which is not a bug in the request.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(error) => error.code().is_some_and(|code| {
            // SQLSTATE classes 08 (connection exception), 53 (insufficient resources),
            // 57P (operator intervention: shutdown, crash), 3D000 (no such database).
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "3D000"
        }),
        _ => false,
    }
}
