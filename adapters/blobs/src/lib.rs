//! Blob storage over opendal. One implementation for every opendal service: the local file
//! system and S3 (AWS or any S3-protocol server).
//!
//! Layout under the operator's root:
//! - `{did}/{cid}`: permanent blobs;
//! - `tmp/{did}/{key}`: uploads not yet referenced by a record;
//! - `quarantine/{did}/{cid}`: blobs taken out of service (kept for review).
//!
//! DIDs start with `did:`, so they never collide with the `tmp` and `quarantine` areas.
#![deny(missing_docs)] // a library crate: every public item is documented (checked in CI)

use std::path::Path;

use async_trait::async_trait;
use opendal::{ErrorKind, Operator};
use rand_core::{OsRng, RngCore};
use stratos_domain::Cid;
use stratos_domain::syntax::Did;
use stratos_ports::blob_store::{BlobResult, BlobStore, BlobStoreError};

/// Failures while setting the store up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobSetupError {
    /// opendal rejected the configuration.
    #[error("blob store configuration: {0}")]
    Config(#[source] stratos_ports::Cause),
}

impl From<opendal::Error> for BlobSetupError {
    fn from(e: opendal::Error) -> Self {
        BlobSetupError::Config(stratos_ports::Cause::new(e))
    }
}

/// Where an S3 store keeps its blobs.
#[cfg(feature = "s3")]
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Region (`us-east-1` for most self-hosted servers).
    pub region: String,
    /// Endpoint URL for a self-hosted server (path-style addressing); `None` for AWS.
    pub endpoint: Option<String>,
    /// Key prefix inside the bucket (`/` for the whole bucket).
    pub root: String,
    /// Explicit credentials; `None` uses the usual AWS environment and profile chain.
    pub access_key_id: Option<String>,
    /// Secret for `access_key_id`.
    pub secret_access_key: Option<String>,
}

#[cfg(feature = "s3")]
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("root", &self.root)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// [`BlobStore`] over an opendal [`Operator`].
#[derive(Debug, Clone)]
pub struct OpendalBlobStore {
    op: Operator,
}

fn backend(e: opendal::Error) -> BlobStoreError {
    BlobStoreError::Backend(stratos_ports::Cause::new(e))
}

fn permanent(did: &Did, cid: &Cid) -> String {
    format!("{did}/{cid}")
}

fn temp(did: &Did, key: &str) -> String {
    format!("tmp/{did}/{key}")
}

fn quarantined(did: &Did, cid: &Cid) -> String {
    format!("quarantine/{did}/{cid}")
}

/// Temporary keys are 32 hex characters; anything else (e.g. `../x`) is refused.
fn valid_temp_key(key: &str) -> bool {
    key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

impl OpendalBlobStore {
    /// A store over any configured operator (S3, memory, …).
    pub fn new(op: Operator) -> Self {
        Self { op }
    }

    /// A store over files under `root`.
    pub fn fs(root: &Path) -> Result<Self, BlobSetupError> {
        let builder = opendal::services::Fs::default().root(&root.to_string_lossy());
        Ok(Self::new(Operator::new(builder)?))
    }

    /// A store in an S3 bucket (AWS or any S3-protocol server). Keys live under `root` inside the
    /// bucket, so several deployments can share one bucket.
    ///
    /// HTTPS runs on rustls: unless the process already has a rustls crypto provider, this
    /// installs ring as the process default.
    #[cfg(feature = "s3")]
    pub fn s3(config: &S3Config) -> Result<Self, BlobSetupError> {
        // reqwest is built without a provider of its own (one C crypto build fewer); opendal's
        // HTTP client is made lazily, after this.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // An Err means another thread installed one first: that one serves as well.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        // opendal's HTTP transport over reqwest, for the whole process (the first one installed
        // stays); S3 needs it, the fs service does not.
        opendal::HttpTransporter::install_default(
            opendal_http_transport_reqwest::ReqwestTransport::default(),
        );
        let mut builder = opendal::services::S3::default()
            .bucket(&config.bucket)
            .region(&config.region)
            .root(&config.root);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint(endpoint);
        }
        if let (Some(key), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            builder = builder.access_key_id(key).secret_access_key(secret);
        }
        Ok(Self::new(Operator::new(builder)?))
    }

    /// Moves a permanent blob into quarantine.
    pub async fn quarantine(&self, did: &Did, cid: &Cid) -> BlobResult<()> {
        self.move_path(&permanent(did, cid), &quarantined(did, cid))
            .await
    }

    /// Moves a quarantined blob back into service.
    pub async fn unquarantine(&self, did: &Did, cid: &Cid) -> BlobResult<()> {
        self.move_path(&quarantined(did, cid), &permanent(did, cid))
            .await
    }

    async fn move_path(&self, from: &str, to: &str) -> BlobResult<()> {
        if !self.op.exists(from).await.map_err(backend)? {
            return Err(BlobStoreError::NotFound(from.to_owned()));
        }
        if self.op.info().capability().rename {
            self.op.rename(from, to).await.map_err(backend)
        } else {
            self.op.copy(from, to).await.map_err(backend)?;
            self.op.delete(from).await.map_err(backend)
        }
    }
}

#[async_trait]
impl BlobStore for OpendalBlobStore {
    async fn put_temp(&self, did: &Did, bytes: Vec<u8>) -> BlobResult<String> {
        let mut raw = [0u8; 16];
        OsRng.fill_bytes(&mut raw);
        let key: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        self.op
            .write(&temp(did, &key), bytes)
            .await
            .map_err(backend)?;
        Ok(key)
    }

    async fn make_permanent(&self, did: &Did, temp_key: &str, cid: &Cid) -> BlobResult<()> {
        if !valid_temp_key(temp_key) {
            return Err(BlobStoreError::NotFound(temp_key.to_owned()));
        }
        let from = temp(did, temp_key);
        let to = permanent(did, cid);
        if self.op.exists(&to).await.map_err(backend)? {
            self.op.delete(&from).await.map_err(backend)?;
            return Ok(());
        }
        self.move_path(&from, &to).await.map_err(|e| match e {
            BlobStoreError::NotFound(_) => BlobStoreError::NotFound(temp_key.to_owned()),
            other => other,
        })
    }

    async fn delete_temp(&self, did: &Did, temp_key: &str) -> BlobResult<()> {
        // A key that cannot have been issued names nothing; refusing it keeps paths such as
        // `../x` out of the operator.
        if !valid_temp_key(temp_key) {
            return Ok(());
        }
        self.op.delete(&temp(did, temp_key)).await.map_err(backend)
    }

    async fn get(&self, did: &Did, cid: &Cid) -> BlobResult<Vec<u8>> {
        match self.op.read(&permanent(did, cid)).await {
            Ok(buf) => Ok(buf.to_vec()),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Err(BlobStoreError::NotFound(cid.to_string()))
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn size(&self, did: &Did, cid: &Cid) -> BlobResult<u64> {
        match self.op.stat(&permanent(did, cid)).await {
            Ok(meta) => Ok(meta.content_length()),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Err(BlobStoreError::NotFound(cid.to_string()))
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn read_range(
        &self,
        did: &Did,
        cid: &Cid,
        offset: u64,
        len: usize,
    ) -> BlobResult<Vec<u8>> {
        let size = self.size(did, cid).await?;
        let start = offset.min(size);
        let end = start.saturating_add(len as u64).min(size);
        if start == end {
            return Ok(Vec::new());
        }
        self.op
            .read_with(&permanent(did, cid))
            .range(start..end)
            .await
            .map(|buf| buf.to_vec())
            .map_err(backend)
    }

    async fn has(&self, did: &Did, cid: &Cid) -> BlobResult<bool> {
        self.op.exists(&permanent(did, cid)).await.map_err(backend)
    }

    async fn delete(&self, did: &Did, cid: &Cid) -> BlobResult<()> {
        self.op.delete(&permanent(did, cid)).await.map_err(backend)
    }

    async fn list(&self, did: &Did, cursor: Option<&str>, limit: usize) -> BlobResult<Vec<Cid>> {
        let entries = match self.op.list(&format!("{did}/")).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(backend(e)),
        };
        let mut names: Vec<String> = entries
            .iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| e.name().to_owned())
            .filter(|n| cursor.is_none_or(|c| n.as_str() > c))
            .collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|n| stratos_domain::cid::parse(&n).ok())
            .take(limit)
            .map(Ok)
            .collect()
    }

    async fn delete_actor(&self, did: &Did) -> BlobResult<()> {
        for dir in [
            format!("{did}/"),
            format!("tmp/{did}/"),
            format!("quarantine/{did}/"),
        ] {
            match self.op.delete_with(&dir).recursive(true).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(backend(e)),
            }
        }
        Ok(())
    }
}
