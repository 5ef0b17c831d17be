//! Given/when/then tests of every command, one rule each.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use cqrs_es::test::TestFramework;

use crate::user::commands::{NewUser, UserCommand, UserPatch, UserUpdate};
use crate::user::error::UserError;
use crate::user::events::{PasswordHash, UserEvent};
use crate::user::services::{HashError, PasswordHasher, UserServices};
use crate::user::values::{Email, Name, OrganisationId, Password};

use super::User;

/// A deterministic stand-in for argon2 so expected events can be written out; it fails for
/// the one password the failure test uses.
struct TaggingHasher;

#[async_trait]
impl PasswordHasher for TaggingHasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        if password.expose() == "make-it-fail" {
            return Err(HashError);
        }
        Ok(PasswordHash::new(format!(
            "hashed:{}",
            password.expose().len()
        )))
    }
}

fn framework() -> TestFramework<User> {
    TestFramework::with(UserServices::new(Arc::new(TaggingHasher)))
}

fn new_user(password: &str) -> NewUser {
    NewUser {
        email: Email::parse("jane@broker.example").unwrap(),
        password: Password::parse(password).unwrap(),
        first_name: Name::parse("Jane").unwrap(),
        last_name: Name::parse("Citizen").unwrap(),
        organisation_id: Some(OrganisationId::parse(7).unwrap()),
        groups: BTreeSet::from(["viewer".to_owned()]),
        is_admin: false,
        is_staff: false,
        is_superuser: false,
    }
}

fn created() -> UserEvent {
    UserEvent::Created {
        email: "jane@broker.example".into(),
        first_name: "Jane".into(),
        last_name: "Citizen".into(),
        organisation_id: Some(7),
        is_admin: false,
        is_staff: false,
        is_superuser: false,
        groups: vec!["viewer".into()],
        password_hash: PasswordHash::new("hashed:12".into()),
    }
}

fn update(email: &str, first: &str, last: &str) -> UserUpdate {
    UserUpdate {
        email: Email::parse(email).unwrap(),
        first_name: Name::parse(first).unwrap(),
        last_name: Name::parse(last).unwrap(),
        organisation_id: None,
        is_admin: None,
        is_active: None,
        groups: None,
    }
}

fn name(raw: &str) -> Option<Name> {
    Some(Name::parse(raw).unwrap())
}

#[tokio::test]
async fn create_records_the_user_with_a_hashed_password() {
    framework()
        .given_no_previous_events()
        .when_async(UserCommand::Create(new_user("s3cret-pass!")))
        .await
        .then_expect_events(vec![created()]);
}

#[tokio::test]
async fn create_fails_for_an_existing_user() {
    framework()
        .given(vec![created()])
        .when_async(UserCommand::Create(new_user("s3cret-pass!")))
        .await
        .then_expect_error(UserError::AlreadyExists);
}

#[tokio::test]
async fn create_fails_when_the_password_cannot_be_hashed() {
    framework()
        .given_no_previous_events()
        .when_async(UserCommand::Create(new_user("make-it-fail")))
        .await
        .then_expect_error(UserError::PasswordHashing);
}

#[tokio::test]
async fn update_records_each_changed_field_and_nothing_else() {
    let mut change = update("jane@new.example", "Jane", "Doe");
    change.organisation_id = Some(None);
    change.is_admin = Some(true);
    change.groups = Some(BTreeSet::from(["admin".to_owned(), "viewer".to_owned()]));
    framework()
        .given(vec![created()])
        .when_async(UserCommand::Update(change))
        .await
        .then_expect_events(vec![
            UserEvent::EmailChanged {
                email: "jane@new.example".into(),
            },
            UserEvent::LastNameChanged {
                last_name: "Doe".into(),
            },
            UserEvent::OrganisationChanged {
                organisation_id: None,
            },
            UserEvent::AdminGranted,
            UserEvent::GroupsChanged {
                groups: vec!["admin".into(), "viewer".into()],
            },
        ]);
}

#[tokio::test]
async fn update_with_the_current_values_records_nothing() {
    let mut change = update("jane@broker.example", "Jane", "Citizen");
    change.organisation_id = Some(Some(OrganisationId::parse(7).unwrap()));
    change.is_active = Some(true);
    change.groups = Some(BTreeSet::from(["viewer".to_owned()]));
    framework()
        .given(vec![created()])
        .when_async(UserCommand::Update(change))
        .await
        .then_expect_events(vec![]);
}

#[tokio::test]
async fn update_can_deactivate() {
    let mut change = update("jane@broker.example", "Jane", "Citizen");
    change.is_active = Some(false);
    framework()
        .given(vec![created()])
        .when_async(UserCommand::Update(change))
        .await
        .then_expect_events(vec![UserEvent::Deactivated]);
}

#[tokio::test]
async fn update_fails_for_an_unknown_user() {
    framework()
        .given_no_previous_events()
        .when_async(UserCommand::Update(update("a@b.example", "A", "B")))
        .await
        .then_expect_error(UserError::NotFound);
}

#[tokio::test]
async fn patch_records_only_the_given_fields_that_differ() {
    framework()
        .given(vec![created()])
        .when_async(UserCommand::Patch(UserPatch {
            first_name: name("Janet"),
            last_name: name("Citizen"),
            organisation_id: Some(Some(OrganisationId::parse(8).unwrap())),
            ..UserPatch::default()
        }))
        .await
        .then_expect_events(vec![
            UserEvent::FirstNameChanged {
                first_name: "Janet".into(),
            },
            UserEvent::OrganisationChanged {
                organisation_id: Some(8),
            },
        ]);
}

#[tokio::test]
async fn an_empty_patch_records_nothing() {
    framework()
        .given(vec![created()])
        .when_async(UserCommand::Patch(UserPatch::default()))
        .await
        .then_expect_events(vec![]);
}

#[tokio::test]
async fn patch_revokes_admin_and_reactivates() {
    framework()
        .given(vec![
            created(),
            UserEvent::AdminGranted,
            UserEvent::Deactivated,
        ])
        .when_async(UserCommand::Patch(UserPatch {
            is_admin: Some(false),
            is_active: Some(true),
            ..UserPatch::default()
        }))
        .await
        .then_expect_events(vec![UserEvent::AdminRevoked, UserEvent::Reactivated]);
}

#[tokio::test]
async fn patch_fails_for_an_unknown_user() {
    framework()
        .given_no_previous_events()
        .when_async(UserCommand::Patch(UserPatch::default()))
        .await
        .then_expect_error(UserError::NotFound);
}

#[tokio::test]
async fn deactivate_records_the_deactivation() {
    framework()
        .given(vec![created()])
        .when_async(UserCommand::Deactivate)
        .await
        .then_expect_events(vec![UserEvent::Deactivated]);
}

#[tokio::test]
async fn deactivating_an_inactive_user_records_nothing() {
    framework()
        .given(vec![created(), UserEvent::Deactivated])
        .when_async(UserCommand::Deactivate)
        .await
        .then_expect_events(vec![]);
}

#[tokio::test]
async fn deactivate_fails_for_an_unknown_user() {
    framework()
        .given_no_previous_events()
        .when_async(UserCommand::Deactivate)
        .await
        .then_expect_error(UserError::NotFound);
}

#[tokio::test]
async fn reactivate_records_the_reactivation() {
    framework()
        .given(vec![created(), UserEvent::Deactivated])
        .when_async(UserCommand::Reactivate)
        .await
        .then_expect_events(vec![UserEvent::Reactivated]);
}

#[tokio::test]
async fn reactivating_an_active_user_records_nothing() {
    framework()
        .given(vec![created()])
        .when_async(UserCommand::Reactivate)
        .await
        .then_expect_events(vec![]);
}

#[tokio::test]
async fn reactivate_fails_for_an_unknown_user() {
    framework()
        .given_no_previous_events()
        .when_async(UserCommand::Reactivate)
        .await
        .then_expect_error(UserError::NotFound);
}

#[test]
fn an_email_change_clears_verification() {
    let mut user = User::default();
    cqrs_es::Aggregate::apply(&mut user, created());
    user.is_email_verified = true;
    cqrs_es::Aggregate::apply(
        &mut user,
        UserEvent::EmailChanged {
            email: "x@y.example".into(),
        },
    );
    assert_eq!(user.email, "x@y.example");
    assert!(!user.is_email_verified);
}

#[test]
fn events_serialize_to_their_stored_shape() {
    let json = serde_json::to_value(UserEvent::FirstNameChanged {
        first_name: "Ann".into(),
    })
    .unwrap();
    assert_eq!(
        json,
        serde_json::json!({"FirstNameChanged": {"first_name": "Ann"}})
    );
    assert_eq!(
        serde_json::to_value(UserEvent::Deactivated).unwrap(),
        serde_json::json!("Deactivated")
    );
}

#[tokio::test]
async fn set_flags_records_only_the_flags_that_change() {
    framework()
        .given(vec![created(), UserEvent::StaffGranted])
        .when_async(UserCommand::SetFlags {
            is_staff: Some(true),
            is_superuser: Some(true),
        })
        .await
        .then_expect_events(vec![UserEvent::SuperuserGranted]);
}

#[tokio::test]
async fn set_flags_revokes() {
    framework()
        .given(vec![
            created(),
            UserEvent::StaffGranted,
            UserEvent::SuperuserGranted,
        ])
        .when_async(UserCommand::SetFlags {
            is_staff: Some(false),
            is_superuser: Some(false),
        })
        .await
        .then_expect_events(vec![UserEvent::StaffRevoked, UserEvent::SuperuserRevoked]);
}

#[tokio::test]
async fn set_flags_fails_for_an_unknown_user() {
    framework()
        .given_no_previous_events()
        .when_async(UserCommand::SetFlags {
            is_staff: Some(true),
            is_superuser: None,
        })
        .await
        .then_expect_error(UserError::NotFound);
}

#[tokio::test]
async fn joining_a_group_records_the_new_set() {
    framework()
        .given(vec![created()])
        .when_async(UserCommand::JoinGroup("admin".into()))
        .await
        .then_expect_events(vec![UserEvent::GroupsChanged {
            groups: vec!["admin".into(), "viewer".into()],
        }]);
}

#[tokio::test]
async fn joining_a_group_twice_records_nothing() {
    framework()
        .given(vec![created()])
        .when_async(UserCommand::JoinGroup("viewer".into()))
        .await
        .then_expect_events(vec![]);
}

#[tokio::test]
async fn leaving_a_group_records_the_new_set() {
    framework()
        .given(vec![created()])
        .when_async(UserCommand::LeaveGroup("viewer".into()))
        .await
        .then_expect_events(vec![UserEvent::GroupsChanged { groups: vec![] }]);
}

#[tokio::test]
async fn leaving_a_group_one_is_not_in_records_nothing() {
    framework()
        .given(vec![created()])
        .when_async(UserCommand::LeaveGroup("admin".into()))
        .await
        .then_expect_events(vec![]);
}

#[tokio::test]
async fn group_changes_fail_for_an_unknown_user() {
    framework()
        .given_no_previous_events()
        .when_async(UserCommand::JoinGroup("admin".into()))
        .await
        .then_expect_error(UserError::NotFound);
}
