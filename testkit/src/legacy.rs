//! Data of the TypeScript original for the `migrate-from-ts` import: one fixture with every case
//! the import must handle, as SQL scripts in the original's SQLite and PostgreSQL layouts
//! (reference `ts-stratos-service.md` §11.2–§11.5, the DDL verbatim), an in-memory
//! [`LegacySource`] over it, and the checks every import of it must pass
//! ([`check_import`]).
//!
//! The fixture (for a service `svc` offering `general` and `team`):
//! - `did:plc:tsalice`: active, boundaries `svc/general`, `svc/team` and another service's
//!   (dropped); her P-256 key; five posts — one stored under the CID `createRecord` wrongly
//!   computed (D1), one under its correct CID, one whose block is missing, one without a
//!   boundary (refused by the write rules), one in a boundary she does not hold (refused) —
//!   and one uploaded blob (not imported).
//! - `did:plc:tsbob`: no key file (a new key is generated), one post.
//! - `did:plc:tscarol`: `active = 'false'` (skipped).
//! - `alice`: not a DID (fails).
#![allow(clippy::expect_used, clippy::panic)] // test support: failures are assertions

use async_trait::async_trait;
use serde_json::{Value, json};
use stratos_domain::cid;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::data;
use stratos_domain::syntax::Did;
use stratos_ports::Stratos;
use stratos_ports::legacy_source::{LegacyAccount, LegacyRecord, LegacySource, LegacySourceError};
use stratos_ports::usecases::legacy::{AccountOutcome, LegacyReport};

/// One account of the fixture, with its records and uploaded-blob count.
#[derive(Debug, Clone)]
pub struct TsAccount {
    /// The enrollment row (and key file).
    pub account: LegacyAccount,
    /// Its records.
    pub records: Vec<LegacyRecord>,
    /// Rows of its `stratos_blob` table.
    pub blobs: u64,
}

const POSTS: &str = "zone.stratos.feed.post";

/// Alice's key (any 32 bytes below the P-256 order are a key).
pub const ALICE_KEY: [u8; 32] = [7; 32];

fn post(text: &str, boundaries: &[String], at: &str) -> Value {
    let mut v = json!({"$type": POSTS, "text": text, "createdAt": at});
    if !boundaries.is_empty() {
        v["boundary"] = json!({
            "$type": "zone.stratos.boundary.defs#Domains",
            "values": boundaries.iter().map(|b| json!({"value": b})).collect::<Vec<_>>(),
        });
    }
    v
}

fn bytes_of(value: &Value) -> Vec<u8> {
    data::encode(&data::json_to_ipld(value).expect("fixture JSON")).expect("fixture CBOR")
}

/// The CID the original's `createRecord` stored (D1): over a CBOR byte string wrapping the
/// record's bytes.
pub fn d1_cid(bytes: &[u8]) -> String {
    let wrapped = data::to_dag_cbor(&serde_bytes::ByteBuf::from(bytes.to_vec()))
        .expect("a byte string encodes");
    cid::dag_cbor(&wrapped).to_string()
}

fn record(rkey: &str, content: Option<Vec<u8>>, stored_cid: String) -> LegacyRecord {
    LegacyRecord {
        collection: POSTS.to_owned(),
        rkey: rkey.to_owned(),
        stored_cid,
        content,
    }
}

/// The fixture for a service of DID `service`.
pub fn ts_fixture(service: &Did) -> Vec<TsAccount> {
    let b = |name: &str| format!("{service}/{name}");
    let alice_key =
        Keypair::from_private_bytes(KeyAlgorithm::P256, &ALICE_KEY).expect("a valid P-256 scalar");
    let wrong = bytes_of(&post(
        "stored under a wrong CID",
        &[b("general")],
        "2026-01-02T10:00:00.000Z",
    ));
    let right = bytes_of(&post(
        "stored under its CID",
        &[b("team")],
        "2026-01-02T10:01:00.000Z",
    ));
    let lost = bytes_of(&post("lost", &[b("general")], "2026-01-02T10:02:00.000Z"));
    let unbounded = bytes_of(&post("no boundary", &[], "2026-01-02T10:03:00.000Z"));
    let foreign = bytes_of(&post(
        "not hers",
        &["did:web:other.example/general".to_owned()],
        "2026-01-02T10:04:00.000Z",
    ));
    let bobs = bytes_of(&post("bob's", &[b("general")], "2026-01-03T10:00:00.000Z"));
    vec![
        TsAccount {
            account: LegacyAccount {
                did: "alice".to_owned(),
                enrolled_at: "2026-01-01T00:00:00.000Z".to_owned(),
                pds_endpoint: None,
                signing_key_did: None,
                enrollment_rkey: None,
                active: true,
                boundaries: vec![b("general")],
                signing_key: None,
            },
            records: Vec::new(),
            blobs: 0,
        },
        TsAccount {
            account: LegacyAccount {
                did: "did:plc:tsalice".to_owned(),
                enrolled_at: "2026-01-02T03:04:05.000Z".to_owned(),
                pds_endpoint: Some("https://pds.example".to_owned()),
                signing_key_did: Some(alice_key.did_key()),
                enrollment_rkey: Some("self".to_owned()),
                active: true,
                boundaries: vec![
                    b("general"),
                    b("team"),
                    "did:web:other.example/general".to_owned(),
                ],
                signing_key: Some(ALICE_KEY.to_vec()),
            },
            records: vec![
                record("3jzfcijpj2z2a", Some(wrong.clone()), d1_cid(&wrong)),
                record(
                    "3jzfcijpj2z2b",
                    Some(right.clone()),
                    cid::dag_cbor(&right).to_string(),
                ),
                record("3jzfcijpj2z2c", None, cid::dag_cbor(&lost).to_string()),
                record("3jzfcijpj2z2d", Some(unbounded.clone()), d1_cid(&unbounded)),
                record("3jzfcijpj2z2e", Some(foreign.clone()), d1_cid(&foreign)),
            ],
            blobs: 1,
        },
        TsAccount {
            account: LegacyAccount {
                did: "did:plc:tsbob".to_owned(),
                enrolled_at: "2026-01-03T00:00:00.000Z".to_owned(),
                pds_endpoint: None,
                signing_key_did: Some("did:key:zDnaeLostKeyOfTheOriginal".to_owned()),
                enrollment_rkey: None,
                active: true,
                boundaries: vec![b("general")],
                signing_key: None,
            },
            records: vec![record("3jzfcijpj3z2a", Some(bobs.clone()), d1_cid(&bobs))],
            blobs: 0,
        },
        TsAccount {
            account: LegacyAccount {
                did: "did:plc:tscarol".to_owned(),
                enrolled_at: "2026-01-04T00:00:00.000Z".to_owned(),
                pds_endpoint: None,
                signing_key_did: None,
                enrollment_rkey: None,
                active: false,
                boundaries: vec![b("general")],
                signing_key: None,
            },
            records: Vec::new(),
            blobs: 0,
        },
    ]
}

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn sql_opt(s: Option<&str>) -> String {
    s.map_or_else(|| "NULL".to_owned(), sql_text)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The original's SQLite layout: the script of `service.sqlite`, and per account with a
/// repository (its DID, the script of its `stratos.sqlite`, its `signing_key` file if any).
/// Account databases live at `actors/{sha256hex(did)[0:2]}/{did}/`.
pub type TsSqliteScripts = (String, Vec<(String, String, Option<Vec<u8>>)>);

/// The fixture as the original's SQLite files (§11.2, §11.5: the DDL as the reference gives
/// it).
pub fn ts_sqlite_scripts(fixture: &[TsAccount]) -> TsSqliteScripts {
    let mut service = String::from(
        "CREATE TABLE oauth_session (key TEXT PRIMARY KEY, session TEXT NOT NULL, \
         createdAt TEXT NOT NULL, updatedAt TEXT NOT NULL);\n\
         CREATE TABLE oauth_state (key TEXT PRIMARY KEY, state TEXT NOT NULL, createdAt TEXT NOT NULL);\n\
         CREATE TABLE enrollment (did TEXT PRIMARY KEY, enrolledAt TEXT NOT NULL, pdsEndpoint TEXT, \
         signingKeyDid TEXT NOT NULL, active TEXT NOT NULL DEFAULT 'true', enrollmentRkey TEXT);\n\
         CREATE TABLE enrollment_boundary (did TEXT NOT NULL, boundary TEXT NOT NULL, PRIMARY KEY(did, boundary));\n\
         CREATE INDEX enrollment_boundary_did_idx ON enrollment_boundary(did);\n",
    );
    let mut actors = Vec::new();
    for t in fixture {
        let a = &t.account;
        service.push_str(&enrollment_rows(a, ""));
        if t.records.is_empty() && t.blobs == 0 && a.signing_key.is_none() {
            continue;
        }
        let mut actor = String::from(
            "CREATE TABLE stratos_repo_root (did TEXT PRIMARY KEY, cid TEXT NOT NULL, rev TEXT NOT NULL, indexedAt TEXT NOT NULL);\n\
             CREATE TABLE stratos_repo_block (cid TEXT PRIMARY KEY, repoRev TEXT NOT NULL, size INTEGER NOT NULL, content BLOB NOT NULL);\n\
             CREATE INDEX stratos_repo_block_repo_rev_idx ON stratos_repo_block (repoRev, cid);\n\
             CREATE TABLE stratos_record (uri TEXT PRIMARY KEY, cid TEXT NOT NULL, collection TEXT NOT NULL, rkey TEXT NOT NULL, \
             repoRev TEXT NOT NULL, indexedAt TEXT NOT NULL, takedownRef TEXT);\n\
             CREATE TABLE stratos_blob (cid TEXT PRIMARY KEY, mimeType TEXT NOT NULL, size INTEGER NOT NULL, tempKey TEXT, \
             width INTEGER, height INTEGER, createdAt TEXT NOT NULL, takedownRef TEXT);\n\
             CREATE TABLE stratos_record_blob (blobCid TEXT NOT NULL, recordUri TEXT NOT NULL, PRIMARY KEY(blobCid, recordUri));\n\
             CREATE TABLE stratos_backlink (uri TEXT NOT NULL, path TEXT NOT NULL, linkTo TEXT NOT NULL, PRIMARY KEY(uri, path));\n\
             CREATE TABLE stratos_seq (seq INTEGER PRIMARY KEY AUTOINCREMENT, did TEXT NOT NULL, eventType TEXT NOT NULL, \
             event BLOB NOT NULL, invalidated INTEGER NOT NULL DEFAULT 0, sequencedAt TEXT NOT NULL);\n",
        );
        for r in &t.records {
            actor.push_str(&record_rows(&a.did, r, |b| format!("X'{}'", hex(b))));
        }
        for i in 0..t.blobs {
            actor.push_str(&format!(
                "INSERT INTO stratos_blob VALUES ('bafkreiblob{i}', 'image/png', 67, 'tmpkey{i}', NULL, NULL, '2026-01-02T00:00:00.000Z', NULL);\n"
            ));
        }
        actors.push((a.did.clone(), actor, a.signing_key.clone()));
    }
    (service, actors)
}

/// The `enrollment` and `enrollment_boundary` rows of `a`, the tables named with `schema`
/// (`""` or `"schema".`).
fn enrollment_rows(a: &LegacyAccount, schema: &str) -> String {
    let mut out = format!(
        "INSERT INTO {schema}enrollment VALUES ({}, {}, {}, {}, {}, {});\n",
        sql_text(&a.did),
        sql_text(&a.enrolled_at),
        sql_opt(a.pds_endpoint.as_deref()),
        sql_text(a.signing_key_did.as_deref().unwrap_or("did:key:unknown")),
        sql_text(if a.active { "true" } else { "false" }),
        sql_opt(a.enrollment_rkey.as_deref()),
    );
    for b in &a.boundaries {
        out.push_str(&format!(
            "INSERT INTO {schema}enrollment_boundary VALUES ({}, {});\n",
            sql_text(&a.did),
            sql_text(b)
        ));
    }
    out
}

fn record_rows(did: &str, r: &LegacyRecord, blob: impl Fn(&[u8]) -> String) -> String {
    let uri = format!("at://{did}/{}/{}", r.collection, r.rkey);
    let mut out = format!(
        "INSERT INTO stratos_record VALUES ({}, {}, {}, {}, 'rev', '2026-01-02T00:00:00.000Z', NULL);\n",
        sql_text(&uri),
        sql_text(&r.stored_cid),
        sql_text(&r.collection),
        sql_text(&r.rkey)
    );
    if let Some(content) = &r.content {
        out.push_str(&format!(
            "INSERT INTO stratos_repo_block VALUES ({}, 'rev', {}, {});\n",
            sql_text(&r.stored_cid),
            content.len(),
            blob(content)
        ));
    }
    out
}

/// The fixture as the original's PostgreSQL database (§11.2, §11.4–§11.5: service tables in
/// `schema` with quoted camelCase columns; per account a schema `actor_` + 12 hex digits of
/// sha256(did) — `actor_schema` computes it — holding its tables and `stratos_signing_key`).
pub fn ts_postgres_script(
    fixture: &[TsAccount],
    schema: &str,
    actor_schema: impl Fn(&str) -> String,
) -> String {
    let s = format!("\"{schema}\"");
    let mut out = format!(
        "CREATE SCHEMA IF NOT EXISTS {s};\n\
         CREATE TABLE {s}.oauth_session (\"key\" TEXT PRIMARY KEY, \"session\" TEXT NOT NULL, \"createdAt\" TEXT NOT NULL, \"updatedAt\" TEXT NOT NULL);\n\
         CREATE TABLE {s}.enrollment (\"did\" TEXT PRIMARY KEY, \"enrolledAt\" TEXT NOT NULL, \"pdsEndpoint\" TEXT, \
         \"signingKeyDid\" TEXT NOT NULL, \"active\" TEXT NOT NULL DEFAULT 'true', \"enrollmentRkey\" TEXT);\n\
         CREATE TABLE {s}.enrollment_boundary (\"did\" TEXT NOT NULL, \"boundary\" TEXT NOT NULL, PRIMARY KEY(\"did\", \"boundary\"));\n"
    );
    for t in fixture {
        let a = &t.account;
        out.push_str(&enrollment_rows(a, &format!("{s}.")));
        if t.records.is_empty() && t.blobs == 0 && a.signing_key.is_none() {
            continue;
        }
        let x = actor_schema(&a.did);
        out.push_str(&format!(
            "CREATE SCHEMA {x};\n\
             CREATE TABLE {x}.stratos_repo_root (\"did\" TEXT PRIMARY KEY, \"cid\" TEXT NOT NULL, \"rev\" TEXT NOT NULL, \"indexedAt\" TEXT NOT NULL);\n\
             CREATE TABLE {x}.stratos_repo_block (\"cid\" TEXT PRIMARY KEY, \"repoRev\" TEXT NOT NULL, \"size\" INTEGER NOT NULL, \"content\" BYTEA NOT NULL);\n\
             CREATE TABLE {x}.stratos_record (\"uri\" TEXT PRIMARY KEY, \"cid\" TEXT NOT NULL, \"collection\" TEXT NOT NULL, \"rkey\" TEXT NOT NULL, \
             \"repoRev\" TEXT NOT NULL, \"indexedAt\" TEXT NOT NULL, \"takedownRef\" TEXT);\n\
             CREATE TABLE {x}.stratos_blob (\"cid\" TEXT PRIMARY KEY, \"mimeType\" TEXT NOT NULL, \"size\" INTEGER NOT NULL, \"tempKey\" TEXT, \
             \"width\" INTEGER, \"height\" INTEGER, \"createdAt\" TEXT NOT NULL, \"takedownRef\" TEXT);\n\
             CREATE TABLE {x}.stratos_seq (\"seq\" SERIAL PRIMARY KEY, \"did\" TEXT NOT NULL, \"eventType\" TEXT NOT NULL, \
             \"event\" BYTEA NOT NULL, \"invalidated\" INTEGER NOT NULL DEFAULT 0, \"sequencedAt\" TEXT NOT NULL);\n\
             CREATE TABLE {x}.stratos_signing_key (\"did\" TEXT PRIMARY KEY, \"key\" BYTEA NOT NULL);\n"
        ));
        if let Some(key) = &a.signing_key {
            out.push_str(&format!(
                "INSERT INTO {x}.stratos_signing_key VALUES ({}, '\\x{}'::bytea);\n",
                sql_text(&a.did),
                hex(key)
            ));
        }
        for r in &t.records {
            let rows = record_rows(&a.did, r, |b| format!("'\\x{}'::bytea", hex(b)));
            out.push_str(
                &rows.replace("INSERT INTO stratos_", &format!("INSERT INTO {x}.stratos_")),
            );
        }
        for i in 0..t.blobs {
            out.push_str(&format!(
                "INSERT INTO {x}.stratos_blob VALUES ('bafkreiblob{i}', 'image/png', 67, 'tmpkey{i}', NULL, NULL, '2026-01-02T00:00:00.000Z', NULL);\n"
            ));
        }
    }
    out
}

/// A service of DID `service` offering `general` and `team` over `storage` (blobs and identity
/// in memory): what [`check_import`] expects to import into.
pub async fn importer(service: &Did, storage: stratos_ports::Storage) -> Stratos {
    Stratos::builder(service.clone(), Keypair::generate(KeyAlgorithm::K256))
        .storage(storage)
        .blob_store(std::sync::Arc::new(crate::memory::MemoryBlobStore::new()))
        .identity(std::sync::Arc::new(crate::memory::MemoryIdentity::new()))
        .boundaries(["general", "team"])
        .build()
        .await
        .expect("the service builds")
}

/// The fixture as a [`LegacySource`] in memory.
#[derive(Debug, Clone)]
pub struct MemoryLegacySource(pub Vec<TsAccount>);

#[async_trait]
impl LegacySource for MemoryLegacySource {
    async fn accounts(&self) -> Result<Vec<LegacyAccount>, LegacySourceError> {
        Ok(self.0.iter().map(|t| t.account.clone()).collect())
    }
    async fn records(&self, did: &str) -> Result<Vec<LegacyRecord>, LegacySourceError> {
        Ok(self
            .0
            .iter()
            .find(|t| t.account.did == did)
            .map(|t| t.records.clone())
            .unwrap_or_default())
    }
    async fn blob_count(&self, did: &str) -> Result<u64, LegacySourceError> {
        Ok(self
            .0
            .iter()
            .find(|t| t.account.did == did)
            .map_or(0, |t| t.blobs))
    }
}

fn entry<'a>(
    report: &'a LegacyReport,
    did: &str,
) -> &'a stratos_ports::usecases::legacy::AccountReport {
    report
        .accounts
        .iter()
        .find(|a| a.did == did)
        .unwrap_or_else(|| panic!("{did} missing from the report:\n{report}"))
}

/// Checks an import of [`ts_fixture`] into `stratos` (a service offering `general` and `team`):
/// the report, and what the service now holds and serves.
pub async fn check_import(stratos: &Stratos, report: &LegacyReport) {
    let text = report.to_string();
    assert_eq!(report.imported(), 2, "{text}");
    assert_eq!(report.failed(), 1, "{text}");
    assert_eq!(report.records(), 3, "{text}");
    assert!(
        matches!(entry(report, "alice").outcome, AccountOutcome::Failed(_)),
        "{text}"
    );
    assert!(
        matches!(
            entry(report, "did:plc:tscarol").outcome,
            AccountOutcome::Skipped(_)
        ),
        "{text}"
    );
    let alice_entry = entry(report, "did:plc:tsalice");
    assert_eq!(alice_entry.records, 2, "{text}");
    assert_eq!(alice_entry.cids_corrected, 1, "{text}");
    for expected in [
        "did:web:other.example/general is not offered",
        "3jzfcijpj2z2c: its block is missing",
        "3jzfcijpj2z2d: not imported",
        "3jzfcijpj2z2e: not imported",
        "1 uploaded blob",
    ] {
        assert!(
            alice_entry.problems.iter().any(|p| p.contains(expected)),
            "no problem mentions {expected:?}:\n{text}"
        );
    }
    assert_eq!(alice_entry.problems.len(), 5, "{text}");
    assert!(
        entry(report, "did:plc:tsbob")
            .problems
            .iter()
            .any(|p| p.contains("new key was generated")),
        "{text}"
    );

    // The enrollment as the original had it, with this service's boundaries only.
    let alice = Did::parse("did:plc:tsalice").expect("a DID");
    let key = Keypair::from_private_bytes(KeyAlgorithm::P256, &ALICE_KEY).expect("a key");
    let status = stratos
        .enrollments()
        .status(&alice)
        .await
        .expect("status")
        .expect("enrolled");
    let names: Vec<&str> = status
        .enrollment
        .boundaries
        .iter()
        .map(|b| b.name())
        .collect();
    assert_eq!(names, ["general", "team"]);
    assert_eq!(status.enrollment.signing_key, key.did_key());
    assert_eq!(
        status.enrollment.enrolled_at.as_str(),
        "2026-01-02T03:04:05.000Z"
    );
    assert_eq!(
        status.enrollment.pds_endpoint.as_deref(),
        Some("https://pds.example")
    );

    // Records under correct CIDs, readable as they were written.
    let fixture = ts_fixture(stratos.service_did());
    let posts = "zone.stratos.feed.post".parse().expect("an NSID");
    for r in &fixture[1].records[..2] {
        let content = r.content.as_deref().expect("content");
        let view = stratos
            .records()
            .get_record(
                Some(&alice),
                &alice,
                &posts,
                &r.rkey.parse().expect("rkey"),
                None,
            )
            .await
            .expect("get")
            .expect("imported");
        assert_eq!(view.cid, cid::dag_cbor(content));
        assert_eq!(
            view.value,
            data::ipld_to_json(&data::decode(content).expect("cbor")).expect("json")
        );
    }
    // A stranger sees nothing.
    let stranger = Did::parse("did:plc:stranger").expect("a DID");
    let hidden = stratos
        .records()
        .get_record(
            Some(&stranger),
            &alice,
            &posts,
            &"3jzfcijpj2z2a".parse().expect("rkey"),
            None,
        )
        .await;
    assert!(
        !matches!(hidden, Ok(Some(_))),
        "a stranger read an imported private post"
    );

    // The repository is signed with her own key from the original, and holds exactly the two.
    let head = stratos
        .storage()
        .repos()
        .head(&alice)
        .await
        .expect("head")
        .expect("a repository");
    let blocks = stratos
        .storage()
        .repos()
        .get_blocks(&alice, &[head.commit])
        .await
        .expect("blocks");
    let commit = stratos_domain::commit::SignedCommit::decode(
        blocks.get(&head.commit).expect("the commit block"),
    )
    .expect("a commit");
    commit
        .verify(key.public_key())
        .expect("signed with her key");
    let car = stratos
        .records()
        .transfer()
        .export_repo(&alice, &alice)
        .await
        .expect("export");
    let repo = stratos_domain::import::read_repo_car(&car, Default::default()).expect("a CAR");
    assert_eq!(repo.records.len(), 2);
}
