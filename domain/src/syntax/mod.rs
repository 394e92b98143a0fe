//! Validated atproto identifiers. Each newtype can only hold a value that passed its parser, so
//! code that receives one never re-validates. Parsers are hand-written (no regex engine): they
//! are on every request's path and are simple enough to read.

mod at_uri;
mod datetime;
mod did;
mod handle;
mod language;
mod nsid;
mod record_key;
mod tid;
mod uri;

pub use at_uri::{AtIdentifier, AtUri};
pub use datetime::Datetime;
pub use did::Did;
pub use handle::Handle;
pub use language::Language;
pub use nsid::Nsid;
pub use record_key::RecordKey;
pub use tid::Tid;
pub use uri::{is_valid_cid_syntax, is_valid_uri};

/// Implements the shared trait surface of a string newtype whose inner field is `.0: String` and
/// which has `fn parse(&str) -> Result<Self>`.
macro_rules! string_newtype {
    ($ty:ident) => {
        impl $ty {
            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = crate::Error;
            fn from_str(s: &str) -> crate::Result<Self> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = crate::Error;
            fn try_from(s: String) -> crate::Result<Self> {
                Self::parse(&s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = crate::Error;
            fn try_from(s: &str) -> crate::Result<Self> {
                Self::parse(s)
            }
        }

        impl From<$ty> for String {
            fn from(v: $ty) -> String {
                v.0
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $ty {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use string_newtype;

/// A DNS-style label: 1–63 chars of `[A-Za-z0-9-]`, not starting or ending with `-`.
pub(crate) fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}
