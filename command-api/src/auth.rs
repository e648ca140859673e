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
        if self.allows(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this API key lacks the `{}` permission",
                permission.name()
            )))
        }
    }

    /// Either of two permissions will do (actions open to both parties).
    pub fn require_any(&self, a: Permission, b: Permission) -> Result<(), ApiError> {
        if self.allows(a) || self.allows(b) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this API key lacks the `{}` or `{}` permission",
                a.name(),
                b.name()
            )))
        }
    }
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        const BAD: ApiError = ApiError::Unauthorized("missing or invalid API credentials");
        let key_id = header(parts, API_KEY_HEADER).ok_or(BAD)?;
        let secret = header(parts, API_SECRET_HEADER).ok_or(BAD)?;
        let key_id = ApiKeyId::parse(key_id).map_err(|_| BAD)?;
        let presented = hash_secret(secret);
        let key = state
            .sql(|c| queries::access::credential(c, key_id))?
            .ok_or(BAD)?;
        if !bool::from(key.secret_hash.ct_eq(&presented)) {
            return Err(BAD);
        }
        if !key.is_active(state.clock.now()) {
            return Err(ApiError::Unauthorized("API key revoked or expired"));
        }
        let caller = Caller {
            organization_id: key.organization_id,
            api_key_id: key.id,
            permissions: key.permissions.clone(),
        };
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// An operator call, authorised by the configured admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
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

/// The organization and key behind a request's credentials, if they are valid
/// (for the API log, which records only authenticated calls).
pub fn identify(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Option<(OrganizationId, ApiKeyId)> {
    let key_id = ApiKeyId::parse(headers.get(API_KEY_HEADER)?.to_str().ok()?).ok()?;
    let presented = hash_secret(headers.get(API_SECRET_HEADER)?.to_str().ok()?);
    let key = state
        .sql(|c| queries::access::credential(c, key_id))
        .ok()
        .flatten()?;
    bool::from(key.secret_hash.ct_eq(&presented)).then_some((key.organization_id, key.id))
}
