//! Private keys: generation, import/export of the raw scalar, signing.

use k256::ecdsa::signature::Signer as _;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

use super::{KeyAlgorithm, PublicKey, Signer};
use crate::{Error, Result};

/// A private key with its public half. `Debug` shows only the curve and the did:key.
pub struct Keypair {
    public: PublicKey,
    inner: Inner,
}

enum Inner {
    P256 {
        /// Kept for export; zeroized on drop by the `p256` crate.
        secret: p256::SecretKey,
        signer: EcdsaKeyPair,
        rng: SystemRandom,
    },
    K256(k256::ecdsa::SigningKey),
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keypair")
            .field("alg", &self.public.algorithm())
            .field("did_key", &self.public.to_did_key())
            .finish_non_exhaustive()
    }
}

impl Keypair {
    /// A fresh random key.
    pub fn generate(alg: KeyAlgorithm) -> Self {
        let mut rng = rand_core::OsRng;
        loop {
            let mut scalar = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rng, &mut scalar);
            // Out-of-range scalars (probability ~2^-128) are simply drawn again.
            if let Ok(key) = Self::from_private_bytes(alg, &scalar) {
                return key;
            }
        }
    }

    /// Imports a raw 32-byte private scalar.
    pub fn from_private_bytes(alg: KeyAlgorithm, bytes: &[u8]) -> Result<Self> {
        // Both curve crates left-pad shorter slices; a stored key of the wrong length is corrupt.
        if bytes.len() != 32 {
            return Err(Error::Key(format!(
                "private key must be 32 bytes, got {}",
                bytes.len()
            )));
        }
        match alg {
            KeyAlgorithm::P256 => {
                let secret = p256::SecretKey::from_slice(bytes)
                    .map_err(|_| Error::Key("invalid P-256 private key".into()))?;
                let point = secret.public_key().to_encoded_point(false);
                let rng = SystemRandom::new();
                let signer = EcdsaKeyPair::from_private_key_and_public_key(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &secret.to_bytes(),
                    point.as_bytes(),
                    &rng,
                )
                .map_err(|e| Error::Key(format!("P-256 key rejected: {e}")))?;
                let public = PublicKey::from_sec1(alg, point.as_bytes())?;
                Ok(Self {
                    public,
                    inner: Inner::P256 {
                        secret,
                        signer,
                        rng,
                    },
                })
            }
            KeyAlgorithm::K256 => {
                let key = k256::ecdsa::SigningKey::from_slice(bytes)
                    .map_err(|_| Error::Key("invalid secp256k1 private key".into()))?;
                let public = PublicKey::from_sec1(
                    alg,
                    key.verifying_key().to_encoded_point(true).as_bytes(),
                )?;
                Ok(Self {
                    public,
                    inner: Inner::K256(key),
                })
            }
        }
    }

    /// The raw private scalar, for encrypted storage by an adapter. Handle with care.
    pub fn private_bytes(&self) -> [u8; 32] {
        match &self.inner {
            Inner::P256 { secret, .. } => secret.to_bytes().into(),
            Inner::K256(key) => key.to_bytes().into(),
        }
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The `did:key` of the public half.
    pub fn did_key(&self) -> String {
        self.public.to_did_key()
    }

    /// Signs SHA-256(`msg`), low-S, compact form.
    pub fn sign(&self, msg: &[u8]) -> Result<[u8; 64]> {
        match &self.inner {
            Inner::P256 { signer, rng, .. } => {
                let raw = signer
                    .sign(rng, msg)
                    .map_err(|_| Error::Signature("P-256 signing failed".into()))?;
                let sig = p256::ecdsa::Signature::from_slice(raw.as_ref()).map_err(|_| {
                    Error::Signature("P-256 signer returned a bad signature".into())
                })?;
                let sig = sig.normalize_s().unwrap_or(sig);
                Ok(sig.to_bytes().into())
            }
            Inner::K256(key) => {
                let sig: k256::ecdsa::Signature = key.sign(msg);
                let sig = sig.normalize_s().unwrap_or(sig);
                Ok(sig.to_bytes().into())
            }
        }
    }
}

impl Signer for Keypair {
    fn algorithm(&self) -> KeyAlgorithm {
        self.public.algorithm()
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<[u8; 64]> {
        Keypair::sign(self, msg)
    }
}
