//! Cursor paging: the cursor is the sort key of the last item returned,
//! encoded opaquely; `limit` is 1..=200 (default 50).

use crate::error::ApiError;
use base64::Engine as _;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 200;

/// A list route's `limit` and `cursor`, parsed the same way for every one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    pub limit: usize,
    /// The decoded cursor: the last item's sort key.
    pub cursor: Option<String>,
}

impl Paging {
    pub fn of(query: &std::collections::HashMap<String, String>) -> Result<Self, ApiError> {
        Ok(Self {
            limit: limit(query.get("limit").map(String::as_str))?,
            cursor: decode_cursor(query.get("cursor").map(String::as_str))?,
        })
    }
}

pub fn limit(raw: Option<&str>) -> Result<usize, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::Validation(format!(
                "limit must be an integer from 1 to {MAX_LIMIT}"
            ))),
        },
    }
}

/// Cursors name the last item's sort key and id, so a page stays put when
/// items are added before it.
pub fn encode_cursor(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}

pub fn decode_cursor(cursor: Option<&str>) -> Result<Option<String>, ApiError> {
    match cursor {
        None | Some("") => Ok(None),
        Some(c) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(Some)
            .ok_or_else(|| ApiError::Validation("cursor is not valid".into())),
    }
}
