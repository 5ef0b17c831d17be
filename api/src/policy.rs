//! Who may do what. Interim rule until the authorization issue lands: a superuser may do
//! everything; any other authenticated user may only retrieve (and list) themself. Targets
//! outside the caller's scope answer `404` so existence does not leak.

use projections::users::{ListScope, UserView};

use crate::error::ApiError;

pub fn list_scope(caller: &UserView) -> ListScope {
    if caller.is_superuser {
        ListScope::All
    } else {
        ListScope::OnlyUser(caller.id)
    }
}

fn in_scope(caller: &UserView, target: &UserView) -> bool {
    caller.is_superuser || caller.id == target.id
}

pub fn can_retrieve(caller: &UserView, target: &UserView) -> Result<(), ApiError> {
    if in_scope(caller, target) {
        Ok(())
    } else {
        Err(ApiError::NotFound)
    }
}

pub fn can_create(caller: &UserView) -> Result<(), ApiError> {
    if caller.is_superuser {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

/// PUT, PATCH and DELETE.
pub fn can_change(caller: &UserView, target: &UserView) -> Result<(), ApiError> {
    if !in_scope(caller, target) {
        Err(ApiError::NotFound)
    } else if caller.is_superuser {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

/// Nobody deactivates themself: it would lock the caller out, possibly the last superuser.
pub fn can_deactivate(caller: &UserView, target: &UserView) -> Result<(), ApiError> {
    if caller.id == target.id {
        Err(ApiError::Forbidden)
    } else {
        Ok(())
    }
}
