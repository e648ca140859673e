//! Who is calling: an organization's API key, or the operator.
//!
//! Secrets are 32 random bytes shown once; only their SHA-256 is stored (a
//! high-entropy secret needs no slow hash), and comparison is constant-time.

use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine as _;
use ledger_core::events::{Actor, Permission};
use ledger_core::ids::{ApiKeyId, OrganizationId};
use projections::sql::queries;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const API_KEY_HEADER: &str = "x-api-key";
pub const API_SECRET_HEADER: &str = "x-api-secret";
pub const ADMIN_TOKEN_HEADER: &str = "x-admin-token";

/// A fresh secret and the hash to store.
pub fn new_secret(prefix: &str) -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hash_secret(&secret);
    (secret, hash)
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// An authenticated organization call.
#[derive(Debug, Clone)]
pub struct Caller {
    pub organization_id: OrganizationId,
    pub api_key_id: ApiKeyId,
    pub permissions: Vec<Permission>,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor::ApiKey {
            organization_id: self.organization_id,
            api_key_id: self.api_key_id,
        }
    }

    pub fn allows(&self, permission: Permission) -> bool {
        self.permissions
            .iter()
            .any(|p| *p == Permission::All || *p == permission)
    }

    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        self.require_one_of(&[permission])
    }

    /// Any one of `permissions` will do (actions open to both parties).
    pub fn require_one_of(&self, permissions: &[Permission]) -> Result<(), ApiError> {
        if permissions.iter().any(|p| self.allows(*p)) {
            return Ok(());
        }
        let names: Vec<String> = permissions
            .iter()
            .map(|p| format!("`{}`", p.name()))
            .collect();
        Err(ApiError::Forbidden(format!(
            "this API key lacks the {} permission",
            names.join(" or ")
        )))
    }

    /// The active key behind the request's credentials.
    pub fn of(state: &AppState, parts: &Parts) -> Result<Caller, ApiError> {
        match Authentication::of(state, parts)? {
            Authentication::Key(caller) => Ok(caller),
            Authentication::Inactive { .. } => {
                Err(ApiError::Unauthorized("API key revoked or expired"))
            }
            Authentication::Failed => {
                Err(ApiError::Unauthorized("missing or invalid API credentials"))
            }
        }
    }
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// What a request's API-key headers prove, worked out once per request by
/// [`authenticate`] and read from the request's extensions by the API log,
/// the rate limiter and the [`Caller`] extractor.
#[derive(Debug, Clone)]
pub enum Authentication {
    /// No key headers, or ones that do not match a key.
    Failed,
    /// The right secret of a key that is revoked or expired: still the
    /// organization's (its API log records the refused call), never a caller.
    Inactive {
        organization_id: OrganizationId,
        api_key_id: ApiKeyId,
    },
    Key(Caller),
}

impl Authentication {
    /// The organization and key behind valid credentials, active or not.
    pub fn identity(&self) -> Option<(OrganizationId, ApiKeyId)> {
        match self {
            Authentication::Failed => None,
            Authentication::Inactive {
                organization_id,
                api_key_id,
            } => Some((*organization_id, *api_key_id)),
            Authentication::Key(c) => Some((c.organization_id, c.api_key_id)),
        }
    }

    /// The request's, as [`authenticate`] left it; worked out here for a
    /// request that did not pass through it.
    pub fn of(state: &AppState, parts: &Parts) -> Result<Authentication, ApiError> {
        match parts.extensions.get::<Authentication>() {
            Some(a) => Ok(a.clone()),
            None => check(state, &parts.headers),
        }
    }
}

/// The key headers checked against the read models: one lookup and one hash
/// per request, whoever asks.
fn check(state: &AppState, headers: &axum::http::HeaderMap) -> Result<Authentication, ApiError> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(key_id), Some(secret)) = (text(API_KEY_HEADER), text(API_SECRET_HEADER)) else {
        return Ok(Authentication::Failed);
    };
    let Ok(key_id) = ApiKeyId::parse(key_id) else {
        return Ok(Authentication::Failed);
    };
    let presented = hash_secret(secret);
    let Some(key) = state.sql(|c| queries::access::credential(c, key_id))? else {
        return Ok(Authentication::Failed);
    };
    if !bool::from(key.secret_hash.ct_eq(&presented)) {
        return Ok(Authentication::Failed);
    }
    if !key.is_active(state.clock.now()) {
        return Ok(Authentication::Inactive {
            organization_id: key.organization_id,
            api_key_id: key.id,
        });
    }
    Ok(Authentication::Key(Caller {
        organization_id: key.organization_id,
        api_key_id: key.id,
        permissions: key.permissions.clone(),
    }))
}

/// The layer that authenticates every API request once, before the API log,
/// the rate limiter and the handlers, which all read the result.
pub async fn authenticate(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (mut parts, body) = request.into_parts();
    if parts.uri.path().starts_with("/api/v1/") && parts.headers.contains_key(API_KEY_HEADER) {
        match check(&state, &parts.headers) {
            Ok(a) => {
                parts.extensions.insert(a);
            }
            Err(e) => return e.into_response(),
        }
    }
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Caller::of(state, parts)
    }
}

/// An operator call, authorised by the configured admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl Admin {
    /// Checks the request's `X-Admin-Token`.
    pub fn admit(parts: &Parts, state: &AppState) -> Result<Admin, ApiError> {
        // Admin routes do not exist when no token is configured.
        let Some(expected) = state
            .config
            .admin_token
            .as_deref()
            .filter(|t| !t.is_empty())
        else {
            return Err(ApiError::RouteNotFound);
        };
        // Throttled per client address: a guess is not even compared once
        // the address has failed too often (see `AdminThrottle`).
        let address = crate::listener::client_ip(&parts.extensions)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        let now = std::time::Instant::now();
        if let Err(retry_after_secs) = state.admin_throttle.check(&address, now) {
            return Err(ApiError::RateLimited { retry_after_secs });
        }
        let Some(presented) = header(parts, ADMIN_TOKEN_HEADER) else {
            state.admin_throttle.failed(&address, now);
            return Err(ApiError::Unauthorized("missing admin token"));
        };
        // Compare hashes so the comparison is constant-time whatever the lengths.
        if bool::from(hash_secret(presented).ct_eq(&hash_secret(expected))) {
            Ok(Admin)
        } else {
            state.admin_throttle.failed(&address, now);
            Err(ApiError::Unauthorized("invalid admin token"))
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    /// The router has admitted the operator already (it leaves [`Admin`] in
    /// the request), so the token is checked, and a failure counted, once.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Admin>() {
            Some(admin) => Ok(*admin),
            None => Admin::admit(parts, state),
        }
    }
}
