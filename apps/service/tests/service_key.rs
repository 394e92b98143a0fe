#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The service key: adopted from a TS original's data directory (`signing_key`, raw 32 bytes),
//! kept in `service_key` after that, read from `STRATOS_SERVICE_KEY_FILE` (which must exist), and
//! what the running binary publishes — plus the admin password read from a `_FILE`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stratos_domain::crypto::{KeyAlgorithm, Keypair};
use stratos_service::state::load_service_key;

const BIN: &str = env!("CARGO_BIN_EXE_stratos");

fn raw_key() -> (Vec<u8>, String) {
    let key = Keypair::generate(KeyAlgorithm::K256);
    (key.private_bytes().to_vec(), key.did_key())
}

#[test]
fn the_ts_originals_key_is_adopted_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, did_key) = raw_key();
    std::fs::write(dir.path().join("signing_key"), &bytes).unwrap();

    let adopted = load_service_key(dir.path(), None).unwrap();
    assert_eq!(adopted.did_key(), did_key);
    let written = std::fs::read_to_string(dir.path().join("service_key")).unwrap();
    assert_eq!(written.trim(), hex::encode(&bytes));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("service_key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the key file is readable by others");
    }
    // From now on service_key is the key, whatever happens to the original's file.
    std::fs::remove_file(dir.path().join("signing_key")).unwrap();
    assert_eq!(
        load_service_key(dir.path(), None).unwrap().did_key(),
        did_key
    );
}

#[test]
fn a_damaged_original_key_stops_the_start_instead_of_replacing_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("signing_key"), [7u8; 31]).unwrap();
    let err = load_service_key(dir.path(), None).unwrap_err().to_string();
    assert!(err.contains("TS original"), "{err}");
    assert!(!dir.path().join("service_key").exists());
}

#[test]
fn without_an_original_a_new_key_is_made_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = load_service_key(dir.path(), None).unwrap();
    let again = load_service_key(dir.path(), None).unwrap();
    assert_eq!(first.did_key(), again.did_key());
}

#[test]
fn a_configured_key_file_must_exist_and_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared_key");
    let err = load_service_key(dir.path(), Some(&shared))
        .unwrap_err()
        .to_string();
    assert!(err.contains("STRATOS_SERVICE_KEY_FILE"), "{err}");
    assert!(!shared.exists(), "a missing shared key is never invented");
    let (bytes, did_key) = raw_key();
    std::fs::write(&shared, format!("{}\n", hex::encode(&bytes))).unwrap();
    assert_eq!(
        load_service_key(dir.path(), Some(&shared))
            .unwrap()
            .did_key(),
        did_key
    );
    // Two instances with two data directories and the one file: one key.
    let other = tempfile::tempdir().unwrap();
    assert_eq!(
        load_service_key(other.path(), Some(&shared))
            .unwrap()
            .did_key(),
        did_key
    );
    assert!(!dir.path().join("service_key").exists());
}

#[tokio::test]
async fn the_binary_publishes_the_adopted_key_and_reads_the_admin_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (bytes, did_key) = raw_key();
    std::fs::write(data.join("signing_key"), &bytes).unwrap();
    let password_file = dir.path().join("admin_password");
    std::fs::write(&password_file, "from-a-file\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .env_clear()
        .env("STRATOS_DATA_DIR", &data)
        .env("STRATOS_PORT", port.to_string())
        .env("STRATOS_SERVICE_DID", "did:web:stratos.example")
        .env("STRATOS_ADMIN_PASSWORD_FILE", &password_file)
        .env("LOG_LEVEL", "silent")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the service did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let doc: serde_json::Value = stratos_testkit::http_client()
        .get(format!("{base}/.well-known/did.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let published = doc["verificationMethod"][0]["publicKeyMultibase"]
        .as_str()
        .unwrap();
    assert_eq!(format!("did:key:{published}"), did_key);
    let http = stratos_testkit::http_client();
    let list = |password: &'static str| {
        http.get(format!("{base}/xrpc/zone.stratos.admin.listDeadLetters"))
            .bearer_auth(password)
            .send()
    };
    assert_eq!(list("from-a-file").await.unwrap().status(), 200);
    assert_eq!(list("from-a-fil").await.unwrap().status(), 401);
    let _ = child.kill();
    let _ = child.wait();
}
