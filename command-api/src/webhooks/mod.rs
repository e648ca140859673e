//! Webhook delivery: signing, the SSRF guard and the worker that drains the
//! outbox (`projections::sql::outbox`: rows of the SQL read models, derived
//! in the projection's own transactions). Endpoints' routes are in
//! `routes/webhooks.rs`.
//!
//! Guarantees: every delivery in the outbox is attempted until it succeeds or
//! its retry schedule runs out (then FAILED, redeliverable by hand); the
//! result of each attempt is durable before the next is considered, so after
//! a restart nothing pending is lost and nothing that succeeded is sent again.
//! The one window left is a crash between a receiver's 2xx and that write: the
//! message is then sent once more with the same `webhook-id` (at-least-once,
//! as Standard Webhooks receivers expect).

pub mod clients;
pub mod signing;
pub mod ssrf;
pub mod worker;

pub use worker::{spawn, WebhookWorker};
