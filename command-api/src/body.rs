//! JSON request bodies, parsed at the edge with our own error shape (axum's
//! rejections would answer in plain text), plus the idempotency fingerprint.

use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::{FromRequest, Request};
use axum::http::{header, Method};
use ledger_core::domain::invoice::MAX_TEXT_CHARS;
use ledger_core::ids::RequestId;
use ledger_core::log::Hash;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// A parsed body, the request's idempotency key (body `requestId` or the
/// `Idempotency-Key` header) and the fingerprint that identifies the request.
pub struct JsonBody<T> {
    pub value: T,
    pub request_id: Option<RequestId>,
    pub fingerprint: Hash,
}

impl<T> JsonBody<T> {
    /// The same request, its body turned into another type.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> JsonBody<U> {
        JsonBody {
            value: f(self.value),
            request_id: self.request_id,
            fingerprint: self.fingerprint,
        }
    }
}

/// sha256 over method, path and the canonical JSON body (object keys sorted),
/// so whitespace or key order do not make a retry look like a new request.
pub fn fingerprint(method: &Method, path: &str, body: &Value) -> Hash {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update(b" ");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body.to_string().as_bytes());
    h.finalize().into()
}

/// The `Idempotency-Key` header, when sent: a UUID or a 400 naming it.
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<RequestId>, ApiError> {
    headers
        .get(IDEMPOTENCY_KEY_HEADER)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| RequestId::parse(s).ok())
                .ok_or_else(|| ApiError::Validation("Idempotency-Key must be a UUID".into()))
        })
        .transpose()
}

fn parse_request_id(v: &str) -> Result<RequestId, ApiError> {
    RequestId::parse(v).map_err(|_| ApiError::Validation("requestId must be a UUID".into()))
}

/// A JSON request body, whole: at most `EXPEREON_MAX_BODY_BYTES` (413), and
/// within `EXPEREON_REQUEST_BODY_TIMEOUT` (408).
pub async fn read_whole(
    body: axum::body::Body,
    state: &AppState,
) -> Result<bytes::Bytes, ApiError> {
    let limit = state.config.max_body_bytes;
    let wait = state.config.request_body_timeout;
    tokio::time::timeout(wait, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::request_timeout(wait))?
        .map_err(|_| ApiError::PayloadTooLarge { limit })
}

/// `application/json` or a `+json` type, parameters aside.
pub fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        let ct = ct.split(';').next().unwrap_or("").trim();
        ct.eq_ignore_ascii_case("application/json") || ct.ends_with("+json")
    })
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let header_key = idempotency_key(req.headers())?;
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_whole(req.into_body(), state).await?;
        let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Default::default())
        } else {
            if !is_json(content_type.as_deref()) {
                return Err(ApiError::UnsupportedMediaType(
                    "send the body as Content-Type: application/json".into(),
                ));
            }
            serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::Validation(format!("malformed JSON: {e}")))?
        };
        if !value.is_object() {
            return Err(ApiError::Validation(
                "the body must be a JSON object".into(),
            ));
        }
        crate::input::check_body(&value)?;
        let body_key = match value.get("requestId") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(parse_request_id(s)?),
            Some(_) => {
                return Err(ApiError::Validation(
                    "requestId must be a UUID string".into(),
                ))
            }
        };
        let request_id = match (body_key, header_key) {
            (Some(a), Some(b)) if a != b => {
                return Err(ApiError::Validation(
                    "requestId and the Idempotency-Key header disagree".into(),
                ))
            }
            (a, b) => a.or(b),
        };
        let fingerprint = fingerprint(&method, &path, &value);
        let value =
            serde_json::from_value(value).map_err(|e| ApiError::Validation(e.to_string()))?;
        Ok(JsonBody {
            value,
            request_id,
            fingerprint,
        })
    }
}

// ---------------------------------------------------------------------------
// Request body types: what a handler deserializes is what the document shows
// (`openapi::json::<T>`), so each derives its schema. Markers below say what
// a text field must be where its Rust type (a `String`, parsed later) cannot.
// ---------------------------------------------------------------------------

/// A body's `requestId`: read by [`JsonBody`] itself; declared by each body
/// type so that `deny_unknown_fields` lets it through and the schema lists it.
#[derive(Deserialize)]
pub struct RequestIdField(#[allow(dead_code)] String);

impl JsonSchema for RequestIdField {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "RequestIdField".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        projections::schema::RequestId::json_schema(g)
    }
}

/// A required text, not blank, at most [`MAX_TEXT_CHARS`] characters.
pub struct NonBlank;

impl JsonSchema for NonBlank {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "NonBlank".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_TEXT_CHARS,
            "pattern": "\\S",
        })
    }
}

/// No fields but the optional `requestId`; the body may be left out (send
/// `Idempotency-Key` instead).
#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "EmptyRequest")]
pub struct Empty {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
}

/// A reason, required and not blank.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ReasonRequest")]
pub struct Reason {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    /// Why (kept with the event).
    #[schemars(with = "NonBlank")]
    pub reason: Option<String>,
}

impl Reason {
    /// The reason, or the 400 a missing or blank one gets.
    pub fn required(self) -> Result<String, ApiError> {
        self.reason
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ApiError::Validation("reason is required".into()))
    }
}

/// A reason, optional.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "OptionalReasonRequest")]
pub struct OptionalReason {
    #[serde(rename = "requestId")]
    _request_id: Option<RequestIdField>,
    pub reason: Option<String>,
}
