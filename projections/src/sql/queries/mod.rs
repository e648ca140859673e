//! What the API asks of the read models, one module per resource: every
//! lookup by id and every list page is one indexed query, never a scan of an
//! organization's history.

pub mod access;
pub mod invoices;
pub mod payments;
pub mod treasury;

pub use invoices::*;

/// A page request over a list ordered by a string sort key.
pub struct PageRequest<'a> {
    /// The sort key of the last item of the previous page.
    pub after_key: Option<&'a str>,
    pub limit: usize,
    pub descending: bool,
}
