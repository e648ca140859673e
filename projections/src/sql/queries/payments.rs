//! Payments: lookups by either party, the filtered list, exports.
