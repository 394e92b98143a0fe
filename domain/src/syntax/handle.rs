//! Handles: DNS names with at least two labels and a TLD that does not start with a digit.

use super::{is_label, string_newtype};
use crate::{Error, Result};

/// A syntactically valid handle (not normalised; see [`Handle::normalized`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(String);
string_newtype!(Handle);

impl Handle {
    /// Parses a handle: at most 253 chars, ≥ 2 labels of `[A-Za-z0-9-]` (1–63, no edge `-`),
    /// last label starting with a letter. Reserved TLDs (`.local`, …) are syntactically valid;
    /// whether to accept them is policy, not syntax.
    pub fn parse(s: &str) -> Result<Self> {
        let err = |reason| Err(Error::syntax("handle", s, reason));
        if s.len() > 253 {
            return err("longer than 253 characters");
        }
        let mut labels = s.split('.');
        let mut count = 0;
        let mut last = "";
        for label in labels.by_ref() {
            if !is_label(label) {
                return err(
                    "each label must be 1-63 of [A-Za-z0-9-], not starting or ending with '-'",
                );
            }
            count += 1;
            last = label;
        }
        if count < 2 {
            return err("needs at least two labels");
        }
        if !last.as_bytes()[0].is_ascii_alphabetic() {
            return err("top-level label must start with a letter");
        }
        Ok(Self(s.to_owned()))
    }

    /// The lowercase form used for comparisons and storage.
    pub fn normalized(&self) -> Handle {
        Handle(self.0.to_ascii_lowercase())
    }
}
