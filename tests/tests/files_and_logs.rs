//! Issue 6 over HTTP: the API log (order, fields, redaction, filters, exports,
//! privacy), file storage (round trips, sniffing, the upload limit, filenames,
//! counterparty access) and per-key rate limiting, against the real server.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

#[path = "files_and_logs/common.rs"]
mod common;

#[path = "files_and_logs/api_logs.rs"]
mod api_logs;
#[path = "files_and_logs/rate_limit.rs"]
mod rate_limit;
#[path = "files_and_logs/storage.rs"]
mod storage;
