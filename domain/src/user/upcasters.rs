//! Event evolution. Stored events are never rewritten: an old shape is lifted to the
//! current one as it is read, by the upcasters here, before it is deserialized.
//!
//! History of the shapes:
//! - `Created` version `0` (before flags and groups could be given at creation) had no
//!   `is_admin`, `is_staff`, `is_superuser` or `groups`; version `1` has them. The upcaster
//!   fills them with what a version-0 user had: `false` and no groups.

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde_json::{json, Value};

use super::events::UserEvent;

/// `Created` v0 → v1.
pub struct CreatedV0ToV1;

impl EventUpcaster for CreatedV0ToV1 {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        event_type == "Created" && event_version == "0"
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        if let Some(created) = event
            .payload
            .get_mut("Created")
            .and_then(Value::as_object_mut)
        {
            for flag in ["is_admin", "is_staff", "is_superuser"] {
                created.entry(flag).or_insert(json!(false));
            }
            created.entry("groups").or_insert(json!([]));
        }
        event.event_version = "1".to_owned();
        event
    }
}

/// Every upcaster, in the order they apply.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    vec![Box::new(CreatedV0ToV1)]
}

/// Reads a stored event of any known version as the current `UserEvent`.
pub fn decode(
    event_type: &str,
    event_version: &str,
    payload: Value,
) -> serde_json::Result<UserEvent> {
    let mut event = SerializedEvent::new(
        String::new(),
        0,
        "User".to_owned(),
        event_type.to_owned(),
        event_version.to_owned(),
        payload,
        Value::Null,
    );
    for upcaster in upcasters() {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            event = upcaster.upcast(event);
        }
    }
    serde_json::from_value(event.payload)
}
