//! atproto cryptography: P-256 ("ES256") and secp256k1 ("ES256K") keys, did:key, and ECDSA over
//! SHA-256 with 64-byte compact, low-S signatures.
//!
//! P-256 signs and verifies through `ring` (≈35 µs per signature here, against ≈300 µs for the
//! pure-Rust `p256` crate; every private write signs a commit). `ring` neither produces nor
//! rejects high-S signatures, so signatures are normalised after signing and high-S is rejected
//! before verifying. secp256k1 uses `k256`, which is low-S on both sides.

mod keypair;
mod public;

pub use keypair::Keypair;
pub use public::PublicKey;

use crate::Result;

/// The two curves atproto uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// NIST P-256 (secp256r1).
    P256,
    /// secp256k1.
    K256,
}

impl KeyAlgorithm {
    /// The JWT/JWS `alg` name.
    pub fn jwt_alg(self) -> &'static str {
        match self {
            KeyAlgorithm::P256 => "ES256",
            KeyAlgorithm::K256 => "ES256K",
        }
    }

    /// The multicodec prefix (varint) of a compressed public key of this curve in did:key.
    pub(crate) fn multicodec(self) -> [u8; 2] {
        match self {
            KeyAlgorithm::P256 => [0x80, 0x24],
            KeyAlgorithm::K256 => [0xe7, 0x01],
        }
    }
}

/// Something that signs on behalf of a repository or the service: an in-memory [`Keypair`], or an
/// adapter's HSM/KMS client.
pub trait Signer: Send + Sync {
    /// The signing curve.
    fn algorithm(&self) -> KeyAlgorithm;
    /// The public half, for did:key and verification.
    fn public_key(&self) -> &PublicKey;
    /// Signs SHA-256(`msg`); returns the 64-byte compact `r‖s` form with low S.
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64]>;
}
