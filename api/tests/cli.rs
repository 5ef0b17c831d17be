//! The `users-service` command line, run as a real process against its own PostgreSQL
//! database (created by the binary itself, dropped afterwards).

mod support;

use std::process::Stdio;

use domain::Argon2Hasher;
use serde_json::Value;
use sqlx::PgPool;

use support::{events, events_of, Event, TestDb, COMMAND_TIMEOUT};

/// Creates a user with `create-superuser` (the password on standard input); returns its id.
async fn superuser(db: &TestDb, pool: &PgPool, email: &str, password: &str) -> i64 {
    db.cli_with(
        &["create-superuser", "--email", email],
        Some(&format!("{password}\n")),
        &[],
    )
    .await
    .assert_success();
    user_id(pool, email).await.expect("the superuser's row")
}

async fn user_id(pool: &PgPool, email: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT id FROM users WHERE lower(email) = lower($1)")
        .bind(email)
        .fetch_optional(pool)
        .await
        .expect("read users")
}

/// `(is_staff, is_superuser)` of a user in the read model.
async fn flags(pool: &PgPool, id: i64) -> (bool, bool) {
    sqlx::query_as("SELECT is_staff, is_superuser FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("read the user's flags")
}

async fn groups_of(pool: &PgPool, id: i64) -> Vec<String> {
    sqlx::query_scalar("SELECT group_name FROM user_groups WHERE user_id = $1 ORDER BY 1")
        .bind(id)
        .fetch_all(pool)
        .await
        .expect("read user_groups")
}

async fn group_names(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT name FROM groups ORDER BY name")
        .fetch_all(pool)
        .await
        .expect("read groups")
}

async fn permissions_of_group(pool: &PgPool, group: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT codename FROM group_permissions WHERE group_name = $1 ORDER BY codename",
    )
    .bind(group)
    .fetch_all(pool)
    .await
    .expect("read group_permissions")
}

fn assert_from_cli(event: &Event) {
    assert_eq!(event.metadata["source"], "cli", "{event:#?}");
    assert_eq!(event.metadata["actor_id"], "system", "{event:#?}");
    assert!(
        event.metadata["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{event:#?}"
    );
}

#[tokio::test]
async fn migrate_creates_the_database_and_applies_the_migrations() {
    let db = TestDb::new("cli");
    assert!(!db.exists().await, "the database must not exist beforehand");

    let run = db.cli(&["migrate"]).await;
    run.assert_success();
    assert!(run.stdout.contains("migrations applied"), "{run:#?}");
    assert!(db.exists().await, "migrate creates the database");

    let pool = db.pool().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for table in [
        "events",
        "snapshots",
        "users",
        "groups",
        "group_permissions",
        "permissions",
        "user_groups",
        "email_claims",
        "login_failures",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "table {table} missing: {tables:?}"
        );
    }
    let migration_files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .expect("the migrations folder")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "sql"))
        .count();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied, migration_files as i64, "every migration applied");

    assert_eq!(group_names(&pool).await, ["admin", "viewer"]);
    assert_eq!(
        permissions_of_group(&pool, "admin").await,
        ["add_user", "change_user", "delete_user", "view_user"]
    );
    assert_eq!(permissions_of_group(&pool, "viewer").await, ["view_user"]);
    assert!(events(&pool).await.is_empty(), "migrate records no event");

    // Running it again on a migrated database changes nothing.
    db.cli(&["migrate"]).await.assert_success();
    let applied_again: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied_again, applied);
    assert_eq!(group_names(&pool).await, ["admin", "viewer"]);
}

#[tokio::test]
async fn create_superuser_takes_the_password_from_stdin_or_the_environment_and_never_shows_it() {
    let db = TestDb::new("cli");
    let password = "Stdin-Secret-horse-42";
    let run = db
        .cli_with(
            &[
                "create-superuser",
                "--email",
                "root@example.com",
                "--first-name",
                "Ada",
                "--last-name",
                "Lovelace",
            ],
            Some(&format!("{password}\n")),
            &[],
        )
        .await;
    run.assert_success();
    assert!(
        !run.output().contains(password),
        "the password was shown: {run:#?}"
    );
    assert!(run.stdout.contains("root@example.com"), "{run:#?}");

    let pool = db.pool().await;
    let id = user_id(&pool, "root@example.com")
        .await
        .expect("the users row");
    let (first_name, last_name, is_staff, is_superuser, is_active, password_hash): (
        String,
        String,
        bool,
        bool,
        bool,
        String,
    ) = sqlx::query_as(
        "SELECT first_name, last_name, is_staff, is_superuser, is_active, password_hash
         FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (first_name.as_str(), last_name.as_str()),
        ("Ada", "Lovelace")
    );
    assert!(is_superuser && is_staff && is_active);

    let stored = events(&pool).await;
    assert_eq!(stored.len(), 1, "{stored:#?}");
    let created = &stored[0];
    assert_eq!(created.event_type, "Created");
    assert_eq!(created.aggregate_id, id.to_string());
    assert_from_cli(created);
    let payload = created.payload.to_string();
    assert!(!payload.contains(password), "password in the payload");
    let hash = created.payload["Created"]["password_hash"]
        .as_str()
        .expect("a password hash in the Created payload");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert_eq!(hash, password_hash);
    let hasher = Argon2Hasher::owasp(1);
    assert!(
        hasher.verify(password, Some(hash)).await,
        "the hash is of the line read from stdin, without its newline"
    );
    assert!(!created.metadata.to_string().contains(password));

    // The same email in another case: refused, nothing recorded.
    let run = db
        .cli_with(
            &["create-superuser", "--email", "ROOT@Example.COM"],
            Some("Another-password-1\n"),
            &[],
        )
        .await;
    run.assert_failure();
    assert!(run.stderr.contains("already exists"), "{run:#?}");
    assert_eq!(
        events(&pool).await.len(),
        1,
        "a refused create records nothing"
    );
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(users, 1);

    // A too-short password: refused, nothing recorded.
    let short = "x7Qz!9p";
    let run = db
        .cli_with(
            &["create-superuser", "--email", "short@example.com"],
            Some(&format!("{short}\n")),
            &[],
        )
        .await;
    run.assert_failure();
    assert!(run.stderr.contains("password"), "{run:#?}");
    assert!(!run.output().contains(short), "{run:#?}");
    assert_eq!(
        events(&pool).await.len(),
        1,
        "a refused create records nothing"
    );
    assert_eq!(user_id(&pool, "short@example.com").await, None);

    // Without any standard input there is no password: refused as well.
    let run = db
        .cli(&["create-superuser", "--email", "nostdin@example.com"])
        .await;
    run.assert_failure();
    assert_eq!(events(&pool).await.len(), 1);

    // The password from USERS_SUPERUSER_PASSWORD, with standard input closed.
    let env_password = "Env-Secret-horse-43";
    let run = db
        .cli_with(
            &["create-superuser", "--email", "env@example.com"],
            None,
            &[("USERS_SUPERUSER_PASSWORD", env_password)],
        )
        .await;
    run.assert_success();
    assert!(!run.output().contains(env_password), "{run:#?}");
    let env_id = user_id(&pool, "env@example.com")
        .await
        .expect("the users row");
    assert_eq!(flags(&pool, env_id).await, (true, true));
    let env_events = events_of(&pool, env_id).await;
    assert_eq!(env_events.len(), 1, "{env_events:#?}");
    assert_eq!(env_events[0].event_type, "Created");
    assert_from_cli(&env_events[0]);
    assert!(!env_events[0].payload.to_string().contains(env_password));
    let env_hash = env_events[0].payload["Created"]["password_hash"]
        .as_str()
        .expect("a password hash");
    assert!(hasher.verify(env_password, Some(env_hash)).await);
    assert_eq!(events(&pool).await.len(), 2);
}

#[tokio::test]
async fn groups_create_and_list_show_a_new_group_and_refuse_duplicates_and_unknown_permissions() {
    let db = TestDb::new("cli");
    let run = db
        .cli(&[
            "groups",
            "create",
            "support",
            "--permission",
            "view_user",
            "--permission",
            "change_user",
        ])
        .await;
    run.assert_success();
    assert!(run.stdout.contains("support"), "{run:#?}");

    let pool = db.pool().await;
    assert_eq!(group_names(&pool).await, ["admin", "support", "viewer"]);
    assert_eq!(
        permissions_of_group(&pool, "support").await,
        ["change_user", "view_user"]
    );

    let run = db.cli(&["groups", "list"]).await;
    run.assert_success();
    let listed: Vec<&str> = run
        .stdout
        .lines()
        .filter(|line| line.starts_with("support"))
        .collect();
    assert_eq!(listed, ["support\tchange_user,view_user"], "{run:#?}");
    assert!(
        run.stdout.lines().any(|line| line == "viewer\tview_user"),
        "{run:#?}"
    );

    // The same name again: refused, the group unchanged.
    let run = db
        .cli(&["groups", "create", "support", "--permission", "delete_user"])
        .await;
    run.assert_failure();
    assert!(run.stderr.contains("already exists"), "{run:#?}");
    assert_eq!(
        permissions_of_group(&pool, "support").await,
        ["change_user", "view_user"]
    );

    // An unknown permission: refused, nothing created.
    let run = db
        .cli(&[
            "groups",
            "create",
            "auditors",
            "--permission",
            "view_user",
            "--permission",
            "fly_user",
        ])
        .await;
    run.assert_failure();
    assert!(run.stderr.contains("fly_user"), "{run:#?}");
    assert_eq!(group_names(&pool).await, ["admin", "support", "viewer"]);
    assert!(permissions_of_group(&pool, "auditors").await.is_empty());

    let run = db.cli(&["groups", "list"]).await;
    run.assert_success();
    assert!(!run.stdout.contains("auditors"), "{run:#?}");
    assert!(events(&pool).await.is_empty(), "groups are not user events");
}

#[tokio::test]
async fn groups_grant_and_revoke_change_membership_through_events_and_refuse_unknown_names() {
    let db = TestDb::new("cli");
    db.cli(&["migrate"]).await.assert_success();
    let pool = db.pool().await;
    let id = superuser(&db, &pool, "member@example.com", "member-password-1").await;
    assert!(groups_of(&pool, id).await.is_empty());

    let run = db
        .cli(&["groups", "grant", "viewer", "--email", "member@example.com"])
        .await;
    run.assert_success();
    assert_eq!(groups_of(&pool, id).await, ["viewer"]);
    let stored = events_of(&pool, id).await;
    assert_eq!(stored.len(), 2, "{stored:#?}");
    assert_eq!(stored[1].event_type, "GroupsChanged");
    assert_eq!(
        stored[1].payload["GroupsChanged"]["groups"],
        serde_json::json!(["viewer"])
    );
    assert_from_cli(&stored[1]);

    // Granting again: nothing new.
    let run = db
        .cli(&["groups", "grant", "viewer", "--email", "member@example.com"])
        .await;
    run.assert_success();
    assert_eq!(
        events_of(&pool, id).await.len(),
        2,
        "a second grant records nothing"
    );
    assert_eq!(groups_of(&pool, id).await, ["viewer"]);

    // The email is found in any case.
    let run = db
        .cli(&["groups", "grant", "admin", "--email", "Member@Example.com"])
        .await;
    run.assert_success();
    assert_eq!(groups_of(&pool, id).await, ["admin", "viewer"]);
    assert_eq!(events_of(&pool, id).await.len(), 3);

    let run = db
        .cli(&[
            "groups",
            "revoke",
            "viewer",
            "--email",
            "member@example.com",
        ])
        .await;
    run.assert_success();
    assert_eq!(groups_of(&pool, id).await, ["admin"]);
    let stored = events_of(&pool, id).await;
    assert_eq!(stored.len(), 4, "{stored:#?}");
    assert_eq!(stored[3].event_type, "GroupsChanged");
    assert_eq!(
        stored[3].payload["GroupsChanged"]["groups"],
        serde_json::json!(["admin"])
    );
    assert_from_cli(&stored[3]);

    // Revoking a group the user is not in: nothing new.
    let run = db
        .cli(&[
            "groups",
            "revoke",
            "viewer",
            "--email",
            "member@example.com",
        ])
        .await;
    run.assert_success();
    assert_eq!(events_of(&pool, id).await.len(), 4);

    // Unknown group or unknown email: refused, nothing recorded.
    let total = events(&pool).await.len();
    for args in [
        [
            "groups",
            "grant",
            "nosuchgroup",
            "--email",
            "member@example.com",
        ],
        [
            "groups",
            "revoke",
            "nosuchgroup",
            "--email",
            "member@example.com",
        ],
        ["groups", "grant", "viewer", "--email", "nobody@example.com"],
        ["groups", "revoke", "admin", "--email", "nobody@example.com"],
    ] {
        let run = db.cli(&args).await;
        run.assert_failure();
        let named = if args[2] == "nosuchgroup" {
            "nosuchgroup"
        } else {
            "nobody@example.com"
        };
        assert!(run.stderr.contains(named), "{args:?}: {run:#?}");
        assert_eq!(
            events(&pool).await.len(),
            total,
            "{args:?} recorded an event"
        );
    }
    assert_eq!(groups_of(&pool, id).await, ["admin"]);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM user_groups")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn set_flags_clears_flags_through_events_and_refuses_contradictory_flags() {
    let db = TestDb::new("cli");
    db.cli(&["migrate"]).await.assert_success();
    let pool = db.pool().await;
    let id = superuser(&db, &pool, "flags@example.com", "flags-password-1").await;
    assert_eq!(flags(&pool, id).await, (true, true));

    let run = db
        .cli(&[
            "set-flags",
            "--email",
            "flags@example.com",
            "--no-superuser",
            "--no-staff",
        ])
        .await;
    run.assert_success();
    assert_eq!(flags(&pool, id).await, (false, false));
    let stored = events_of(&pool, id).await;
    let mut new_types: Vec<&str> = stored[1..].iter().map(|e| e.event_type.as_str()).collect();
    new_types.sort_unstable();
    assert_eq!(
        new_types,
        ["StaffRevoked", "SuperuserRevoked"],
        "{stored:#?}"
    );
    for event in &stored[1..] {
        assert_from_cli(event);
    }

    // The same again: nothing new.
    let run = db
        .cli(&[
            "set-flags",
            "--email",
            "flags@example.com",
            "--no-superuser",
            "--no-staff",
        ])
        .await;
    run.assert_success();
    assert_eq!(
        events_of(&pool, id).await.len(),
        3,
        "a no-op records nothing"
    );
    assert_eq!(flags(&pool, id).await, (false, false));

    // Contradictory flags: refused by the argument parser (usage error), nothing recorded.
    let run = db
        .cli(&[
            "set-flags",
            "--email",
            "flags@example.com",
            "--staff",
            "--no-staff",
        ])
        .await;
    run.assert_failure();
    assert_eq!(run.code, Some(2), "a usage error: {run:#?}");
    assert!(run.stderr.contains("--no-staff"), "{run:#?}");
    let run = db
        .cli(&[
            "set-flags",
            "--email",
            "flags@example.com",
            "--superuser",
            "--no-superuser",
        ])
        .await;
    run.assert_failure();
    assert_eq!(run.code, Some(2), "a usage error: {run:#?}");
    assert_eq!(events_of(&pool, id).await.len(), 3);
    assert_eq!(flags(&pool, id).await, (false, false));

    // Setting one flag leaves the other alone.
    let run = db
        .cli(&["set-flags", "--email", "flags@example.com", "--staff"])
        .await;
    run.assert_success();
    assert_eq!(flags(&pool, id).await, (true, false));
    let stored = events_of(&pool, id).await;
    assert_eq!(stored.len(), 4, "{stored:#?}");
    assert_eq!(stored[3].event_type, "StaffGranted");
    assert_from_cli(&stored[3]);

    // An unknown email: refused, nothing recorded.
    let total = events(&pool).await.len();
    let run = db
        .cli(&["set-flags", "--email", "nobody@example.com", "--no-staff"])
        .await;
    run.assert_failure();
    assert!(run.stderr.contains("nobody@example.com"), "{run:#?}");
    assert_eq!(events(&pool).await.len(), total);
}

/// Loads `users` users with ten events each straight into the event store (as an import
/// would), leaving the read model empty.
async fn load_events(pool: &PgPool, users: i64) {
    sqlx::query(
        r#"
        INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                            payload, metadata)
        SELECT 'User', u::text, s,
               CASE WHEN s = 1 THEN 'Created' WHEN s % 2 = 0 THEN 'FirstNameChanged'
                    ELSE 'LastNameChanged' END,
               '1',
               CASE WHEN s = 1 THEN jsonb_build_object('Created', jsonb_build_object(
                        'email', 'bulk' || u || '@example.com', 'first_name', 'F',
                        'last_name', 'L', 'organisation_id', u % 5 + 1, 'is_admin', false,
                        'is_staff', false, 'is_superuser', false, 'groups', '["viewer"]'::jsonb,
                        'password_hash', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA'))
                    WHEN s % 2 = 0 THEN jsonb_build_object('FirstNameChanged',
                        jsonb_build_object('first_name', 'F' || s))
                    ELSE jsonb_build_object('LastNameChanged',
                        jsonb_build_object('last_name', 'L' || s)) END,
               '{"actor_id": "system", "request_id": "import", "source": "cli"}'
          FROM generate_series(1, $1) AS u, generate_series(1, 10) AS s
         ORDER BY u, s
        "#,
    )
    .bind(users)
    .execute(pool)
    .await
    .expect("bulk load");
}

async fn read_model(pool: &PgPool) -> (Value, Value) {
    let users: Value = sqlx::query_scalar(
        "SELECT coalesce(jsonb_agg(to_jsonb(u) ORDER BY u.id), '[]') FROM users u",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let groups: Value = sqlx::query_scalar(
        "SELECT coalesce(jsonb_agg(to_jsonb(g) ORDER BY g.user_id, g.group_name), '[]')
           FROM user_groups g",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    (users, groups)
}

#[tokio::test]
async fn a_rebuild_killed_halfway_leaves_the_live_tables_unchanged_and_a_rerun_succeeds() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let db = TestDb::new("cli");
    db.cli(&["migrate"]).await.assert_success();
    let pool = db.pool().await;
    load_events(&pool, 4_000).await;
    let first = db.cli(&["projections", "rebuild"]).await;
    first.assert_success();
    assert!(
        first.stdout.contains("40000 events, 4000 users"),
        "{}",
        first.output()
    );
    let before = read_model(&pool).await;
    assert_eq!(before.0.as_array().unwrap().len(), 4_000);

    // Again, killed with SIGKILL as soon as it reports progress.
    let mut child = db
        .command(&["projections", "rebuild"], &[])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start users-service");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let progress = tokio::time::timeout(COMMAND_TIMEOUT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("rebuild: ") {
                return line;
            }
        }
        panic!("the rebuild ended without reporting progress");
    })
    .await
    .expect("progress in time");
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "killed: {status:?}");
    assert!(
        !progress.contains("40000/40000"),
        "killed before the end: {progress}"
    );

    assert_eq!(read_model(&pool).await, before, "live tables unchanged");
    let rerun = db.cli(&["projections", "rebuild"]).await;
    rerun.assert_success();
    assert_eq!(read_model(&pool).await, before);
    let verify = db.cli(&["projections", "verify"]).await;
    verify.assert_success();
    assert!(verify.stdout.contains("matches"), "{}", verify.output());
}

#[tokio::test]
async fn verify_exits_1_and_names_each_difference() {
    let db = TestDb::new("cli");
    db.cli(&["migrate"]).await.assert_success();
    let pool = db.pool().await;
    load_events(&pool, 10).await;
    db.cli(&["projections", "rebuild"]).await.assert_success();
    sqlx::query("UPDATE users SET first_name = 'Forged' WHERE id = 3")
        .execute(&pool)
        .await
        .unwrap();
    let verify = db.cli(&["projections", "verify"]).await;
    assert_eq!(verify.code, Some(1), "{}", verify.output());
    assert!(
        verify.stdout.contains("user 3: first_name is \"Forged\""),
        "{}",
        verify.output()
    );
}

#[tokio::test]
async fn audit_prints_a_user_s_history_from_the_event_store_even_with_no_read_model() {
    let db = TestDb::new("cli");
    db.cli(&["migrate"]).await.assert_success();
    let pool = db.pool().await;
    load_events(&pool, 3).await;
    // The read model is empty: the events were imported, never projected.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);

    let table = db.cli(&["audit", "2"]).await;
    table.assert_success();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        11,
        "a header and ten events: {}",
        table.output()
    );
    assert!(lines[0].starts_with("TIME"));
    assert!(lines[1].contains("Created") && lines[1].contains("password=\"[redacted]\""));
    assert!(!table.stdout.contains("argon2"), "no hash printed");

    let json = db.cli(&["audit", "2", "--json"]).await;
    json.assert_success();
    let entries: Vec<Value> = json
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(entries.len(), 10);
    assert_eq!(
        entries[1]["changes"],
        serde_json::json!({"first_name": "F2"})
    );
    assert_eq!(entries[9]["sequence"], 10);

    let missing = db.cli(&["audit", "99"]).await;
    missing.assert_failure();
}
