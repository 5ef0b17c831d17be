//! Connections for the request path's reads and writes of users, kept without sqlx's pool.
//!
//! sqlx 0.8's pool "tests the connection on release": every time a connection goes back to
//! it, it sends PostgreSQL a `Sync` and waits for `ReadyForQuery`. That is one more round
//! trip per query, with a wake-up of the server process and of ours for nothing: with it
//! patched out of sqlx, GET went from 0.78x to 0.86x the baseline in the same kind of run
//! (and the baseline, which pays it too, was unchanged). A connection here goes back only
//! after its statement completed, when sqlx has read up to `ReadyForQuery` already: it is
//! ready by construction. One whose statement failed with anything but an error PostgreSQL
//! answered (an I/O or protocol error, or the server going away), or whose statement was
//! abandoned midway (the future dropped), is closed instead and replaced on demand.
//!
//! Bounded like a pool: at most `max` connections, a caller waits at most
//! `acquire_timeout` for one (then [`sqlx::Error::PoolTimedOut`], a `503`). Connections
//! are opened lazily with the same options as the main pool.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgRow};
use sqlx::query::QueryAs;
use sqlx::{ConnectOptions, Connection as _, FromRow, PgPool, Postgres};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

struct Inner {
    options: PgConnectOptions,
    idle: Mutex<Vec<PgConnection>>,
    permits: Arc<Semaphore>,
    max: u32,
    acquire_timeout: Duration,
}

impl Inner {
    /// The idle connections (a poisoned lock only means a panic elsewhere; the list holds).
    fn idle(&self) -> MutexGuard<'_, Vec<PgConnection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A bounded set of reusable connections. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct Connections {
    inner: Arc<Inner>,
}

impl Connections {
    pub fn new(options: PgConnectOptions, max: u32, acquire_timeout: Duration) -> Self {
        let max = max.max(1);
        Self {
            inner: Arc::new(Inner {
                options,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(max as usize)),
                max,
                acquire_timeout,
            }),
        }
    }

    /// Up to `max` connections with `pool`'s connect options and acquire timeout.
    pub fn like(pool: &PgPool, max: u32) -> Self {
        Self::new(
            (*pool.connect_options()).clone(),
            max,
            pool.options().get_acquire_timeout(),
        )
    }

    /// A connection: an idle one, or a new one if fewer than `max` are open.
    pub async fn acquire(&self) -> sqlx::Result<Connection> {
        let deadline = Instant::now() + self.inner.acquire_timeout;
        let permit = tokio::time::timeout_at(deadline, self.inner.permits.clone().acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.inner.idle().pop();
        let connection = match idle {
            Some(connection) => connection,
            None => tokio::time::timeout_at(deadline, self.inner.options.connect())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??,
        };
        Ok(Connection {
            connection: Some(connection),
            inner: self.inner.clone(),
            _permit: permit,
        })
    }

    /// Runs `query` on a connection and hands the connection back as [`Connection::finish`]
    /// does: the usual one-statement use.
    pub async fn fetch_all<'q, O>(
        &self,
        query: QueryAs<'q, Postgres, O, PgArguments>,
    ) -> sqlx::Result<Vec<O>>
    where
        O: Send + Unpin + for<'r> FromRow<'r, PgRow>,
    {
        let mut connection = self.acquire().await?;
        let result = query.fetch_all(&mut *connection).await;
        connection.finish(result)
    }

    /// Connections open and idle, and the most there may be (for `/metrics`).
    pub fn usage(&self) -> (u32, u32, u32) {
        let idle = u32::try_from(self.inner.idle().len()).unwrap_or(u32::MAX);
        let in_use = self.inner.max
            - u32::try_from(self.inner.permits.available_permits())
                .unwrap_or(self.inner.max)
                .min(self.inner.max);
        (in_use, idle, self.inner.max)
    }
}

/// Whether a connection can be used again after its statement ended with `result`.
fn reusable<T>(result: &sqlx::Result<T>) -> bool {
    match result {
        Ok(_) => true,
        // PostgreSQL answered: the connection is at ReadyForQuery, unless the answer says
        // the server or the connection is going away.
        Err(error @ sqlx::Error::Database(_)) => !crate::is_unavailable(error),
        Err(_) => false,
    }
}

/// A connection taken from [`Connections`]. Give it back with [`Connection::finish`] once
/// its statement has completed; dropped otherwise, it is closed.
pub struct Connection {
    connection: Option<PgConnection>,
    inner: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    /// Hands the connection back if `result` (its last statement's) leaves it usable, and
    /// returns `result`.
    pub fn finish<T>(mut self, result: sqlx::Result<T>) -> sqlx::Result<T> {
        if reusable(&result) {
            if let Some(connection) = self.connection.take() {
                self.inner.idle().push(connection);
            }
        }
        result
    }
}

impl Deref for Connection {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.connection.as_ref().expect("present until finished")
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.connection.as_mut().expect("present until finished")
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Not handed back: its state is unknown. Say goodbye to the server if we can.
        if let Some(connection) = self.connection.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(1), connection.close()).await;
                });
            }
        }
    }
}
