//! The `/api/v1/users` endpoints over real HTTP, against the API contract §1–3 and the
//! interim authorization rule (superuser: everything; anyone else: retrieve and list
//! themself only; nobody deactivates themself).

use std::collections::BTreeSet;
use std::time::Duration;

use api::auth::{TokenKeys, TokenType};
use reqwest::header::{CONTENT_TYPE, ETAG, IF_MATCH, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde_json::{json, Value};
use tests::{status_json, TestApp, JWT_SECRET, SUPERUSER_EMAIL, SUPERUSER_PASSWORD};

const USERS: &str = "/api/v1/users";
const PASSWORD: &str = "password-123";

const REQUIRED: &str = "This field is required.";
const NOT_NULL: &str = "This field may not be null.";
const BLANK: &str = "This field may not be blank.";
const NAME_TOO_LONG: &str = "Ensure this field has no more than 150 characters.";
const EMAIL_TOO_LONG: &str = "Ensure this field has no more than 254 characters.";
const INVALID_EMAIL: &str = "Enter a valid email address.";
const EMAIL_TAKEN: &str = "A user with this email already exists.";
const PASSWORD_TOO_SHORT: &str = "Ensure this field has at least 8 characters.";
const PASSWORD_TOO_LONG: &str = "Ensure this field has no more than 128 characters.";
const INVALID_INTEGER: &str = "A valid integer is required.";
const NOT_POSITIVE: &str = "Ensure this value is greater than or equal to 1.";
const INVALID_BOOLEAN: &str = "Must be a valid boolean.";
const NOT_A_STRING: &str = "Not a valid string.";
const FORBIDDEN: &str = "You do not have permission to perform this action.";
const NOT_FOUND: &str = "Not found.";
const INVALID_PAGE: &str = "Invalid page.";

const USER_KEYS: [&str; 12] = [
    "id",
    "email",
    "first_name",
    "last_name",
    "organisation_id",
    "is_admin",
    "is_staff",
    "is_active",
    "is_email_verified",
    "is_superuser",
    "created",
    "groups",
];

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn user_path(id: i64) -> String {
    format!("{USERS}/{id}")
}

async fn send(request: RequestBuilder) -> (u16, Value) {
    status_json(request.send().await.unwrap()).await
}

fn id_of(user: &Value) -> i64 {
    user["id"].as_i64().expect("user id")
}

fn header(response: &Response, name: impl reqwest::header::AsHeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
}

/// A valid create body for `email`, with `extra` merged over it.
fn create_body(email: &str, extra: Value) -> Value {
    let mut body = json!({
        "email": email,
        "password": PASSWORD,
        "first_name": "First",
        "last_name": "Last",
    });
    let object = body.as_object_mut().unwrap();
    for (key, value) in extra.as_object().unwrap() {
        object.insert(key.clone(), value.clone());
    }
    body
}

/// `body` with `field` removed.
fn without(mut body: Value, field: &str) -> Value {
    body.as_object_mut().unwrap().remove(field);
    body
}

async fn event_types(app: &TestApp, id: i64) -> Vec<String> {
    app.events_of(id).await.into_iter().map(|e| e.1).collect()
}

/// The number of stored events of every user together.
async fn total_events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// The `ETag` a user at its last stored event must carry.
async fn expected_etag(app: &TestApp, id: i64) -> String {
    let events = app.events_of(id).await;
    format!("\"{}\"", events.last().expect("events").0)
}

/// Creates a user and logs them in: (user object, access token).
async fn user_with_token(app: &TestApp, email: &str) -> (Value, String) {
    let user = app.create_user(email, json!({})).await;
    let token = app.login(email, PASSWORD).await;
    (user, token)
}

/// GET on a brand-new connection, for the read-your-writes checks.
async fn fresh_get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let client = app.fresh_client().await;
    send(client.get(app.url(path)).bearer_auth(token)).await
}

async fn list_count(app: &TestApp) -> i64 {
    let (status, body) = send(app.admin(Method::GET, USERS)).await;
    assert_eq!(status, 200);
    body["count"].as_i64().unwrap()
}

fn assert_user_object(user: &Value) {
    let keys: BTreeSet<&str> = user
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {user}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        USER_KEYS.into_iter().collect::<BTreeSet<_>>(),
        "{user}"
    );
}

/// RFC 3339 in UTC with `Z`: `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
fn assert_rfc3339_utc(value: &str) {
    let bytes = value.as_bytes();
    let shape_ok = bytes.len() >= 20
        && bytes.iter().take(19).enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            _ => b.is_ascii_digit(),
        })
        && bytes.last() == Some(&b'Z')
        && (bytes.len() == 20
            || (bytes[19] == b'.'
                && bytes.len() > 21
                && bytes[20..bytes.len() - 1].iter().all(u8::is_ascii_digit)));
    assert!(shape_ok, "not RFC 3339 UTC with Z: {value}");
}

fn admin_group() -> Value {
    json!({"name": "admin", "permissions": [
        {"codename": "add_user", "name": "Can add user"},
        {"codename": "change_user", "name": "Can change user"},
        {"codename": "delete_user", "name": "Can delete user"},
        {"codename": "view_user", "name": "Can view user"},
    ]})
}

fn viewer_group() -> Value {
    json!({"name": "viewer", "permissions": [
        {"codename": "view_user", "name": "Can view user"},
    ]})
}

/// Parses an absolute page link: (its URL, its query pairs in order).
fn page_link(app: &TestApp, link: &Value) -> (Url, Vec<(String, String)>) {
    let link = link
        .as_str()
        .unwrap_or_else(|| panic!("expected a link, got {link}"));
    let url = Url::parse(link).unwrap_or_else(|_| panic!("not an absolute URL: {link}"));
    let base = Url::parse(&app.base).unwrap();
    assert_eq!(url.scheme(), "http", "{link}");
    assert_eq!(url.host_str(), base.host_str(), "{link}");
    assert_eq!(url.port(), base.port(), "{link}");
    assert_eq!(url.path(), USERS, "{link}");
    let pairs = url.query_pairs().into_owned().collect();
    (url, pairs)
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn ids(page: &Value) -> Vec<i64> {
    page["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {page}"))
        .iter()
        .map(id_of)
        .collect()
}

// ---------------------------------------------------------------------------------------
// List
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn list_pages_users_in_id_order_with_absolute_links_that_keep_other_parameters() {
    let app = TestApp::spawn().await;
    let mut created = vec![app.superuser_id];
    for n in 0..4 {
        let user = app
            .create_user(&format!("user{n}@example.com"), json!({}))
            .await;
        created.push(id_of(&user));
    }

    // Everything on one page: the DRF envelope, in id order.
    let (status, all) = send(app.admin(Method::GET, USERS)).await;
    assert_eq!(status, 200);
    let keys: BTreeSet<&str> = all
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["count", "next", "previous", "results"])
    );
    assert_eq!(all["count"], 5);
    assert_eq!(all["next"], Value::Null);
    assert_eq!(all["previous"], Value::Null);
    assert_eq!(ids(&all), created);
    for user in all["results"].as_array().unwrap() {
        assert_user_object(user);
    }
    let (_, retrieved) = send(app.admin(Method::GET, &user_path(created[2]))).await;
    assert_eq!(all["results"][2], retrieved);

    // Page 1 of 3.
    let (status, page1) = send(app.admin(Method::GET, &format!("{USERS}?page_size=2&q=x"))).await;
    assert_eq!(status, 200);
    assert_eq!(page1["count"], 5);
    assert_eq!(ids(&page1), created[0..2]);
    assert_eq!(page1["previous"], Value::Null);
    let (next, pairs) = page_link(&app, &page1["next"]);
    assert_eq!(param(&pairs, "page_size"), Some("2"));
    assert_eq!(param(&pairs, "q"), Some("x"));
    assert_eq!(param(&pairs, "page"), Some("2"));

    // Page 2, reached through the `next` link exactly as given.
    let (status, page2) = send(app.client.get(next).bearer_auth(&app.superuser_token)).await;
    assert_eq!(status, 200);
    assert_eq!(page2["count"], 5);
    assert_eq!(ids(&page2), created[2..4]);
    let (previous, pairs) = page_link(&app, &page2["previous"]);
    assert_eq!(param(&pairs, "page_size"), Some("2"));
    assert_eq!(param(&pairs, "q"), Some("x"));
    assert!(
        matches!(param(&pairs, "page"), None | Some("1")),
        "previous of page 2 must be page 1: {previous}"
    );
    let (status, back) = send(app.client.get(previous).bearer_auth(&app.superuser_token)).await;
    assert_eq!(status, 200);
    assert_eq!(back, page1);
    let (next, pairs) = page_link(&app, &page2["next"]);
    assert_eq!(param(&pairs, "page"), Some("3"));
    assert_eq!(param(&pairs, "q"), Some("x"));

    // Page 3, the last.
    let (status, page3) = send(app.client.get(next).bearer_auth(&app.superuser_token)).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&page3), created[4..5]);
    assert_eq!(page3["next"], Value::Null);
    let (_, pairs) = page_link(&app, &page3["previous"]);
    assert_eq!(param(&pairs, "page"), Some("2"));
    assert_eq!(param(&pairs, "page_size"), Some("2"));
}

#[tokio::test]
async fn deactivated_users_are_still_listed_with_is_active_false() {
    let app = TestApp::spawn().await;
    let user = app.create_user("gone@example.com", json!({})).await;
    let response = app
        .admin(Method::DELETE, &user_path(id_of(&user)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    let (status, page) = send(app.admin(Method::GET, USERS)).await;
    assert_eq!(status, 200);
    assert_eq!(page["count"], 2);
    assert_eq!(ids(&page), [app.superuser_id, id_of(&user)]);
    assert_eq!(page["results"][1]["is_active"], false);
}

/// 1001 more users, ids 100..=1100, for a total of 1002. Creating them over HTTP would hash
/// 1001 passwords; the list reads only the read model, so they are written there directly,
/// with the count the write path would keep.
async fn seed_bulk_users(app: &TestApp) {
    sqlx::query(
        "INSERT INTO user_counts (organisation_id, users) VALUES (0, 1001)
         ON CONFLICT (organisation_id) DO UPDATE SET users = user_counts.users + 1001",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO users (id, email, first_name, last_name, organisation_id, is_admin,
                            is_staff, is_active, is_email_verified, is_superuser,
                            password_hash, created, last_sequence)
         SELECT g, 'bulk' || g || '@example.com', 'Bulk', 'User', NULL, false, false, true,
                false, false, 'not-a-hash', now(), 1
           FROM generate_series(100, 1100) AS g",
    )
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn page_size_defaults_to_50_is_clamped_to_1000_and_falls_back_to_the_default_when_invalid() {
    let app = TestApp::spawn().await;
    seed_bulk_users(&app).await;
    let total = 1002;

    let cases: &[(&str, usize)] = &[
        ("", 50),
        ("page_size=7", 7),
        ("page_size=50", 50),
        ("page_size=0", 50),
        ("page_size=-3", 50),
        ("page_size=abc", 50),
        ("page_size=1.5", 50),
        ("page_size=", 50),
        ("page_size=999", 999),
        ("page_size=1000", 1000),
        ("page_size=1001", 1000),
        ("page_size=5000", 1000),
    ];
    for (query, expected) in cases {
        let (status, page) = send(app.admin(Method::GET, &format!("{USERS}?{query}"))).await;
        assert_eq!(status, 200, "?{query}: {page}");
        assert_eq!(page["count"], total, "?{query}");
        let page_ids = ids(&page);
        assert_eq!(page_ids.len(), *expected, "?{query}");
        assert_eq!(page_ids[0], app.superuser_id, "?{query}");
        assert!(
            page_ids.windows(2).all(|w| w[0] < w[1]),
            "?{query}: not in id order"
        );
        assert!(page["next"].is_string(), "?{query}: a next page exists");
    }

    // The last page under the default size holds the remaining 2; one past it is invalid.
    let (status, last) = send(app.admin(Method::GET, &format!("{USERS}?page=21"))).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&last), [1099, 1100]);
    assert_eq!(last["next"], Value::Null);
    let (_, pairs) = page_link(&app, &last["previous"]);
    assert_eq!(param(&pairs, "page"), Some("20"));
    let (status, body) = send(app.admin(Method::GET, &format!("{USERS}?page=22"))).await;
    assert_eq!((status, &body["detail"]), (404, &json!(INVALID_PAGE)));

    // Clamped size: page 2 of 1000 holds the remaining 2, and the links keep the given size.
    let (status, page2) =
        send(app.admin(Method::GET, &format!("{USERS}?page_size=5000&page=2"))).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&page2), [1099, 1100]);
    assert_eq!(page2["next"], Value::Null);
    let (_, pairs) = page_link(&app, &page2["previous"]);
    assert_eq!(param(&pairs, "page_size"), Some("5000"));
}

#[tokio::test]
async fn a_page_size_too_big_for_64_bits_is_still_a_positive_integer_clamped_to_1000() {
    let app = TestApp::spawn().await;
    seed_bulk_users(&app).await;
    let (status, page) = send(app.admin(
        Method::GET,
        &format!("{USERS}?page_size=99999999999999999999"),
    ))
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["count"], 1002);
    assert_eq!(
        ids(&page).len(),
        1000,
        "clamped to the maximum, not the default"
    );
}

#[tokio::test]
async fn a_page_past_the_last_or_not_a_positive_integer_is_404_invalid_page() {
    let app = TestApp::spawn().await;
    app.create_user("second@example.com", json!({})).await;

    let (status, page) = send(app.admin(Method::GET, &format!("{USERS}?page=1"))).await;
    assert_eq!(status, 200);
    assert_eq!(page["count"], 2);

    for page in [
        "2",
        "3",
        "0",
        "-1",
        "abc",
        "",
        "1.5",
        "99999999999999999999",
    ] {
        let (status, body) = send(app.admin(Method::GET, &format!("{USERS}?page={page}"))).await;
        assert_eq!(status, 404, "page={page}: {body}");
        assert_eq!(body["detail"], INVALID_PAGE, "page={page}");
    }
    let (status, body) = send(app.admin(Method::GET, &format!("{USERS}?page_size=1&page=3"))).await;
    assert_eq!((status, &body["detail"]), (404, &json!(INVALID_PAGE)));
    let (status, body) = send(app.admin(Method::GET, &format!("{USERS}?page_size=1&page=2"))).await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 2);
    assert_eq!(body["next"], Value::Null);
}

// ---------------------------------------------------------------------------------------
// Interim authorization
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_non_superuser_lists_and_retrieves_only_themself() {
    let app = TestApp::spawn().await;
    let other = app.create_user("other@example.com", json!({})).await;
    let (me, token) = user_with_token(&app, "me@example.com").await;
    app.create_user("third@example.com", json!({})).await;

    let (status, page) = send(app.as_user(&token, Method::GET, USERS)).await;
    assert_eq!(status, 200);
    assert_eq!(page["count"], 1);
    assert_eq!(page["next"], Value::Null);
    assert_eq!(page["previous"], Value::Null);
    assert_eq!(page["results"], json!([me]));

    let (status, page) =
        send(app.as_user(&token, Method::GET, &format!("{USERS}?page_size=1"))).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&page), [id_of(&me)]);
    assert_eq!(page["next"], Value::Null);
    let (status, body) = send(app.as_user(&token, Method::GET, &format!("{USERS}?page=2"))).await;
    assert_eq!((status, &body["detail"]), (404, &json!(INVALID_PAGE)));

    let (status, body) = send(app.as_user(&token, Method::GET, &user_path(id_of(&me)))).await;
    assert_eq!(status, 200);
    assert_eq!(body, me);
    for id in [id_of(&other), app.superuser_id, 9999] {
        let (status, body) = send(app.as_user(&token, Method::GET, &user_path(id))).await;
        assert_eq!(status, 404, "user {id}");
        assert_eq!(body["detail"], NOT_FOUND, "user {id}");
    }
}

#[tokio::test]
async fn a_member_without_permissions_may_only_edit_their_own_names_and_gets_404_for_others() {
    let app = TestApp::spawn().await;
    let other = app.create_user("other@example.com", json!({})).await;
    let (me, token) = user_with_token(&app, "me@example.com").await;
    let events_before = total_events(&app).await;

    let (status, body) = send(
        app.as_user(&token, Method::POST, USERS)
            .json(&create_body("new@example.com", json!({}))),
    )
    .await;
    assert_eq!((status, &body["detail"]), (403, &json!(FORBIDDEN)));

    let mine = user_path(id_of(&me));
    let forbidden_on_self = [
        (Method::PATCH, Some(json!({"organisation_id": 5}))),
        (Method::PATCH, Some(json!({"is_admin": true}))),
        (Method::PATCH, Some(json!({"is_active": false}))),
        (
            Method::PUT,
            Some(
                json!({"email": "new.me@example.com", "first_name": "First", "last_name": "Last"}),
            ),
        ),
        (Method::DELETE, None),
    ];
    for (method, body) in forbidden_on_self {
        let mut request = app.as_user(&token, method.clone(), &mine);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let (status, answer) = send(request).await;
        assert_eq!(status, 403, "{method} {body:?} on self: {answer}");
        assert_eq!(answer["detail"], FORBIDDEN, "{method} on self");
    }
    for method in [Method::PUT, Method::PATCH, Method::DELETE] {
        let mut request = app.as_user(&token, method.clone(), &user_path(id_of(&other)));
        if method != Method::DELETE {
            request = request
                .json(&json!({"first_name": "New", "email": "x@example.com", "last_name": "L"}));
        }
        let (status, body) = send(request).await;
        assert_eq!(status, 404, "{method} on another user: {body}");
        assert_eq!(body["detail"], NOT_FOUND, "{method} on another user");
    }
    assert_eq!(total_events(&app).await, events_before, "nothing recorded");
    assert_eq!(list_count(&app).await, 3);

    // Self-service: their own first and last name.
    let (status, body) = send(
        app.as_user(&token, Method::PATCH, &mine)
            .json(&json!({"first_name": "Newname"})),
    )
    .await;
    assert_eq!((status, &body["first_name"]), (200, &json!("Newname")));
    let (status, body) = send(
        app.as_user(&token, Method::PUT, &mine)
            .json(&json!({"email": "me@example.com", "first_name": "Put", "last_name": "Name"})),
    )
    .await;
    assert_eq!((status, &body["last_name"]), (200, &json!("Name")));
    assert_eq!(total_events(&app).await, events_before + 3);
}

#[tokio::test]
async fn nobody_deactivates_themself_not_even_a_superuser() {
    let app = TestApp::spawn().await;
    let me = user_path(app.superuser_id);
    let (_, before) = send(app.admin(Method::GET, &me)).await;
    let events_before = app.events_of(app.superuser_id).await.len();

    let (status, body) = send(app.admin(Method::DELETE, &me)).await;
    assert_eq!((status, &body["detail"]), (403, &json!(FORBIDDEN)));
    let (status, body) = send(
        app.admin(Method::PATCH, &me)
            .json(&json!({"is_active": false})),
    )
    .await;
    assert_eq!((status, &body["detail"]), (403, &json!(FORBIDDEN)));
    let (status, body) = send(app.admin(Method::PUT, &me).json(&json!({
        "email": SUPERUSER_EMAIL, "first_name": "Root", "last_name": "User", "is_active": false,
    })))
    .await;
    assert_eq!((status, &body["detail"]), (403, &json!(FORBIDDEN)));

    assert_eq!(app.events_of(app.superuser_id).await.len(), events_before);
    let (status, after) = send(app.admin(Method::GET, &me)).await;
    assert_eq!(status, 200);
    assert_eq!(after, before);
    assert_eq!(after["is_active"], true);

    // Changing anything else about themself is fine for a superuser.
    let (status, body) = send(
        app.admin(Method::PATCH, &me)
            .json(&json!({"first_name": "Groot"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["first_name"], "Groot");
}

// ---------------------------------------------------------------------------------------
// Create
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn create_answers_201_with_location_etag_and_the_full_user_object() {
    let app = TestApp::spawn().await;
    let password = "a-secret-pass-42";
    let response = app
        .admin(Method::POST, USERS)
        .json(&json!({
            "email": "jane@broker.example",
            "password": password,
            "first_name": "Jane",
            "last_name": "Citizen",
            "organisation_id": 7,
            "user_types": ["viewer", "admin"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = header(&response, LOCATION);
    let etag = header(&response, ETAG);
    let text = response.text().await.unwrap();
    let user: Value = serde_json::from_str(&text).unwrap();
    let id = id_of(&user);

    assert_eq!(location.as_deref(), Some(user_path(id).as_str()));
    assert_eq!(etag, Some(expected_etag(&app, id).await));
    assert_user_object(&user);
    assert_eq!(user["email"], "jane@broker.example");
    assert_eq!(user["first_name"], "Jane");
    assert_eq!(user["last_name"], "Citizen");
    assert_eq!(user["organisation_id"], 7);
    assert_eq!(user["is_active"], true);
    assert_eq!(user["is_email_verified"], false);
    assert_eq!(user["is_admin"], false);
    assert_eq!(user["is_staff"], false);
    assert_eq!(user["is_superuser"], false);
    assert_rfc3339_utc(user["created"].as_str().unwrap());
    // Groups in name order, permissions in codename order.
    assert_eq!(user["groups"], json!([admin_group(), viewer_group()]));

    // The password shows nowhere; it is stored only as an argon2id hash.
    assert!(!text.contains(password), "{text}");
    assert!(!text.contains("argon2"), "{text}");
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let events = app.events_of(id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1, "Created");
    assert!(!events[0].2.to_string().contains(password));

    // The Location is where the user lives; the new user can log in.
    let (status, fetched) = send(app.admin(Method::GET, location.as_deref().unwrap())).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, user);
    app.login("jane@broker.example", password).await;
}

#[tokio::test]
async fn create_without_organisation_or_groups_gives_null_and_no_groups() {
    let app = TestApp::spawn().await;
    for (email, extra) in [
        ("omitted@example.com", json!({})),
        ("null@example.com", json!({"organisation_id": null})),
        (
            "empty@example.com",
            json!({"organisation_id": null, "user_types": []}),
        ),
    ] {
        let (status, user) = send(
            app.admin(Method::POST, USERS)
                .json(&create_body(email, extra.clone())),
        )
        .await;
        assert_eq!(status, 201, "{extra}: {user}");
        assert_user_object(&user);
        assert_eq!(user["organisation_id"], Value::Null, "{extra}");
        assert_eq!(user["groups"], json!([]), "{extra}");
    }
    let (status, user) = send(app.admin(Method::POST, USERS).json(&create_body(
        "viewer@example.com",
        json!({"user_types": ["viewer", "viewer"]}),
    )))
    .await;
    assert_eq!(status, 201);
    assert_eq!(user["groups"], json!([viewer_group()]));
}

#[tokio::test]
async fn create_ignores_is_fields_and_unknown_fields_in_the_body() {
    let app = TestApp::spawn().await;
    let (status, user) = send(app.admin(Method::POST, USERS).json(&create_body(
        "plain@example.com",
        json!({
            "is_admin": true,
            "is_staff": true,
            "is_superuser": true,
            "is_active": false,
            "is_email_verified": true,
            "id": 4242,
            "created": "2000-01-01T00:00:00Z",
            "groups": [{"name": "admin", "permissions": []}],
            "password_hash": "$argon2id$forged",
            "nickname": "JJ",
        }),
    )))
    .await;
    assert_eq!(status, 201, "{user}");
    assert_user_object(&user);
    assert_ne!(user["id"], 4242);
    assert_eq!(user["is_admin"], false);
    assert_eq!(user["is_staff"], false);
    assert_eq!(user["is_superuser"], false);
    assert_eq!(user["is_active"], true);
    assert_eq!(user["is_email_verified"], false);
    assert_eq!(user["groups"], json!([]));
    assert_ne!(user["created"], "2000-01-01T00:00:00Z");
    // The given password (not the forged hash) is what logs in.
    app.login("plain@example.com", PASSWORD).await;
    let (status, _) = send(app.admin(Method::GET, "/api/v1/users/4242")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn create_refuses_each_invalid_field_with_its_drf_message() {
    let app = TestApp::spawn().await;
    let long_email = format!(
        "{}@{}.{}.{}.com",
        "a".repeat(64),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(58)
    );
    assert_eq!(long_email.chars().count(), 255);
    let valid = create_body("new@example.com", json!({}));
    let with = |extra: Value| create_body("new@example.com", extra);

    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "missing email",
            without(valid.clone(), "email"),
            json!({"email": [REQUIRED]}),
        ),
        (
            "missing password",
            without(valid.clone(), "password"),
            json!({"password": [REQUIRED]}),
        ),
        (
            "missing first_name",
            without(valid.clone(), "first_name"),
            json!({"first_name": [REQUIRED]}),
        ),
        (
            "missing last_name",
            without(valid.clone(), "last_name"),
            json!({"last_name": [REQUIRED]}),
        ),
        (
            "null email",
            with(json!({"email": null})),
            json!({"email": [NOT_NULL]}),
        ),
        (
            "blank email",
            with(json!({"email": "  "})),
            json!({"email": [BLANK]}),
        ),
        (
            "blank first_name",
            with(json!({"first_name": "   "})),
            json!({"first_name": [BLANK]}),
        ),
        (
            "empty first_name",
            with(json!({"first_name": ""})),
            json!({"first_name": [BLANK]}),
        ),
        (
            "blank last_name",
            with(json!({"last_name": "\t "})),
            json!({"last_name": [BLANK]}),
        ),
        (
            "long first_name",
            with(json!({"first_name": "x".repeat(151)})),
            json!({"first_name": [NAME_TOO_LONG]}),
        ),
        (
            "long last_name",
            with(json!({"last_name": "é".repeat(151)})),
            json!({"last_name": [NAME_TOO_LONG]}),
        ),
        (
            "email without @",
            with(json!({"email": "not-an-email"})),
            json!({"email": [INVALID_EMAIL]}),
        ),
        (
            "email without tld",
            with(json!({"email": "jane@example"})),
            json!({"email": [INVALID_EMAIL]}),
        ),
        (
            "email with space",
            with(json!({"email": "ja ne@example.com"})),
            json!({"email": [INVALID_EMAIL]}),
        ),
        (
            "email over 254",
            with(json!({"email": long_email})),
            json!({"email": [EMAIL_TOO_LONG]}),
        ),
        (
            "email taken, other case",
            with(json!({"email": "ROOT@Example.COM"})),
            json!({"email": [EMAIL_TAKEN]}),
        ),
        (
            "email taken, padded",
            with(json!({"email": format!("  {SUPERUSER_EMAIL} ")})),
            json!({"email": [EMAIL_TAKEN]}),
        ),
        (
            "password of 7",
            with(json!({"password": "1234567"})),
            json!({"password": [PASSWORD_TOO_SHORT]}),
        ),
        (
            "password of 129",
            with(json!({"password": "p".repeat(129)})),
            json!({"password": [PASSWORD_TOO_LONG]}),
        ),
        (
            "organisation_id text",
            with(json!({"organisation_id": "abc"})),
            json!({"organisation_id": [INVALID_INTEGER]}),
        ),
        (
            "organisation_id fraction",
            with(json!({"organisation_id": 1.5})),
            json!({"organisation_id": [INVALID_INTEGER]}),
        ),
        (
            "organisation_id boolean",
            with(json!({"organisation_id": true})),
            json!({"organisation_id": [INVALID_INTEGER]}),
        ),
        (
            "organisation_id zero",
            with(json!({"organisation_id": 0})),
            json!({"organisation_id": [NOT_POSITIVE]}),
        ),
        (
            "organisation_id negative",
            with(json!({"organisation_id": -1})),
            json!({"organisation_id": [NOT_POSITIVE]}),
        ),
        (
            "user_types a string",
            with(json!({"user_types": "admin"})),
            json!({"user_types": ["Expected a list of items but got type \"str\"."]}),
        ),
        (
            "user_types an object",
            with(json!({"user_types": {"admin": true}})),
            json!({"user_types": ["Expected a list of items but got type \"dict\"."]}),
        ),
        (
            "user_types null",
            with(json!({"user_types": null})),
            json!({"user_types": [NOT_NULL]}),
        ),
        (
            "first_name a list",
            with(json!({"first_name": ["Jane"]})),
            json!({"first_name": [NOT_A_STRING]}),
        ),
    ];
    for (case, body, expected) in cases {
        let (status, errors) = send(app.admin(Method::POST, USERS).json(&body)).await;
        assert_eq!(status, 400, "{case}: {errors}");
        assert_eq!(errors, expected, "{case}");
    }
    assert_eq!(list_count(&app).await, 1, "no invalid create may succeed");
    assert_eq!(app.events_of(2).await.len(), 0);
}

#[tokio::test]
async fn create_reports_every_failure_at_once() {
    let app = TestApp::spawn().await;
    let (status, errors) = send(app.admin(Method::POST, USERS).json(&json!({
        "email": "bad",
        "password": "short",
        "first_name": " ",
        "organisation_id": "abc",
        "user_types": ["ghost"],
    })))
    .await;
    assert_eq!(status, 400);
    assert_eq!(errors["email"], json!([INVALID_EMAIL]));
    assert_eq!(errors["password"], json!([PASSWORD_TOO_SHORT]));
    assert_eq!(errors["first_name"], json!([BLANK]));
    assert_eq!(errors["last_name"], json!([REQUIRED]));
    assert_eq!(errors["organisation_id"], json!([INVALID_INTEGER]));
    assert!(
        errors["user_types"].to_string().contains("ghost"),
        "{errors}"
    );
    assert_eq!(errors.as_object().unwrap().len(), 6, "{errors}");

    // A taken email is reported together with the field errors, not instead of them.
    let (status, errors) = send(app.admin(Method::POST, USERS).json(&json!({
        "email": SUPERUSER_EMAIL.to_uppercase(),
        "password": "x",
        "organisation_id": -1,
    })))
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        errors,
        json!({
            "email": [EMAIL_TAKEN],
            "password": [PASSWORD_TOO_SHORT],
            "first_name": [REQUIRED],
            "last_name": [REQUIRED],
            "organisation_id": [NOT_POSITIVE],
        })
    );

    // An empty body (or `{}`) is missing every required field.
    for body in ["{}", ""] {
        let (status, errors) = send(
            app.admin(Method::POST, USERS)
                .header(CONTENT_TYPE, "application/json")
                .body(body),
        )
        .await;
        assert_eq!(status, 400, "{body:?}");
        assert_eq!(
            errors,
            json!({"email": [REQUIRED], "password": [REQUIRED], "first_name": [REQUIRED], "last_name": [REQUIRED]}),
            "{body:?}"
        );
    }
    assert_eq!(list_count(&app).await, 1);
}

#[tokio::test]
async fn unknown_user_types_are_listed_in_the_error_and_nothing_is_created() {
    let app = TestApp::spawn().await;
    let (status, errors) = send(app.admin(Method::POST, USERS).json(&create_body(
        "new@example.com",
        json!({"user_types": ["admin", "ghost", "viewer", "phantom"]}),
    )))
    .await;
    assert_eq!(status, 400, "{errors}");
    assert_eq!(errors.as_object().unwrap().len(), 1, "{errors}");
    let messages: Vec<&str> = errors["user_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let joined = messages.join(" ");
    assert!(joined.contains("ghost"), "{joined}");
    assert!(joined.contains("phantom"), "{joined}");
    assert!(
        !joined.contains("admin") && !joined.contains("viewer"),
        "{joined}"
    );
    assert_eq!(list_count(&app).await, 1);
}

#[tokio::test]
async fn create_accepts_values_on_the_limits_and_trims_email_and_names() {
    let app = TestApp::spawn().await;
    let email_254 = format!(
        "{}@{}.{}.{}.com",
        "a".repeat(64),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(57)
    );
    assert_eq!(email_254.chars().count(), 254);
    let cases = [
        create_body(&email_254, json!({})),
        create_body("eight@example.com", json!({"password": "12345678"})),
        create_body(
            "long-pass@example.com",
            json!({"password": "p".repeat(128)}),
        ),
        create_body(
            "long-names@example.com",
            json!({"first_name": "é".repeat(150), "last_name": "x".repeat(150)}),
        ),
    ];
    for body in cases {
        let (status, user) = send(app.admin(Method::POST, USERS).json(&body)).await;
        assert_eq!(status, 201, "{body}: {user}");
        assert_eq!(user["email"], body["email"]);
        assert_eq!(user["first_name"], body["first_name"]);
    }
    app.login("long-pass@example.com", &"p".repeat(128)).await;
    app.login("eight@example.com", "12345678").await;

    let (status, user) = send(app.admin(Method::POST, USERS).json(&create_body(
        "  padded@example.com ",
        json!({"first_name": "  Jane ", "last_name": " Doe\t"}),
    )))
    .await;
    assert_eq!(status, 201);
    assert_eq!(user["email"], "padded@example.com");
    assert_eq!(user["first_name"], "Jane");
    assert_eq!(user["last_name"], "Doe");
}

#[tokio::test]
async fn an_email_is_taken_regardless_of_case_and_a_failed_create_leaves_it_free() {
    let app = TestApp::spawn().await;
    app.create_user("Case@Example.com", json!({})).await;
    let (status, errors) = send(
        app.admin(Method::POST, USERS)
            .json(&create_body("case@EXAMPLE.COM", json!({}))),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(errors, json!({"email": [EMAIL_TAKEN]}));

    let (status, _) = send(app.admin(Method::POST, USERS).json(&create_body(
        "free@example.com",
        json!({"password": "short"}),
    )))
    .await;
    assert_eq!(status, 400);
    let (status, user) = send(
        app.admin(Method::POST, USERS)
            .json(&create_body("FREE@example.com", json!({}))),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(list_count(&app).await, 3);
}

#[tokio::test]
async fn of_many_simultaneous_creates_with_one_email_exactly_one_succeeds() {
    let app = TestApp::spawn().await;
    let emails = [
        "race@example.com",
        "RACE@example.com",
        "Race@Example.com",
        "race@EXAMPLE.com",
        "rAce@example.com",
        "raCe@example.com",
        "racE@example.com",
        "RACE@EXAMPLE.COM",
    ];
    let responses = futures::future::join_all(emails.iter().map(|email| {
        send(
            app.admin(Method::POST, USERS)
                .json(&create_body(email, json!({}))),
        )
    }))
    .await;
    let created: Vec<&Value> = responses
        .iter()
        .filter(|r| r.0 == 201)
        .map(|r| &r.1)
        .collect();
    assert_eq!(created.len(), 1, "{responses:?}");
    for (status, body) in responses.iter().filter(|r| r.0 != 201) {
        assert_eq!(*status, 400, "{body}");
        assert_eq!(body, &json!({"email": [EMAIL_TAKEN]}));
    }
    let claims: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE lower(email) = 'race@example.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(claims, 1);
    assert_eq!(list_count(&app).await, 2);
}

// ---------------------------------------------------------------------------------------
// Retrieve
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn retrieve_returns_the_user_with_its_last_event_sequence_as_etag() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user("jane@example.com", json!({"organisation_id": 3}))
        .await;
    let path = user_path(id_of(&user));

    let response = app.admin(Method::GET, &path).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, ETAG), Some("\"1\"".to_owned()));
    let (_, body) = status_json(response).await;
    assert_eq!(body, user);
    assert_user_object(&body);

    let (status, _) = send(
        app.admin(Method::PATCH, &path)
            .json(&json!({"first_name": "Janet", "last_name": "Doe"})),
    )
    .await;
    assert_eq!(status, 200);
    let response = app.admin(Method::GET, &path).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, ETAG),
        Some(expected_etag(&app, id_of(&user)).await)
    );
    assert_eq!(header(&response, ETAG), Some("\"3\"".to_owned()));
}

#[tokio::test]
async fn a_missing_non_integer_zero_or_negative_id_is_404_on_every_method() {
    let app = TestApp::spawn().await;
    let body = json!({"email": "x@example.com", "first_name": "A", "last_name": "B"});
    for id in [
        "9999",
        "abc",
        "0",
        "-1",
        "1.0",
        "1e3",
        "99999999999999999999",
        "%20",
    ] {
        let path = format!("{USERS}/{id}");
        for method in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
            let mut request = app.admin(method.clone(), &path);
            if matches!(method, Method::PUT | Method::PATCH) {
                request = request.json(&body);
            }
            let (status, response) = send(request).await;
            assert_eq!(status, 404, "{method} {path}: {response}");
            assert_eq!(response["detail"], NOT_FOUND, "{method} {path}");
        }
    }
    assert_eq!(total_events(&app).await, 1);
}

// ---------------------------------------------------------------------------------------
// PUT
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn put_requires_email_and_names_and_reports_every_invalid_field() {
    let app = TestApp::spawn().await;
    let user = app.create_user("jane@example.com", json!({})).await;
    let path = user_path(id_of(&user));
    let valid = json!({"email": "jane@example.com", "first_name": "Jane", "last_name": "Doe"});
    let with = |extra: Value| {
        let mut body = valid.clone();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };

    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "empty body",
            json!({}),
            json!({"email": [REQUIRED], "first_name": [REQUIRED], "last_name": [REQUIRED]}),
        ),
        (
            "only optional fields",
            json!({"organisation_id": 3, "is_admin": true}),
            json!({"email": [REQUIRED], "first_name": [REQUIRED], "last_name": [REQUIRED]}),
        ),
        (
            "missing email",
            without(valid.clone(), "email"),
            json!({"email": [REQUIRED]}),
        ),
        (
            "missing first_name",
            without(valid.clone(), "first_name"),
            json!({"first_name": [REQUIRED]}),
        ),
        (
            "missing last_name",
            without(valid.clone(), "last_name"),
            json!({"last_name": [REQUIRED]}),
        ),
        (
            "invalid values",
            json!({"email": "bad", "first_name": " ", "last_name": "x".repeat(151)}),
            json!({"email": [INVALID_EMAIL], "first_name": [BLANK], "last_name": [NAME_TOO_LONG]}),
        ),
        (
            "organisation_id negative",
            with(json!({"organisation_id": -1})),
            json!({"organisation_id": [NOT_POSITIVE]}),
        ),
        (
            "organisation_id text",
            with(json!({"organisation_id": "abc"})),
            json!({"organisation_id": [INVALID_INTEGER]}),
        ),
        (
            "is_admin not a boolean",
            with(json!({"is_admin": "maybe"})),
            json!({"is_admin": [INVALID_BOOLEAN]}),
        ),
        (
            "is_active null",
            with(json!({"is_active": null})),
            json!({"is_active": [NOT_NULL]}),
        ),
        (
            "user_types a string",
            with(json!({"user_types": "admin"})),
            json!({"user_types": ["Expected a list of items but got type \"str\"."]}),
        ),
        (
            "email taken",
            with(json!({"email": "Root@Example.com"})),
            json!({"email": [EMAIL_TAKEN]}),
        ),
    ];
    for (case, body, expected) in cases {
        let (status, errors) = send(app.admin(Method::PUT, &path).json(&body)).await;
        assert_eq!(status, 400, "{case}: {errors}");
        assert_eq!(errors, expected, "{case}");
    }

    let (status, errors) = send(
        app.admin(Method::PUT, &path)
            .json(&with(json!({"user_types": ["viewer", "ghost"]}))),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(errors.as_object().unwrap().len(), 1, "{errors}");
    let messages = errors["user_types"].to_string();
    assert!(
        messages.contains("ghost") && !messages.contains("viewer"),
        "{messages}"
    );

    assert_eq!(event_types(&app, id_of(&user)).await, ["Created"]);
    let (_, unchanged) = send(app.admin(Method::GET, &path)).await;
    assert_eq!(unchanged, user);
}

#[tokio::test]
async fn put_changes_given_fields_leaves_omitted_optional_fields_and_replaces_groups() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user(
            "jane@example.com",
            json!({"organisation_id": 7, "user_types": ["viewer"]}),
        )
        .await;
    let id = id_of(&user);
    let path = user_path(id);
    let (status, _) = send(
        app.admin(Method::PATCH, &path)
            .json(&json!({"is_admin": true})),
    )
    .await;
    assert_eq!(status, 200);

    // Only the required fields: the optional ones stay as they were.
    let response = app
        .admin(Method::PUT, &path)
        .json(&json!({"email": "jane@example.com", "first_name": "Janet", "last_name": "Doe", "password": "ignored-pass"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let etag = header(&response, ETAG);
    let (_, body) = status_json(response).await;
    assert_user_object(&body);
    assert_eq!(body["first_name"], "Janet");
    assert_eq!(body["last_name"], "Doe");
    assert_eq!(body["organisation_id"], 7);
    assert_eq!(body["is_admin"], true);
    assert_eq!(body["is_active"], true);
    assert_eq!(body["groups"], json!([viewer_group()]));
    assert_eq!(etag, Some(expected_etag(&app, id).await));
    app.login("jane@example.com", PASSWORD).await;

    // Every optional field given: user_types replaces the groups.
    let (status, body) = send(app.admin(Method::PUT, &path).json(&json!({
        "email": "jane@example.com", "first_name": "Janet", "last_name": "Doe",
        "organisation_id": null, "is_admin": false, "user_types": ["admin"],
    })))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["organisation_id"], Value::Null);
    assert_eq!(body["is_admin"], false);
    assert_eq!(body["groups"], json!([admin_group()]));

    let (status, body) = send(app.admin(Method::PUT, &path).json(&json!({
        "email": "jane@example.com", "first_name": "Janet", "last_name": "Doe",
        "organisation_id": 9, "user_types": [],
    })))
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["organisation_id"], 9);
    assert_eq!(body["groups"], json!([]));
    let (_, fetched) = send(app.admin(Method::GET, &path)).await;
    assert_eq!(fetched, body);

    assert_eq!(
        event_types(&app, id).await,
        [
            "Created",
            "AdminGranted",
            "FirstNameChanged",
            "LastNameChanged",
            "OrganisationChanged",
            "AdminRevoked",
            "GroupsChanged",
            "OrganisationChanged",
            "GroupsChanged",
        ]
    );
}

#[tokio::test]
async fn put_with_a_changed_email_rechecks_uniqueness_and_unverifies_the_email() {
    let app = TestApp::spawn().await;
    let a = app.create_user("a@example.com", json!({})).await;
    let b = app.create_user("b@example.com", json!({})).await;
    let b_path = user_path(id_of(&b));
    let names = |email: &str| json!({"email": email, "first_name": "First", "last_name": "Last"});

    // Another user's email, in another case: refused, nothing recorded.
    let (status, errors) = send(
        app.admin(Method::PUT, &b_path)
            .json(&names("A@EXAMPLE.COM")),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(errors, json!({"email": [EMAIL_TAKEN]}));
    assert_eq!(event_types(&app, id_of(&b)).await, ["Created"]);

    // One's own email in another case is not "taken".
    let (status, body) = send(
        app.admin(Method::PUT, &user_path(id_of(&a)))
            .json(&names("A@example.com")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email"], "A@example.com");

    // There is no verification endpoint yet: mark b verified in the read model directly.
    sqlx::query("UPDATE users SET is_email_verified = true WHERE id = $1")
        .bind(id_of(&b))
        .execute(&app.pool)
        .await
        .unwrap();
    // A PUT that keeps the email keeps it verified...
    let (status, body) = send(app.admin(Method::PUT, &b_path).json(&json!({
        "email": "b@example.com", "first_name": "Bee", "last_name": "Last",
    })))
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["is_email_verified"], true);
    // ...a changed email does not.
    let (status, body) = send(
        app.admin(Method::PUT, &b_path)
            .json(&names("b2@example.com")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email"], "b2@example.com");
    assert_eq!(body["is_email_verified"], false);
    let (_, fetched) = send(app.admin(Method::GET, &b_path)).await;
    assert_eq!(fetched["is_email_verified"], false);
    assert_eq!(fetched["email"], "b2@example.com");

    // The old address is free again, the new one is taken.
    let (status, _) = send(
        app.admin(Method::POST, USERS)
            .json(&create_body("b@example.com", json!({}))),
    )
    .await;
    assert_eq!(status, 201);
    let (status, errors) = send(
        app.admin(Method::POST, USERS)
            .json(&create_body("B2@example.com", json!({}))),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(errors, json!({"email": [EMAIL_TAKEN]}));
    app.login("b2@example.com", PASSWORD).await;
}

#[tokio::test]
async fn a_put_that_changes_nothing_records_no_event_and_returns_the_current_object() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user(
            "jane@example.com",
            json!({"organisation_id": 7, "user_types": ["viewer", "admin"]}),
        )
        .await;
    let path = user_path(id_of(&user));
    let response = app
        .admin(Method::PUT, &path)
        .json(&json!({
            "email": "jane@example.com",
            "first_name": "First",
            "last_name": "Last",
            "organisation_id": 7,
            "is_admin": false,
            "is_active": true,
            "user_types": ["admin", "viewer"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, ETAG), Some("\"1\"".to_owned()));
    let (_, body) = status_json(response).await;
    assert_eq!(body, user);
    assert_eq!(event_types(&app, id_of(&user)).await, ["Created"]);
}

// ---------------------------------------------------------------------------------------
// PATCH
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_empty_patch_changes_nothing_records_no_event_and_returns_the_current_object() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user("jane@example.com", json!({"organisation_id": 4}))
        .await;
    let path = user_path(id_of(&user));
    let response = app
        .admin(Method::PATCH, &path)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, ETAG), Some("\"1\"".to_owned()));
    let (_, body) = status_json(response).await;
    assert_eq!(body, user);

    // Same values again: also nothing.
    let (status, body) = send(app.admin(Method::PATCH, &path).json(&json!({
        "first_name": "First", "last_name": "Last", "organisation_id": 4, "is_admin": false, "is_active": true,
    })))
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, user);
    assert_eq!(event_types(&app, id_of(&user)).await, ["Created"]);
}

#[tokio::test]
async fn patch_changes_only_the_given_fields_and_ignores_unknown_ones() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user(
            "jane@example.com",
            json!({"organisation_id": 4, "user_types": ["viewer"]}),
        )
        .await;
    let id = id_of(&user);
    let path = user_path(id);

    let (status, body) = send(
        app.admin(Method::PATCH, &path)
            .json(&json!({"last_name": "Doe"})),
    )
    .await;
    assert_eq!(status, 200);
    let mut expected = user.clone();
    expected["last_name"] = json!("Doe");
    assert_eq!(body, expected);

    let (status, body) = send(app.admin(Method::PATCH, &path).json(&json!({
        "first_name": "Janet",
        "organisation_id": null,
        "is_admin": true,
        "password": "a-brand-new-pass",
        "is_staff": true,
        "is_superuser": true,
        "is_email_verified": true,
        "id": 777,
        "nickname": "JJ",
    })))
    .await;
    assert_eq!(status, 200, "{body}");
    expected["first_name"] = json!("Janet");
    expected["organisation_id"] = Value::Null;
    expected["is_admin"] = json!(true);
    assert_eq!(body, expected);
    let (_, fetched) = send(app.admin(Method::GET, &path)).await;
    assert_eq!(fetched, expected);
    // The password in the body was not applied.
    app.login("jane@example.com", PASSWORD).await;
    assert_eq!(
        event_types(&app, id).await,
        [
            "Created",
            "LastNameChanged",
            "FirstNameChanged",
            "OrganisationChanged",
            "AdminGranted"
        ]
    );
}

#[tokio::test]
async fn patch_is_active_false_deactivates_and_true_reactivates() {
    let app = TestApp::spawn().await;
    let user = app.create_user("jane@example.com", json!({})).await;
    let id = id_of(&user);
    let path = user_path(id);

    let (status, body) = send(
        app.admin(Method::PATCH, &path)
            .json(&json!({"is_active": false})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["is_active"], false);
    let (status, _) = send(
        app.client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"email": "jane@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 401, "a deactivated user cannot log in");

    let (status, body) = send(
        app.admin(Method::PATCH, &path)
            .json(&json!({"is_active": true})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["is_active"], true);
    let token = app.login("jane@example.com", PASSWORD).await;
    let (status, _) = send(app.as_user(&token, Method::GET, &path)).await;
    assert_eq!(status, 200);

    assert_eq!(
        event_types(&app, id).await,
        ["Created", "Deactivated", "Reactivated"]
    );
}

#[tokio::test]
async fn patch_with_a_field_of_the_wrong_type_is_400_under_that_field() {
    let app = TestApp::spawn().await;
    let user = app.create_user("jane@example.com", json!({})).await;
    let path = user_path(id_of(&user));
    let cases: Vec<(Value, Value)> = vec![
        (
            json!({"first_name": []}),
            json!({"first_name": [NOT_A_STRING]}),
        ),
        (
            json!({"first_name": null}),
            json!({"first_name": [NOT_NULL]}),
        ),
        (json!({"first_name": "  "}), json!({"first_name": [BLANK]})),
        (
            json!({"first_name": "x".repeat(151)}),
            json!({"first_name": [NAME_TOO_LONG]}),
        ),
        (
            json!({"last_name": {"a": 1}}),
            json!({"last_name": [NOT_A_STRING]}),
        ),
        (
            json!({"last_name": true}),
            json!({"last_name": [NOT_A_STRING]}),
        ),
        (
            json!({"organisation_id": "abc"}),
            json!({"organisation_id": [INVALID_INTEGER]}),
        ),
        (
            json!({"organisation_id": 1.5}),
            json!({"organisation_id": [INVALID_INTEGER]}),
        ),
        (
            json!({"organisation_id": [1]}),
            json!({"organisation_id": [INVALID_INTEGER]}),
        ),
        (
            json!({"organisation_id": 0}),
            json!({"organisation_id": [NOT_POSITIVE]}),
        ),
        (
            json!({"organisation_id": -5}),
            json!({"organisation_id": [NOT_POSITIVE]}),
        ),
        (
            json!({"is_admin": "maybe"}),
            json!({"is_admin": [INVALID_BOOLEAN]}),
        ),
        (json!({"is_admin": null}), json!({"is_admin": [NOT_NULL]})),
        (
            json!({"is_active": 2}),
            json!({"is_active": [INVALID_BOOLEAN]}),
        ),
        (
            json!({"is_active": []}),
            json!({"is_active": [INVALID_BOOLEAN]}),
        ),
        // One valid field with an invalid one: nothing is applied.
        (
            json!({"last_name": "Doe", "is_admin": "maybe"}),
            json!({"is_admin": [INVALID_BOOLEAN]}),
        ),
    ];
    for (body, expected) in cases {
        let (status, errors) = send(app.admin(Method::PATCH, &path).json(&body)).await;
        assert_eq!(status, 400, "{body}: {errors}");
        assert_eq!(errors, expected, "{body}");
    }
    assert_eq!(event_types(&app, id_of(&user)).await, ["Created"]);
    let (_, unchanged) = send(app.admin(Method::GET, &path)).await;
    assert_eq!(unchanged, user);
}

#[tokio::test]
async fn patch_reports_every_invalid_field_at_once() {
    let app = TestApp::spawn().await;
    let user = app.create_user("jane@example.com", json!({})).await;
    let path = user_path(id_of(&user));
    let (status, errors) = send(app.admin(Method::PATCH, &path).json(&json!({
        "first_name": [],
        "last_name": " ",
        "organisation_id": "abc",
        "is_admin": "maybe",
        "is_active": {},
    })))
    .await;
    assert_eq!(status, 400, "{errors}");
    assert_eq!(
        errors,
        json!({
            "first_name": [NOT_A_STRING],
            "last_name": [BLANK],
            "organisation_id": [INVALID_INTEGER],
            "is_admin": [INVALID_BOOLEAN],
            "is_active": [INVALID_BOOLEAN],
        })
    );
    assert_eq!(event_types(&app, id_of(&user)).await, ["Created"]);
}

// ---------------------------------------------------------------------------------------
// DELETE
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn delete_deactivates_answers_204_and_a_second_delete_records_nothing() {
    let app = TestApp::spawn().await;
    let (user, token) = user_with_token(&app, "jane@example.com").await;
    let id = id_of(&user);
    let path = user_path(id);
    let (status, _) = send(app.as_user(&token, Method::GET, &path)).await;
    assert_eq!(status, 200, "the token works before the delete");

    let response = app.admin(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        response.bytes().await.unwrap().len(),
        0,
        "204 has an empty body"
    );

    let (status, body) = send(app.admin(Method::GET, &path)).await;
    assert_eq!(status, 200);
    let mut expected = user.clone();
    expected["is_active"] = json!(false);
    assert_eq!(body, expected, "only is_active changes; nothing is erased");
    assert_eq!(event_types(&app, id).await, ["Created", "Deactivated"]);

    let response = app.admin(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(response.bytes().await.unwrap().len(), 0);
    assert_eq!(event_types(&app, id).await, ["Created", "Deactivated"]);

    // The user can no longer log in, and the token already issued is refused.
    let (status, body) = send(
        app.client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"email": "jane@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        body["detail"],
        "No active account found with the given credentials"
    );
    let response = app
        .as_user(&token, Method::GET, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(header(&response, WWW_AUTHENTICATE).is_some_and(|h| h.starts_with("Bearer")));
    let (status, _) = send(app.as_user(&token, Method::GET, USERS)).await;
    assert_eq!(status, 401);
}

// ---------------------------------------------------------------------------------------
// If-Match
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_write_with_a_matching_if_match_is_applied() {
    let app = TestApp::spawn().await;
    let user = app.create_user("jane@example.com", json!({})).await;
    let id = id_of(&user);
    let path = user_path(id);

    let response = app
        .admin(Method::PATCH, &path)
        .header(IF_MATCH, "\"1\"")
        .json(&json!({"first_name": "Janet"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let etag = header(&response, ETAG).unwrap();
    assert_eq!(etag, "\"2\"");

    let (status, body) =
        send(app.admin(Method::PUT, &path).header(IF_MATCH, &etag).json(
            &json!({"email": "jane@example.com", "first_name": "Janet", "last_name": "Doe"}),
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["last_name"], "Doe");

    let response = app
        .admin(Method::DELETE, &path)
        .header(IF_MATCH, "\"3\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        event_types(&app, id).await,
        [
            "Created",
            "FirstNameChanged",
            "LastNameChanged",
            "Deactivated"
        ]
    );
}

#[tokio::test]
async fn a_write_with_a_stale_if_match_is_412_and_records_nothing() {
    let app = TestApp::spawn().await;
    let user = app.create_user("jane@example.com", json!({})).await;
    let id = id_of(&user);
    let path = user_path(id);
    let (status, _) = send(
        app.admin(Method::PATCH, &path)
            .json(&json!({"first_name": "Janet"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, current) = send(app.admin(Method::GET, &path)).await;

    for stale in ["\"1\"", "\"7\"", "\"abc\""] {
        let requests = [
            app.admin(Method::PATCH, &path)
                .json(&json!({"last_name": "Doe"})),
            app.admin(Method::PUT, &path).json(
                &json!({"email": "jane@example.com", "first_name": "Jan", "last_name": "Doe"}),
            ),
            app.admin(Method::DELETE, &path),
        ];
        for request in requests {
            let (status, body) = send(request.header(IF_MATCH, stale)).await;
            assert_eq!(status, 412, "If-Match {stale}: {body}");
            assert!(body["detail"].is_string(), "{body}");
        }
    }
    assert_eq!(event_types(&app, id).await, ["Created", "FirstNameChanged"]);
    let (_, after) = send(app.admin(Method::GET, &path)).await;
    assert_eq!(after, current);
}

// ---------------------------------------------------------------------------------------
// Paths, bodies, headers
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn every_users_path_accepts_a_trailing_slash_without_a_redirect() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let token = &app.superuser_token;

    let (status, created) = send(
        client
            .post(app.url(&format!("{USERS}/")))
            .bearer_auth(token)
            .json(&create_body("slash@example.com", json!({}))),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let item = format!("{}/", user_path(id_of(&created)));

    let (status, page) = send(client.get(app.url(&format!("{USERS}/"))).bearer_auth(token)).await;
    assert_eq!(status, 200);
    assert_eq!(page["count"], 2);
    let (status, body) = send(client.get(app.url(&item)).bearer_auth(token)).await;
    assert_eq!(status, 200);
    assert_eq!(body, created);
    let (status, body) =
        send(client.put(app.url(&item)).bearer_auth(token).json(
            &json!({"email": "slash@example.com", "first_name": "Put", "last_name": "Last"}),
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["first_name"], "Put");
    let (status, body) = send(
        client
            .patch(app.url(&item))
            .bearer_auth(token)
            .json(&json!({"last_name": "Patched"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["last_name"], "Patched");
    let response = client
        .delete(app.url(&item))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        event_types(&app, id_of(&created)).await,
        [
            "Created",
            "FirstNameChanged",
            "LastNameChanged",
            "Deactivated"
        ]
    );
}

#[tokio::test]
async fn a_write_with_a_non_json_content_type_is_415() {
    let app = TestApp::spawn().await;
    let user = app.create_user("jane@example.com", json!({})).await;
    let path = user_path(id_of(&user));
    let create = create_body("new@example.com", json!({})).to_string();
    let put = json!({"email": "jane@example.com", "first_name": "A", "last_name": "B"}).to_string();
    let patch = json!({"first_name": "A"}).to_string();

    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/xml"),
        None,
    ] {
        for (method, target, body) in [
            (Method::POST, USERS, &create),
            (Method::PUT, path.as_str(), &put),
            (Method::PATCH, path.as_str(), &patch),
        ] {
            let mut request = app.admin(method.clone(), target).body(body.clone());
            if let Some(content_type) = content_type {
                request = request.header(CONTENT_TYPE, content_type);
            }
            let (status, response) = send(request).await;
            assert_eq!(
                status, 415,
                "{method} {target} as {content_type:?}: {response}"
            );
            assert!(response["detail"].is_string(), "{response}");
        }
    }
    assert_eq!(total_events(&app).await, 2, "nothing recorded");

    // A JSON content type with parameters is JSON.
    let (status, body) = send(
        app.admin(Method::PATCH, &path)
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(patch.clone()),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["first_name"], "A");
}

/// A PATCH body of exactly `total` bytes that sets the first name.
fn padded_patch(total: usize) -> String {
    let skeleton = r#"{"first_name":"Padded","pad":""}"#;
    let body = format!(
        r#"{{"first_name":"Padded","pad":"{}"}}"#,
        "x".repeat(total - skeleton.len())
    );
    assert_eq!(body.len(), total);
    body
}

#[tokio::test]
async fn a_body_over_64_kib_is_413_and_one_of_exactly_64_kib_is_accepted() {
    let app = TestApp::spawn().await;
    let user = app.create_user("jane@example.com", json!({})).await;
    let path = user_path(id_of(&user));

    for (method, target) in [
        (Method::POST, USERS),
        (Method::PUT, path.as_str()),
        (Method::PATCH, path.as_str()),
    ] {
        let (status, body) = send(
            app.admin(method.clone(), target)
                .header(CONTENT_TYPE, "application/json")
                .body(padded_patch(64 * 1024 + 1)),
        )
        .await;
        assert_eq!(status, 413, "{method} {target}: {body}");
        assert!(body["detail"].is_string(), "{body}");
    }
    let (status, body) = send(
        app.admin(Method::POST, "/api/v1/auth/login")
            .header(CONTENT_TYPE, "application/json")
            .body(padded_patch(200 * 1024)),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(event_types(&app, id_of(&user)).await, ["Created"]);

    let (status, body) = send(
        app.admin(Method::PATCH, &path)
            .header(CONTENT_TYPE, "application/json")
            .body(padded_patch(64 * 1024)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["first_name"], "Padded");
}

#[tokio::test]
async fn malformed_json_is_400_with_a_parse_error_detail() {
    let app = TestApp::spawn().await;
    let user = app.create_user("jane@example.com", json!({})).await;
    let path = user_path(id_of(&user));
    for raw in [
        "{",
        "{\"first_name\": }",
        "not json",
        "{'first_name': 'x'}",
        "{\"a\": 1} trailing",
        "\u{1}",
    ] {
        for (method, target) in [
            (Method::POST, USERS),
            (Method::PUT, path.as_str()),
            (Method::PATCH, path.as_str()),
        ] {
            let (status, body) = send(
                app.admin(method.clone(), target)
                    .header(CONTENT_TYPE, "application/json")
                    .body(raw),
            )
            .await;
            assert_eq!(status, 400, "{method} {raw:?}: {body}");
            let detail = body["detail"]
                .as_str()
                .unwrap_or_else(|| panic!("no detail: {body}"));
            assert!(detail.starts_with("JSON parse error - "), "{detail}");
        }
    }
    assert_eq!(total_events(&app).await, 2);
}

#[tokio::test]
async fn a_json_body_that_is_not_an_object_is_400() {
    let app = TestApp::spawn().await;
    let user = app.create_user("jane@example.com", json!({})).await;
    let path = user_path(id_of(&user));
    for (raw, type_name) in [
        ("[1, 2]", "list"),
        ("\"text\"", "str"),
        ("42", "int"),
        ("4.5", "float"),
        ("true", "bool"),
        ("null", "NoneType"),
    ] {
        for (method, target) in [
            (Method::POST, USERS),
            (Method::PUT, path.as_str()),
            (Method::PATCH, path.as_str()),
        ] {
            let (status, body) = send(
                app.admin(method.clone(), target)
                    .header(CONTENT_TYPE, "application/json")
                    .body(raw),
            )
            .await;
            assert_eq!(status, 400, "{method} {raw}: {body}");
            assert_eq!(
                body,
                json!({"non_field_errors": [format!("Invalid data. Expected a dictionary, but got {type_name}.")]}),
                "{method} {raw}"
            );
        }
    }
    assert_eq!(total_events(&app).await, 2);
}

#[tokio::test]
async fn a_request_without_a_valid_access_token_is_401_with_www_authenticate_bearer() {
    let app = TestApp::spawn().await;
    let user = app.create_user("jane@example.com", json!({})).await;
    let path = user_path(id_of(&user));
    let refresh: Value = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": SUPERUSER_EMAIL, "password": SUPERUSER_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = refresh["tokens"]["refresh"].as_str().unwrap().to_owned();
    let ttl = Duration::from_secs(900);
    let other_key = TokenKeys::new(b"some-other-secret-0123456789abcdef", ttl, ttl)
        .issue(app.superuser_id, TokenType::Access)
        .unwrap();
    let our_key = TokenKeys::new(JWT_SECRET.as_bytes(), ttl, ttl);
    let no_such_user = our_key.issue(424_242, TokenType::Access).unwrap();
    // Control: a token minted with the configured key for a real user is accepted.
    let (status, _) = send(app.as_user(
        &our_key.issue(app.superuser_id, TokenType::Access).unwrap(),
        Method::GET,
        USERS,
    ))
    .await;
    assert_eq!(status, 200);

    let authorizations: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("scheme only", Some("Bearer".to_owned())),
        (
            "two tokens",
            Some(format!(
                "Bearer {} {}",
                app.superuser_token, app.superuser_token
            )),
        ),
        ("basic scheme", Some("Basic cm9vdDpyb290".to_owned())),
        ("token without scheme", Some(app.superuser_token.clone())),
        ("garbage token", Some("Bearer not.a.jwt".to_owned())),
        ("empty value", Some(String::new())),
        (
            "token signed with another key",
            Some(format!("Bearer {other_key}")),
        ),
        (
            "refresh token as access token",
            Some(format!("Bearer {refresh}")),
        ),
        ("token of no user", Some(format!("Bearer {no_such_user}"))),
    ];
    let put = json!({"email": "jane@example.com", "first_name": "Hacked", "last_name": "Hacked"});
    for (case, authorization) in &authorizations {
        for (method, target, body) in [
            (Method::GET, USERS, None),
            (
                Method::POST,
                USERS,
                Some(create_body("intruder@example.com", json!({}))),
            ),
            (Method::GET, path.as_str(), None),
            (Method::PUT, path.as_str(), Some(put.clone())),
            (
                Method::PATCH,
                path.as_str(),
                Some(json!({"first_name": "Hacked"})),
            ),
            (Method::DELETE, path.as_str(), None),
        ] {
            let mut request = app.client.request(method.clone(), app.url(target));
            if let Some(authorization) = authorization {
                request = request.header("authorization", authorization);
            }
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            let www = header(&response, WWW_AUTHENTICATE);
            let (status, body) = status_json(response).await;
            assert_eq!(status, 401, "{case}: {method} {target}: {body}");
            assert!(
                www.as_deref().is_some_and(|h| h.starts_with("Bearer")),
                "{case}: {method} {target}: WWW-Authenticate {www:?}"
            );
            assert!(body["detail"].is_string(), "{case}: {body}");
            if *case == "no header" {
                assert_eq!(
                    body["detail"],
                    "Authentication credentials were not provided."
                );
            }
        }
    }
    assert_eq!(total_events(&app).await, 2, "nothing recorded");
    let (_, unchanged) = send(app.admin(Method::GET, &path)).await;
    assert_eq!(unchanged, user);
}

#[tokio::test]
async fn x_request_id_is_echoed_when_valid_and_a_new_uuid_otherwise() {
    let app = TestApp::spawn().await;
    let valid = "req-123_abc.DEF:9";
    let requests = || {
        [
            app.admin(Method::GET, USERS),
            app.admin(Method::GET, "/api/v1/users/9999"),
            app.client.get(app.url(USERS)),
            app.client.get(app.url("/no/such/route")),
            app.client.get(app.url("/healthz")),
            app.admin(Method::POST, USERS).json(&json!({})),
        ]
    };
    for request in requests() {
        let response = request.header("x-request-id", valid).send().await.unwrap();
        assert_eq!(
            header(&response, "x-request-id").as_deref(),
            Some(valid),
            "{}",
            response.url()
        );
    }
    let long = "a".repeat(129);
    for invalid in ["has space", "slash/y", long.as_str(), "", "semi;colon"] {
        for request in requests() {
            let response = request
                .header("x-request-id", invalid)
                .send()
                .await
                .unwrap();
            let id = header(&response, "x-request-id").expect("a request id");
            assert!(
                uuid::Uuid::parse_str(&id).is_ok(),
                "{invalid:?} replaced by {id:?}"
            );
        }
    }
    let mut seen = BTreeSet::new();
    for request in requests() {
        let response = request.send().await.unwrap();
        let id = header(&response, "x-request-id").expect("a request id");
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        assert!(seen.insert(id), "ids must differ per request");
    }
}

#[tokio::test]
async fn an_unknown_route_is_a_json_404() {
    let app = TestApp::spawn().await;
    for path in [
        "/api/v1/nope",
        "/api/v1/users/1/extra",
        "/api/v2/users",
        "/",
        "/api/v1/userz",
    ] {
        for request in [app.admin(Method::GET, path), app.client.get(app.url(path))] {
            let response = request.send().await.unwrap();
            let content_type = header(&response, CONTENT_TYPE).unwrap_or_default();
            let (status, body) = status_json(response).await;
            assert_eq!(status, 404, "{path}");
            assert!(
                content_type.starts_with("application/json"),
                "{path}: {content_type}"
            );
            assert_eq!(body["detail"], NOT_FOUND, "{path}");
        }
    }
}

#[tokio::test]
async fn a_wrong_method_is_405() {
    let app = TestApp::spawn().await;
    for (method, path) in [
        (Method::DELETE, USERS),
        (Method::PATCH, USERS),
        (Method::PUT, "/api/v1/users/"),
        (Method::POST, "/api/v1/users/1"),
        (Method::POST, "/api/v1/users/1/"),
        (Method::GET, "/api/v1/auth/login"),
        (Method::DELETE, "/api/v1/auth/refresh/"),
        (Method::POST, "/healthz"),
    ] {
        let response = app
            .admin(method.clone(), path)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let content_type = header(&response, CONTENT_TYPE).unwrap_or_default();
        let (status, body) = status_json(response).await;
        assert_eq!(status, 405, "{method} {path}: {body}");
        assert!(
            content_type.starts_with("application/json"),
            "{method} {path}"
        );
        assert!(body["detail"].is_string(), "{method} {path}: {body}");
    }
    assert_eq!(total_events(&app).await, 1);
}

// ---------------------------------------------------------------------------------------
// Read-your-writes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn every_successful_write_is_visible_to_an_immediate_get_on_a_new_connection() {
    let app = TestApp::spawn().await;
    let token = app.superuser_token.clone();
    for round in 0..3 {
        let email = format!("ryw{round}@example.com");
        let (status, created) = send(
            app.admin(Method::POST, USERS)
                .json(&create_body(&email, json!({"user_types": ["viewer"]}))),
        )
        .await;
        assert_eq!(status, 201);
        let path = user_path(id_of(&created));
        assert_eq!(
            fresh_get(&app, &token, &path).await,
            (200, created.clone()),
            "after create"
        );
        let (_, page) = fresh_get(&app, &token, &format!("{USERS}?page_size=1000")).await;
        assert!(
            page["results"].as_array().unwrap().contains(&created),
            "list after create"
        );

        let (status, put) = send(app.admin(Method::PUT, &path).json(&json!({
            "email": format!("ryw{round}-put@example.com"), "first_name": "Put", "last_name": "Name",
            "organisation_id": round + 1, "user_types": ["admin"],
        })))
        .await;
        assert_eq!(status, 200);
        assert_eq!(put["groups"], json!([admin_group()]));
        assert_eq!(
            fresh_get(&app, &token, &path).await,
            (200, put),
            "after PUT"
        );

        let (status, patched) = send(
            app.admin(Method::PATCH, &path)
                .json(&json!({"last_name": "Patched", "is_admin": true})),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(patched["last_name"], "Patched");
        assert_eq!(
            fresh_get(&app, &token, &path).await,
            (200, patched.clone()),
            "after PATCH"
        );

        let response = app.admin(Method::DELETE, &path).send().await.unwrap();
        assert_eq!(response.status(), 204);
        let mut deleted = patched;
        deleted["is_active"] = json!(false);
        assert_eq!(
            fresh_get(&app, &token, &path).await,
            (200, deleted),
            "after DELETE"
        );
    }
}

/// PostgreSQL text cannot hold NUL: such input is a clear 4xx, never a 500.
#[tokio::test]
async fn null_characters_are_refused_with_4xx_never_500() {
    let app = TestApp::spawn().await;
    let (status, body) = status_json(
        app.admin(Method::POST, "/api/v1/users")
            .json(
                &json!({"email": "nul@example.com", "password": "password-123",
                          "first_name": "Ja\u{0}ne", "last_name": "Doe",
                          "user_types": ["vie\u{0}wer"]}),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["first_name"],
        json!(["Null characters are not allowed."])
    );
    assert!(
        body["user_types"].to_string().contains("does not exist"),
        "{body}"
    );

    let (status, _) = status_json(
        app.client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"email": "nul\u{0}@example.com", "password": "password-123"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
}
