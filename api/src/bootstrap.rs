//! Startup on a fresh machine: find or start PostgreSQL, create the database, apply the
//! migrations, provide a JWT secret, and make sure a first superuser exists.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};
use domain::{Email, Name, NewUser, Password, UserCommand};
use rand::distributions::{Alphanumeric, DistString as _};
use sqlx::migrate::MigrateDatabase as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{PgPool, Postgres};

use crate::commands::{CommandBus, CommandError, Metadata, Source};
use crate::config::{Config, DEFAULT_DATABASE_URL};

/// The database URL to use: `DATABASE_URL`, else the default if something answers there,
/// else a private PostgreSQL under the data directory (started if needed).
pub async fn database_url(config: &Config) -> anyhow::Result<String> {
    if let Some(url) = &config.database_url {
        return Ok(url.clone());
    }
    let default_answers = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect("127.0.0.1:5432"),
    )
    .await
    .is_ok_and(|connected| connected.is_ok());
    if default_answers {
        return Ok(DEFAULT_DATABASE_URL.to_owned());
    }
    let port = config.private_pg_port;
    let dir = start_private_postgres(&config.data_dir, port)?;
    tracing::warn!(
        data_dir = %dir.display(),
        port,
        "no DATABASE_URL and nothing answering on 127.0.0.1:5432: using a private PostgreSQL"
    );
    Ok(format!(
        "postgres://postgres@127.0.0.1:{port}/users_service"
    ))
}

/// The connection options of `url`. A URL that does not choose an `sslmode` gets sqlx's
/// default (`prefer`: TLS when the server offers it), except to a loopback address, where
/// TLS protects nothing and costs an encryption of every message both ways (it was ~10 %
/// of the service's CPU under load): there it is `disable`. `?sslmode=...` (or
/// `PGSSLMODE`) always wins.
pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options: PgConnectOptions = url.parse().context("DATABASE_URL is not a valid URL")?;
    let chooses_ssl = std::env::var_os("PGSSLMODE").is_some()
        || url.split_once('?').is_some_and(|(_, query)| {
            query
                .split('&')
                .any(|pair| pair.starts_with("sslmode=") || pair.starts_with("ssl-mode="))
        });
    let host = options.get_host();
    let loopback = host == "localhost"
        || host.starts_with('/')
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    // Every statement is prepared once per connection and then planned once: PostgreSQL's
    // default (`auto`) kept re-planning `id = ANY($1)` on every execution, because the
    // generic plan's estimate for an array of unknown length looked worse than the custom
    // ones. All our statements are index lookups whose plan does not depend on the values.
    let options = options.options([("plan_cache_mode", "force_generic_plan")]);
    Ok(if loopback && !chooses_ssl {
        options.ssl_mode(PgSslMode::Disable)
    } else {
        options
    })
}

/// Creates the database if missing, connects, and applies the migrations.
pub async fn connect_and_migrate(url: &str, config: &Config) -> anyhow::Result<PgPool> {
    if !Postgres::database_exists(url)
        .await
        .context("cannot reach PostgreSQL")?
    {
        tracing::info!("creating the database");
        if let Err(error) = Postgres::create_database(url).await {
            // Another instance starting at the same moment may have created it: PostgreSQL
            // fails the losing CREATE DATABASE only after the winner committed.
            if !Postgres::database_exists(url).await.unwrap_or(false) {
                return Err(error).context("cannot create the database");
            }
        }
    }
    // No ping before every acquire (sqlx's default): it is a round trip per query. A
    // connection that died while idle fails its next query instead, which answers 503 like
    // any outage and is then discarded, and the pool reconnects.
    // The request path's reads and writes of users have their own connections (see
    // `projections::connections`); this pool gets the rest.
    let pool = PgPoolOptions::new()
        .max_connections(config.db_connections().1)
        .acquire_timeout(Duration::from_secs(config.db_acquire_timeout_secs))
        .test_before_acquire(false)
        .connect_with(connect_options(url)?)
        .await
        .context("cannot connect to the database")?;
    projections::MIGRATOR
        .run(&pool)
        .await
        .context("cannot apply migrations")?;
    Ok(pool)
}

/// `USERS_JWT_SECRET`, or a secret generated once and kept (mode 0600) in the data directory.
pub fn jwt_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.jwt_secret {
        if secret.len() < 32 {
            bail!("USERS_JWT_SECRET must be at least 32 bytes long");
        }
        return Ok(secret.as_bytes().to_vec());
    }
    let path = config.data_dir.join("jwt_secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        tracing::warn!(path = %path.display(), "USERS_JWT_SECRET not set: using the kept secret");
        return Ok(secret.trim().as_bytes().to_vec());
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let secret = Alphanumeric.sample_string(&mut rand::rngs::OsRng, 64);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(secret.as_bytes())?;
    tracing::warn!(
        path = %path.display(),
        "USERS_JWT_SECRET not set: generated a secret and kept it; set USERS_JWT_SECRET in production"
    );
    Ok(secret.into_bytes())
}

/// On an empty store, creates a first superuser from `USERS_SUPERUSER_EMAIL` and
/// `USERS_SUPERUSER_PASSWORD`, generating (and printing once) a password if none is given.
pub async fn ensure_first_superuser(pool: &PgPool, bus: &CommandBus) -> anyhow::Result<()> {
    if projections::users::any_exist(pool).await? {
        return Ok(());
    }
    let email =
        std::env::var("USERS_SUPERUSER_EMAIL").unwrap_or_else(|_| "admin@example.com".into());
    let (password, generated) = match std::env::var("USERS_SUPERUSER_PASSWORD") {
        Ok(password) => (password, false),
        Err(_) => (Alphanumeric.sample_string(&mut rand::rngs::OsRng, 24), true),
    };
    match create_superuser(bus, &email, &password, "Admin", "User").await {
        Ok(id) => {
            tracing::info!(id, email = %email, "created the first superuser");
            if generated {
                // Shown once, on the terminal only: not a log line.
                eprintln!(
                    "\nFirst superuser: {email}\nGenerated password (shown once): {password}\n"
                );
            }
            Ok(())
        }
        // Another instance starting at the same time created it.
        Err(CommandError::EmailTaken) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Creates an active superuser (and staff member) through the ordinary write path.
pub async fn create_superuser(
    bus: &CommandBus,
    email: &str,
    password: &str,
    first_name: &str,
    last_name: &str,
) -> Result<i64, CommandError> {
    let invalid =
        |field: &str, e: domain::ValueError| CommandError::Invalid(format!("{field}: {e}"));
    let user = NewUser {
        email: Email::parse(email).map_err(|e| invalid("email", e))?,
        password: Password::parse(password).map_err(|e| invalid("password", e))?,
        first_name: Name::parse(first_name).map_err(|e| invalid("first name", e))?,
        last_name: Name::parse(last_name).map_err(|e| invalid("last name", e))?,
        organisation_id: None,
        groups: BTreeSet::new(),
        is_admin: false,
        is_staff: true,
        is_superuser: true,
    };
    let id = bus.next_user_id().await?;
    let metadata = Metadata {
        actor_id: None,
        request_id: uuid::Uuid::new_v4().to_string(),
        source: Source::Cli,
    };
    bus.execute(id, UserCommand::Create(user), &metadata, None)
        .await?;
    Ok(id)
}

/// Initialises (once) and starts a PostgreSQL cluster under `data_dir/postgres` from the
/// installed binaries. As root, `initdb` and the server refuse to run, so they run as the
/// `postgres` system user, which then owns that folder.
fn start_private_postgres(data_dir: &Path, port: u16) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(data_dir)?;
    let dir = std::fs::canonicalize(data_dir)?.join("postgres");
    let bin = postgres_bindir()?;
    let as_root = std::fs::metadata("/proc/self")?.uid() == 0;
    let run = |program: &str, args: &[&str]| -> anyhow::Result<bool> {
        let program = bin.join(program);
        let mut command = if as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", program.display()))?;
        if !output.status.success() {
            tracing::debug!(
                program = %program.display(),
                stderr = %String::from_utf8_lossy(&output.stderr),
                "command failed"
            );
        }
        Ok(output.status.success())
    };
    let dir_str = dir.to_string_lossy().into_owned();
    if !dir.join("PG_VERSION").exists() {
        std::fs::create_dir_all(&dir)?;
        if as_root {
            let chowned = Command::new("chown")
                .args(["-R", "postgres:postgres", &dir_str])
                .status()?;
            if !chowned.success() {
                bail!("cannot hand {dir_str} to the postgres user");
            }
        }
        tracing::info!(dir = %dir_str, "initialising a private PostgreSQL cluster");
        let args = [
            "-D",
            &dir_str,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ];
        if !run("initdb", &args)? {
            bail!("initdb failed for {dir_str}");
        }
    }
    if !run("pg_ctl", &["-D", &dir_str, "status"])? {
        let options = format!("-p {port} -c listen_addresses=127.0.0.1 -k {dir_str}");
        let log = format!("{dir_str}/server.log");
        if !run(
            "pg_ctl",
            &["-D", &dir_str, "-l", &log, "-w", "-o", &options, "start"],
        )? {
            bail!("cannot start the private PostgreSQL; see {log}");
        }
    }
    Ok(dir)
}

/// The folder of the installed PostgreSQL server binaries.
fn postgres_bindir() -> anyhow::Result<PathBuf> {
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| Some(e.ok()?.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .find(|dir| dir.join("initdb").exists())
        .context("no PostgreSQL server binaries found (looked for pg_config and /usr/lib/postgresql/*/bin)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssl_mode(url: &str) -> String {
        format!("{:?}", connect_options(url).unwrap().get_ssl_mode())
    }

    #[test]
    fn loopback_urls_skip_tls_unless_they_ask_for_it() {
        assert_eq!(ssl_mode("postgres://u@127.0.0.1:5432/db"), "Disable");
        assert_eq!(ssl_mode("postgres://u@localhost/db"), "Disable");
        assert_eq!(ssl_mode("postgres://u@[::1]:5432/db"), "Disable");
        assert_eq!(
            ssl_mode("postgres://u@127.0.0.1/db?sslmode=require"),
            "Require"
        );
        assert_eq!(ssl_mode("postgres://u@db.example.com/db"), "Prefer");
    }
}
