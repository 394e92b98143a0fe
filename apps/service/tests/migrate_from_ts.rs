#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! `stratos migrate-from-ts`, the binary: the original's SQLite data directory (the fixture of
//! `stratos_testkit::legacy`, with the original's service key in `signing_key`) is imported into
//! a new data directory; the report names what was not imported; the service then starts on it
//! with the original's service key and serves the imported records under correct CIDs.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sea_orm::sqlx::{self, Connection as _, SqliteConnection};
use stratos_domain::cid;
use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_domain::syntax::Did;
use stratos_testkit::legacy::{d1_cid, ts_fixture, ts_sqlite_scripts};

const BIN: &str = env!("CARGO_BIN_EXE_stratos");
const SERVICE: &str = "did:web:stratos.example";

async fn run_script(file: &Path, sql: &str) {
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// The original's data directory: the fixture's databases and keys, and its service key.
async fn write_ts_dir(root: &Path, service_key: &Keypair) {
    let (service, actors) = ts_sqlite_scripts(&ts_fixture(&Did::parse(SERVICE).unwrap()));
    run_script(&root.join("service.sqlite"), &service).await;
    for (did, sql, key) in actors {
        let hash = cid::sha256(did.as_bytes());
        let dir = root
            .join("actors")
            .join(format!("{:02x}", hash[0]))
            .join(&did);
        std::fs::create_dir_all(&dir).unwrap();
        run_script(&dir.join("stratos.sqlite"), &sql).await;
        if let Some(key) = key {
            std::fs::write(dir.join("signing_key"), key).unwrap();
        }
    }
    std::fs::write(root.join("signing_key"), service_key.private_bytes()).unwrap();
}

fn stratos(data: &Path, port: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("STRATOS_DATA_DIR", data)
        .env("STRATOS_PORT", port.to_string())
        .env("STRATOS_SERVICE_DID", SERVICE)
        .env("STRATOS_ALLOWED_DOMAINS", "general,team")
        .env("STRATOS_DEV_MODE", "true")
        .env("LOG_LEVEL", "silent")
        .stdin(Stdio::null());
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn an_original_data_directory_is_imported_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let ts = dir.path().join("ts");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&ts).unwrap();
    let ts_service_key = Keypair::generate(KeyAlgorithm::K256);
    write_ts_dir(&ts, &ts_service_key).await;
    let port = free_port();

    // Its own data directory is refused as the source.
    let same = stratos(&ts, port)
        .args(["migrate-from-ts", "--from"])
        .arg(&ts)
        .output()
        .unwrap();
    assert!(!same.status.success());
    assert!(
        text(&same).contains("own data directory"),
        "{}",
        text(&same)
    );

    let out = stratos(&data, port)
        .args(["migrate-from-ts", "--from"])
        .arg(&ts)
        .output()
        .unwrap();
    let report = text(&out);
    // One account of the fixture is not a DID: the run says so and exits 1.
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("2 of 4 accounts imported, 1 failed; 3 records"),
        "{report}"
    );
    assert!(
        report.contains("did:plc:tsalice: imported, 2 records (1 CIDs corrected)"),
        "{report}"
    );
    assert!(
        report.contains("alice: NOT imported: not a valid DID"),
        "{report}"
    );
    assert!(report.contains("authorizes once more"), "{report}");

    // The service starts on the imported data with the original's service key.
    let mut child = stratos(&data, port)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the service did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let base = format!("http://127.0.0.1:{port}");
    let doc: serde_json::Value = stratos_testkit::http_client()
        .get(format!("{base}/.well-known/did.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        format!(
            "did:key:{}",
            doc["verificationMethod"][0]["publicKeyMultibase"]
                .as_str()
                .unwrap()
        ),
        ts_service_key.did_key()
    );
    let fixture = ts_fixture(&Did::parse(SERVICE).unwrap());
    let wrong = &fixture[1].records[0];
    let content = wrong.content.as_deref().unwrap();
    assert_eq!(wrong.stored_cid, d1_cid(content));
    let get = |viewer: &'static str| {
        stratos_testkit::http_client()
            .get(format!(
                "{base}/xrpc/com.atproto.repo.getRecord?repo=did:plc:tsalice&\
                 collection=zone.stratos.feed.post&rkey={}",
                wrong.rkey
            ))
            .bearer_auth(viewer)
            .send()
    };
    let owner = get("did:plc:tsalice").await.unwrap();
    assert_eq!(owner.status(), 200);
    let body: serde_json::Value = owner.json().await.unwrap();
    assert_eq!(body["cid"], cid::dag_cbor(content).to_string());
    assert_ne!(body["cid"], wrong.stored_cid.as_str());
    let stranger = get("did:plc:stranger").await.unwrap();
    assert_eq!(stranger.status(), 400);
    let _ = child.kill();
    let _ = child.wait();
}
