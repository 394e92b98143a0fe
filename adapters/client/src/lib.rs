//! The Rust client of Stratos services (issue 17, first part): reading
//! `zone.stratos.sync.subscribeRecords` as an AppView or indexer does, with every `#commit`
//! frame verified against the account's signing key before it is handed over.
//!
//! - [`frame`]: decoding event-stream frames (`#commit`, `#enrollment`, `#info`, errors), bounded
//!   in size, and verifying one commit frame ([`frame::CommitFrame::verify`]: signature,
//!   inversion to `prevData`, and the chain to the frame before).
//! - [`stream`]: [`stream::RecordStream`], a per-account consumer that resumes from a cursor,
//!   reconnects with backoff and jitter, drops duplicates, and reports `OutdatedCursor` as a
//!   backfill signal.
//!
//! - [`verify`]: record proofs (`com.atproto.sync.getRecord`), repository exports and the
//!   enrollment record's service attestation, each against the right key.
//! - [`routing`]: which calls go to Stratos and which to the PDS.
//! - [`scopes`]: the OAuth scope strings for Stratos records.
//!
//! - [`firehose`]: one collection's records out of a PDS's or relay's
//!   `com.atproto.sync.subscribeRepos` (enrollment records appearing and leaving).
//! - [`discovery`]: a user's enrollment records from their PDS, each checked against the
//!   service's DID document (over the `IdentityResolver` and `PublicRecords` ports).
//!
//! - [`xrpc`]: [`xrpc::StratosClient`], a typed client of every method a Stratos service
//!   serves, authenticated by a per-call service-auth JWT, a DPoP-bound token or a bearer.
#![deny(missing_docs)]

pub mod discovery;
mod error;
pub mod firehose;
pub mod frame;
pub mod routing;
pub mod scopes;
pub mod stream;
pub mod verify;
pub mod xrpc;

pub use error::{ChainBreak, ClientError};
