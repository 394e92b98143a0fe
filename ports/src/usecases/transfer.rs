//! Repository transfer ([`Transfer`]): the whole repository out as a CAR
//! (`com.atproto.sync.getRepo`), and a CAR's records in (`com.atproto.repo.importRepo`) through
//! the same write rules, blob checks and commit path as any write.

use std::collections::BTreeSet;

use stratos_domain::repo::RecordWrite;
use stratos_domain::repo::RepoHead;
use stratos_domain::syntax::{Datetime, Did};
use stratos_domain::{car, cid, data, import, mst, tid};

use super::UseCaseError;
use super::account::AccountContext;
use super::blobs;
use super::writes::{self, Prepared, WriteOp, Writes};

/// The transfer use cases over the shared per-account context (reached through
/// [`Records::transfer`](super::records::Records::transfer)).
#[derive(Debug, Clone, Copy)]
pub struct Transfer<'a> {
    ctx: &'a AccountContext,
}

impl<'a> Transfer<'a> {
    pub(super) fn new(ctx: &'a AccountContext) -> Self {
        Self { ctx }
    }

    /// The whole repository as a CAR v1 (commit first). Only the owner may export: the CAR holds
    /// every private record in clear.
    pub async fn export_repo(&self, requester: &Did, did: &Did) -> Result<Vec<u8>, UseCaseError> {
        if requester != did {
            return Err(UseCaseError::Forbidden(format!(
                "only the repository's owner may export it: {requester} is not {did}"
            )));
        }
        self.export_repo_for_sync(did).await
    }

    /// The whole repository as a CAR v1, for a trusted sync consumer (the service's sync token
    /// or an allowed AppView): the party that already receives every account's unfiltered
    /// stream, and backfills an account from its export. The caller decides that trust.
    pub async fn export_repo_for_sync(&self, did: &Did) -> Result<Vec<u8>, UseCaseError> {
        let head = self.ctx.require_head(did).await?;
        let blocks = self.ctx.deps.repos.all_blocks(did).await?;
        Ok(car::write_repo(&blocks, &head.commit, Vec::new())?)
    }

    /// Imports the records of a repository CAR into the caller's repository, which must hold no
    /// records yet. Every record goes through the same write rules as a normal write and lands
    /// in one commit signed with the caller's key. Returns the number of records imported.
    ///
    /// The CAR is untrusted: it is read with [`import::read_repo_car`] (every structural rule
    /// checked, work and memory linear in its size). An import is charged to the caller's
    /// write rate limit as a tenth of the window's allowance, whatever its outcome, so one
    /// account cannot make the service parse large CARs back to back. The work is CPU-bound
    /// and proportional to the CAR: callers serving requests run it off their request workers.
    pub async fn import_repo(&self, author: &Did, car_bytes: &[u8]) -> Result<usize, UseCaseError> {
        let enrollment = self.ctx.enrollment(author).await?;
        let cost = (self.ctx.deps.rate_limit.max / 10).max(1);
        self.ctx
            .check_rate(author, cost, self.ctx.deps.clock.now_ms())?;
        let head = self.ctx.require_head(author).await?;
        if head.data != mst::empty_root() {
            return Err(UseCaseError::RepoAlreadyExists(author.to_string()));
        }
        let parsed = import::read_repo_car(car_bytes, import::ImportLimits::default())?;
        if parsed.did != *author {
            return Err(UseCaseError::InvalidRequest(format!(
                "the CAR holds the repository of {}, not {author}",
                parsed.did
            )));
        }
        let entries = parsed.records;
        if entries.is_empty() {
            return Ok(0);
        }
        let held: BTreeSet<String> = enrollment
            .boundaries
            .into_iter()
            .map(String::from)
            .collect();
        let now = Datetime::from_unix_millis(self.ctx.deps.clock.now_ms());
        let mut prepared = Vec::with_capacity(entries.len());
        for record in &entries {
            let (collection, rkey) = writes::parse_path(&record.path)?;
            let value = data::ipld_to_json(&data::decode(record.bytes)?)?;
            let op = WriteOp::Create {
                collection,
                rkey: Some(rkey),
                value,
            };
            prepared.push(
                Writes::new(self.ctx)
                    .prepare(author, op, &held, &now)
                    .await?,
            );
        }
        let count = prepared.len();
        self.commit_all(author, &enrollment.signing_key, &head, &prepared, &now)
            .await?;
        Ok(count)
    }

    /// Imports records into the repository of `author`, which must be enrolled and hold no
    /// records yet — the operator's import of data from elsewhere (`stratos migrate-from-ts`),
    /// not a client's request: no rate limit. Each record is DAG-CBOR as its old home stored
    /// it; it is decoded and re-encoded through the same rules as a client's `createRecord`
    /// (so its CID is the correct one), and the accepted records land in one commit signed with
    /// the account's key. Records the rules refuse, or that reference blobs (whose bytes an
    /// import does not carry), are returned as rejected instead of failing the import.
    pub async fn import_records(
        &self,
        author: &Did,
        records: Vec<ImportedRecord>,
    ) -> Result<RecordImport, UseCaseError> {
        let enrollment = self.ctx.enrollment(author).await?;
        let head = self.ctx.require_head(author).await?;
        if head.data != mst::empty_root() {
            return Err(UseCaseError::RepoAlreadyExists(author.to_string()));
        }
        let held: BTreeSet<String> = enrollment
            .boundaries
            .iter()
            .map(|b| b.as_str().to_owned())
            .collect();
        let now = Datetime::from_unix_millis(self.ctx.deps.clock.now_ms());
        let mut outcome = RecordImport::default();
        let mut prepared = Vec::with_capacity(records.len());
        let mut seen = BTreeSet::new();
        for record in records {
            if !seen.insert(record.path.clone()) {
                outcome.reject(record.path, "a second record at the same path".to_owned());
                continue;
            }
            let result = async {
                let (collection, rkey) = writes::parse_path(&record.path)?;
                let value = data::ipld_to_json(&data::decode(&record.content)?)?;
                let op = WriteOp::Create {
                    collection,
                    rkey: Some(rkey),
                    value,
                };
                Writes::new(self.ctx).prepare(author, op, &held, &now).await
            }
            .await;
            match result {
                Ok(p) if !p.blobs.is_empty() => outcome.reject(
                    record.path,
                    "it references blobs, which are not imported".to_owned(),
                ),
                Ok(p) => {
                    if let (Some(stored), RecordWrite::Create { record: bytes, .. }) =
                        (&record.stored_cid, &p.write)
                        && cid::dag_cbor(bytes).to_string() != *stored
                    {
                        outcome.cids_corrected += 1;
                    }
                    prepared.push(p);
                }
                // The storage failing is not the record's fault: the import stops.
                Err(e @ (UseCaseError::Unavailable(_) | UseCaseError::Internal(_))) => {
                    return Err(e);
                }
                Err(e) => outcome.reject(record.path, e.to_string()),
            }
        }
        if prepared.is_empty() {
            return Ok(outcome);
        }
        outcome.imported = prepared.len();
        self.commit_all(author, &enrollment.signing_key, &head, &prepared, &now)
            .await?;
        Ok(outcome)
    }

    /// Commits prepared creates into an empty repository, in one commit after `head`.
    async fn commit_all(
        &self,
        author: &Did,
        signing_key: &str,
        head: &RepoHead,
        prepared: &[Prepared],
        now: &Datetime,
    ) -> Result<(), UseCaseError> {
        let key = self.ctx.signer(author, signing_key).await?;
        let lock = self.ctx.writer_lock(author);
        let _serial = lock.lock().await;
        // Blobs the imported records reference must have been uploaded first.
        let refs: Vec<&data::Blob> = prepared.iter().flat_map(|p| &p.blobs).collect();
        blobs::make_permanent(self.ctx, author, &refs).await?;
        let record_writes: Vec<RecordWrite> = prepared.iter().map(|p| p.write.clone()).collect();
        let rev = tid::next_after(&head.rev);
        let out = self
            .ctx
            .build(author, Some(head), &record_writes, rev, &key)
            .await?;
        let unit = writes::commit_unit(author, &out, prepared, now)?;
        let live = self.ctx.live_event(author, &unit);
        let seq = self.ctx.deps.repos.apply_commit(author, unit).await?;
        self.ctx.publish(live, seq);
        self.ctx.remember(author, &out);
        Ok(())
    }
}

/// A record handed to [`Transfer::import_records`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRecord {
    /// `collection/rkey`.
    pub path: String,
    /// The record as DAG-CBOR.
    pub content: Vec<u8>,
    /// The CID its old home stored for it, if any (to count corrected CIDs).
    pub stored_cid: Option<String>,
}

/// A record [`Transfer::import_records`] did not import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecord {
    /// `collection/rkey`.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// What [`Transfer::import_records`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordImport {
    /// Records imported.
    pub imported: usize,
    /// Imported records whose CID differs from the stored one.
    pub cids_corrected: usize,
    /// Records not imported.
    pub rejected: Vec<RejectedRecord>,
}

impl RecordImport {
    fn reject(&mut self, path: String, reason: String) {
        self.rejected.push(RejectedRecord { path, reason });
    }
}
