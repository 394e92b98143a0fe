//! Signed repository commits, version 3.
//!
//! Unsigned form `{did, version: 3, data, rev, prev: null}`; the signature is ECDSA (low-S,
//! compact) over its DAG-CBOR bytes; the signed form adds `sig` and its CID is the commit CID.
//! `prev` is always written as an explicit null, as every atproto implementation does.

use ipld_core::cid::Cid;
use serde::{Deserialize, Serialize};

use crate::crypto::{PublicKey, Signer};
use crate::syntax::{Did, Tid};
use crate::{Error, Result};

/// The only commit version this crate writes and accepts.
pub const VERSION: u64 = 3;

#[derive(Serialize)]
struct UnsignedWire<'a> {
    did: &'a str,
    version: u64,
    data: Cid,
    rev: &'a str,
    prev: Option<Cid>,
}

#[derive(Serialize)]
struct SignedWireOut<'a> {
    did: &'a str,
    version: u64,
    data: Cid,
    rev: &'a str,
    prev: Option<Cid>,
    #[serde(with = "serde_bytes")]
    sig: &'a [u8],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedWireIn {
    did: String,
    version: u64,
    data: Cid,
    rev: String,
    #[serde(default)]
    prev: Option<Cid>,
    #[serde(with = "serde_bytes")]
    sig: Vec<u8>,
}

/// A commit before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedCommit {
    /// The repository owner.
    pub did: Did,
    /// Root of the record MST.
    pub data: Cid,
    /// Revision; strictly increasing within a repository.
    pub rev: Tid,
    /// Previous commit (always `None` in v3 as written by atproto today).
    pub prev: Option<Cid>,
}

impl UnsignedCommit {
    /// The DAG-CBOR bytes that get signed.
    pub fn bytes(&self) -> Result<Vec<u8>> {
        to_vec(&UnsignedWire {
            did: self.did.as_str(),
            version: VERSION,
            data: self.data,
            rev: self.rev.as_str(),
            prev: self.prev,
        })
    }

    /// Signs the commit.
    pub fn sign(self, signer: &dyn Signer) -> Result<SignedCommit> {
        let sig = signer.sign(&self.bytes()?)?;
        Ok(SignedCommit {
            did: self.did,
            data: self.data,
            rev: self.rev,
            prev: self.prev,
            sig: sig.to_vec(),
        })
    }
}

/// A signed commit as stored in a repository block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCommit {
    /// The repository owner.
    pub did: Did,
    /// Root of the record MST.
    pub data: Cid,
    /// Revision.
    pub rev: Tid,
    /// Previous commit.
    pub prev: Option<Cid>,
    /// Compact (64-byte) low-S ECDSA signature over the unsigned bytes.
    pub sig: Vec<u8>,
}

impl SignedCommit {
    /// The commit block bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        to_vec(&SignedWireOut {
            did: self.did.as_str(),
            version: VERSION,
            data: self.data,
            rev: self.rev.as_str(),
            prev: self.prev,
            sig: &self.sig,
        })
    }

    /// Parses a commit block: strict DAG-CBOR, version 3, valid DID and TID.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let wire: SignedWireIn =
            serde_ipld_dagcbor::from_slice(bytes).map_err(|e| Error::Commit(e.to_string()))?;
        if wire.version != VERSION {
            return Err(Error::Commit(format!(
                "unsupported commit version {}",
                wire.version
            )));
        }
        let supported = crate::cid::is_supported;
        if !supported(&wire.data) || wire.prev.is_some_and(|p| !supported(&p)) {
            return Err(Error::Commit("unsupported CID in commit".into()));
        }
        let commit = Self {
            did: Did::parse(&wire.did)?,
            data: wire.data,
            rev: Tid::parse(&wire.rev)?,
            prev: wire.prev,
            sig: wire.sig,
        };
        if commit.encode()? != bytes {
            return Err(Error::Commit("not in canonical DAG-CBOR form".into()));
        }
        Ok(commit)
    }

    /// The commit without its signature.
    pub fn unsigned(&self) -> UnsignedCommit {
        UnsignedCommit {
            did: self.did.clone(),
            data: self.data,
            rev: self.rev.clone(),
            prev: self.prev,
        }
    }

    /// Verifies the signature with the repository's signing key.
    pub fn verify(&self, key: &PublicKey) -> Result<()> {
        key.verify(&self.unsigned().bytes()?, &self.sig)
    }
}

fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_ipld_dagcbor::to_vec(value).map_err(|e| Error::CborEncode(e.to_string()))
}
