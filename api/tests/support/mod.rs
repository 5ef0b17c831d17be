//! Shared by the tests that run the real `users-service` binary as separate processes: a
//! uniquely named database per test (dropped afterwards, also on failure), the CLI, the
//! server process (its log, its address, readiness, signals) and a small HTTP/1.1 client.
//!
//! The `api` crate has no HTTP client among its dependencies, so requests are written by
//! hand: one request per connection (`Connection: close`), the answer read to the end.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// A stuck CLI command fails its test instead of hanging the run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// From starting `serve` to `/readyz` answering `200` (a debug build, migrations included).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Any single HTTP request of these tests.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub const SUPERUSER_EMAIL: &str = "root@example.com";
pub const SUPERUSER_PASSWORD: &str = "root-password-1";
pub const PASSWORD: &str = "password-123";

/// The server the tests create their databases on: `TEST_DATABASE_URL` without a database
/// name, by default the local PostgreSQL.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
        .trim_end_matches('/')
        .to_owned()
}

/// `host:port` of the server in `server_url()` (port 5432 when it names none).
pub fn server_address() -> String {
    let (_, address, _) = split_url(&server_url());
    if address.contains(':') {
        address
    } else {
        format!("{address}:5432")
    }
}

/// `server_url()` with its `host:port` replaced by `address` (user and options kept).
pub fn server_url_at(address: &str) -> String {
    let (prefix, _, rest) = split_url(&server_url());
    format!("{prefix}{address}{rest}")
}

/// `postgres://user@host:port?x` as (`postgres://user@`, `host:port`, `?x`).
fn split_url(url: &str) -> (String, String, String) {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let after_scheme = &url[scheme_end..];
    let authority_end = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
    let authority = &after_scheme[..authority_end];
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    (
        format!("{}{}", &url[..scheme_end], &authority[..host_start]),
        authority[host_start..].to_owned(),
        after_scheme[authority_end..].to_owned(),
    )
}

/// What one run of the CLI did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn assert_success(&self) {
        assert!(self.success(), "expected success: {self:#?}");
    }

    /// A non-zero exit (not a death by signal).
    pub fn assert_failure(&self) {
        assert!(
            !self.success() && self.code.is_some(),
            "expected a non-zero exit: {self:#?}"
        );
    }

    /// Standard output, then standard error.
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// A unique database name, data folder and JWT secret for one test. The database is
/// dropped (connections forced out) and the folder removed on drop, also when the test
/// fails. The database itself is created by the binary.
pub struct TestDb {
    pub name: String,
    pub data_dir: PathBuf,
    pub jwt_secret: String,
}

impl TestDb {
    pub fn new(kind: &str) -> Self {
        let name = format!("users_{kind}_test_{}", uuid::Uuid::new_v4().simple());
        let data_dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&data_dir).expect("create the data folder");
        let jwt_secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Self {
            name,
            data_dir,
            jwt_secret,
        }
    }

    /// The database's URL on the real server.
    pub fn url(&self) -> String {
        format!("{}/{}", server_url(), self.name)
    }

    /// The binary with `args` on this database, `env` added to a clean environment (no
    /// inherited `USERS_*` variable, no `RUST_LOG`, no colours); `env` may override
    /// `DATABASE_URL`.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_users-service"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("USERS_") {
                command.env_remove(&key);
            }
        }
        command
            .args(args)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .env("DATABASE_URL", self.url())
            .env("USERS_DATA_DIR", &self.data_dir)
            .env("USERS_JWT_SECRET", &self.jwt_secret)
            .envs(env.iter().copied())
            .kill_on_drop(true);
        command
    }

    /// Creates the database, empty (no migration applied).
    pub async fn create_empty(&self) {
        let mut admin = PgConnection::connect(&format!("{}/postgres", server_url()))
            .await
            .expect("PostgreSQL reachable at TEST_DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE {}", self.name))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        admin.close().await.ok();
    }

    /// Runs the CLI to its end, with empty standard input.
    pub async fn cli(&self, args: &[&str]) -> Run {
        self.cli_with(args, None, &[]).await
    }

    /// Runs the CLI to its end, `stdin` (if any) on standard input and `env` added to the
    /// clean environment of [`TestDb::command`].
    pub async fn cli_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
        let mut command = self.command(args, env);
        command
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start users-service");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            pipe.write_all(input.as_bytes())
                .await
                .expect("write to stdin");
            drop(pipe);
        }
        let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("users-service {args:?} did not finish in time"))
            .expect("wait for users-service");
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Creates (and migrates) the database and a superuser through `create-superuser`;
    /// returns the superuser's id.
    pub async fn create_superuser(&self) -> i64 {
        let run = self
            .cli_with(
                &["create-superuser", "--email", SUPERUSER_EMAIL],
                Some(&format!("{SUPERUSER_PASSWORD}\n")),
                &[],
            )
            .await;
        run.assert_success();
        run.stdout
            .rsplit("with id ")
            .next()
            .and_then(|id| id.trim().parse().ok())
            .unwrap_or_else(|| panic!("no id in the output: {run:#?}"))
    }

    /// `users-service projections verify`: the read model against a replay of the log.
    pub async fn verify_projections(&self) {
        let run = self.cli(&["projections", "verify"]).await;
        assert_eq!(
            run.code,
            Some(0),
            "the read model differs from the replayed log: {run:#?}"
        );
    }

    /// Whether the database exists on the server.
    pub async fn exists(&self) -> bool {
        let mut admin = PgConnection::connect(&format!("{}/postgres", server_url()))
            .await
            .expect("PostgreSQL reachable at TEST_DATABASE_URL");
        let found: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&self.name)
                .fetch_one(&mut admin)
                .await
                .expect("query pg_database");
        admin.close().await.ok();
        found
    }

    /// A small pool on the test database (which must exist by then), straight to the
    /// server.
    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&self.url())
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
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
                let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .ok();
                admin.close().await.ok();
                dropped
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Everything a server process wrote (standard output and error), line by line, without
/// colour codes.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
}

impl Log {
    fn lines(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running `users-service serve`, killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Log>,
    /// The number of lines in `log`; closed when the process has closed both pipes.
    lines_seen: watch::Receiver<usize>,
}

impl Server {
    /// Starts `serve` on `db` on a free port (`USERS_BIND=127.0.0.1:0`, the address read
    /// from its log) and waits for `/readyz` to answer `200`. `env` is added (and may
    /// override `DATABASE_URL`).
    pub async fn start(db: &TestDb, env: &[(&str, &str)]) -> Self {
        let server = Self::spawn(db, env).await.unwrap_or_else(|log| {
            panic!("users-service serve did not start:\n{log}");
        });
        server.wait_ready().await;
        server
    }

    /// Starts `serve` and waits for it to log its address; `Err` with its log when it
    /// exits (or stays silent) instead.
    pub async fn spawn(db: &TestDb, env: &[(&str, &str)]) -> Result<Self, String> {
        let mut all_env = vec![
            ("USERS_BIND", "127.0.0.1:0"),
            ("RUST_LOG", "info,sqlx=warn,tower_http=info"),
        ];
        all_env.extend_from_slice(env);
        let mut child = db
            .command(&["serve"], &all_env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start users-service serve");
        let log = Arc::new(Log::default());
        let (count, lines_seen) = watch::channel(0);
        let count = Arc::new(count);
        collect_lines(child.stdout.take().expect("piped stdout"), &log, &count);
        collect_lines(child.stderr.take().expect("piped stderr"), &log, &count);
        drop(count);
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            lines_seen,
        };
        let Some(line) = server
            .wait_for_log(0, "users service listening", STARTUP_TIMEOUT)
            .await
        else {
            return Err(server.log_text());
        };
        let address = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("address="))
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        server.addr = address
            .parse()
            .unwrap_or_else(|_| panic!("not an address: {address:?}"));
        Ok(server)
    }

    /// Polls `/readyz` until it answers `200`; panics after `STARTUP_TIMEOUT`.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(response) = get(self.addr, "/readyz", None).await {
                if response.status == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "/readyz not 200 in {STARTUP_TIMEOUT:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server is running")
    }

    /// The number of log lines so far: a starting point for `wait_for_log`.
    pub fn log_len(&self) -> usize {
        self.log.lines().len()
    }

    pub fn log_text(&self) -> String {
        self.log.lines().join("\n")
    }

    /// The first log line from line `from` on that contains `needle`, waiting for it up to
    /// `timeout`; `None` if it does not come (or the process closed its output first).
    pub async fn wait_for_log(
        &mut self,
        from: usize,
        needle: &str,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found = self
                .log
                .lines()
                .iter()
                .skip(from)
                .find(|line| line.contains(needle))
                .cloned();
            if found.is_some() {
                return found;
            }
            match tokio::time::timeout_at(deadline, self.lines_seen.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the output closed with no such line.
                Ok(Err(_)) | Err(_) => {
                    return self
                        .log
                        .lines()
                        .iter()
                        .skip(from)
                        .find(|line| line.contains(needle))
                        .cloned();
                }
            }
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("query the server process")
            .is_none()
    }

    /// SIGKILL, then its exit status.
    pub async fn kill(&mut self) -> ExitStatus {
        self.child.start_kill().expect("SIGKILL the server");
        self.wait_exit(Duration::from_secs(30)).await
    }

    /// SIGTERM, through `kill(1)` (the crate has no binding to `kill(2)`).
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits for the process to exit; panics after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait for the server"),
            Err(_) => panic!(
                "the server did not exit within {timeout:?}:\n{}",
                self.log_text()
            ),
        }
    }
}

/// Reads `pipe` line by line into `log` until it closes.
fn collect_lines(
    pipe: impl AsyncRead + Unpin + Send + 'static,
    log: &Arc<Log>,
    count: &Arc<watch::Sender<usize>>,
) {
    let log = Arc::clone(log);
    let count = Arc::clone(count);
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = strip_ansi(&line);
            let total = {
                let mut lines = log.lines();
                lines.push(line);
                lines.len()
            };
            count.send_replace(total);
        }
    });
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
    pub text: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// The request line and headers of a request with `Connection: close`.
pub fn request_head(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body_len: Option<usize>,
    extra_headers: &[(&str, &str)],
) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(len) = body_len {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {len}\r\n"
        ));
    }
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// One request on a new connection; an error if it cannot be sent or the whole answer is
/// not read back within `REQUEST_TIMEOUT`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> std::io::Result<Response> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let payload = body.map(Value::to_string).unwrap_or_default();
        let head = request_head(addr, method, path, token, body.map(|_| payload.len()), &[]);
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(payload.as_bytes()).await?;
        read_response(&mut stream).await
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{method} {path}: no answer within {REQUEST_TIMEOUT:?}"),
            ))
        })
}

pub async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> std::io::Result<Response> {
    request(addr, "GET", path, token, None).await
}

/// Reads the rest of the connection and parses the final answer in it.
pub async fn read_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await?;
    parse_response(&bytes)
}

/// The final (non-1xx) answer in `bytes`; an error when it is cut short.
pub fn parse_response(mut bytes: &[u8]) -> std::io::Result<Response> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let cut = |what: &str| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, what.to_owned());
    loop {
        let head_end =
            find(bytes, b"\r\n\r\n").ok_or_else(|| cut("answer without a complete head"))?;
        let head =
            std::str::from_utf8(&bytes[..head_end]).map_err(|_| invalid("head not UTF-8"))?;
        let rest = &bytes[head_end + 4..];
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid("no status line"))?;
        if (100..200).contains(&status) {
            bytes = rest;
            continue;
        }
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            dechunk(rest).ok_or_else(|| cut("chunked body cut short"))?
        } else if let Some(length) = header("content-length") {
            let length: usize = length.parse().map_err(|_| invalid("bad Content-Length"))?;
            if rest.len() < length {
                return Err(cut("body shorter than its Content-Length"));
            }
            rest[..length].to_vec()
        } else {
            rest.to_vec()
        };
        let text = String::from_utf8_lossy(&body).into_owned();
        return Ok(Response {
            status,
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            text,
        });
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A chunked body, `None` if it does not end with its last chunk.
fn dechunk(mut bytes: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find(bytes, b"\r\n")?;
        let size_text = std::str::from_utf8(&bytes[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if bytes.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&bytes[..size]);
        bytes = &bytes[size + 2..];
    }
}

/// Logs in over HTTP and returns the access token.
pub async fn login(addr: SocketAddr, email: &str, password: &str) -> String {
    let response = request(
        addr,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({"email": email, "password": password})),
    )
    .await
    .expect("login request");
    assert_eq!(response.status, 200, "login: {response:?}");
    response.body["tokens"]["access"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

/// A create body with the shared test password.
pub fn new_user(email: &str, first_name: &str, last_name: &str) -> Value {
    json!({
        "email": email,
        "password": PASSWORD,
        "first_name": first_name,
        "last_name": last_name,
    })
}

/// One stored event.
#[derive(Debug, Clone)]
pub struct Event {
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub payload: Value,
    pub metadata: Value,
}

/// Every event, in log order.
pub async fn events(pool: &PgPool) -> Vec<Event> {
    let rows: Vec<(String, i64, String, Value, Value)> = sqlx::query_as(
        "SELECT aggregate_id, sequence, event_type, payload, metadata FROM events
         ORDER BY global_position",
    )
    .fetch_all(pool)
    .await
    .expect("read events");
    rows.into_iter()
        .map(
            |(aggregate_id, sequence, event_type, payload, metadata)| Event {
                aggregate_id,
                sequence,
                event_type,
                payload,
                metadata,
            },
        )
        .collect()
}

/// The events of one user, oldest first.
pub async fn events_of(pool: &PgPool, id: i64) -> Vec<Event> {
    let id = id.to_string();
    events(pool)
        .await
        .into_iter()
        .filter(|event| event.aggregate_id == id)
        .collect()
}
