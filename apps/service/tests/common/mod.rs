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
        http: reqwest::Client::new(),
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

    /// Stops the service and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await.unwrap();
        }
    }
}
