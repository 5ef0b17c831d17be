//! The request path's own connections (`projections::connections`), against a real
//! PostgreSQL: reused after a statement that completed, even with an error PostgreSQL
//! answered; closed when abandoned midway; bounded, with the acquire timeout as a pool's.

use std::time::Duration;

use projections::connections::Connections;
use sqlx::postgres::PgConnectOptions;
use tests::TestApp;

async fn backend_pid(connections: &Connections) -> i32 {
    let mut connection = connections.acquire().await.unwrap();
    let result = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *connection)
        .await;
    connection.finish(result).unwrap()
}

#[tokio::test]
async fn a_connection_is_reused_after_its_statement_and_closed_when_abandoned() {
    let app = TestApp::spawn().await;
    let connections = Connections::like(&app.pool, 1);
    let first = backend_pid(&connections).await;
    assert_eq!(backend_pid(&connections).await, first, "reused");

    // An error PostgreSQL answered leaves the connection ready: reused.
    let mut connection = connections.acquire().await.unwrap();
    let result = sqlx::query_scalar::<_, i32>("SELECT 1 / 0")
        .fetch_one(&mut *connection)
        .await;
    assert!(connection.finish(result).is_err());
    assert_eq!(backend_pid(&connections).await, first, "reused after 22012");

    // A statement abandoned midway (its future dropped): that connection is not reused.
    let mut connection = connections.acquire().await.unwrap();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(50),
        sqlx::query("SELECT pg_sleep(2)").execute(&mut *connection),
    )
    .await;
    assert!(abandoned.is_err(), "still running when dropped");
    drop(connection);
    let next = backend_pid(&connections).await;
    assert_ne!(next, first, "a new connection");

    // The first backend goes away (closed by the client, not left open), once its sleep
    // ends and it sees the closed socket; polled for up to 10 s.
    let mut gone = false;
    for _ in 0..200 {
        let alive: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
                .bind(first)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        if !alive {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the abandoned connection was closed");
}

#[tokio::test]
async fn at_most_max_connections_and_a_waiter_times_out_like_a_pool() {
    let app = TestApp::spawn().await;
    let connections = Connections::new(
        (*app.pool.connect_options()).clone(),
        2,
        Duration::from_millis(300),
    );
    let one = connections.acquire().await.unwrap();
    let two = connections.acquire().await.unwrap();
    assert_eq!(connections.usage(), (2, 0, 2));
    let waited = connections.acquire().await;
    assert!(
        matches!(waited, Err(sqlx::Error::PoolTimedOut)),
        "{:?}",
        waited.err()
    );
    drop(one);
    let three = connections.acquire().await.expect("a slot freed up");
    drop((two, three));
}

#[tokio::test]
async fn an_unreachable_database_is_an_error_not_a_hang() {
    let options = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(1) // nothing listens there
        .username("postgres");
    let connections = Connections::new(options, 1, Duration::from_secs(2));
    let error = connections.acquire().await.err().expect("cannot connect");
    assert!(projections::is_unavailable(&error), "{error:?}");
}
