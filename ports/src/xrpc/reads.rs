//! Framework-free XRPC record reads: `com.atproto.repo.getRecord`,
//! `com.atproto.repo.listRecords`, `zone.stratos.repo.hydrateRecord` and
//! `zone.stratos.repo.hydrateRecords`, with the library's authentication.
//!
//! Each handler takes the [`Stratos`] instance and a [`RequestView`] (query string and
//! headers; the body for the one procedure) and returns the JSON body or an [`XrpcError`]. The
//! Stratos service's actix routes call these same functions; [`serve`] dispatches by path for
//! an app that mounts the reads under its own `/xrpc/`.
//!
//! Authentication is optional on reads: a refused credential reads as anonymous, except the
//! DPoP nonce handshake, which is answered (see
//! [`Authenticator::optional_caller`](crate::auth::Authenticator::optional_caller)). A record the
//! viewer may not read is answered exactly like a missing one.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use stratos_domain::syntax::Did;
//! use stratos_ports::auth::RequestView;
//! use stratos_ports::xrpc::reads;
//!
//! let stratos = stratos_testkit::memory::stratos(Did::parse("did:web:stratos.example")?)
//!     .boundaries(["general"])
//!     .build()
//!     .await?;
//! let req = RequestView::new(
//!     "GET",
//!     "/xrpc/com.atproto.repo.getRecord?repo=did:plc:rei&collection=zone.stratos.feed.post&rkey=x",
//! );
//! let res = reads::serve(&stratos, &req, b"").await.ok_or("not a read")?;
//! assert_eq!((res.status, &res.body["error"]), (400, &"RecordNotFound".into()));
//! # Ok(())
//! # }
//! ```

use serde::Deserialize;
use serde_json::{Value, json};
use stratos_domain::Cid;
use stratos_domain::syntax::Did;

use super::{
    XrpcError, XrpcResponse, into_record_json, parse_at_uri, parse_bool, parse_did,
    parse_json_body, parse_limit, parse_nsid, parse_query, parse_rkey, query_params, record_json,
    required,
};
use crate::Stratos;
use crate::auth::{DPOP_NONCE_HEADER, RequestView};
use crate::usecases::records::MAX_HYDRATE;

/// `com.atproto.repo.getRecord` (GET).
pub const GET_RECORD: &str = "com.atproto.repo.getRecord";
/// `com.atproto.repo.listRecords` (GET).
pub const LIST_RECORDS: &str = "com.atproto.repo.listRecords";
/// `zone.stratos.repo.hydrateRecord` (GET).
pub const HYDRATE_RECORD: &str = "zone.stratos.repo.hydrateRecord";
/// `zone.stratos.repo.hydrateRecords` (POST, JSON body `{"uris": [...]}`).
pub const HYDRATE_RECORDS: &str = "zone.stratos.repo.hydrateRecords";

/// The reads [`serve`] answers, with their HTTP methods.
pub const READS: &[(&str, &str)] = &[
    (GET_RECORD, "GET"),
    (LIST_RECORDS, "GET"),
    (HYDRATE_RECORD, "GET"),
    (HYDRATE_RECORDS, "POST"),
];

/// The `limit` of listRecords when none is given.
pub const DEFAULT_LIST_LIMIT: usize = 50;
/// The largest `limit` of listRecords.
pub const MAX_LIST_LIMIT: usize = 100;

/// Answers `req` when its path is `…/xrpc/{nsid}` for one of the [`READS`]; `None` for any
/// other path, which the app answers itself. A wrong HTTP method is 400 `InvalidRequest`, as
/// XRPC wants. `body` is the request body, read by the app under its own size limit (only
/// hydrateRecords reads it). A request with a DPoP proof gets the current nonce in
/// `DPoP-Nonce`.
pub async fn serve(stratos: &Stratos, req: &RequestView, body: &[u8]) -> Option<XrpcResponse> {
    let path = req.path();
    let nsid = &path[path.rfind("/xrpc/")? + "/xrpc/".len()..];
    let &(nsid, method) = READS.iter().find(|(n, _)| *n == nsid)?;
    let result = if req.method() != method {
        Err(XrpcError::wrong_method(req.method(), method))
    } else {
        match nsid {
            GET_RECORD => get_record(stratos, req).await,
            LIST_RECORDS => list_records(stratos, req).await,
            HYDRATE_RECORD => hydrate_record(stratos, req).await,
            _ => hydrate_records(stratos, req, body).await,
        }
    };
    let mut res = XrpcResponse::from(result);
    if res.header(DPOP_NONCE_HEADER).is_none()
        && let Some(nonce) = stratos.auth().response_nonce(req)
    {
        res.headers.push((DPOP_NONCE_HEADER, nonce));
    }
    Some(res)
}

/// The viewer of a read: the authenticated account, or `None` (anonymous).
async fn viewer(stratos: &Stratos, req: &RequestView) -> Result<Option<Did>, XrpcError> {
    Ok(stratos.auth().optional_caller(req).await?)
}

/// `com.atproto.repo.getRecord?repo&collection&rkey[&cid]`: `{"uri", "cid", "value"}`, or 400
/// `RecordNotFound` for a record that is missing or that the viewer may not read.
pub async fn get_record(stratos: &Stratos, req: &RequestView) -> Result<Value, XrpcError> {
    let [repo, collection, rkey, cid] =
        query_params(req.query(), ["repo", "collection", "rkey", "cid"])?;
    let repo = parse_did(&required(repo, "repo")?, "repo")?;
    let cid = cid
        .as_deref()
        .map(|c| {
            c.parse::<Cid>()
                .map_err(|_| XrpcError::invalid("`cid` is not a CID"))
        })
        .transpose()?;
    let collection = parse_nsid(&required(collection, "collection")?, "collection")?;
    let rkey = parse_rkey(&required(rkey, "rkey")?, "rkey")?;
    let viewer = viewer(stratos, req).await?;
    let found = stratos
        .records()
        .get_record(viewer.as_ref(), &repo, &collection, &rkey, cid.as_ref())
        .await?;
    found
        .map(into_record_json)
        .ok_or_else(XrpcError::record_not_found)
}

#[derive(Deserialize)]
struct ListParams {
    repo: String,
    collection: String,
    limit: Option<String>,
    cursor: Option<String>,
    reverse: Option<String>,
}

/// `com.atproto.repo.listRecords?repo&collection[&limit][&cursor][&reverse]`: the records the
/// viewer may read, `{"records": [...], "cursor"?}`.
pub async fn list_records(stratos: &Stratos, req: &RequestView) -> Result<Value, XrpcError> {
    let p: ListParams = parse_query(req.query())?;
    let repo = parse_did(&p.repo, "repo")?;
    let limit = parse_limit(p.limit.as_deref(), DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)?;
    let reverse = match p.reverse.as_deref() {
        None => false,
        Some(s) => parse_bool(s, "reverse")?,
    };
    let collection = parse_nsid(&p.collection, "collection")?;
    // Cursors are the last record key of a page; anything else is a client error, checked
    // before the repository is looked at so every DID answers alike.
    let cursor = p
        .cursor
        .as_deref()
        .map(|c| parse_rkey(c, "cursor"))
        .transpose()?;
    let viewer = viewer(stratos, req).await?;
    let page = stratos
        .records()
        .list_records(viewer.as_ref(), &repo, &collection, limit, cursor, reverse)
        .await?;
    let mut out = json!({ "records": page.records.iter().map(record_json).collect::<Vec<_>>() });
    if let Some(c) = page.cursor {
        out["cursor"] = Value::String(c.into());
    }
    Ok(out)
}

#[derive(Deserialize)]
struct UriParam {
    uri: String,
}

/// `zone.stratos.repo.hydrateRecord?uri`: one record by AT-URI, or 400 `RecordNotFound`.
pub async fn hydrate_record(stratos: &Stratos, req: &RequestView) -> Result<Value, XrpcError> {
    let p: UriParam = parse_query(req.query())?;
    let uri = parse_at_uri(&p.uri)?;
    let viewer = viewer(stratos, req).await?;
    let out = stratos
        .records()
        .hydrate(viewer.as_ref(), std::slice::from_ref(&uri))
        .await?;
    out.records
        .first()
        .map(record_json)
        .ok_or_else(XrpcError::record_not_found)
}

/// The body of hydrateRecords.
#[derive(Debug, Deserialize)]
pub struct HydrateInput {
    /// AT-URIs of the records wanted (at most [`MAX_HYDRATE`]).
    pub uris: Vec<String>,
}

/// `zone.stratos.repo.hydrateRecords` with body `{"uris": [...]}`: see [`hydrate_for`].
pub async fn hydrate_records(
    stratos: &Stratos,
    req: &RequestView,
    body: &[u8],
) -> Result<Value, XrpcError> {
    let viewer = viewer(stratos, req).await?;
    let input: HydrateInput = parse_json_body(body)?;
    hydrate_for(stratos, viewer.as_ref(), &input.uris).await
}

/// hydrateRecords for a known viewer (an app that authenticated and read the body itself):
/// `{"records": [...], "notFound": [...], "blocked": []}`. Denied and missing records are both
/// `notFound`, so existence never leaks; `blocked` is kept for the lexicon's shape.
pub async fn hydrate_for(
    stratos: &Stratos,
    viewer: Option<&Did>,
    uris: &[String],
) -> Result<Value, XrpcError> {
    if uris.len() > MAX_HYDRATE {
        return Err(XrpcError::invalid(format!(
            "at most {MAX_HYDRATE} URIs per request"
        )));
    }
    let uris = uris
        .iter()
        .map(|u| parse_at_uri(u))
        .collect::<Result<Vec<_>, _>>()?;
    let out = stratos.records().hydrate(viewer, &uris).await?;
    Ok(json!({
        "records": out.records.iter().map(record_json).collect::<Vec<_>>(),
        "notFound": out.not_found,
        "blocked": [],
    }))
}
