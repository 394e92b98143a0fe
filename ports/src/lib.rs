//! Ports: the traits Stratos needs from the outside world, and the use cases written once
//! against them. This crate depends only on `stratos-domain` (and on no I/O crate): adapters
//! implement the traits, apps compose them.
#![deny(missing_docs)] // a library crate: every public item is documented (checked in CI)

pub mod blob_store;
pub mod block_cache;
pub mod enrollment_store;
pub mod env;
pub mod keys;
pub mod oauth_store;
pub mod outbox;
pub mod repo_store;
pub mod storage;
pub mod storage_codec;
pub mod storage_sql;
pub mod stratos;
pub mod usecases;

pub use storage::{Storage, StorageParts};
pub use stratos::{BuildError, Stratos, StratosBuilder};
