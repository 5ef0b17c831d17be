//! The router with its layers, and an `Application` that binds it (port 0 in tests).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use axum::response::IntoResponse;
use axum::Router;

use domain::{Argon2Hasher, UserServices};
use projections::connections::Connections;
use projections::users::ReadModel;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::auth::TokenKeys;
use crate::commands::CommandBus;
use crate::config::LoginThrottle;
use crate::error::ApiError;
use crate::limits::LimitedListener;
use crate::routes;
use crate::state::AppState;

/// Everything the HTTP application needs, already resolved (no I/O left but binding).
pub struct Settings {
    /// For everything but the request path's reads and writes of users.
    pub pool: PgPool,
    /// How many connections those reads and writes may open (with `pool`'s options).
    pub request_connections: u32,
    pub bind: SocketAddr,
    pub jwt_secret: Vec<u8>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub hash_concurrency: usize,
    pub login_throttle: LoginThrottle,
    pub limits: Limits,
}

/// Limits on requests and connections (see [`crate::limits`] and the README).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request taking longer answers `503`.
    pub request_timeout: Duration,
    /// Open connections at most; more wait to be accepted.
    pub max_connections: usize,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The production router: tests build exactly this. Layers, outermost first: request id,
/// access log and metrics, request timeout, the handler's own task, then the route.
pub fn app(state: AppState, request_timeout: Duration) -> Router {
    crate::observability::metrics(); // installed before the first request counts
    routes::all()
        .into_router()
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|method: Method| async move {
            ApiError::MethodNotAllowed(method.to_string()).into_response()
        })
        .with_state(state)
        .layer(axum::middleware::from_fn(crate::limits::run_to_completion))
        .layer(axum::middleware::from_fn_with_state(
            request_timeout,
            crate::limits::timeout_middleware,
        ))
        .layer(axum::middleware::from_fn(crate::observability::middleware))
        .layer(axum::middleware::from_fn(crate::request_id::middleware))
}

pub fn state(settings: &Settings) -> AppState {
    let hasher = Argon2Hasher::owasp(settings.hash_concurrency);
    let read = ReadModel::with_connections(
        settings.pool.clone(),
        Connections::like(&settings.pool, settings.request_connections),
    );
    AppState {
        pool: settings.pool.clone(),
        commands: CommandBus::with_read_model(
            read.clone(),
            UserServices::new(Arc::new(hasher.clone())),
        ),
        read,
        tokens: Arc::new(TokenKeys::new(
            &settings.jwt_secret,
            settings.access_token_ttl,
            settings.refresh_token_ttl,
        )),
        hasher,
        login_throttle: settings.login_throttle,
        idempotency_secret: settings.jwt_secret.clone().into(),
    }
}

pub struct Application {
    listener: LimitedListener,
    local_addr: SocketAddr,
    router: Router,
}

impl Application {
    pub async fn build(settings: Settings) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.bind).await?;
        let local_addr = listener.local_addr()?;
        let limits = settings.limits;
        let listener = LimitedListener::new(listener, limits.max_connections, limits.idle_timeout);
        let router = app(state(&settings), limits.request_timeout);
        Ok(Self {
            listener,
            local_addr,
            router,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let service = self
            .router
            .into_make_service_with_connect_info::<crate::limits::PeerAddr>();
        axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
