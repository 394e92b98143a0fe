//! The service DID kept with the data directory.
//!
//! Without `STRATOS_SERVICE_DID` the service DID comes from the public URL, whose default comes
//! from the port: restarting on another port over the same data made the service another
//! identity without a word, and every record and enrollment (whose boundaries name the service
//! DID) stopped working for it. So the first start records the DID in
//! `{STRATOS_DATA_DIR}/service_did`, every later start must have the same one, and changing it
//! is an explicit step ([`migrate`], `stratos migrate-service-did`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use stratos_domain::syntax::Did;

/// The file, under the data directory.
pub const FILE: &str = "service_did";

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The recorded DID, `None` when nothing is recorded yet.
pub fn recorded(data_dir: &Path) -> anyhow::Result<Option<Did>> {
    let path = path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Did::parse(text.trim()).map(Some).map_err(|e| {
            anyhow::anyhow!(
                "{} does not hold a DID ({e}); it records the service DID of this data \
                 directory: restore it",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Checks `did` against the data directory's DID, recording it on the first start. A
/// mismatch is an error naming both DIDs and the two ways out.
pub fn check(data_dir: &Path, did: &Did) -> anyhow::Result<()> {
    let recorded = match recorded(data_dir)? {
        Some(recorded) => recorded,
        None => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            match write_new(&path(data_dir), did) {
                Ok(()) => {
                    tracing::info!(%did, path = %path(data_dir).display(), "recorded the service DID");
                    return Ok(());
                }
                // Another instance over the same directory recorded it first: compare with that.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    recorded(data_dir)?.context("the service DID file vanished")?
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("creating {}", path(data_dir).display()));
                }
            }
        }
    };
    if recorded == *did {
        return Ok(());
    }
    bail!(
        "the data directory {dir} belongs to the service {recorded}, but this configuration \
         makes the service {did}.\n\
         Records and enrollments name the service DID in their boundaries, so starting as \
         {did} would leave them behind.\n\
         - To keep the identity, set STRATOS_SERVICE_DID={recorded} (or the STRATOS_PUBLIC_URL \
         or STRATOS_PORT it was derived from).\n\
         - To change it, run `stratos migrate-service-did --from {recorded}` with this \
         configuration (docs/operators.md, \"Changing the service DID\").",
        dir = data_dir.display()
    )
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migration {
    /// The data directory now belongs to the new DID.
    Changed,
    /// It already did.
    AlreadyDone,
}

/// Records `to` as the data directory's service DID in place of `from`, which must be the
/// recorded one. Rewrites no data (see docs/operators.md).
pub fn migrate(data_dir: &Path, from: &Did, to: &Did) -> anyhow::Result<Migration> {
    let Some(recorded) = recorded(data_dir)? else {
        bail!(
            "no service DID is recorded in {}: there is nothing to migrate (the next start \
             records {to})",
            data_dir.display()
        );
    };
    if recorded == *to {
        return Ok(Migration::AlreadyDone);
    }
    if recorded != *from {
        bail!(
            "the data directory {} belongs to the service {recorded}, not {from}: nothing was \
             changed",
            data_dir.display()
        );
    }
    let target = path(data_dir);
    let temp = data_dir.join(format!("{FILE}.new"));
    let _ = std::fs::remove_file(&temp);
    write_new(&temp, to).with_context(|| format!("writing {}", temp.display()))?;
    // The rename replaces the file whole: a crash leaves the old DID or the new one.
    std::fs::rename(&temp, &target).with_context(|| format!("replacing {}", target.display()))?;
    Ok(Migration::Changed)
}

fn write_new(path: &Path, did: &Did) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(format!("{did}\n").as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn first_check_records_later_checks_compare_and_migration_swaps() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let a = Did::parse("did:web:localhost%3A3100").unwrap();
        let b = Did::parse("did:web:localhost%3A3105").unwrap();
        assert_eq!(recorded(&data).unwrap(), None);
        assert!(migrate(&data, &a, &b).is_err(), "nothing to migrate yet");
        check(&data, &a).unwrap();
        assert_eq!(recorded(&data).unwrap(), Some(a.clone()));
        check(&data, &a).unwrap();
        let refused = check(&data, &b).unwrap_err().to_string();
        assert!(refused.contains(a.as_str()) && refused.contains(b.as_str()));
        assert!(migrate(&data, &b, &a).is_ok(), "already the target: no-op");
        let c = Did::parse("did:plc:elsewhere").unwrap();
        assert!(
            migrate(&data, &c, &b).is_err(),
            "--from must be the recorded DID"
        );
        assert_eq!(migrate(&data, &a, &b).unwrap(), Migration::Changed);
        assert_eq!(migrate(&data, &a, &b).unwrap(), Migration::AlreadyDone);
        check(&data, &b).unwrap();
        assert!(check(&data, &a).is_err());
    }

    #[test]
    fn a_damaged_record_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "not a did\n").unwrap();
        let a = Did::parse("did:web:localhost%3A3100").unwrap();
        let e = check(dir.path(), &a).unwrap_err().to_string();
        assert!(e.contains("does not hold a DID"), "{e}");
    }
}
