//! The `users-service` command line: `serve` (the default), `migrate`, `create-superuser`.

use std::io::{BufRead as _, IsTerminal as _};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use domain::{Argon2Hasher, UserCommand, UserServices};
use std::sync::Arc;

use crate::app::{shutdown_signal, Application, Settings};
use crate::bootstrap;
use crate::commands::{CommandBus, Metadata, Source};
use crate::config::Config;

#[derive(Debug, Parser)]
#[command(name = "users-service", version, about = "Event-sourced users service")]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (the default): creates the database and applies migrations first.
    Serve,
    /// Create the database if missing and apply migrations, then exit.
    Migrate,
    /// Create a superuser. The password comes from USERS_SUPERUSER_PASSWORD or standard
    /// input, never from the command line.
    CreateSuperuser {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Admin")]
        first_name: String,
        #[arg(long, default_value = "User")]
        last_name: String,
    },
    /// Print a user's history from the event store (works with the read model empty).
    Audit {
        /// The user id.
        id: i64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild or verify the read model from the event log.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Manage groups and users' membership of them.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Set or clear a user's staff and superuser flags (never possible through the API).
    #[command(group(
        clap::ArgGroup::new("flags")
            .required(true)
            .multiple(true)
            .args(["staff", "no_staff", "superuser", "no_superuser"])
    ))]
    SetFlags {
        #[arg(long)]
        email: String,
        #[arg(long, conflicts_with = "no_staff")]
        staff: bool,
        #[arg(long)]
        no_staff: bool,
        #[arg(long, conflicts_with = "no_superuser")]
        superuser: bool,
        #[arg(long)]
        no_superuser: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Build fresh read-model tables from the whole log, catch up, and swap them in while
    /// the API keeps serving. Safe to interrupt and rerun.
    Rebuild,
    /// Replay the log and compare with the live tables: prints each difference, exits 1 if
    /// there is any.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List the groups with their permissions.
    List,
    /// Create a group with the given permissions.
    Create {
        name: String,
        /// A permission codename (view_user, add_user, change_user, delete_user); repeatable.
        #[arg(long = "permission", num_args = 1..)]
        permissions: Vec<String>,
    },
    /// Add a user to a group.
    Grant {
        group: String,
        #[arg(long)]
        email: String,
    },
    /// Remove a user from a group.
    Revoke {
        group: String,
        #[arg(long)]
        email: String,
    },
}

pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    let _log_writer = match crate::observability::init_logging(cli.config.log_format) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("error: cannot start the log writer thread: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.config).await,
        Command::Migrate => migrate(&cli.config).await,
        Command::CreateSuperuser {
            email,
            first_name,
            last_name,
        } => create_superuser(&cli.config, &email, &first_name, &last_name).await,
        Command::Groups(command) => groups(&cli.config, command).await,
        Command::Audit { id, json } => crate::admin::audit(&cli.config, id, json).await,
        Command::Projections(ProjectionsCommand::Rebuild) => {
            crate::admin::rebuild(&cli.config).await
        }
        Command::Projections(ProjectionsCommand::Verify) => {
            match crate::admin::verify(&cli.config).await {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::FAILURE,
                Err(error) => Err(error),
            }
        }
        Command::SetFlags {
            email,
            staff,
            no_staff,
            superuser,
            no_superuser,
        } => {
            let flag = |on: bool, off: bool| (on || off).then_some(on);
            let command = UserCommand::SetFlags {
                is_staff: flag(staff, no_staff),
                is_superuser: flag(superuser, no_superuser),
            };
            change_user(&cli.config, &email, command).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let url = bootstrap::database_url(config).await?;
    let pool = bootstrap::connect_and_migrate(&url, config).await?;
    let jwt_secret = bootstrap::jwt_secret(config)?;
    let settings = Settings {
        pool: pool.clone(),
        request_connections: config.db_connections().0,
        bind: config.bind,
        jwt_secret,
        access_token_ttl: Duration::from_secs(config.access_token_ttl_secs),
        refresh_token_ttl: Duration::from_secs(config.refresh_token_ttl_secs),
        hash_concurrency: config.hash_concurrency(),
        login_throttle: config.login_throttle(),
        limits: config.limits(),
    };
    let application = Application::build(settings)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    bootstrap::ensure_first_superuser(&pool, &command_bus(&pool, config)).await?;
    tokio::spawn(delete_expired_idempotency_keys(pool.clone()));
    tracing::info!(address = %application.local_addr()?, "users service listening");
    application.run_until(shutdown_signal()).await?;
    pool.close().await;
    Ok(())
}

/// Forgets idempotency keys past their 24 hours, hourly (expired keys are ignored anyway;
/// this only keeps the table small).
async fn delete_expired_idempotency_keys(pool: sqlx::PgPool) {
    let mut every_hour = tokio::time::interval(Duration::from_secs(60 * 60));
    loop {
        every_hour.tick().await;
        match projections::idempotency::delete_expired(&pool, crate::idempotency::TTL_SECS).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "expired idempotency keys deleted"),
            Err(error) => tracing::warn!(%error, "could not delete expired idempotency keys"),
        }
    }
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let url = bootstrap::database_url(config).await?;
    bootstrap::connect_and_migrate(&url, config).await?;
    println!("migrations applied");
    Ok(())
}

async fn create_superuser(
    config: &Config,
    email: &str,
    first_name: &str,
    last_name: &str,
) -> anyhow::Result<()> {
    let password = match std::env::var("USERS_SUPERUSER_PASSWORD") {
        Ok(password) => password,
        Err(_) => read_password()?,
    };
    let url = bootstrap::database_url(config).await?;
    let pool = bootstrap::connect_and_migrate(&url, config).await?;
    let id = bootstrap::create_superuser(
        &command_bus(&pool, config),
        email,
        &password,
        first_name,
        last_name,
    )
    .await
    .map_err(|error| match error {
        crate::commands::CommandError::EmailTaken => {
            anyhow::anyhow!("a user with this email already exists")
        }
        other => other.into(),
    })?;
    println!("created superuser {email} with id {id}");
    Ok(())
}

async fn groups(config: &Config, command: GroupsCommand) -> anyhow::Result<()> {
    let pool = connect(config).await?;
    match &command {
        GroupsCommand::List => {
            for group in projections::groups::list_all(&pool).await? {
                let codenames: Vec<&str> = group
                    .permissions
                    .iter()
                    .map(|p| p.codename.as_str())
                    .collect();
                println!("{}\t{}", group.name, codenames.join(","));
            }
            Ok(())
        }
        GroupsCommand::Create { name, permissions } => {
            projections::groups::create(&pool, name, permissions).await?;
            println!("created group {}", name.trim());
            Ok(())
        }
        GroupsCommand::Grant { group, email } | GroupsCommand::Revoke { group, email } => {
            let granting = matches!(command, GroupsCommand::Grant { .. });
            if !projections::groups::unknown(&pool, std::slice::from_ref(group))
                .await?
                .is_empty()
            {
                anyhow::bail!("no group named {group:?}");
            }
            let command = if granting {
                UserCommand::JoinGroup(group.clone())
            } else {
                UserCommand::LeaveGroup(group.clone())
            };
            change_user_on(&pool, config, email, command).await
        }
    }
}

pub(crate) async fn connect(config: &Config) -> anyhow::Result<sqlx::PgPool> {
    let url = bootstrap::database_url(config).await?;
    bootstrap::connect_and_migrate(&url, config).await
}

/// Runs a command on the user with `email`, recorded with `source: cli`.
async fn change_user(config: &Config, email: &str, command: UserCommand) -> anyhow::Result<()> {
    let pool = connect(config).await?;
    change_user_on(&pool, config, email, command).await
}

async fn change_user_on(
    pool: &sqlx::PgPool,
    config: &Config,
    email: &str,
    command: UserCommand,
) -> anyhow::Result<()> {
    let id = projections::users::id_by_email(pool, email)
        .await?
        .with_context(|| format!("no user with email {email}"))?;
    let metadata = Metadata {
        actor_id: None,
        request_id: uuid::Uuid::new_v4().to_string(),
        source: Source::Cli,
    };
    command_bus(pool, config)
        .execute(id, command, &metadata, None)
        .await?;
    println!("updated user {id} ({email})");
    Ok(())
}

fn command_bus(pool: &sqlx::PgPool, config: &Config) -> CommandBus {
    let hasher = Argon2Hasher::owasp(config.hash_concurrency());
    CommandBus::new(pool.clone(), UserServices::new(Arc::new(hasher)))
}

/// One line from standard input; without echo on a terminal.
fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password("Password: ").context("cannot read the password");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
