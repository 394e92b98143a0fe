//! CIDv1 helpers. atproto uses exactly two kinds: dag-cbor (0x71) for records, MST nodes and
//! commits, and raw (0x55) for blobs, both with a sha2-256 multihash.

use ipld_core::cid::{Cid, Version};
use multihash::Multihash;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Multicodec code of DAG-CBOR.
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec code of raw bytes (blobs).
pub const RAW: u64 = 0x55;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;

fn from_digest(codec: u64, digest: &[u8; 32]) -> Cid {
    // `wrap` only fails for digests longer than 64 bytes; a 32-byte digest always fits.
    Cid::new_v1(
        codec,
        Multihash::<64>::wrap(SHA2_256, digest).unwrap_or_default(),
    )
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// CID of DAG-CBOR encoded bytes (records, MST nodes, commits).
pub fn dag_cbor(bytes: &[u8]) -> Cid {
    from_digest(DAG_CBOR, &sha256(bytes))
}

/// CID of raw bytes (blobs).
pub fn raw(bytes: &[u8]) -> Cid {
    from_digest(RAW, &sha256(bytes))
}

/// True when `cid` is a CIDv1 with a sha2-256 multihash and a codec atproto uses.
pub fn is_supported(cid: &Cid) -> bool {
    cid.version() == Version::V1
        && cid.hash().code() == SHA2_256
        && cid.hash().size() == 32
        && (cid.codec() == DAG_CBOR || cid.codec() == RAW)
}

/// Checks that `bytes` hash to `cid` (which must be a supported CID).
pub fn verify(cid: &Cid, bytes: &[u8]) -> Result<()> {
    if !is_supported(cid) {
        return Err(Error::Cid(format!("unsupported CID {cid}")));
    }
    if cid.hash().digest() == sha256(bytes).as_slice() {
        Ok(())
    } else {
        Err(Error::CarHashMismatch(*cid))
    }
}

/// Parses a CID string (any multibase the `cid` crate understands).
pub fn parse(s: &str) -> Result<Cid> {
    Cid::try_from(s).map_err(|e| Error::Cid(format!("{s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_mst_node_cid_matches_atproto() {
        // {"e": [], "l": null} — the empty MST node every implementation shares.
        let bytes = [0xa2, 0x61, 0x65, 0x80, 0x61, 0x6c, 0xf6];
        assert_eq!(
            dag_cbor(&bytes).to_string(),
            "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
        );
    }

    #[test]
    fn verify_rejects_wrong_bytes_and_foreign_hashes() {
        let cid = dag_cbor(b"abc");
        assert!(verify(&cid, b"abc").is_ok());
        assert_eq!(verify(&cid, b"abd"), Err(Error::CarHashMismatch(cid)));
        let raw_cid = raw(b"abc");
        assert!(verify(&raw_cid, b"abc").is_ok());
        assert!(parse("not a cid").is_err());
    }
}
