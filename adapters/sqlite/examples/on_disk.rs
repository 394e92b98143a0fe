//! Stratos on SQLite files: write a private post, stop, open the same directory again and read
//! it back, boundary-filtered. `cargo run -p stratos-sqlite --example on_disk [DIR]` (a temporary
//! directory without `DIR`); docs/embedding.md walks through it.
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::syntax::Did;
use stratos_ports::Stratos;
use stratos_sqlite::Durability;
use stratos_testkit::memory::{MemoryBlobStore, MemoryIdentity};

/// One instance over the SQLite storage in `dir`. Blobs and identity lookups are in memory here;
/// a real app passes `stratos_blobs::OpendalBlobStore` and `stratos_network`'s resolver.
async fn open(dir: &Path, key: &Keypair) -> Result<Stratos, Box<dyn std::error::Error>> {
    let key = Keypair::from_private_bytes(KeyAlgorithm::K256, &key.private_bytes())?;
    Ok(
        Stratos::builder(Did::parse("did:web:stratos.example")?, key)
            .storage(stratos_sqlite::open_storage(dir, Durability::Durable).await?)
            .blob_store(Arc::new(MemoryBlobStore::new()))
            .identity(Arc::new(MemoryIdentity::new()))
            .boundaries(["friends"])
            .build()
            .await?,
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map_or(temp.path().to_path_buf(), Into::into);
    let service_key = Keypair::generate(KeyAlgorithm::K256);
    let alice = Did::parse("did:web:alice.example")?;
    let stranger = Did::parse("did:web:stranger.example")?;

    let uris = {
        let stratos = open(&dir, &service_key).await?;
        let friends = &stratos.boundaries()[..1];
        stratos.enrollments().enroll_direct(&alice, friends).await?;
        let post = json!({"$type": "zone.stratos.feed.post", "text": "kept on disk",
            "createdAt": "2026-12-07T09:00:00.000Z", "boundary": {
            "$type": "zone.stratos.boundary.defs#Domains", "values": [{"value": friends[0].as_str()}]}});
        let records = stratos.records();
        let commit = records
            .create_record(
                &alice,
                &alice,
                &"zone.stratos.feed.post".parse()?,
                None,
                post,
            )
            .await?;
        [commit.results[0].uri.clone()]
    }; // the instance is dropped here: only the files remain

    let stratos = open(&dir, &service_key).await?;
    let records = stratos.records();
    let mine = records.hydrate(Some(&alice), &uris).await?;
    let theirs = records.hydrate(Some(&stranger), &uris).await?;
    assert_eq!(
        mine.records.len(),
        1,
        "the author reads her post after the restart"
    );
    assert_eq!(theirs.not_found, uris, "a stranger cannot tell it exists");
    let car = records.export_repo(&alice, &alice).await?;
    println!(
        "{} survived a restart in {}; repository CAR: {} bytes",
        uris[0],
        dir.display(),
        car.len()
    );
    Ok(())
}
