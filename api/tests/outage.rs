//! A database outage, simulated by a TCP proxy between the real server and PostgreSQL that
//! can be cut (live connections dropped, new ones refused) and restored: requests needing
//! the database answer `503` within the acquire timeout, the process stays up and healthy,
//! and it recovers by itself when the database is back.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{events_of, get, login, request, Response, Server, TestDb};
use support::{SUPERUSER_EMAIL, SUPERUSER_PASSWORD};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

const ACQUIRE_TIMEOUT_SECS: u64 = 2;
/// How much later than the acquire timeout a `503` may come.
const MARGIN: Duration = Duration::from_millis(1500);
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP proxy on a fixed local port forwarding to `target`.
struct Proxy {
    port: u16,
    target: String,
    acceptor: Mutex<Option<JoinHandle<()>>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = listen(0).expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let proxy = Self {
            port,
            target,
            acceptor: Mutex::new(None),
            connections: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let target = self.target.clone();
        let connections = Arc::clone(&self.connections);
        let acceptor = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let forward = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                connections
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(forward);
            }
        });
        *self.acceptor.lock().unwrap_or_else(PoisonError::into_inner) = Some(acceptor);
    }

    /// Closes the listening socket (new connections are refused) and drops every forwarded
    /// connection; returns once all of them are closed.
    async fn cut(&self) {
        let acceptor = self
            .acceptor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(acceptor) = acceptor {
            acceptor.abort();
            let _ = acceptor.await;
        }
        let connections = std::mem::take(
            &mut *self
                .connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for connection in connections {
            connection.abort();
            let _ = connection.await;
        }
        let refused = TcpStream::connect(("127.0.0.1", self.port)).await;
        assert!(
            refused.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
            "the cut proxy must refuse connections"
        );
    }

    /// Listens on the same port again.
    fn restore(&self) {
        self.serve(listen(self.port).expect("listen on the proxy port again"));
    }
}

fn listen(port: u16) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // The port's closed connections may linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(128)
}

/// A request that must answer `503` within the acquire timeout and the margin.
async fn expect_503(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Duration {
    let started = Instant::now();
    let response = request(addr, method, path, token, body)
        .await
        .unwrap_or_else(|error| panic!("{method} {path} during the outage: {error}"));
    let elapsed = started.elapsed();
    assert_eq!(
        response.status, 503,
        "{method} {path} during the outage: {response:?}"
    );
    assert_eq!(response.body["code"], "service_unavailable", "{response:?}");
    assert!(
        elapsed <= Duration::from_secs(ACQUIRE_TIMEOUT_SECS) + MARGIN,
        "{method} {path} took {elapsed:?} to answer 503"
    );
    elapsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_in_bounded_time_and_recovers_without_a_restart() {
    let db = TestDb::new("outage");
    let superuser_id = db.create_superuser().await;
    let proxy = Proxy::start(support::server_address()).await;
    let proxied_url = format!(
        "{}/{}",
        support::server_url_at(&format!("127.0.0.1:{}", proxy.port)),
        db.name
    );
    let acquire_timeout = ACQUIRE_TIMEOUT_SECS.to_string();
    let mut server = Server::start(
        &db,
        &[
            ("DATABASE_URL", &proxied_url),
            ("USERS_DB_ACQUIRE_TIMEOUT_SECS", &acquire_timeout),
        ],
    )
    .await;
    let token = login(server.addr, SUPERUSER_EMAIL, SUPERUSER_PASSWORD).await;
    let user_path = format!("/api/v1/users/{superuser_id}");
    let before = get(server.addr, &user_path, Some(&token))
        .await
        .expect("GET before the outage");
    assert_eq!(before.status, 200, "{before:?}");

    proxy.cut().await;
    let addr = server.addr;
    let t = Some(token.as_str());
    let mut timings: Vec<(String, Duration)> = Vec::new();
    timings.push((
        format!("GET {user_path}"),
        expect_503(addr, "GET", &user_path, t, None).await,
    ));
    timings.push((
        "GET /api/v1/users".into(),
        expect_503(addr, "GET", "/api/v1/users", t, None).await,
    ));
    let patch = json!({"first_name": "DuringOutage"});
    timings.push((
        format!("PATCH {user_path}"),
        expect_503(addr, "PATCH", &user_path, t, Some(&patch)).await,
    ));
    let credentials = json!({"email": SUPERUSER_EMAIL, "password": SUPERUSER_PASSWORD});
    timings.push((
        "POST /api/v1/auth/login".into(),
        expect_503(addr, "POST", "/api/v1/auth/login", None, Some(&credentials)).await,
    ));
    let started = Instant::now();
    let ready = get(addr, "/readyz", None).await.expect("GET /readyz");
    let readyz_time = started.elapsed();
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(
        readyz_time <= Duration::from_secs(ACQUIRE_TIMEOUT_SECS) + MARGIN,
        "/readyz took {readyz_time:?}"
    );
    timings.push(("GET /readyz".into(), readyz_time));
    let healthy = get(addr, "/healthz", None).await.expect("GET /healthz");
    assert_eq!(
        healthy.status, 200,
        "the process itself is fine: {healthy:?}"
    );
    assert!(
        server.is_running(),
        "the server died in the outage:\n{}",
        server.log_text()
    );

    proxy.restore();
    let restored = Instant::now();
    let recovered: Response = loop {
        let response = get(addr, &user_path, t)
            .await
            .expect("GET after the restore");
        if response.status == 200 {
            break response;
        }
        assert!(
            restored.elapsed() < RECOVERY_TIMEOUT,
            "not recovered {RECOVERY_TIMEOUT:?} after the restore: {response:?}\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let recovery = restored.elapsed();
    assert!(server.is_running());
    assert_eq!(
        get(addr, "/readyz", None).await.expect("readyz").status,
        200
    );
    // Login works again (it asserts 200).
    login(addr, SUPERUSER_EMAIL, SUPERUSER_PASSWORD).await;

    // The PATCH answered 503 was not applied, then or later.
    assert_eq!(recovered.body["first_name"], before.body["first_name"]);
    let pool = db.pool().await;
    let stored = events_of(&pool, superuser_id).await;
    assert_eq!(stored.len(), 1, "only the Created event: {stored:#?}");
    assert!(
        !stored
            .iter()
            .any(|e| e.payload.to_string().contains("DuringOutage")),
        "{stored:#?}"
    );
    // The read model still equals the replayed log.
    db.verify_projections().await;

    for (what, took) in &timings {
        println!("outage: {what} answered 503 after {took:.2?}");
    }
    println!(
        "outage: acquire timeout {ACQUIRE_TIMEOUT_SECS} s; GET /healthz 200 throughout; \
         recovered {recovery:.2?} after the database came back, without a restart"
    );
}
