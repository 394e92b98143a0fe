//! Builders of hostile repository CARs, as an attacker would send them to `importRepo`: trees
//! that break the MST's structural rules in ways that once crashed or stalled the service, and
//! CARs that are incomplete in each way a client can get wrong. Each returns CAR bytes; the
//! commits are signed with a throw-away key (import does not check the signature).

use ipld_core::ipld::Ipld;
use stratos_domain::Cid;
use stratos_domain::blocks::BlockMap;
use stratos_domain::car;
use stratos_domain::cid;
use stratos_domain::commit::UnsignedCommit;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::mst::{encode_node_unchecked, layer};
use stratos_domain::syntax::{Did, Tid};

/// A CAR under construction: blocks in order, one root.
#[derive(Debug, Default)]
pub struct CarBuilder {
    blocks: Vec<(Cid, Vec<u8>)>,
}

impl CarBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a DAG-CBOR block, returning its CID.
    pub fn dag_cbor(&mut self, bytes: Vec<u8>) -> Cid {
        let cid = cid::dag_cbor(&bytes);
        self.blocks.push((cid, bytes));
        cid
    }

    /// Adds a block under an arbitrary CID (which the bytes need not match).
    pub fn raw_section(&mut self, cid: Cid, bytes: Vec<u8>) {
        self.blocks.push((cid, bytes));
    }

    /// Adds a record `{"$type": "zone.stratos.feed.post", "text": text, ...}` block.
    pub fn post(&mut self, text: &str) -> Cid {
        self.dag_cbor(post_bytes(text))
    }

    /// Adds an MST node built from raw parts (no rule checked).
    pub fn node(&mut self, left: Option<Cid>, entries: &[(String, Cid, Option<Cid>)]) -> Cid {
        self.dag_cbor(encode_node_unchecked(left, entries))
    }

    /// Adds a commit of `did` over the tree `data`, signed with a throw-away key.
    pub fn commit(&mut self, did: &Did, data: Cid) -> Cid {
        let key = Keypair::generate(KeyAlgorithm::P256);
        let rev: Tid = stratos_domain::tid::next();
        let bytes = UnsignedCommit {
            did: did.clone(),
            data,
            rev,
            prev: None,
        }
        .sign(&key)
        .and_then(|c| c.encode())
        .unwrap_or_default();
        self.dag_cbor(bytes)
    }

    /// The CAR bytes with `roots`.
    pub fn finish(self, roots: &[Cid]) -> Vec<u8> {
        let mut out = car::encode_header(roots).unwrap_or_default();
        for (cid, bytes) in &self.blocks {
            car::encode_block(&mut out, cid, bytes);
        }
        out
    }

    /// The blocks added so far, as a map.
    pub fn blocks(&self) -> BlockMap {
        let mut map = BlockMap::new();
        for (cid, bytes) in &self.blocks {
            map.insert(*cid, bytes.clone());
        }
        map
    }
}

/// DAG-CBOR bytes of a minimal `zone.stratos.feed.post` record.
pub fn post_bytes(text: &str) -> Vec<u8> {
    let value = Ipld::Map(
        [
            (
                "$type".to_owned(),
                Ipld::String("zone.stratos.feed.post".into()),
            ),
            ("text".to_owned(), Ipld::String(text.into())),
            (
                "createdAt".to_owned(),
                Ipld::String("2026-01-01T00:00:00.000Z".into()),
            ),
        ]
        .into(),
    );
    stratos_domain::data::encode(&value).unwrap_or_default()
}

/// The first key `zone.stratos.feed.post/{prefix}{n}` (n = 0, 1, …) whose MST layer is
/// `wanted`.
pub fn key_on_layer(prefix: &str, wanted: u32) -> String {
    (0u64..)
        .map(|n| format!("zone.stratos.feed.post/{prefix}{n}"))
        .find(|k| layer(k.as_bytes()) == wanted)
        .unwrap_or_default()
}

/// The first key `zone.stratos.feed.post/{tid}` whose MST layer is `wanted`, with a valid TID
/// as record key (posts must have one), for CARs whose records must pass the write rules.
pub fn tid_key_on_layer(wanted: u32) -> String {
    const ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";
    (0u32..)
        .map(|n| {
            let tail: String = (0..4)
                .rev()
                .map(|i| char::from(ALPHABET[((n >> (5 * i)) & 31) as usize]))
                .collect();
            format!("zone.stratos.feed.post/3kaaaaaaa{tail}")
        })
        .find(|k| layer(k.as_bytes()) == wanted)
        .unwrap_or_default()
}

/// Finding 1: the commit's tree is a chain of `depth` entry-less nodes, each the left child of
/// the next, over one leaf (≈ 85 bytes a level). A recursive walk overflowed its stack.
pub fn deep_chain_car(did: &Did, depth: usize) -> Vec<u8> {
    let mut car = CarBuilder::new();
    let record = car.post("bottom");
    let mut cursor = car.node(None, &[(key_on_layer("a", 0), record, None)]);
    for _ in 0..depth {
        cursor = car.node(Some(cursor), &[]);
    }
    let commit = car.commit(did, cursor);
    car.finish(&[commit])
}

/// Finding 2: a "DAG bomb" of `levels` nodes, each using the previous node as both its left and
/// its right subtree, so a naive walk visits 2^levels nodes from a few kilobytes.
pub fn dag_bomb_car(did: &Did, levels: usize) -> Vec<u8> {
    let mut car = CarBuilder::new();
    let record = car.post("shared");
    let mut cursor = car.node(None, &[(key_on_layer("b", 0), record, None)]);
    for i in 0..levels {
        let key = key_on_layer(&format!("l{i}x"), 0);
        cursor = car.node(Some(cursor), &[(key, record, Some(cursor))]);
    }
    let commit = car.commit(did, cursor);
    car.finish(&[commit])
}

/// Finding 4: a valid one-record repository (the record's DAG-CBOR bytes are `record`)
/// followed by `extra` tiny blocks nothing references (each a distinct DAG-CBOR integer,
/// ≈ 40 bytes a section).
pub fn unreferenced_blocks_car(did: &Did, record: &[u8], extra: u64) -> Vec<u8> {
    let mut car = CarBuilder::new();
    let record = car.dag_cbor(record.to_vec());
    let root = car.node(None, &[(tid_key_on_layer(0), record, None)]);
    let commit = car.commit(did, root);
    let mut out = car.finish(&[commit]);
    for n in 0..extra {
        let bytes = stratos_domain::data::encode(&Ipld::Integer(i128::from(n))).unwrap_or_default();
        car::encode_block(&mut out, &cid::dag_cbor(&bytes), &bytes);
    }
    out
}

/// The ways an import CAR can be incomplete or wrong (finding 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokenCar {
    /// The header's root block is not in the CAR.
    MissingRoot,
    /// The root block is a record, not a commit.
    RootNotCommit,
    /// The commit's `data` points at a node that is not in the CAR.
    DanglingData,
    /// A tree key is not a valid `collection/rkey` path.
    InvalidKey,
    /// A leaf's record block is not in the CAR.
    MissingRecord,
}

impl BrokenCar {
    /// Every case.
    pub const ALL: [BrokenCar; 5] = [
        BrokenCar::MissingRoot,
        BrokenCar::RootNotCommit,
        BrokenCar::DanglingData,
        BrokenCar::InvalidKey,
        BrokenCar::MissingRecord,
    ];

    /// The CAR for this case, for the repository of `did`.
    pub fn car(self, did: &Did) -> Vec<u8> {
        let mut car = CarBuilder::new();
        let record = car.post("hello");
        let good_key = tid_key_on_layer(0);
        match self {
            BrokenCar::MissingRoot => {
                let root = car.node(None, &[(good_key, record, None)]);
                let commit = car.commit(did, root);
                let mut blocks = CarBuilder::new();
                blocks.post("hello");
                blocks.finish(&[commit])
            }
            BrokenCar::RootNotCommit => car.finish(&[record]),
            BrokenCar::DanglingData => {
                let missing = cid::dag_cbor(b"\xa2\x61\x65\x80\x61\x6c\xf6-not-here");
                let commit = car.commit(did, missing);
                car.finish(&[commit])
            }
            BrokenCar::InvalidKey => {
                let root = car.node(None, &[("no-slash-here".to_owned(), record, None)]);
                let commit = car.commit(did, root);
                car.finish(&[commit])
            }
            BrokenCar::MissingRecord => {
                let absent = cid::dag_cbor(&post_bytes("absent"));
                let root = car.node(None, &[(good_key, absent, None)]);
                let commit = car.commit(did, root);
                car.finish(&[commit])
            }
        }
    }
}
