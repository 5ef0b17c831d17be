//! Who may do what (API contract §4–5), decided from the caller as the database has them on
//! this request. A target outside the caller's scope is `404` (no existence leak); in scope
//! but not allowed is `403`.
//!
//! Decisions where the contract is open:
//! - PUT and PATCH are judged field by field, on the fields whose value actually changes:
//!   names need `change_user` (or being oneself), email and groups `change_user`, groups
//!   adding or removing `admin` also `is_admin`, `is_admin` needs `is_admin`,
//!   `organisation_id` a superuser, and `is_active` (either way) is a deactivation:
//!   `delete_user`, never on oneself. A write that changes nothing needs what a name change
//!   needs.
//! - `is_admin` counts as holding all four permissions, within the caller's organisation
//!   (the scope rule already confines it there).

use std::collections::BTreeSet;

use projections::users::{ListScope, UserView};

use crate::error::ApiError;

pub const VIEW_USER: &str = "view_user";
pub const ADD_USER: &str = "add_user";
pub const CHANGE_USER: &str = "change_user";
pub const DELETE_USER: &str = "delete_user";
pub const ADMIN_GROUP: &str = "admin";

/// The authenticated, active caller and their effective permissions.
pub struct Caller {
    pub user: UserView,
    permissions: BTreeSet<String>,
}

impl Caller {
    pub fn new(user: UserView) -> Self {
        let permissions = user
            .groups
            .iter()
            .flat_map(|group| group.permissions.iter().map(|p| p.codename.clone()))
            .collect();
        Self { user, permissions }
    }

    pub fn id(&self) -> i64 {
        self.user.id
    }

    pub fn organisation_id(&self) -> Option<i64> {
        self.user.organisation_id
    }

    fn is_superuser(&self) -> bool {
        self.user.is_superuser
    }

    fn is_admin(&self) -> bool {
        self.user.is_superuser || self.user.is_admin
    }

    /// Superusers hold every permission, organisation admins the four user permissions.
    fn holds(&self, codename: &str) -> bool {
        self.is_admin() || self.permissions.contains(codename)
    }

    fn is(&self, target: &UserView) -> bool {
        self.user.id == target.id
    }

    /// Superusers see everyone; others the users of their organisation (only themself when
    /// they have none).
    fn in_scope(&self, target: &UserView) -> bool {
        self.is_superuser()
            || self.is(target)
            || (self.user.organisation_id.is_some()
                && self.user.organisation_id == target.organisation_id)
    }
}

fn allow(allowed: bool) -> Result<(), ApiError> {
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

pub fn list_scope(caller: &Caller) -> ListScope {
    match caller.user.organisation_id {
        _ if caller.is_superuser() => ListScope::All,
        Some(organisation) if caller.holds(VIEW_USER) => ListScope::Organisation(organisation),
        _ => ListScope::OnlyUser(caller.id()),
    }
}

pub fn can_retrieve(caller: &Caller, target: &UserView) -> Result<(), ApiError> {
    if caller.is(target) {
        return Ok(());
    }
    if !caller.in_scope(target) {
        return Err(ApiError::NotFound);
    }
    allow(caller.holds(VIEW_USER))
}

/// Before the body is read: the caller may create users at all.
pub fn can_begin_create(caller: &Caller) -> Result<(), ApiError> {
    allow(caller.holds(ADD_USER))
}

/// `organisation_id` is the new user's, already defaulted to the caller's.
pub fn can_create(
    caller: &Caller,
    organisation_id: Option<i64>,
    groups: &BTreeSet<String>,
) -> Result<(), ApiError> {
    if caller.is_superuser() {
        return Ok(());
    }
    allow(
        caller.holds(ADD_USER)
            && organisation_id == caller.user.organisation_id
            && (caller.is_admin() || !groups.contains(ADMIN_GROUP)),
    )
}

/// What a PUT or PATCH would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Email,
    FirstName,
    LastName,
    Organisation,
    IsAdmin,
    IsActive,
    Groups { touches_admin: bool },
}

/// Before the body is read: the target must be in scope, and the caller must be able to
/// change something of it.
pub fn can_begin_change(caller: &Caller, target: &UserView) -> Result<(), ApiError> {
    if !caller.in_scope(target) {
        return Err(ApiError::NotFound);
    }
    allow(caller.is(target) || caller.holds(CHANGE_USER) || caller.holds(DELETE_USER))
}

pub fn can_change(caller: &Caller, target: &UserView, changed: &[Field]) -> Result<(), ApiError> {
    if !caller.in_scope(target) {
        return Err(ApiError::NotFound);
    }
    let myself = caller.is(target);
    let may = |field: &Field| match field {
        Field::FirstName | Field::LastName => myself || caller.holds(CHANGE_USER),
        Field::Email => caller.holds(CHANGE_USER),
        Field::Groups { touches_admin } => {
            caller.holds(CHANGE_USER) && (!touches_admin || caller.is_admin())
        }
        Field::Organisation => caller.is_superuser(),
        Field::IsAdmin => caller.is_admin(),
        Field::IsActive => !myself && caller.holds(DELETE_USER),
    };
    if changed.is_empty() {
        return allow(myself || caller.holds(CHANGE_USER));
    }
    allow(changed.iter().all(may))
}

/// DELETE deactivates: `delete_user` in scope, never oneself.
pub fn can_delete(caller: &Caller, target: &UserView) -> Result<(), ApiError> {
    if !caller.in_scope(target) {
        return Err(ApiError::NotFound);
    }
    allow(!caller.is(target) && caller.holds(DELETE_USER))
}
