//! The router with its layers, and an `Application` that binds it (port 0 in tests).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use axum::response::IntoResponse;
use axum::Router;
use domain::{Argon2Hasher, UserServices};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::auth::TokenKeys;
use crate::commands::CommandBus;
use crate::config::LoginThrottle;
use crate::error::ApiError;
use crate::routes;
use crate::state::AppState;

/// Everything the HTTP application needs, already resolved (no I/O left but binding).
pub struct Settings {
    pub pool: PgPool,
    pub bind: SocketAddr,
    pub jwt_secret: Vec<u8>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub hash_concurrency: usize,
    pub login_throttle: LoginThrottle,
}

/// The production router: tests build exactly this.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(routes::users::router())
        .merge(routes::history::router())
        .merge(routes::auth::router())
        .merge(routes::health::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|method: Method| async move {
            ApiError::MethodNotAllowed(method.to_string()).into_response()
        })
        .with_state(state)
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn(crate::request_id::middleware))
}

pub fn state(settings: &Settings) -> AppState {
    let hasher = Argon2Hasher::owasp(settings.hash_concurrency);
    AppState {
        pool: settings.pool.clone(),
        commands: CommandBus::new(
            settings.pool.clone(),
            UserServices::new(Arc::new(hasher.clone())),
        ),
        tokens: Arc::new(TokenKeys::new(
            &settings.jwt_secret,
            settings.access_token_ttl,
            settings.refresh_token_ttl,
        )),
        hasher,
        login_throttle: settings.login_throttle,
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    pub async fn build(settings: Settings) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.bind).await?;
        let router = app(state(&settings));
        Ok(Self { listener, router })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
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
