//! The service's integration tests as one test binary: each file named below is a module of it.
//! One binary per file linked the whole service and its test dependencies again each time
//! (about 85 MB apiece, over a gigabyte of `target/`; docs/performance.md, "Time to first run").
//! Run one file's tests with `cargo test -p stratos-service --test service stream::`. The
//! end-to-end files (a real PDS each) and the kill -9 test stay binaries of their own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

mod blobs;
mod cli;
mod client_stream;
mod client_verify;
mod client_xrpc;
mod docs_commands;
mod dpop;
mod first_use;
mod hostile;
mod http;
mod migrate_from_ts;
mod module_graph;
mod observability;
mod service_key;
mod stream;
