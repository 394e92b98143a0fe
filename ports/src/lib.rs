//! Ports: the traits Stratos needs from the outside world, and the use cases written once
//! against them. This crate depends only on `stratos-domain` (and on no I/O crate): adapters
//! implement the traits, apps compose them.
//!
//! # Layout
//!
//! The path says what an item is (`ports/tests/layout.rs` checks it):
//!
//! | where | what |
//! |---|---|
//! | `src/<port>.rs` at the crate root: [`repo_store`], [`enrollment_store`], [`appview_store`], [`keys`], [`legacy_source`], [`outbox`], [`pds`], [`pds_client`], [`blob_store`], [`oauth_store`], [`env`](mod@env) | one module per port: its trait(s), error and value types — what an adapter implements |
//! | `src/usecases/` ([`usecases`]) | the use cases: they hold ports as `Arc<dyn …>` and declare no port trait |
//! | [`block_cache`], [`storage`], [`storage_codec`], [`storage_sql`], [`Cause`] | glue over the ports: a caching decorator, the storage bundle, the stored format and the service-table SQL adapters share, adapters' opaque error causes |
//! | [`stratos`] | the composition of the use cases: [`Stratos::builder`] (it never names an adapter) |
//! | [`auth`], [`xrpc`] | serving them: request authentication, the one XRPC error mapping, framework-free reads |
#![deny(missing_docs)] // a library crate: every public item is documented (checked in CI)

// Ports: one module per port (trait, error, value types).
pub mod appview_store;
pub mod blob_store;
pub mod enrollment_store;
pub mod env;
pub mod keys;
pub mod legacy_source;
pub mod oauth_store;
pub mod outbox;
pub mod pds;
pub mod pds_client;
pub mod repo_store;

// Glue over the ports.
pub mod block_cache;
mod cause;
pub mod storage;
pub mod storage_codec;
pub mod storage_sql;

// Use cases, and their composition.
pub mod stratos;
pub mod usecases;

// Serving the use cases: request authentication and XRPC (errors, framework-free reads).
pub mod auth;
pub mod xrpc;

pub use cause::Cause;
pub use storage::{Storage, StorageParts};
pub use stratos::{BuildError, Stratos, StratosBuilder};
