//! Typed configuration from the environment (every field also a flag). Defaults are
//! documented in the README; secrets have none.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::app::Limits;
use crate::observability::LogFormat;

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

    /// Most connections to the database: three quarters (at least 1) for the reads and
    /// writes of users on the request path, the rest (at least 1) for everything else.
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

    /// Failed logins for one email within the window before further attempts get `429`
    /// (0: no limit).
    #[arg(long, env = "USERS_LOGIN_MAX_FAILURES_PER_EMAIL", default_value_t = 5)]
    pub login_max_failures_per_email: i64,

    /// Failed logins from one client address within the window before `429` (0: no limit).
    #[arg(
        long,
        env = "USERS_LOGIN_MAX_FAILURES_PER_CLIENT",
        default_value_t = 50
    )]
    pub login_max_failures_per_client: i64,

    /// The window failed logins are counted in, in seconds.
    #[arg(long, env = "USERS_LOGIN_FAILURE_WINDOW_SECS", default_value_t = 900)]
    pub login_failure_window_secs: i64,

    /// Log lines as human-readable text or one JSON object per line.
    #[arg(long, env = "USERS_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// A request taking longer than this answers `503`, in seconds.
    #[arg(long, env = "USERS_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Open client connections at most; further clients wait to be accepted.
    #[arg(long, env = "USERS_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// A client connection with no traffic for this long is closed, in seconds.
    #[arg(long, env = "USERS_CONNECTION_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub connection_idle_timeout_secs: u64,

    /// Password hashes computed at once (each takes one core for tens of ms). 0: one per core.
    #[arg(long, env = "USERS_HASH_CONCURRENCY", default_value_t = 0)]
    pub hash_concurrency: usize,
}

impl Config {
    pub fn limits(&self) -> Limits {
        Limits {
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            max_connections: self.max_connections.max(1),
            idle_timeout: Duration::from_secs(self.connection_idle_timeout_secs.max(1)),
        }
    }

    pub fn login_throttle(&self) -> LoginThrottle {
        LoginThrottle {
            max_failures_per_email: self.login_max_failures_per_email,
            max_failures_per_client: self.login_max_failures_per_client,
            window_secs: self.login_failure_window_secs.max(1),
        }
    }

    /// `USERS_DB_MAX_CONNECTIONS` shared out: (request-path connections, pool for the rest).
    pub fn db_connections(&self) -> (u32, u32) {
        let total = self.db_max_connections.max(2);
        let request_path = (total * 3 / 4).max(1);
        (request_path, total - request_path)
    }

    pub fn hash_concurrency(&self) -> usize {
        if self.hash_concurrency > 0 {
            self.hash_concurrency
        } else {
            std::thread::available_parallelism().map_or(2, usize::from)
        }
    }
}

/// Limits on failed logins (see the README).
#[derive(Debug, Clone, Copy)]
pub struct LoginThrottle {
    pub max_failures_per_email: i64,
    pub max_failures_per_client: i64,
    pub window_secs: i64,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self {
            max_failures_per_email: 5,
            max_failures_per_client: 50,
            window_secs: 900,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Config;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        config: Config,
    }

    fn split(max: &str) -> (u32, u32) {
        Args::try_parse_from(["users-service", "--db-max-connections", max])
            .unwrap()
            .config
            .db_connections()
    }

    #[test]
    fn the_connection_total_is_shared_three_quarters_to_one_quarter() {
        assert_eq!(split("16"), (12, 4));
        assert_eq!(split("10"), (7, 3));
        assert_eq!(split("3"), (2, 1));
        // At least one each.
        assert_eq!(split("2"), (1, 1));
        assert_eq!(split("1"), (1, 1));
    }
}
