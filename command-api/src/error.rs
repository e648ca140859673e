//! The one place errors become HTTP: status, code, and the JSON shape
//! `{ "error": { "code", "message", "details" } }`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ledger_core::domain::DomainError;
use ledger_core::engine::EngineError;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Validation(String),
    #[error("{message}")]
    ValidationDetails { message: String, details: Value },
    #[error("{message}")]
    InvalidState {
        message: String,
        current: &'static str,
    },
    #[error("{message}")]
    InsufficientBalance { message: String, details: Value },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("route not found")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{message}")]
    VersionConflict { message: String, current: u64 },
    #[error("this requestId was already used for a different request")]
    IdempotencyKeyReused,
    #[error("a request with this requestId is still being processed")]
    RequestInProgress,
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request's body did not arrive in time (nothing for {limit_secs} s)")]
    RequestTimeout { limit_secs: u64 },
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    #[error("service unavailable")]
    Unavailable,
    /// Free disk space is below its floor: nothing was written.
    #[error("the server's disk is nearly full ({free} bytes free, below the floor of {floor}); nothing was written, retry later")]
    DiskFull { free: u64, floor: u64 },
    /// A command committed whose answer cannot be read back yet.
    #[error("the request was recorded, but its answer cannot be read back now ({0}); retry with the same requestId to get it")]
    Unanswered(String),
    /// Never shown to the client; logged with its context.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        ApiError::Internal(format!("{context}: {e}"))
    }

    /// A body that stalled for `limit` (shown in whole seconds, at least 1).
    pub fn request_timeout(limit: std::time::Duration) -> Self {
        ApiError::RequestTimeout {
            limit_secs: limit.as_secs().max(1),
        }
    }

    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            Validation(_)
            | ValidationDetails { .. }
            | InvalidState { .. }
            | InsufficientBalance { .. } => StatusCode::BAD_REQUEST,
            Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Forbidden(_) => StatusCode::FORBIDDEN,
            NotFound(_) | RouteNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            VersionConflict { .. } | IdempotencyKeyReused | RequestInProgress => {
                StatusCode::CONFLICT
            }
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Unavailable | Unanswered(_) | DiskFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            Validation(_) | ValidationDetails { .. } | UnsupportedMediaType(_) => {
                "VALIDATION_ERROR"
            }
            InvalidState { .. } => "INVALID_STATE_TRANSITION",
            InsufficientBalance { .. } => "INSUFFICIENT_BALANCE",
            Unauthorized(_) => "UNAUTHORIZED",
            Forbidden(_) => "FORBIDDEN",
            NotFound(_) | RouteNotFound => "NOT_FOUND",
            MethodNotAllowed => "METHOD_NOT_ALLOWED",
            VersionConflict { .. } => "VERSION_CONFLICT",
            IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            RequestInProgress => "REQUEST_IN_PROGRESS",
            PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            RequestTimeout { .. } => "REQUEST_TIMEOUT",
            RateLimited { .. } => "RATE_LIMITED",
            Unavailable | Unanswered(_) | DiskFull { .. } => "UNAVAILABLE",
            Internal(_) => "INTERNAL",
        }
    }

    fn details(&self) -> Value {
        use ApiError::*;
        match self {
            ValidationDetails { details, .. } | InsufficientBalance { details, .. } => {
                details.clone()
            }
            InvalidState { current, .. } => json!({ "currentState": current }),
            VersionConflict { current, .. } => json!({ "currentVersion": current }),
            PayloadTooLarge { limit } => json!({ "limitBytes": limit }),
            RequestTimeout { limit_secs } => json!({ "limitSeconds": limit_secs }),
            RateLimited { retry_after_secs } => json!({ "retryAfterSeconds": retry_after_secs }),
            DiskFull { free, floor } => json!({ "freeBytes": free, "floorBytes": floor }),
            _ => json!({}),
        }
    }

    pub fn body(&self) -> Vec<u8> {
        let message = match self {
            ApiError::Internal(_) => {
                "internal error; it is safe to retry with the same requestId".to_string()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                details: self.details(),
                message,
            },
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// Every error answer. Fields in the byte order of their JSON names.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "Error")]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, JsonSchema)]
#[schemars(rename = "ErrorDetail")]
struct ErrorDetail {
    #[schemars(with = "projections::schema::ErrorCode")]
    code: &'static str,
    /// Machine-readable context: `currentState` (INVALID_STATE_TRANSITION),
    /// `currentVersion` (VERSION_CONFLICT), `currency`/`needed`/`available`
    /// (INSUFFICIENT_BALANCE), `limitBytes` (PAYLOAD_TOO_LARGE),
    /// `retryAfterSeconds` (RATE_LIMITED); otherwise empty.
    #[schemars(with = "serde_json::Map<String, Value>")]
    details: Value,
    /// Human readable; not for matching.
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(context) = &self {
            tracing::error!(%context, "internal error");
        }
        let mut response = (
            self.status(),
            [(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body(),
        )
            .into_response();
        if let ApiError::RateLimited { retry_after_secs } = self {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.max(1).to_string()) {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        // The rest of an oversized body is never read, so the connection cannot
        // carry another request: say so, or the client reuses it and fails.
        if let ApiError::PayloadTooLarge { .. } = self {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let message = e.to_string();
        match e {
            DomainError::Validation(m) => ApiError::Validation(m),
            DomainError::InvalidTransition { current, .. } => {
                ApiError::InvalidState { message, current }
            }
            DomainError::InsufficientBalance {
                currency,
                needed,
                available,
            } => ApiError::InsufficientBalance {
                message,
                details: json!({ "currency": currency.code(), "needed": needed, "available": available }),
            },
            DomainError::Forbidden(m) => ApiError::Forbidden(m),
            DomainError::NotFound(what) => ApiError::NotFound(what),
            DomainError::VersionConflict { current, .. } => {
                ApiError::VersionConflict { message, current }
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
            EngineError::Unavailable => ApiError::Unavailable,
            EngineError::Internal(m) => ApiError::Internal(m),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
