//! Graceful shutdown of the real server on SIGTERM: requests already being handled finish
//! with their normal answer, new connections are refused meanwhile, and the process exits
//! with status 0.

mod support;

use std::time::{Duration, Instant};

use support::{login, new_user, parse_response, request_head, Server, TestDb};
use support::{SUPERUSER_EMAIL, SUPERUSER_PASSWORD};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Requests held open across the SIGTERM.
const HELD: usize = 4;
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A `POST /api/v1/users` whose head has been sent with `Expect: 100-continue` and whose
/// body is held back. The server's `100 Continue` proves it accepted the connection and
/// that the handler is already reading the body: the request is in flight, and cannot
/// finish before the body is sent.
struct HeldCreate {
    stream: TcpStream,
    email: String,
    body: String,
}

impl HeldCreate {
    async fn open(server: &Server, token: &str, email: String) -> Self {
        let body = new_user(&email, "Held", "Request").to_string();
        let head = request_head(
            server.addr,
            "POST",
            "/api/v1/users",
            Some(token),
            Some(body.len()),
            &[("Expect", "100-continue")],
        );
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream
            .write_all(head.as_bytes())
            .await
            .expect("send the head");
        // Read exactly the interim answer, nothing after it.
        let mut interim = Vec::new();
        tokio::time::timeout(STEP_TIMEOUT, async {
            while !interim.ends_with(b"\r\n\r\n") {
                let byte = stream.read_u8().await.expect("read the interim answer");
                interim.push(byte);
            }
        })
        .await
        .expect("no 100 Continue in time");
        let interim = String::from_utf8_lossy(&interim);
        assert!(
            interim.starts_with("HTTP/1.1 100"),
            "expected 100 Continue, got {interim:?}"
        );
        Self {
            stream,
            email,
            body,
        }
    }

    /// Sends the body and reads the whole answer.
    async fn finish(mut self) -> (String, support::Response) {
        self.stream
            .write_all(self.body.as_bytes())
            .await
            .expect("send the body");
        let mut bytes = Vec::new();
        tokio::time::timeout(STEP_TIMEOUT, self.stream.read_to_end(&mut bytes))
            .await
            .expect("the answer in time")
            .expect("read the answer");
        let response = parse_response(&bytes).unwrap_or_else(|error| {
            panic!(
                "no complete answer ({error}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (self.email, response)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_refuses_new_ones_and_exits_0() {
    let db = TestDb::new("shutdown");
    db.create_superuser().await;
    let mut server = Server::start(&db, &[]).await;
    let token = login(server.addr, SUPERUSER_EMAIL, SUPERUSER_PASSWORD).await;

    let mut held = Vec::new();
    for i in 0..HELD {
        held.push(HeldCreate::open(&server, &token, format!("held{i}@shutdown.example")).await);
    }

    let log_from = server.log_len();
    let signalled = Instant::now();
    server.terminate();
    server
        .wait_for_log(log_from, "shutting down", STEP_TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("no shutdown in the log:\n{}", server.log_text()));

    // The listener closes while the held requests are still open: a new connection is
    // refused (a connection the kernel took just before the close may still be made or be
    // reset; it is dropped and tried again).
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused_after = loop {
        match TcpStream::connect(server.addr).await {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                break signalled.elapsed();
            }
            // Taken by the kernel just as the listener closed: reset, never served.
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(error) => panic!("unexpected connect error: {error}"),
            Ok(stream) => drop(stream),
        }
        assert!(
            Instant::now() < deadline,
            "new connections still accepted 5 s after SIGTERM:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        server.is_running(),
        "the server exited with requests in flight:\n{}",
        server.log_text()
    );

    // Every held request now completes normally.
    let mut answers = Vec::new();
    for request in held {
        answers.push(request.finish().await);
    }
    for (email, response) in &answers {
        assert_eq!(response.status, 201, "{email}: {response:?}");
        assert_eq!(response.body["email"], email.as_str(), "{response:?}");
    }

    let status = server.wait_exit(STEP_TIMEOUT).await;
    let exited_after = signalled.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status:?}:\n{}",
        server.log_text()
    );

    // What was answered 201 is stored.
    let pool = db.pool().await;
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT email FROM users WHERE email LIKE '%@shutdown.example' ORDER BY email",
    )
    .fetch_all(&pool)
    .await
    .expect("read users");
    let mut expected: Vec<String> = answers.iter().map(|(email, _)| email.clone()).collect();
    expected.sort();
    assert_eq!(stored, expected);
    println!(
        "shutdown: {HELD} requests in flight at SIGTERM all answered 201; new connections \
         refused {refused_after:.2?} after SIGTERM; exit status 0 after {exited_after:.2?}"
    );
}
