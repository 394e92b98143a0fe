//! MST node wire format: `{"e": [{"k": bytes, "p": int, "t": link|null, "v": link}], "l": link|null}`.
//!
//! Encoding is hand-written because it is on every write's hot path (≈8 nodes per commit) and the
//! layout is fixed: canonical DAG-CBOR key order is length-first then bytewise, which for these
//! one-letter keys is `e < l` and `k < p < t < v`. A property test checks it against the generic
//! serde encoder. Decoding uses the strict serde decoder because nodes may come from untrusted CARs.

use ipld_core::cid::Cid;
use serde::Deserialize;

use super::key::{common_prefix_len, validate_key};
use crate::{Error, Result};

/// One key/value pair of a node, with the subtree that follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The full (decompressed) key: `collection/rkey`.
    pub key: String,
    /// CID of the record.
    pub value: Cid,
    /// Subtree holding keys between this entry and the next (one layer down).
    pub right: Option<Cid>,
}

/// A decoded MST node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Node {
    /// Subtree holding keys before the first entry (one layer down).
    pub left: Option<Cid>,
    /// Entries in strictly ascending key order, all on this node's layer.
    pub entries: Vec<Entry>,
}

impl Node {
    /// Whether the node has neither entries nor a left subtree (only valid as the empty root).
    pub fn is_empty(&self) -> bool {
        self.left.is_none() && self.entries.is_empty()
    }

    /// The subtree pointer in front of entry `idx` (`left` for 0), i.e. the gap `idx`.
    pub fn gap(&self, idx: usize) -> Option<Cid> {
        if idx == 0 {
            self.left
        } else {
            self.entries[idx - 1].right
        }
    }

    /// Sets the gap pointer `idx` (see [`Node::gap`]).
    pub fn set_gap(&mut self, idx: usize, cid: Option<Cid>) {
        if idx == 0 {
            self.left = cid;
        } else {
            self.entries[idx - 1].right = cid;
        }
    }

    /// Index of the first entry whose key is `>= key`, and whether it is equal.
    pub fn search(&self, key: &str) -> (usize, bool) {
        match self.entries.binary_search_by(|e| e.key.as_str().cmp(key)) {
            Ok(i) => (i, true),
            Err(i) => (i, false),
        }
    }

    /// Canonical DAG-CBOR bytes of the node.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.entries.len() * 64);
        out.push(0xa2); // map(2)
        text_key(&mut out, b'e');
        head(&mut out, 4, self.entries.len() as u64);
        let mut prev: &str = "";
        for entry in &self.entries {
            let prefix = common_prefix_len(prev, &entry.key);
            let suffix = &entry.key.as_bytes()[prefix..];
            out.push(0xa4); // map(4)
            text_key(&mut out, b'k');
            head(&mut out, 2, suffix.len() as u64);
            out.extend_from_slice(suffix);
            text_key(&mut out, b'p');
            head(&mut out, 0, prefix as u64);
            text_key(&mut out, b't');
            opt_link(&mut out, entry.right.as_ref());
            text_key(&mut out, b'v');
            link(&mut out, &entry.value);
            prev = &entry.key;
        }
        text_key(&mut out, b'l');
        opt_link(&mut out, self.left.as_ref());
        out
    }

    /// Decodes and structurally checks a node: keys valid and strictly ascending, prefixes
    /// consistent. Layer consistency needs the parent's context and is checked by the walkers.
    pub fn decode(cid: &Cid, bytes: &[u8]) -> Result<Node> {
        let malformed = |reason: String| Error::MstNode { cid: *cid, reason };
        let wire: WireNode =
            serde_ipld_dagcbor::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        let links = wire
            .e
            .iter()
            .flat_map(|e| std::iter::once(&e.v).chain(e.t.as_ref()));
        if let Some(bad) = wire
            .l
            .iter()
            .chain(links)
            .find(|c| !crate::cid::is_supported(c))
        {
            return Err(malformed(format!("unsupported CID {bad}")));
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(wire.e.len());
        let mut prev = String::new();
        for (i, e) in wire.e.into_iter().enumerate() {
            let prefix = usize::try_from(e.p).map_err(|_| malformed("prefix too large".into()))?;
            if prefix > prev.len() {
                return Err(malformed(format!(
                    "entry {i}: prefix longer than previous key"
                )));
            }
            if i == 0 && prefix != 0 {
                return Err(malformed("first entry has a non-zero prefix".into()));
            }
            let suffix = std::str::from_utf8(&e.k)
                .map_err(|_| malformed(format!("entry {i}: key is not UTF-8")))?;
            let mut key = String::with_capacity(prefix + suffix.len());
            key.push_str(&prev[..prefix]);
            key.push_str(suffix);
            validate_key(&key).map_err(|_| malformed(format!("entry {i}: invalid key {key:?}")))?;
            if i > 0 && key <= prev {
                return Err(malformed(format!("entry {i}: keys not strictly ascending")));
            }
            prev.clone_from(&key);
            entries.push(Entry {
                key,
                value: e.v,
                right: e.t,
            });
        }
        let node = Node {
            left: wire.l,
            entries,
        };
        // Canonical form (shortest heads, definite lengths, maximal prefixes) is what makes the
        // tree's CIDs deterministic; the encoder is cheap, so compare against it.
        if node.encode() != bytes {
            return Err(malformed("not in canonical form".into()));
        }
        Ok(node)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireNode {
    l: Option<Cid>,
    e: Vec<WireEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEntry {
    p: u64,
    #[serde(with = "serde_bytes")]
    k: Vec<u8>,
    v: Cid,
    t: Option<Cid>,
}

/// Writes a CBOR head (major type + argument) in its shortest form, as DAG-CBOR requires.
pub(crate) fn head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= u64::from(u8::MAX) {
        out.extend_from_slice(&[m | 24, arg as u8]);
    } else if arg <= u64::from(u16::MAX) {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= u64::from(u32::MAX) {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

fn text_key(out: &mut Vec<u8>, key: u8) {
    out.extend_from_slice(&[0x61, key]);
}

/// Tag 42 + byte string of (0x00 multibase-identity prefix ‖ binary CID).
pub(crate) fn link(out: &mut Vec<u8>, cid: &Cid) {
    out.extend_from_slice(&[0xd8, 0x2a]);
    let len = cid.encoded_len();
    head(out, 2, len as u64 + 1);
    out.push(0x00);
    let start = out.len();
    out.resize(start + len, 0);
    // Writing into a correctly sized slice cannot fail; fall back to the allocating path if the
    // cid crate ever disagrees with its own `encoded_len`.
    if cid.write_bytes(&mut out[start..]).is_err() {
        out.truncate(start);
        out.extend_from_slice(&cid.to_bytes());
    }
}

fn opt_link(out: &mut Vec<u8>, cid: Option<&Cid>) {
    match cid {
        Some(cid) => link(out, cid),
        None => out.push(0xf6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct SerNode<'a> {
        l: Option<Cid>,
        e: Vec<SerEntry<'a>>,
    }
    #[derive(Serialize)]
    struct SerEntry<'a> {
        p: u64,
        #[serde(with = "serde_bytes")]
        k: &'a [u8],
        v: Cid,
        t: Option<Cid>,
    }

    fn serde_encode(node: &Node) -> Vec<u8> {
        let mut prev = "";
        let e = node
            .entries
            .iter()
            .map(|en| {
                let p = common_prefix_len(prev, &en.key);
                prev = &en.key;
                SerEntry {
                    p: p as u64,
                    k: &en.key.as_bytes()[p..],
                    v: en.value,
                    t: en.right,
                }
            })
            .collect();
        serde_ipld_dagcbor::to_vec(&SerNode { l: node.left, e }).unwrap()
    }

    proptest::proptest! {
        #[test]
        fn hand_encoder_matches_serde(
            keys in proptest::collection::btree_set("[a-z]{1,8}/[a-z0-9]{1,300}", 0..40),
            with_left in proptest::bool::ANY,
            rights in proptest::collection::vec(proptest::bool::ANY, 40),
        ) {
            let some = crate::cid::dag_cbor(b"x");
            let node = Node {
                left: with_left.then_some(some),
                entries: keys.into_iter().enumerate().map(|(i, key)| Entry {
                    key, value: crate::cid::dag_cbor(&[i as u8]), right: rights[i].then_some(some),
                }).collect(),
            };
            let bytes = node.encode();
            proptest::prop_assert_eq!(&bytes, &serde_encode(&node));
            proptest::prop_assert_eq!(Node::decode(&some, &bytes).unwrap(), node);
        }
    }

    #[test]
    fn decode_rejects_unsorted_and_bad_prefix() {
        let cid = crate::cid::dag_cbor(b"x");
        let mk = |keys: &[&str]| Node {
            left: None,
            entries: keys
                .iter()
                .map(|k| Entry {
                    key: (*k).into(),
                    value: cid,
                    right: None,
                })
                .collect(),
        };
        assert!(Node::decode(&cid, &mk(&["a/b", "a/c"]).encode()).is_ok());
        assert!(Node::decode(&cid, &mk(&["a/c", "a/b"]).encode()).is_err());
        assert!(Node::decode(&cid, &mk(&["a/b", "a/b"]).encode()).is_err());
        assert!(Node::decode(&cid, b"\xa0").is_err());
        // Same keys, but the second entry's prefix is not the maximal one: not canonical.
        let lazy = serde_ipld_dagcbor::to_vec(&SerNode {
            l: None,
            e: vec![
                SerEntry {
                    p: 0,
                    k: b"a/b",
                    v: cid,
                    t: None,
                },
                SerEntry {
                    p: 0,
                    k: b"a/c",
                    v: cid,
                    t: None,
                },
            ],
        })
        .unwrap();
        assert!(Node::decode(&cid, &lazy).is_err());
        assert!(Node::decode(&cid, &[]).is_err());
    }
}
