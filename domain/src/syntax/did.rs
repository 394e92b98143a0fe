//! DIDs: `did:<method>:<identifier>` (atproto's generic DID syntax, not per-method rules).

use super::string_newtype;
use crate::{Error, Result};

/// A syntactically valid DID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Did(String);
string_newtype!(Did);

/// Longest DID atproto accepts.
pub const MAX_DID_LEN: usize = 2048;

impl Did {
    /// Parses `did:method:identifier`: method `[a-z]+`; identifier `[A-Za-z0-9._:%-]+` not
    /// ending in `:` or `%`; at most 2048 bytes.
    pub fn parse(s: &str) -> Result<Self> {
        Self::validate(s)?;
        Ok(Self(s.to_owned()))
    }

    /// Checks `s` as [`Did::parse`] does, without making a `Did` (no allocation): for parsers
    /// of values that embed a DID.
    pub fn validate(s: &str) -> Result<()> {
        let err = |reason| Err(Error::syntax("DID", s, reason));
        if s.len() > MAX_DID_LEN {
            return err("longer than 2048 characters");
        }
        let Some(rest) = s.strip_prefix("did:") else {
            return err("must start with \"did:\"");
        };
        // Byte loops, not `str` searchers: a DID is validated several times per request, and
        // for strings this short the searchers' set-up costs more than the scan.
        let rest = rest.as_bytes();
        let Some(colon) = rest.iter().position(|&b| b == b':') else {
            return err("missing method or identifier");
        };
        let (method, id) = (&rest[..colon], &rest[colon + 1..]);
        if method.is_empty() || !method.iter().all(u8::is_ascii_lowercase) {
            return err("method must be lowercase letters");
        }
        if id.is_empty() {
            return err("empty identifier");
        }
        if !id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'%' | b'-'))
        {
            return err("identifier has characters outside [A-Za-z0-9._:%-]");
        }
        if matches!(id.last(), Some(b':' | b'%')) {
            return err("identifier must not end with ':' or '%'");
        }
        Ok(())
    }

    /// The method (`plc`, `web`, …).
    pub fn method(&self) -> &str {
        self.0[4..].split(':').next().unwrap_or_default()
    }
}
