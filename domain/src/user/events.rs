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
