//! Sessions and pending flows at rest: AES-256-GCM under a key derived from the service's
//! signing key, bound to the row they are stored in.
//!
//! - Key: HKDF-SHA256 (RFC 5869) with salt [`SEAL_SALT`], input key material the service key's
//!   32-byte private scalar, info [`SEAL_INFO`], 32 bytes of output. Every instance sharing the
//!   service key derives the same key; the key is not the signing key and no other secret is
//!   derived with this salt and info.
//! - Value: `sv1.` + base64url(nonce ‖ ciphertext ‖ tag), a fresh random 96-bit nonce per value.
//! - Associated data: `stratos/oauth-seal/v1`, NUL, the kind (`session` or `state`), NUL, the
//!   storage key (the account's DID, or the flow's `state`). A value copied to another account's
//!   row, or a state offered under another key, does not decrypt, and neither does one whose
//!   version prefix was changed.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom as _, SystemRandom};

use super::{AuthorizationState, OAuthError, OAuthResult, Session};
use crate::auth::jws::{b64url, b64url_decode};
use crate::crypto::Keypair;
use crate::syntax::Did;

/// The HKDF salt.
pub const SEAL_SALT: &[u8] = b"stratos/oauth-seal/v1";
/// The HKDF info.
pub const SEAL_INFO: &[u8] = b"AES-256-GCM key for OAuth sessions and states at rest";
/// The prefix of a sealed value of this version.
pub const SEAL_PREFIX: &str = "sv1.";

const TAG_LEN: usize = 16;

/// The key that seals and opens values; `Debug` shows nothing of it.
pub struct SealKey {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

impl SealKey {
    /// The key of the service whose signing key is `service_key` (see the module docs).
    pub fn derive(service_key: &Keypair) -> OAuthResult<Self> {
        Self::from_secret(&service_key.private_bytes())
    }

    /// The key derived from any secret input key material (at least 32 bytes).
    pub fn from_secret(ikm: &[u8]) -> OAuthResult<Self> {
        if ikm.len() < 32 {
            return Err(OAuthError::Crypto(
                "the sealing secret must be at least 32 bytes",
            ));
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SEAL_SALT).extract(ikm);
        let info = [SEAL_INFO];
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .map_err(|_| OAuthError::Crypto("HKDF expansion failed"))?;
        Ok(Self {
            key: LessSafeKey::new(UnboundKey::from(okm)),
            rng: SystemRandom::new(),
        })
    }

    /// Encrypts `plaintext` for the row `kind`/`storage_key`.
    pub fn seal(&self, plaintext: &[u8], kind: &str, storage_key: &str) -> OAuthResult<String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| OAuthError::Crypto("no randomness for the nonce"))?;
        let mut buffer = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(kind, storage_key)),
                &mut buffer,
            )
            .map_err(|_| OAuthError::Crypto("encryption failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + buffer.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buffer);
        Ok(format!("{SEAL_PREFIX}{}", b64url(&out)))
    }

    /// Decrypts a value sealed for the row `kind`/`storage_key`.
    pub fn open(&self, sealed: &str, kind: &str, storage_key: &str) -> OAuthResult<Vec<u8>> {
        let body = sealed
            .strip_prefix(SEAL_PREFIX)
            .ok_or(OAuthError::SealFormat("unknown version prefix"))?;
        let bytes = b64url_decode(body).map_err(|_| OAuthError::SealFormat("not base64url"))?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(OAuthError::SealFormat("too short"));
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| OAuthError::SealFormat("bad nonce"))?;
        let mut buffer = ciphertext.to_vec();
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(aad(kind, storage_key)), &mut buffer)
            .map_err(|_| OAuthError::Unseal)?;
        Ok(plaintext.to_vec())
    }

    /// Seals a session for the row of its account.
    pub fn seal_session(&self, session: &Session) -> OAuthResult<String> {
        self.seal(&session.to_json()?, "session", session.did.as_str())
    }

    /// Opens the session stored in the row of `did`; a session of another account is refused.
    pub fn open_session(&self, sealed: &str, did: &Did) -> OAuthResult<Session> {
        let session = Session::from_json(&self.open(sealed, "session", did.as_str())?)?;
        if session.did != *did {
            return Err(OAuthError::Unseal);
        }
        Ok(session)
    }

    /// Seals a pending flow for the row of its `state`.
    pub fn seal_state(&self, state: &AuthorizationState) -> OAuthResult<String> {
        self.seal(&state.to_json()?, "state", &state.state)
    }

    /// Opens the pending flow stored under `state`; a flow of another `state` is refused.
    pub fn open_state(&self, sealed: &str, state: &str) -> OAuthResult<AuthorizationState> {
        let flow = AuthorizationState::from_json(&self.open(sealed, "state", state)?)?;
        if flow.state != state {
            return Err(OAuthError::Unseal);
        }
        Ok(flow)
    }
}

fn aad(kind: &str, storage_key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SEAL_SALT.len() + kind.len() + storage_key.len() + 2);
    aad.extend_from_slice(SEAL_SALT);
    aad.push(0);
    aad.extend_from_slice(kind.as_bytes());
    aad.push(0);
    aad.extend_from_slice(storage_key.as_bytes());
    aad
}
