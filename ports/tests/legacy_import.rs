#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The import of the TypeScript original's data (`stratos migrate-from-ts`), over in-memory
//! stores: the fixture of `stratos_testkit::legacy` through the use case, and a second run
//! that finds everything imported already.

use stratos_domain::syntax::Did;
use stratos_ports::usecases::legacy::AccountOutcome;
use stratos_testkit::legacy::{MemoryLegacySource, check_import, importer, ts_fixture};
use stratos_testkit::memory;

#[tokio::test]
async fn the_fixture_imports_and_a_second_run_changes_nothing() {
    let service = Did::parse("did:web:stratos.example").unwrap();
    let stratos = importer(&service, memory::storage()).await;
    let source = MemoryLegacySource(ts_fixture(&service));
    let report = stratos.import_legacy(&source).await.unwrap();
    check_import(&stratos, &report).await;

    let again = stratos.import_legacy(&source).await.unwrap();
    assert_eq!(again.imported(), 0, "{again}");
    for did in ["did:plc:tsalice", "did:plc:tsbob"] {
        let entry = again.accounts.iter().find(|a| a.did == did).unwrap();
        assert_eq!(
            entry.outcome,
            AccountOutcome::Skipped("already enrolled in this service".to_owned())
        );
    }
}
