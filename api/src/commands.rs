//! Executes User commands with request metadata, re-deciding a command a bounded number of
//! times when a concurrent write to the same user wins the race (architecture §5).
//!
//! A command is decided by the `User` aggregate (cqrs-es `Aggregate::handle`) on the state
//! it had at version N, and its events are stored as N+1, N+2, … by
//! `projections::event_store::append`, which writes the events, the email claims, the
//! counts and the read-model row in one statement (one round trip, one atomic commit). The state at N is read from the user's read-model row instead of being
//! replayed from the log: that row is written in the same transaction as every event, so it
//! is exactly the fold of the events up to its `last_sequence`, never behind. Loading a user
//! therefore costs one indexed row whatever the length of its history; no snapshot store
//! (and none of cqrs-es 0.5's snapshot double-apply hazard). A test checks that the row and
//! a replay of the log agree for every kind of event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistenceError, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent};
use domain::{User, UserCommand, UserError, UserServices};
use projections::users::ReadModel;
use projections::EmailTaken;
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

#[derive(Clone)]
pub struct CommandBus {
    read: ReadModel,
    services: UserServices,
    pool: PgPool,
    queues: Arc<UserQueues>,
}

/// A decided and stored command: the user's state and version after it.
#[derive(Debug)]
pub struct Decided {
    pub state: User,
    pub version: i64,
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
        let (guard, waited) = match queue.clone().try_lock_owned() {
            Ok(guard) => (guard, false),
            Err(_) => (queue.lock_owned().await, true),
        };
        Turn {
            queues: self,
            user_id,
            guard: Some(guard),
            waited,
        }
    }
}

/// This process's exclusive turn to write one user; the turn ends when dropped.
pub struct Turn<'a> {
    queues: &'a UserQueues,
    user_id: i64,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    waited: bool,
}

impl Turn<'_> {
    /// Whether another write to this user ran while this one waited: what was read of the
    /// user before the wait is then stale.
    pub fn waited(&self) -> bool {
        self.waited
    }
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
        Self::with_read_model(ReadModel::new(pool), services)
    }

    /// A bus sharing `read`'s connection pool and group cache.
    pub fn with_read_model(read: ReadModel, services: UserServices) -> Self {
        let pool = read.pool().clone();
        Self {
            read,
            services,
            pool,
            queues: Arc::default(),
        }
    }

    pub fn read_model(&self) -> &ReadModel {
        &self.read
    }

    /// The id for a user about to be created (architecture §3).
    pub async fn next_user_id(&self) -> Result<i64, CommandError> {
        sqlx::query_scalar("SELECT nextval('user_ids')")
            .fetch_one(&self.pool)
            .await
            .map_err(database_error)
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
        for attempt in 1..=MAX_ATTEMPTS {
            let (state, version) = self.load(turn.user_id).await?;
            if expected_version.is_some_and(|expected| expected != version) {
                return Err(CommandError::Stale);
            }
            match self
                .decide(turn, state, version, command.clone(), metadata)
                .await
            {
                Err(CommandError::Conflict) if expected_version.is_some() => {
                    return Err(CommandError::Stale);
                }
                Err(CommandError::Conflict) => backoff(turn.user_id, attempt).await,
                other => return other.map(drop),
            }
        }
        Err(CommandError::Conflict)
    }

    /// The user's state and version as its read-model row holds them (a user that does
    /// not exist is the default state at version 0).
    pub async fn load(&self, user_id: i64) -> Result<(User, i64), CommandError> {
        Ok(self
            .read
            .find_for_write(user_id)
            .await
            .map_err(database_error)?
            .map_or_else(
                || (User::default(), 0),
                |(view, state)| (state, view.version),
            ))
    }

    /// Decides `command` on `state` (the user at `version`) and stores its events right
    /// after `version`, once: a concurrent write that got there first is `Conflict`.
    pub async fn decide(
        &self,
        turn: &Turn<'_>,
        mut state: User,
        version: i64,
        command: UserCommand,
        metadata: &Metadata,
    ) -> Result<Decided, CommandError> {
        let kind = command.kind();
        let result = self
            .decide_once(turn.user_id, &mut state, version, command, metadata)
            .await;
        crate::observability::command_outcome(
            kind,
            match &result {
                Ok(_) => "ok",
                Err(CommandError::Conflict) => "conflict",
                Err(CommandError::Domain(_) | CommandError::EmailTaken) => "rejected",
                Err(_) => "error",
            },
        );
        if matches!(result, Err(CommandError::Conflict)) {
            crate::observability::command_conflict(kind);
        }
        let events = result?;
        Ok(Decided {
            state,
            version: version + i64::try_from(events).unwrap_or(i64::MAX),
        })
    }

    async fn decide_once(
        &self,
        user_id: i64,
        state: &mut User,
        version: i64,
        command: UserCommand,
        metadata: &Metadata,
    ) -> Result<usize, CommandError> {
        let before = state.clone();
        let sink = EventSink::default();
        state.handle(command, &self.services, &sink).await?;
        let events = sink.collect().await;
        if events.is_empty() {
            return Ok(0);
        }
        let first = usize::try_from(version)
            .map_err(|_| CommandError::Unexpected(format!("negative version {version}")))?
            + 1;
        let metadata = serde_json::to_value(metadata.to_map())
            .map_err(|e| CommandError::Unexpected(e.to_string()))?;
        let serialized = events
            .iter()
            .enumerate()
            .map(|(offset, event)| {
                Ok(SerializedEvent {
                    aggregate_id: user_id.to_string(),
                    sequence: first + offset,
                    aggregate_type: User::TYPE.to_owned(),
                    event_type: event.event_type(),
                    event_version: event.event_version(),
                    payload: serde_json::to_value(event)?,
                    metadata: metadata.clone(),
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(|e| CommandError::Unexpected(e.to_string()))?;
        projections::event_store::append(
            self.read.connections(),
            user_id,
            &before,
            state,
            &serialized,
        )
        .await
        .map_err(classify)?;
        Ok(events.len())
    }
}

/// Spreads the losers of a race out so they do not collide again in lockstep.
pub async fn backoff(user_id: i64, attempt: usize) {
    tracing::debug!(user_id, attempt, "concurrent write; deciding again");
    let jitter = rand::random::<u64>() % (2 << attempt);
    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
}

fn database_error(error: sqlx::Error) -> CommandError {
    if projections::is_unavailable(&error) {
        CommandError::Unavailable(error.to_string())
    } else {
        CommandError::Unexpected(error.to_string())
    }
}

fn classify(error: PersistenceError) -> CommandError {
    match error {
        PersistenceError::OptimisticLockError => CommandError::Conflict,
        PersistenceError::ConnectionError(e) => CommandError::Unavailable(e.to_string()),
        PersistenceError::UnknownError(e) if e.downcast_ref::<EmailTaken>().is_some() => {
            CommandError::EmailTaken
        }
        other => CommandError::Unexpected(other.to_string()),
    }
}
