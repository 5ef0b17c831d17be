//! Every event type and version ever stored must still load and apply.

use std::collections::BTreeSet;

use cqrs_es::Aggregate;
use domain::user::events::EVENT_TYPES;
use domain::user::upcasters::decode;
use domain::{User, UserEvent};
use serde_json::Value;

fn fixtures() -> Vec<(String, String, Value)> {
    let text = include_str!("fixtures/events.json");
    let fixtures: Vec<Value> = serde_json::from_str(text).expect("fixture file is JSON");
    fixtures
        .into_iter()
        .map(|f| {
            (
                f["event_type"].as_str().unwrap().to_owned(),
                f["event_version"].as_str().unwrap().to_owned(),
                f["payload"].clone(),
            )
        })
        .collect()
}

#[test]
fn every_event_type_has_a_fixture() {
    let covered: BTreeSet<String> = fixtures().into_iter().map(|(t, _, _)| t).collect();
    let all: BTreeSet<String> = EVENT_TYPES.iter().map(|t| t.to_string()).collect();
    assert_eq!(covered, all);
}

#[test]
fn every_stored_event_still_loads_and_applies() {
    let mut user = User::default();
    for (event_type, version, payload) in fixtures() {
        let event = decode(&event_type, &version, payload)
            .unwrap_or_else(|e| panic!("{event_type} v{version} no longer loads: {e}"));
        assert_eq!(event.type_name(), event_type, "v{version}");
        user.apply(event);
    }
    // The fixtures, applied in file order, tell one life.
    assert!(user.exists);
    assert_eq!(user.email, "jane@new.example");
    assert_eq!(
        (user.first_name.as_str(), user.last_name.as_str()),
        ("Janet", "Doe")
    );
    assert_eq!(user.organisation_id, None);
    assert!(!user.is_admin && !user.is_staff && !user.is_superuser);
    assert!(user.is_active);
    assert_eq!(
        user.groups.iter().map(String::as_str).collect::<Vec<_>>(),
        ["admin", "viewer"]
    );
}

#[test]
fn a_version_0_created_is_upcast_with_no_flags_and_no_groups() {
    let (_, _, payload) = fixtures()
        .into_iter()
        .find(|(t, v, _)| t == "Created" && v == "0")
        .unwrap();
    let event = decode("Created", "0", payload).unwrap();
    match event {
        UserEvent::Created {
            email,
            is_admin,
            is_staff,
            is_superuser,
            groups,
            organisation_id,
            ..
        } => {
            assert_eq!(email, "old@example.com");
            assert_eq!(organisation_id, Some(3));
            assert!(!is_admin && !is_staff && !is_superuser);
            assert!(groups.is_empty());
        }
        other => panic!("not a Created: {other:?}"),
    }
}

#[test]
fn current_events_round_trip_through_their_stored_form() {
    for (event_type, version, payload) in fixtures().into_iter().filter(|(_, v, _)| v == "1") {
        let event = decode(&event_type, &version, payload.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            payload,
            "{event_type}"
        );
        assert_eq!(cqrs_es::DomainEvent::event_version(&event), "1");
    }
}
