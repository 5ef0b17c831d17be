//! Test harness: each `TestApp` gets its own freshly migrated PostgreSQL database (dropped
//! afterwards) and the production router bound to a real port on 127.0.0.1.

use std::time::Duration;

use api::auth::{TokenKeys, TokenType};
use api::bootstrap;
use api::commands::{CommandBus, Metadata, Source};
use api::config::LoginThrottle;
use api::{Application, Limits, Settings};
use domain::{
    Argon2Hasher, Email, Name, NewUser, OrganisationId, Password, UserCommand, UserServices,
};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use std::sync::Arc;

pub const SUPERUSER_EMAIL: &str = "root@example.com";
pub const SUPERUSER_PASSWORD: &str = "root-password-1";
pub const JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";

/// The server the tests create their databases on: `TEST_DATABASE_URL` without a database
/// name, by default the local PostgreSQL.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
        .trim_end_matches('/')
        .to_owned()
}

/// A log writer that keeps everything written, for tests that read the service's logs.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything written so far; panics unless it is UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("logs are UTF-8")
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub pool: PgPool,
    pub client: reqwest::Client,
    pub db_name: String,
    pub superuser_id: i64,
    pub superuser_token: String,
    pub commands: CommandBus,
    /// Like `commands`, with a deliberately cheap hasher: for fixtures made in bulk (their
    /// passwords still verify, as a PHC string carries its own parameters).
    pub fixtures: CommandBus,
}

/// A user made directly through the command bus, for fixtures.
#[derive(Debug, Clone, Default)]
pub struct UserSpec {
    pub email: String,
    pub organisation_id: Option<i64>,
    pub is_admin: bool,
    pub is_superuser: bool,
    pub groups: Vec<String>,
    pub deactivated: bool,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with_throttle(LoginThrottle::default()).await
    }

    /// An app with its own limits on failed logins.
    pub async fn spawn_with_throttle(login_throttle: LoginThrottle) -> Self {
        Self::spawn_with(login_throttle, Limits::default(), true).await
    }

    /// An app with its own request and connection limits. Its superuser token is signed
    /// directly (a login could exceed a tiny request timeout).
    pub async fn spawn_with_limits(limits: Limits) -> Self {
        Self::spawn_with(LoginThrottle::default(), limits, false).await
    }

    async fn spawn_with(login_throttle: LoginThrottle, limits: Limits, login: bool) -> Self {
        let db_name = format!("users_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&format!("{}/postgres", server_url()))
            .await
            .expect("PostgreSQL reachable at TEST_DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE {db_name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.ok();
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&format!("{}/{db_name}", server_url()))
            .await
            .expect("connect to test database");
        projections::MIGRATOR.run(&pool).await.expect("migrations");

        let hasher = Argon2Hasher::owasp(2);
        let commands = CommandBus::new(pool.clone(), UserServices::new(Arc::new(hasher)));
        let superuser_id = bootstrap::create_superuser(
            &commands,
            SUPERUSER_EMAIL,
            SUPERUSER_PASSWORD,
            "Root",
            "User",
        )
        .await
        .expect("create superuser");

        let application = Application::build(Settings {
            pool: pool.clone(),
            request_connections: 8,
            bind: "127.0.0.1:0".parse().unwrap(),
            jwt_secret: JWT_SECRET.as_bytes().to_vec(),
            access_token_ttl: Duration::from_secs(900),
            refresh_token_ttl: Duration::from_secs(86_400),
            hash_concurrency: 2,
            login_throttle,
            limits,
        })
        .await
        .expect("bind");
        let base = format!("http://{}", application.local_addr().unwrap());
        tokio::spawn(application.run_until(std::future::pending()));

        let cheap = Argon2Hasher::with_params(8, 1, 1, 2);
        let fixtures = CommandBus::new(pool.clone(), UserServices::new(Arc::new(cheap)));
        let mut app = Self {
            base,
            pool,
            client: reqwest::Client::new(),
            db_name,
            superuser_id,
            superuser_token: String::new(),
            commands,
            fixtures,
        };
        app.superuser_token = if login {
            app.login(SUPERUSER_EMAIL, SUPERUSER_PASSWORD).await
        } else {
            app.token_for(app.superuser_id)
        };
        app
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the superuser's token.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.as_user(&self.superuser_token, method, path)
    }

    pub fn as_user(&self, token: &str, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    /// Logs in and returns the access token; panics unless the login succeeds.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let response = self
            .client
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login request");
        assert_eq!(response.status(), 200, "login of {email}");
        let body: Value = response.json().await.unwrap();
        body["tokens"]["access"].as_str().unwrap().to_owned()
    }

    /// Creates a user as the superuser and returns its JSON; panics unless `201`.
    pub async fn create_user(&self, email: &str, extra: Value) -> Value {
        let mut body = json!({
            "email": email,
            "password": "password-123",
            "first_name": "First",
            "last_name": "Last",
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let response = self
            .admin(Method::POST, "/api/v1/users")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "create {email}");
        response.json().await.unwrap()
    }

    /// Creates a user through the fixture command bus (password `password-123`); returns its id.
    pub async fn insert_user(&self, spec: UserSpec) -> i64 {
        let metadata = Metadata {
            actor_id: None,
            request_id: "fixture".into(),
            source: Source::Cli,
        };
        let user = NewUser {
            email: Email::parse(&spec.email).unwrap(),
            password: Password::parse("password-123").unwrap(),
            first_name: Name::parse("Fixture").unwrap(),
            last_name: Name::parse("User").unwrap(),
            organisation_id: spec
                .organisation_id
                .map(|id| OrganisationId::parse(id).unwrap()),
            groups: spec.groups.into_iter().collect(),
            is_admin: spec.is_admin,
            is_staff: spec.is_superuser,
            is_superuser: spec.is_superuser,
        };
        let id = self.fixtures.next_user_id().await.unwrap();
        self.fixtures
            .execute(id, UserCommand::Create(user), &metadata, None)
            .await
            .unwrap();
        if spec.deactivated {
            self.fixtures
                .execute(id, UserCommand::Deactivate, &metadata, None)
                .await
                .unwrap();
        }
        id
    }

    /// A valid access token for user `id`, as login would issue it.
    pub fn token_for(&self, id: i64) -> String {
        TokenKeys::new(
            JWT_SECRET.as_bytes(),
            Duration::from_secs(900),
            Duration::from_secs(900),
        )
        .issue(id, TokenType::Access)
        .unwrap()
    }

    /// The stored events of one user, oldest first: (sequence, event_type, payload).
    pub async fn events_of(&self, id: i64) -> Vec<(i64, String, Value)> {
        sqlx::query_as(
            "SELECT sequence, event_type, payload FROM events
             WHERE aggregate_type = 'User' AND aggregate_id = $1 ORDER BY sequence",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// A fresh connection, for read-your-writes checks on "any connection".
    pub async fn fresh_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    }
}

/// Reads a response as (status, JSON body or `Null`).
pub async fn status_json(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let db_name = self.db_name.clone();
        // Drop is synchronous: use a throwaway runtime on its own thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&format!("{}/postgres", server_url()))
                    .await
                    .ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: could not drop test database {}", self.db_name);
        }
    }
}
