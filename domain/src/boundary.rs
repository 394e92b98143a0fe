//! Boundaries and the one read-access decision.
//!
//! A boundary is `{serviceDid}/{name}` (e.g. `did:web:stratos.example.com/engineering`). The
//! service DID inside the value keeps equal names on different services apart.

use std::collections::BTreeSet;

use ipld_core::ipld::Ipld;

use crate::syntax::Did;
use crate::{Error, Result};

/// Longest boundary value (the lexicon's `maxLength`).
pub const MAX_BOUNDARY_LEN: usize = 253;
/// Most boundaries one record may carry.
pub const MAX_RECORD_BOUNDARIES: usize = 10;

/// A qualified boundary, `{serviceDid}/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Boundary {
    value: String,
    /// Byte index of the separating `/`.
    split: usize,
}

impl Boundary {
    /// Parses a qualified boundary. The separator is the first `/` after `did:<method>:`; the
    /// DID part must be a valid DID and the name must be non-empty, printable and free of
    /// whitespace.
    pub fn parse(value: &str) -> Result<Self> {
        let bad = |reason| Error::BoundaryFormat {
            boundary: truncate(value),
            reason,
        };
        if value.len() > MAX_BOUNDARY_LEN {
            return Err(bad("longer than 253 characters"));
        }
        let (did, name) =
            split_qualified(value).ok_or_else(|| bad("expected {serviceDid}/{name}"))?;
        Did::validate(did).map_err(|_| bad("the part before `/` is not a DID"))?;
        if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the name contains whitespace or control characters"));
        }
        Ok(Self {
            value: value.to_owned(),
            split: did.len(),
        })
    }

    /// Parses a boundary value of a record written to `service`. A bare name (`general`) is
    /// refused with the qualified value to use, since records carry boundaries in full.
    pub fn parse_for(service: &Did, value: &str) -> Result<Self> {
        if !value.starts_with("did:")
            && let Ok(qualified) = Self::qualify(service, value.trim())
        {
            return Err(Error::BoundaryUnqualified {
                boundary: truncate(value),
                service: service.to_string(),
                qualified: qualified.to_string(),
            });
        }
        Self::parse(value)
    }

    /// Qualifies a bare name for `service` (`engineering` → `did:web:x/engineering`).
    pub fn qualify(service: &Did, name: &str) -> Result<Self> {
        Self::parse(&format!("{service}/{name}"))
    }

    /// The whole value.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The DID of the service the boundary belongs to.
    pub fn service_did(&self) -> &str {
        &self.value[..self.split]
    }

    /// The name within the service.
    pub fn name(&self) -> &str {
        &self.value[self.split + 1..]
    }

    /// True when the boundary belongs to `service`.
    pub fn belongs_to(&self, service: &Did) -> bool {
        self.service_did() == service.as_str()
    }
}

impl std::fmt::Display for Boundary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.value)
    }
}

impl AsRef<str> for Boundary {
    fn as_ref(&self) -> &str {
        &self.value
    }
}

impl PartialEq<str> for Boundary {
    fn eq(&self, other: &str) -> bool {
        self.value == other
    }
}

impl PartialEq<&str> for Boundary {
    fn eq(&self, other: &&str) -> bool {
        self.value == *other
    }
}

impl PartialEq<String> for Boundary {
    fn eq(&self, other: &String) -> bool {
        self.value == *other
    }
}

impl From<Boundary> for String {
    fn from(boundary: Boundary) -> Self {
        boundary.value
    }
}

impl std::str::FromStr for Boundary {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl serde::Serialize for Boundary {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.value)
    }
}

impl<'de> serde::Deserialize<'de> for Boundary {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn truncate(value: &str) -> String {
    value.chars().take(300).collect()
}

/// Splits `did:<method>:<id>/<name>` at the first `/` after the method's colon; `None` for bare
/// names or an empty part.
pub fn split_qualified(value: &str) -> Option<(&str, &str)> {
    let rest = value.strip_prefix("did:")?;
    // Byte loops: short strings, parsed for every record read (see `Did::validate`).
    let method_end = rest.bytes().position(|b| b == b':')? + 4;
    let slash = value.as_bytes()[method_end..]
        .iter()
        .position(|&b| b == b'/')?
        + method_end;
    let (did, name) = (&value[..slash], &value[slash + 1..]);
    (!did.is_empty() && !name.is_empty() && did.len() > method_end + 1).then_some((did, name))
}

/// Qualifies the boundaries a service is configured with: bare names get the service DID,
/// qualified values must already belong to it. Duplicates are dropped, order kept. (The
/// TypeScript original qualified every entry blindly, turning `did:x/a` into `did:x/did:x/a`.)
pub fn qualify_configured<S: AsRef<str>>(service: &Did, entries: &[S]) -> Result<Vec<Boundary>> {
    let mut out: Vec<Boundary> = Vec::with_capacity(entries.len());
    for entry in entries {
        let entry = entry.as_ref().trim();
        if entry.is_empty() {
            continue;
        }
        let boundary = if entry.starts_with("did:") {
            let b = Boundary::parse(entry)?;
            if !b.belongs_to(service) {
                return Err(Error::BoundaryServiceMismatch {
                    boundary: entry.to_owned(),
                    expected: service.to_string(),
                });
            }
            b
        } else {
            Boundary::qualify(service, entry)?
        };
        if !out.contains(&boundary) {
            out.push(boundary);
        }
    }
    Ok(out)
}

/// Qualifies boundaries an operator assigns to an account (bare names or qualified values) and
/// requires each to be one the service offers. Duplicates are dropped, order kept.
pub fn qualify_offered<S: AsRef<str>>(
    service: &Did,
    offered: &[Boundary],
    entries: &[S],
) -> Result<Vec<Boundary>> {
    let qualified = qualify_configured(service, entries)?;
    if let Some(missing) = qualified.iter().find(|b| !offered.contains(b)) {
        return Err(Error::BoundaryNotAllowed {
            boundary: missing.to_string(),
        });
    }
    Ok(qualified)
}

/// The raw `boundary.values[].value` strings of a record (empty when absent). Values that are
/// not strings are skipped here; the lexicon rejects them on write.
pub fn record_boundary_values(record: &Ipld) -> Vec<&str> {
    let Ipld::Map(map) = record else {
        return Vec::new();
    };
    let Some(Ipld::Map(boundary)) = map.get("boundary") else {
        return Vec::new();
    };
    let Some(Ipld::List(values)) = boundary.get("values") else {
        return Vec::new();
    };
    values
        .iter()
        .filter_map(|v| match v {
            Ipld::Map(m) => match m.get("value") {
                Some(Ipld::String(s)) => Some(s.as_str()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// A set of boundaries held by a viewer or carried by a record.
pub type BoundarySet = BTreeSet<String>;

/// Who is reading.
#[derive(Debug, Clone, Copy)]
pub enum Viewer<'a> {
    /// No authenticated identity.
    Anonymous,
    /// An authenticated account and the boundaries it holds on this service.
    Account {
        /// The viewer's DID.
        did: &'a str,
        /// The viewer's boundaries.
        boundaries: &'a BoundarySet,
    },
}

/// **The** read-access decision for private content: a viewer may read a record iff the viewer
/// owns it, or the viewer is authenticated and shares at least one boundary with it. Anonymous
/// viewers never read private content, and a record without boundaries is visible to its owner
/// only. Callers must present a denial exactly like "not found".
pub fn can_read<S: AsRef<str>>(viewer: Viewer<'_>, owner: &str, record_boundaries: &[S]) -> bool {
    match viewer {
        Viewer::Anonymous => false,
        Viewer::Account { did, boundaries } => {
            did == owner
                || record_boundaries
                    .iter()
                    .any(|b| boundaries.contains(b.as_ref()))
        }
    }
}

/// What a listing may return to a viewer, in a form a storage query can apply. Derived from the
/// same rule as [`can_read`]; callers still check every returned record with [`can_read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFilter {
    /// Every record (the owner).
    All,
    /// Records carrying at least one of these boundaries.
    AnyOf(Vec<String>),
    /// Nothing (anonymous, or a viewer without boundaries).
    Nothing,
}

/// The listing filter for `viewer` over `owner`'s records.
pub fn read_filter(viewer: Viewer<'_>, owner: &str) -> ReadFilter {
    match viewer {
        Viewer::Anonymous => ReadFilter::Nothing,
        Viewer::Account { did, .. } if did == owner => ReadFilter::All,
        Viewer::Account { boundaries, .. } if boundaries.is_empty() => ReadFilter::Nothing,
        Viewer::Account { boundaries, .. } => {
            ReadFilter::AnyOf(boundaries.iter().cloned().collect())
        }
    }
}
