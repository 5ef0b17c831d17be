//! Typed configuration from the environment (every field also a flag). Defaults are
//! documented in the README; secrets have none.

use std::net::SocketAddr;
use std::path::PathBuf;

/// The database URL used when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/users_service";

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// PostgreSQL URL. Unset: the default above, or a private PostgreSQL under the data
    /// directory when nothing answers there.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Address the HTTP server listens on.
    #[arg(long, env = "USERS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// HS256 signing key for JWTs. Unset: generated once and kept in the data directory.
    #[arg(long, env = "USERS_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "USERS_ACCESS_TOKEN_TTL_SECS", default_value_t = 15 * 60)]
    pub access_token_ttl_secs: u64,

    /// Lifetime of refresh tokens, in seconds.
    #[arg(long, env = "USERS_REFRESH_TOKEN_TTL_SECS", default_value_t = 24 * 60 * 60)]
    pub refresh_token_ttl_secs: u64,

    /// Maximum connections in the database pool.
    #[arg(long, env = "USERS_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// How long a request waits for a database connection before answering `503`.
    #[arg(long, env = "USERS_DB_ACQUIRE_TIMEOUT_SECS", default_value_t = 5)]
    pub db_acquire_timeout_secs: u64,

    /// Where generated state lives: the JWT secret and the private PostgreSQL, if any.
    #[arg(long, env = "USERS_DATA_DIR", default_value = ".data")]
    pub data_dir: PathBuf,

    /// Port of the private PostgreSQL started when no database answers.
    #[arg(long, env = "USERS_PRIVATE_PG_PORT", default_value_t = 54329)]
    pub private_pg_port: u16,

    /// Password hashes computed at once (each takes one core for tens of ms). 0: one per core.
    #[arg(long, env = "USERS_HASH_CONCURRENCY", default_value_t = 0)]
    pub hash_concurrency: usize,
}

impl Config {
    pub fn hash_concurrency(&self) -> usize {
        if self.hash_concurrency > 0 {
            self.hash_concurrency
        } else {
            std::thread::available_parallelism().map_or(2, usize::from)
        }
    }
}
