//! Expereon's core: money, the event set, the pure domain rules, the event log
//! and the single-writer engine. No HTTP here, and no I/O except through the
//! [`log::EventLog`] trait.

pub mod codec;
pub mod domain;
pub mod engine;
pub mod events;
pub mod ids;
pub mod log;
pub mod memory;
pub mod money;
pub mod time;
