//! Logs and metrics: one access-log line per request (request id, method, route, status,
//! latency), text or JSON (`USERS_LOG_FORMAT`), and Prometheus metrics for `/metrics`.
//!
//! Metric names (all labels are bounded: routes are the router's templates, never raw
//! paths):
//! - `http_requests_total{method,route,status}` and
//!   `http_request_duration_seconds{method,route,status}` (histogram);
//! - `commands_total{command,outcome}`: every decision of a command, `ok`, `conflict` (lost
//!   a race: decided again, or `409` after the last attempt), `rejected` (by the domain) or
//!   `error`; and `command_conflicts_total{command}`, the lost races alone;
//! - `db_pool_connections{state}` (`in_use`, `idle`, `max`) and the same for the request
//!   path's own connections, `db_request_connections{state}`, read at scrape time;
//! - `login_failures_total`, `login_throttled_total`.

use std::collections::HashSet;
use std::sync::{OnceLock, PoisonError, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use projections::connections::Connections;

use crate::log_writer::{BatchedWriter, FlushGuard};
use crate::request_id::RequestId;

/// Latency buckets in seconds: from a cached read to a slow password hash.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the request's span fields.
    Json,
}

/// Installs the log subscriber once (later calls do nothing), writing to stderr in batches
/// from a background thread ([`crate::log_writer`]: nothing is dropped). The filter comes
/// from `RUST_LOG`, by default `info` for the service and `warn` for sqlx. Keep the returned
/// guard until exit: dropping it writes out the last lines.
pub fn init_logging(format: LogFormat) -> std::io::Result<FlushGuard> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = BatchedWriter::start(std::io::stderr())?;
    install_logging(format, filter, ansi, writer);
    Ok(guard)
}

/// Installs the global log subscriber writing to `writer`; `false` if one was installed
/// already.
pub fn install_logging<W>(format: LogFormat, filter: EnvFilter, ansi: bool, writer: W) -> bool
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.try_init().is_ok(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init()
            .is_ok(),
    }
}

/// The process-wide Prometheus recorder, installed on first use. Every application in the
/// process (tests run several) reports into it.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .expect("latency buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed; then nothing is recorded here.
        let _ = metrics::set_global_recorder(recorder);
        // Histograms buffer every sample until upkeep folds them into their buckets, which
        // otherwise happens only when `/metrics` is scraped: without a scraper that buffer
        // would grow by a few bytes per request forever.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".to_owned())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            });
        handle
    })
}

/// The route label of a request: the matched template without the trailing-slash twin's
/// slash, or `unmatched` (a raw path would make the label set unbounded). Interned: the
/// router has a fixed set of templates, so labels cost no allocation per request.
fn route_label(request: &Request) -> &'static str {
    static ROUTES: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let Some(path) = request.extensions().get::<MatchedPath>() else {
        return "unmatched";
    };
    let path = path.as_str();
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let routes = ROUTES.get_or_init(RwLock::default);
    if let Some(known) = routes
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(path)
    {
        return known;
    }
    let mut routes = routes.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = routes.get(path) {
        return known;
    }
    let interned: &'static str = Box::leak(path.to_owned().into_boxed_str());
    routes.insert(interned);
    interned
}

/// A status code's label without formatting it per request (codes outside 100..=999 are
/// not produced by hyper).
fn status_label(status: u16) -> &'static str {
    static LABELS: OnceLock<Vec<&'static str>> = OnceLock::new();
    let labels = LABELS.get_or_init(|| {
        (0..1000_u16)
            .map(|code| &*Box::leak(code.to_string().into_boxed_str()))
            .collect()
    });
    labels.get(usize::from(status)).copied().unwrap_or("other")
}

/// Logs and counts every request. Runs inside the request-id middleware.
pub async fn middleware(request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Bounded: any extension method counts as `other`.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let route = route_label(&request);
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    let response = next.run(request).await;
    let latency = started.elapsed();
    let status = response.status().as_u16();
    let labels = [
        ("method", method),
        ("route", route),
        ("status", status_label(status)),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(latency.as_secs_f64());
    tracing::info!(
        target: "access",
        request_id,
        method,
        route,
        status,
        latency_ms = latency.as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// Counts a command's outcome.
pub fn command_outcome(command: &'static str, outcome: &'static str) {
    metrics::counter!("commands_total", "command" => command, "outcome" => outcome).increment(1);
}

/// Counts a lost race for one command.
pub fn command_conflict(command: &'static str) {
    metrics::counter!("command_conflicts_total", "command" => command).increment(1);
}

pub fn login_failure() {
    metrics::counter!("login_failures_total").increment(1);
}

pub fn login_throttled() {
    metrics::counter!("login_throttled_total").increment(1);
}

/// The text exposition, with the connection gauges read now.
pub fn render(pool: &sqlx::PgPool, request_path: &Connections) -> String {
    connection_gauges("db_request_connections", request_path.usage());
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
    connection_gauges(
        "db_pool_connections",
        (
            pool.size().saturating_sub(idle),
            idle,
            pool.options().get_max_connections(),
        ),
    );
    let handle = metrics();
    handle.run_upkeep();
    handle.render()
}

/// The `state` gauges (`in_use`, `idle`, `max`) of one set of database connections.
fn connection_gauges(name: &'static str, (in_use, idle, max): (u32, u32, u32)) {
    metrics::gauge!(name, "state" => "in_use").set(f64::from(in_use));
    metrics::gauge!(name, "state" => "idle").set(f64::from(idle));
    metrics::gauge!(name, "state" => "max").set(f64::from(max));
}
