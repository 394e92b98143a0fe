//! A typed XRPC client for a Stratos service: the `com.atproto.repo.*` and `com.atproto.sync.*`
//! methods it serves and every `zone.stratos.*` method, with typed inputs, outputs and errors.
//!
//! Authentication ([`Auth`]): a service-auth JWT minted per call from a caller-supplied signer
//! (`lxm` = the method, audience = the service DID), a DPoP-bound access token
//! ([`DpopSession`]: a proof per request naming the Stratos URL, the server's `DPoP-Nonce`
//! learned and retried once), a bearer (the admin password, or an account DID on a development
//! service), or none.
//!
//! ```no_run
//! # async fn run() -> Result<(), stratos_client::ClientError> {
//! use std::sync::Arc;
//! use stratos_client::xrpc::{Auth, StratosClient};
//! use stratos_domain::crypto::{KeyAlgorithm, Keypair};
//! use stratos_domain::syntax::{Did, Nsid, RecordKey};
//!
//! let appview = Did::parse("did:web:appview.example").map_err(|e| stratos_client::ClientError::Url(e.to_string()))?;
//! let key = Arc::new(Keypair::generate(KeyAlgorithm::K256)); // the AppView's #atproto key
//! let client = StratosClient::new("https://stratos.example")?
//!     .with_auth(Auth::service_jwt(key, appview, "did:web:stratos.example"));
//! let did = Did::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz").map_err(|e| stratos_client::ClientError::Url(e.to_string()))?;
//! let posts = client
//!     .list_records(&did, &Nsid::parse("zone.stratos.feed.post").map_err(|e| stratos_client::ClientError::Url(e.to_string()))?, &Default::default())
//!     .await?;
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stratos_domain::Cid;
use stratos_domain::auth::mint_service_jwt;
use stratos_domain::crypto::{PublicKey, Signer};
use stratos_domain::oauth::{DpopKey, DpopProofParams};
use stratos_domain::syntax::{AtUri, Did, Nsid, RecordKey, Tid};

use crate::ClientError;
use crate::verify::{self, VerifiedRecord, VerifiedRepo};

/// Largest answer read (a repository export of a large account; everything else is small).
pub const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;

/// Lifetime of the service-auth JWTs minted per call.
const JWT_TTL_SECS: i64 = 60;

/// How calls authenticate.
#[derive(Clone, Default)]
pub enum Auth {
    /// No credentials (public reads: a caller without access sees what anyone sees).
    #[default]
    None,
    /// `Authorization: Bearer <value>`: the admin password, or an account DID on a service in
    /// development mode.
    Bearer(String),
    /// A service-auth JWT per call, signed by the issuer's `#atproto` key.
    ServiceJwt {
        /// The issuer's signing key.
        signer: Arc<dyn Signer>,
        /// The issuer (an AppView, or the account itself).
        iss: Did,
        /// The service DID (`aud`).
        aud: String,
    },
    /// A DPoP-bound access token (an account's OAuth session).
    Dpop(Arc<DpopSession>),
}

impl Auth {
    /// [`Auth::ServiceJwt`] from its parts.
    pub fn service_jwt(signer: Arc<dyn Signer>, iss: Did, aud: &str) -> Self {
        Auth::ServiceJwt {
            signer,
            iss,
            aud: aud.to_owned(),
        }
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials are never printed.
        match self {
            Auth::None => f.write_str("None"),
            Auth::Bearer(_) => f.write_str("Bearer(..)"),
            Auth::ServiceJwt { iss, aud, .. } => {
                write!(f, "ServiceJwt {{ iss: {iss}, aud: {aud} }}")
            }
            Auth::Dpop(_) => f.write_str("Dpop(..)"),
        }
    }
}

/// A DPoP-bound access token and its key; remembers the service's latest `DPoP-Nonce`.
pub struct DpopSession {
    access_token: String,
    key: DpopKey,
    nonce: Mutex<Option<String>>,
}

impl DpopSession {
    /// A session for `access_token`, bound to `key`.
    pub fn new(access_token: String, key: DpopKey) -> Self {
        Self {
            access_token,
            key,
            nonce: Mutex::new(None),
        }
    }

    /// The session of an account authorised through the library's OAuth client
    /// (`stratos_ports::pds_client::AtprotoOAuthClient`): its access token and DPoP key. The
    /// service accepts it when it can verify the token against the keys of the account's
    /// authorization server.
    pub fn from_session(session: &stratos_domain::oauth::Session) -> Self {
        Self::new(session.access_token.clone(), session.dpop_key.clone())
    }

    fn nonce(&self) -> Option<String> {
        self.nonce.lock().map(|n| n.clone()).unwrap_or(None)
    }

    fn set_nonce(&self, nonce: Option<String>) {
        if let (Some(n), Ok(mut slot)) = (nonce, self.nonce.lock()) {
            *slot = Some(n);
        }
    }
}

impl std::fmt::Debug for DpopSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopSession").finish_non_exhaustive()
    }
}

/// A client of one Stratos service.
#[derive(Debug, Clone)]
pub struct StratosClient {
    base: String,
    /// The URL DPoP proofs name, when the service is reached at another (a proxy, a test).
    public: Option<String>,
    http: reqwest::Client,
    auth: Auth,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A request body.
enum Body {
    Json(Value),
    Bytes {
        content_type: String,
        bytes: Vec<u8>,
    },
}

impl StratosClient {
    /// A client of the service at `base` (`http(s)://host[:port]`), without credentials, with
    /// a 30 s timeout. The URL is the caller's (from a checked enrollment, say). HTTPS runs on
    /// rustls: unless the process already has a rustls crypto provider, this installs ring as
    /// the process default.
    pub fn new(base: &str) -> Result<Self, ClientError> {
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(ClientError::Url(format!("{base} is not an http(s) URL")));
        }
        ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            public: None,
            http,
            auth: Auth::None,
        })
    }

    /// The same client with other credentials.
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// The service's public URL, when it differs from the one the client connects to (behind a
    /// proxy or in tests): DPoP proofs must name the URL the service knows itself by.
    pub fn with_public_url(mut self, public: &str) -> Self {
        self.public = Some(public.trim_end_matches('/').to_owned());
        self
    }

    /// The same client over another HTTP client (proxies, timeouts, TLS roots). reqwest is built
    /// without a rustls crypto provider of its own: install one (say
    /// `rustls::crypto::ring::default_provider().install_default()`) before building `http`, or
    /// build it after [`StratosClient::new`], which installs ring.
    pub fn with_http(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// The service's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: Method,
        nsid: &str,
        query: &[(&str, String)],
        body: Option<&Body>,
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>), ClientError> {
        let mut url = format!("{}/xrpc/{nsid}", self.base);
        let htu = format!(
            "{}/xrpc/{nsid}",
            self.public.as_deref().unwrap_or(&self.base)
        );
        if !query.is_empty() {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in query {
                q.append_pair(k, v);
            }
            url.push('?');
            url.push_str(&q.finish());
        }
        // One retry, when a DPoP server asks for its nonce.
        for attempt in 0..2 {
            let mut request = self.http.request(method.clone(), &url);
            match &self.auth {
                Auth::None => {}
                Auth::Bearer(token) => request = request.bearer_auth(token),
                Auth::ServiceJwt { signer, iss, aud } => {
                    let token = mint_service_jwt(
                        signer.as_ref(),
                        iss,
                        aud,
                        Some(nsid),
                        now_secs(),
                        JWT_TTL_SECS,
                    )
                    .map_err(|e| ClientError::Auth(e.to_string()))?;
                    request = request.bearer_auth(token);
                }
                Auth::Dpop(session) => {
                    let nonce = session.nonce();
                    let proof = session
                        .key
                        .proof(&DpopProofParams {
                            method: method.as_str(),
                            url: &htu,
                            nonce: nonce.as_deref(),
                            access_token: Some(&session.access_token),
                            now: now_secs(),
                        })
                        .map_err(|e| ClientError::Auth(e.to_string()))?;
                    request = request
                        .header("authorization", format!("DPoP {}", session.access_token))
                        .header("dpop", proof);
                }
            }
            request = match body {
                Some(Body::Json(v)) => request
                    .header("content-type", "application/json")
                    .body(v.to_string()),
                Some(Body::Bytes {
                    content_type,
                    bytes,
                }) => request
                    .header("content-type", content_type.as_str())
                    .body(bytes.clone()),
                None => request,
            };
            let mut response = request
                .send()
                .await
                .map_err(|e| ClientError::Connect(e.to_string()))?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            if let Auth::Dpop(session) = &self.auth {
                let nonce = headers
                    .get("dpop-nonce")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let retry = status == 401 && nonce.is_some() && attempt == 0;
                session.set_nonce(nonce);
                if retry {
                    continue;
                }
            }
            if response
                .content_length()
                .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
            {
                return Err(ClientError::ResponseTooLarge(MAX_RESPONSE_BYTES));
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| ClientError::Connect(e.to_string()))?
            {
                if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(ClientError::ResponseTooLarge(MAX_RESPONSE_BYTES));
                }
                bytes.extend_from_slice(&chunk);
            }
            if !(200..300).contains(&status) {
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                return Err(ClientError::Xrpc {
                    status,
                    error: body["error"].as_str().unwrap_or("Unknown").to_owned(),
                    message: body["message"].as_str().unwrap_or_default().to_owned(),
                });
            }
            return Ok((headers, bytes));
        }
        Err(ClientError::Auth(
            "the service kept asking for a new DPoP nonce".into(),
        ))
    }

    async fn query<O: DeserializeOwned>(
        &self,
        nsid: &str,
        query: &[(&str, String)],
    ) -> Result<O, ClientError> {
        let (_, bytes) = self.send(Method::GET, nsid, query, None).await?;
        decode(&bytes)
    }

    async fn query_bytes(
        &self,
        nsid: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<u8>, ClientError> {
        self.send(Method::GET, nsid, query, None)
            .await
            .map(|(_, b)| b)
    }

    async fn procedure<O: DeserializeOwned>(
        &self,
        nsid: &str,
        input: Value,
    ) -> Result<O, ClientError> {
        let (_, bytes) = self
            .send(Method::POST, nsid, &[], Some(&Body::Json(input)))
            .await?;
        decode(&bytes)
    }

    // ---- com.atproto.repo ----

    /// `com.atproto.repo.getRecord`: the record as the caller may see it.
    pub async fn get_record(
        &self,
        repo: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
        cid: Option<&Cid>,
    ) -> Result<RecordView, ClientError> {
        let mut q = vec![
            ("repo", repo.to_string()),
            ("collection", collection.to_string()),
            ("rkey", rkey.to_string()),
        ];
        if let Some(cid) = cid {
            q.push(("cid", cid.to_string()));
        }
        self.query("com.atproto.repo.getRecord", &q).await
    }

    /// `com.atproto.repo.listRecords`: the records of a collection the caller may see.
    pub async fn list_records(
        &self,
        repo: &Did,
        collection: &Nsid,
        page: &Page,
    ) -> Result<RecordList, ClientError> {
        let mut q = vec![
            ("repo", repo.to_string()),
            ("collection", collection.to_string()),
        ];
        page.push(&mut q);
        if page.reverse {
            q.push(("reverse", "true".into()));
        }
        self.query("com.atproto.repo.listRecords", &q).await
    }

    /// `com.atproto.repo.describeRepo`.
    pub async fn describe_repo(&self, repo: &Did) -> Result<RepoDescription, ClientError> {
        self.query(
            "com.atproto.repo.describeRepo",
            &[("repo", repo.to_string())],
        )
        .await
    }

    /// `com.atproto.repo.createRecord` (`rkey` `None`: a TID chosen by the service).
    pub async fn create_record(
        &self,
        repo: &Did,
        collection: &Nsid,
        rkey: Option<&RecordKey>,
        record: &Value,
    ) -> Result<WriteResult, ClientError> {
        let mut input = json!({ "repo": repo, "collection": collection, "record": record });
        if let Some(rkey) = rkey {
            input["rkey"] = json!(rkey);
        }
        self.procedure("com.atproto.repo.createRecord", input).await
    }

    /// `com.atproto.repo.putRecord` (create or replace; `swap_record` guards the replaced CID).
    pub async fn put_record(
        &self,
        repo: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
        record: &Value,
        swap_record: Option<&Cid>,
    ) -> Result<WriteResult, ClientError> {
        let mut input =
            json!({ "repo": repo, "collection": collection, "rkey": rkey, "record": record });
        if let Some(cid) = swap_record {
            input["swapRecord"] = json!(cid.to_string());
        }
        self.procedure("com.atproto.repo.putRecord", input).await
    }

    /// `com.atproto.repo.deleteRecord`.
    pub async fn delete_record(
        &self,
        repo: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> Result<DeleteResult, ClientError> {
        self.procedure(
            "com.atproto.repo.deleteRecord",
            json!({ "repo": repo, "collection": collection, "rkey": rkey }),
        )
        .await
    }

    /// `com.atproto.repo.applyWrites`: all writes in one commit, or none.
    pub async fn apply_writes(
        &self,
        repo: &Did,
        writes: &[Write],
    ) -> Result<ApplyWritesResult, ClientError> {
        let writes: Vec<Value> = writes.iter().map(write_json).collect();
        self.procedure(
            "com.atproto.repo.applyWrites",
            json!({ "repo": repo, "writes": writes }),
        )
        .await
    }

    /// `com.atproto.repo.uploadBlob`: the blob reference to put in a record.
    pub async fn upload_blob(&self, bytes: Vec<u8>, mime_type: &str) -> Result<Value, ClientError> {
        let body = Body::Bytes {
            content_type: mime_type.to_owned(),
            bytes,
        };
        let (_, out) = self
            .send(
                Method::POST,
                "com.atproto.repo.uploadBlob",
                &[],
                Some(&body),
            )
            .await?;
        let out: Value = decode(&out)?;
        Ok(out["blob"].clone())
    }

    // ---- com.atproto.sync ----

    /// `com.atproto.sync.getRecord`: the proof CAR, unchecked.
    pub async fn get_record_proof(
        &self,
        did: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> Result<Vec<u8>, ClientError> {
        self.query_bytes(
            "com.atproto.sync.getRecord",
            &[
                ("did", did.to_string()),
                ("collection", collection.to_string()),
                ("rkey", rkey.to_string()),
            ],
        )
        .await
    }

    /// `com.atproto.sync.getRecord`, verified with the account's signing key
    /// ([`verify::record_proof`]).
    pub async fn get_verified_record(
        &self,
        key: &PublicKey,
        did: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> Result<Option<VerifiedRecord>, ClientError> {
        let car = self.get_record_proof(did, collection, rkey).await?;
        verify::record_proof(key, did, collection, rkey, &car)
    }

    /// `com.atproto.sync.getLatestCommit`.
    pub async fn get_latest_commit(&self, did: &Did) -> Result<LatestCommit, ClientError> {
        self.query(
            "com.atproto.sync.getLatestCommit",
            &[("did", did.to_string())],
        )
        .await
    }

    /// `com.atproto.sync.getBlob`: the blob's bytes.
    pub async fn get_blob(&self, did: &Did, cid: &Cid) -> Result<Vec<u8>, ClientError> {
        self.query_bytes(
            "com.atproto.sync.getBlob",
            &[("did", did.to_string()), ("cid", cid.to_string())],
        )
        .await
    }

    /// `com.atproto.sync.listBlobs` (`since`: blobs of commits after that revision).
    pub async fn list_blobs(
        &self,
        did: &Did,
        since: Option<&Tid>,
        page: &Page,
    ) -> Result<BlobList, ClientError> {
        let mut q = vec![("did", did.to_string())];
        if let Some(since) = since {
            q.push(("since", since.to_string()));
        }
        page.push(&mut q);
        self.query("com.atproto.sync.listBlobs", &q).await
    }

    /// `com.atproto.sync.getRepo`: the repository CAR, unchecked.
    pub async fn get_repo(&self, did: &Did) -> Result<Vec<u8>, ClientError> {
        self.query_bytes("com.atproto.sync.getRepo", &[("did", did.to_string())])
            .await
    }

    // ---- zone.stratos ----

    /// `zone.stratos.sync.getRepo`: the repository CAR, unchecked.
    pub async fn export_repo(&self, did: &Did) -> Result<Vec<u8>, ClientError> {
        self.query_bytes("zone.stratos.sync.getRepo", &[("did", did.to_string())])
            .await
    }

    /// `zone.stratos.sync.getRepo`, verified with the account's signing key
    /// ([`verify::repo_export`]). Returns the verified summary and the CAR.
    pub async fn export_verified_repo(
        &self,
        key: &PublicKey,
        did: &Did,
    ) -> Result<(VerifiedRepo, Vec<u8>), ClientError> {
        let car = self.export_repo(did).await?;
        let repo = verify::repo_export(key, did, &car)?;
        Ok((repo, car))
    }

    /// The service's DID document as it serves it (`/.well-known/did.json`, a `did:web`
    /// service's): its `id` and `#atproto` key check the attestations of enrollment records.
    pub async fn did_document(&self) -> Result<Value, ClientError> {
        /// A DID document is a few kilobytes; more is not one.
        const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
        let url = format!("{}/.well-known/did.json", self.base);
        let mut res = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let status = res.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(ClientError::Xrpc {
                status,
                error: "NotFound".into(),
                message: format!("{url} answered {status}"),
            });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?
        {
            if bytes.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(ClientError::ResponseTooLarge(MAX_DOCUMENT_BYTES));
            }
            bytes.extend_from_slice(&chunk);
        }
        decode(&bytes)
    }

    /// `zone.stratos.sync.getRepo` as a trusted sync consumer (an indexer holding the service's
    /// sync token as its bearer): any account's export CAR, unchecked, and the stream position
    /// it covers (`Stratos-Seq`: resume the account's stream after it, skipping commits of the
    /// export's revision or older). Verify it with [`verify::repo_export_records`] (CPU-bound:
    /// off the async workers for large repositories).
    pub async fn export_car_for_sync(
        &self,
        did: &Did,
    ) -> Result<(Vec<u8>, Option<u64>), ClientError> {
        let (headers, car) = self
            .send(
                Method::GET,
                "zone.stratos.sync.getRepo",
                &[("did", did.to_string())],
                None,
            )
            .await?;
        let seq = headers
            .get("stratos-seq")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok((car, seq))
    }

    /// `zone.stratos.repo.importRepo`: replaces the caller's repository with the CAR's records;
    /// returns how many were imported.
    pub async fn import_repo(&self, car: Vec<u8>) -> Result<u64, ClientError> {
        let body = Body::Bytes {
            content_type: "application/vnd.ipld.car".into(),
            bytes: car,
        };
        let (_, out) = self
            .send(
                Method::POST,
                "zone.stratos.repo.importRepo",
                &[],
                Some(&body),
            )
            .await?;
        let out: Value = decode(&out)?;
        out["imported"]
            .as_u64()
            .ok_or_else(|| ClientError::Frame("importRepo answered without `imported`".into()))
    }

    /// `zone.stratos.repo.hydrateRecord`: one record by URI, if the caller may see it.
    pub async fn hydrate_record(
        &self,
        uri: &AtUri,
        cid: Option<&Cid>,
    ) -> Result<RecordView, ClientError> {
        let mut q = vec![("uri", uri.to_string())];
        if let Some(cid) = cid {
            q.push(("cid", cid.to_string()));
        }
        self.query("zone.stratos.repo.hydrateRecord", &q).await
    }

    /// `zone.stratos.repo.hydrateRecords`: many records by URI; those the caller may not see,
    /// or that do not exist, are listed in `not_found` alike.
    pub async fn hydrate_records(&self, uris: &[AtUri]) -> Result<Hydrated, ClientError> {
        let uris: Vec<String> = uris.iter().map(ToString::to_string).collect();
        self.procedure("zone.stratos.repo.hydrateRecords", json!({ "uris": uris }))
            .await
    }

    /// `zone.stratos.enrollment.status` (the account itself gets its signing key, boundaries
    /// and a fresh attestation; others whether it is enrolled).
    pub async fn enrollment_status(&self, did: &Did) -> Result<EnrollmentStatus, ClientError> {
        self.query(
            "zone.stratos.enrollment.status",
            &[("did", did.to_string())],
        )
        .await
    }

    /// `zone.stratos.enrollment.unenroll`: the caller leaves the service.
    pub async fn unenroll(&self) -> Result<(), ClientError> {
        let _: Value = self
            .procedure("zone.stratos.enrollment.unenroll", json!({}))
            .await?;
        Ok(())
    }

    /// `zone.stratos.identity.resolveEnrollments`.
    pub async fn resolve_enrollments(&self, did: &Did) -> Result<ResolvedEnrollment, ClientError> {
        self.query(
            "zone.stratos.identity.resolveEnrollments",
            &[("did", did.to_string())],
        )
        .await
    }

    /// `zone.stratos.server.listDomains`: the boundaries (domains) the service offers.
    pub async fn list_domains(&self) -> Result<Vec<String>, ClientError> {
        let out: Value = self.query("zone.stratos.server.listDomains", &[]).await?;
        Ok(out["domains"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().map(str::to_owned))
            .collect())
    }

    /// `zone.stratos.admin.enrollActor` (admin): enrolls `did` with `boundaries`.
    pub async fn admin_enroll(&self, did: &Did, boundaries: &[&str]) -> Result<Value, ClientError> {
        self.procedure(
            "zone.stratos.admin.enrollActor",
            json!({ "did": did, "boundaries": boundaries }),
        )
        .await
    }

    /// `zone.stratos.admin.addBoundary` (admin).
    pub async fn admin_add_boundary(
        &self,
        did: &Did,
        boundary: &str,
    ) -> Result<Value, ClientError> {
        self.procedure(
            "zone.stratos.admin.addBoundary",
            json!({ "did": did, "boundary": boundary }),
        )
        .await
    }

    /// `zone.stratos.admin.removeBoundary` (admin).
    pub async fn admin_remove_boundary(
        &self,
        did: &Did,
        boundary: &str,
    ) -> Result<Value, ClientError> {
        self.procedure(
            "zone.stratos.admin.removeBoundary",
            json!({ "did": did, "boundary": boundary }),
        )
        .await
    }

    /// `zone.stratos.admin.setBoundaries` (admin).
    pub async fn admin_set_boundaries(
        &self,
        did: &Did,
        boundaries: &[&str],
    ) -> Result<Value, ClientError> {
        self.procedure(
            "zone.stratos.admin.setBoundaries",
            json!({ "did": did, "boundaries": boundaries }),
        )
        .await
    }

    /// `zone.stratos.admin.listDeadLetters` (admin).
    pub async fn admin_list_dead_letters(&self, page: &Page) -> Result<Value, ClientError> {
        let mut q = Vec::new();
        page.push(&mut q);
        self.query("zone.stratos.admin.listDeadLetters", &q).await
    }

    /// `zone.stratos.admin.retryDeadLetter` (admin); `id` as `listDeadLetters` gives it.
    pub async fn admin_retry_dead_letter(&self, id: &str) -> Result<Value, ClientError> {
        self.procedure("zone.stratos.admin.retryDeadLetter", json!({ "id": id }))
            .await
    }
}

fn decode<O: DeserializeOwned>(bytes: &[u8]) -> Result<O, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| ClientError::Frame(format!("unexpected answer: {e}")))
}

/// Paging of list calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Most items (the service's default when `None`).
    pub limit: Option<u32>,
    /// The cursor of the previous page.
    pub cursor: Option<String>,
    /// Newest first (listRecords).
    pub reverse: bool,
}

impl Page {
    fn push(&self, q: &mut Vec<(&str, String)>) {
        if let Some(limit) = self.limit {
            q.push(("limit", limit.to_string()));
        }
        if let Some(cursor) = &self.cursor {
            q.push(("cursor", cursor.clone()));
        }
    }
}

/// One write of [`StratosClient::apply_writes`]: the library's own write type.
pub use stratos_ports::usecases::records::WriteOp as Write;

/// A write as `applyWrites` takes it.
fn write_json(write: &Write) -> Value {
    match write {
        Write::Create {
            collection,
            rkey,
            value,
        } => {
            let mut w = json!({ "$type": "com.atproto.repo.applyWrites#create", "collection": collection, "value": value });
            if let Some(rkey) = rkey {
                w["rkey"] = json!(rkey);
            }
            w
        }
        Write::Update {
            collection,
            rkey,
            value,
        } => json!({
            "$type": "com.atproto.repo.applyWrites#update", "collection": collection, "rkey": rkey, "value": value,
        }),
        Write::Delete { collection, rkey } => json!({
            "$type": "com.atproto.repo.applyWrites#delete", "collection": collection, "rkey": rkey,
        }),
    }
}

/// A record as read.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RecordView {
    /// Its AT-URI.
    pub uri: String,
    /// Its CID.
    pub cid: Option<String>,
    /// The record (atproto JSON).
    pub value: Value,
}

/// A page of records.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RecordList {
    /// The records.
    pub records: Vec<RecordView>,
    /// The next page's cursor.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// `describeRepo`'s answer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoDescription {
    /// The account.
    pub did: String,
    /// Collections that hold records.
    pub collections: Vec<String>,
}

/// The commit a write made.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CommitRef {
    /// Its CID.
    pub cid: String,
    /// Its revision.
    pub rev: String,
}

/// `createRecord` / `putRecord`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteResult {
    /// The record's AT-URI.
    pub uri: String,
    /// The record's CID.
    pub cid: String,
    /// The commit.
    #[serde(default)]
    pub commit: Option<CommitRef>,
}

/// `deleteRecord`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct DeleteResult {
    /// The commit (absent when nothing was there to delete).
    #[serde(default)]
    pub commit: Option<CommitRef>,
}

/// `applyWrites`' answer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ApplyWritesResult {
    /// The commit.
    pub commit: CommitRef,
    /// Per write, in order (`uri`/`cid` for creates and updates).
    pub results: Vec<Value>,
}

/// `getLatestCommit`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct LatestCommit {
    /// The commit's CID.
    pub cid: String,
    /// Its revision.
    pub rev: String,
}

/// A page of blob CIDs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct BlobList {
    /// The CIDs.
    pub cids: Vec<String>,
    /// The next page's cursor.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// `hydrateRecords`' answer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hydrated {
    /// The records the caller may see.
    pub records: Vec<RecordView>,
    /// URIs of records that do not exist or that the caller may not see (not told apart).
    #[serde(default)]
    pub not_found: Vec<String>,
}

/// `enrollment.status`' answer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentStatus {
    /// The account.
    pub did: String,
    /// Whether it is enrolled.
    pub enrolled: bool,
    /// When (enrolled accounts).
    #[serde(default)]
    pub enrolled_at: Option<String>,
    /// Its signing key (`did:key`).
    #[serde(default)]
    pub signing_key: Option<String>,
    /// Its boundaries (the account itself).
    #[serde(default)]
    pub boundaries: Vec<Value>,
    /// A fresh attestation (the account itself).
    #[serde(default)]
    pub attestation: Option<Value>,
    /// Whether the service needs the account to authorise it again (the account itself).
    #[serde(default)]
    pub needs_authorization: Option<bool>,
}

#[async_trait::async_trait]
impl stratos_ports::appview_store::BoundaryResolver for StratosClient {
    /// `zone.stratos.identity.resolveEnrollments`: the AppView SDK's lookup of a viewer's
    /// boundaries when its index has no enrollment for them.
    async fn resolve(
        &self,
        did: &Did,
    ) -> Result<Option<stratos_ports::appview_store::IndexedEnrollment>, stratos_ports::Cause> {
        let r = self
            .resolve_enrollments(did)
            .await
            .map_err(stratos_ports::Cause::new)?;
        Ok(r.enrolled
            .then(|| stratos_ports::appview_store::IndexedEnrollment {
                did: did.clone(),
                service_url: self.base.clone(),
                enrolled_at: String::new(),
                boundaries: r.boundaries,
            }))
    }
}

/// `resolveEnrollments`' answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ResolvedEnrollment {
    /// The account.
    pub did: String,
    /// Whether it is enrolled.
    pub enrolled: bool,
    /// Its boundaries.
    #[serde(default)]
    pub boundaries: Vec<String>,
}

/// rustls needs a process-wide crypto provider and reqwest is built without one of its own (its
/// default, aws-lc-rs, is a long C build): ring, the crypto the domain already uses, is installed
/// unless the embedding process installed a provider first.
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // An Err means another thread installed one in between: that one serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
