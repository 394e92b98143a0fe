//! NSIDs: reversed-domain authority plus a name, e.g. `zone.stratos.feed.post`.

use super::{is_label, string_newtype};
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
        let Some((authority, name)) = s.rsplit_once('.') else {
            return err("needs at least three segments");
        };
        let mut segments = 0;
        for (i, label) in authority.split('.').enumerate() {
            if !is_label(label) {
                return err("authority segments must be 1-63 of [A-Za-z0-9-], no edge '-'");
            }
            if i == 0 && !label.as_bytes()[0].is_ascii_alphabetic() {
                return err("first segment must start with a letter");
            }
            segments += 1;
        }
        if segments < 2 {
            return err("needs at least three segments");
        }
        let nb = name.as_bytes();
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
