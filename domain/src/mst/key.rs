//! MST keys (`collection/rkey`) and their layer ("height").

use crate::{Error, Result};

/// Longest allowed key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'~' | b'.' | b':' | b'-')
}

/// Checks a repository path: exactly one `/`, both sides non-empty and made of
/// `[A-Za-z0-9_~.:-]`, total length at most 1024.
pub fn validate_key(key: &str) -> Result<()> {
    let err = |reason| {
        Err(Error::MstKey {
            key: truncate(key),
            reason,
        })
    };
    if key.len() > MAX_KEY_LEN {
        return err("longer than 1024 bytes");
    }
    let Some((collection, rkey)) = key.split_once('/') else {
        return err("missing '/' between collection and record key");
    };
    if collection.is_empty() || rkey.is_empty() {
        return err("empty collection or record key");
    }
    if !collection.bytes().all(is_key_char) || !rkey.bytes().all(is_key_char) {
        return err("characters outside [A-Za-z0-9_~.:-] or a second '/'");
    }
    Ok(())
}

fn truncate(key: &str) -> String {
    key.char_indices()
        .take_while(|(i, _)| *i < 128)
        .map(|(_, c)| c)
        .collect()
}

/// The layer of a key: leading zero bits of SHA-256(key), counted in pairs (fanout 4).
pub fn layer(key: &[u8]) -> u32 {
    let hash = crate::cid::sha256(key);
    let mut zeros = 0;
    for byte in hash {
        zeros += byte.leading_zeros();
        if byte != 0 {
            break;
        }
    }
    zeros / 2
}

/// Length in bytes of the common prefix of two keys.
pub fn common_prefix_len(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}
