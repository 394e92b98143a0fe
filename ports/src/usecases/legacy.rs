//! Importing the TypeScript original's data (`stratos migrate-from-ts`): every enrollment with
//! its boundaries and signing key, and every record, re-built into a repository with correct
//! CIDs (the original hashed a wrapped copy of `createRecord`'s bytes: reference defect D1).
//!
//! Each account is imported on its own and all-or-nothing where it matters: its records are
//! read before anything is written, the enrollment and the repository are then made as an
//! enrollment by the operator makes them, and the records go in one commit signed with the
//! account's own key from the original. Records go through the same rules as a client's
//! `createRecord` (lexicon, boundaries held, namespace); those that fail are reported, not
//! written. An account already enrolled here is skipped, so a run can be repeated.
//!
//! Not imported, and reported: blobs (their bytes are not carried over), OAuth sessions (the
//! original's are in its OAuth library's own format: each account authorizes once more before
//! the stubs and the enrollment record reach its PDS), the original's sequence numbers and
//! history (the new repository starts with one commit).

use std::fmt;

use stratos_domain::boundary::Boundary;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::syntax::{Datetime, Did, RecordKey};

use super::UseCaseError;
use super::enrollment::Enrollments;
use super::records::Records;
use super::transfer::ImportedRecord;
use crate::enrollment_store::Enrollment;
use crate::legacy_source::{LegacyAccount, LegacySource};

/// What happened to one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountOutcome {
    /// Enrolled here, with its records.
    Imported,
    /// Left alone (already enrolled here, inactive in the original): the reason.
    Skipped(String),
    /// Not imported: the reason. Nothing of the account was written.
    Failed(String),
}

/// The import of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountReport {
    /// The DID, as the original stored it.
    pub did: String,
    /// The outcome.
    pub outcome: AccountOutcome,
    /// Records imported.
    pub records: usize,
    /// Imported records whose CID differs from the one the original stored (D1).
    pub cids_corrected: usize,
    /// Everything that was not carried over as it was, one line each.
    pub problems: Vec<String>,
}

/// The whole import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacyReport {
    /// One entry per account of the original, in its order.
    pub accounts: Vec<AccountReport>,
}

impl LegacyReport {
    /// Accounts imported.
    pub fn imported(&self) -> usize {
        self.count(|o| matches!(o, AccountOutcome::Imported))
    }

    /// Accounts that failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, AccountOutcome::Failed(_)))
    }

    /// Records imported, over all accounts.
    pub fn records(&self) -> usize {
        self.accounts.iter().map(|a| a.records).sum()
    }

    fn count(&self, f: impl Fn(&AccountOutcome) -> bool) -> usize {
        self.accounts.iter().filter(|a| f(&a.outcome)).count()
    }
}

impl fmt::Display for LegacyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for a in &self.accounts {
            match &a.outcome {
                AccountOutcome::Imported => writeln!(
                    f,
                    "{}: imported, {} records ({} CIDs corrected)",
                    a.did, a.records, a.cids_corrected
                )?,
                AccountOutcome::Skipped(why) => writeln!(f, "{}: skipped: {why}", a.did)?,
                AccountOutcome::Failed(why) => writeln!(f, "{}: NOT imported: {why}", a.did)?,
            }
            for p in &a.problems {
                writeln!(f, "  - {p}")?;
            }
        }
        write!(
            f,
            "{} of {} accounts imported, {} failed; {} records",
            self.imported(),
            self.accounts.len(),
            self.failed(),
            self.records()
        )
    }
}

/// Imports every account of `source` into the service `enrollments` and `records` belong to,
/// keeping only boundaries in `offered` (this service's). Fails only when the source cannot
/// be listed or the destination storage fails; everything else is in the report.
pub async fn import(
    enrollments: &Enrollments,
    records: &Records,
    source: &dyn LegacySource,
    offered: &[Boundary],
    now: Datetime,
) -> Result<LegacyReport, UseCaseError> {
    let accounts = source
        .accounts()
        .await
        .map_err(|e| UseCaseError::Unavailable(crate::Cause::new(e)))?;
    let mut report = LegacyReport::default();
    for account in accounts {
        let entry = import_account(enrollments, records, source, offered, &now, &account).await?;
        report.accounts.push(entry);
    }
    Ok(report)
}

async fn import_account(
    enrollments: &Enrollments,
    records: &Records,
    source: &dyn LegacySource,
    offered: &[Boundary],
    now: &Datetime,
    account: &LegacyAccount,
) -> Result<AccountReport, UseCaseError> {
    let mut entry = AccountReport {
        did: account.did.clone(),
        outcome: AccountOutcome::Imported,
        records: 0,
        cids_corrected: 0,
        problems: Vec::new(),
    };
    let fail = |mut entry: AccountReport, why: String| {
        entry.outcome = AccountOutcome::Failed(why);
        Ok(entry)
    };
    let Ok(did) = Did::parse(&account.did) else {
        return fail(entry, "not a valid DID".to_owned());
    };
    if !account.active {
        entry.outcome = AccountOutcome::Skipped("inactive in the original".to_owned());
        return Ok(entry);
    }
    if enrollments.status(&did).await?.is_some() {
        entry.outcome = AccountOutcome::Skipped("already enrolled in this service".to_owned());
        return Ok(entry);
    }
    // Read everything first: an account whose data cannot be read is not half-imported.
    let legacy_records = match source.records(&account.did).await {
        Ok(r) => r,
        Err(e) => return fail(entry, format!("its repository could not be read: {e}")),
    };
    let blobs = match source.blob_count(&account.did).await {
        Ok(n) => n,
        Err(e) => return fail(entry, format!("its blobs could not be listed: {e}")),
    };

    let mut boundaries = Vec::with_capacity(account.boundaries.len());
    for b in &account.boundaries {
        match Boundary::parse(b) {
            Ok(boundary) if offered.contains(&boundary) => boundaries.push(boundary),
            Ok(_) => entry.problems.push(format!(
                "boundary {b} is not offered by this service (STRATOS_ALLOWED_DOMAINS); dropped"
            )),
            Err(_) => entry.problems.push(format!(
                "boundary {b:?} is not a qualified boundary; dropped"
            )),
        }
    }
    boundaries.sort();
    boundaries.dedup();

    let key = match account.signing_key.as_deref() {
        Some(bytes) => match Keypair::from_private_bytes(KeyAlgorithm::P256, bytes) {
            Ok(key) => {
                if let Some(published) = &account.signing_key_did
                    && *published != key.did_key()
                {
                    entry.problems.push(format!(
                        "the original recorded signing key {published}, but its key file holds \
                         {}; the key file's key is used",
                        key.did_key()
                    ));
                }
                key
            }
            Err(_) => {
                entry.problems.push(
                    "the original's signing key is unusable; a new key was generated".to_owned(),
                );
                Keypair::generate(KeyAlgorithm::P256)
            }
        },
        None => {
            entry
                .problems
                .push("no signing key in the original; a new key was generated".to_owned());
            Keypair::generate(KeyAlgorithm::P256)
        }
    };
    let enrolled_at = Datetime::parse(&account.enrolled_at).unwrap_or_else(|_| {
        entry.problems.push(format!(
            "enrolledAt {:?} is not a valid time; the import's time is used",
            account.enrolled_at
        ));
        now.clone()
    });
    let enrollment_rkey = account
        .enrollment_rkey
        .as_deref()
        .and_then(|r| RecordKey::parse(r).ok());
    let enrollment = Enrollment {
        did: did.clone(),
        enrolled_at,
        pds_endpoint: account.pds_endpoint.clone(),
        signing_key: key.did_key(),
        enrollment_rkey,
        boundaries,
    };

    let mut prepared = Vec::with_capacity(legacy_records.len());
    for r in legacy_records {
        let path = format!("{}/{}", r.collection, r.rkey);
        match r.content {
            Some(content) => prepared.push(ImportedRecord {
                path,
                content,
                stored_cid: Some(r.stored_cid),
            }),
            None => entry.problems.push(format!(
                "{path}: its block is missing in the original; not imported"
            )),
        }
    }

    enrollments.adopt(&enrollment, &key).await?;
    let outcome = match records.transfer().import_records(&did, prepared).await {
        Ok(outcome) => outcome,
        Err(e) => {
            // Not half-imported: without its records the account is not left enrolled (a
            // second run would skip it). Best effort, the first failure is the one reported.
            let _ = enrollments.unenroll(&did).await;
            return Err(e);
        }
    };
    entry.records = outcome.imported;
    entry.cids_corrected = outcome.cids_corrected;
    for rejected in outcome.rejected {
        entry.problems.push(format!(
            "{}: not imported: {}",
            rejected.path, rejected.reason
        ));
    }
    if blobs > 0 {
        entry.problems.push(format!(
            "{blobs} uploaded blob(s) not imported (their bytes are not carried over)"
        ));
    }
    Ok(entry)
}
