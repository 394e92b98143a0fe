//! Record keys: 1–512 chars of `[A-Za-z0-9._:~-]`, not `.` or `..`.

use super::string_newtype;
use crate::{Error, Result};

/// A syntactically valid record key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey(String);
string_newtype!(RecordKey);

impl RecordKey {
    /// Parses a record key.
    pub fn parse(s: &str) -> Result<Self> {
        let err = |reason| Err(Error::syntax("record key", s, reason));
        if s.is_empty() || s.len() > 512 {
            return err("must be 1-512 characters");
        }
        if s == "." || s == ".." {
            return err("'.' and '..' are not allowed");
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'~' | b'-'))
        {
            return err("characters outside [A-Za-z0-9._:~-]");
        }
        Ok(Self(s.to_owned()))
    }
}

/// A TID is always a valid record key (13 characters of `[2-7a-z]`).
impl From<super::Tid> for RecordKey {
    fn from(tid: super::Tid) -> Self {
        Self(String::from(tid))
    }
}
