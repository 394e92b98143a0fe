//! Boundary-filtered record reads ([`Reads`]): one record, a page of a collection, hydration of
//! many URIs. Every answer passes `can_read`; a denial is reported exactly like absence.

use stratos_domain::Cid;
use stratos_domain::boundary::{ReadFilter, Viewer, can_read, read_filter};
use stratos_domain::data;
use stratos_domain::syntax::{AtUri, Did, Nsid, RecordKey};

use serde_json::Value;

use super::UseCaseError;
use super::account::{AccountContext, as_viewer};
use crate::repo_store::ListQuery;

/// A record a viewer may read.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordView {
    /// The record URI.
    pub uri: AtUri,
    /// The record CID.
    pub cid: Cid,
    /// The record as atproto JSON.
    pub value: Value,
}

/// A page of records.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordPage {
    /// The records.
    pub records: Vec<RecordView>,
    /// The cursor for the next page (the page's last record key), when the page was full.
    pub cursor: Option<RecordKey>,
}

/// Most URIs one hydration request may name.
pub const MAX_HYDRATE: usize = 100;

/// The result of a hydration request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hydrated {
    /// Records the viewer may read, in request order.
    pub records: Vec<RecordView>,
    /// URIs that are missing or that the viewer may not read.
    pub not_found: Vec<AtUri>,
}

/// The read use cases over the shared per-account context (reached through
/// [`Records::reads`](super::records::Records::reads)).
#[derive(Debug, Clone, Copy)]
pub struct Reads<'a> {
    ctx: &'a AccountContext,
}

impl<'a> Reads<'a> {
    pub(super) fn new(ctx: &'a AccountContext) -> Self {
        Self { ctx }
    }

    /// One record, if the viewer may read it. A denial is reported exactly like a missing
    /// record.
    pub async fn get_record(
        &self,
        viewer: Option<&Did>,
        owner: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
        expected_cid: Option<&Cid>,
    ) -> Result<Option<RecordView>, UseCaseError> {
        let held = self.ctx.viewer_boundaries(viewer).await?;
        self.read_one(
            as_viewer(viewer, &held),
            owner,
            collection,
            rkey,
            expected_cid,
        )
        .await
    }

    async fn read_one(
        &self,
        viewer: Viewer<'_>,
        owner: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
        expected_cid: Option<&Cid>,
    ) -> Result<Option<RecordView>, UseCaseError> {
        if !self.ctx.deps.repos.actor_exists(owner).await? {
            return Ok(None);
        }
        let Some(record) = self
            .ctx
            .deps
            .repos
            .get_record(owner, collection, rkey)
            .await?
        else {
            return Ok(None);
        };
        if expected_cid.is_some_and(|c| *c != record.cid) {
            return Ok(None);
        }
        if !can_read(viewer, owner.as_str(), &record.boundaries) {
            return Ok(None);
        }
        Ok(Some(view(
            owner,
            &record.collection,
            &record.rkey,
            record.cid,
            &record.bytes,
        )?))
    }

    /// A page of one collection, filtered by the viewer's boundaries inside the store so pages
    /// come back full.
    pub async fn list_records(
        &self,
        viewer: Option<&Did>,
        owner: &Did,
        collection: &Nsid,
        limit: usize,
        cursor: Option<RecordKey>,
        reverse: bool,
    ) -> Result<RecordPage, UseCaseError> {
        let limit = limit.clamp(1, 100);
        let empty = RecordPage {
            records: Vec::new(),
            cursor: None,
        };
        if !self.ctx.deps.repos.actor_exists(owner).await? {
            return Ok(empty);
        }
        let held = self.ctx.viewer_boundaries(viewer).await?;
        let v = as_viewer(viewer, &held);
        let filter = read_filter(v, owner.as_str());
        if filter == ReadFilter::Nothing {
            return Ok(empty);
        }
        let query = ListQuery {
            collection: collection.clone(),
            limit,
            cursor,
            reverse,
            filter,
        };
        let rows = self.ctx.deps.repos.list_records(owner, &query).await?;
        let full = rows.len() == limit;
        let cursor = if full {
            rows.last().map(|r| r.rkey.clone())
        } else {
            None
        };
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            // The store applied the filter; the decision itself is still `can_read`'s.
            if can_read(v, owner.as_str(), &row.boundaries) {
                records.push(view(
                    owner,
                    &row.collection,
                    &row.rkey,
                    row.cid,
                    &row.bytes,
                )?);
            }
        }
        Ok(RecordPage { records, cursor })
    }

    /// Hydrates up to 100 record URIs for a viewer. Records the viewer may not read are listed
    /// with the missing ones in `not_found`: a denial never differs from absence.
    pub async fn hydrate(
        &self,
        viewer: Option<&Did>,
        uris: &[AtUri],
    ) -> Result<Hydrated, UseCaseError> {
        if uris.len() > MAX_HYDRATE {
            return Err(UseCaseError::InvalidRequest(format!(
                "at most {MAX_HYDRATE} URIs per request"
            )));
        }
        let held = self.ctx.viewer_boundaries(viewer).await?;
        let v = as_viewer(viewer, &held);
        let mut out = Hydrated::default();
        for uri in uris {
            let (Ok(owner), Some(collection), Some(rkey)) = (
                Did::parse(uri.authority().as_str()),
                uri.collection(),
                uri.rkey(),
            ) else {
                return Err(UseCaseError::InvalidRequest(format!(
                    "{uri} is not a record URI with a DID authority"
                )));
            };
            match self.read_one(v, &owner, collection, rkey, None).await? {
                Some(view) => out.records.push(view),
                None => out.not_found.push(uri.clone()),
            }
        }
        Ok(out)
    }
}

fn view(
    owner: &Did,
    collection: &Nsid,
    rkey: &RecordKey,
    cid: Cid,
    bytes: &[u8],
) -> Result<RecordView, UseCaseError> {
    let value = data::ipld_to_json(&data::decode(bytes)?)?;
    Ok(RecordView {
        uri: AtUri::for_record(owner, collection, rkey),
        cid,
        value,
    })
}
