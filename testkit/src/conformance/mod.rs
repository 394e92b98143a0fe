//! Conformance suites: one async function per port that any implementation runs. The in-memory
//! fakes run them in `testkit/tests/conformance.rs`; every adapter runs the same functions.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support code: failures are assertions

pub mod blob_store;
pub mod cache;
pub mod enrollment_store;
pub mod keys;
pub mod notifier;
pub mod oauth_store;
pub mod outbox;
pub mod repo_store;
