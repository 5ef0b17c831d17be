//! Crash safety: the real server is killed with SIGKILL under write load; after a restart on
//! the same database every write it acknowledged is there, nothing else is, and the read
//! model equals a replay of the log.

mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{events, get, login, new_user, request, Server, TestDb};
use support::{SUPERUSER_EMAIL, SUPERUSER_PASSWORD};

const WRITERS: usize = 16;
/// The server is killed once this many writes have been acknowledged.
const ACKED_BEFORE_KILL: usize = 150;
const LOAD_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone)]
enum Op {
    Create {
        email: String,
        first_name: String,
        last_name: String,
    },
    /// Sets `first_name` of user `id`.
    Patch { id: i64, first_name: String },
}

#[derive(Debug, Clone)]
enum Outcome {
    /// A complete `2xx` answer, with the user's id.
    Acked(i64),
    /// No complete answer (the server was killed): may or may not have been applied.
    InFlight(String),
    /// A complete answer that was not `2xx`: never expected here.
    Refused(u16, String),
}

#[derive(Debug, Clone)]
struct Write {
    op: Op,
    outcome: Outcome,
}

/// One writer: creates its own users and patches them, one request at a time, until a
/// request gets no complete answer. Its writes to a user are therefore sequential, and
/// only its very last write can be in doubt.
async fn writer(
    addr: SocketAddr,
    token: Arc<String>,
    task: usize,
    acked: Arc<AtomicUsize>,
) -> Vec<Write> {
    let mut writes = Vec::new();
    let mut own: Vec<i64> = Vec::new();
    for n in 0.. {
        let op = if own.len() < 2 || n % 3 == 0 {
            Op::Create {
                email: format!("w{task}.n{n}@crash.example"),
                first_name: format!("C{task}x{n}"),
                last_name: format!("L{task}x{n}"),
            }
        } else {
            Op::Patch {
                id: own[n % own.len()],
                first_name: format!("P{task}x{n}"),
            }
        };
        let answer = match &op {
            Op::Create {
                email,
                first_name,
                last_name,
            } => {
                request(
                    addr,
                    "POST",
                    "/api/v1/users",
                    Some(&token),
                    Some(&new_user(email, first_name, last_name)),
                )
                .await
            }
            Op::Patch { id, first_name } => {
                request(
                    addr,
                    "PATCH",
                    &format!("/api/v1/users/{id}"),
                    Some(&token),
                    Some(&json!({ "first_name": first_name })),
                )
                .await
            }
        };
        let outcome = match answer {
            Ok(response) if (200..300).contains(&response.status) => {
                match response.body["id"].as_i64() {
                    Some(id) => Outcome::Acked(id),
                    None => Outcome::Refused(response.status, response.text),
                }
            }
            Ok(response) => Outcome::Refused(response.status, response.text),
            Err(error) => Outcome::InFlight(error.to_string()),
        };
        let done = !matches!(outcome, Outcome::Acked(_));
        if let (Op::Create { .. }, Outcome::Acked(id)) = (&op, &outcome) {
            own.push(*id);
        }
        if !done {
            acked.fetch_add(1, Ordering::SeqCst);
        }
        writes.push(Write { op, outcome });
        if done {
            break;
        }
    }
    writes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_acknowledged_before_a_sigkill_survives_the_restart() {
    let db = TestDb::new("crash");
    let superuser_id = db.create_superuser().await;
    let mut server = Server::start(&db, &[]).await;
    let token = Arc::new(login(server.addr, SUPERUSER_EMAIL, SUPERUSER_PASSWORD).await);

    // Load, then SIGKILL in the middle of it.
    let acked = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|task| {
            tokio::spawn(writer(
                server.addr,
                Arc::clone(&token),
                task,
                Arc::clone(&acked),
            ))
        })
        .collect();
    let load_started = Instant::now();
    while acked.load(Ordering::SeqCst) < ACKED_BEFORE_KILL {
        assert!(
            load_started.elapsed() < LOAD_TIMEOUT,
            "only {} writes acknowledged in {LOAD_TIMEOUT:?}:\n{}",
            acked.load(Ordering::SeqCst),
            server.log_text()
        );
        assert!(
            !writers.iter().all(|w| w.is_finished()),
            "every writer stopped before the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let load_time = load_started.elapsed();
    let status = server.kill().await;
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
    let mut writes: Vec<Vec<Write>> = Vec::new();
    for handle in writers {
        let finished = tokio::time::timeout(Duration::from_secs(90), handle)
            .await
            .expect("a writer did not stop after the kill");
        writes.push(finished.expect("writer task"));
    }
    let all: Vec<&Write> = writes.iter().flatten().collect();
    let refused: Vec<String> = all
        .iter()
        .filter_map(|w| match &w.outcome {
            Outcome::Refused(status, body) => Some(format!("{:?}: {status} {body}", w.op)),
            _ => None,
        })
        .collect();
    assert!(
        refused.is_empty(),
        "non-2xx answers under load: {refused:#?}"
    );
    let cut_off: Vec<String> = all
        .iter()
        .filter_map(|w| match &w.outcome {
            Outcome::InFlight(error) => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        cut_off.len(),
        WRITERS,
        "each writer ends with one unanswered write"
    );

    // Restart on the same database.
    let server = Server::start(&db, &[]).await;
    let token = login(server.addr, SUPERUSER_EMAIL, SUPERUSER_PASSWORD).await;
    let pool = db.pool().await;
    let stored = events(&pool).await;
    let superuser = superuser_id.to_string();
    let created: HashMap<&str, &str> = stored
        .iter()
        .filter(|e| e.event_type == "Created" && e.aggregate_id != superuser)
        .map(|e| {
            (
                e.aggregate_id.as_str(),
                e.payload["Created"]["email"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let mut renamed: HashMap<(&str, &str), usize> = HashMap::new();
    for event in stored.iter().filter(|e| e.event_type == "FirstNameChanged") {
        let value = event.payload["FirstNameChanged"]["first_name"]
            .as_str()
            .unwrap_or_default();
        *renamed
            .entry((event.aggregate_id.as_str(), value))
            .or_default() += 1;
    }

    let mut acknowledged = 0;
    let mut found = 0;
    let mut in_flight = 0;
    let mut in_flight_applied = 0;
    // What each user's first name must be now: the last acknowledged value, or the value
    // of the write that was in flight for it when the server died.
    let mut last_acked: HashMap<i64, String> = HashMap::new();
    let mut pending: HashMap<i64, String> = HashMap::new();
    let mut requested_emails: HashSet<&str> = HashSet::new();
    let mut requested_names: HashSet<(String, &str)> = HashSet::new();
    for write in &all {
        match (&write.op, &write.outcome) {
            (
                Op::Create {
                    email,
                    first_name,
                    last_name,
                },
                outcome,
            ) => {
                requested_emails.insert(email);
                if let Outcome::Acked(id) = outcome {
                    acknowledged += 1;
                    let response = get(server.addr, &format!("/api/v1/users/{id}"), Some(&token))
                        .await
                        .expect("GET the user");
                    assert_eq!(
                        response.status, 200,
                        "acknowledged user {id} missing: {response:?}"
                    );
                    assert_eq!(response.body["email"], email.as_str(), "{response:?}");
                    assert_eq!(
                        response.body["last_name"],
                        last_name.as_str(),
                        "{response:?}"
                    );
                    assert_eq!(
                        created.get(id.to_string().as_str()).copied(),
                        Some(email.as_str()),
                        "the Created event of user {id}"
                    );
                    found += 1;
                    last_acked.insert(*id, first_name.clone());
                } else {
                    in_flight += 1;
                    // Applied or not, but never in part: if it is there, it is all there.
                    if let Some((id, _)) = created.iter().find(|(_, e)| **e == email.as_str()) {
                        in_flight_applied += 1;
                        let response =
                            get(server.addr, &format!("/api/v1/users/{id}"), Some(&token))
                                .await
                                .expect("GET the user");
                        assert_eq!(response.status, 200, "{response:?}");
                        assert_eq!(response.body["first_name"], first_name.as_str());
                        assert_eq!(response.body["last_name"], last_name.as_str());
                    }
                }
            }
            (Op::Patch { id, first_name }, outcome) => {
                requested_names.insert((id.to_string(), first_name));
                let times = renamed
                    .get(&(id.to_string().as_str(), first_name.as_str()))
                    .copied()
                    .unwrap_or(0);
                assert!(
                    times <= 1,
                    "{first_name} applied {times} times to user {id}"
                );
                if let Outcome::Acked(_) = outcome {
                    acknowledged += 1;
                    assert_eq!(
                        times, 1,
                        "acknowledged PATCH of user {id} to {first_name} not in the event store"
                    );
                    found += 1;
                    last_acked.insert(*id, first_name.clone());
                } else {
                    in_flight += 1;
                    in_flight_applied += times;
                    pending.insert(*id, first_name.clone());
                }
            }
        }
    }
    for (id, expected) in &last_acked {
        let response = get(server.addr, &format!("/api/v1/users/{id}"), Some(&token))
            .await
            .expect("GET the user");
        let now = response.body["first_name"].as_str().unwrap_or_default();
        assert!(
            now == expected || pending.get(id).is_some_and(|p| p == now),
            "user {id}: first_name {now:?}, expected the last acknowledged {expected:?} \
             or the one in flight {:?}",
            pending.get(id)
        );
    }
    // Nothing was stored that no client asked for.
    for email in created.values() {
        assert!(requested_emails.contains(email), "unrequested user {email}");
    }
    for (id, value) in renamed.keys() {
        assert!(
            requested_names.contains(&(id.to_string(), *value)),
            "unrequested first name {value} on user {id}"
        );
    }

    db.verify_projections().await;
    println!(
        "crash: {WRITERS} writers, SIGKILL after {load_time:.2?}; {acknowledged} writes \
         acknowledged, {found} found after the restart; {in_flight} in flight at the kill, \
         {in_flight_applied} of them applied; {} events stored; writers stopped by: {:?}",
        stored.len(),
        cut_off.iter().collect::<HashSet<_>>()
    );
    assert_eq!(found, acknowledged);
}
