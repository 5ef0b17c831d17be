pub mod auth;
pub mod health;
pub mod history;
pub mod users;

use axum::routing::MethodRouter;
use axum::Router;

use crate::state::AppState;

/// Registers `path` and `path/` on one handler: the contract accepts both, no redirect.
pub fn route_both(
    router: Router<AppState>,
    path: &str,
    handler: MethodRouter<AppState>,
) -> Router<AppState> {
    router
        .route(path, handler.clone())
        .route(&format!("{path}/"), handler)
}
