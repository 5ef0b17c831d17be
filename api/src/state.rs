use std::sync::Arc;

use domain::Argon2Hasher;
use sqlx::PgPool;

use crate::auth::TokenKeys;
use crate::commands::CommandBus;
use crate::config::LoginThrottle;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub commands: CommandBus,
    pub tokens: Arc<TokenKeys>,
    pub hasher: Argon2Hasher,
    pub login_throttle: LoginThrottle,
    /// Key of the idempotency fingerprints (derived from the JWT secret).
    pub idempotency_secret: Arc<[u8]>,
}
