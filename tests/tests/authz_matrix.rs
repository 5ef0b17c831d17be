//! The permission matrix of contract §5: caller kinds × actions × targets, each cell an
//! exact status (and, for list, the exact ids). Every cell gets a fresh caller and a fresh
//! target, so no cell's write changes another's outcome.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::Method;
use serde_json::{json, Value};
use tests::{status_json, TestApp, UserSpec};

const ORG: i64 = 1;
const OTHER_ORG: i64 = 2;
const MOVED_ORG: i64 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Superuser,
    OrgAdmin,
    Viewer,
    Adder,
    Changer,
    Deleter,
    NoPermissions,
    NoOrganisation,
    Deactivated,
}

const KINDS: [Kind; 9] = [
    Kind::Superuser,
    Kind::OrgAdmin,
    Kind::Viewer,
    Kind::Adder,
    Kind::Changer,
    Kind::Deleter,
    Kind::NoPermissions,
    Kind::NoOrganisation,
    Kind::Deactivated,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Retrieve,
    Create,
    Put,
    PatchFirstName,
    PatchLastName,
    PatchOrganisation,
    PatchIsAdmin,
    PatchIsActive,
    Delete,
}

const ACTIONS: [Action; 9] = [
    Action::Retrieve,
    Action::Create,
    Action::Put,
    Action::PatchFirstName,
    Action::PatchLastName,
    Action::PatchOrganisation,
    Action::PatchIsAdmin,
    Action::PatchIsActive,
    Action::Delete,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The caller themself (for create: organisation_id omitted).
    Myself,
    /// Another user of the caller's organisation (for create: organisation_id = 1).
    SameOrg,
    /// A user of another organisation (for create: organisation_id = 2).
    OtherOrg,
}

/// Expected status per target: [myself, same organisation, other organisation].
fn expected(kind: Kind, action: Action) -> [u16; 3] {
    use Action::*;
    use Kind::*;
    match (kind, action) {
        (Deactivated, _) => [401, 401, 401],

        (Superuser, Retrieve) => [200, 200, 200],
        (OrgAdmin | Viewer, Retrieve) => [200, 200, 404],
        (Adder | Changer | Deleter | NoPermissions, Retrieve) => [200, 403, 404],
        (NoOrganisation, Retrieve) => [200, 404, 404],

        (Superuser, Create) => [201, 201, 201],
        (OrgAdmin | Adder, Create) => [201, 201, 403],
        (Viewer | Changer | Deleter | NoPermissions | NoOrganisation, Create) => [403, 403, 403],

        (Superuser, Put | PatchFirstName | PatchLastName) => [200, 200, 200],
        (OrgAdmin | Changer, Put | PatchFirstName | PatchLastName) => [200, 200, 404],
        (Viewer | Adder | Deleter | NoPermissions, Put | PatchFirstName | PatchLastName) => {
            [200, 403, 404]
        }
        (NoOrganisation, Put | PatchFirstName | PatchLastName) => [200, 404, 404],

        (Superuser, PatchOrganisation) => [200, 200, 200],
        (NoOrganisation, PatchOrganisation) => [403, 404, 404],
        (_, PatchOrganisation) => [403, 403, 404],

        (Superuser, PatchIsAdmin) => [200, 200, 200],
        // An admin asking to be admin changes nothing: allowed, like any no-op on oneself.
        (OrgAdmin, PatchIsAdmin) => [200, 200, 404],
        (NoOrganisation, PatchIsAdmin) => [403, 404, 404],
        (_, PatchIsAdmin) => [403, 403, 404],

        (Superuser, PatchIsActive) => [403, 200, 200],
        (OrgAdmin | Deleter, PatchIsActive) => [403, 200, 404],
        (NoOrganisation, PatchIsActive) => [403, 404, 404],
        (_, PatchIsActive) => [403, 403, 404],

        (Superuser, Delete) => [403, 204, 204],
        (OrgAdmin | Deleter, Delete) => [403, 204, 404],
        (NoOrganisation, Delete) => [403, 404, 404],
        (_, Delete) => [403, 403, 404],
    }
}

static EMAILS: AtomicUsize = AtomicUsize::new(0);

fn email(label: &str) -> String {
    format!(
        "{label}.{}@example.com",
        EMAILS.fetch_add(1, Ordering::Relaxed)
    )
}

/// Single-permission groups, created once per app.
async fn create_permission_groups(app: &TestApp) {
    for codename in ["view_user", "add_user", "change_user", "delete_user"] {
        projections::groups::create(
            &app.pool,
            &format!("only_{codename}"),
            &[codename.to_owned()],
        )
        .await
        .unwrap();
    }
}

fn spec(kind: Kind) -> UserSpec {
    let group = |codename: &str| vec![format!("only_{codename}")];
    let base = UserSpec {
        email: email(&format!("{kind:?}").to_lowercase()),
        organisation_id: Some(ORG),
        ..UserSpec::default()
    };
    match kind {
        Kind::Superuser => UserSpec {
            is_superuser: true,
            ..base
        },
        Kind::OrgAdmin => UserSpec {
            is_admin: true,
            ..base
        },
        Kind::Viewer => UserSpec {
            groups: group("view_user"),
            ..base
        },
        Kind::Adder => UserSpec {
            groups: group("add_user"),
            ..base
        },
        Kind::Changer => UserSpec {
            groups: group("change_user"),
            ..base
        },
        Kind::Deleter => UserSpec {
            groups: group("delete_user"),
            ..base
        },
        Kind::NoPermissions => base,
        Kind::NoOrganisation => UserSpec {
            organisation_id: None,
            ..base
        },
        Kind::Deactivated => UserSpec {
            is_admin: true,
            groups: vec!["admin".into()],
            deactivated: true,
            ..base
        },
    }
}

fn request(action: Action, target_id: i64, target: Target) -> (Method, String, Option<Value>) {
    let path = format!("/api/v1/users/{target_id}");
    match action {
        Action::Retrieve => (Method::GET, path, None),
        Action::Create => {
            let mut body = json!({"email": email("new"), "password": "password-123",
                                  "first_name": "New", "last_name": "User"});
            match target {
                Target::Myself => {}
                Target::SameOrg => body["organisation_id"] = json!(ORG),
                Target::OtherOrg => body["organisation_id"] = json!(OTHER_ORG),
            }
            (Method::POST, "/api/v1/users".into(), Some(body))
        }
        Action::Put => (Method::PUT, path, None),
        Action::PatchFirstName => (Method::PATCH, path, Some(json!({"first_name": "Changed"}))),
        Action::PatchLastName => (Method::PATCH, path, Some(json!({"last_name": "Changed"}))),
        Action::PatchOrganisation => (
            Method::PATCH,
            path,
            Some(json!({"organisation_id": MOVED_ORG})),
        ),
        Action::PatchIsAdmin => (Method::PATCH, path, Some(json!({"is_admin": true}))),
        Action::PatchIsActive => (Method::PATCH, path, Some(json!({"is_active": false}))),
        Action::Delete => (Method::DELETE, path, None),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_caller_kind_action_and_target_gets_its_exact_status() {
    let app = TestApp::spawn().await;
    create_permission_groups(&app).await;
    let mut cells = 0;
    let mut failures = Vec::new();
    for kind in KINDS {
        for action in ACTIONS {
            let statuses = expected(kind, action);
            for (target, want) in [Target::Myself, Target::SameOrg, Target::OtherOrg]
                .into_iter()
                .zip(statuses)
            {
                let caller = app.insert_user(spec(kind)).await;
                let target_id = match target {
                    Target::Myself => caller,
                    Target::SameOrg => {
                        let same = UserSpec {
                            email: email("same"),
                            organisation_id: Some(ORG),
                            ..UserSpec::default()
                        };
                        app.insert_user(same).await
                    }
                    Target::OtherOrg => {
                        app.insert_user(UserSpec {
                            email: email("other"),
                            organisation_id: Some(OTHER_ORG),
                            ..UserSpec::default()
                        })
                        .await
                    }
                };
                let (method, path, body) = request(action, target_id, target);
                let body = match (action, body) {
                    (Action::Put, _) => {
                        let (_, current) = status_json(
                            app.admin(Method::GET, &format!("/api/v1/users/{target_id}"))
                                .send()
                                .await
                                .unwrap(),
                        )
                        .await;
                        Some(
                            json!({"email": current["email"], "first_name": current["first_name"],
                                    "last_name": "Replaced"}),
                        )
                    }
                    (_, body) => body,
                };
                let events_before = app.events_of(target_id).await.len();
                let mut builder = app.as_user(&app.token_for(caller), method.clone(), &path);
                if let Some(body) = &body {
                    builder = builder.json(body);
                }
                let (status, answer) = status_json(builder.send().await.unwrap()).await;
                cells += 1;
                if status != want {
                    failures.push(format!(
                        "{kind:?} {action:?} {target:?}: want {want}, got {status} {answer}"
                    ));
                }
                let written = app.events_of(target_id).await.len() - events_before;
                if status >= 400 && written != 0 {
                    failures.push(format!(
                        "{kind:?} {action:?} {target:?}: {status} but {written} events written"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("permission matrix: {cells} cells, all as expected");
}

#[tokio::test]
async fn each_caller_kind_lists_exactly_the_users_in_its_scope() {
    let app = TestApp::spawn().await;
    create_permission_groups(&app).await;
    let mut ids = std::collections::BTreeMap::new();
    for kind in KINDS {
        ids.insert(format!("{kind:?}"), app.insert_user(spec(kind)).await);
    }
    let outsider = app
        .insert_user(UserSpec {
            email: email("outsider"),
            organisation_id: Some(OTHER_ORG),
            ..UserSpec::default()
        })
        .await;
    let id = |kind: Kind| ids[&format!("{kind:?}")];
    let everyone: BTreeSet<i64> = ids
        .values()
        .copied()
        .chain([outsider, app.superuser_id])
        .collect();
    let organisation: BTreeSet<i64> = KINDS
        .iter()
        .filter(|kind| **kind != Kind::NoOrganisation)
        .map(|kind| id(*kind))
        .collect();

    let mut cells = 0;
    for kind in KINDS {
        let response = app
            .as_user(
                &app.token_for(id(kind)),
                Method::GET,
                "/api/v1/users?page_size=1000",
            )
            .send()
            .await
            .unwrap();
        let (status, body) = status_json(response).await;
        cells += 1;
        if kind == Kind::Deactivated {
            assert_eq!(status, 401, "{kind:?}");
            continue;
        }
        assert_eq!(status, 200, "{kind:?}");
        let listed: BTreeSet<i64> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|user| user["id"].as_i64().unwrap())
            .collect();
        let want = match kind {
            Kind::Superuser => everyone.clone(),
            Kind::OrgAdmin | Kind::Viewer => organisation.clone(),
            _ => BTreeSet::from([id(kind)]),
        };
        assert_eq!(listed, want, "{kind:?}");
        assert_eq!(body["count"], want.len(), "{kind:?}");
    }
    println!("list matrix: {cells} cells, all as expected");
}

#[tokio::test]
async fn only_superusers_and_admins_assign_the_admin_group() {
    let app = TestApp::spawn().await;
    create_permission_groups(&app).await;
    let changer = app
        .insert_user(UserSpec {
            groups: vec!["only_change_user".into(), "only_add_user".into()],
            ..spec(Kind::Changer)
        })
        .await;
    let admin = app.insert_user(spec(Kind::OrgAdmin)).await;
    let target = app
        .insert_user(UserSpec {
            email: email("target"),
            organisation_id: Some(ORG),
            ..UserSpec::default()
        })
        .await;
    let (_, current) = status_json(
        app.admin(Method::GET, &format!("/api/v1/users/{target}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let put = |groups: Value| json!({"email": current["email"], "first_name": "A", "last_name": "B", "user_types": groups});
    let path = format!("/api/v1/users/{target}");

    let send = |token: String, method: Method, path: String, body: Value| {
        let request = app.as_user(&token, method, &path).json(&body);
        async move { status_json(request.send().await.unwrap()).await.0 }
    };
    assert_eq!(
        send(
            app.token_for(changer),
            Method::PUT,
            path.clone(),
            put(json!(["admin"]))
        )
        .await,
        403
    );
    assert_eq!(
        send(
            app.token_for(changer),
            Method::PUT,
            path.clone(),
            put(json!(["viewer"]))
        )
        .await,
        200
    );
    let create_admin = json!({"email": email("made"), "password": "password-123", "first_name": "A",
                              "last_name": "B", "user_types": ["admin"]});
    assert_eq!(
        send(
            app.token_for(changer),
            Method::POST,
            "/api/v1/users".into(),
            create_admin.clone()
        )
        .await,
        403
    );
    assert_eq!(
        send(
            app.token_for(admin),
            Method::PUT,
            path.clone(),
            put(json!(["admin", "viewer"]))
        )
        .await,
        200
    );
    assert_eq!(
        send(
            app.token_for(changer),
            Method::PUT,
            path.clone(),
            put(json!([]))
        )
        .await,
        403,
        "removing admin is an admin's call too"
    );
    assert_eq!(
        send(
            app.token_for(admin),
            Method::POST,
            "/api/v1/users".into(),
            create_admin
        )
        .await,
        201
    );
}
