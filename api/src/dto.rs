//! Request and response shapes of the users API, separate from domain and read-model types.

use std::collections::BTreeSet;

use domain::{Email, Name, NewUser, OrganisationId, Password, UserPatch, UserUpdate, ValueError};
use projections::groups::GroupView;
use projections::users::UserView;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::body::Fields;
use crate::error::ApiError;

/// The user object of the contract (§2): exactly these keys.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserResponse {
    pub id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub organisation_id: Option<i64>,
    pub is_admin: bool,
    pub is_staff: bool,
    pub is_active: bool,
    pub is_email_verified: bool,
    pub is_superuser: bool,
    /// RFC 3339 in UTC with microseconds, e.g. `2024-01-15T09:30:00.123456Z`.
    #[schema(format = DateTime)]
    pub created: String,
    /// The user's groups in name order, each with its permissions in codename order.
    pub groups: Vec<GroupResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Group)]
pub struct GroupResponse {
    pub name: String,
    pub permissions: Vec<PermissionResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Permission)]
pub struct PermissionResponse {
    pub codename: String,
    pub name: String,
}

impl From<UserView> for UserResponse {
    fn from(user: UserView) -> Self {
        Self {
            id: user.id,
            email: user.email,
            first_name: user.first_name,
            last_name: user.last_name,
            organisation_id: user.organisation_id,
            is_admin: user.is_admin,
            is_staff: user.is_staff,
            is_active: user.is_active,
            is_email_verified: user.is_email_verified,
            is_superuser: user.is_superuser,
            created: user.created.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            groups: user.groups.into_iter().map(GroupResponse::from).collect(),
        }
    }
}

/// RFC 3339 in UTC with microseconds and `Z`, as the contract shows times.
pub fn format_time(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl From<GroupView> for GroupResponse {
    fn from(group: GroupView) -> Self {
        Self {
            name: group.name,
            permissions: group
                .permissions
                .into_iter()
                .map(|p| PermissionResponse {
                    codename: p.codename,
                    name: p.name,
                })
                .collect(),
        }
    }
}

/// One page of users, `id` ascending.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UserPage)]
pub struct PageResponse {
    /// All users in the caller's scope.
    pub count: i64,
    /// Absolute URL of the next page, keeping the other query parameters.
    #[schema(format = "uri")]
    pub next: Option<String>,
    #[schema(format = "uri")]
    pub previous: Option<String>,
    pub results: Vec<UserResponse>,
}

/// Parses a raw value with a domain parser, recording the message under `field`.
fn parsed<T>(
    fields: &mut Fields<'_>,
    field: &str,
    raw: Option<String>,
    parse: impl Fn(&str) -> Result<T, ValueError>,
) -> Option<T> {
    match parse(&raw?) {
        Ok(value) => Some(value),
        Err(error) => {
            fields.error(field, error.to_string());
            None
        }
    }
}

fn organisation(fields: &mut Fields<'_>) -> Option<Option<OrganisationId>> {
    match fields.nullable_integer("organisation_id")? {
        None => Some(None),
        Some(raw) => match OrganisationId::parse(raw) {
            Ok(id) => Some(Some(id)),
            Err(error) => {
                fields.error("organisation_id", error.to_string());
                None
            }
        },
    }
}

/// The group names of `user_types`, de-duplicated. Whether they exist is checked against
/// the database by the caller.
fn user_types(fields: &mut Fields<'_>) -> Option<BTreeSet<String>> {
    fields
        .string_list("user_types")
        .map(|names| names.into_iter().collect())
}

/// A create body read field by field. Every field that failed is `None` and has its message
/// in the `Fields`; the email and groups are still to be checked against the database.
pub struct CreateDraft {
    pub email: Option<Email>,
    password: Option<Password>,
    first_name: Option<Name>,
    last_name: Option<Name>,
    organisation_id: Option<Option<OrganisationId>>,
    pub groups: Option<BTreeSet<String>>,
}

impl CreateDraft {
    pub fn read(fields: &mut Fields<'_>) -> Self {
        let raw = fields.required_string("email");
        let email = parsed(fields, "email", raw, Email::parse);
        let raw = fields.required_string("password");
        let password = parsed(fields, "password", raw, Password::parse);
        let raw = fields.required_string("first_name");
        let first_name = parsed(fields, "first_name", raw, Name::parse);
        let raw = fields.required_string("last_name");
        let last_name = parsed(fields, "last_name", raw, Name::parse);
        let organisation_id = if fields.contains("organisation_id") {
            organisation(fields)
        } else {
            Some(None)
        };
        let groups = if fields.contains("user_types") {
            user_types(fields)
        } else {
            Some(BTreeSet::new())
        };
        Self {
            email,
            password,
            first_name,
            last_name,
            organisation_id,
            groups,
        }
    }

    /// The new user, when every field was read.
    pub fn complete(self) -> Option<NewUser> {
        Some(NewUser {
            email: self.email?,
            password: self.password?,
            first_name: self.first_name?,
            last_name: self.last_name?,
            organisation_id: self.organisation_id?,
            groups: self.groups?,
            is_admin: false,
            is_staff: false,
            is_superuser: false,
        })
    }
}

/// A PUT body read field by field (see `CreateDraft`).
pub struct UpdateDraft {
    pub email: Option<Email>,
    first_name: Option<Name>,
    last_name: Option<Name>,
    organisation_id: Option<Option<Option<OrganisationId>>>,
    is_admin: Option<Option<bool>>,
    is_active: Option<Option<bool>>,
    pub groups: Option<Option<BTreeSet<String>>>,
}

impl UpdateDraft {
    pub fn read(fields: &mut Fields<'_>) -> Self {
        let raw = fields.required_string("email");
        let email = parsed(fields, "email", raw, Email::parse);
        let raw = fields.required_string("first_name");
        let first_name = parsed(fields, "first_name", raw, Name::parse);
        let raw = fields.required_string("last_name");
        let last_name = parsed(fields, "last_name", raw, Name::parse);
        Self {
            email,
            first_name,
            last_name,
            organisation_id: optional(fields, "organisation_id", organisation),
            is_admin: optional(fields, "is_admin", |f| f.boolean("is_admin")),
            is_active: optional(fields, "is_active", |f| f.boolean("is_active")),
            groups: optional(fields, "user_types", user_types),
        }
    }

    pub fn complete(self) -> Option<UserUpdate> {
        Some(UserUpdate {
            email: self.email?,
            first_name: self.first_name?,
            last_name: self.last_name?,
            organisation_id: self.organisation_id?,
            is_admin: self.is_admin?,
            is_active: self.is_active?,
            groups: self.groups?,
        })
    }
}

/// Reads a PATCH body; `None` when any field failed (messages in `fields`).
pub fn read_patch(fields: &mut Fields<'_>) -> Option<UserPatch> {
    let first_name = optional(fields, "first_name", |f| {
        let raw = f.string("first_name");
        parsed(f, "first_name", raw, Name::parse)
    });
    let last_name = optional(fields, "last_name", |f| {
        let raw = f.string("last_name");
        parsed(f, "last_name", raw, Name::parse)
    });
    // Every field is read before any is given up on, so all errors are reported at once.
    let organisation_id = optional(fields, "organisation_id", organisation);
    let is_admin = optional(fields, "is_admin", |f| f.boolean("is_admin"));
    let is_active = optional(fields, "is_active", |f| f.boolean("is_active"));
    Some(UserPatch {
        first_name: first_name?,
        last_name: last_name?,
        organisation_id: organisation_id?,
        is_admin: is_admin?,
        is_active: is_active?,
    })
}

/// An optional field: `Some(None)` when absent, `Some(Some(v))` when read, `None` when it
/// failed.
fn optional<T>(
    fields: &mut Fields<'_>,
    field: &str,
    read: impl FnOnce(&mut Fields<'_>) -> Option<T>,
) -> Option<Option<T>> {
    if fields.contains(field) {
        read(fields).map(Some)
    } else {
        Some(None)
    }
}

/// The login body: both fields required, as strings.
pub fn parse_login(body: &Map<String, Value>) -> Result<(String, String), ApiError> {
    let mut fields = Fields::new(body);
    let email = fields.required_string("email");
    let password = fields.required_string("password");
    for (field, value) in [("email", &email), ("password", &password)] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            fields.error(field, ValueError::Blank.to_string());
        }
    }
    fields.finish()?;
    Ok((email.unwrap_or_default(), password.unwrap_or_default()))
}
