//! `stratos-indexer`: indexes the private posts of a Stratos service into an AppView's
//! PostgreSQL (the tables of reference §1.9), verified frame by frame, resuming exactly.
//!
//! - [`config`]: the environment it reads.
//! - [`engine`]: [`engine::Indexer`] — the service-level stream names the accounts; one verified
//!   stream per account (a bounded number open at once, the rest waiting their turn); one writer
//!   committing rows and cursors together; backfill from the verified export for new accounts,
//!   outdated cursors and refused frames.
//! - [`http`]: `/health`, `/ready` and `/metrics`.
//! - [`metrics`]: the figures behind `/metrics`.
//!
//! An AppView reads the tables through the AppView SDK (`stratos_ports::usecases::appview`).
#![deny(missing_docs)]

pub mod config;
pub mod engine;
pub mod http;
pub mod metrics;
