pub mod auth;
pub mod docs;
pub mod health;
pub mod history;
pub mod users;

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter};
use axum::Router;

use crate::state::AppState;

/// The router together with the table of what it serves. Every route goes through
/// [`Routes::add`], so the table is exactly the router's content; a test compares it with
/// the OpenAPI document, both ways.
pub struct Routes {
    router: Router<AppState>,
    table: Vec<(Method, &'static str)>,
}

impl Routes {
    fn new() -> Self {
        Self {
            router: Router::new(),
            table: Vec::new(),
        }
    }

    /// Serves `method path` and `method path/` with one handler: the contract accepts both,
    /// without a redirect.
    pub fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|_| panic!("unsupported method {method} for {path}"));
        let route = on(filter, handler);
        self.router = self
            .router
            .route(path, route.clone())
            .route(&format!("{path}/"), route);
        self.table.push((method, path));
        self
    }

    /// `(method, path)` of every route, paths in the OpenAPI form (`/api/v1/users/{id}`),
    /// without the trailing-slash twins.
    pub fn table(&self) -> &[(Method, &'static str)] {
        &self.table
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

/// Every route of the service.
pub fn all() -> Routes {
    let routes = Routes::new();
    let routes = users::routes(routes);
    let routes = history::routes(routes);
    let routes = auth::routes(routes);
    let routes = health::routes(routes);
    docs::routes(routes)
}
