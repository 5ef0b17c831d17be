//! Executes User commands through cqrs-es with request metadata, re-deciding a command a
//! bounded number of times when a concurrent write to the same user wins the race
//! (architecture §5).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{AggregateError, CqrsFramework};
use domain::{User, UserCommand, UserError, UserServices};
use projections::event_store::EXPECTED_VERSION;
use projections::{EmailTaken, UserEventRepository};
use sqlx::PgPool;

/// How many times a command is decided in all before a conflict becomes `409`.
pub const MAX_ATTEMPTS: usize = 5;

/// Where a change came from, recorded in every event's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Http,
    Cli,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Cli => "cli",
        }
    }
}

/// Who asked, for which request, from where.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// The acting user's id; `None` for the system itself (bootstrap, CLI).
    pub actor_id: Option<i64>,
    pub request_id: String,
    pub source: Source,
}

impl Metadata {
    fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            (
                "actor_id".to_owned(),
                self.actor_id
                    .map_or_else(|| "system".to_owned(), |id| id.to_string()),
            ),
            ("request_id".to_owned(), self.request_id.clone()),
            ("source".to_owned(), self.source.as_str().to_owned()),
        ])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] UserError),
    #[error("email already taken")]
    EmailTaken,
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("the user changed since the expected version")]
    Stale,
    #[error("concurrent writes kept conflicting")]
    Conflict,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("unexpected: {0}")]
    Unexpected(String),
}

type Framework = CqrsFramework<User, PersistedEventStore<UserEventRepository, User>>;

#[derive(Clone)]
pub struct CommandBus {
    cqrs: Arc<Framework>,
    pool: PgPool,
    queues: Arc<UserQueues>,
}

/// Commands to one user from this process take turns, so they do not conflict with each
/// other; only writers in other processes can still race, and those are re-decided.
#[derive(Default)]
struct UserQueues(Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>);

impl UserQueues {
    async fn turn(&self, user_id: i64) -> Turn<'_> {
        let queue = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(user_id)
            .or_default()
            .clone();
        let guard = queue.clone().lock_owned().await;
        Turn {
            queues: self,
            user_id,
            guard: Some(guard),
        }
    }
}

/// This process's exclusive turn to write one user; the turn ends when dropped.
pub struct Turn<'a> {
    queues: &'a UserQueues,
    user_id: i64,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.queues.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget the queue once nobody holds or waits for it (the map's is the only handle).
        if map
            .get(&self.user_id)
            .is_some_and(|queue| Arc::strong_count(queue) == 1)
        {
            map.remove(&self.user_id);
        }
    }
}

impl CommandBus {
    pub fn new(pool: PgPool, services: UserServices) -> Self {
        let store = PersistedEventStore::new_event_store(UserEventRepository::new(pool.clone()))
            .with_upcasters(domain::user::upcasters::upcasters());
        Self {
            cqrs: Arc::new(CqrsFramework::new(store, vec![], services)),
            pool,
            queues: Arc::default(),
        }
    }

    /// The id for a user about to be created (architecture §3).
    pub async fn next_user_id(&self) -> Result<i64, CommandError> {
        sqlx::query_scalar("SELECT nextval('user_ids')")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| {
                if projections::is_unavailable(&e) {
                    CommandError::Unavailable(e.to_string())
                } else {
                    CommandError::Unexpected(e.to_string())
                }
            })
    }

    /// Waits for this process's turn to write `user_id`: a caller that decides a command from
    /// the user's current state holds it from reading that state to executing.
    pub async fn turn(&self, user_id: i64) -> Turn<'_> {
        self.queues.turn(user_id).await
    }

    /// Executes `command`. With `expected_version`, the events must directly follow that
    /// version: a conflict is then `Stale`, never retried.
    pub async fn execute(
        &self,
        user_id: i64,
        command: UserCommand,
        metadata: &Metadata,
        expected_version: Option<i64>,
    ) -> Result<(), CommandError> {
        let turn = self.turn(user_id).await;
        self.execute_in_turn(&turn, command, metadata, expected_version)
            .await
    }

    /// `execute`, for a caller already holding the user's turn.
    pub async fn execute_in_turn(
        &self,
        turn: &Turn<'_>,
        command: UserCommand,
        metadata: &Metadata,
        expected_version: Option<i64>,
    ) -> Result<(), CommandError> {
        let user_id = turn.user_id;
        let aggregate_id = user_id.to_string();
        let mut map = metadata.to_map();
        if let Some(version) = expected_version {
            map.insert(EXPECTED_VERSION.to_owned(), version.to_string());
        }
        let kind = command.kind();
        let result = self
            .decide(user_id, &aggregate_id, command, &map, expected_version)
            .await;
        crate::observability::command_outcome(
            kind,
            match &result {
                Ok(()) => "ok",
                Err(CommandError::Conflict) => "conflict",
                Err(CommandError::Stale) => "stale",
                Err(CommandError::Domain(_) | CommandError::EmailTaken) => "rejected",
                Err(_) => "error",
            },
        );
        result
    }

    /// Decides and persists, re-deciding after a lost race up to `MAX_ATTEMPTS` times.
    async fn decide(
        &self,
        user_id: i64,
        aggregate_id: &str,
        command: UserCommand,
        map: &HashMap<String, String>,
        expected_version: Option<i64>,
    ) -> Result<(), CommandError> {
        let kind = command.kind();
        for attempt in 1..=MAX_ATTEMPTS {
            match self
                .cqrs
                .execute_with_metadata(aggregate_id, command.clone(), map.clone())
                .await
            {
                Ok(()) => return Ok(()),
                Err(AggregateError::AggregateConflict) if expected_version.is_some() => {
                    crate::observability::command_conflict(kind);
                    return Err(CommandError::Stale);
                }
                Err(AggregateError::AggregateConflict) => {
                    crate::observability::command_conflict(kind);
                    tracing::debug!(user_id, attempt, "concurrent write; deciding again");
                    // Spread the losers out so they do not collide again in lockstep.
                    let jitter = rand::random::<u64>() % (2 << attempt);
                    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
                }
                Err(other) => return Err(classify(other)),
            }
        }
        Err(CommandError::Conflict)
    }
}

fn classify(error: AggregateError<UserError>) -> CommandError {
    match error {
        AggregateError::UserError(e) => CommandError::Domain(e),
        AggregateError::AggregateConflict => CommandError::Conflict,
        AggregateError::DatabaseConnectionError(e) => CommandError::Unavailable(e.to_string()),
        AggregateError::UnexpectedError(e) if e.downcast_ref::<EmailTaken>().is_some() => {
            CommandError::EmailTaken
        }
        AggregateError::UnexpectedError(e) | AggregateError::DeserializationError(e) => {
            CommandError::Unexpected(e.to_string())
        }
    }
}
