//! What callers ask of a user. Built from parsed values only, so every command is valid in
//! shape; whether it is allowed for the current state is the aggregate's decision.

use std::collections::BTreeSet;

use super::values::{Email, Name, OrganisationId, Password};

#[derive(Debug, Clone)]
pub enum UserCommand {
    Create(NewUser),
    /// Full update (PUT): email and names given; omitted optional fields stay as they are.
    Update(UserUpdate),
    /// Partial update (PATCH): every field optional.
    Patch(UserPatch),
    Deactivate,
    Reactivate,
    /// Staff and superuser flags: the CLI's, never the API's.
    SetFlags {
        is_staff: Option<bool>,
        is_superuser: Option<bool>,
    },
    /// Adds the user to an existing group (the caller checks it exists).
    JoinGroup(String),
    LeaveGroup(String),
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub password: Password,
    pub first_name: Name,
    pub last_name: Name,
    pub organisation_id: Option<OrganisationId>,
    /// Names of existing groups (the caller checks they exist).
    pub groups: BTreeSet<String>,
    pub is_admin: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
}

#[derive(Debug, Clone)]
pub struct UserUpdate {
    pub email: Email,
    pub first_name: Name,
    pub last_name: Name,
    /// `None`: leave as is; `Some(None)`: clear.
    pub organisation_id: Option<Option<OrganisationId>>,
    pub is_admin: Option<bool>,
    pub is_active: Option<bool>,
    /// When given, replaces the user's groups.
    pub groups: Option<BTreeSet<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub first_name: Option<Name>,
    pub last_name: Option<Name>,
    pub organisation_id: Option<Option<OrganisationId>>,
    pub is_admin: Option<bool>,
    pub is_active: Option<bool>,
}

impl UserCommand {
    /// The command's name, for metrics and logs (never its values).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Create(_) => "Create",
            Self::Update(_) => "Update",
            Self::Patch(_) => "Patch",
            Self::Deactivate => "Deactivate",
            Self::Reactivate => "Reactivate",
            Self::SetFlags { .. } => "SetFlags",
            Self::JoinGroup(_) => "JoinGroup",
            Self::LeaveGroup(_) => "LeaveGroup",
        }
    }

    /// The fields a PUT or PATCH asks for; `None` for other commands.
    pub fn changes(&self) -> Option<Changes> {
        match self {
            Self::Update(update) => Some(update.clone().into()),
            Self::Patch(patch) => Some(patch.clone().into()),
            _ => None,
        }
    }
}

/// The common shape of PUT and PATCH: every field a change that may or may not differ.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub email: Option<Email>,
    pub first_name: Option<Name>,
    pub last_name: Option<Name>,
    pub organisation_id: Option<Option<OrganisationId>>,
    pub is_admin: Option<bool>,
    pub is_active: Option<bool>,
    pub groups: Option<BTreeSet<String>>,
}

impl From<UserUpdate> for Changes {
    fn from(update: UserUpdate) -> Self {
        Self {
            email: Some(update.email),
            first_name: Some(update.first_name),
            last_name: Some(update.last_name),
            organisation_id: update.organisation_id,
            is_admin: update.is_admin,
            is_active: update.is_active,
            groups: update.groups,
        }
    }
}

impl From<UserPatch> for Changes {
    fn from(patch: UserPatch) -> Self {
        Self {
            email: None,
            first_name: patch.first_name,
            last_name: patch.last_name,
            organisation_id: patch.organisation_id,
            is_admin: patch.is_admin,
            is_active: patch.is_active,
            groups: None,
        }
    }
}
