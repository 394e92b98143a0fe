//! Stratos domain: the pure, sans-I/O core.
//!
//! Everything here is deterministic given its inputs (the only exceptions are key generation and
//! the TID clock, whose entropy and time sources are injectable). No module in this crate performs
//! I/O: storage is reached through [`blocks::BlockRead`], which callers implement over memory, a
//! database, or a prefetching cache.
//!
//! Module map:
//! - [`appview`]: the rows and feed rules of an AppView indexing private posts.
//! - [`syntax`]: validated atproto identifiers (DID, handle, NSID, TID, record key, AT-URI, …).
//! - [`data`]: the atproto data model, atproto-JSON ⇄ DAG-CBOR.
//! - [`cid`]: CIDv1 helpers (dag-cbor and raw, sha2-256).
//! - [`crypto`]: P-256 and secp256k1 keys, did:key, low-S compact ECDSA signatures.
//! - [`mst`]: the Merkle Search Tree (ops, diff, proofs).
//! - [`commit`]: signed v3 repository commits.
//! - [`repo`]: record writes → one signed commit and its storage delta.
//! - [`car`]: CAR v1 reading (verified) and writing.
//! - [`sync`]: verifying a commit event from its CAR slice (signature and inversion).
//! - [`import`]: a whole repository read from an untrusted CAR, every rule checked.
//! - [`tid`]: monotonic TID generation.
//! - [`rate_limit`]: per-account sliding-window write limits.
//! - [`auth`]: service-auth JWT, DPoP proof and access-token verification.
//! - [`did_doc`]: the `#atproto` key and `#atproto_pds` service of a DID document.
//! - [`oauth`]: the atproto OAuth client without I/O (PKCE, DPoP proofs, client assertions,
//!   metadata, callback checks, sessions and their encryption at rest).
#![deny(missing_docs)] // a library crate: every public item is documented (checked in CI)

pub mod appview;
pub mod attestation;
pub mod auth;
pub mod blocks;
pub mod boundary;
pub mod car;
pub mod cid;
pub mod commit;
pub mod crypto;
pub mod data;
pub mod did_doc;
pub mod enrollment;
mod error;
pub mod import;
pub mod lexicon;
pub mod mime;
pub mod mst;
pub mod oauth;
pub mod rate_limit;
pub mod repo;
pub mod stub;
pub mod sync;
pub mod syntax;
pub mod tid;
pub mod write;

pub use error::{Error, Result};
pub use ipld_core::cid::Cid;
