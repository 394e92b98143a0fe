//! What the service's HTTP test files share: the test configuration (SQLite and local blobs in
//! a given directory, a loopback port chosen by the OS, dev mode, two offered boundaries) and
//! the shape of a post record.
// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::path::Path;

use stratos_service::config::Config;

/// The operator password of test services.
pub const ADMIN: &str = "correct horse battery staple";

/// The test configuration over `data_dir`, with `extra` variables set or overriding.
pub fn config(data_dir: &Path, extra: &[(&str, &str)]) -> Config {
    let mut vars: Vec<(String, String)> = vec![
        (
            "STRATOS_DATA_DIR".into(),
            data_dir.to_string_lossy().into_owned(),
        ),
        ("STRATOS_SERVICE_DID".into(), "did:web:nerv.tokyo.jp".into()),
        ("STRATOS_PUBLIC_URL".into(), "https://nerv.tokyo.jp".into()),
        ("STRATOS_ALLOWED_DOMAINS".into(), "general,other".into()),
        ("STRATOS_ENROLLMENT_MODE".into(), "open".into()),
        ("STRATOS_ADMIN_PASSWORD".into(), ADMIN.into()),
        ("STRATOS_DEV_MODE".into(), "true".into()),
        ("STRATOS_SQLITE_DURABILITY".into(), "relaxed".into()),
    ];
    for (k, v) in extra {
        vars.retain(|(key, _)| key != k);
        vars.push(((*k).into(), (*v).into()));
    }
    let mut config = Config::from_pairs(vars).expect("test configuration");
    config.port = 0;
    config
}

/// A `zone.stratos.feed.post` record of `service_did` in `boundaries` (bare names).
pub fn post_record(service_did: &str, text: &str, boundaries: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "$type": "zone.stratos.feed.post",
        "text": text,
        "boundary": {
            "$type": "zone.stratos.boundary.defs#Domains",
            "values": boundaries
                .iter()
                .map(|b| serde_json::json!({ "value": format!("{service_did}/{b}") }))
                .collect::<Vec<_>>(),
        },
        "createdAt": "2026-11-25T09:00:00.000Z",
    })
}

/// The record key at the end of an XRPC answer's `uri` (createRecord, getRecord, …).
pub fn rkey_of(body: &serde_json::Value) -> String {
    body["uri"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

/// A service on a loopback port over a temporary directory, with an HTTP client. Test files add
/// the calls they need in their own `impl Svc` blocks.
pub struct Svc {
    /// The running service (taken by [`Svc::stop`]).
    pub server: Option<stratos_service::RunningServer>,
    /// The client.
    pub http: reqwest::Client,
    /// `http://127.0.0.1:{port}`.
    pub base: String,
    _dir: tempfile::TempDir,
}

/// Starts a service on the test configuration with `extra` variables.
pub async fn start_with(extra: &[(&str, &str)]) -> Svc {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), extra);
    let server = stratos_service::start(config, 1).await.unwrap();
    Svc {
        base: server.url(),
        server: Some(server),
        http: stratos_testkit::http_client(),
        _dir: dir,
    }
}

impl Svc {
    /// The service's data directory.
    pub fn data_dir(&self) -> &Path {
        self._dir.path()
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /xrpc/{nsid}` with a JSON body; the status and the JSON answer (null if none).
    pub async fn post(
        &self,
        nsid: &str,
        auth: Option<&str>,
        body: serde_json::Value,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut req = self
            .http
            .post(self.url(&format!("/xrpc/{nsid}")))
            .json(&body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `GET {path}` with an `Authorization` header; asserts 200.
    pub async fn get_ok(&self, path: &str, auth: &str) -> reqwest::Response {
        let res = self
            .http
            .get(self.url(path))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::OK, "{path}");
        res
    }

    /// Stops the service and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await.unwrap();
        }
    }
}

/// `POST {base}/xrpc/{nsid}` with a JSON body and an `Authorization` header; asserts 200 and
/// returns the JSON answer.
pub async fn post_ok(
    http: &reqwest::Client,
    base: &str,
    nsid: &str,
    auth: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let res = http
        .post(format!("{base}/xrpc/{nsid}"))
        .header("authorization", auth)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap_or(serde_json::Value::Null);
    assert_eq!(status, reqwest::StatusCode::OK, "{nsid}: {body}");
    body
}

/// Makes `net` the OAuth authorization server of the PDS at its own URL (protected-resource
/// metadata, authorization-server metadata, a JWKS with `as_key` as `as-1`), so that access
/// tokens `as_key` signs verify at the service.
pub fn stub_authorization_server(
    net: &stratos_testkit::http_stub::StubServer,
    as_key: &stratos_domain::crypto::Keypair,
) {
    let origin = net.url();
    let mut jwk = stratos_domain::auth::jwk_from_public_key(as_key.public_key());
    jwk["kid"] = serde_json::json!("as-1");
    net.json(
        "/.well-known/oauth-protected-resource",
        &serde_json::json!({ "resource": origin, "authorization_servers": [origin] }),
    );
    net.json(
        "/.well-known/oauth-authorization-server",
        &serde_json::json!({ "issuer": origin, "jwks_uri": format!("{origin}/oauth/jwks") }),
    );
    net.json("/oauth/jwks", &serde_json::json!({ "keys": [jwk] }));
}

/// Deletes `did`'s events up to `through_seq` from its SQLite actor database under `data_dir`,
/// as a retention job would.
pub async fn drop_oldest_events(data_dir: &Path, did: &str, through_seq: u64) {
    use sea_orm::ConnectionTrait as _;
    let path = stratos_sqlite::actor_dir(data_dir, did).join("stratos.sqlite");
    let db = sea_orm::Database::connect(format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    db.execute_unprepared(&format!("DELETE FROM event WHERE seq <= {through_seq}"))
        .await
        .unwrap();
}

/// The CAR of a repository of `did` built elsewhere (signed by a key of its own): `n` posts of
/// `service_did` in `general`, "imported 0" … — what `importRepo` takes.
pub fn foreign_repo_car(did: &stratos_domain::syntax::Did, service_did: &str, n: usize) -> Vec<u8> {
    use stratos_domain::crypto::{KeyAlgorithm, Keypair};
    let elsewhere = Keypair::generate(KeyAlgorithm::P256);
    let mut tids = stratos_domain::tid::TidGenerator::with_clock_id(5);
    let posts = stratos_domain::syntax::Nsid::parse("zone.stratos.feed.post").unwrap();
    let writes: Vec<_> = (0..n)
        .map(|i| stratos_domain::repo::RecordWrite::Create {
            collection: posts.clone(),
            rkey: stratos_domain::syntax::RecordKey::parse(tids.next_now().as_str()).unwrap(),
            record: stratos_domain::data::encode(
                &stratos_domain::data::json_to_ipld(&post_record(
                    service_did,
                    &format!("imported {i}"),
                    &["general"],
                ))
                .unwrap(),
            )
            .unwrap(),
        })
        .collect();
    let store = stratos_domain::blocks::BlockMap::new();
    let out =
        stratos_domain::repo::apply_writes(&store, did, None, &writes, tids.next_now(), &elsewhere)
            .unwrap();
    stratos_domain::car::write_repo(&out.new_blocks, &out.head.commit, Vec::new()).unwrap()
}
