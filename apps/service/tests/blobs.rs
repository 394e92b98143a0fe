#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! Blobs over real HTTP (`uploadBlob`, `getBlob`, `listBlobs`) against the running service with
//! SQLite and local blobs in a temporary directory: uploads are tracked, made permanent by the
//! record that references them and readable exactly when such a record is; a denied blob
//! answers like a missing one; records cannot reference blobs that were never uploaded.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::{Value, json};
use stratos_service::RunningServer;
use stratos_testkit::builders::{TINY_PNG, jpeg, png};

use crate::common;
use common::rkey_of;

use common::ADMIN;
const POST: &str = "zone.stratos.feed.post";
const REI: &str = "did:plc:rei";
const SAKURA: &str = "did:plc:sakura";
const KAORUKO: &str = "did:plc:kaoruko";

struct Svc {
    server: Option<RunningServer>,
    http: reqwest::Client,
    base: String,
    dir: tempfile::TempDir,
}

/// A raw HTTP answer: status, headers and the body bytes.
struct Raw {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn start_with(extra: &[(&str, &str)]) -> Svc {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path(), extra);
    let server = stratos_service::start(config, 1).await.unwrap();
    Svc {
        base: server.url(),
        server: Some(server),
        http: stratos_testkit::http_client(),
        dir,
    }
}

async fn start() -> Svc {
    start_with(&[]).await
}

fn bearer(did: &str) -> String {
    format!("Bearer {did}")
}

impl Svc {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn blob_dir(&self) -> PathBuf {
        self.dir.path().join("blobs")
    }

    async fn raw(&self, req: reqwest::RequestBuilder) -> Raw {
        let res = req.send().await.unwrap();
        Raw {
            status: res.status(),
            headers: res.headers().clone(),
            body: res.bytes().await.unwrap().to_vec(),
        }
    }

    async fn post(&self, nsid: &str, auth: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(self.url(&format!("/xrpc/{nsid}")))
            .json(&body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let raw = self.raw(req).await;
        (raw.status, raw.json())
    }

    async fn get(&self, path_and_query: &str, auth: Option<&str>) -> Raw {
        let mut req = self.http.get(self.url(path_and_query));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        self.raw(req).await
    }

    async fn enroll(&self, did: &str, boundaries: &[&str]) {
        let (s, body) = self
            .post(
                "zone.stratos.admin.enrollActor",
                Some(&bearer(ADMIN)),
                json!({ "did": did, "boundaries": boundaries }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }

    async fn upload(
        &self,
        auth: Option<&str>,
        content_type: Option<&str>,
        bytes: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(self.url("/xrpc/com.atproto.repo.uploadBlob"))
            .body(bytes);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        let raw = self.raw(req).await;
        (raw.status, raw.json())
    }

    /// Uploads `bytes` as `did` and returns the blob reference.
    async fn upload_ok(&self, did: &str, content_type: &str, bytes: &[u8]) -> Value {
        let (s, body) = self
            .upload(Some(&bearer(did)), Some(content_type), bytes.to_vec())
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        body["blob"].clone()
    }

    async fn create(&self, did: &str, record: Value) -> (StatusCode, Value) {
        self.post(
            "com.atproto.repo.createRecord",
            Some(&bearer(did)),
            json!({ "repo": did, "collection": POST, "record": record }),
        )
        .await
    }

    async fn get_blob(&self, did: &str, cid: &str, viewer: Option<&str>) -> Raw {
        let auth = viewer.map(bearer);
        self.get(
            &format!("/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}"),
            auth.as_deref(),
        )
        .await
    }

    async fn list_blobs(&self, query: &str, viewer: Option<&str>) -> (StatusCode, Value) {
        let auth = viewer.map(bearer);
        let raw = self
            .get(
                &format!("/xrpc/com.atproto.sync.listBlobs?{query}"),
                auth.as_deref(),
            )
            .await;
        (raw.status, raw.json())
    }

    /// Every CID of `did`'s blobs `viewer` may list, walking pages of `limit`.
    async fn list_all(&self, did: &str, viewer: Option<&str>, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = format!("did={did}&limit={limit}");
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let (s, body) = self.list_blobs(&q, viewer).await;
            assert_eq!(s, StatusCode::OK, "{body}");
            let page: Vec<String> = body["cids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect();
            assert!(page.len() <= limit);
            out.extend(page.iter().cloned());
            match body.get("cursor").and_then(Value::as_str) {
                Some(c) => {
                    assert_eq!(page.len(), limit, "a cursor only after a full page");
                    cursor = Some(c.to_owned());
                }
                None => return out,
            }
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await.unwrap();
        }
    }
}

/// A post in `boundaries` embedding `images` (blob references as `uploadBlob` returned them).
fn post_with(text: &str, boundaries: &[&str], images: &[&Value]) -> Value {
    let mut post = json!({
        "$type": POST,
        "text": text,
        "boundary": {
            "$type": "zone.stratos.boundary.defs#Domains",
            "values": boundaries.iter().map(|b| json!({ "value": format!("did:web:nerv.tokyo.jp/{b}") })).collect::<Vec<_>>(),
        },
        "createdAt": "2026-11-25T09:00:00.000Z",
    });
    if !images.is_empty() {
        post["embed"] = json!({
            "$type": "app.bsky.embed.images",
            "images": images.iter().map(|b| json!({ "image": b, "alt": "" })).collect::<Vec<_>>(),
        });
    }
    post
}

fn cid_of(blob: &Value) -> String {
    blob["ref"]["$link"].as_str().unwrap().to_owned()
}

/// Files under `dir`, recursively (none when it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn a_blob_is_readable_exactly_when_a_record_referencing_it_is() {
    let svc = start().await;
    svc.enroll(REI, &["general", "other"]).await;
    svc.enroll(SAKURA, &["general"]).await;
    svc.enroll(KAORUKO, &["other"]).await;

    let picture = b"\x89PNG\r\n\x1a\n only the signature of a PNG".to_vec();
    let blob = svc.upload_ok(REI, "image/png", &picture).await;
    let cid = cid_of(&blob);
    assert_eq!(cid, stratos_domain::cid::raw(&picture).to_string());
    assert!(
        cid.starts_with("bafkrei"),
        "CIDv1, raw codec, sha2-256: {cid}"
    );
    assert_eq!(
        blob,
        json!({ "$type": "blob", "ref": { "$link": cid }, "mimeType": "image/png", "size": picture.len() })
    );

    // An upload no record references is served to nobody, not even its owner.
    let missing_answer = svc.get_blob(REI, &cid, Some(REI)).await;
    assert_eq!(missing_answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing_answer.json()["error"], "BlobNotFound");
    let (s, body) = svc.list_blobs(&format!("did={REI}"), Some(REI)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "cids": [] }));

    let (s, created) = svc
        .create(REI, post_with("look", &["general"], &[&blob]))
        .await;
    assert_eq!(s, StatusCode::OK, "{created}");
    let rkey = rkey_of(&created);

    for viewer in [Some(REI), Some(SAKURA)] {
        let got = svc.get_blob(REI, &cid, viewer).await;
        assert_eq!(got.status, StatusCode::OK, "{viewer:?}");
        assert_eq!(got.body, picture, "{viewer:?}");
        assert_eq!(got.header("content-type"), Some("image/png"));
        assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(
            got.header("content-security-policy"),
            Some("default-src 'none'; sandbox")
        );
        assert_eq!(
            got.header("content-length"),
            Some(picture.len().to_string().as_str())
        );
    }

    // Denied viewers, anonymous readers, a blob that does not exist and a repository that does
    // not exist all get the same answer, byte for byte.
    let missing_cid = stratos_domain::cid::raw(b"never uploaded").to_string();
    let reference = svc.get_blob(REI, &missing_cid, Some(REI)).await;
    assert_eq!(reference.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reference.json(),
        json!({ "error": "BlobNotFound", "message": "Blob not found" })
    );
    for answer in [
        svc.get_blob(REI, &cid, Some(KAORUKO)).await,
        svc.get_blob(REI, &cid, None).await,
        svc.get_blob(REI, &cid, Some("did:plc:notenrolled")).await,
        svc.get_blob("did:plc:nobody", &cid, Some(REI)).await,
        missing_answer,
    ] {
        assert_eq!(answer.status, reference.status);
        assert_eq!(answer.body, reference.body);
        assert_eq!(
            answer.header("content-type"),
            reference.header("content-type")
        );
    }

    // Listing follows the same rule.
    for (viewer, expected) in [
        (Some(REI), json!([cid])),
        (Some(SAKURA), json!([cid])),
        (Some(KAORUKO), json!([])),
        (None, json!([])),
    ] {
        let (s, body) = svc.list_blobs(&format!("did={REI}"), viewer).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["cids"], expected, "{viewer:?}");
    }

    // A second record in another boundary also references the blob: deleting the first keeps
    // it readable for viewers of the second only.
    let (s, second) = svc
        .create(REI, post_with("again", &["other"], &[&blob]))
        .await;
    assert_eq!(s, StatusCode::OK, "{second}");
    assert_eq!(
        svc.get_blob(REI, &cid, Some(KAORUKO)).await.status,
        StatusCode::OK
    );
    let (s, body) = svc
        .post(
            "com.atproto.repo.deleteRecord",
            Some(&bearer(REI)),
            json!({ "repo": REI, "collection": POST, "rkey": rkey }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        svc.get_blob(REI, &cid, Some(SAKURA)).await.body,
        reference.body
    );
    assert_eq!(svc.get_blob(REI, &cid, Some(KAORUKO)).await.body, picture);
    let stored = svc.blob_dir().join(REI).join(&cid);
    assert!(stored.is_file(), "still referenced by the second record");

    // Replacing the image of the second record releases the blob: unreadable, bytes deleted.
    let other = svc.upload_ok(REI, "image/jpeg", &jpeg(b"a jpeg")).await;
    let (s, body) = svc
        .post(
            "com.atproto.repo.putRecord",
            Some(&bearer(REI)),
            json!({ "repo": REI, "collection": POST, "rkey": rkey_of(&second),
                    "record": post_with("replaced", &["other"], &[&other]) }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let gone = svc.get_blob(REI, &cid, Some(REI)).await;
    assert_eq!(
        (gone.status, gone.body),
        (reference.status, reference.body.clone())
    );
    assert!(!stored.exists(), "the released blob's bytes are deleted");
    let got = svc.get_blob(REI, &cid_of(&other), Some(KAORUKO)).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.header("content-type"), Some("image/jpeg"));
    let (_, body) = svc.list_blobs(&format!("did={REI}"), Some(REI)).await;
    assert_eq!(body["cids"], json!([cid_of(&other)]));

    // Deleting the last record makes that one unreadable too.
    let (s, _) = svc
        .post(
            "com.atproto.repo.deleteRecord",
            Some(&bearer(REI)),
            json!({ "repo": REI, "collection": POST, "rkey": rkey_of(&second) }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        svc.get_blob(REI, &cid_of(&other), Some(REI)).await.body,
        reference.body
    );
    let (_, body) = svc.list_blobs(&format!("did={REI}"), Some(REI)).await;
    assert_eq!(body, json!({ "cids": [] }));
    svc.stop().await;
}

#[tokio::test]
async fn list_blobs_pages_filters_by_viewer_and_checks_its_parameters() {
    let svc = start().await;
    svc.enroll(REI, &["general", "other"]).await;
    svc.enroll(SAKURA, &["general"]).await;
    svc.enroll(KAORUKO, &["other"]).await;
    let mut blobs = Vec::new();
    for i in 0..7u8 {
        blobs.push(svc.upload_ok(REI, "image/png", &png(&[i; 16])).await);
    }
    // Blobs 0..4 in general posts (two per post), 4..7 in other posts.
    for pair in [&blobs[0..2], &blobs[2..4]] {
        let imgs: Vec<&Value> = pair.iter().collect();
        let (s, b) = svc.create(REI, post_with("g", &["general"], &imgs)).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let latest = svc
        .get(
            &format!("/xrpc/com.atproto.sync.getLatestCommit?did={REI}"),
            None,
        )
        .await
        .json();
    let since = latest["rev"].as_str().unwrap().to_owned();
    for blob in &blobs[4..7] {
        let (s, b) = svc.create(REI, post_with("o", &["other"], &[blob])).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let sorted = |range: std::ops::Range<usize>| {
        let mut v: Vec<String> = blobs[range].iter().map(cid_of).collect();
        v.sort();
        v
    };
    let mut all = sorted(0..7);
    assert_eq!(svc.list_all(REI, Some(REI), 2).await, all);
    assert_eq!(svc.list_all(REI, Some(REI), 1000).await, all);
    assert_eq!(svc.list_all(REI, Some(SAKURA), 3).await, sorted(0..4));
    assert_eq!(svc.list_all(REI, Some(KAORUKO), 2).await, sorted(4..7));
    assert!(svc.list_all(REI, None, 2).await.is_empty());
    // `since`: only blobs of records written after that revision.
    let (s, body) = svc
        .list_blobs(&format!("did={REI}&since={since}"), Some(REI))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["cids"], json!(sorted(4..7)));
    let (_, body) = svc
        .list_blobs(&format!("did={REI}&since={since}"), Some(SAKURA))
        .await;
    assert_eq!(body["cids"], json!([]));
    // The default page holds everything here, without a cursor.
    let (_, body) = svc.list_blobs(&format!("did={REI}"), Some(REI)).await;
    assert_eq!(body, json!({ "cids": all.clone() }));
    // A cursor in the middle continues after it.
    let (_, body) = svc
        .list_blobs(&format!("did={REI}&cursor={}", all[2]), Some(REI))
        .await;
    assert_eq!(body["cids"], json!(all.split_off(3)));

    for bad in [
        format!("did={REI}&limit=0"),
        format!("did={REI}&limit=1001"),
        format!("did={REI}&limit=ten"),
        format!("did={REI}&cursor=notacid"),
        format!("did={REI}&since=notarev"),
        "did=notadid".to_owned(),
        String::new(),
    ] {
        let (s, body) = svc.list_blobs(&bad, Some(REI)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"], "InvalidRequest", "{bad}: {body}");
    }
    let (s, body) = svc.list_blobs("did=did:plc:nobody", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "RepoNotFound");
    svc.stop().await;
}

#[tokio::test]
async fn uploads_and_blob_references_are_refused_when_they_must_be() {
    let svc = start_with(&[("STRATOS_BLOB_MAX_BYTES", "1024")]).await;
    svc.enroll(REI, &["general"]).await;
    svc.enroll(SAKURA, &["general"]).await;

    let (s, body) = svc.upload(None, Some("image/png"), vec![1; 10]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    let (s, body) = svc
        .upload(Some(&bearer(REI)), Some("image/png"), Vec::new())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "InvalidRequest");
    let (s, body) = svc
        .upload(Some(&bearer(REI)), Some("image/png"), vec![7; 1025])
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"], "PayloadTooLarge");
    let (s, body) = svc
        .upload(
            Some(&bearer("did:plc:stranger")),
            Some("image/png"),
            vec![1],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "NotEnrolled");
    let (s, body) = svc
        .upload(Some(&bearer(REI)), Some("not a mime type"), vec![1])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let raw = svc
        .get("/xrpc/com.atproto.repo.uploadBlob", Some(&bearer(REI)))
        .await;
    assert_eq!(raw.status, StatusCode::BAD_REQUEST);
    assert!(
        raw.json()["message"]
            .as_str()
            .unwrap()
            .contains("Incorrect HTTP method")
    );
    // The limit is inclusive; no Content-Type means octet-stream.
    let (s, body) = svc.upload(Some(&bearer(REI)), None, vec![7; 1024]).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["blob"]["mimeType"], "application/octet-stream");
    assert_eq!(body["blob"]["size"], 1024);

    let list_records = || async {
        svc.get(
            &format!("/xrpc/com.atproto.repo.listRecords?repo={REI}&collection={POST}"),
            Some(&bearer(REI)),
        )
        .await
        .json()["records"]
            .as_array()
            .unwrap()
            .len()
    };
    // A blob never uploaded.
    let phantom = json!({
        "$type": "blob",
        "ref": { "$link": stratos_domain::cid::raw(b"phantom").to_string() },
        "mimeType": "image/png",
        "size": 7,
    });
    let (s, body) = svc
        .create(REI, post_with("ghost", &["general"], &[&phantom]))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "BlobNotFound");
    assert!(body["message"].as_str().unwrap().contains("uploadBlob"));
    // Another account's upload is not the author's.
    let sakuras = svc.upload_ok(SAKURA, "image/png", &png(b"sakura's")).await;
    let (s, body) = svc
        .create(REI, post_with("borrowed", &["general"], &[&sakuras]))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "BlobNotFound");
    // A reference that misstates the upload's size or type.
    let mine = svc.upload_ok(REI, "image/png", &png(b"rei's")).await;
    for (field, value, error) in [
        ("size", json!(999), "InvalidRequest"),
        ("mimeType", json!("text/html"), "BlobTypeNotAccepted"),
        ("mimeType", json!("image/jpeg"), "BlobTypeNotAccepted"),
    ] {
        let mut wrong = mine.clone();
        wrong[field] = value;
        let (s, body) = svc
            .create(REI, post_with("lies", &["general"], &[&wrong]))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{field}: {body}");
        assert_eq!(body["error"], error, "{field}: {body}");
    }
    // All or nothing: a batch with one bad reference writes nothing.
    let (s, body) = svc
        .post(
            "com.atproto.repo.applyWrites",
            Some(&bearer(REI)),
            json!({ "repo": REI, "writes": [
                { "$type": "com.atproto.repo.applyWrites#create", "collection": POST,
                  "value": post_with("fine", &["general"], &[&mine]) },
                { "$type": "com.atproto.repo.applyWrites#create", "collection": POST,
                  "value": post_with("ghost", &["general"], &[&phantom]) },
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(list_records().await, 0, "nothing was written");
    let (_, body) = svc.list_blobs(&format!("did={REI}"), Some(REI)).await;
    assert_eq!(body["cids"], json!([]));
    // The upload is still usable afterwards.
    let (s, body) = svc
        .create(REI, post_with("fine", &["general"], &[&mine]))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(list_records().await, 1);
    svc.stop().await;
}

#[tokio::test]
async fn unenrollment_leaves_no_blob_behind() {
    let svc = start().await;
    svc.enroll(REI, &["general"]).await;
    svc.enroll(SAKURA, &["general"]).await;
    let used = svc.upload_ok(REI, "image/png", &png(b"used")).await;
    let _unused = svc.upload_ok(REI, "image/png", &png(b"unused")).await;
    let sakuras = svc.upload_ok(SAKURA, "image/png", &png(b"sakura's")).await;
    let (s, body) = svc
        .create(REI, post_with("bye", &["general"], &[&used]))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = svc
        .create(SAKURA, post_with("stay", &["general"], &[&sakuras]))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let rei_files = |svc: &Svc| {
        files_under(&svc.blob_dir())
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(REI))
            .count()
    };
    assert_eq!(rei_files(&svc), 2, "one permanent blob and one upload");
    let (s, body) = svc
        .post(
            "zone.stratos.enrollment.unenroll",
            Some(&bearer(REI)),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(rei_files(&svc), 0, "no blob of the account is left");
    assert_eq!(
        svc.get_blob(SAKURA, &cid_of(&sakuras), Some(SAKURA))
            .await
            .status,
        StatusCode::OK,
        "other accounts keep theirs"
    );
    // Re-enrolled, the account starts without blobs.
    svc.enroll(REI, &["general"]).await;
    assert_eq!(
        svc.get_blob(REI, &cid_of(&used), Some(REI)).await.json()["error"],
        "BlobNotFound"
    );
    let (s, body) = svc
        .create(REI, post_with("back", &["general"], &[&used]))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "BlobNotFound");
    svc.stop().await;
}

/// A page that runs a script when a browser renders it as HTML.
const HTML: &str =
    "<!DOCTYPE html><html><body><script>alert(document.domain)</script></body></html>";

#[tokio::test]
async fn html_is_never_accepted_as_an_image() {
    let svc = start().await;
    svc.enroll(REI, &["general"]).await;
    svc.enroll(SAKURA, &["general"]).await;
    for declared in ["image/png", "text/html"] {
        let bytes = format!("{HTML}<!-- {declared} -->").into_bytes();
        let blob = svc.upload_ok(REI, declared, &bytes).await;
        assert_eq!(
            blob["mimeType"], "text/html",
            "stored as what the bytes are"
        );
        // As the upload answered, and with the declared type copied into the reference.
        for claim in ["text/html", "image/png"] {
            let mut reference = blob.clone();
            reference["mimeType"] = json!(claim);
            let (s, body) = svc
                .create(REI, post_with("look", &["general"], &[&reference]))
                .await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{declared} as {claim}: {body}");
            assert_eq!(body["error"], "BlobTypeNotAccepted", "{body}");
            assert!(
                body["message"].as_str().unwrap().contains("image/*")
                    || body["message"].as_str().unwrap().contains("text/html"),
                "{body}"
            );
        }
        // Never made permanent, so never served.
        let got = svc.get_blob(REI, &cid_of(&blob), Some(REI)).await;
        assert_eq!(got.json()["error"], "BlobNotFound");
    }

    // A real PNG is accepted and served as one, sandboxed like every blob.
    let blob = svc.upload_ok(REI, "image/png", TINY_PNG).await;
    assert_eq!(blob["mimeType"], "image/png");
    let (s, body) = svc
        .create(REI, post_with("a real one", &["general"], &[&blob]))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let got = svc.get_blob(REI, &cid_of(&blob), Some(SAKURA)).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, TINY_PNG);
    assert_eq!(got.header("content-type"), Some("image/png"));
    assert_eq!(got.header("content-disposition"), None);
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        got.header("content-security-policy"),
        Some("default-src 'none'; sandbox")
    );
    let records = svc
        .get(
            &format!("/xrpc/com.atproto.repo.listRecords?repo={REI}&collection={POST}"),
            Some(&bearer(REI)),
        )
        .await
        .json();
    assert_eq!(records["records"].as_array().unwrap().len(), 1, "{records}");

    // A collection without a lexicon puts no `accept` list on its blobs; HTML stored there is
    // served as a download, never rendered.
    let page = svc.upload_ok(REI, "text/html", HTML.as_bytes()).await;
    let (s, body) = svc
        .post(
            "com.atproto.repo.createRecord",
            Some(&bearer(REI)),
            json!({ "repo": REI, "collection": "zone.stratos.test.attachment", "record": {
                "$type": "zone.stratos.test.attachment",
                "file": page,
                "createdAt": "2026-11-25T09:00:00.000Z",
            }}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let got = svc.get_blob(REI, &cid_of(&page), Some(REI)).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.header("content-type"), Some("text/html"));
    assert_eq!(got.header("content-disposition"), Some("attachment"));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        got.header("content-security-policy"),
        Some("default-src 'none'; sandbox")
    );
    svc.stop().await;
}
