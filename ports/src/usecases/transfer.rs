//! Repository transfer ([`Transfer`]): the whole repository out as a CAR
//! (`com.atproto.sync.getRepo`), and a CAR's records in (`com.atproto.repo.importRepo`) through
//! the same write rules, blob checks and commit path as any write.

use std::collections::BTreeSet;

use stratos_domain::repo::RecordWrite;
use stratos_domain::syntax::{Datetime, Did};
use stratos_domain::{car, data, import, mst, tid};

use super::UseCaseError;
use super::account::AccountContext;
use super::blobs;
use super::writes::{self, WriteOp, Writes};

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
        let key = self.ctx.signer(author, &enrollment.signing_key).await?;
        let count = prepared.len();
        let lock = self.ctx.writer_lock(author);
        let _serial = lock.lock().await;
        // Blobs the imported records reference must have been uploaded first.
        let refs: Vec<&data::Blob> = prepared.iter().flat_map(|p| &p.blobs).collect();
        blobs::make_permanent(self.ctx, author, &refs).await?;
        let record_writes: Vec<RecordWrite> = prepared.iter().map(|p| p.write.clone()).collect();
        let rev = tid::next_after(&head.rev);
        let out = self
            .ctx
            .build(author, Some(&head), &record_writes, rev, &key)
            .await?;
        let unit = writes::commit_unit(author, &out, &prepared, &now)?;
        let live = self.ctx.live_event(author, &unit);
        let seq = self.ctx.deps.repos.apply_commit(author, unit).await?;
        self.ctx.publish(live, seq);
        self.ctx.remember(author, &out);
        Ok(count)
    }
}
