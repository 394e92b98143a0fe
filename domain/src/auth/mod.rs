//! Token verification primitives (service-auth JWT, DPoP proofs, OAuth access tokens).
//! Placeholder: filled in by the auth work of issue 3.

/// Why a token or proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is malformed.
    Malformed(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Malformed(m) => write!(f, "malformed token: {m}"),
        }
    }
}
