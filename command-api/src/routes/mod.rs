//! One file per API resource; each owns its routes and request types.

pub mod admin;
pub mod api_logs;
pub mod clock;
pub mod connections;
pub mod docs;
pub mod health;
pub mod invoices;
pub mod payments;
pub mod settings;
pub mod storage;
pub mod treasury;
pub mod webhooks;

use crate::app::AppState;
use crate::error::ApiError;
use axum::Router;

pub fn api_router(state: AppState) -> Router<AppState> {
    // Organization routes are rate limited per API key; the operator's are not.
    let organization_routes = Router::new()
        .merge(connections::router())
        .merge(invoices::router())
        .merge(payments::router())
        .merge(treasury::router())
        .merge(settings::router())
        .merge(api_logs::router())
        .merge(storage::router())
        .merge(webhooks::router())
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::rate_limit::limit,
        ));
    Router::new()
        .route("/openapi.json", axum::routing::get(crate::openapi::serve))
        .merge(admin::router())
        .merge(storage::admin_router())
        .merge(clock::router())
        .merge(organization_routes)
}

/// A typed id from a path segment; an id that cannot exist is simply not found.
pub fn path_id<T: std::str::FromStr>(raw: &str, what: &'static str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound(what))
}
