//! AT-URIs in the restricted form atproto uses for records:
//! `at://<did|handle>[/<collection NSID>[/<record key>]]`, no query, no fragment.

use super::{Did, Handle, Nsid, RecordKey};
use crate::{Error, Result};

/// A DID or a handle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AtIdentifier {
    /// A DID.
    Did(Did),
    /// A handle.
    Handle(Handle),
}

impl AtIdentifier {
    /// Parses a DID (if it starts with `did:`) or else a handle.
    pub fn parse(s: &str) -> Result<Self> {
        if s.starts_with("did:") {
            Did::parse(s).map(AtIdentifier::Did)
        } else {
            Handle::parse(s).map(AtIdentifier::Handle)
        }
    }

    /// The string form.
    pub fn as_str(&self) -> &str {
        match self {
            AtIdentifier::Did(d) => d.as_str(),
            AtIdentifier::Handle(h) => h.as_str(),
        }
    }
}

impl std::fmt::Display for AtIdentifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A valid AT-URI with its parsed parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AtUri(String, Parts);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Parts {
    authority: AtIdentifier,
    collection: Option<Nsid>,
    rkey: Option<RecordKey>,
}

/// Longest AT-URI accepted (8 KiB, as for generic URIs).
const MAX_LEN: usize = 8 * 1024;

impl AtUri {
    /// Parses an AT-URI.
    pub fn parse(s: &str) -> Result<Self> {
        let err = |reason| Err(Error::syntax("AT-URI", s, reason));
        if s.len() > MAX_LEN {
            return err("longer than 8 KiB");
        }
        let Some(rest) = s.strip_prefix("at://") else {
            return err("must start with \"at://\"");
        };
        if rest.contains(['#', '?']) {
            return err("query and fragment are not allowed");
        }
        let mut parts = rest.split('/');
        let authority = match AtIdentifier::parse(parts.next().unwrap_or_default()) {
            Ok(a) => a,
            Err(_) => return err("authority must be a DID or a handle"),
        };
        let collection = match parts.next() {
            None => None,
            Some(c) => match Nsid::parse(c) {
                Ok(n) => Some(n),
                Err(_) => return err("collection must be an NSID"),
            },
        };
        let rkey = match parts.next() {
            None => None,
            Some(r) => match RecordKey::parse(r) {
                Ok(k) => Some(k),
                Err(_) => return err("invalid record key"),
            },
        };
        if parts.next().is_some() {
            return err("too many path segments");
        }
        Ok(Self(
            s.to_owned(),
            Parts {
                authority,
                collection,
                rkey,
            },
        ))
    }

    /// The URI of a record.
    pub fn for_record(did: &Did, collection: &Nsid, rkey: &RecordKey) -> AtUri {
        AtUri(
            format!("at://{did}/{collection}/{rkey}"),
            Parts {
                authority: AtIdentifier::Did(did.clone()),
                collection: Some(collection.clone()),
                rkey: Some(rkey.clone()),
            },
        )
    }

    /// The full URI.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The repository (DID or handle).
    pub fn authority(&self) -> &AtIdentifier {
        &self.1.authority
    }

    /// The collection, if present.
    pub fn collection(&self) -> Option<&Nsid> {
        self.1.collection.as_ref()
    }

    /// The record key, if present.
    pub fn rkey(&self) -> Option<&RecordKey> {
        self.1.rkey.as_ref()
    }
}

impl std::fmt::Display for AtUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for AtUri {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for AtUri {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for AtUri {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}
