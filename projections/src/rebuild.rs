//! Rebuilding and verifying the users read model from the event log (architecture §4).
//!
//! Both replay the whole log through the projector into fresh tables. The log is read
//! below the oldest transaction still in flight (`pg_snapshot_xmin`), in (transaction id,
//! global position) order: that is global-position order for everything one transaction
//! wrote, and, unlike plain global-position order, it never skips a transaction that
//! commits after a higher position was already read.
//!
//! `rebuild` catches up with writes made meanwhile, then, holding the events table against
//! new writes for a moment, applies the last events and swaps the new tables in atomically.
//! `verify` does the same into scratch tables and compares them with the live ones.

use std::ops::ControlFlow;

use chrono::{DateTime, Utc};
use domain::user::upcasters::decode;
use domain::UserEvent;
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgPool};

use crate::projector::{self, Envelope, Tables};

/// Events applied per transaction.
pub const BATCH: i64 = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(
        "the event at global position {position} ({event_type} v{event_version} of user \
         {aggregate_id}) cannot be read: {cause}"
    )]
    Unreadable {
        position: i64,
        event_type: String,
        event_version: String,
        aggregate_id: String,
        cause: String,
    },
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// How far a replay has come: events applied of the total in the log when it started.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub applied: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub events: u64,
    pub users: i64,
}

/// One difference found by `verify`.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub user_id: i64,
    pub field: String,
    pub live: Value,
    pub expected: Value,
}

#[derive(FromRow)]
struct LogRow {
    global_position: i64,
    /// The writing transaction's id as text. (Named apart from the column: an `ORDER BY
    /// transaction_id` must sort by the xid8 column through its index, not by this text.)
    xid: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    recorded_at: DateTime<Utc>,
}

/// Where a replay has got to in (transaction id, global position) order.
#[derive(Debug, Clone)]
struct Cursor {
    transaction_id: String,
    position: i64,
}

impl Cursor {
    fn start() -> Self {
        Self {
            transaction_id: "0".to_owned(),
            position: 0,
        }
    }
}

/// Builds fresh tables from the whole log and swaps them in for the live ones.
pub async fn rebuild(
    pool: &PgPool,
    on_progress: &mut (dyn FnMut(Progress) -> ControlFlow<()> + Send),
) -> Result<Report, RebuildError> {
    let tables = Tables::with_suffix("_rebuild");
    let (cursor, applied) = build(pool, &tables, on_progress).await?;
    for table in [&tables.users, &tables.user_groups] {
        sqlx::query(&format!("ALTER TABLE {table} SET LOGGED"))
            .execute(pool)
            .await?;
    }
    let mut tx = pool.begin().await?;
    // Writers wait here for a moment; a writer already in flight finishes first.
    sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let tail = replay_rest(&mut tx, &tables, cursor).await?;
    swap(&mut tx, &tables).await?;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Report {
        events: applied + tail,
        users,
    })
}

/// Replays the whole log into scratch tables and lists how the live tables differ. Writers
/// wait while the last events are applied and the tables compared.
pub async fn verify(
    pool: &PgPool,
    on_progress: &mut (dyn FnMut(Progress) -> ControlFlow<()> + Send),
) -> Result<Vec<Difference>, RebuildError> {
    let tables = Tables::with_suffix("_verify");
    let (cursor, _) = build(pool, &tables, on_progress).await?;
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE events IN SHARE MODE")
        .execute(&mut *tx)
        .await?;
    replay_rest(&mut tx, &tables, cursor).await?;
    let differences = compare(&mut tx, &tables).await?;
    drop_tables(&mut tx, &tables).await?;
    tx.commit().await?;
    Ok(differences)
}

/// Creates empty `tables` shaped like the live ones (dropping leftovers of an interrupted
/// run) and replays the log into them up to the in-flight horizon.
async fn build(
    pool: &PgPool,
    tables: &Tables,
    on_progress: &mut (dyn FnMut(Progress) -> ControlFlow<()> + Send),
) -> Result<(Cursor, u64), RebuildError> {
    let mut conn = pool.acquire().await?;
    drop_tables(&mut conn, tables).await?;
    let users = &tables.users;
    let user_groups = &tables.user_groups;
    for statement in [
        // Unlogged while being built (no WAL: several times faster); made durable before
        // the swap.
        // Room on every page for a new version of each row: updates stay HOT (no index
        // writes) while no indexed column changes, as in a name change.
        format!("CREATE UNLOGGED TABLE {users} (LIKE users INCLUDING ALL) WITH (fillfactor = 80)"),
        format!("CREATE UNLOGGED TABLE {user_groups} (LIKE user_groups INCLUDING ALL)"),
        format!(
            "ALTER TABLE {user_groups} ADD CONSTRAINT {user_groups}_user_id_fkey
             FOREIGN KEY (user_id) REFERENCES {users} (id) ON DELETE CASCADE"
        ),
    ] {
        sqlx::query(&statement).execute(&mut *conn).await?;
    }
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'User'")
            .fetch_one(&mut *conn)
            .await?;
    let total = u64::try_from(total).unwrap_or(0);
    let mut cursor = Cursor::start();
    let mut applied = 0;
    loop {
        let (next, count) = replay_batch(pool, tables, cursor.clone()).await?;
        cursor = next;
        applied += count;
        let progress = Progress {
            applied,
            total: total.max(applied),
        };
        if on_progress(progress).is_break() {
            return Err(RebuildError::Interrupted);
        }
        if count < BATCH as u64 {
            return Ok((cursor, applied));
        }
    }
}

/// Applies the next batch below the in-flight horizon, spread over `PARTITIONS` connections
/// by user (each user's events stay in order on one of them).
async fn replay_batch(
    pool: &PgPool,
    tables: &Tables,
    cursor: Cursor,
) -> Result<(Cursor, u64), RebuildError> {
    let rows = read_log(&mut *pool.acquire().await?, &cursor, true, BATCH).await?;
    let Some(last) = rows.last() else {
        return Ok((cursor, 0));
    };
    let next = Cursor {
        transaction_id: last.xid.clone(),
        position: last.global_position,
    };
    let count = rows.len() as u64;
    let mut partitions: Vec<Vec<(LogRow, UserEvent, i64)>> =
        (0..PARTITIONS).map(|_| Vec::new()).collect();
    for row in rows {
        let (event, user_id) = decode_row(&row)?;
        partitions[user_id.unsigned_abs() as usize % PARTITIONS].push((row, event, user_id));
    }
    let work = partitions.into_iter().map(|partition| async move {
        let mut tx = pool.begin().await?;
        // A rebuild's tables are disposable until swapped: no need to wait for the disk.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        for (row, event, user_id) in &partition {
            let envelope = Envelope {
                user_id: *user_id,
                sequence: row.sequence,
                recorded_at: row.recorded_at,
                event,
            };
            projector::apply(&mut tx, tables, envelope).await?;
        }
        tx.commit().await?;
        Ok::<_, sqlx::Error>(())
    });
    futures::future::try_join_all(work).await?;
    Ok((next, count))
}

/// Connections a rebuild batch is spread over.
const PARTITIONS: usize = 4;

async fn read_log(
    conn: &mut PgConnection,
    cursor: &Cursor,
    horizon: bool,
    limit: i64,
) -> sqlx::Result<Vec<LogRow>> {
    // Two statements rather than one with `NOT $3 OR …`, which would keep the planner from
    // walking the (transaction_id, global_position) index.
    let horizon = if horizon {
        "AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
    } else {
        ""
    };
    sqlx::query_as(&format!(
        r#"
        SELECT global_position, transaction_id::text AS xid, aggregate_id,
               sequence, event_type, event_version, payload, recorded_at
          FROM events
         WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
           AND aggregate_type = 'User' {horizon}
         ORDER BY transaction_id, global_position
         LIMIT $3
        "#
    ))
    .bind(&cursor.transaction_id)
    .bind(cursor.position)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The event of a log row in its current shape, and its user id; an error names the row.
fn decode_row(row: &LogRow) -> Result<(UserEvent, i64), RebuildError> {
    let unreadable = |cause: String| RebuildError::Unreadable {
        position: row.global_position,
        event_type: row.event_type.clone(),
        event_version: row.event_version.clone(),
        aggregate_id: row.aggregate_id.clone(),
        cause,
    };
    let event = decode(&row.event_type, &row.event_version, row.payload.clone())
        .map_err(|e| unreadable(e.to_string()))?;
    let user_id = row
        .aggregate_id
        .parse::<i64>()
        .map_err(|e| unreadable(format!("aggregate id: {e}")))?;
    Ok((event, user_id))
}

/// Applies every event after `cursor` on one connection (the caller's transaction, which
/// holds the events table so that nothing is in flight). Returns how many were applied.
async fn replay_rest(
    conn: &mut PgConnection,
    tables: &Tables,
    mut cursor: Cursor,
) -> Result<u64, RebuildError> {
    let mut applied = 0;
    loop {
        let rows = read_log(&mut *conn, &cursor, false, BATCH).await?;
        let count = rows.len();
        for row in rows {
            let (event, user_id) = decode_row(&row)?;
            let envelope = Envelope {
                user_id,
                sequence: row.sequence,
                recorded_at: row.recorded_at,
                event: &event,
            };
            projector::apply(&mut *conn, tables, envelope).await?;
            cursor = Cursor {
                transaction_id: row.xid,
                position: row.global_position,
            };
            applied += 1;
        }
        if count < BATCH as usize {
            return Ok(applied);
        }
    }
}

/// Puts `tables` in the place of the live tables, within the caller's transaction, and
/// gives their keys the live names.
async fn swap(conn: &mut PgConnection, tables: &Tables) -> Result<(), RebuildError> {
    let users = &tables.users;
    let user_groups = &tables.user_groups;
    for statement in [
        "LOCK TABLE users, user_groups IN ACCESS EXCLUSIVE MODE".to_owned(),
        "DROP TABLE user_groups".to_owned(),
        "DROP TABLE users".to_owned(),
        format!("ALTER TABLE {users} RENAME TO users"),
        format!("ALTER TABLE {user_groups} RENAME TO user_groups"),
        format!("ALTER TABLE user_groups RENAME CONSTRAINT {user_groups}_user_id_fkey TO user_groups_user_id_fkey"),
    ] {
        sqlx::query(&statement).execute(&mut *conn).await?;
    }
    // The counts follow the new table (writers are locked out meanwhile).
    for statement in [
        "DELETE FROM user_counts",
        "INSERT INTO user_counts (organisation_id, users)
         SELECT coalesce(organisation_id, 0), count(*) FROM users GROUP BY 1",
    ] {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    let suffixed: Vec<String> = sqlx::query_scalar(
        "SELECT indexname FROM pg_indexes
          WHERE schemaname = current_schema() AND tablename IN ('users', 'user_groups')
            AND indexname LIKE '%\\_rebuild%'",
    )
    .fetch_all(&mut *conn)
    .await?;
    for index in suffixed {
        let canonical = index.replace("_rebuild", "");
        sqlx::query(&format!("ALTER INDEX {index} RENAME TO {canonical}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn drop_tables(conn: &mut PgConnection, tables: &Tables) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "DROP TABLE IF EXISTS {}, {}",
        tables.user_groups, tables.users
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Field-by-field differences between the live tables and `tables`. Password hashes are
/// compared but never shown.
async fn compare(conn: &mut PgConnection, tables: &Tables) -> sqlx::Result<Vec<Difference>> {
    let rows: Vec<(i64, Option<Value>, Option<Value>)> = sqlx::query_as(&format!(
        r#"
        WITH live AS (
            SELECT u.id, to_jsonb(u) || jsonb_build_object('groups', coalesce(
                (SELECT jsonb_agg(g.group_name ORDER BY g.group_name)
                   FROM user_groups g WHERE g.user_id = u.id), '[]'::jsonb)) AS row
              FROM users u),
        expected AS (
            SELECT u.id, to_jsonb(u) || jsonb_build_object('groups', coalesce(
                (SELECT jsonb_agg(g.group_name ORDER BY g.group_name)
                   FROM {user_groups} g WHERE g.user_id = u.id), '[]'::jsonb)) AS row
              FROM {users} u)
        SELECT coalesce(live.id, expected.id), live.row, expected.row
          FROM live FULL JOIN expected ON live.id = expected.id
         WHERE live.row IS DISTINCT FROM expected.row
         ORDER BY 1
        "#,
        users = tables.users,
        user_groups = tables.user_groups,
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut differences = Vec::new();
    // Users per organisation as kept in `user_counts`, against the rebuilt rows.
    let counts: Vec<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(&format!(
        r#"
        WITH expected AS (SELECT coalesce(organisation_id, 0) AS organisation_id, count(*) AS users
                            FROM {users} GROUP BY 1),
             live AS (SELECT organisation_id, users FROM user_counts WHERE users <> 0)
        SELECT coalesce(live.organisation_id, expected.organisation_id), live.users, expected.users
          FROM live FULL JOIN expected ON live.organisation_id = expected.organisation_id
         WHERE live.users IS DISTINCT FROM expected.users
         ORDER BY 1
        "#,
        users = tables.users,
    ))
    .fetch_all(&mut *conn)
    .await?;
    for (organisation_id, live, expected) in counts {
        differences.push(Difference {
            user_id: 0,
            field: format!("user_counts[organisation {organisation_id}]"),
            live: live.unwrap_or(0).into(),
            expected: expected.unwrap_or(0).into(),
        });
    }
    for (user_id, live, expected) in rows {
        let (Some(Value::Object(live)), Some(Value::Object(expected))) = (&live, &expected) else {
            differences.push(Difference {
                user_id,
                field: "row".to_owned(),
                live: if live.is_some() {
                    "present".into()
                } else {
                    "missing".into()
                },
                expected: if expected.is_some() {
                    "present".into()
                } else {
                    "missing".into()
                },
            });
            continue;
        };
        for (field, expected_value) in expected {
            let live_value = live.get(field).cloned().unwrap_or(Value::Null);
            if &live_value != expected_value {
                let shown = |value: Value| {
                    if field == "password_hash" {
                        Value::from("[redacted]")
                    } else {
                        value
                    }
                };
                differences.push(Difference {
                    user_id,
                    field: field.clone(),
                    live: shown(live_value),
                    expected: shown(expected_value.clone()),
                });
            }
        }
    }
    Ok(differences)
}
