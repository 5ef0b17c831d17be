//! Three server processes on one database: starting them at once, and the core issue's
//! races (one email, one user) spread over all three.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use cqrs_es::Aggregate as _;
use domain::{User, UserEvent};
use serde_json::{json, Value};
use support::{events, events_of, get, login, new_user, request, Server, TestDb};
use support::{SUPERUSER_EMAIL, SUPERUSER_PASSWORD};
use tokio::task::JoinSet;

const INSTANCES: usize = 3;
/// Three pools on one PostgreSQL (with the other tests running beside): keep them small.
const POOL_SIZE: &str = "8";

/// Starts three servers on `db` at the same moment; `Err` with the logs of those that
/// did not come up.
async fn start_three(db: &TestDb, env: &[(&str, &str)]) -> Result<Vec<Server>, String> {
    let mut env = env.to_vec();
    env.push(("USERS_DB_MAX_CONNECTIONS", POOL_SIZE));
    let (a, b, c) = tokio::join!(
        Server::spawn(db, &env),
        Server::spawn(db, &env),
        Server::spawn(db, &env)
    );
    let mut servers = Vec::new();
    let mut failures = Vec::new();
    for (i, started) in [a, b, c].into_iter().enumerate() {
        match started {
            Ok(server) => servers.push(server),
            Err(log) => failures.push(format!("instance {i}:\n{log}")),
        }
    }
    if !failures.is_empty() {
        return Err(failures.join("\n\n"));
    }
    for server in &servers {
        server.wait_ready().await;
    }
    Ok(servers)
}

/// A migrated database with a superuser, three servers on it, and a token.
async fn three_instances(db: &TestDb) -> (Vec<Server>, String) {
    db.create_superuser().await;
    let servers = start_three(db, &[])
        .await
        .unwrap_or_else(|logs| panic!("the instances did not start:\n{logs}"));
    let token = login(servers[0].addr, SUPERUSER_EMAIL, SUPERUSER_PASSWORD).await;
    (servers, token)
}

/// Three instances started at once: each applies the migrations (or finds them applied)
/// and makes sure a first superuser exists; all of them come up, with one superuser.
async fn assert_three_boot_together(db: &TestDb) {
    let started = start_three(
        db,
        &[
            ("USERS_SUPERUSER_EMAIL", SUPERUSER_EMAIL),
            ("USERS_SUPERUSER_PASSWORD", SUPERUSER_PASSWORD),
        ],
    )
    .await;
    let servers = started
        .unwrap_or_else(|logs| panic!("three instances starting at once on one database:\n{logs}"));
    // Exactly one first superuser, usable through every instance.
    let pool = db.pool().await;
    let stored = events(&pool).await;
    assert_eq!(stored.len(), 1, "one Created event: {stored:#?}");
    assert_eq!(stored[0].event_type, "Created");
    for server in &servers {
        login(server.addr, SUPERUSER_EMAIL, SUPERUSER_PASSWORD).await;
    }
    let migrations: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .expect("read _sqlx_migrations");
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .expect("the migrations folder")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "sql"))
        .count();
    assert_eq!(migrations, files as i64, "each migration applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_started_at_once_on_an_empty_database_all_come_up() {
    let db = TestDb::new("instances_boot");
    db.create_empty().await;
    assert_three_boot_together(&db).await;
}

/// Each instance creates the database when it is missing: racing to do so must not stop
/// the ones that lose the race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_started_at_once_on_a_missing_database_all_come_up() {
    let db = TestDb::new("instances_create");
    assert_three_boot_together(&db).await;
}

/// `email` with the letters at the positions set in `pattern` upper-cased.
fn in_case(email: &str, pattern: usize) -> String {
    email
        .chars()
        .enumerate()
        .map(|(j, c)| {
            if (pattern >> (j % 7)) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_a_hundred_creates_with_one_email_over_three_instances_exactly_one_succeeds() {
    let db = TestDb::new("instances_email");
    let (servers, token) = three_instances(&db).await;
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let token = Arc::new(token);

    let mut attempts = JoinSet::new();
    for i in 0..100 {
        let addr = addrs[i % INSTANCES];
        let token = Arc::clone(&token);
        let body = new_user(
            &in_case("race.winner@example.com", i),
            "Race",
            &format!("Runner {i}"),
        );
        attempts.spawn(async move {
            let response = request(addr, "POST", "/api/v1/users", Some(&token), Some(&body))
                .await
                .unwrap_or_else(|error| panic!("create {i} on {addr}: {error}"));
            (i % INSTANCES, response)
        });
    }
    let results: Vec<(usize, support::Response)> = attempts.join_all().await;

    let created: Vec<_> = results.iter().filter(|(_, r)| r.status == 201).collect();
    let refused: Vec<_> = results.iter().filter(|(_, r)| r.status == 400).collect();
    let other: Vec<_> = results
        .iter()
        .filter(|(_, r)| r.status != 201 && r.status != 400)
        .collect();
    assert!(other.is_empty(), "neither 201 nor 400: {other:#?}");
    assert_eq!(created.len(), 1, "exactly one 201: {created:#?}");
    assert_eq!(refused.len(), 99);
    for (_, response) in &refused {
        assert_eq!(
            response.body["email"],
            json!(["A user with this email already exists."]),
            "{response:?}"
        );
    }

    let pool = db.pool().await;
    let created_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'Created'
           AND lower(payload->'Created'->>'email') = 'race.winner@example.com'",
    )
    .fetch_one(&pool)
    .await
    .expect("count Created events");
    assert_eq!(created_events, 1, "exactly one Created event stored");
    let claims: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM email_claims WHERE email = 'race.winner@example.com'",
    )
    .fetch_one(&pool)
    .await
    .expect("count email claims");
    assert_eq!(claims, 1);
    let orphans: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM email_claims) - (SELECT count(*) FROM users)",
    )
    .fetch_one(&pool)
    .await
    .expect("count claims and users");
    assert_eq!(orphans, 0, "no email claimed without its user");
    // Every instance sees the one user.
    let id = created[0].1.body["id"].as_i64().expect("the new id");
    for addr in &addrs {
        let response = get(*addr, &format!("/api/v1/users/{id}"), Some(&token))
            .await
            .expect("GET the winner");
        assert_eq!(response.status, 200, "{response:?}");
    }
    db.verify_projections().await;
    println!(
        "instances, same-email race: 1 × 201 (through instance {}), {} × 400 on email, \
         0 × 5xx; {created_events} Created event, {claims} email claim",
        created[0].0,
        refused.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_patches_of_one_user_over_three_instances_lose_nothing() {
    let db = TestDb::new("instances_patch");
    let (servers, token) = three_instances(&db).await;
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let token = Arc::new(token);
    let created = request(
        addrs[0],
        "POST",
        "/api/v1/users",
        Some(&token),
        Some(&new_user("patched@example.com", "First", "Last")),
    )
    .await
    .expect("create the user");
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.body["id"].as_i64().expect("the new id");
    let path = format!("/api/v1/users/{id}");

    let mut patches = JoinSet::new();
    for i in 0..50 {
        let addr = addrs[i % INSTANCES];
        let token = Arc::clone(&token);
        let path = path.clone();
        patches.spawn(async move {
            let body = json!({"first_name": format!("F{i}"), "last_name": format!("L{i}")});
            let response = request(addr, "PATCH", &path, Some(&token), Some(&body))
                .await
                .unwrap_or_else(|error| panic!("patch {i} on {addr}: {error}"));
            (i, response)
        });
    }
    let results: Vec<(usize, support::Response)> = patches.join_all().await;
    let unexpected: Vec<_> = results
        .iter()
        .filter(|(_, r)| r.status != 200 && r.status != 409)
        .collect();
    assert!(unexpected.is_empty(), "only 200 or 409: {unexpected:#?}");
    let succeeded: BTreeSet<usize> = results
        .iter()
        .filter(|(_, r)| r.status == 200)
        .map(|(i, _)| *i)
        .collect();
    let ok = succeeded.len();
    let conflicts = results.len() - ok;
    assert!(ok >= 1, "at least one patch went through");

    // Each successful patch is exactly one FirstNameChanged and one LastNameChanged with
    // its values; a 409 left nothing behind.
    let pool = db.pool().await;
    let stored = events_of(&pool, id).await;
    let values = |event_type: &str, field: &str| -> BTreeSet<String> {
        stored
            .iter()
            .filter(|e| e.event_type == event_type)
            .map(|e| {
                e.payload[event_type][field]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    let count = |event_type: &str| stored.iter().filter(|e| e.event_type == event_type).count();
    assert_eq!(count("FirstNameChanged"), ok, "{stored:#?}");
    assert_eq!(count("LastNameChanged"), ok, "{stored:#?}");
    assert_eq!(stored.len(), 1 + 2 * ok, "{stored:#?}");
    let expected = |prefix: &str| -> BTreeSet<String> {
        succeeded.iter().map(|i| format!("{prefix}{i}")).collect()
    };
    assert_eq!(values("FirstNameChanged", "first_name"), expected("F"));
    assert_eq!(values("LastNameChanged", "last_name"), expected("L"));
    let sequences: Vec<i64> = stored.iter().map(|e| e.sequence).collect();
    let contiguous: Vec<i64> = (1..=stored.len() as i64).collect();
    assert_eq!(sequences, contiguous, "no gap, no duplicate");

    // Every instance answers the replayed state.
    let mut replayed = User::default();
    for event in &stored {
        replayed.apply(
            serde_json::from_value::<UserEvent>(event.payload.clone()).expect("a UserEvent"),
        );
    }
    for addr in &addrs {
        let response = get(*addr, &path, Some(&token)).await.expect("GET the user");
        assert_eq!(response.status, 200, "{response:?}");
        let row: &Value = &response.body;
        assert_eq!(row["first_name"], replayed.first_name);
        assert_eq!(row["last_name"], replayed.last_name);
        assert_eq!(row["email"], replayed.email);
        assert_eq!(row["is_active"], replayed.is_active);
        assert_eq!(
            response.header("etag"),
            Some(format!("\"{}\"", stored.len()).as_str()),
            "the row is at the last event"
        );
    }
    db.verify_projections().await;
    println!(
        "instances, racing patches over {INSTANCES} processes: {ok} × 200, {conflicts} × 409, \
         0 × 5xx; {} events stored",
        stored.len()
    );
}
