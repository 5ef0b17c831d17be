//! Rebuilding and verifying the read model from the event log.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use api::commands::{Metadata, Source};
use domain::{Email, Name, OrganisationId, UserCommand, UserPatch, UserUpdate};
use projections::rebuild::{self, RebuildError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use tests::{status_json, TestApp, UserSpec};

/// The live read model as JSON, row by row in id order.
async fn snapshot(app: &TestApp) -> (Value, Value) {
    let users: Value = sqlx::query_scalar(
        "SELECT coalesce(jsonb_agg(to_jsonb(u) ORDER BY u.id), '[]') FROM users u",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let groups: Value = sqlx::query_scalar(
        "SELECT coalesce(jsonb_agg(to_jsonb(g) ORDER BY g.user_id, g.group_name), '[]')
           FROM user_groups g",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    (users, groups)
}

fn no_progress() -> impl FnMut(rebuild::Progress) -> ControlFlow<()> + Send {
    |_| ControlFlow::Continue(())
}

fn metadata() -> Metadata {
    Metadata {
        actor_id: None,
        request_id: "workload".into(),
        source: Source::Cli,
    }
}

/// `users` users, then `commands` random commands of every kind over them.
async fn random_workload(app: &TestApp, seed: u64, users: usize, commands: usize) -> Vec<i64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ids = Vec::new();
    for i in 0..users {
        let spec = UserSpec {
            email: format!("user{i}@example.com"),
            organisation_id: (i % 3 != 0).then_some((i % 4) as i64 + 1),
            groups: if i % 5 == 0 {
                vec!["viewer".into()]
            } else {
                vec![]
            },
            is_admin: i % 7 == 0,
            ..UserSpec::default()
        };
        ids.push(app.insert_user(spec).await);
    }
    let name = |rng: &mut StdRng| Name::parse(&format!("N{}", rng.gen_range(0..50))).unwrap();
    for step in 0..commands {
        let id = ids[rng.gen_range(0..ids.len())];
        let command = match rng.gen_range(0..9) {
            0 => UserCommand::Update(UserUpdate {
                email: Email::parse(&format!("moved{step}@example.com")).unwrap(),
                first_name: name(&mut rng),
                last_name: name(&mut rng),
                organisation_id: Some(Some(OrganisationId::parse(rng.gen_range(1..5)).unwrap())),
                is_admin: Some(rng.gen_bool(0.5)),
                is_active: None,
                groups: Some(if rng.gen_bool(0.5) {
                    ["admin".to_owned()].into()
                } else {
                    Default::default()
                }),
            }),
            1 | 2 => UserCommand::Patch(UserPatch {
                first_name: Some(name(&mut rng)),
                last_name: rng.gen_bool(0.5).then(|| name(&mut rng)),
                organisation_id: rng
                    .gen_bool(0.3)
                    .then(|| rng.gen_bool(0.5).then(|| OrganisationId::parse(7).unwrap())),
                is_admin: rng.gen_bool(0.3).then(|| rng.gen_bool(0.5)),
                is_active: None,
            }),
            3 => UserCommand::Deactivate,
            4 => UserCommand::Reactivate,
            5 => UserCommand::JoinGroup(if rng.gen_bool(0.5) { "viewer" } else { "admin" }.into()),
            6 => UserCommand::LeaveGroup(if rng.gen_bool(0.5) { "viewer" } else { "admin" }.into()),
            7 => UserCommand::SetFlags {
                is_staff: Some(rng.gen_bool(0.5)),
                is_superuser: rng.gen_bool(0.2).then(|| rng.gen_bool(0.5)),
            },
            _ => UserCommand::Patch(UserPatch {
                is_active: Some(rng.gen_bool(0.5)),
                ..UserPatch::default()
            }),
        };
        app.fixtures
            .execute(id, command, &metadata(), None)
            .await
            .unwrap();
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_after_a_random_workload_equals_the_live_tables_row_for_row() {
    let app = TestApp::spawn().await;
    random_workload(&app, 7, 300, 3000).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let types: i64 = sqlx::query_scalar("SELECT count(DISTINCT event_type) FROM events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(events > 3000, "{events} events");
    assert!(types >= 12, "nearly every event type occurs: {types}");

    let before = snapshot(&app).await;
    let differences = rebuild::verify(&app.pool, &mut no_progress())
        .await
        .unwrap();
    assert_eq!(differences, vec![], "verify reports nothing");
    let report = rebuild::rebuild(&app.pool, &mut no_progress())
        .await
        .unwrap();
    assert_eq!(report.events as i64, events);
    let after = snapshot(&app).await;
    assert_eq!(before.0, after.0, "users row for row");
    assert_eq!(before.1, after.1, "groups row for row");
    assert_eq!(
        rebuild::verify(&app.pool, &mut no_progress())
            .await
            .unwrap(),
        vec![]
    );

    // The rebuilt tables serve the API and take writes.
    let user = app
        .create_user(
            "after.rebuild@example.com",
            json!({"user_types": ["viewer"]}),
        )
        .await;
    let (status, body) = status_json(
        app.admin(Method::GET, &format!("/api/v1/users/{}", user["id"]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body), (200, user));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_while_writers_write_keeps_every_acknowledged_write() {
    let app = TestApp::spawn().await;
    let ids = random_workload(&app, 11, 50, 2500).await;
    let writers: Vec<i64> = ids.iter().copied().take(8).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for id in writers.clone() {
        let client = app.client.clone();
        let url = app.url(&format!("/api/v1/users/{id}"));
        let token = app.superuser_token.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = None;
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) || k < 3 {
                let name = format!("W{id}x{k}");
                let response = client
                    .patch(&url)
                    .bearer_auth(&token)
                    .json(&json!({"first_name": name}))
                    .send()
                    .await
                    .unwrap();
                assert!(
                    response.status() == 200 || response.status() == 409,
                    "{}",
                    response.status()
                );
                if response.status() == 200 {
                    acknowledged = Some(name);
                }
                k += 1;
            }
            (id, acknowledged, k)
        }));
    }
    let report = rebuild::rebuild(&app.pool, &mut no_progress())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut last: BTreeMap<i64, String> = BTreeMap::new();
    let mut writes = 0;
    for task in tasks {
        let (id, acknowledged, k) = task.await.unwrap();
        writes += k;
        last.insert(id, acknowledged.expect("some write acknowledged"));
    }
    for (id, name) in &last {
        let first_name: String = sqlx::query_scalar("SELECT first_name FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(&first_name, name, "user {id}");
    }
    assert_eq!(
        rebuild::verify(&app.pool, &mut no_progress())
            .await
            .unwrap(),
        vec![]
    );
    println!(
        "rebuild under load: {} events rebuilt while {writes} patches ran",
        report.events
    );
}

#[tokio::test]
async fn an_interrupted_rebuild_leaves_the_live_tables_serving_and_a_rerun_succeeds() {
    let app = TestApp::spawn().await;
    random_workload(&app, 3, 100, 2500).await;
    let before = snapshot(&app).await;
    let mut batches = 0;
    let mut stop_after_one = |_: rebuild::Progress| {
        batches += 1;
        if batches == 1 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let interrupted = rebuild::rebuild(&app.pool, &mut stop_after_one).await;
    assert!(
        matches!(interrupted, Err(RebuildError::Interrupted)),
        "{interrupted:?}"
    );
    let leftover: bool = sqlx::query_scalar("SELECT to_regclass('users_rebuild') IS NOT NULL")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(
        leftover,
        "the half-built table is left as a kill would leave it"
    );
    assert_eq!(snapshot(&app).await, before, "live tables unchanged");
    let (status, _) = status_json(
        app.admin(Method::GET, "/api/v1/users")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "still serving");

    rebuild::rebuild(&app.pool, &mut no_progress())
        .await
        .unwrap();
    assert_eq!(snapshot(&app).await, before);
    let leftover: bool = sqlx::query_scalar("SELECT to_regclass('users_rebuild') IS NOT NULL")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!leftover);
}

#[tokio::test]
async fn verify_reports_rows_changed_by_hand() {
    let app = TestApp::spawn().await;
    let ids = random_workload(&app, 5, 20, 100).await;
    assert_eq!(
        rebuild::verify(&app.pool, &mut no_progress())
            .await
            .unwrap(),
        vec![]
    );
    sqlx::query("UPDATE users SET last_name = 'Forged', password_hash = 'x' WHERE id = $1")
        .bind(ids[3])
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO user_groups (user_id, group_name) VALUES ($1, 'smuggled')")
        .bind(ids[4])
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(ids[5])
        .execute(&app.pool)
        .await
        .unwrap();
    let differences = rebuild::verify(&app.pool, &mut no_progress())
        .await
        .unwrap();
    let found: Vec<(i64, &str)> = differences
        .iter()
        .map(|d| (d.user_id, d.field.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (ids[3], "last_name"),
            (ids[3], "password_hash"),
            (ids[4], "groups"),
            (ids[5], "row")
        ]
    );
    let hash = differences
        .iter()
        .find(|d| d.field == "password_hash")
        .unwrap();
    assert_eq!(
        (&hash.live, &hash.expected),
        (&json!("[redacted]"), &json!("[redacted]"))
    );
    assert_eq!(differences[0].live, json!("Forged"));
}

#[tokio::test]
async fn an_unreadable_event_stops_the_rebuild_and_leaves_the_live_tables_untouched() {
    let app = TestApp::spawn().await;
    random_workload(&app, 9, 10, 50).await;
    let before = snapshot(&app).await;
    let position: i64 = sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         VALUES ('User', '999', 1, 'Teleported', '1', '{\"Teleported\": {}}', '{}')
         RETURNING global_position",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let failed = rebuild::rebuild(&app.pool, &mut no_progress()).await;
    match failed {
        Err(RebuildError::Unreadable {
            position: at,
            event_type,
            ..
        }) => {
            assert_eq!(at, position);
            assert_eq!(event_type, "Teleported");
        }
        other => panic!("expected an unreadable event, got {other:?}"),
    }
    assert_eq!(snapshot(&app).await, before);
}

/// Commands are decided on the state read from the user's read-model row, not on a replay:
/// after every kind of event, that state must be exactly the replay of the user's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_commands_are_decided_on_equals_a_replay_of_the_log() {
    use cqrs_es::Aggregate as _;
    let app = TestApp::spawn().await;
    let ids = random_workload(&app, 11, 60, 600).await;
    let far_future = chrono::Utc::now() + chrono::Duration::days(1);
    let mut compared = 0;
    for id in ids {
        let (from_row, version) = app.fixtures.load(id).await.unwrap();
        let events = projections::history::until(&app.pool, id, far_future)
            .await
            .unwrap();
        let mut replayed = domain::User::default();
        for event in &events {
            replayed.apply(event.decode().unwrap());
        }
        assert_eq!(from_row, replayed, "user {id}");
        assert_eq!(version, events.last().unwrap().sequence, "user {id}");
        compared += events.len();
    }
    assert!(compared > 600, "{compared} events replayed");
}
