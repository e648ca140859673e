//! The answers of bulk calls (`POST /invoices/bulk-*`, `/payments/bulk-settle`,
//! `/settle-all-due`, `/retry-failed`) and of their previews: one row per
//! item, each succeeded or failed on its own. Fields are declared in the byte
//! order of their JSON names, the order kept answers were written in.

use crate::error::ApiError;
use projections::schema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

/// Why one item failed. Also kept, inside a bulk call's stored recipe, in
/// the idempotency record (JSON, so its field names are its format).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq, Eq)]
#[schemars(rename = "BulkItemError")]
pub struct ItemError {
    #[schemars(with = "schema::ErrorCode")]
    pub code: String,
    pub message: String,
}

impl From<ApiError> for ItemError {
    fn from(e: ApiError) -> Self {
        ItemError {
            code: e.code().to_owned(),
            message: e.to_string(),
        }
    }
}

/// One item's result.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "BulkItemResult")]
pub struct Row {
    /// Why it failed (when not `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
    /// The item's id (null when it was not an id at all).
    #[schemars(with = "Option<schema::Uuid>")]
    pub id: Option<String>,
    pub ok: bool,
    /// The item's status after the action (when `ok`); `GET` it for the rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// One result per item, in request order; each succeeded or failed on its
/// own.
// `R` only names the schema after what the items are (`InvoiceBulkResult`).
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "{R}BulkResult")]
pub struct BulkResult<R> {
    /// How many failed.
    pub failed: usize,
    pub results: Vec<Row>,
    /// How many succeeded.
    pub succeeded: usize,
    #[serde(skip)]
    pub of: PhantomData<R>,
}

impl BulkResult<()> {
    pub fn of(results: Vec<Row>) -> Self {
        let succeeded = results.iter().filter(|r| r.ok).count();
        BulkResult {
            failed: results.len() - succeeded,
            results,
            succeeded,
            of: PhantomData,
        }
    }
}

/// What a bulk call would do; nothing changed.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "BulkPreview")]
pub struct Preview {
    pub failed: usize,
    pub results: Vec<PreviewRow>,
    pub succeeded: usize,
    /// bulk-approve only (empty otherwise): per currency, the amount the
    /// approvals that would succeed need, and what is available.
    pub totals: Vec<PreviewTotal>,
}

impl Preview {
    pub fn of(results: Vec<PreviewRow>, totals: Vec<PreviewTotal>) -> Self {
        let succeeded = results.iter().filter(|r| r.ok).count();
        Preview {
            failed: results.len() - succeeded,
            results,
            succeeded,
            totals,
        }
    }
}

/// One item of a preview.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "BulkPreviewItem")]
pub struct PreviewRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
    #[schemars(with = "schema::Uuid")]
    pub id: String,
    pub ok: bool,
}

/// What the approvals in one currency would need.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "BulkPreviewTotal")]
pub struct PreviewTotal {
    #[schemars(with = "schema::Money")]
    pub available: String,
    #[schemars(with = "schema::Currency")]
    pub currency: &'static str,
    #[schemars(with = "schema::Money")]
    pub needed: String,
}

pub fn add_schemas(c: &mut schema::Components) {
    use projections::views::{InvoiceView, PaymentView};
    c.add::<BulkResult<InvoiceView>>()
        .add::<BulkResult<PaymentView>>()
        .add::<Preview>();
}
