//! Public keys: parsing (SEC1, did:key, multibase) and signature verification.

use k256::ecdsa::signature::Verifier as _;
use p256::elliptic_curve::sec1::ToEncodedPoint;

use super::KeyAlgorithm;
use crate::{Error, Result};

const DID_KEY_PREFIX: &str = "did:key:";

/// A public key of either curve, kept in the forms verification needs.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    alg: KeyAlgorithm,
    compressed: [u8; 33],
    inner: Inner,
}

#[derive(Clone, PartialEq, Eq)]
enum Inner {
    /// Uncompressed SEC1 point, the form `ring` verifies with.
    P256([u8; 65]),
    K256(k256::ecdsa::VerifyingKey),
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PublicKey")
            .field(&self.to_did_key())
            .finish()
    }
}

impl PublicKey {
    /// Parses a SEC1 point (compressed or uncompressed) of the given curve.
    pub fn from_sec1(alg: KeyAlgorithm, bytes: &[u8]) -> Result<Self> {
        let bad = |e: &dyn std::fmt::Display| Error::Key(format!("{} point: {e}", alg.jwt_alg()));
        match alg {
            KeyAlgorithm::P256 => {
                let key = p256::PublicKey::from_sec1_bytes(bytes).map_err(|e| bad(&e))?;
                let compressed = to_array::<33>(key.to_encoded_point(true).as_bytes())?;
                let uncompressed = to_array::<65>(key.to_encoded_point(false).as_bytes())?;
                Ok(Self {
                    alg,
                    compressed,
                    inner: Inner::P256(uncompressed),
                })
            }
            KeyAlgorithm::K256 => {
                let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map_err(|e| bad(&e))?;
                let compressed = to_array::<33>(key.to_encoded_point(true).as_bytes())?;
                Ok(Self {
                    alg,
                    compressed,
                    inner: Inner::K256(key),
                })
            }
        }
    }

    /// Parses `did:key:z…` (multicodec p256-pub or secp256k1-pub, compressed point).
    pub fn from_did_key(did_key: &str) -> Result<Self> {
        let encoded = did_key
            .strip_prefix(DID_KEY_PREFIX)
            .ok_or_else(|| Error::Key("not a did:key".into()))?;
        Self::from_multikey(encoded)
    }

    /// Parses a multibase "Multikey" value (`z` + base58btc of multicodec ‖ compressed point), the
    /// form of did:key and of `Multikey` verification methods in DID documents.
    pub fn from_multikey(multibase: &str) -> Result<Self> {
        let bytes = decode_base58btc(multibase)?;
        for alg in [KeyAlgorithm::P256, KeyAlgorithm::K256] {
            if let Some(point) = bytes.strip_prefix(&alg.multicodec()) {
                return Self::from_sec1(alg, point);
            }
        }
        Err(Error::Key(
            "unsupported multicodec (expected p256-pub or secp256k1-pub)".into(),
        ))
    }

    /// Parses a legacy `publicKeyMultibase` (`EcdsaSecp256r1VerificationKey2019` /
    /// `EcdsaSecp256k1VerificationKey2019`): base58btc of the bare SEC1 point, curve given by the
    /// suite.
    pub fn from_multibase(alg: KeyAlgorithm, multibase: &str) -> Result<Self> {
        Self::from_sec1(alg, &decode_base58btc(multibase)?)
    }

    /// The curve.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    /// The compressed SEC1 point.
    pub fn compressed(&self) -> &[u8; 33] {
        &self.compressed
    }

    /// The multibase Multikey form (`z…`).
    pub fn to_multikey(&self) -> String {
        let mut bytes = Vec::with_capacity(35);
        bytes.extend_from_slice(&self.alg.multicodec());
        bytes.extend_from_slice(&self.compressed);
        multibase::encode(multibase::Base::Base58Btc, bytes)
    }

    /// The `did:key:z…` form.
    pub fn to_did_key(&self) -> String {
        format!("{DID_KEY_PREFIX}{}", self.to_multikey())
    }

    /// Verifies a 64-byte compact low-S signature over SHA-256(`msg`). DER signatures, high-S
    /// signatures and wrong lengths are rejected.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<()> {
        if sig.len() != 64 {
            return Err(Error::Signature(format!(
                "expected 64 bytes (r‖s), got {}",
                sig.len()
            )));
        }
        match &self.inner {
            Inner::P256(uncompressed) => {
                let parsed = p256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| Error::Signature("malformed P-256 signature".into()))?;
                if parsed.normalize_s().is_some() {
                    return Err(Error::Signature("high-S signature".into()));
                }
                ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ECDSA_P256_SHA256_FIXED,
                    uncompressed,
                )
                .verify(msg, sig)
                .map_err(|_| Error::Signature("signature does not verify".into()))
            }
            Inner::K256(key) => {
                let parsed = k256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| Error::Signature("malformed secp256k1 signature".into()))?;
                if parsed.normalize_s().is_some() {
                    return Err(Error::Signature("high-S signature".into()));
                }
                key.verify(msg, &parsed)
                    .map_err(|_| Error::Signature("signature does not verify".into()))
            }
        }
    }
}

impl PublicKey {
    /// Like [`PublicKey::verify`], but also accepts high-S signatures (each ECDSA signature has a
    /// low-S and a high-S form). For JOSE (DPoP proofs, OAuth access tokens): JWS does not require
    /// low S and WebCrypto signers produce high S about half the time. atproto's own signatures
    /// (commits, service-auth JWTs) must keep using the strict [`PublicKey::verify`].
    pub fn verify_allow_high_s(&self, msg: &[u8], sig: &[u8]) -> Result<()> {
        if sig.len() != 64 {
            return Err(Error::Signature(format!(
                "expected 64 bytes (r‖s), got {}",
                sig.len()
            )));
        }
        let low_s: [u8; 64] = match self.alg {
            KeyAlgorithm::P256 => {
                let parsed = p256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| Error::Signature("malformed P-256 signature".into()))?;
                parsed.normalize_s().unwrap_or(parsed).to_bytes().into()
            }
            KeyAlgorithm::K256 => {
                let parsed = k256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| Error::Signature("malformed secp256k1 signature".into()))?;
                parsed.normalize_s().unwrap_or(parsed).to_bytes().into()
            }
        };
        self.verify(msg, &low_s)
    }

    /// The affine coordinates `(x, y)` of the point, 32 big-endian bytes each (the JWK `x`/`y`).
    pub fn uncompressed_xy(&self) -> ([u8; 32], [u8; 32]) {
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        match &self.inner {
            Inner::P256(uncompressed) => {
                x.copy_from_slice(&uncompressed[1..33]);
                y.copy_from_slice(&uncompressed[33..65]);
            }
            Inner::K256(key) => {
                // An uncompressed encoding always carries both coordinates.
                let point = key.to_encoded_point(false);
                if let (Some(px), Some(py)) = (point.x(), point.y()) {
                    x.copy_from_slice(px);
                    y.copy_from_slice(py);
                }
            }
        }
        (x, y)
    }
}

fn decode_base58btc(multibase: &str) -> Result<Vec<u8>> {
    let (base, bytes) =
        multibase::decode(multibase).map_err(|e| Error::Key(format!("bad multibase: {e}")))?;
    if base != multibase::Base::Base58Btc {
        return Err(Error::Key("expected base58btc ('z') multibase".into()));
    }
    Ok(bytes)
}

fn to_array<const N: usize>(bytes: &[u8]) -> Result<[u8; N]> {
    bytes
        .try_into()
        .map_err(|_| Error::Key(format!("expected a {N}-byte point")))
}
