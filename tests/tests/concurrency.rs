//! Races on one email and on one user, over HTTP against a real database.

use cqrs_es::Aggregate;
use domain::{User, UserEvent};
use futures::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use tests::{status_json, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_a_hundred_concurrent_creates_with_one_email_exactly_one_succeeds() {
    let app = TestApp::spawn().await;
    let attempts = (0..100).map(|i| {
        // The same address, in a different case each time.
        let email: String = "race.winner@example.com"
            .chars()
            .enumerate()
            .map(|(j, c)| {
                if (i >> (j % 7)) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        let request = app.admin(Method::POST, "/api/v1/users").json(&json!({
            "email": email,
            "password": "password-123",
            "first_name": "Race",
            "last_name": format!("Runner {i}"),
        }));
        async move { status_json(request.send().await.unwrap()).await }
    });
    let results = join_all(attempts).await;

    let created: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    let refused: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 400)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "exactly one 201: {results:?}");
    assert_eq!(refused.len(), 99, "all others 400: {results:?}");
    for body in &refused {
        assert_eq!(
            body["email"],
            json!(["A user with this email already exists."]),
            "{body}"
        );
    }

    let created_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'Created'
           AND lower(payload->'Created'->>'email') = 'race.winner@example.com'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(created_events, 1, "exactly one Created event stored");
    let claims: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM email_claims WHERE email = 'race.winner@example.com'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(claims, 1);
    let orphans: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM email_claims) - (SELECT count(*) FROM users)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0, "no email claimed without its user");
    println!(
        "same-email race: {} created, {} refused with 400 on email, {created_events} Created event",
        created.len(),
        refused.len()
    );
}

#[tokio::test]
async fn a_create_that_fails_leaves_the_email_free() {
    let app = TestApp::spawn().await;
    let (status, _) = status_json(
        app.admin(Method::POST, "/api/v1/users")
            .json(&json!({
                "email": "free@example.com",
                "password": "password-123",
                "first_name": "Free",
                "last_name": "Email",
                "user_types": ["no-such-group"],
            }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    let claimed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM email_claims WHERE email = 'free@example.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(claimed, 0);
    let user = app.create_user("Free@Example.com", json!({})).await;
    assert_eq!(user["email"], "Free@Example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_patches_of_one_user_end_in_the_replayed_state() {
    let app = TestApp::spawn().await;
    let user = app.create_user("patched@example.com", json!({})).await;
    let id = user["id"].as_i64().unwrap();
    let path = format!("/api/v1/users/{id}");

    let patches = (0..50).map(|i| {
        let body = if i % 5 == 0 {
            json!({"first_name": format!("F{i}"), "is_admin": i % 10 == 0, "organisation_id": i + 1})
        } else {
            json!({"first_name": format!("F{i}"), "last_name": format!("L{i}")})
        };
        let request = app.admin(Method::PATCH, &path).json(&body);
        async move { status_json(request.send().await.unwrap()).await.0 }
    });
    let statuses = join_all(patches).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let conflicts = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!(ok + conflicts, 50, "only 200 or 409: {statuses:?}");
    assert!(ok >= 1, "at least one patch went through");

    let mut replayed = User::default();
    let events = app.events_of(id).await;
    for (_, _, payload) in &events {
        replayed.apply(serde_json::from_value::<UserEvent>(payload.clone()).unwrap());
    }
    let (status, row) = status_json(app.admin(Method::GET, &path).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(row["first_name"], replayed.first_name);
    assert_eq!(row["last_name"], replayed.last_name);
    assert_eq!(row["organisation_id"], json!(replayed.organisation_id));
    assert_eq!(row["is_admin"], replayed.is_admin);
    assert_eq!(row["email"], replayed.email);
    assert_eq!(row["is_active"], replayed.is_active);
    let last_sequence: i64 = sqlx::query_scalar("SELECT last_sequence FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        last_sequence,
        events.len() as i64,
        "row is at the last event"
    );
    println!(
        "racing patches: {ok} × 200, {conflicts} × 409, 0 × 5xx; {} events stored",
        events.len()
    );
}

/// The server and a second command bus (standing in for another instance) write to one user
/// at once: conflicts between them are re-decided or answered as conflicts, never lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_in_two_processes_racing_on_one_user_lose_nothing() {
    use api::commands::{CommandError, Metadata, Source};
    use domain::{Name, UserCommand, UserPatch};

    let app = TestApp::spawn().await;
    let user = app.create_user("two.writers@example.com", json!({})).await;
    let id = user["id"].as_i64().unwrap();
    let path = format!("/api/v1/users/{id}");

    let over_http = (0..25).map(|i| {
        let request = app
            .admin(Method::PATCH, &path)
            .json(&json!({"first_name": format!("Http{i}")}));
        async move { status_json(request.send().await.unwrap()).await.0 }
    });
    let direct = (0..25).map(|i| {
        let commands = app.commands.clone();
        async move {
            let patch = UserPatch {
                last_name: Some(Name::parse(&format!("Direct{i}")).unwrap()),
                ..UserPatch::default()
            };
            let metadata = Metadata {
                actor_id: None,
                request_id: format!("direct-{i}"),
                source: Source::Cli,
            };
            match commands
                .execute(id, UserCommand::Patch(patch), &metadata, None)
                .await
            {
                Ok(()) => 200,
                Err(CommandError::Conflict) => 409,
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
    });
    let (http, direct) = tokio::join!(join_all(over_http), join_all(direct));
    let statuses: Vec<u16> = http.into_iter().chain(direct).collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );

    let events = app.events_of(id).await;
    let succeeded = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        events.len(),
        1 + succeeded,
        "one event per successful patch"
    );
    let mut replayed = User::default();
    for (_, _, payload) in &events {
        replayed.apply(serde_json::from_value::<UserEvent>(payload.clone()).unwrap());
    }
    let (_, row) = status_json(app.admin(Method::GET, &path).send().await.unwrap()).await;
    assert_eq!(row["first_name"], replayed.first_name);
    assert_eq!(row["last_name"], replayed.last_name);
}

/// Without the API's advisory pre-check, the email claim in the write transaction alone
/// refuses a second user with the address (any case) and leaves nothing of it behind.
#[tokio::test]
async fn the_write_transaction_itself_refuses_a_taken_email_and_leaves_no_trace() {
    use api::commands::{CommandError, Metadata, Source};
    use domain::{Email, Name, NewUser, Password, UserCommand};

    let app = TestApp::spawn().await;
    let new_user = |email: &str| NewUser {
        email: Email::parse(email).unwrap(),
        password: Password::parse("password-123").unwrap(),
        first_name: Name::parse("Claim").unwrap(),
        last_name: Name::parse("Test").unwrap(),
        organisation_id: None,
        groups: Default::default(),
        is_admin: false,
        is_staff: false,
        is_superuser: false,
    };
    let metadata = Metadata {
        actor_id: None,
        request_id: "claim-test".into(),
        source: Source::Cli,
    };
    let first = app.commands.next_user_id().await.unwrap();
    app.commands
        .execute(
            first,
            UserCommand::Create(new_user("claim@example.com")),
            &metadata,
            None,
        )
        .await
        .unwrap();
    let second = app.commands.next_user_id().await.unwrap();
    let refused = app
        .commands
        .execute(
            second,
            UserCommand::Create(new_user("CLAIM@example.com")),
            &metadata,
            None,
        )
        .await;
    assert!(
        matches!(refused, Err(CommandError::EmailTaken)),
        "{refused:?}"
    );
    assert!(
        app.events_of(second).await.is_empty(),
        "no event of the refused user"
    );
    let row: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
        .bind(second)
        .fetch_optional(&app.pool)
        .await
        .unwrap();
    assert_eq!(row, None, "no read-model row of the refused user");

    // Moving the first user to another address frees the old one for a third user.
    let (status, _) = status_json(
        app.admin(Method::PUT, &format!("/api/v1/users/{first}"))
            .json(
                &json!({"email": "moved@example.com", "first_name": "Claim", "last_name": "Test"}),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let third = app.commands.next_user_id().await.unwrap();
    app.commands
        .execute(
            third,
            UserCommand::Create(new_user("Claim@Example.com")),
            &metadata,
            None,
        )
        .await
        .unwrap();
}
