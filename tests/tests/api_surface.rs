//! The API's surface beyond the users contract: the OpenAPI document and its page, metrics,
//! idempotent creates, and the request and connection limits.

use std::collections::BTreeSet;
use std::time::Duration;

use api::Limits;
use reqwest::Method;
use serde_json::{json, Value};
use tests::{status_json, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A stuck step fails its test instead of hanging the run.
const DEADLINE: Duration = Duration::from_secs(15);

fn new_user(email: &str) -> Value {
    json!({"email": email, "password": "password-123", "first_name": "Idem", "last_name": "Potent"})
}

async fn document(app: &TestApp) -> Value {
    let response = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn operations(document: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in [
            "get", "put", "post", "delete", "patch", "head", "options", "trace",
        ] {
            if item.get(method).is_some() {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document_and_every_operation_is_routed() {
    let app = TestApp::spawn().await;
    let document = document(&app).await;
    assert_eq!(document["openapi"], "3.1.0");

    let routed: BTreeSet<(String, String)> = api::routes::all()
        .table()
        .iter()
        .map(|(method, path)| (method.to_string(), (*path).to_owned()))
        .collect();
    let documented = operations(&document);
    assert_eq!(
        routed.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routes missing from the document"
    );
    assert_eq!(
        documented.difference(&routed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented operations without a route"
    );

    // And each documented operation reaches a handler over HTTP: never the router's 404 for
    // an unknown path (the ids used exist) nor its 405.
    let id = app.superuser_id.to_string();
    for (method, path) in &documented {
        let path = path.replace("{id}", &id).replace("{file}", "index.css");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = app.admin(method.clone(), &path);
        if [Method::POST, Method::PUT, Method::PATCH].contains(&method) {
            request = request.json(&json!({}));
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        assert!(
            status != 404 && status != 405,
            "{method} {path} answered {status}: not routed"
        );
        assert!(status < 500, "{method} {path} answered {status}");
    }
}

#[tokio::test]
async fn the_documentation_page_and_its_assets_are_served_from_the_binary() {
    let app = TestApp::spawn().await;
    for page in ["/docs", "/docs/"] {
        let response = app.client.get(app.url(page)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{page}");
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let html = response.text().await.unwrap();
        assert!(html.contains("swagger-ui"), "{page} is the Swagger UI page");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no asset from elsewhere (CDN)"
        );
    }
    let initializer = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        initializer.contains("/api/v1/openapi.json"),
        "the page loads our document"
    );
    for asset in [
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "swagger-ui.css",
        "index.css",
    ] {
        let response = app
            .client
            .get(app.url(&format!("/docs/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        assert!(
            !response.bytes().await.unwrap().is_empty(),
            "{asset} has content"
        );
    }
    let missing = app
        .client
        .get(app.url("/docs/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

/// The value of the sample of `name` whose labels include every one of `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.split(['{', ' ']).next() == Some(name)
                && labels.iter().all(|label| line.contains(label))
        })
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_commands_pool_and_login_failures() {
    let app = TestApp::spawn().await;
    let id = app.superuser_id;
    let before = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let get_label = [
        "route=\"/api/v1/users/{id}\"",
        "method=\"GET\"",
        "status=\"200\"",
    ];
    let gets_before = sample(&before, "http_requests_total", &get_label).unwrap_or(0.0);

    for _ in 0..3 {
        let response = app
            .admin(Method::GET, &format!("/api/v1/users/{id}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let user = app.create_user("metered@example.com", json!({})).await;
    let patched = app
        .admin(Method::PATCH, &format!("/api/v1/users/{}", user["id"]))
        .json(&json!({"first_name": "Metered"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let failed = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": "metered@example.com", "password": "wrong-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);

    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let metrics = response.text().await.unwrap();
    let gets = sample(&metrics, "http_requests_total", &get_label).expect("GET counted");
    assert!(
        gets >= gets_before + 3.0,
        "3 GETs (trailing slash too) under one route: {gets}"
    );
    assert!(
        sample(&metrics, "http_request_duration_seconds_count", &get_label).unwrap_or(0.0) >= 3.0
    );
    assert!(
        sample(
            &metrics,
            "commands_total",
            &["command=\"Patch\"", "outcome=\"ok\""]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        sample(
            &metrics,
            "commands_total",
            &["command=\"Create\"", "outcome=\"ok\""]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert!(sample(&metrics, "login_failures_total", &[]).unwrap_or(0.0) >= 1.0);
    let max = sample(&metrics, "db_pool_connections", &["state=\"max\""]).expect("pool size");
    assert!(max >= 1.0);
    assert!(sample(&metrics, "db_pool_connections", &["state=\"in_use\""]).is_some());
    // The reads above went through the request path's connections, which keep them open.
    let request_max = sample(&metrics, "db_request_connections", &["state=\"max\""]);
    assert_eq!(
        request_max,
        Some(8.0),
        "the test app's request-path connections"
    );
    let request_open = sample(&metrics, "db_request_connections", &["state=\"idle\""])
        .unwrap_or(0.0)
        + sample(&metrics, "db_request_connections", &["state=\"in_use\""]).unwrap_or(0.0);
    assert!(
        request_open >= 1.0,
        "{request_open} request-path connections open"
    );
    assert!(
        !metrics.contains(&format!("/api/v1/users/{id}\"")),
        "routes are templates, not paths"
    );
}

async fn post_with_key(app: &TestApp, token: &str, key: &str, body: &Value) -> reqwest::Response {
    app.as_user(token, Method::POST, "/api/v1/users")
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn created_events_with_email(app: &TestApp, email: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'Created' AND payload->'Created'->>'email' = $1",
    )
    .bind(email)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_retried_create_with_the_same_key_answers_the_first_response() {
    let app = TestApp::spawn().await;
    let token = app.superuser_token.clone();
    let body = new_user("retry@example.com");
    let first = post_with_key(&app, &token, "key-1", &body).await;
    assert_eq!(first.status(), 201);
    let location = first.headers()["location"].clone();
    let first_body: Value = first.json().await.unwrap();

    // The same body with keys in another order and other whitespace is the same request.
    let reordered = r#"{"last_name": "Potent", "first_name": "Idem",
                        "password": "password-123", "email": "retry@example.com"}"#;
    let again = app
        .as_user(&token, Method::POST, "/api/v1/users")
        .header("Idempotency-Key", "key-1")
        .header("content-type", "application/json")
        .body(reordered)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["location"], location);
    assert_eq!(again.json::<Value>().await.unwrap(), first_body);
    assert_eq!(
        created_events_with_email(&app, "retry@example.com").await,
        1
    );

    // The original answer, even after the user changed.
    let id = first_body["id"].as_i64().unwrap();
    let patched = app
        .admin(Method::PATCH, &format!("/api/v1/users/{id}"))
        .json(&json!({"first_name": "Changed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let third = post_with_key(&app, &token, "key-1", &body).await;
    assert_eq!(third.status(), 201);
    assert_eq!(third.json::<Value>().await.unwrap(), first_body);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let token = app.superuser_token.clone();
    let first = post_with_key(&app, &token, "key-2", &new_user("one@example.com")).await;
    assert_eq!(first.status(), 201);
    let (status, body) =
        status_json(post_with_key(&app, &token, "key-2", &new_user("two@example.com")).await).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "idempotency_key_reused");
    assert_eq!(created_events_with_email(&app, "two@example.com").await, 0);

    // Keys belong to their caller: another caller's same key is a new request.
    let other = app
        .insert_user(tests::UserSpec {
            email: "other-admin@example.com".into(),
            is_superuser: true,
            ..Default::default()
        })
        .await;
    let other_token = app.token_for(other);
    let (status, _) =
        status_json(post_with_key(&app, &other_token, "key-2", &new_user("two@example.com")).await)
            .await;
    assert_eq!(status, 201);
    assert_eq!(created_events_with_email(&app, "two@example.com").await, 1);
}

#[tokio::test]
async fn a_failed_create_frees_its_key_and_keys_expire_after_24_hours() {
    let app = TestApp::spawn().await;
    let token = app.superuser_token.clone();
    let mut bad = new_user("fixed@example.com");
    bad["first_name"] = json!("");
    let (status, _) = status_json(post_with_key(&app, &token, "key-3", &bad).await).await;
    assert_eq!(status, 400);
    let (status, first) =
        status_json(post_with_key(&app, &token, "key-3", &new_user("fixed@example.com")).await)
            .await;
    assert_eq!(status, 201, "the corrected retry runs: {first}");

    // 25 hours later the key is forgotten: another body under it is a new request.
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, second) =
        status_json(post_with_key(&app, &token, "key-3", &new_user("later@example.com")).await)
            .await;
    assert_eq!(status, 201, "{second}");
    assert_ne!(first["id"], second["id"]);
    let (status, _) = status_json(
        app.admin(Method::POST, "/api/v1/users")
            .header("Idempotency-Key", "bad key with spaces")
            .json(&new_user("spaces@example.com"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn concurrent_retries_with_one_key_create_one_user() {
    let app = TestApp::spawn().await;
    let body = new_user("race@example.com");
    let requests = (0..10).map(|_| post_with_key(&app, &app.superuser_token, "key-race", &body));
    let mut ids = BTreeSet::new();
    let mut created = 0;
    for response in futures::future::join_all(requests).await {
        let (status, body) = status_json(response).await;
        match status {
            201 => {
                created += 1;
                ids.insert(body["id"].as_i64().unwrap());
            }
            409 => assert_eq!(body["code"], "idempotency_key_in_use"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(created >= 1);
    assert_eq!(ids.len(), 1, "every 201 is the same user");
    assert_eq!(created_events_with_email(&app, "race@example.com").await, 1);
}

#[tokio::test]
async fn a_request_over_the_timeout_answers_503() {
    let app = TestApp::spawn_with_limits(Limits {
        request_timeout: Duration::from_millis(1),
        ..Limits::default()
    })
    .await;
    // A login verifies a password with argon2: far longer than a millisecond.
    let (status, body) = status_json(
        app.client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"email": tests::SUPERUSER_EMAIL, "password": tests::SUPERUSER_PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], "timeout");
}

async fn raw_get(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let app = TestApp::spawn_with_limits(Limits {
        max_connections: 1,
        ..Limits::default()
    })
    .await;
    let address = app.base.trim_start_matches("http://").to_owned();
    // Accepted first (the backlog is FIFO), the holder takes the only slot.
    let holder = TcpStream::connect(&address).await.unwrap();
    let mut waiting = TcpStream::connect(&address).await.unwrap();
    let request = "GET /healthz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n";
    waiting.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = [0_u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), waiting.read(&mut buffer)).await;
    assert!(early.is_err(), "no answer while the only slot is taken");
    drop(holder);
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, waiting.read_to_string(&mut response))
        .await
        .expect("answered once the slot is free")
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let app = TestApp::spawn_with_limits(Limits {
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut idle = TcpStream::connect(&address).await.unwrap();
    let mut buffer = [0_u8; 16];
    let read = tokio::time::timeout(DEADLINE, idle.read(&mut buffer))
        .await
        .expect("the server closes the idle connection");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed without an answer: {read:?}"
    );
    // A busy connection is served as usual.
    let mut busy = TcpStream::connect(&address).await.unwrap();
    assert!(raw_get(&mut busy, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_retry_after_the_first_request_died_past_its_commit_answers_that_user() {
    let app = TestApp::spawn().await;
    let token = app.superuser_token.clone();
    let body = new_user("orphan@example.com");
    let (status, first) = status_json(post_with_key(&app, &token, "key-crash", &body).await).await;
    assert_eq!(status, 201);
    // As if the process died after the commit and before recording the answer, long ago.
    sqlx::query(
        "UPDATE idempotency_keys SET response = NULL, version = NULL,
                created_at = now() - interval '10 minutes'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let (status, again) = status_json(post_with_key(&app, &token, "key-crash", &body).await).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(
        created_events_with_email(&app, "orphan@example.com").await,
        1
    );
    // And the answer is recorded now.
    let (status, third) = status_json(post_with_key(&app, &token, "key-crash", &body).await).await;
    assert_eq!((status, &third["id"]), (201, &first["id"]));
}
