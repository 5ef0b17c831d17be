//! Binds a real port and walks the whole life of a user over HTTP.

use reqwest::Method;
use serde_json::json;
use tests::{status_json, TestApp};

#[tokio::test]
async fn a_user_is_created_read_changed_and_deactivated_over_http() {
    let app = TestApp::spawn().await;
    let created = app
        .create_user("jane@broker.example", json!({"organisation_id": 7}))
        .await;
    let id = created["id"].as_i64().unwrap();
    let path = format!("/api/v1/users/{id}");

    let (status, body) = status_json(app.admin(Method::GET, &path).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body, created);

    let (status, body) = status_json(
        app.admin(Method::PATCH, &path)
            .json(&json!({"last_name": "Doe"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["last_name"], "Doe");

    let response = app.admin(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let (_, body) = status_json(app.admin(Method::GET, &path).send().await.unwrap()).await;
    assert_eq!(body["is_active"], false);

    let types: Vec<String> = app.events_of(id).await.into_iter().map(|e| e.1).collect();
    assert_eq!(types, ["Created", "LastNameChanged", "Deactivated"]);
}
