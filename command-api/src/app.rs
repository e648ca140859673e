//! Start-up, the router, middleware and graceful shutdown.

use crate::api_log::ApiLogs;
use crate::config::Config;
use crate::disk::DiskGuard;
use crate::error::ApiError;
use crate::master_key::{self, MasterKey};
use crate::metrics::Metrics;
use crate::rate_limit::{AdminThrottle, RateLimiter};
use crate::routes;
use anyhow::Context;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use ledger_core::engine::{Engine, EngineConfig, EngineHandle};
use ledger_core::log::sled::{SledLog, SledOptions};
use ledger_core::log::snapshots::WriteModelSnapshots;
use ledger_core::log::EventLog;
use ledger_core::time::{Clock, ManualClock, SystemClock};
use object_store::ObjectStore;
use projections::Projections;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
pub struct AppState {
    pub engine: EngineHandle,
    pub projections: Projections,
    pub log: Arc<SledLog>,
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    /// Set only with `--test-clock`: the clock tests move.
    pub manual_clock: Option<ManualClock>,
    pub metrics: Arc<Metrics>,
    pub rate_limiter: Arc<RateLimiter>,
    /// The directory files are stored in, when they are local (to make an
    /// upload durable before its event is written).
    pub local_files: Option<std::path::PathBuf>,
    /// Failed admin authentications per client address.
    pub admin_throttle: Arc<AdminThrottle>,
    pub api_logs: ApiLogs,
    pub files: Arc<dyn ObjectStore>,
    /// Seals webhook signing secrets and kept answers carrying a secret.
    pub master_key: Arc<MasterKey>,
    /// Free disk space against its floor: below it, writes are refused.
    pub disk: Arc<DiskGuard>,
    /// Webhook endpoints' HTTP clients, pooled per origin and pinned.
    pub webhook_clients: Arc<crate::webhooks::clients::Clients>,
}

impl AppState {
    /// Runs a query on the SQL read models (one consistent snapshot).
    pub fn sql<T>(
        &self,
        query: impl FnOnce(&rusqlite::Connection) -> Result<T, projections::sql::SqlError>,
    ) -> Result<T, ApiError> {
        self.projections
            .sql()
            .with(query)
            .map_err(|e| ApiError::internal("SQL read models", e))
    }
}

pub struct Started {
    pub state: AppState,
    pub writer: std::thread::JoinHandle<()>,
}

/// The shortest admin token a server starts with: the token moves every
/// organization's money, so it must not be guessable.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// Opens the log, rebuilds the write and read models, starts the writer.
pub fn start(config: Config) -> anyhow::Result<Started> {
    check_admin_token(&config)?;
    let manual_clock = config
        .test_clock
        .then(|| ManualClock::new(SystemClock.now()));
    let clock: Arc<dyn Clock> = match &manual_clock {
        Some(m) => Arc::new(m.clone()),
        None => Arc::new(SystemClock),
    };
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let master_key = open_master_key(&config)?;
    let (log, engine, writer) = open_log_and_engine(&config, clock.clone())?;
    let projections = open_read_models(&config, log.clone(), &engine)?;
    let metrics = Arc::new(Metrics::default());
    let api_logs = ApiLogs::open(&config.data_dir).context("opening the API log store")?;
    let files = object_store(&config)?;
    let local_files = config
        .storage_url
        .as_deref()
        .is_none_or(str::is_empty)
        .then(|| config.data_dir.join("files"));
    let disk = Arc::new(DiskGuard::new(&config.data_dir, config.min_free_disk_bytes));
    let rate_limiter = Arc::new(RateLimiter::new(
        config.rate_limit,
        config
            .org_rate_limit
            .unwrap_or_else(|| config.rate_limit.saturating_mul(4)),
    ));
    Ok(Started {
        state: AppState {
            engine,
            projections,
            log,
            config: Arc::new(config),
            clock,
            manual_clock,
            metrics,
            rate_limiter,
            admin_throttle: Arc::default(),
            local_files,
            api_logs,
            files,
            master_key: Arc::new(master_key),
            disk,
            webhook_clients: Arc::default(),
        },
        writer,
    })
}

fn check_admin_token(config: &Config) -> anyhow::Result<()> {
    if let Some(token) = config.admin_token.as_deref().filter(|t| !t.is_empty()) {
        if token.chars().count() < MIN_ADMIN_TOKEN_CHARS {
            anyhow::bail!(
                "EXPEREON_ADMIN_TOKEN has {} characters; it must have at least {MIN_ADMIN_TOKEN_CHARS} \
                 (for example the output of `openssl rand -hex 32`)",
                token.chars().count()
            );
        }
    }
    Ok(())
}

/// The master key, from the environment or its file under the data dir
/// (created at the first start).
fn open_master_key(config: &Config) -> anyhow::Result<MasterKey> {
    let (master_key, source) = MasterKey::load(config.master_key.as_deref(), &config.data_dir)
        .context("loading the master key")?;
    match source {
        master_key::Source::CreatedFile(path) => tracing::warn!(
            key = master_key.id(),
            file = %path.display(),
            "created a master key file (mode 0600): it encrypts the secrets at rest; back it up \
             apart from the data, or set EXPEREON_MASTER_KEY instead"
        ),
        master_key::Source::File(path) => {
            tracing::info!(key = master_key.id(), file = %path.display(), "master key from its file")
        }
        master_key::Source::Environment => {
            tracing::info!(key = master_key.id(), "master key from EXPEREON_MASTER_KEY")
        }
    }
    Ok(master_key)
}

/// The event log, and the writer started on the write model it rebuilds
/// (from the last snapshot on).
fn open_log_and_engine(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Arc<SledLog>, EngineHandle, std::thread::JoinHandle<()>)> {
    let log = Arc::new(
        SledLog::open_with(
            config.data_dir.join("log"),
            SledOptions {
                cache_capacity_bytes: config.cache_bytes,
            },
        )
        .context("opening the event log")?,
    );
    let snapshots = WriteModelSnapshots::open(&config.data_dir.join("write-model"))
        .context("opening the write-model snapshots")?;
    let engine_config = EngineConfig {
        snapshot_every_events: config.snapshot_every_events,
        ..EngineConfig::default()
    };
    let (engine, writer) =
        Engine::start_with_snapshots(log.clone(), clock, engine_config, Some(snapshots))
            .context("loading the write model")?;
    Ok((log, engine, writer))
}

/// The SQL read models, caught up with the log.
fn open_read_models(
    config: &Config,
    log: Arc<dyn EventLog>,
    engine: &EngineHandle,
) -> anyhow::Result<Projections> {
    // The previous version's read-model checkpoints: the SQL read models
    // replace them.
    let old_checkpoints = config.data_dir.join("read-models");
    if old_checkpoints.is_dir() {
        std::fs::remove_dir_all(&old_checkpoints)
            .with_context(|| format!("removing {}", old_checkpoints.display()))?;
        tracing::info!(dir = %old_checkpoints.display(), "old read-model checkpoints removed");
    }
    Projections::start(
        log,
        engine,
        &config.data_dir.join(projections::sql::FILE),
        Some(&config.data_dir.join("outbox")),
    )
    .context("building the read models")
}

/// Local files under the data dir, or S3-compatible storage when configured.
fn object_store(config: &Config) -> anyhow::Result<Arc<dyn ObjectStore>> {
    use crate::backup::files::{storage, Storage};
    match storage(&config.data_dir, config.storage_url.as_deref())? {
        Storage::Local(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok(Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .context("opening the file store")?,
            ))
        }
        Storage::Object { store, .. } => Ok(store),
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(routes::router(state.clone()))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // Inside the API log and `observe`, so they record the 500 it makes.
        .layer(CatchPanicLayer::custom(answer_panic))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::api_log::record,
        ))
        // Once, for the API log, the rate limiter and the handlers.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), measure))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(served)
                // A 5xx is logged where it is made, with its cause.
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(middleware::map_request(drop_unusable_request_id))
        .with_state(state)
}

/// A handler that panics answers the documented 500 `INTERNAL` instead of
/// dropping the connection, and the panic is logged (never shown): it is a
/// bug, not the client's doing.
fn answer_panic(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    axum::response::IntoResponse::into_response(ApiError::internal("a handler panicked", what))
}

/// A client's `X-Request-Id` is kept (echoed, logged, in the API log) when it
/// is 1 to 128 printable ASCII characters; any other is replaced by a fresh
/// one, so a client cannot fill logs or forge line breaks through it.
async fn drop_unusable_request_id(mut request: Request) -> Request {
    let usable = request.headers().get(&REQUEST_ID).is_none_or(|v| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic)
    });
    if !usable {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

/// Each request's span: what the `served` line and everything logged while
/// serving it carry.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        request_id = %request_id,
    )
}

/// One line per request, in its span (`benches`' scale run reads them).
fn served(response: &Response, latency: Duration, _: &tracing::Span) {
    tracing::info!(
        status = response.status().as_u16(),
        ms = latency.as_secs_f64() * 1000.0,
        "served"
    );
}

/// Request counts and latencies per route and status, for `/metrics`.
async fn measure(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.observe_request(
        method.as_str(),
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// `expereon serve`: runs until SIGTERM or SIGINT, then stops accepting,
/// finishes in-flight requests, and lets the writer drain and stop.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let Started { state, writer } = start(config)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "serving");
    let background = crate::background::spawn(state.clone());
    let webhooks = crate::webhooks::spawn(state.clone());
    let api_logs = state.api_logs.clone();
    let limits = crate::listener::Limits {
        header_read_timeout: state.config.header_read_timeout,
        max_connections: state.config.max_connections,
        grace: Duration::from_secs(30),
    };
    let app = router(state);
    crate::listener::serve(listener, app, limits, shutdown_signal()).await;
    background.abort();
    webhooks.stop().await;
    api_logs.flush().await;
    // The router (and every engine handle in it) is gone: the writer finishes
    // what it holds, each batch already durable, and stops.
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .ok();
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received");
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_answers_the_documented_500_without_its_message() {
        let app: Router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("secret detail");
                    }
                    "unreachable"
                }),
            )
            .route("/fine", get(|| async { "ok" }))
            .layer(CatchPanicLayer::custom(answer_panic));
        let request = |path: &str| {
            axum::http::Request::builder()
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let response = app.clone().oneshot(request("/boom")).await.unwrap();
        assert_eq!(response.status(), 500);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "INTERNAL");
        assert!(!body.to_string().contains("secret detail"), "{body}");
        // The server goes on serving.
        let fine = app.oneshot(request("/fine")).await.unwrap();
        assert_eq!(fine.status(), 200);
    }
}
