//! `/api/v1/auth/login`, `/api/v1/auth/refresh` and the operations endpoints over real HTTP,
//! against the API contract §3 "Authentication" and "Operations".

use std::collections::BTreeSet;
use std::time::Duration;

use api::auth::{TokenKeys, TokenType};
use reqwest::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, Response};
use serde_json::{json, Value};
use tests::{status_json, TestApp, JWT_SECRET, SUPERUSER_EMAIL, SUPERUSER_PASSWORD};

const LOGIN: &str = "/api/v1/auth/login";
const REFRESH: &str = "/api/v1/auth/refresh";
const PASSWORD: &str = "password-123";
const NO_ACCOUNT: &str = "No active account found with the given credentials";
const REQUIRED: &str = "This field is required.";
const NOT_NULL: &str = "This field may not be null.";
const BLANK: &str = "This field may not be blank.";

/// Access and refresh lifetimes the harness configures.
const ACCESS_TTL: i64 = 900;
const REFRESH_TTL: i64 = 86_400;

async fn post(app: &TestApp, path: &str, body: Value) -> Response {
    app.client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// (status, `WWW-Authenticate`, body) of a response.
async fn answer(response: Response) -> (u16, Option<String>, Value) {
    let www = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|value| value.to_str().unwrap().to_owned());
    let (status, body) = status_json(response).await;
    (status, www, body)
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// Decodes unpadded base64url, as JWT segments are written.
fn base64url(input: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in input.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            other => panic!("not base64url: {:?}", other as char),
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

/// The claims of a JWT (not verified: the server does that).
fn claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {token}");
    serde_json::from_slice(&base64url(parts[1])).expect("JSON claims")
}

fn assert_claims(token: &str, user_id: i64, token_type: &str, ttl: i64) {
    let claims = claims(token);
    let sub = match &claims["sub"] {
        Value::String(sub) => sub.clone(),
        other => other.to_string(),
    };
    assert_eq!(sub, user_id.to_string(), "{claims}");
    assert_eq!(claims["token_type"], token_type, "{claims}");
    let (iat, exp) = (claims["iat"].as_i64(), claims["exp"].as_i64());
    assert_eq!(exp.zip(iat).map(|(e, i)| e - i), Some(ttl), "{claims}");
}

/// Logs in; panics unless `200`. Returns (access, refresh).
async fn tokens(app: &TestApp, email: &str, password: &str) -> (String, String) {
    let (status, body) =
        status_json(post(app, LOGIN, json!({"email": email, "password": password})).await).await;
    assert_eq!(status, 200, "login of {email}: {body}");
    (
        body["tokens"]["access"].as_str().unwrap().to_owned(),
        body["tokens"]["refresh"].as_str().unwrap().to_owned(),
    )
}

// ---------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn login_returns_access_and_refresh_tokens_and_the_email() {
    let app = TestApp::spawn().await;
    let user = app.create_user("jane@broker.example", json!({})).await;
    let id = user["id"].as_i64().unwrap();

    let (status, body) = status_json(
        post(
            &app,
            LOGIN,
            json!({"email": "jane@broker.example", "password": PASSWORD}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(&body), BTreeSet::from(["tokens", "email"]));
    assert_eq!(keys(&body["tokens"]), BTreeSet::from(["access", "refresh"]));
    assert_eq!(body["email"], "jane@broker.example");
    let access = body["tokens"]["access"].as_str().unwrap();
    let refresh = body["tokens"]["refresh"].as_str().unwrap();
    assert_claims(access, id, "access", ACCESS_TTL);
    assert_claims(refresh, id, "refresh", REFRESH_TTL);
    assert!(!body.to_string().contains(PASSWORD));

    // The access token authenticates; the refresh token does not.
    let (status, me) = status_json(
        app.as_user(access, Method::GET, &format!("/api/v1/users/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(me, user);
    let (status, www, _) = answer(
        app.as_user(refresh, Method::GET, &format!("/api/v1/users/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(www.is_some_and(|h| h.starts_with("Bearer")));

    // Every login issues fresh tokens.
    let (again, _) = tokens(&app, "jane@broker.example", PASSWORD).await;
    assert_ne!(again, access);

    // The trailing-slash path is the same endpoint.
    let (status, body) = status_json(
        post(
            &app,
            &format!("{LOGIN}/"),
            json!({"email": "jane@broker.example", "password": PASSWORD}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["tokens"]["access"].is_string());
}

#[tokio::test]
async fn login_ignores_the_case_of_the_email() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Jane.Doe@Broker.Example", json!({})).await;
    let id = user["id"].as_i64().unwrap();
    for email in [
        "jane.doe@broker.example",
        "JANE.DOE@BROKER.EXAMPLE",
        "Jane.Doe@Broker.Example",
        "jAnE.dOe@bRoKeR.eXaMpLe",
    ] {
        let (status, body) =
            status_json(post(&app, LOGIN, json!({"email": email, "password": PASSWORD})).await)
                .await;
        assert_eq!(status, 200, "{email}: {body}");
        assert!(
            body["email"].as_str().unwrap().eq_ignore_ascii_case(email),
            "{body}"
        );
        assert_claims(
            body["tokens"]["access"].as_str().unwrap(),
            id,
            "access",
            ACCESS_TTL,
        );
    }
}

#[tokio::test]
async fn wrong_email_wrong_password_and_inactive_user_get_the_same_401() {
    let app = TestApp::spawn().await;
    let active = app.create_user("active@example.com", json!({})).await;
    let inactive = app.create_user("inactive@example.com", json!({})).await;
    let response = app
        .admin(Method::DELETE, &format!("/api/v1/users/{}", inactive["id"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(active["is_active"], true);

    let attempts = [
        (
            "unknown email",
            json!({"email": "nobody@example.com", "password": PASSWORD}),
        ),
        (
            "wrong password",
            json!({"email": "active@example.com", "password": "wrong-password"}),
        ),
        (
            "password in another case",
            json!({"email": "active@example.com", "password": PASSWORD.to_uppercase()}),
        ),
        (
            "password with a space",
            json!({"email": "active@example.com", "password": format!("{PASSWORD} ")}),
        ),
        (
            "inactive user, right password",
            json!({"email": "inactive@example.com", "password": PASSWORD}),
        ),
        (
            "superuser, wrong password",
            json!({"email": SUPERUSER_EMAIL, "password": PASSWORD}),
        ),
    ];
    let mut bodies = Vec::new();
    for (case, body) in attempts {
        let (status, www, body) = answer(post(&app, LOGIN, body).await).await;
        assert_eq!(status, 401, "{case}: {body}");
        assert_eq!(body["detail"], NO_ACCOUNT, "{case}");
        assert!(www.is_some_and(|h| h.starts_with("Bearer")), "{case}");
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "identical bodies: {bodies:?}"
    );

    // Control: the right password of the active user works.
    tokens(&app, "active@example.com", PASSWORD).await;
}

#[tokio::test]
async fn login_with_missing_or_blank_fields_is_400_per_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            json!({}),
            json!({"email": [REQUIRED], "password": [REQUIRED]}),
        ),
        (
            json!({"email": SUPERUSER_EMAIL}),
            json!({"password": [REQUIRED]}),
        ),
        (
            json!({"password": SUPERUSER_PASSWORD}),
            json!({"email": [REQUIRED]}),
        ),
        (
            json!({"email": "", "password": ""}),
            json!({"email": [BLANK], "password": [BLANK]}),
        ),
        (
            json!({"email": "  ", "password": SUPERUSER_PASSWORD}),
            json!({"email": [BLANK]}),
        ),
        (
            json!({"email": null, "password": SUPERUSER_PASSWORD}),
            json!({"email": [NOT_NULL]}),
        ),
        (
            json!({"email": SUPERUSER_EMAIL, "password": null}),
            json!({"password": [NOT_NULL]}),
        ),
        (
            json!({"username": SUPERUSER_EMAIL, "pass": SUPERUSER_PASSWORD}),
            json!({"email": [REQUIRED], "password": [REQUIRED]}),
        ),
    ];
    for (body, expected) in cases {
        let (status, errors) = status_json(post(&app, LOGIN, body.clone()).await).await;
        assert_eq!(status, 400, "{body}: {errors}");
        assert_eq!(errors, expected, "{body}");
    }

    // Not JSON, or malformed JSON, is refused before any credential check.
    let response = app
        .client
        .post(app.url(LOGIN))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!(
            "email={SUPERUSER_EMAIL}&password={SUPERUSER_PASSWORD}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let (status, body) = status_json(
        app.client
            .post(app.url(LOGIN))
            .header(CONTENT_TYPE, "application/json")
            .body("{\"email\": ")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("JSON parse error - ")),
        "{body}"
    );
}

// ---------------------------------------------------------------------------------------
// Refresh
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn refresh_returns_a_new_access_token_that_works() {
    let app = TestApp::spawn().await;
    let user = app.create_user("jane@example.com", json!({})).await;
    let id = user["id"].as_i64().unwrap();
    let (_, refresh) = tokens(&app, "jane@example.com", PASSWORD).await;

    for path in [REFRESH.to_owned(), format!("{REFRESH}/")] {
        let (status, body) =
            status_json(post(&app, &path, json!({"refresh": refresh})).await).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(keys(&body), BTreeSet::from(["access"]));
        let access = body["access"].as_str().unwrap();
        assert_claims(access, id, "access", ACCESS_TTL);
        let (status, me) = status_json(
            app.as_user(access, Method::GET, &format!("/api/v1/users/{id}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(me, user);
    }
}

#[tokio::test]
async fn refresh_refuses_anything_but_a_valid_refresh_token_with_401() {
    let app = TestApp::spawn().await;
    let (access, refresh) = tokens(&app, SUPERUSER_EMAIL, SUPERUSER_PASSWORD).await;
    let ttl = Duration::from_secs(900);
    let other_key = TokenKeys::new(b"some-other-secret-0123456789abcdef", ttl, ttl)
        .issue(app.superuser_id, TokenType::Refresh)
        .unwrap();
    let no_such_user = TokenKeys::new(JWT_SECRET.as_bytes(), ttl, ttl)
        .issue(424_242, TokenType::Refresh)
        .unwrap();
    // Tamper with the payload of a good refresh token: the signature no longer matches.
    let parts: Vec<&str> = refresh.split('.').collect();
    let tampered = format!("{}.{}x.{}", parts[0], parts[1], parts[2]);

    let cases = [
        ("access token", access.clone()),
        ("garbage", "garbage".to_owned()),
        ("empty", String::new()),
        ("signed with another key", other_key),
        ("refresh token of no user", no_such_user),
        ("tampered", tampered),
        ("refresh with a prefix", format!("Bearer {refresh}")),
    ];
    for (case, token) in cases {
        let (status, www, body) =
            answer(post(&app, REFRESH, json!({"refresh": token})).await).await;
        assert_eq!(status, 401, "{case}: {body}");
        assert!(body["detail"].is_string(), "{case}: {body}");
        assert!(body.get("access").is_none(), "{case}: {body}");
        assert!(www.is_some_and(|h| h.starts_with("Bearer")), "{case}");
    }

    let (status, errors) = status_json(post(&app, REFRESH, json!({})).await).await;
    assert_eq!((status, errors), (400, json!({"refresh": [REQUIRED]})));

    // Control: the genuine refresh token still works after all that.
    let (status, body) = status_json(post(&app, REFRESH, json!({"refresh": refresh})).await).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn refresh_of_a_deactivated_user_is_401() {
    let app = TestApp::spawn().await;
    let user = app.create_user("jane@example.com", json!({})).await;
    let (_, refresh) = tokens(&app, "jane@example.com", PASSWORD).await;
    let (status, _) = status_json(post(&app, REFRESH, json!({"refresh": refresh})).await).await;
    assert_eq!(
        status, 200,
        "the refresh token works while the user is active"
    );

    let response = app
        .admin(Method::DELETE, &format!("/api/v1/users/{}", user["id"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (status, www, body) = answer(post(&app, REFRESH, json!({"refresh": refresh})).await).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.get("access").is_none(), "{body}");
    assert!(www.is_some_and(|h| h.starts_with("Bearer")));
}

// ---------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn healthz_and_readyz_answer_200_without_authentication() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/readyz"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        // A bad token does not matter either.
        let response = app
            .client
            .get(app.url(path))
            .bearer_auth("garbage")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path} with a garbage token");
    }
}

/// Tokens that are expired, unsigned (`alg: none`) or signed with another algorithm are
/// refused with `401`, and nothing is written on their behalf.
#[tokio::test]
async fn abused_tokens_are_refused_with_401_and_write_nothing() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

    let app = TestApp::spawn().await;
    let now = chrono_now();
    let claims = |exp: i64| {
        json!({"sub": app.superuser_id.to_string(), "token_type": "access",
               "iat": now - 1000, "exp": exp, "jti": "x"})
    };
    let key = EncodingKey::from_secret(JWT_SECRET.as_bytes());
    let valid = encode(&Header::new(Algorithm::HS256), &claims(now + 60), &key).unwrap();
    let expired = encode(&Header::new(Algorithm::HS256), &claims(now - 1), &key).unwrap();
    let hs512 = encode(&Header::new(Algorithm::HS512), &claims(now + 60), &key).unwrap();
    let payload = valid.split('.').nth(1).unwrap();
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    let other_key = EncodingKey::from_secret(b"another-secret-another-secret-000");
    let bad_signature = encode(
        &Header::new(Algorithm::HS256),
        &claims(now + 60),
        &other_key,
    )
    .unwrap();
    let mut refresh_claims = claims(now + 60);
    refresh_claims["token_type"] = json!("refresh");
    let refresh_as_access = encode(&Header::new(Algorithm::HS256), &refresh_claims, &key).unwrap();
    let no_type = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": app.superuser_id.to_string(), "exp": now + 60}),
        &key,
    )
    .unwrap();

    let (status, _) = status_json(
        app.as_user(&valid, Method::GET, "/api/v1/users")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "the control token works");
    let events_before = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    for (name, token) in [
        ("expired", &expired),
        ("HS512", &hs512),
        ("alg none", &unsigned),
        ("bad signature", &bad_signature),
        ("refresh as access", &refresh_as_access),
        ("no token_type", &no_type),
    ] {
        let response = app
            .as_user(token, Method::POST, "/api/v1/users")
            .json(
                &json!({"email": "x@example.com", "password": "password-123",
                          "first_name": "X", "last_name": "Y"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{name}");
        assert!(response.headers().contains_key(WWW_AUTHENTICATE), "{name}");
    }
    let events_after = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(events_before, events_after, "nothing was written");
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
