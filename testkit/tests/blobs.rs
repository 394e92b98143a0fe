#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Blob use cases over the in-memory fakes: uploads, the access decision on download, listing,
//! references checked at write time, bytes released with the last referencing record, expired
//! uploads, chunked downloads, and the write rate limit.

use std::sync::Arc;

use serde_json::{Value, json};
use stratos_domain::data::Blob;
use stratos_domain::syntax::Did;
use stratos_domain::{Cid, Error as DomainError, cid};
use stratos_ports::blob_store::BlobStore;
use stratos_ports::usecases::UseCaseError;
use stratos_ports::usecases::blobs::UPLOAD_TTL_MS;
use stratos_ports::usecases::records::{Records, WriteOp};
use stratos_testkit::builders::{
    TINY_PNG, TestService, build_records_over, did, enroll_into, jpeg, png, post,
};

const POSTS: &str = "zone.stratos.feed.post";

fn posts() -> stratos_domain::syntax::Nsid {
    stratos_testkit::builders::nsid(POSTS)
}

async fn service() -> (TestService, Did, Did, Did) {
    let svc = TestService::new(&["swordsmith", "aekea"]);
    let rei = svc.enroll("did:plc:rei", &["swordsmith", "aekea"]).await;
    let sakura = svc.enroll("did:plc:sakura", &["swordsmith"]).await;
    let kaoruko = svc.enroll("did:plc:kaoruko", &["aekea"]).await;
    (svc, rei, sakura, kaoruko)
}

fn blob_json(b: &Blob) -> Value {
    json!({ "$type": "blob", "ref": { "$link": b.cid.to_string() }, "mimeType": b.mime_type, "size": b.size })
}

fn post_with(text: &str, boundaries: &[&str], images: &[&Blob]) -> Value {
    let mut p = post(text, boundaries);
    p["embed"] = json!({
        "$type": "app.bsky.embed.images",
        "images": images.iter().map(|b| json!({ "image": blob_json(b), "alt": "" })).collect::<Vec<_>>(),
    });
    p
}

fn rkey_of(uri: &stratos_domain::syntax::AtUri) -> stratos_domain::syntax::RecordKey {
    uri.rkey().unwrap().clone()
}

/// The whole download, or `None` when denied or missing.
async fn download(
    records: &Records,
    viewer: Option<&Did>,
    owner: &Did,
    c: &Cid,
) -> Option<Vec<u8>> {
    let mut d = records.get_blob(viewer, owner, c).await.unwrap()?;
    let mut out = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = d.chunks.next().await.unwrap() {
        out.extend(chunk);
        chunks += 1;
    }
    assert_eq!(out.len() as u64, d.size);
    assert!(chunks >= 1);
    Some(out)
}

#[tokio::test]
async fn boundary_decides_who_reads_a_blob() {
    let (svc, rei, sakura, kaoruko) = service().await;
    let r = &svc.records;
    let bytes = jpeg(b"a photo of the forge");
    let blob = r
        .upload_blob(&rei, Some("image/jpeg"), bytes.clone())
        .await
        .unwrap();
    assert_eq!(blob.cid, cid::raw(&bytes));
    assert_eq!(blob.size, bytes.len() as u64);
    assert_eq!(svc.blobs.temp_len(), 1);
    assert_eq!(
        download(r, Some(&rei), &rei, &blob.cid).await,
        None,
        "an upload is not served"
    );

    let out = r
        .create_record(
            &rei,
            &rei,
            &posts(),
            None,
            post_with("forge", &["swordsmith"], &[&blob]),
        )
        .await
        .unwrap();
    assert_eq!((svc.blobs.temp_len(), svc.blobs.permanent_len()), (0, 1));
    assert_eq!(
        download(r, Some(&rei), &rei, &blob.cid).await,
        Some(bytes.clone())
    );
    assert_eq!(
        download(r, Some(&sakura), &rei, &blob.cid).await,
        Some(bytes.clone())
    );
    assert_eq!(download(r, Some(&kaoruko), &rei, &blob.cid).await, None);
    assert_eq!(download(r, None, &rei, &blob.cid).await, None);
    assert_eq!(
        download(r, Some(&rei), &did("did:plc:nobody"), &blob.cid).await,
        None
    );
    let d = r
        .get_blob(Some(&sakura), &rei, &blob.cid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.mime_type, "image/jpeg");

    let page = |viewer: Option<Did>| {
        let rei = rei.clone();
        async move {
            r.list_blobs(viewer.as_ref(), &rei, 10, None, None)
                .await
                .unwrap()
                .unwrap()
                .cids
        }
    };
    assert_eq!(page(Some(rei.clone())).await, [blob.cid]);
    assert_eq!(page(Some(sakura.clone())).await, [blob.cid]);
    assert!(page(Some(kaoruko.clone())).await.is_empty());
    assert!(page(None).await.is_empty());
    assert_eq!(
        r.list_blobs(None, &did("did:plc:nobody"), 10, None, None)
            .await
            .unwrap(),
        None
    );

    // Deleting the only referencing record: unreadable for everyone, bytes deleted.
    r.delete_record(&rei, &rei, &posts(), &rkey_of(&out.results[0].uri))
        .await
        .unwrap();
    assert_eq!(download(r, Some(&rei), &rei, &blob.cid).await, None);
    assert_eq!((svc.blobs.temp_len(), svc.blobs.permanent_len()), (0, 0));
    assert!(page(Some(rei.clone())).await.is_empty());
}

#[tokio::test]
async fn writes_check_every_blob_reference() {
    let (svc, rei, sakura, _) = service().await;
    let r = &svc.records;
    let phantom = Blob {
        cid: cid::raw(b"never uploaded"),
        mime_type: "image/png".into(),
        size: 14,
    };
    let err = r
        .create_record(
            &rei,
            &rei,
            &posts(),
            None,
            post_with("x", &["swordsmith"], &[&phantom]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, UseCaseError::BlobNotFound(m) if m.contains(&phantom.cid.to_string())),
        "{err:?}"
    );
    let sakuras = r
        .upload_blob(&sakura, Some("image/png"), png(b"hers"))
        .await
        .unwrap();
    let err = r
        .create_record(
            &rei,
            &rei,
            &posts(),
            None,
            post_with("x", &["swordsmith"], &[&sakuras]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, UseCaseError::BlobNotFound(_)), "{err:?}");
    let mine = r
        .upload_blob(&rei, Some("image/png"), png(b"mine"))
        .await
        .unwrap();
    let lying = Blob {
        size: 99,
        ..mine.clone()
    };
    let err = r
        .create_record(
            &rei,
            &rei,
            &posts(),
            None,
            post_with("x", &["swordsmith"], &[&lying]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, UseCaseError::InvalidRequest(_)), "{err:?}");
    // A batch: one good reference, one bad; nothing is written and the upload stays an upload.
    let err = r
        .apply_writes(
            &rei,
            &rei,
            vec![
                WriteOp::Create {
                    collection: posts(),
                    rkey: None,
                    value: post_with("a", &["swordsmith"], &[&mine]),
                },
                WriteOp::Create {
                    collection: posts(),
                    rkey: None,
                    value: post_with("b", &["swordsmith"], &[&phantom]),
                },
            ],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, UseCaseError::BlobNotFound(_)), "{err:?}");
    assert!(
        r.list_records(Some(&rei), &rei, &posts(), 10, None, false)
            .await
            .unwrap()
            .records
            .is_empty()
    );
    assert_eq!(download(r, Some(&rei), &rei, &mine.cid).await, None);
    // Two records share one blob; an update keeps it as long as one still references it.
    let a = r
        .create_record(
            &rei,
            &rei,
            &posts(),
            None,
            post_with("a", &["swordsmith"], &[&mine]),
        )
        .await
        .unwrap();
    let b = r
        .create_record(
            &rei,
            &rei,
            &posts(),
            None,
            post_with("b", &["aekea"], &[&mine]),
        )
        .await
        .unwrap();
    let other = r
        .upload_blob(&rei, Some("image/png"), png(b"other"))
        .await
        .unwrap();
    r.put_record(
        &rei,
        &rei,
        &posts(),
        &rkey_of(&a.results[0].uri),
        post_with("a2", &["swordsmith"], &[&other]),
    )
    .await
    .unwrap();
    assert_eq!(
        download(r, Some(&sakura), &rei, &mine.cid).await,
        None,
        "only b (aekea) references it now"
    );
    assert_eq!(
        download(r, Some(&sakura), &rei, &other.cid).await,
        Some(png(b"other"))
    );
    assert_eq!(
        download(r, Some(&rei), &rei, &mine.cid).await,
        Some(png(b"mine"))
    );
    r.delete_record(&rei, &rei, &posts(), &rkey_of(&b.results[0].uri))
        .await
        .unwrap();
    assert_eq!(download(r, Some(&rei), &rei, &mine.cid).await, None);
    assert!(
        !svc.blobs.has(&rei, &mine.cid).await.unwrap(),
        "released bytes are deleted"
    );
    assert!(svc.blobs.has(&rei, &other.cid).await.unwrap());
}

#[tokio::test]
async fn uploads_deduplicate_and_expire() {
    let (svc, rei, _, _) = service().await;
    let r = &svc.records;
    let first = r
        .upload_blob(&rei, Some("image/png"), png(b"same"))
        .await
        .unwrap();
    let again = r
        .upload_blob(&rei, Some("image/gif"), png(b"same"))
        .await
        .unwrap();
    assert_eq!(again, first, "typed by the bytes, stored once");
    assert_eq!(svc.blobs.temp_len(), 1, "the duplicate bytes were dropped");
    // Bytes without a signature keep the type of their first upload.
    let note = r
        .upload_blob(&rei, Some("text/plain"), b"note".to_vec())
        .await
        .unwrap();
    let again = r
        .upload_blob(&rei, Some("text/markdown"), b"note".to_vec())
        .await
        .unwrap();
    assert_eq!(again, note, "the first upload's type stays");
    assert_eq!(note.mime_type, "text/plain");
    assert!(matches!(
        r.upload_blob(&rei, Some("image/png"), Vec::new()).await,
        Err(UseCaseError::InvalidRequest(_))
    ));
    assert!(matches!(
        r.upload_blob(&did("did:plc:stranger"), None, b"x".to_vec())
            .await,
        Err(UseCaseError::NotEnrolled(_))
    ));
    // A day later, the next upload clears the stale one.
    svc.clock.advance(UPLOAD_TTL_MS + 1);
    let fresh = r.upload_blob(&rei, None, png(b"fresh")).await.unwrap();
    assert_eq!(fresh.mime_type, "image/png", "typed by its bytes");
    assert_eq!(svc.blobs.temp_len(), 1, "only the fresh upload is left");
    let err = r
        .create_record(
            &rei,
            &rei,
            &posts(),
            None,
            post_with("late", &["swordsmith"], &[&first]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, UseCaseError::BlobNotFound(_)), "{err:?}");
    r.create_record(
        &rei,
        &rei,
        &posts(),
        None,
        post_with("on time", &["swordsmith"], &[&fresh]),
    )
    .await
    .unwrap();
    // A permanent blob survives any amount of time.
    svc.clock.advance(10 * UPLOAD_TTL_MS);
    let later = r.upload_blob(&rei, None, b"later".to_vec()).await.unwrap();
    assert_eq!(later.mime_type, "application/octet-stream");
    assert_eq!(
        download(r, Some(&rei), &rei, &fresh.cid).await,
        Some(png(b"fresh"))
    );
}

#[tokio::test]
async fn large_blobs_download_in_chunks() {
    let (svc, rei, sakura, _) = service().await;
    let r = &svc.records;
    let bytes = png(&(0..700_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let blob = r
        .upload_blob(&rei, Some("image/png"), bytes.clone())
        .await
        .unwrap();
    r.create_record(
        &rei,
        &rei,
        &posts(),
        None,
        post_with("clip", &["swordsmith"], &[&blob]),
    )
    .await
    .unwrap();
    let mut d = r
        .get_blob(Some(&sakura), &rei, &blob.cid)
        .await
        .unwrap()
        .unwrap();
    let mut sizes = Vec::new();
    let mut out = Vec::new();
    while let Some(chunk) = d.chunks.next().await.unwrap() {
        sizes.push(chunk.len());
        out.extend(chunk);
    }
    assert!(sizes.len() > 1, "read in several chunks: {sizes:?}");
    assert_eq!(out, bytes);
}

#[tokio::test]
async fn listing_pages_and_checks_parameters() {
    let (svc, rei, sakura, kaoruko) = service().await;
    let r = &svc.records;
    let mut blobs = Vec::new();
    for i in 0..5u8 {
        blobs.push(
            r.upload_blob(&rei, Some("image/png"), png(&[i; 4]))
                .await
                .unwrap(),
        );
    }
    r.create_record(
        &rei,
        &rei,
        &posts(),
        None,
        post_with("s", &["swordsmith"], &[&blobs[0], &blobs[1], &blobs[2]]),
    )
    .await
    .unwrap();
    r.create_record(
        &rei,
        &rei,
        &posts(),
        None,
        post_with("a", &["aekea"], &[&blobs[3], &blobs[4]]),
    )
    .await
    .unwrap();
    let sorted = |idx: &[usize]| {
        let mut v: Vec<_> = idx.iter().map(|i| blobs[*i].cid).collect();
        v.sort_by_key(ToString::to_string);
        v
    };
    let owner = &rei;
    let walk = |viewer: Did| async move {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = r
                .list_blobs(Some(&viewer), owner, 2, cursor.as_deref(), None)
                .await
                .unwrap()
                .unwrap();
            seen.extend(page.cids);
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => return seen,
            }
        }
    };
    assert_eq!(walk(rei.clone()).await, sorted(&[0, 1, 2, 3, 4]));
    assert_eq!(walk(sakura.clone()).await, sorted(&[0, 1, 2]));
    assert_eq!(walk(kaoruko.clone()).await, sorted(&[3, 4]));
    for (limit, cursor, since) in [
        (0, None, None),
        (1001, None, None),
        (10, Some("not a cid"), None),
        (10, None, Some("not a tid")),
    ] {
        assert!(
            matches!(
                r.list_blobs(Some(&rei), &rei, limit, cursor, since).await,
                Err(UseCaseError::InvalidRequest(_))
            ),
            "{limit} {cursor:?} {since:?}"
        );
    }
}

#[tokio::test]
async fn uploads_count_against_the_write_rate_limit() {
    let svc = TestService::new(&["swordsmith"]);
    let records = build_records_over(
        svc.repos.clone(),
        svc.enrollments.clone(),
        svc.keys.clone(),
        svc.clock.clone(),
        svc.blobs.clone() as Arc<dyn BlobStore>,
        &["swordsmith"],
        stratos_domain::rate_limit::RateLimit {
            max: 2,
            window_ms: 60_000,
        },
    );
    let rei = enroll_into(
        &records,
        svc.enrollments.as_ref(),
        svc.keys.as_ref(),
        "did:plc:rei",
        &["swordsmith"],
    )
    .await;
    records
        .upload_blob(&rei, None, b"1".to_vec())
        .await
        .unwrap();
    records
        .upload_blob(&rei, None, b"2".to_vec())
        .await
        .unwrap();
    assert!(matches!(
        records.upload_blob(&rei, None, b"3".to_vec()).await,
        Err(UseCaseError::Rule(DomainError::RateLimited { .. }))
    ));
    assert_eq!(svc.blobs.temp_len(), 2, "a refused upload stores nothing");
}

/// A page that runs a script when a browser renders it as HTML.
const HTML: &[u8] =
    b"<!DOCTYPE html><html><body><script>alert(document.domain)</script></body></html>";

fn type_not_accepted(err: &UseCaseError) -> bool {
    matches!(err, UseCaseError::Rule(DomainError::BlobTypeNotAccepted(_)))
}

#[tokio::test]
async fn html_never_passes_as_an_image() {
    let (svc, rei, sakura, _) = service().await;
    let r = &svc.records;
    let me = &rei;
    let create = |b: Blob| async move {
        r.create_record(
            me,
            me,
            &posts(),
            None,
            post_with("look", &["swordsmith"], &[&b]),
        )
        .await
    };
    // Uploads are typed by their bytes: HTML declared as a PNG is stored as HTML.
    let disguised = r
        .upload_blob(&rei, Some("image/png"), HTML.to_vec())
        .await
        .unwrap();
    assert_eq!(disguised.mime_type, "text/html");
    let declared_html = r
        .upload_blob(&rei, Some("text/html"), [HTML, b" "].concat())
        .await
        .unwrap();
    assert_eq!(declared_html.mime_type, "text/html");
    // An image type the bytes do not bear out is not kept: script text, SVG.
    let script = r
        .upload_blob(&rei, Some("image/png"), b"alert(document.cookie)".to_vec())
        .await
        .unwrap();
    assert_eq!(script.mime_type, "application/octet-stream");
    let svg = r
        .upload_blob(
            &rei,
            Some("image/svg+xml"),
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(svg.mime_type, "application/octet-stream");

    for blob in [&disguised, &declared_html, &script, &svg] {
        // The reference as the upload answered it: the image field refuses the type.
        let err = create(blob.clone()).await.unwrap_err();
        assert!(type_not_accepted(&err), "{blob:?}: {err:?}");
        // A reference that claims an image type for those bytes: refused too.
        for claim in ["image/png", "image/svg+xml"] {
            let lying = Blob {
                mime_type: claim.into(),
                ..blob.clone()
            };
            let err = create(lying).await.unwrap_err();
            assert!(type_not_accepted(&err), "{blob:?} as {claim}: {err:?}");
        }
    }
    assert!(
        r.list_records(Some(&rei), &rei, &posts(), 10, None, false)
            .await
            .unwrap()
            .records
            .is_empty(),
        "nothing was written"
    );
    assert_eq!(
        svc.blobs.permanent_len(),
        0,
        "no refused upload became permanent"
    );

    // A real PNG is stored, embedded and served as one, whatever the upload declared.
    let real = r
        .upload_blob(&rei, Some("image/jpeg"), TINY_PNG.to_vec())
        .await
        .unwrap();
    assert_eq!(real.mime_type, "image/png");
    let out = create(real.clone()).await.unwrap();
    let d = r
        .get_blob(Some(&sakura), &rei, &real.cid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.mime_type, "image/png");
    assert_eq!(
        download(r, Some(&sakura), &rei, &real.cid).await,
        Some(TINY_PNG.to_vec())
    );

    // Updates and batches run the same checks.
    let err = r
        .put_record(
            &rei,
            &rei,
            &posts(),
            &rkey_of(&out.results[0].uri),
            post_with("swapped", &["swordsmith"], &[&disguised]),
        )
        .await
        .unwrap_err();
    assert!(type_not_accepted(&err), "{err:?}");
    let err = r
        .apply_writes(
            &rei,
            &rei,
            vec![
                WriteOp::Create {
                    collection: posts(),
                    rkey: None,
                    value: post_with("fine", &["swordsmith"], &[&real]),
                },
                WriteOp::Create {
                    collection: posts(),
                    rkey: None,
                    value: post_with(
                        "sneaky",
                        &["swordsmith"],
                        &[&Blob {
                            mime_type: "image/png".into(),
                            ..disguised.clone()
                        }],
                    ),
                },
            ],
        )
        .await
        .unwrap_err();
    assert!(type_not_accepted(&err), "{err:?}");
    assert_eq!(
        r.list_records(Some(&rei), &rei, &posts(), 10, None, false)
            .await
            .unwrap()
            .records
            .len(),
        1
    );
}
