//! Liveness and metrics.

use super::Route;
use crate::app::AppState;
use crate::metrics::{FilesCheck, FilesCheckState};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use ledger_core::log::EventLog;
use schemars::JsonSchema;
use serde::Serialize;
use std::sync::atomic::Ordering::Relaxed;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(&operations::GET_HEALTH, healthz),
        Route::new(&operations::GET_METRICS, metrics),
    ]
}

/// 200 while the server can answer what it commits; 503 (with the reason)
/// while its read models cannot be written, so a load balancer stops
/// sending it traffic.
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let fault = state.projections.fault();
    let disk_low = state.disk.is_low();
    let healthy = fault.is_none() && !disk_low;
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = axum::Json(Health {
        // Below the floor writes are refused: as unable to serve as a
        // projection that cannot be written.
        disk: DiskView {
            floor_bytes: state.disk.floor_bytes(),
            free_bytes: state.disk.free_bytes(),
            low: disk_low,
        },
        // Informative only: a missing file is the operator's to restore, and
        // taking the server out of rotation would not bring it back.
        files: FilesView::from(&state.metrics.files),
        log_sequence: state.log.head().last_seq,
        projection_fault: fault,
        projection_sequence: state.projections.applied(),
        status: if healthy { "ok" } else { "unavailable" },
    });
    (status, body)
}

// `/healthz`'s answer. Fields in the byte order of their JSON names.

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Health")]
struct Health {
    disk: DiskView,
    files: FilesView,
    /// Last sequence number in the event log.
    log_sequence: u64,
    /// Why the read models cannot be written now; null while they keep up.
    projection_fault: Option<String>,
    /// Last sequence number the read models applied.
    projection_sequence: u64,
    #[schemars(schema_with = "health_status")]
    status: &'static str,
}

/// Free disk space under the data directory against
/// `EXPEREON_MIN_FREE_DISK_BYTES`: below it writes are refused (503) and the
/// status is `unavailable`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "HealthDisk")]
struct DiskView {
    /// The floor.
    floor_bytes: u64,
    /// At the last measure (once a second).
    free_bytes: u64,
    low: bool,
}

/// The start-up check of stored files against the size and SHA-256 of their
/// `FileStored` events (`EXPEREON_VERIFY_FILES_AT_START`). Informative:
/// missing files do not make the status `unavailable`.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "HealthFiles")]
struct FilesView {
    #[schemars(schema_with = "files_check")]
    check: &'static str,
    /// Files verified so far.
    checked: u64,
    /// Files with another size or SHA-256 than recorded.
    corrupt: u64,
    /// Files absent or unreadable.
    missing: u64,
}

impl From<&FilesCheck> for FilesView {
    fn from(files: &FilesCheck) -> Self {
        Self {
            check: match files.state() {
                FilesCheckState::Off => "off",
                FilesCheckState::Running => "running",
                FilesCheckState::Done => "done",
            },
            checked: files.checked.load(Relaxed),
            corrupt: files.corrupt.load(Relaxed),
            missing: files.missing.load(Relaxed),
        }
    }
}

fn health_status(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "enum": ["ok", "unavailable"] })
}

fn files_check(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "enum": ["off", "running", "done"] })
}

pub fn add_schemas(c: &mut projections::schema::Components) {
    c.add::<Health>();
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let outbox = state.projections.outbox().clone();
    let backlog = tokio::task::spawn_blocking(move || outbox.pending_count())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "counting the webhook backlog");
            0
        });
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(
            state.log.head().last_seq,
            state.projections.applied(),
            state.engine.stats(),
            &state.disk,
            backlog,
        ),
    )
}

/// The operations this file serves, as the OpenAPI document describes them:
/// the router registers each handler with its operation (see `routes::Route`).
pub mod operations {
    use crate::openapi::prelude::*;

    pub const GET_HEALTH: Op = Op {
        path: "/healthz",
        operation_id: "getHealth",
        tag: SYSTEM,
        summary: "Liveness",
        description: "Answers 200 once the server serves, with the last sequence number in the event log and the last one the read models have applied; 503 with the same body (`status` `unavailable`, `projectionFault` or `disk.low` saying why) while the read models cannot be written or free disk space is below its floor (writes refused), so a load balancer can stop sending traffic.",
        success: Success::JsonOr503("Health"),
        ..BASE
    };

    pub const GET_METRICS: Op = Op {
        path: "/metrics",
        operation_id: "getMetrics",
        tag: SYSTEM,
        summary: "Prometheus metrics",
        description: "Request counts and latencies per route and status, command outcomes, log and projection sequence numbers, in the Prometheus text format.",
        success: Success::Text("text/plain; version=0.0.4"),
        ..BASE
    };
}
