//! CAR v1: `varint(len) ‖ DAG-CBOR {roots, version: 1}` followed by sections
//! `varint(len) ‖ binary CID ‖ block bytes`.
//!
//! The reader works over a byte slice (request bodies are size-limited before they reach it),
//! checks every limit before allocating, verifies that every block hashes to its CID, and reports
//! malformed input as typed errors. The writer produces the same bytes for the same blocks.

use std::io::Write;

use ipld_core::cid::Cid;
use serde::{Deserialize, Serialize};

use crate::blocks::{BlockMap, BlockRead};
use crate::{Error, Result};

/// Size limits applied while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarLimits {
    /// Maximum size of the whole CAR, in bytes.
    pub max_total: u64,
    /// Maximum size of one block's bytes.
    pub max_block: u64,
    /// Maximum size of the header.
    pub max_header: u64,
}

impl Default for CarLimits {
    fn default() -> Self {
        Self {
            max_total: 256 * 1024 * 1024,
            max_block: 2 * 1024 * 1024,
            max_header: 64 * 1024,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    roots: Vec<Cid>,
    version: u64,
}

/// A parsed CAR: its roots and its (verified) blocks in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Car {
    /// The header's root CIDs.
    pub roots: Vec<Cid>,
    /// Blocks by CID.
    pub blocks: BlockMap,
    /// CIDs in the order they appeared (duplicates kept once).
    pub order: Vec<Cid>,
}

/// Reads and verifies a whole CAR.
pub fn read(bytes: &[u8], limits: CarLimits) -> Result<Car> {
    let mut reader = CarReader::new(bytes, limits)?;
    let roots = reader.roots().to_vec();
    let mut blocks = BlockMap::new();
    let mut order = Vec::new();
    for block in &mut reader {
        let (cid, data) = block?;
        if !blocks.contains(&cid) {
            order.push(cid);
            blocks.insert(cid, data.to_vec());
        }
    }
    Ok(Car {
        roots,
        blocks,
        order,
    })
}

/// Iterates over the verified blocks of a CAR held in memory.
#[derive(Debug)]
pub struct CarReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    roots: Vec<Cid>,
    limits: CarLimits,
    failed: bool,
}

impl<'a> CarReader<'a> {
    /// Parses the header; blocks are read (and verified) as the iterator advances.
    pub fn new(bytes: &'a [u8], limits: CarLimits) -> Result<Self> {
        if bytes.len() as u64 > limits.max_total {
            return Err(Error::CarTooLarge {
                limit: limits.max_total,
            });
        }
        let mut pos = 0;
        let len = read_varint(bytes, &mut pos).map_err(|e| Error::CarHeader(e.into()))?;
        if len == 0 || len > limits.max_header {
            return Err(Error::CarHeader(format!(
                "header length {len} out of range"
            )));
        }
        let end = pos.checked_add(len as usize).filter(|&e| e <= bytes.len());
        let Some(end) = end else {
            return Err(Error::CarTruncated("header"));
        };
        let header: Header = serde_ipld_dagcbor::from_slice(&bytes[pos..end])
            .map_err(|e| Error::CarHeader(e.to_string()))?;
        if header.version != 1 {
            return Err(Error::CarHeader(format!(
                "unsupported version {}",
                header.version
            )));
        }
        Ok(Self {
            bytes,
            pos: end,
            roots: header.roots,
            limits,
            failed: false,
        })
    }

    /// The header's roots.
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    fn next_block(&mut self) -> Result<(Cid, &'a [u8])> {
        let (cid, data) = self.next_unverified()?;
        crate::cid::verify(&cid, data).map_err(|e| match e {
            Error::Cid(m) => Error::CarSection(m),
            other => other,
        })?;
        Ok((cid, data))
    }

    /// The next section's CID and bytes, framing checked but the hash not verified.
    fn next_unverified(&mut self) -> Result<(Cid, &'a [u8])> {
        let bytes = self.bytes;
        let len = read_varint(bytes, &mut self.pos).map_err(|e| Error::CarSection(e.into()))?;
        let cid_start = self.pos;
        let cid_end = cid_len(&bytes[cid_start..])? + cid_start;
        let section_end = cid_start
            .checked_add(usize::try_from(len).map_err(|_| Error::CarTruncated("section"))?)
            .filter(|&e| e <= bytes.len())
            .ok_or(Error::CarTruncated("section"))?;
        if cid_end > section_end {
            return Err(Error::CarSection("section shorter than its CID".into()));
        }
        let block_len = (section_end - cid_end) as u64;
        if block_len > self.limits.max_block {
            return Err(Error::CarBlockTooLarge {
                size: block_len,
                limit: self.limits.max_block,
            });
        }
        let cid = Cid::try_from(&bytes[cid_start..cid_end])
            .map_err(|e| Error::CarSection(format!("bad CID: {e}")))?;
        let data = &bytes[cid_end..section_end];
        self.pos = section_end;
        Ok((cid, data))
    }
}

impl<'a> Iterator for CarReader<'a> {
    type Item = Result<(Cid, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.bytes.len() {
            return None;
        }
        let item = self.next_block();
        self.failed = item.is_err();
        Some(item)
    }
}

/// The blocks of a CAR held in memory, indexed by CID without copying them.
///
/// Built for untrusted input (importRepo): the index costs 44 bytes per section whatever the
/// block sizes (a CAR of a million tiny unreferenced blocks used to be copied into a million
/// heap allocations), and a block is hashed only when it is read, so blocks nothing references
/// cost neither a copy nor a hash. Reads through [`BlockRead`] verify the block against its CID
/// every time; callers that may read one block many times keep their own record of what they
/// verified.
#[derive(Debug)]
pub struct CarIndex<'a> {
    bytes: &'a [u8],
    roots: Vec<Cid>,
    /// Sorted by `(digest, raw)`; sections with CIDs atproto does not use are left out (nothing
    /// valid can link to them).
    sections: Vec<Section>,
}

#[derive(Debug, Clone, Copy)]
struct Section {
    digest: [u8; 32],
    raw: bool,
    start: u32,
    end: u32,
}

impl<'a> CarIndex<'a> {
    /// Checks the framing of every section (limits, varints, CIDs) and indexes them.
    pub fn new(bytes: &'a [u8], limits: CarLimits) -> Result<Self> {
        // Offsets are stored as u32 to keep the index small.
        if u32::try_from(bytes.len()).is_err() {
            return Err(Error::CarTooLarge {
                limit: u64::from(u32::MAX),
            });
        }
        // Two passes: counting first sizes the index exactly, so a large CAR never costs the
        // doubling of a growing vector on top of the index itself.
        let mut count = 0usize;
        let mut counter = CarReader::new(bytes, limits)?;
        while counter.pos < bytes.len() {
            counter.next_unverified()?;
            count += 1;
        }
        let mut reader = CarReader::new(bytes, limits)?;
        let mut sections = Vec::with_capacity(count);
        while reader.pos < bytes.len() {
            let (cid, data) = reader.next_unverified()?;
            if !crate::cid::is_supported(&cid) {
                continue;
            }
            let Ok(digest) = <[u8; 32]>::try_from(cid.hash().digest()) else {
                continue;
            };
            // The section's bytes end where the reader now stands.
            let end = reader.pos;
            let start = end - data.len();
            sections.push(Section {
                digest,
                raw: cid.codec() == crate::cid::RAW,
                // Both fit: the whole input was checked against u32::MAX above.
                start: u32::try_from(start).unwrap_or(u32::MAX),
                end: u32::try_from(end).unwrap_or(u32::MAX),
            });
        }
        sections.sort_unstable_by_key(|s| (s.digest, s.raw));
        Ok(Self {
            bytes,
            roots: reader.roots,
            sections,
        })
    }

    /// The header's roots.
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// Number of indexed sections (duplicates included).
    pub fn len(&self) -> usize {
        self.sections.len()
    }

    /// True when the CAR holds no usable block.
    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }

    /// The bytes stored under `cid`, NOT checked against it.
    pub fn get_unverified(&self, cid: &Cid) -> Option<&'a [u8]> {
        if !crate::cid::is_supported(cid) {
            return None;
        }
        let digest = cid.hash().digest();
        let raw = cid.codec() == crate::cid::RAW;
        let idx = self
            .sections
            .binary_search_by(|s| (s.digest.as_slice(), s.raw).cmp(&(digest, raw)))
            .ok()?;
        let s = self.sections[idx];
        self.bytes.get(s.start as usize..s.end as usize)
    }
}

impl BlockRead for CarIndex<'_> {
    /// The block under `cid`, verified against it ([`Error::CarHashMismatch`] otherwise).
    fn read(&self, cid: &Cid) -> Result<Option<&[u8]>> {
        match self.get_unverified(cid) {
            Some(bytes) => {
                crate::cid::verify(cid, bytes)?;
                Ok(Some(bytes))
            }
            None => Ok(None),
        }
    }
}

/// Reads an unsigned LEB128 varint (multiformats rules: at most 9 bytes, minimal encoding).
fn read_varint(bytes: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
    let mut value: u64 = 0;
    for i in 0..9 {
        let Some(&b) = bytes.get(*pos + i) else {
            return Err("truncated varint");
        };
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return Err("non-minimal varint");
            }
            *pos += i + 1;
            return Ok(value);
        }
    }
    Err("varint longer than 9 bytes")
}

/// Length of the binary CIDv1 at the start of `bytes` (version, codec, hash code, digest size,
/// digest). CIDv0 and anything else atproto does not use is rejected.
fn cid_len(bytes: &[u8]) -> Result<usize> {
    let bad = |m: &str| Error::CarSection(format!("bad CID: {m}"));
    let mut pos = 0;
    let version = read_varint(bytes, &mut pos).map_err(bad)?;
    if version != 1 {
        return Err(bad("only CIDv1 is supported"));
    }
    let _codec = read_varint(bytes, &mut pos).map_err(bad)?;
    let _hash = read_varint(bytes, &mut pos).map_err(bad)?;
    let size = read_varint(bytes, &mut pos).map_err(bad)?;
    if size > 64 {
        return Err(bad("digest longer than 64 bytes"));
    }
    let end = pos + size as usize;
    if end > bytes.len() {
        return Err(Error::CarTruncated("CID"));
    }
    Ok(end)
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The header section for `roots`.
pub fn encode_header(roots: &[Cid]) -> Result<Vec<u8>> {
    let header = serde_ipld_dagcbor::to_vec(&Header {
        roots: roots.to_vec(),
        version: 1,
    })
    .map_err(|e| Error::CborEncode(e.to_string()))?;
    let mut out = Vec::with_capacity(header.len() + 2);
    write_varint(&mut out, header.len() as u64);
    out.extend_from_slice(&header);
    Ok(out)
}

/// Appends one block section to `out`.
pub fn encode_block(out: &mut Vec<u8>, cid: &Cid, bytes: &[u8]) {
    let cid_bytes = cid.to_bytes();
    write_varint(out, (cid_bytes.len() + bytes.len()) as u64);
    out.extend_from_slice(&cid_bytes);
    out.extend_from_slice(bytes);
}

/// Streams a CAR into any [`Write`]: header first, then blocks as they are given.
#[derive(Debug)]
pub struct CarWriter<W> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> CarWriter<W> {
    /// Writes the header with `roots`.
    pub fn new(mut out: W, roots: &[Cid]) -> Result<Self> {
        out.write_all(&encode_header(roots)?).map_err(io_error)?;
        Ok(Self {
            out,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Writes one block section.
    pub fn write_block(&mut self, cid: &Cid, bytes: &[u8]) -> Result<()> {
        self.buf.clear();
        encode_block(&mut self.buf, cid, bytes);
        self.out.write_all(&self.buf).map_err(io_error)
    }

    /// Returns the underlying writer.
    pub fn finish(self) -> W {
        self.out
    }
}

fn io_error(e: std::io::Error) -> Error {
    Error::Store(format!("CAR output: {e}"))
}

/// Visits the blocks of a repository in export order: the commit, then the MST in pre-order,
/// each record right after the node that holds it (so a reader can verify while streaming).
pub fn walk_repo<S: BlockRead>(
    store: &S,
    commit: &Cid,
    visit: &mut dyn FnMut(&Cid, &[u8]) -> Result<()>,
) -> Result<()> {
    let commit_bytes = store.require(commit)?;
    let data = crate::commit::SignedCommit::decode(commit_bytes)?.data;
    visit(commit, commit_bytes)?;
    let mut stack = vec![Visit::Node(data)];
    while let Some(item) = stack.pop() {
        let cid = match item {
            Visit::Node(cid) => cid,
            Visit::Record(cid) => {
                visit(&cid, store.require(&cid)?)?;
                continue;
            }
        };
        let bytes = store.require(&cid)?;
        let node = crate::mst::node_links(&cid, bytes)?;
        visit(&cid, bytes)?;
        // Push in reverse so the pops come out as: left, record, right, record, right, …
        for (value, right) in node.entries.iter().rev() {
            if let Some(right) = right {
                stack.push(Visit::Node(*right));
            }
            stack.push(Visit::Record(*value));
        }
        if let Some(left) = node.left {
            stack.push(Visit::Node(left));
        }
    }
    Ok(())
}

enum Visit {
    Node(Cid),
    Record(Cid),
}

/// Writes a whole repository as a CAR rooted at its commit.
pub fn write_repo<S: BlockRead, W: Write>(store: &S, commit: &Cid, out: W) -> Result<W> {
    let mut writer = CarWriter::new(out, &[*commit])?;
    walk_repo(store, commit, &mut |cid, bytes| {
        writer.write_block(cid, bytes)
    })?;
    Ok(writer.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_bad_forms() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_384,
            u32::MAX as u64,
            (1 << 63) - 1,
        ] {
            let mut buf = Vec::new();
            write_varint(&mut buf, v);
            let mut pos = 0;
            assert_eq!(read_varint(&buf, &mut pos), Ok(v));
            assert_eq!(pos, buf.len());
        }
        assert!(read_varint(&[0x80, 0x00], &mut 0).is_err()); // non-minimal
        assert!(read_varint(&[0x80], &mut 0).is_err()); // truncated
        assert!(read_varint(&[0xff; 10], &mut 0).is_err()); // too long
    }
}
