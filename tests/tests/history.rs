//! The audit history and time travel, read from the event store.

use reqwest::Method;
use serde_json::{json, Value};
use tests::{status_json, TestApp, UserSpec};

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    status_json(app.as_user(token, Method::GET, path).send().await.unwrap()).await
}

async fn patch(app: &TestApp, id: i64, body: Value) {
    let (status, answer) = status_json(
        app.admin(Method::PATCH, &format!("/api/v1/users/{id}"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn the_history_lists_every_change_oldest_first_with_the_password_redacted() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user("audited@example.com", json!({"user_types": ["viewer"]}))
        .await;
    let id = user["id"].as_i64().unwrap();
    patch(&app, id, json!({"first_name": "Second"})).await;
    patch(&app, id, json!({"is_admin": true, "is_active": false})).await;
    let token = app.superuser_token.clone();

    let (status, history) = get(&app, &token, &format!("/api/v1/users/{id}/history")).await;
    assert_eq!(status, 200);
    let entries = history.as_array().unwrap();
    let types: Vec<&str> = entries
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["Created", "FirstNameChanged", "AdminGranted", "Deactivated"]
    );
    let sequences: Vec<i64> = entries
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, [1, 2, 3, 4]);
    for entry in entries {
        let keys: Vec<&str> = entry
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys.iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>(),
            [
                "actor_id",
                "changes",
                "event_type",
                "event_version",
                "recorded_at",
                "request_id",
                "sequence"
            ]
            .into_iter()
            .collect()
        );
        assert_eq!(entry["actor_id"], app.superuser_id);
        assert!(entry["recorded_at"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(entries[0]["changes"]["password"], "[redacted]");
    assert_eq!(entries[0]["changes"]["email"], "audited@example.com");
    assert_eq!(entries[0]["changes"]["groups"], json!(["viewer"]));
    assert_eq!(entries[1]["changes"], json!({"first_name": "Second"}));
    assert_eq!(entries[3]["changes"], json!({"is_active": false}));
    assert!(
        !history.to_string().contains("argon2"),
        "no hash in the history"
    );

    // Paging: after is exclusive, limit bounds the page.
    let (_, page) = get(
        &app,
        &token,
        &format!("/api/v1/users/{id}/history/?after=1&limit=2"),
    )
    .await;
    let types: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["FirstNameChanged", "AdminGranted"]);
    let (_, rest) = get(&app, &token, &format!("/api/v1/users/{id}/history?after=4")).await;
    assert_eq!(rest, json!([]));
    let (status, body) = get(&app, &token, &format!("/api/v1/users/{id}/history?after=x")).await;
    assert_eq!(
        (status, &body["after"]),
        (400, &json!(["A valid integer is required."]))
    );
    let (status, _) = get(&app, &token, "/api/v1/users/999/history").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_history_follows_the_retrieve_rules() {
    let app = TestApp::spawn().await;
    let member = |email: &str, org: i64, groups: &[&str]| UserSpec {
        email: email.into(),
        organisation_id: Some(org),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..UserSpec::default()
    };
    let plain = app.insert_user(member("plain@example.com", 1, &[])).await;
    let viewer = app
        .insert_user(member("viewer@example.com", 1, &["viewer"]))
        .await;
    let outsider = app
        .insert_user(member("outsider@example.com", 2, &["viewer"]))
        .await;
    let path = |id: i64| format!("/api/v1/users/{id}/history");

    assert_eq!(
        get(&app, &app.token_for(plain), &path(plain)).await.0,
        200,
        "own history"
    );
    assert_eq!(get(&app, &app.token_for(plain), &path(viewer)).await.0, 403);
    assert_eq!(get(&app, &app.token_for(viewer), &path(plain)).await.0, 200);
    assert_eq!(
        get(&app, &app.token_for(outsider), &path(plain)).await.0,
        404
    );
    assert_eq!(
        status_json(app.client.get(app.url(&path(plain))).send().await.unwrap())
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn as_of_returns_each_intermediate_state_of_a_user() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user("traveller@example.com", json!({"organisation_id": 4}))
        .await;
    let id = user["id"].as_i64().unwrap();
    patch(
        &app,
        id,
        json!({"first_name": "Second", "organisation_id": 5}),
    )
    .await;
    patch(&app, id, json!({"last_name": "Third", "is_active": false})).await;
    let token = app.superuser_token.clone();

    let (_, history) = get(&app, &token, &format!("/api/v1/users/{id}/history")).await;
    let times: Vec<String> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["recorded_at"].as_str().unwrap().to_owned())
        .collect();
    let at = |time: &str| format!("/api/v1/users/{id}?as_of={}", time.replace('+', "%2B"));

    let (status, first) = get(&app, &token, &at(&times[0])).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            first["first_name"].as_str(),
            first["organisation_id"].as_i64()
        ),
        (Some("First"), Some(4))
    );
    assert_eq!(first["created"], user["created"]);

    let (_, second) = get(&app, &token, &at(&times[1])).await;
    assert_eq!(
        (
            second["first_name"].as_str(),
            second["organisation_id"].as_i64()
        ),
        (Some("Second"), Some(5))
    );
    assert_eq!(
        (second["last_name"].as_str(), second["is_active"].as_bool()),
        (Some("Last"), Some(true))
    );

    let (_, third) = get(&app, &token, &at(times.last().unwrap())).await;
    let (_, now) = get(&app, &token, &format!("/api/v1/users/{id}")).await;
    assert_eq!(third, now, "the latest state equals the read model");

    // Before the user existed: 404. Malformed: 400. An offset other than Z works too.
    assert_eq!(get(&app, &token, &at("2000-01-01T00:00:00Z")).await.0, 404);
    let (status, body) = get(&app, &token, &at("yesterday")).await;
    assert_eq!(status, 400);
    assert!(body["as_of"].is_array());
    assert_eq!(
        get(&app, &token, &at("2999-01-01T10:00:00+10:00")).await.1,
        now
    );
}

#[tokio::test]
async fn as_of_reads_the_event_store_not_the_read_model() {
    let app = TestApp::spawn().await;
    let user = app.create_user("sturdy@example.com", json!({})).await;
    let id = user["id"].as_i64().unwrap();
    sqlx::query("UPDATE users SET first_name = 'Tampered' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    let (_, then) = get(
        &app,
        &app.superuser_token,
        &format!("/api/v1/users/{id}?as_of=2999-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(then["first_name"], "First");
}
