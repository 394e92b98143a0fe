//! Language tags (BCP 47 / RFC 5646 well-formedness): language[-script][-region]*(-variant)
//! *(-extension)[-privateuse], whole private-use tags, and the grandfathered tags. The primary
//! language subtag must be lowercase (as the atproto vectors require); repeated variants or
//! extension singletons make a tag invalid (RFC 5646 §2.2.9).

use super::string_newtype;
use crate::{Error, Result};

/// A well-formed language tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Language(String);
string_newtype!(Language);

const GRANDFATHERED: &[&str] = &[
    "en-gb-oed",
    "i-ami",
    "i-bnn",
    "i-default",
    "i-enochian",
    "i-hak",
    "i-klingon",
    "i-lux",
    "i-mingo",
    "i-navajo",
    "i-pwn",
    "i-tao",
    "i-tay",
    "i-tsu",
    "sgn-be-fr",
    "sgn-be-nl",
    "sgn-ch-de",
    "art-lojban",
    "cel-gaulish",
    "no-bok",
    "no-nyn",
    "zh-guoyu",
    "zh-hakka",
    "zh-min",
    "zh-min-nan",
    "zh-xiang",
];

fn alpha(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphabetic())
}
fn digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}
fn alnum(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `x-…` private-use subtags (the `x` already consumed): one or more of 1–8 alphanumerics.
fn private_use(rest: &[&str]) -> bool {
    !rest.is_empty() && rest.iter().all(|s| (1..=8).contains(&s.len()) && alnum(s))
}

fn well_formed(tag: &str) -> bool {
    if GRANDFATHERED.contains(&tag.to_ascii_lowercase().as_str()) {
        return true;
    }
    let subtags: Vec<&str> = tag.split('-').collect();
    if subtags.iter().any(|s| s.is_empty()) {
        return false;
    }
    if subtags[0].eq_ignore_ascii_case("x") {
        return private_use(&subtags[1..]);
    }
    let mut i = 0;
    // language: 2–3 lowercase letters, then up to three 3-letter extlangs.
    let primary = subtags[0];
    if !(2..=3).contains(&primary.len()) || !primary.bytes().all(|b| b.is_ascii_lowercase()) {
        return false;
    }
    i += 1;
    let mut extlangs = 0;
    while extlangs < 3 && i < subtags.len() && subtags[i].len() == 3 && alpha(subtags[i]) {
        i += 1;
        extlangs += 1;
    }
    if i < subtags.len() && subtags[i].len() == 4 && alpha(subtags[i]) {
        i += 1; // script
    }
    if i < subtags.len()
        && ((subtags[i].len() == 2 && alpha(subtags[i]))
            || (subtags[i].len() == 3 && digits(subtags[i])))
    {
        i += 1; // region
    }
    let mut variants: Vec<String> = Vec::new();
    while i < subtags.len() {
        let s = subtags[i];
        let is_variant = ((5..=8).contains(&s.len()) && alnum(s))
            || (s.len() == 4 && s.as_bytes()[0].is_ascii_digit() && alnum(s));
        if !is_variant {
            break;
        }
        let lower = s.to_ascii_lowercase();
        if variants.contains(&lower) {
            return false;
        }
        variants.push(lower);
        i += 1;
    }
    let mut singletons: Vec<u8> = Vec::new();
    while i < subtags.len() {
        let s = subtags[i];
        if s.len() != 1 || !alnum(s) {
            return false;
        }
        let single = s.as_bytes()[0].to_ascii_lowercase();
        if single == b'x' {
            return private_use(&subtags[i + 1..]);
        }
        if singletons.contains(&single) {
            return false;
        }
        singletons.push(single);
        i += 1;
        let start = i;
        while i < subtags.len() && (2..=8).contains(&subtags[i].len()) && alnum(subtags[i]) {
            i += 1;
        }
        if i == start {
            return false; // an extension needs at least one subtag
        }
    }
    true
}

impl Language {
    /// Parses a language tag.
    pub fn parse(s: &str) -> Result<Self> {
        if s.len() > 128 || !well_formed(s) {
            return Err(Error::syntax(
                "language tag",
                s,
                "not a well-formed BCP 47 tag",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}
