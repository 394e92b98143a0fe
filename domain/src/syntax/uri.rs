//! Loose syntax checks for the lexicon `uri` and `cid` string formats.

/// Lexicon `uri` format: `scheme:` followed by a non-empty, whitespace-free rest whose first char
/// is not `/` unless it is the `//` of an authority; at most 8 KiB.
pub fn is_valid_uri(s: &str) -> bool {
    if s.len() > 8 * 1024 {
        return false;
    }
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let sb = scheme.as_bytes();
    if sb.is_empty()
        || !sb[0].is_ascii_alphabetic()
        || !sb
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return false;
    }
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    !rest.is_empty() && !rest.starts_with('/') && !rest.bytes().any(|b| b.is_ascii_whitespace())
}

/// Lexicon `cid` string format (shape only; `crate::cid::parse` decodes for real): 8–256 chars
/// of `[A-Za-z0-9+=]`, and not a CIDv0 (`Qm…`), which atproto does not use.
pub fn is_valid_cid_syntax(s: &str) -> bool {
    (8..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'='))
        && !s.starts_with("Qm")
}
