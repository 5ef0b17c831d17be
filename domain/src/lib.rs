//! The users domain: the `User` aggregate, its commands, events and rules.
//!
//! Pure decisions: no HTTP, no SQL. The only effect is password hashing, injected as a
//! service so the aggregate can be tested with cqrs-es's given/when/then `TestFramework`.

pub mod user;

pub use user::{
    aggregate::User,
    commands::{Changes, NewUser, UserCommand, UserPatch, UserUpdate},
    error::UserError,
    events::{PasswordHash, UserEvent},
    services::{Argon2Hasher, HashError, PasswordHasher, UserServices},
    values::{Email, Name, OrganisationId, Password, ValueError},
};
