//! Stratos on in-memory fakes: three accounts, a post only friends may read. `cargo run -p
//! stratos-ports --example in_memory`; docs/embedding.md walks through it.
use serde_json::json;
use stratos_domain::syntax::Did;
use stratos_testkit::memory;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stratos = memory::stratos(Did::parse("did:web:stratos.example")?)
        .boundaries(["friends", "family"])
        .build()
        .await?;
    let (records, enrollments) = (stratos.records(), stratos.enrollments());
    let (friends, family) = (&stratos.boundaries()[..1], &stratos.boundaries()[1..]);
    let did = |name: &str| Did::parse(&format!("did:web:{name}.example"));
    let (alice, bob, carol) = (did("alice")?, did("bob")?, did("carol")?);
    for (who, boundaries) in [(&alice, friends), (&bob, friends), (&carol, family)] {
        enrollments.enroll_direct(who, boundaries).await?;
    }
    let post = json!({"$type": "zone.stratos.feed.post", "text": "for friends only",
        "createdAt": "2026-12-07T09:00:00.000Z", "boundary": {
            "$type": "zone.stratos.boundary.defs#Domains", "values": [{"value": friends[0].as_str()}]}});
    let posts = "zone.stratos.feed.post".parse()?;
    let commit = records
        .create_record(&alice, &alice, &posts, None, post)
        .await?;
    let uris = [commit.results[0].uri.clone()];
    let for_bob = records.hydrate(Some(&bob), &uris).await?;
    let for_carol = records.hydrate(Some(&carol), &uris).await?;
    assert_eq!(
        for_bob.records.len(),
        1,
        "bob holds `friends`: he reads the post"
    );
    assert_eq!(
        for_carol.not_found, uris,
        "carol does not: to her it does not exist"
    );
    println!("bob reads {}; to carol it does not exist", uris[0]);
    Ok(())
}
