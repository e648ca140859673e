//! Black-box tests live in `tests/`; this crate only builds the server binary for them.
