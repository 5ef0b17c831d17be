//! `USERS_LOG_FORMAT=json`: one JSON object per line, and one access line per request with
//! its request id, route, status and latency. Own test binary: it installs the global log
//! subscriber.

use api::observability::{install_logging, LogFormat};
use reqwest::Method;
use serde_json::Value;
use tests::CapturedLogs;
use tests::TestApp;
use tracing_subscriber::EnvFilter;

#[tokio::test]
async fn json_logs_have_one_access_line_per_request() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    assert!(install_logging(
        LogFormat::Json,
        EnvFilter::new("info,sqlx=warn"),
        false,
        move || writer.clone()
    ));

    let app = TestApp::spawn().await;
    let id = app.superuser_id;
    let response = app
        .admin(Method::GET, &format!("/api/v1/users/{id}"))
        .header("x-request-id", "json-log-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let missing = app
        .admin(Method::GET, "/api/v1/users/999999")
        .header("x-request-id", "json-log-test-2")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let text = logs.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let access = |request_id: &str| {
        let found: Vec<&Value> = lines
            .iter()
            .filter(|line| line["target"] == "access" && line["request_id"] == request_id)
            .collect();
        assert_eq!(found.len(), 1, "one access line for {request_id}: {text}");
        found[0].clone()
    };
    let ok = access("json-log-test-1");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["route"], "/api/v1/users/{id}");
    assert_eq!(ok["status"], 200);
    assert!(ok["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    assert_eq!(ok["level"], "INFO");
    assert!(ok["timestamp"].is_string());
    assert_eq!(access("json-log-test-2")["status"], 404);
}
