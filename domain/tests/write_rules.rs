#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Write validation against the Stratos lexicons (reference: validation.test.ts,
//! post-validator.test.ts, enrollment-validator.test.ts, §4.4).

use serde_json::{Value, json};
use stratos_domain::boundary::{Boundary, BoundarySet};
use stratos_domain::lexicon::{Catalog, STRATOS_LEXICONS};
use stratos_domain::syntax::{Did, Nsid};
use stratos_domain::write::{
    WriteContext, WritePolicy, check_public_embed, is_stratos_collection, reply_parent,
};
use stratos_domain::{Error, Result, data};

const SVC: &str = "did:web:nerv.tokyo.jp";
const OPS: &str = "did:web:nerv.tokyo.jp/ops";
const PILOTS: &str = "did:web:nerv.tokyo.jp/pilots";
const SECRET: &str = "did:web:nerv.tokyo.jp/secret";
const POST: &str = "zone.stratos.feed.post";

fn policy() -> WritePolicy {
    WritePolicy {
        service_did: Did::parse(SVC).unwrap(),
        allowed: [OPS, PILOTS, SECRET]
            .iter()
            .map(|b| Boundary::parse(b).unwrap())
            .collect(),
    }
}

fn held(items: &[&str]) -> BoundarySet {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn post(boundaries: &[&str]) -> Value {
    json!({
        "$type": POST,
        "text": "Get in the robot",
        "boundary": {
            "$type": "zone.stratos.boundary.defs#Domains",
            "values": boundaries.iter().map(|b| json!({"value": b})).collect::<Vec<_>>()
        },
        "createdAt": "2026-11-25T09:00:00.000Z"
    })
}

fn check_as(
    collection: &str,
    record: &Value,
    author: &[&str],
    parent: Option<&[Boundary]>,
) -> Result<Vec<Boundary>> {
    let catalog = Catalog::stratos().unwrap();
    let record = data::json_to_ipld(record)?;
    let author = held(author);
    policy().check_record(
        &catalog,
        &Nsid::parse(collection).unwrap(),
        &record,
        WriteContext {
            author_boundaries: &author,
            parent_boundaries: parent,
        },
    )
}

fn check(record: &Value) -> Result<Vec<Boundary>> {
    check_as(POST, record, &[OPS, PILOTS], None)
}

#[test]
fn stratos_catalog_loads_every_lexicon_and_resolves_refs() {
    let catalog = Catalog::stratos().unwrap();
    assert!(STRATOS_LEXICONS.len() >= 16);
    for (nsid, _) in STRATOS_LEXICONS {
        assert!(catalog.doc(nsid).is_some(), "{nsid} missing");
    }
    catalog.check_refs().unwrap();
}

#[test]
fn valid_post_with_one_and_several_boundaries() {
    assert_eq!(check(&post(&[OPS])).unwrap().len(), 1);
    let got = check(&post(&[OPS, PILOTS])).unwrap();
    assert_eq!(
        got.iter().map(Boundary::as_str).collect::<Vec<_>>(),
        [OPS, PILOTS]
    );
}

#[test]
fn post_without_boundary_is_rejected() {
    let mut p = post(&[OPS]);
    p.as_object_mut().unwrap().remove("boundary");
    // `boundary` is optional in the lexicon (PDS stubs share the collection) and required by
    // the write rules.
    assert_eq!(check(&p).unwrap_err(), Error::MissingBoundary);
    // An empty list fails the lexicon (`minLength: 1`) before the rule.
    assert!(matches!(check(&post(&[])), Err(Error::Validation { .. })));
}

#[test]
fn boundary_of_another_service_names_the_boundary() {
    let err = check(&post(&["did:web:seele.org/ops"])).unwrap_err();
    assert_eq!(
        err,
        Error::BoundaryServiceMismatch {
            boundary: "did:web:seele.org/ops".into(),
            expected: SVC.into()
        }
    );
}

#[test]
fn bare_boundary_names_are_rejected_with_the_qualified_form() {
    let err = check(&post(&["ops"])).unwrap_err();
    assert_eq!(
        err,
        Error::BoundaryUnqualified {
            boundary: "ops".into(),
            service: SVC.into(),
            qualified: OPS.into(),
        }
    );
    let message = err.to_string();
    assert!(
        message.contains(SVC) && message.contains(&format!("\"{OPS}\"")),
        "{message}"
    );
    // Something that cannot be a name at all stays a format error.
    assert!(matches!(
        check(&post(&["o ps"])),
        Err(Error::BoundaryFormat { .. })
    ));
}

#[test]
fn boundary_not_offered_by_the_service() {
    let err = check(&post(&["did:web:nerv.tokyo.jp/marduk"])).unwrap_err();
    assert_eq!(
        err,
        Error::BoundaryNotAllowed {
            boundary: "did:web:nerv.tokyo.jp/marduk".into()
        }
    );
}

#[test]
fn boundary_the_author_does_not_hold() {
    let err = check(&post(&[OPS, SECRET])).unwrap_err();
    assert_eq!(
        err,
        Error::BoundaryNotHeld {
            boundary: SECRET.into()
        }
    );
}

#[test]
fn service_without_boundaries_rejects_every_write() {
    let mut p = policy();
    p.allowed.clear();
    let catalog = Catalog::stratos().unwrap();
    let author = held(&[OPS]);
    let err = p
        .check_record(
            &catalog,
            &Nsid::parse(POST).unwrap(),
            &data::json_to_ipld(&post(&[OPS])).unwrap(),
            WriteContext {
                author_boundaries: &author,
                parent_boundaries: None,
            },
        )
        .unwrap_err();
    assert_eq!(err, Error::NamespaceDisabled);
}

#[test]
fn non_stratos_and_enrollment_collections_are_not_writable() {
    let mut bsky = post(&[OPS]);
    bsky["$type"] = json!("app.bsky.feed.post");
    assert!(matches!(
        check_as("app.bsky.feed.post", &bsky, &[OPS], None),
        Err(Error::CollectionNotWritable { .. })
    ));
    let enrollment = json!({"$type": "zone.stratos.actor.enrollment"});
    assert!(matches!(
        check_as("zone.stratos.actor.enrollment", &enrollment, &[OPS], None),
        Err(Error::CollectionNotWritable { .. })
    ));
    assert!(is_stratos_collection(POST));
    assert!(!is_stratos_collection("app.bsky.feed.post"));
}

#[test]
fn lexicon_limits_of_a_post() {
    let mut p = post(&[OPS]);
    p["text"] = json!("a".repeat(3001));
    assert!(matches!(check(&p), Err(Error::Validation { path, .. }) if path == "text"));
    p["text"] = json!("é".repeat(301)); // 602 bytes, 301 graphemes
    assert!(matches!(check(&p), Err(Error::Validation { path, .. }) if path == "text"));
    p["text"] = json!("é".repeat(300));
    check(&p).unwrap();

    let mut p = post(&[OPS]);
    p["langs"] = json!(["en", "ja", "de", "fr"]);
    assert!(matches!(check(&p), Err(Error::Validation { .. })));
    p["langs"] = json!(["en", "ja"]);
    check(&p).unwrap();
    p["langs"] = json!(["not a language!"]);
    assert!(matches!(check(&p), Err(Error::Validation { .. })));

    let mut p = post(&[OPS]);
    p["tags"] = json!(["a", "b", "c", "d", "e", "f", "g", "h", "i"]);
    assert!(matches!(check(&p), Err(Error::Validation { .. })));
    p["tags"] = json!(["x".repeat(65)]);
    assert!(matches!(check(&p), Err(Error::Validation { .. })));
    p["tags"] = json!(["x".repeat(64)]);
    check(&p).unwrap();

    let mut p = post(&[OPS]);
    p["createdAt"] = json!("yesterday");
    assert!(matches!(check(&p), Err(Error::Validation { path, .. }) if path == "createdAt"));
    p.as_object_mut().unwrap().remove("createdAt");
    assert!(matches!(check(&p), Err(Error::Validation { .. })));
}

#[test]
fn more_than_ten_boundaries_or_overlong_values_are_rejected() {
    let many: Vec<String> = (0..11).map(|i| format!("{SVC}/b{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(matches!(check(&post(&refs)), Err(Error::Validation { .. })));
    let long = format!("{SVC}/{}", "x".repeat(240));
    assert!(matches!(
        check(&post(&[&long])),
        Err(Error::Validation { .. })
    ));
}

#[test]
fn floats_and_wrong_types_are_typed_errors() {
    let mut p = post(&[OPS]);
    p["text"] = json!(1.5);
    assert!(check(&p).is_err());
    let mut p = post(&[OPS]);
    p["$type"] = json!("zone.stratos.feed.other");
    assert!(matches!(check(&p), Err(Error::Validation { .. })));
}

#[test]
fn records_carrying_a_stub_source_are_rejected() {
    let mut p = post(&[OPS]);
    p["source"] = json!({
        "vary": "authenticated",
        "subject": {"uri": "at://did:plc:x/zone.stratos.feed.post/3kznmn7xqxl22", "cid": "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq"},
        "service": "did:web:nerv.tokyo.jp#atproto_pns"
    });
    assert!(matches!(check(&p), Err(Error::Validation { path, .. }) if path == "source"));
}

fn reply(parent: &str, root: &str, boundaries: &[&str]) -> Value {
    let mut p = post(boundaries);
    p["reply"] = json!({
        "root": {"uri": root, "cid": "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq"},
        "parent": {"uri": parent, "cid": "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq"}
    });
    p
}

const PARENT: &str = "at://did:plc:misato/zone.stratos.feed.post/3kznmn7xqxl22";

#[test]
fn reply_within_parent_boundaries_is_accepted() {
    let r = reply(PARENT, PARENT, &[OPS]);
    let parent = vec![
        Boundary::parse(OPS).unwrap(),
        Boundary::parse(PILOTS).unwrap(),
    ];
    check_as(POST, &r, &[OPS, PILOTS], Some(&parent)).unwrap();
    assert_eq!(
        reply_parent(&data::json_to_ipld(&r).unwrap())
            .unwrap()
            .to_string(),
        PARENT
    );
}

#[test]
fn reply_escalating_beyond_parent_boundaries_is_rejected() {
    let r = reply(PARENT, PARENT, &[OPS, PILOTS]);
    let parent = vec![Boundary::parse(OPS).unwrap()];
    assert_eq!(
        check_as(POST, &r, &[OPS, PILOTS], Some(&parent)).unwrap_err(),
        Error::ReplyBoundaryEscalation {
            boundary: PILOTS.into()
        }
    );
}

#[test]
fn reply_to_a_public_post_is_rejected() {
    let bsky = "at://did:plc:misato/app.bsky.feed.post/3kznmn7xqxl22";
    assert!(matches!(
        check(&reply(bsky, PARENT, &[OPS])),
        Err(Error::CrossNamespaceReply {
            field: "reply.parent",
            ..
        })
    ));
    assert!(matches!(
        check(&reply(PARENT, bsky, &[OPS])),
        Err(Error::CrossNamespaceReply {
            field: "reply.root",
            ..
        })
    ));
}

fn with_embed(embed: Value) -> Value {
    let mut p = post(&[OPS]);
    p["embed"] = embed;
    p
}

#[test]
fn embedding_public_bsky_records_is_rejected_including_record_with_media() {
    let bsky = json!({"uri": "at://did:plc:x/app.bsky.feed.post/3kznmn7xqxl22", "cid": "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq"});
    let e = with_embed(json!({"$type": "app.bsky.embed.record", "record": bsky}));
    assert!(matches!(check(&e), Err(Error::CrossNamespaceEmbed { .. })));
    // The TypeScript original missed the nested record of recordWithMedia.
    let e = with_embed(json!({
        "$type": "app.bsky.embed.recordWithMedia",
        "record": {"record": bsky},
        "media": {"$type": "app.bsky.embed.images", "images": []}
    }));
    assert!(matches!(check(&e), Err(Error::CrossNamespaceEmbed { .. })));
}

#[test]
fn embedding_stratos_records_is_accepted() {
    let own = json!({"uri": PARENT, "cid": "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq"});
    check(&with_embed(
        json!({"$type": "app.bsky.embed.record", "record": own}),
    ))
    .unwrap();
}

#[test]
fn public_posts_may_not_embed_stratos_records() {
    let public = data::json_to_ipld(&json!({
        "$type": "app.bsky.feed.post",
        "text": "look",
        "embed": {"$type": "app.bsky.embed.record", "record": {"uri": PARENT, "cid": "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq"}},
        "createdAt": "2026-11-25T09:00:00Z"
    }))
    .unwrap();
    assert!(matches!(
        check_public_embed(&public),
        Err(Error::CrossNamespaceEmbed { .. })
    ));
    let plain = data::json_to_ipld(&json!({"$type": "app.bsky.feed.post", "text": "hi"})).unwrap();
    check_public_embed(&plain).unwrap();
}

#[test]
fn enrollment_record_validates_against_its_lexicon() {
    let catalog = Catalog::stratos().unwrap();
    let record = data::json_to_ipld(&json!({
        "$type": "zone.stratos.actor.enrollment",
        "service": "https://stratos.nerv.tokyo.jp",
        "boundaries": [{"value": OPS}],
        "signingKey": "did:key:zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo",
        "attestation": {"sig": {"$bytes": "AAEC"}, "signingKey": "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme"},
        "createdAt": "2026-11-25T09:00:00Z"
    }))
    .unwrap();
    catalog
        .validate_record("zone.stratos.actor.enrollment", &record)
        .unwrap();
    catalog
        .check_record_key("zone.stratos.actor.enrollment", "did:web:localhost:3100")
        .unwrap();
    let Ok(mut broken) = data::ipld_to_json(&record) else {
        panic!()
    };
    broken.as_object_mut().unwrap().remove("attestation");
    assert!(
        catalog
            .validate_record(
                "zone.stratos.actor.enrollment",
                &data::json_to_ipld(&broken).unwrap()
            )
            .is_err()
    );
}

#[test]
fn post_record_keys_must_be_tids() {
    let catalog = Catalog::stratos().unwrap();
    catalog.check_record_key(POST, "3kznmn7xqxl22").unwrap();
    assert!(catalog.check_record_key(POST, "self").is_err());
}

#[test]
fn pds_stubs_are_valid_feed_posts() {
    let catalog = Catalog::stratos().unwrap();
    let record = data::json_to_ipld(&post(&[OPS])).unwrap();
    let (cid, _) = data::record_cid(&record).unwrap();
    let uri = stratos_domain::syntax::AtUri::parse(PARENT).unwrap();
    let now = stratos_domain::syntax::Datetime::parse("2030-01-01T00:00:00Z").unwrap();
    let stub = stratos_domain::stub::stub_for(
        &record,
        &uri,
        &cid,
        "did:web:nerv.tokyo.jp#atproto_pns",
        &now,
    )
    .unwrap();
    catalog.validate_record(POST, &stub).unwrap();
}

/// A blob reference as `uploadBlob` returns it.
fn blob_ref(mime: &str, size: u64) -> Value {
    json!({
        "$type": "blob",
        "ref": { "$link": stratos_domain::cid::raw(mime.as_bytes()).to_string() },
        "mimeType": mime,
        "size": size,
    })
}

fn images(blobs: &[Value]) -> Value {
    json!({
        "$type": "app.bsky.embed.images",
        "images": blobs.iter().map(|b| json!({ "image": b, "alt": "" })).collect::<Vec<_>>(),
    })
}

fn external(thumb: Value) -> Value {
    json!({
        "$type": "app.bsky.embed.external",
        "external": { "uri": "https://example.com/", "title": "t", "description": "d", "thumb": thumb },
    })
}

fn video(file: Value, captions: &[Value]) -> Value {
    json!({
        "$type": "app.bsky.embed.video",
        "video": file,
        "captions": captions.iter().map(|c| json!({ "lang": "en", "file": c })).collect::<Vec<_>>(),
    })
}

fn with_media(media: Value) -> Value {
    let own = json!({"uri": PARENT, "cid": "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq"});
    json!({ "$type": "app.bsky.embed.recordWithMedia", "record": { "record": own }, "media": media })
}

fn type_refused(embed: Value, path: &str) -> bool {
    matches!(check(&with_embed(embed)), Err(Error::BlobTypeNotAccepted(m)) if m.starts_with(path))
}

fn size_refused(embed: Value, path: &str) -> bool {
    matches!(check(&with_embed(embed)), Err(Error::BlobTooLarge(m)) if m.starts_with(path))
}

#[test]
fn the_bundled_atproto_embed_lexicons_are_enforced() {
    let catalog = Catalog::stratos().unwrap();
    for nsid in [
        "app.bsky.embed.images",
        "app.bsky.embed.external",
        "app.bsky.embed.video",
        "app.bsky.embed.record",
        "app.bsky.embed.recordWithMedia",
        "app.bsky.embed.defs",
    ] {
        assert!(catalog.doc(nsid).is_some(), "{nsid} missing");
    }
    // More than four images, or an image without `alt`, fails the schema itself.
    let five: Vec<Value> = (0..5).map(|i| blob_ref("image/png", 100 + i)).collect();
    assert!(matches!(
        check(&with_embed(images(&five))),
        Err(Error::Validation { .. })
    ));
    let no_alt = json!({ "$type": "app.bsky.embed.images", "images": [{ "image": blob_ref("image/png", 1) }] });
    assert!(matches!(
        check(&with_embed(no_alt)),
        Err(Error::Validation { path, .. }) if path == "embed.images[0].alt"
    ));
    // Facets and the strong refs of `app.bsky.embed.record` stay open objects (not bundled).
    let mut p = with_embed(images(&[blob_ref("image/png", 1)]));
    p["facets"] = json!([{ "anything": true }]);
    check(&p).unwrap();
}

#[test]
fn embedded_images_accept_images_only() {
    for mime in [
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/gif",
        "image/avif",
    ] {
        check(&with_embed(images(&[blob_ref(mime, 1000)])))
            .unwrap_or_else(|e| panic!("{mime}: {e}"));
        check(&with_embed(external(blob_ref(mime, 1000)))).unwrap();
        check(&with_embed(with_media(images(&[blob_ref(mime, 1000)])))).unwrap();
    }
    // HTML, scripts and SVG (markup that runs scripts, although its type is `image/…`) never
    // pass where the lexicon says `image/*`.
    for mime in [
        "text/html",
        "image/svg+xml",
        "application/xhtml+xml",
        "text/javascript",
        "application/octet-stream",
        "text/plain",
    ] {
        let second = [blob_ref("image/png", 10), blob_ref(mime, 10)];
        assert!(
            type_refused(images(&second), "embed.images[1].image"),
            "{mime}"
        );
        assert!(
            type_refused(external(blob_ref(mime, 10)), "embed.external.thumb"),
            "{mime}"
        );
        assert!(
            type_refused(
                with_media(images(&[blob_ref(mime, 10)])),
                "embed.media.images[0].image"
            ),
            "{mime}"
        );
        assert!(
            type_refused(video(blob_ref(mime, 10), &[]), "embed.video"),
            "{mime}"
        );
    }
    // A video is `video/mp4` only; captions are WebVTT only.
    check(&with_embed(video(
        blob_ref("video/mp4", 1000),
        &[blob_ref("text/vtt", 100)],
    )))
    .unwrap();
    assert!(type_refused(
        video(blob_ref("video/webm", 1000), &[]),
        "embed.video"
    ));
    assert!(type_refused(
        video(blob_ref("video/mp4", 1000), &[blob_ref("text/html", 100)]),
        "embed.captions[0].file"
    ));
    assert!(type_refused(
        with_media(video(blob_ref("image/png", 1000), &[])),
        "embed.media.video"
    ));
}

#[test]
fn embedded_blobs_respect_max_size() {
    check(&with_embed(images(&[blob_ref("image/png", 2_000_000)]))).unwrap();
    assert!(size_refused(
        images(&[blob_ref("image/png", 2_000_001)]),
        "embed.images[0].image"
    ));
    check(&with_embed(external(blob_ref("image/png", 1_000_000)))).unwrap();
    assert!(size_refused(
        external(blob_ref("image/png", 1_000_001)),
        "embed.external.thumb"
    ));
    check(&with_embed(video(blob_ref("video/mp4", 300_000_000), &[]))).unwrap();
    assert!(size_refused(
        video(blob_ref("video/mp4", 300_000_001), &[]),
        "embed.video"
    ));
    assert!(size_refused(
        video(blob_ref("video/mp4", 1), &[blob_ref("text/vtt", 20_001)]),
        "embed.captions[0].file"
    ));
}
