//! The TypeScript original's SQLite data directory, read for `stratos migrate-from-ts`
//! ([`TsSqliteSource`]). Layout (reference `ts-stratos-service.md` §11.2–§11.3):
//! `service.sqlite` with `enrollment(did, enrolledAt, pdsEndpoint, signingKeyDid, active,
//! enrollmentRkey)` and `enrollment_boundary(did, boundary)`; per account
//! `actors/{sha256hex(did)[0:2]}/{did}/stratos.sqlite` (`stratos_record`, `stratos_repo_block`,
//! `stratos_blob`) and `signing_key` (the raw 32-byte P-256 key).
//!
//! Every file is opened read-only: the original's data is never changed.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use stratos_ports::Cause;
use stratos_ports::legacy_source::{LegacyAccount, LegacyRecord, LegacySource, LegacySourceError};

/// A signing-key file larger than this is not the original's (it writes 32 bytes).
const MAX_KEY_FILE: u64 = 1024;

/// A TypeScript original's SQLite data directory.
#[derive(Debug, Clone)]
pub struct TsSqliteSource {
    root: PathBuf,
}

impl TsSqliteSource {
    /// The data directory `root` (the original's `STRATOS_DATA_DIR`); fails unless it holds
    /// `service.sqlite`.
    pub fn open(root: &Path) -> Result<Self, LegacySourceError> {
        if !root.join("service.sqlite").is_file() {
            return Err(LegacySourceError::Layout(format!(
                "{} has no service.sqlite",
                root.display()
            )));
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn actor_dir(&self, did: &str) -> Result<PathBuf, LegacySourceError> {
        // The original names the directory after the raw DID; one that could leave the actors
        // directory is not followed.
        if did.is_empty() || did.contains(['/', '\\']) || did.starts_with('.') {
            return Err(LegacySourceError::Layout(format!(
                "{did:?} cannot name an actor directory"
            )));
        }
        // The original's layout is this adapter's own: `actors/{sha256(did)[0] hex}/{did}`.
        Ok(crate::actor_db::actor_dir(&self.root, did))
    }
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> LegacySourceError {
    LegacySourceError::Backend(Cause::new(e))
}

fn read_only(path: &Path) -> Result<Connection, LegacySourceError> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LegacySourceError> + Send + 'static,
) -> Result<T, LegacySourceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LegacySourceError::Backend(Cause::new(std::io::Error::other(e.to_string()))))?
}

fn layout(what: &str, e: rusqlite::Error) -> LegacySourceError {
    LegacySourceError::Layout(format!("{what}: {e}"))
}

fn read_key(path: &Path) -> Result<Option<Vec<u8>>, LegacySourceError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_KEY_FILE => Ok(Some(Vec::new())),
        Ok(_) => std::fs::read(path).map(Some).map_err(backend),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(backend(e)),
    }
}

#[async_trait]
impl LegacySource for TsSqliteSource {
    async fn accounts(&self) -> Result<Vec<LegacyAccount>, LegacySourceError> {
        let this = self.clone();
        blocking(move || {
            let conn = read_only(&this.root.join("service.sqlite"))?;
            let mut stmt = conn
                .prepare(
                    "SELECT did, enrolledAt, pdsEndpoint, signingKeyDid, active, \
                     enrollmentRkey FROM enrollment ORDER BY did",
                )
                .map_err(|e| layout("service.sqlite enrollment", e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(LegacyAccount {
                        did: r.get(0)?,
                        enrolled_at: r.get(1)?,
                        pds_endpoint: r.get(2)?,
                        signing_key_did: r.get(3)?,
                        active: r.get::<_, Option<String>>(4)?.as_deref() != Some("false"),
                        enrollment_rkey: r.get(5)?,
                        boundaries: Vec::new(),
                        signing_key: None,
                    })
                })
                .map_err(|e| layout("service.sqlite enrollment", e))?;
            let mut accounts = Vec::new();
            for row in rows {
                accounts.push(row.map_err(|e| layout("service.sqlite enrollment", e))?);
            }
            let mut boundaries = conn
                .prepare(
                    "SELECT boundary FROM enrollment_boundary WHERE did = ?1 ORDER BY boundary",
                )
                .map_err(|e| layout("service.sqlite enrollment_boundary", e))?;
            for account in &mut accounts {
                account.boundaries = boundaries
                    .query_map([&account.did], |r| r.get(0))
                    .and_then(|rows| rows.collect())
                    .map_err(|e| layout("service.sqlite enrollment_boundary", e))?;
                if let Ok(dir) = this.actor_dir(&account.did) {
                    account.signing_key = read_key(&dir.join("signing_key"))?;
                }
            }
            Ok(accounts)
        })
        .await
    }

    async fn records(&self, did: &str) -> Result<Vec<LegacyRecord>, LegacySourceError> {
        let file = self.actor_dir(did)?.join("stratos.sqlite");
        blocking(move || {
            if !file.is_file() {
                return Ok(Vec::new());
            }
            let conn = read_only(&file)?;
            let mut stmt = conn
                .prepare(
                    "SELECT r.collection, r.rkey, r.cid, b.content FROM stratos_record r \
                     LEFT JOIN stratos_repo_block b ON b.cid = r.cid \
                     ORDER BY r.collection, r.rkey",
                )
                .map_err(|e| layout("stratos_record", e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(LegacyRecord {
                        collection: r.get(0)?,
                        rkey: r.get(1)?,
                        stored_cid: r.get(2)?,
                        content: r.get(3)?,
                    })
                })
                .map_err(|e| layout("stratos_record", e))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(|e| layout("stratos_record", e))
        })
        .await
    }

    async fn blob_count(&self, did: &str) -> Result<u64, LegacySourceError> {
        let file = self.actor_dir(did)?.join("stratos.sqlite");
        blocking(move || {
            if !file.is_file() {
                return Ok(0);
            }
            let conn = read_only(&file)?;
            let n: Option<i64> = conn
                .query_row("SELECT COUNT(*) FROM stratos_blob", [], |r| r.get(0))
                .optional()
                .map_err(|e| layout("stratos_blob", e))?;
            Ok(n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
        })
        .await
    }
}
