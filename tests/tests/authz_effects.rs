//! Authorization is decided from the database on every request, and failed logins are
//! throttled.

use api::config::LoginThrottle;
use reqwest::Method;
use serde_json::json;
use tests::{status_json, TestApp, UserSpec};

async fn get_status(app: &TestApp, token: &str, path: &str) -> u16 {
    status_json(app.as_user(token, Method::GET, path).send().await.unwrap())
        .await
        .0
}

async fn admin_patch(app: &TestApp, id: i64, body: serde_json::Value) {
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

fn member(email: &str, groups: &[&str]) -> UserSpec {
    UserSpec {
        email: email.into(),
        organisation_id: Some(1),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..UserSpec::default()
    }
}

#[tokio::test]
async fn demoting_a_caller_takes_effect_on_their_next_request() {
    let app = TestApp::spawn().await;
    let admin = app
        .insert_user(UserSpec {
            is_admin: true,
            ..member("admin@example.com", &[])
        })
        .await;
    let target = app.insert_user(member("target@example.com", &[])).await;
    let token = app.token_for(admin);
    let path = format!("/api/v1/users/{target}");
    assert_eq!(get_status(&app, &token, &path).await, 200);
    admin_patch(&app, admin, json!({"is_admin": false})).await;
    assert_eq!(
        get_status(&app, &token, &path).await,
        403,
        "same token, no longer admin"
    );
}

#[tokio::test]
async fn losing_a_group_takes_effect_on_the_next_request() {
    let app = TestApp::spawn().await;
    let viewer = app
        .insert_user(member("viewer@example.com", &["viewer"]))
        .await;
    let target = app.insert_user(member("target@example.com", &[])).await;
    let token = app.token_for(viewer);
    let path = format!("/api/v1/users/{target}");
    assert_eq!(get_status(&app, &token, &path).await, 200);
    let (status, _) = status_json(
        app.admin(Method::PUT, &format!("/api/v1/users/{viewer}"))
            .json(
                &json!({"email": "viewer@example.com", "first_name": "Fixture",
                          "last_name": "User", "user_types": []}),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(get_status(&app, &token, &path).await, 403);
}

#[tokio::test]
async fn moving_a_caller_to_another_organisation_takes_effect_on_the_next_request() {
    let app = TestApp::spawn().await;
    let viewer = app
        .insert_user(member("viewer@example.com", &["viewer"]))
        .await;
    let target = app.insert_user(member("target@example.com", &[])).await;
    let token = app.token_for(viewer);
    let path = format!("/api/v1/users/{target}");
    assert_eq!(get_status(&app, &token, &path).await, 200);
    admin_patch(&app, viewer, json!({"organisation_id": 2})).await;
    assert_eq!(
        get_status(&app, &token, &path).await,
        404,
        "now out of scope"
    );
}

#[tokio::test]
async fn deactivating_a_caller_refuses_their_tokens_on_the_next_request() {
    let app = TestApp::spawn().await;
    let user = app
        .insert_user(member("leaver@example.com", &["viewer"]))
        .await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": "leaver@example.com", "password": "password-123"}))
        .send()
        .await
        .unwrap();
    let (_, tokens) = status_json(response).await;
    let access = tokens["tokens"]["access"].as_str().unwrap().to_owned();
    let refresh = tokens["tokens"]["refresh"].as_str().unwrap().to_owned();
    let own = format!("/api/v1/users/{user}");
    assert_eq!(get_status(&app, &access, &own).await, 200);

    let deleted = app.admin(Method::DELETE, &own).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(get_status(&app, &access, &own).await, 401);
    let refreshed = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .json(&json!({"refresh": refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 401);
}

async fn login(app: &TestApp, email: &str, password: &str) -> (u16, Option<String>) {
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    (response.status().as_u16(), retry_after)
}

/// Moves every recorded failure `seconds` into the past, instead of waiting.
async fn age_failures(app: &TestApp, seconds: i64) {
    sqlx::query("UPDATE login_failures SET failed_at = failed_at - make_interval(secs => $1)")
        .bind(seconds as f64)
        .execute(&app.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn failed_logins_for_one_email_are_throttled_with_retry_after() {
    let app = TestApp::spawn_with_throttle(LoginThrottle {
        max_failures_per_email: 3,
        max_failures_per_client: 100,
        window_secs: 60,
    })
    .await;
    app.insert_user(member("victim@example.com", &[])).await;
    app.insert_user(member("bystander@example.com", &[])).await;

    for _ in 0..3 {
        assert_eq!(
            login(&app, "victim@example.com", "wrong-password").await.0,
            401
        );
    }
    // Past the limit even the right password is not checked.
    let (status, retry_after) = login(&app, "VICTIM@example.com", "password-123").await;
    assert_eq!(status, 429);
    let retry_after: i64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Other accounts from the same client are unaffected.
    assert_eq!(
        login(&app, "bystander@example.com", "password-123").await.0,
        200
    );

    // Fifty seconds later the wait is at most ten seconds; past the window it is over.
    age_failures(&app, 50).await;
    let (status, retry_after) = login(&app, "victim@example.com", "password-123").await;
    assert_eq!(status, 429);
    let retry_after: i64 = retry_after.unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    age_failures(&app, 11).await;
    assert_eq!(
        login(&app, "victim@example.com", "password-123").await.0,
        200
    );
}

#[tokio::test]
async fn a_successful_login_forgets_the_email_s_failures() {
    let app = TestApp::spawn_with_throttle(LoginThrottle {
        max_failures_per_email: 3,
        max_failures_per_client: 100,
        window_secs: 60,
    })
    .await;
    app.insert_user(member("forgetful@example.com", &[])).await;
    for _ in 0..2 {
        assert_eq!(
            login(&app, "forgetful@example.com", "wrong-password")
                .await
                .0,
            401
        );
    }
    assert_eq!(
        login(&app, "forgetful@example.com", "password-123").await.0,
        200
    );
    for _ in 0..2 {
        assert_eq!(
            login(&app, "forgetful@example.com", "wrong-password")
                .await
                .0,
            401
        );
    }
    assert_eq!(
        login(&app, "forgetful@example.com", "password-123").await.0,
        200
    );
}

#[tokio::test]
async fn failed_logins_from_one_client_are_throttled_across_emails() {
    let app = TestApp::spawn_with_throttle(LoginThrottle {
        max_failures_per_email: 100,
        max_failures_per_client: 4,
        window_secs: 60,
    })
    .await;
    app.insert_user(member("real@example.com", &[])).await;
    for i in 0..4 {
        let email = format!("guess{i}@example.com");
        assert_eq!(login(&app, &email, "password-123").await.0, 401);
    }
    let (status, retry_after) = login(&app, "real@example.com", "password-123").await;
    assert_eq!(status, 429);
    assert!(retry_after.is_some());
}
