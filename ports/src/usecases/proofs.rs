//! Sync reads that prove content ([`Proofs`]): `com.atproto.sync.getRecord`, a record with the
//! MST path from the current commit, behind the same access decision as a read.

use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_domain::{Error as DomainError, car, mst};

use super::UseCaseError;
use super::account::AccountContext;
use super::reads::Reads;

/// The proof use cases over the shared per-account context (reached through
/// [`Records::proofs`](super::records::Records::proofs)).
#[derive(Debug, Clone, Copy)]
pub struct Proofs<'a> {
    ctx: &'a AccountContext,
}

impl<'a> Proofs<'a> {
    pub(super) fn new(ctx: &'a AccountContext) -> Self {
        Self { ctx }
    }

    /// `com.atproto.sync.getRecord`: a CAR proving the record under the current commit (the
    /// commit block, the MST path, the record), after the same access decision as a read.
    /// `None` when the record is missing or not readable by `viewer`.
    pub async fn record_proof(
        &self,
        viewer: Option<&Did>,
        owner: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> Result<Option<Vec<u8>>, UseCaseError> {
        let Some(view) = Reads::new(self.ctx)
            .get_record(viewer, owner, collection, rkey, None)
            .await?
        else {
            return Ok(None);
        };
        let head = self.ctx.require_head(owner).await?;
        let key = format!("{collection}/{rkey}");
        let mut blocks = self
            .ctx
            .deps
            .repos
            .get_blocks(owner, &[head.commit, view.cid])
            .await?;
        for _ in 0..64 {
            match mst::prove(&blocks, head.data, &key) {
                Ok(proof) => {
                    // The index and the tree are read at different moments: a record changed
                    // in between is a retryable conflict, never a proof of other content.
                    if mst::verify_proof(&head.data, &key, &proof)? != Some(view.cid) {
                        return Err(UseCaseError::Conflict(owner.to_string()));
                    }
                    let mut car = car::CarWriter::new(Vec::new(), &[head.commit])?;
                    for cid in std::iter::once(&head.commit)
                        .chain(proof.iter().map(|(c, _)| c))
                        .chain(std::iter::once(&view.cid))
                    {
                        let bytes =
                            blocks.get(cid).or_else(|| proof.get(cid)).ok_or_else(|| {
                                UseCaseError::Internal(format!("block {cid} vanished"))
                            })?;
                        car.write_block(cid, bytes)?;
                    }
                    return Ok(Some(car.finish()));
                }
                Err(DomainError::MissingBlock(cid)) => {
                    let fetched = self.ctx.deps.repos.get_blocks(owner, &[cid]).await?;
                    if !fetched.contains(&cid) {
                        return Err(UseCaseError::Internal(format!(
                            "repository of {owner} is missing block {cid}"
                        )));
                    }
                    blocks.extend(fetched);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(UseCaseError::Internal(format!(
            "repository of {owner} needed too many block fetches"
        )))
    }
}
