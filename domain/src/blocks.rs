//! Reading blocks: the one storage seam of the repository core.
//!
//! The MST, commit and CAR code never perform I/O; they read blocks through [`BlockRead`]. An
//! in-memory [`BlockMap`] implements it directly. Database adapters implement it over a batch
//! prefetch plus a cache: when a block is absent the core fails with [`Error::MissingBlock`], the
//! caller fetches that block (and, via [`BlockRead::read_many`], any siblings it knows it will need)
//! in one round trip, and retries. Hot paths are served from the cache, so a write does not cost one
//! round trip per tree node.

use std::collections::HashMap;

use crate::{Cid, Error, Result};

/// Read access to content-addressed blocks.
pub trait BlockRead {
    /// The bytes of `cid`, or `None` if this source does not hold it.
    fn read(&self, cid: &Cid) -> Result<Option<&[u8]>>;

    /// The bytes of `cid`, failing with [`Error::MissingBlock`] when absent.
    fn require(&self, cid: &Cid) -> Result<&[u8]> {
        self.read(cid)?.ok_or(Error::MissingBlock(*cid))
    }

    /// Reads many blocks at once into `out`, returning the CIDs that were not found. Sources
    /// backed by a database override this with one batched query.
    fn read_many(&self, cids: &[Cid], out: &mut BlockMap) -> Result<Vec<Cid>> {
        let mut missing = Vec::new();
        for cid in cids {
            match self.read(cid)? {
                Some(bytes) => out.insert(*cid, bytes.to_vec()),
                None => missing.push(*cid),
            }
        }
        Ok(missing)
    }
}

impl<T: BlockRead + ?Sized> BlockRead for &T {
    fn read(&self, cid: &Cid) -> Result<Option<&[u8]>> {
        (**self).read(cid)
    }
}

/// An in-memory set of blocks keyed by CID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockMap {
    blocks: HashMap<Cid, Vec<u8>>,
}

impl BlockMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a block under an already-computed CID. The caller vouches that `cid` matches.
    pub fn insert(&mut self, cid: Cid, bytes: Vec<u8>) {
        self.blocks.insert(cid, bytes);
    }

    /// Inserts DAG-CBOR bytes, computing their CID.
    pub fn insert_dag_cbor(&mut self, bytes: Vec<u8>) -> Cid {
        let cid = crate::cid::dag_cbor(&bytes);
        self.blocks.insert(cid, bytes);
        cid
    }

    /// The bytes of `cid`, if present.
    pub fn get(&self, cid: &Cid) -> Option<&[u8]> {
        self.blocks.get(cid).map(Vec::as_slice)
    }

    /// Whether `cid` is present.
    pub fn contains(&self, cid: &Cid) -> bool {
        self.blocks.contains_key(cid)
    }

    /// Removes and returns a block.
    pub fn remove(&mut self, cid: &Cid) -> Option<Vec<u8>> {
        self.blocks.remove(cid)
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether the map holds no block.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Total size of all block bytes.
    pub fn byte_len(&self) -> usize {
        self.blocks.values().map(Vec::len).sum()
    }

    /// Iterates over `(cid, bytes)` in unspecified order.
    pub fn iter(&self) -> impl Iterator<Item = (&Cid, &[u8])> {
        self.blocks.iter().map(|(c, b)| (c, b.as_slice()))
    }

    /// Moves every block of `other` into `self`.
    pub fn extend(&mut self, other: BlockMap) {
        self.blocks.extend(other.blocks);
    }
}

impl IntoIterator for BlockMap {
    type Item = (Cid, Vec<u8>);
    type IntoIter = std::collections::hash_map::IntoIter<Cid, Vec<u8>>;
    fn into_iter(self) -> Self::IntoIter {
        self.blocks.into_iter()
    }
}

impl FromIterator<(Cid, Vec<u8>)> for BlockMap {
    fn from_iter<I: IntoIterator<Item = (Cid, Vec<u8>)>>(iter: I) -> Self {
        Self {
            blocks: iter.into_iter().collect(),
        }
    }
}

impl BlockRead for BlockMap {
    fn read(&self, cid: &Cid) -> Result<Option<&[u8]>> {
        Ok(self.get(cid))
    }
}

/// Reads from `upper` first, then `lower`: new, not yet persisted blocks over a stored repo.
#[derive(Debug)]
pub struct Overlay<'a, U: ?Sized, L: ?Sized> {
    /// Blocks written by the current operation.
    pub upper: &'a U,
    /// The persisted repository.
    pub lower: &'a L,
}

impl<U: BlockRead + ?Sized, L: BlockRead + ?Sized> BlockRead for Overlay<'_, U, L> {
    fn read(&self, cid: &Cid) -> Result<Option<&[u8]>> {
        match self.upper.read(cid)? {
            Some(bytes) => Ok(Some(bytes)),
            None => self.lower.read(cid),
        }
    }
}
