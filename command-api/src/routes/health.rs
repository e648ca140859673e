//! Liveness and metrics.

use crate::app::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use ledger_core::log::EventLog;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
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
    let body = axum::Json(serde_json::json!({
        "status": if healthy { "ok" } else { "unavailable" },
        // Below the floor writes are refused: as unable to serve as a
        // projection that cannot be written.
        "disk": {
            "freeBytes": state.disk.free_bytes(),
            "floorBytes": state.disk.floor_bytes(),
            "low": disk_low,
        },
        "logSequence": state.log.head().last_seq,
        "projectionSequence": state.projections.applied(),
        "projectionFault": fault,
        // Informative only: a missing file is the operator's to restore, and
        // taking the server out of rotation would not bring it back.
        "files": state.metrics.files.json(),
    }));
    (status, body)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(
            state.log.head().last_seq,
            state.projections.applied(),
            state.engine.stats(),
            &state.disk,
        ),
    )
}
