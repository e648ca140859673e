//! One file per API resource; each owns its handlers, request types and the
//! operations it serves.
//!
//! A handler is served only through a [`Route`], which pairs it with its
//! [`Op`] (path, method, permission, body, answers). The router and the
//! OpenAPI document are both built from [`all`], so a route cannot be served
//! undocumented, and the permission the document names is the one [`router`]
//! enforces before the handler runs.

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
use crate::auth::{Admin, Caller};
use crate::error::ApiError;
use crate::openapi::{Auth, Method, Op};
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use ledger_core::events::Permission;

/// A handler with the operation it serves.
pub struct Route {
    pub op: &'static Op,
    /// The handler's arguments (extractors), by type name: the request body
    /// type the `Op` documents must be the one the handler reads.
    pub args: &'static str,
    handler: MethodRouter<AppState>,
}

impl Route {
    /// Serves `handler` at the operation's method and path.
    pub fn new<H, T>(op: &'static Op, handler: H) -> Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = match op.method {
            Method::Get => MethodFilter::GET,
            Method::Post => MethodFilter::POST,
            Method::Put => MethodFilter::PUT,
            Method::Patch => MethodFilter::PATCH,
            Method::Delete => MethodFilter::DELETE,
        };
        Route {
            op,
            args: std::any::type_name::<T>(),
            handler: axum::routing::on(filter, handler),
        }
    }

    /// The route with a layer of its own (an upload lifting the body limit).
    pub fn with(self, f: impl FnOnce(MethodRouter<AppState>) -> MethodRouter<AppState>) -> Route {
        Route {
            handler: f(self.handler),
            ..self
        }
    }
}

/// Every operation the server serves, in the document's order.
pub fn all() -> Vec<Route> {
    [
        health::routes(),
        docs::routes(),
        admin::routes(),
        storage::admin_routes(),
        clock::routes(),
        connections::routes(),
        invoices::routes(),
        payments::routes(),
        treasury::routes(),
        settings::routes(),
        api_logs::routes(),
        webhooks::routes(),
        storage::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The router of every operation, each behind the check its `auth` declares:
/// the operator's token, or an API key holding one of the permissions (and
/// then the key's rate limit, which the operator does not have).
pub fn router(state: AppState) -> Router<AppState> {
    let mut router = Router::new();
    // Cloned per request by the check: one reference count, not the state's
    // every field.
    let shared = std::sync::Arc::new(state.clone());
    for Route { op, handler, .. } in all() {
        let handler = match op.auth {
            Auth::Public => handler,
            Auth::Admin => handler.route_layer(from_fn_with_state(state.clone(), admit_operator)),
            Auth::Key(permissions) => handler
                .route_layer(from_fn_with_state(
                    KeyCheck {
                        state: shared.clone(),
                        permissions,
                    },
                    admit_key,
                ))
                .route_layer(from_fn_with_state(state.clone(), crate::rate_limit::limit)),
        };
        router = router.route(op.path, handler);
    }
    router
}

#[derive(Clone)]
struct KeyCheck {
    state: std::sync::Arc<AppState>,
    permissions: &'static [Permission],
}

/// Lets through a call by an active key holding one of the operation's
/// permissions: `401` before `403`, both before the body is read.
async fn admit_key(State(check): State<KeyCheck>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let admitted = Caller::of(&check.state, &parts)
        .and_then(|caller| caller.require_one_of(check.permissions));
    match admitted {
        Ok(()) => next.run(Request::from_parts(parts, body)).await,
        Err(e) => e.into_response(),
    }
}

/// Lets through a call with the operator's token (see [`Admin::admit`]).
async fn admit_operator(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    match Admin::admit(&parts, &state) {
        Ok(admin) => {
            parts.extensions.insert(admin);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => e.into_response(),
    }
}

/// A typed id from a path segment; an id that cannot exist is simply not found.
pub fn path_id<T: std::str::FromStr>(raw: &str, what: &'static str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound(what))
}
