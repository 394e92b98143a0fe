//! Builds a signed repository in memory, exports it as a CAR, reads the CAR back and verifies
//! every block, the commit signature, and an inclusion proof. Prints what it did.
//!
//! Run: `scripts/run` (or `cargo run --release -p stratos-domain --example demo -- [records]`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // demo code

use ipld_core::ipld::Ipld;
use stratos_domain::blocks::BlockMap;
use stratos_domain::car::{self, CarLimits};
use stratos_domain::commit::SignedCommit;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::mst;
use stratos_domain::repo::{self, RecordWrite};
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_domain::tid::TidGenerator;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1000);
    let did = Did::parse("did:web:localhost%3A3100")?;
    let key = Keypair::generate(KeyAlgorithm::P256);
    let mut tids = TidGenerator::new();
    let collection = Nsid::parse("zone.stratos.feed.post")?;

    let started = std::time::Instant::now();
    let mut store = BlockMap::new();
    let out = repo::apply_writes(&store, &did, None, &[], tids.next_now(), &key)?;
    store.extend(out.new_blocks);
    let mut head = out.head;
    let mut last_path = String::new();
    for i in 0..count {
        let rkey = RecordKey::parse(tids.next_now().as_str())?;
        let record = Ipld::Map(
            [
                (
                    "$type".to_owned(),
                    Ipld::String(collection.as_str().to_owned()),
                ),
                ("text".to_owned(), Ipld::String(format!("private note {i}"))),
                (
                    "createdAt".to_owned(),
                    Ipld::String("2026-11-25T00:00:00.000Z".into()),
                ),
            ]
            .into(),
        );
        let write = RecordWrite::Create {
            collection: collection.clone(),
            rkey,
            record: serde_ipld_dagcbor::to_vec(&record)?,
        };
        last_path = write.path();
        let out = repo::apply_writes(&store, &did, Some(&head), &[write], tids.next_now(), &key)?;
        for cid in &out.removed_nodes {
            store.remove(cid);
        }
        store.extend(out.new_blocks);
        head = out.head;
    }
    let built = started.elapsed();

    let bytes = car::write_repo(&store, &head.commit, Vec::new())?;
    let parsed = car::read(&bytes, CarLimits::default())?;
    let commit = SignedCommit::decode(parsed.blocks.get(&head.commit).ok_or("commit missing")?)?;
    commit.verify(key.public_key())?;
    let proof = mst::prove(&parsed.blocks, commit.data, &last_path)?;
    let proven = mst::verify_proof(&commit.data, &last_path, &proof)?;

    println!("repository {did} signed by {}", key.did_key());
    println!("  {count} commits of one record each in {built:.2?}");
    println!("  head commit {} rev {}", head.commit, head.rev);
    println!(
        "  CAR: {} bytes, {} blocks, every block hash verified",
        bytes.len(),
        parsed.blocks.len()
    );
    println!(
        "  commit signature verified against {}",
        key.public_key().to_did_key()
    );
    println!(
        "  inclusion proof of {last_path}: {} blocks -> {:?}",
        proof.len(),
        proven.map(|c| c.to_string())
    );
    Ok(())
}
