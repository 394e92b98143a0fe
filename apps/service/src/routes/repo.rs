//! `com.atproto.repo.*`: writes (owner only, through the record use cases) and boundary-filtered
//! reads.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use stratos_domain::Cid;
use stratos_domain::repo::Action;
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_ports::usecases::records::{CommitResult, Swaps, WriteOp};
use stratos_ports::xrpc::reads;

use super::{RECORD_COLLECTIONS, parse_did, port, query};
use crate::auth::{optional_caller, require_caller, view};
use crate::body::read_json;
use crate::error::ApiError;
use crate::state::AppState;

type State = web::Data<AppState>;

fn commit_json(c: &CommitResult) -> Value {
    json!({ "cid": c.commit.to_string(), "rev": c.rev })
}

fn parse_cid(s: &str, field: &str) -> Result<Cid, ApiError> {
    s.parse::<Cid>()
        .map_err(|_| ApiError::invalid(format!("`{field}` is not a CID")))
}

/// The answers for a bad collection or record key are the domain's (one mapping, in
/// `stratos_ports::xrpc`).
fn nsid(s: &str) -> Result<Nsid, ApiError> {
    Ok(Nsid::parse(s)?)
}

fn rkey(s: &str) -> Result<RecordKey, ApiError> {
    Ok(RecordKey::parse(s)?)
}

fn swap_commit(s: Option<&str>) -> Result<Option<Cid>, ApiError> {
    s.map(|c| parse_cid(c, "swapCommit")).transpose()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateInput {
    repo: String,
    collection: String,
    rkey: Option<String>,
    record: Value,
    swap_commit: Option<String>,
}

pub(super) async fn create_record(
    req: HttpRequest,
    body: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let caller = require_caller(&req, &state).await?;
    let input: CreateInput = read_json(&req, body, state.config.limits.max_body_bytes).await?;
    let repo = parse_did(&input.repo, "repo")?;
    let swaps = Swaps {
        commit: swap_commit(input.swap_commit.as_deref())?,
        records: Vec::new(),
    };
    let op = WriteOp::Create {
        collection: nsid(&input.collection)?,
        rkey: input.rkey.as_deref().map(rkey).transpose()?,
        value: input.record,
    };
    let out = state
        .stratos
        .records()
        .apply_writes_with(&caller, &repo, vec![op], &swaps)
        .await?;
    let first = out
        .results
        .first()
        .ok_or_else(|| ApiError::invalid("nothing was written"))?;
    Ok(HttpResponse::Ok().json(json!({
        "uri": first.uri,
        "cid": first.cid.map(|c| c.to_string()),
        "commit": commit_json(&out),
        "validationStatus": "valid",
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutInput {
    repo: String,
    collection: String,
    rkey: String,
    record: Value,
    swap_commit: Option<String>,
    /// `null` means "must not exist", absent means "no precondition".
    #[serde(default, deserialize_with = "present")]
    swap_record: Option<Option<String>>,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn record_swaps(
    commit: Option<&str>,
    collection: &Nsid,
    rkey: &RecordKey,
    record: Option<Option<&str>>,
) -> Result<Swaps, ApiError> {
    let mut swaps = Swaps {
        commit: swap_commit(commit)?,
        records: Vec::new(),
    };
    if let Some(expected) = record {
        let expected = expected.map(|c| parse_cid(c, "swapRecord")).transpose()?;
        swaps
            .records
            .push((collection.clone(), rkey.clone(), expected));
    }
    Ok(swaps)
}

pub(super) async fn put_record(
    req: HttpRequest,
    body: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let caller = require_caller(&req, &state).await?;
    let input: PutInput = read_json(&req, body, state.config.limits.max_body_bytes).await?;
    let repo = parse_did(&input.repo, "repo")?;
    let (collection, rkey) = (nsid(&input.collection)?, rkey(&input.rkey)?);
    let swaps = record_swaps(
        input.swap_commit.as_deref(),
        &collection,
        &rkey,
        input.swap_record.as_ref().map(Option::as_deref),
    )?;
    let out = state
        .stratos
        .records()
        .put_record_with(&caller, &repo, &collection, &rkey, input.record, &swaps)
        .await?;
    let first = out
        .results
        .first()
        .ok_or_else(|| ApiError::invalid("nothing was written"))?;
    Ok(HttpResponse::Ok().json(json!({
        "uri": first.uri,
        "cid": first.cid.map(|c| c.to_string()),
        "commit": commit_json(&out),
        "validationStatus": "valid",
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteInput {
    repo: String,
    collection: String,
    rkey: String,
    swap_commit: Option<String>,
    #[serde(default, deserialize_with = "present")]
    swap_record: Option<Option<String>>,
}

pub(super) async fn delete_record(
    req: HttpRequest,
    body: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let caller = require_caller(&req, &state).await?;
    let input: DeleteInput = read_json(&req, body, state.config.limits.max_body_bytes).await?;
    let repo = parse_did(&input.repo, "repo")?;
    let (collection, rkey) = (nsid(&input.collection)?, rkey(&input.rkey)?);
    let swaps = record_swaps(
        input.swap_commit.as_deref(),
        &collection,
        &rkey,
        input.swap_record.as_ref().map(Option::as_deref),
    )?;
    let out = if swaps == Swaps::default() {
        state
            .stratos
            .records()
            .delete_record(&caller, &repo, &collection, &rkey)
            .await?
    } else {
        let op = WriteOp::Delete { collection, rkey };
        Some(
            state
                .stratos
                .records()
                .apply_writes_with(&caller, &repo, vec![op], &swaps)
                .await?,
        )
    };
    Ok(HttpResponse::Ok().json(match out {
        Some(c) => json!({ "commit": commit_json(&c) }),
        None => json!({}),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplyInput {
    repo: String,
    writes: Vec<Value>,
    swap_commit: Option<String>,
}

const WRITE_PREFIX: &str = "com.atproto.repo.applyWrites#";

fn parse_write(w: Value) -> Result<WriteOp, ApiError> {
    let field = |name: &str| -> Result<String, ApiError> {
        w.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::invalid(format!("a write needs a string `{name}`")))
    };
    let kind = field("$type")?;
    let collection = nsid(&field("collection")?)?;
    match kind.strip_prefix(WRITE_PREFIX) {
        Some("create") => Ok(WriteOp::Create {
            collection,
            rkey: w
                .get("rkey")
                .and_then(Value::as_str)
                .map(rkey)
                .transpose()?,
            value: w
                .get("value")
                .cloned()
                .ok_or_else(|| ApiError::invalid("a create needs a `value`"))?,
        }),
        Some("update") => Ok(WriteOp::Update {
            collection,
            rkey: rkey(&field("rkey")?)?,
            value: w
                .get("value")
                .cloned()
                .ok_or_else(|| ApiError::invalid("an update needs a `value`"))?,
        }),
        Some("delete") => Ok(WriteOp::Delete {
            collection,
            rkey: rkey(&field("rkey")?)?,
        }),
        _ => Err(ApiError::invalid(format!("unknown write type {kind}"))),
    }
}

pub(super) async fn apply_writes(
    req: HttpRequest,
    body: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let caller = require_caller(&req, &state).await?;
    let input: ApplyInput = read_json(&req, body, state.config.limits.max_body_bytes).await?;
    let repo = parse_did(&input.repo, "repo")?;
    let ops = input
        .writes
        .into_iter()
        .map(parse_write)
        .collect::<Result<Vec<_>, _>>()?;
    let swaps = Swaps {
        commit: swap_commit(input.swap_commit.as_deref())?,
        records: Vec::new(),
    };
    let out = state
        .stratos
        .records()
        .apply_writes_with(&caller, &repo, ops, &swaps)
        .await?;
    let results: Vec<Value> = out
        .results
        .iter()
        .map(|r| match r.action {
            Action::Create => json!({
                "$type": "com.atproto.repo.applyWrites#createResult",
                "uri": r.uri, "cid": r.cid.map(|c| c.to_string()), "validationStatus": "valid",
            }),
            Action::Update => json!({
                "$type": "com.atproto.repo.applyWrites#updateResult",
                "uri": r.uri, "cid": r.cid.map(|c| c.to_string()), "validationStatus": "valid",
            }),
            Action::Delete => json!({ "$type": "com.atproto.repo.applyWrites#deleteResult" }),
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "commit": commit_json(&out), "results": results })))
}

/// The library's handler (`stratos_ports::xrpc::reads`), which embedders mount too.
pub(super) async fn get_record(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let body = reads::get_record(&state.stratos, &view(&req)).await?;
    Ok(HttpResponse::Ok().json(body))
}

/// The library's handler (`stratos_ports::xrpc::reads`), which embedders mount too.
pub(super) async fn list_records(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let body = reads::list_records(&state.stratos, &view(&req)).await?;
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Deserialize)]
struct DescribeParams {
    repo: String,
}

pub(super) async fn describe_repo(
    req: HttpRequest,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let p: DescribeParams = query(&req)?;
    let repo: Did = parse_did(&p.repo, "repo")?;
    if !state
        .stratos
        .storage()
        .repos()
        .actor_exists(&repo)
        .await
        .map_err(port)?
    {
        return Err(ApiError::repo_not_found(repo.as_str()));
    }
    // A collection is listed only when the caller may read at least one of its records (the
    // same read decision as listRecords): listing every non-empty collection told anonymous
    // callers that an account holds private posts.
    let viewer = optional_caller(&req, &state).await?;
    let mut collections = Vec::new();
    for collection in RECORD_COLLECTIONS {
        let page = state
            .stratos
            .records()
            .list_records(viewer.as_ref(), &repo, &nsid(collection)?, 1, None, false)
            .await?;
        if !page.records.is_empty() {
            collections.push(*collection);
        }
    }
    // Handles need identity resolution, which the service does not do yet: the DID stands in,
    // and `handleIsCorrect` says so.
    Ok(HttpResponse::Ok().json(json!({
        "handle": repo.as_str(),
        "did": repo.as_str(),
        "didDoc": {},
        "collections": collections,
        "handleIsCorrect": false,
    })))
}
