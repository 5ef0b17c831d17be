//! Past-tense facts about a user. Each carries only what changed. The variant names are the
//! stored `event_type` and never change once data exists; a payload change bumps
//! `event_version` and gets an upcaster.

use std::fmt;

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    Created {
        email: String,
        first_name: String,
        last_name: String,
        organisation_id: Option<i64>,
        is_admin: bool,
        is_staff: bool,
        is_superuser: bool,
        groups: Vec<String>,
        password_hash: PasswordHash,
    },
    EmailChanged {
        email: String,
    },
    FirstNameChanged {
        first_name: String,
    },
    LastNameChanged {
        last_name: String,
    },
    OrganisationChanged {
        organisation_id: Option<i64>,
    },
    AdminGranted,
    AdminRevoked,
    GroupsChanged {
        groups: Vec<String>,
    },
    Deactivated,
    Reactivated,
    StaffGranted,
    StaffRevoked,
    SuperuserGranted,
    SuperuserRevoked,
}

/// Every event type ever stored. Each has a fixture in `domain/tests/fixtures/events.json`
/// for every version, which must keep loading.
pub const EVENT_TYPES: [&str; 14] = [
    "Created",
    "EmailChanged",
    "FirstNameChanged",
    "LastNameChanged",
    "OrganisationChanged",
    "AdminGranted",
    "AdminRevoked",
    "GroupsChanged",
    "Deactivated",
    "Reactivated",
    "StaffGranted",
    "StaffRevoked",
    "SuperuserGranted",
    "SuperuserRevoked",
];

impl UserEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Created { .. } => "Created",
            Self::EmailChanged { .. } => "EmailChanged",
            Self::FirstNameChanged { .. } => "FirstNameChanged",
            Self::LastNameChanged { .. } => "LastNameChanged",
            Self::OrganisationChanged { .. } => "OrganisationChanged",
            Self::AdminGranted => "AdminGranted",
            Self::AdminRevoked => "AdminRevoked",
            Self::GroupsChanged { .. } => "GroupsChanged",
            Self::Deactivated => "Deactivated",
            Self::Reactivated => "Reactivated",
            Self::StaffGranted => "StaffGranted",
            Self::StaffRevoked => "StaffRevoked",
            Self::SuperuserGranted => "SuperuserGranted",
            Self::SuperuserRevoked => "SuperuserRevoked",
        }
    }
}

impl UserEvent {
    /// The fields this event set, as the audit history shows them. The password never
    /// appears, only `"[redacted]"`.
    pub fn changes(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::json;
        let pairs: Vec<(&str, serde_json::Value)> = match self {
            Self::Created {
                email,
                first_name,
                last_name,
                organisation_id,
                is_admin,
                is_staff,
                is_superuser,
                groups,
                password_hash: _,
            } => vec![
                ("email", json!(email)),
                ("first_name", json!(first_name)),
                ("last_name", json!(last_name)),
                ("organisation_id", json!(organisation_id)),
                ("is_admin", json!(is_admin)),
                ("is_staff", json!(is_staff)),
                ("is_superuser", json!(is_superuser)),
                ("is_active", json!(true)),
                ("groups", json!(groups)),
                ("password", json!("[redacted]")),
            ],
            Self::EmailChanged { email } => {
                vec![("email", json!(email)), ("is_email_verified", json!(false))]
            }
            Self::FirstNameChanged { first_name } => vec![("first_name", json!(first_name))],
            Self::LastNameChanged { last_name } => vec![("last_name", json!(last_name))],
            Self::OrganisationChanged { organisation_id } => {
                vec![("organisation_id", json!(organisation_id))]
            }
            Self::AdminGranted => vec![("is_admin", json!(true))],
            Self::AdminRevoked => vec![("is_admin", json!(false))],
            Self::GroupsChanged { groups } => vec![("groups", json!(groups))],
            Self::Deactivated => vec![("is_active", json!(false))],
            Self::Reactivated => vec![("is_active", json!(true))],
            Self::StaffGranted => vec![("is_staff", json!(true))],
            Self::StaffRevoked => vec![("is_staff", json!(false))],
            Self::SuperuserGranted => vec![("is_superuser", json!(true))],
            Self::SuperuserRevoked => vec![("is_superuser", json!(false))],
        };
        pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect()
    }
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        self.type_name().to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// An argon2id PHC string. Stored in the `Created` event; never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([redacted])")
    }
}
