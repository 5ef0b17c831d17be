//! No response body or log line ever contains a password or its hash. Own test binary: it
//! installs a global log subscriber capturing everything at TRACE level.

use reqwest::Method;
use serde_json::json;
use tests::CapturedLogs;
use tests::{status_json, TestApp};

#[tokio::test]
async fn no_response_or_log_line_contains_a_password_or_its_hash() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let app = TestApp::spawn().await;
    let password = "Sup3r-Secret-Passw0rd";
    let mut bodies = Vec::new();
    let mut record =
        |(status, body): (u16, serde_json::Value)| bodies.push(format!("{status} {body}"));

    record(
        status_json(
            app.admin(Method::POST, "/api/v1/users")
                .json(&json!({"email": "secret@example.com", "password": password,
                              "first_name": "Sec", "last_name": "Ret"}))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    // A refused create, a malformed body, a good and two bad logins.
    record(
        status_json(
            app.admin(Method::POST, "/api/v1/users")
                .json(&json!({"email": "secret@example.com", "password": password,
                              "first_name": "", "last_name": "Ret"}))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    record(
        status_json(
            app.admin(Method::POST, "/api/v1/users")
                .header("content-type", "application/json")
                .body(format!("{{\"password\": \"{password}\", "))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    for (email, attempt) in [
        ("secret@example.com", password),
        ("secret@example.com", "Wrong-Passw0rd"),
        ("nobody@example.com", password),
    ] {
        record(
            status_json(
                app.client
                    .post(app.url("/api/v1/auth/login"))
                    .json(&json!({"email": email, "password": attempt}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await,
        );
    }
    let (_, listed) = status_json(
        app.admin(Method::GET, "/api/v1/users")
            .send()
            .await
            .unwrap(),
    )
    .await;
    bodies.push(listed.to_string());

    let hash: String =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE email = 'secret@example.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(hash.starts_with("$argon2id$"), "stored as an argon2id hash");
    let salt_and_digest = hash.rsplit_once("$").map(|(_, digest)| digest).unwrap();

    let logs = logs.text();
    assert!(
        logs.contains("/api/v1/auth/login"),
        "the logs were captured"
    );
    for text in bodies.iter().chain([&logs]) {
        assert!(!text.contains(password), "password leaked: {text}");
        assert!(!text.contains(&hash), "hash leaked: {text}");
        assert!(
            !text.contains(salt_and_digest),
            "hash digest leaked: {text}"
        );
        assert!(!text.contains("argon2"), "hash leaked: {text}");
    }
}
