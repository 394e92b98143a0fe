//! Blobs: `com.atproto.repo.uploadBlob` (enrolled accounts), `com.atproto.sync.getBlob` and
//! `com.atproto.sync.listBlobs` (boundary-filtered, authentication optional).

use actix_web::body::SizedStream;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use stratos_domain::{Cid, mime};
use stratos_ports::usecases::blobs::{BlobChunks, DEFAULT_LIST_BLOBS, DEFAULT_MIME_TYPE};

use super::{parse_did, query};
use crate::auth::{optional_caller, require_caller};
use crate::body::read_limited;
use crate::error::ApiError;
use crate::state::AppState;

type State = web::Data<AppState>;

/// A download is never rendered as a page of this origin: with `nosniff` the browser keeps the
/// stored type (which uploads take from the bytes), and the sandboxing policy denies scripts,
/// plugins and same-origin access even to HTML or SVG someone uploaded.
const BLOB_CSP: &str = "default-src 'none'; sandbox";

/// Stores the raw body as an upload of the caller (an enrolled account) and returns the blob
/// reference a record can embed.
pub(super) async fn upload_blob(
    req: HttpRequest,
    body: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let caller = require_caller(&req, &state).await?;
    let mime_type = match req.headers().get(CONTENT_TYPE) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::invalid("Content-Type is not readable text"))?,
        ),
    };
    let bytes = read_limited(&req, body, state.config.limits.blob_max_bytes).await?;
    let blob = state
        .stratos
        .records()
        .upload_blob(&caller, mime_type, bytes.to_vec())
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "blob": {
            "$type": "blob",
            "ref": { "$link": blob.cid.to_string() },
            "mimeType": blob.mime_type,
            "size": blob.size,
        }
    })))
}

#[derive(Deserialize)]
struct GetParams {
    did: String,
    cid: String,
}

fn parse_cid(s: &str, field: &str) -> Result<Cid, ApiError> {
    stratos_domain::cid::parse(s).map_err(|_| ApiError::invalid(format!("`{field}` is not a CID")))
}

/// The bytes of a blob the viewer may read; a blob the viewer may not read gets exactly the
/// answer of a missing one.
pub(super) async fn get_blob(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let p: GetParams = query(&req)?;
    let did = parse_did(&p.did, "did")?;
    let cid = parse_cid(&p.cid, "cid")?;
    let viewer = optional_caller(&req, &state).await?;
    let Some(download) = state
        .stratos
        .records()
        .get_blob(viewer.as_ref(), &did, &cid)
        .await?
    else {
        return Err(ApiError::blob_not_found());
    };
    // Validated at upload; the fallback only guards data written some other way.
    let content_type = HeaderValue::from_str(&download.mime_type)
        .unwrap_or_else(|_| HeaderValue::from_static(DEFAULT_MIME_TYPE));
    let mut res = HttpResponse::Ok();
    res.insert_header((CONTENT_TYPE, content_type))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("content-security-policy", BLOB_CSP))
        // Readable only by some viewers: shared caches must not keep it.
        .insert_header((CACHE_CONTROL, "private"));
    if mime::is_active_content(&download.mime_type) {
        // Markup or script (only a record field without an `accept` list can hold it): a
        // browser saves it instead of rendering it, even sandboxed.
        res.insert_header((CONTENT_DISPOSITION, "attachment"));
    }
    Ok(res.body(SizedStream::new(download.size, chunks(download.chunks))))
}

/// The blob's chunks as a body stream; a read failure ends the stream with that error (the
/// client sees a truncated body, never a short one passed off as complete).
fn chunks(
    chunks: BlobChunks,
) -> impl futures_util::Stream<Item = Result<Bytes, stratos_ports::usecases::UseCaseError>> {
    futures_util::stream::unfold(Some(chunks), |state| async move {
        let mut chunks = state?;
        match chunks.next().await {
            Ok(Some(bytes)) => Some((Ok(Bytes::from(bytes)), Some(chunks))),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "blob download failed mid-stream");
                Some((Err(e), None))
            }
        }
    })
}

#[derive(Deserialize)]
struct ListParams {
    did: String,
    limit: Option<String>,
    cursor: Option<String>,
    since: Option<String>,
}

/// CIDs of the blobs referenced by records the viewer may read (all of them for the owner).
pub(super) async fn list_blobs(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let p: ListParams = query(&req)?;
    let did = parse_did(&p.did, "did")?;
    let limit = match p.limit.as_deref() {
        None => DEFAULT_LIST_BLOBS,
        Some(s) => s
            .parse::<usize>()
            .map_err(|_| ApiError::invalid("`limit` must be an integer between 1 and 1000"))?,
    };
    let viewer = optional_caller(&req, &state).await?;
    let Some(page) = state
        .stratos
        .records()
        .list_blobs(
            viewer.as_ref(),
            &did,
            limit,
            p.cursor.as_deref(),
            p.since.as_deref(),
        )
        .await?
    else {
        return Err(ApiError::repo_not_found(did.as_str()));
    };
    let cids: Vec<String> = page.cids.iter().map(ToString::to_string).collect();
    let mut out = json!({ "cids": cids });
    if let Some(cursor) = page.cursor {
        out["cursor"] = json!(cursor);
    }
    Ok(HttpResponse::Ok().json(out))
}
