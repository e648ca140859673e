//! Cursor paging: the cursor is the sort key of the last item returned,
//! encoded opaquely; `limit` is 1..=200 (default 50). Parsed by
//! [`crate::query::Page`].

use base64::Engine as _;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 200;

/// Cursors name the last item's sort key and id, so a page stays put when
/// items are added before it.
pub fn encode_cursor(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}
