//! NSIDs: reversed-domain authority plus a name, e.g. `zone.stratos.feed.post`.

use super::string_newtype;
use crate::{Error, Result};

/// A syntactically valid NSID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nsid(String);
string_newtype!(Nsid);

impl Nsid {
    /// Parses an NSID: ≥ 3 segments, at most 317 chars; authority segments are DNS labels (the
    /// first starting with a letter); the name is 1–63 letters and
    /// digits starting with a letter.
    pub fn parse(s: &str) -> Result<Self> {
        let err = |reason| Err(Error::syntax("NSID", s, reason));
        if s.len() > 317 {
            return err("longer than 317 characters");
        }
        // One pass over the bytes: NSIDs are parsed on every XRPC request that names a
        // collection, and splitting into `&str` segments cost several times this loop.
        let b = s.as_bytes();
        let Some(last_dot) = b.iter().rposition(|&c| c == b'.') else {
            return err("needs at least three segments");
        };
        let mut segments = 0;
        let mut start = 0;
        for end in (0..last_dot).chain(std::iter::once(last_dot)) {
            if end < last_dot && b[end] != b'.' {
                continue;
            }
            let label = &b[start..end];
            let label_ok = !label.is_empty()
                && label.len() <= 63
                && label[0] != b'-'
                && label[label.len() - 1] != b'-'
                && label
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-');
            if !label_ok {
                return err("authority segments must be 1-63 of [A-Za-z0-9-], no edge '-'");
            }
            if segments == 0 && !label[0].is_ascii_alphabetic() {
                return err("first segment must start with a letter");
            }
            segments += 1;
            start = end + 1;
        }
        if segments < 2 {
            return err("needs at least three segments");
        }
        let nb = &b[last_dot + 1..];
        if nb.is_empty()
            || nb.len() > 63
            || !nb[0].is_ascii_alphabetic()
            || !nb.iter().all(u8::is_ascii_alphanumeric)
        {
            return err("name must be 1-63 letters and digits, starting with a letter");
        }
        Ok(Self(s.to_owned()))
    }

    /// The authority (everything before the last segment), e.g. `zone.stratos.feed`.
    pub fn authority(&self) -> &str {
        self.0.rsplit_once('.').map_or("", |(a, _)| a)
    }

    /// The name (last segment), e.g. `post`.
    pub fn name(&self) -> &str {
        self.0.rsplit_once('.').map_or("", |(_, n)| n)
    }
}
