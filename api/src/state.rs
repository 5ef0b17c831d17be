use std::sync::Arc;

use domain::Argon2Hasher;
use projections::users::ReadModel;
use sqlx::PgPool;

use crate::auth::TokenKeys;
use crate::commands::CommandBus;
use crate::config::LoginThrottle;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// Reads of the users read model (shares its group cache with `commands`).
    pub read: ReadModel,
    pub commands: CommandBus,
    pub tokens: Arc<TokenKeys>,
    pub hasher: Argon2Hasher,
    pub login_throttle: LoginThrottle,
    /// Key of the idempotency fingerprints (derived from the JWT secret).
    pub idempotency_secret: Arc<[u8]>,
}
