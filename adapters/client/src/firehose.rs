//! The repository event stream of a PDS or relay (`com.atproto.sync.subscribeRepos`), reduced
//! to the records of one collection: what an indexer needs to notice enrollment records
//! (`zone.stratos.actor.enrollment`) being created and deleted.
//!
//! Each `#commit`'s ops in the collection come with their records, read from the commit's CAR
//! blocks (every block read is hash-checked). The commit's signature is not checked here: what
//! a consumer trusts is the record's own proof (an enrollment record carries the service's
//! attestation; check it with [`crate::verify::enrollment_record`]).

use ipld_core::ipld::Ipld;
use serde::Deserialize;
use serde_bytes::ByteBuf;
use stratos_domain::blocks::BlockRead as _;
use stratos_domain::car::{CarIndex, CarLimits};
use stratos_domain::data;
use stratos_domain::repo::Action;
use stratos_domain::syntax::Did;

use crate::ClientError;
use crate::frame::{ErrorBody, Header, OpBody};
use crate::stream::{Link, LinkConfig};

/// Largest firehose frame decoded (a PDS commit's blocks are bounded well below it).
pub const MAX_FIREHOSE_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// One op of a commit in the watched collection.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoOp {
    /// What happened.
    pub action: Action,
    /// The record key.
    pub rkey: String,
    /// The record (creates and updates whose block the commit carries).
    pub record: Option<Ipld>,
}

/// What the firehose hands over.
#[derive(Debug, Clone, PartialEq)]
pub enum FirehoseItem {
    /// A commit touching the watched collection.
    Commit {
        /// The firehose's sequence number.
        seq: u64,
        /// The repository.
        repo: Did,
        /// Its ops in the collection.
        ops: Vec<RepoOp>,
    },
    /// The cursor is older than the PDS or relay retains (it continues from what it has).
    OutdatedCursor,
}

/// Builds a [`Firehose`].
#[derive(Debug, Clone)]
pub struct FirehoseBuilder {
    link: LinkConfig,
    cursor: Option<u64>,
    collection: String,
}

impl FirehoseBuilder {
    crate::stream::link_settings!();

    /// Resume after this sequence number.
    pub fn cursor(mut self, cursor: Option<u64>) -> Self {
        self.cursor = cursor;
        self
    }

    /// The consumer; it connects on the first [`Firehose::next`].
    pub fn build(self) -> Firehose {
        Firehose {
            cursor: self.cursor,
            config: self,
            link: Link::default(),
        }
    }
}

/// A consumer of `com.atproto.sync.subscribeRepos` watching one collection: reconnects with
/// backoff and jitter, resumes after its cursor.
#[derive(Debug)]
pub struct Firehose {
    config: FirehoseBuilder,
    link: Link,
    cursor: Option<u64>,
}

#[derive(Deserialize)]
struct CommitBody {
    seq: u64,
    repo: String,
    #[serde(default)]
    blocks: Option<ByteBuf>,
    #[serde(default)]
    ops: Vec<OpBody>,
}

#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

fn malformed(e: impl std::fmt::Display) -> ClientError {
    ClientError::Frame(e.to_string())
}

impl Firehose {
    /// A builder for the firehose of the PDS or relay at `host` (`http(s)://` or `ws(s)://`),
    /// watching `collection`.
    pub fn builder(host: &str, collection: &str) -> FirehoseBuilder {
        let host = if let Some(rest) = host.strip_prefix("wss://") {
            format!("https://{rest}")
        } else if let Some(rest) = host.strip_prefix("ws://") {
            format!("http://{rest}")
        } else {
            host.to_owned()
        };
        FirehoseBuilder {
            link: LinkConfig::for_method(&host, "com.atproto.sync.subscribeRepos"),
            cursor: None,
            collection: collection.to_owned(),
        }
    }

    /// The sequence number of the last event read.
    pub fn cursor(&self) -> Option<u64> {
        self.cursor
    }

    /// The next commit touching the collection (others are read and skipped).
    pub async fn next(&mut self) -> Result<FirehoseItem, ClientError> {
        loop {
            let bytes = self
                .link
                .next_after(&self.config.link, None, self.cursor)
                .await?;
            if bytes.len() > MAX_FIREHOSE_FRAME_BYTES {
                return Err(ClientError::FrameTooLarge(bytes.len()));
            }
            let mut de = serde_ipld_dagcbor::de::Deserializer::from_slice(&bytes);
            let header = Header::deserialize(&mut de).map_err(malformed)?;
            match (header.op, header.t.as_deref()) {
                (-1, _) => {
                    let b = ErrorBody::deserialize(&mut de).map_err(malformed)?;
                    if let Some(e) = self.link.error_frame(
                        &self.config.link,
                        b.error,
                        b.message.unwrap_or_default(),
                    ) {
                        return Err(e);
                    }
                }
                (1, Some("#commit")) => {
                    let body = CommitBody::deserialize(&mut de).map_err(malformed)?;
                    if self.cursor.is_some_and(|c| body.seq <= c) {
                        continue;
                    }
                    self.cursor = Some(body.seq);
                    if let Some(item) = self.commit(body)? {
                        return Ok(item);
                    }
                }
                (1, Some("#info")) => {
                    let info = Ipld::deserialize(&mut de).map_err(malformed)?;
                    if let Ipld::Map(m) = info
                        && m.get("name") == Some(&Ipld::String("OutdatedCursor".into()))
                    {
                        return Ok(FirehoseItem::OutdatedCursor);
                    }
                }
                (1, Some(_)) => {
                    // #identity, #account, #sync: only their position matters here.
                    if let Ok(SeqOnly { seq }) = SeqOnly::deserialize(&mut de)
                        && self.cursor.is_none_or(|c| seq > c)
                    {
                        self.cursor = Some(seq);
                    }
                }
                (op, _) => return Err(malformed(format!("unknown frame op {op}"))),
            }
        }
    }

    fn commit(&self, body: CommitBody) -> Result<Option<FirehoseItem>, ClientError> {
        let prefix = format!("{}/", self.config.collection);
        let wanted: Vec<&OpBody> = body
            .ops
            .iter()
            .filter(|op| op.path.starts_with(&prefix))
            .collect();
        if wanted.is_empty() {
            return Ok(None);
        }
        let blocks = body.blocks.as_ref().map(|b| b.as_slice()).unwrap_or(&[]);
        let index = CarIndex::new(blocks, CarLimits::default()).ok();
        let ops = wanted
            .into_iter()
            .map(|op| {
                let action = Action::parse(&op.action)
                    .ok_or_else(|| malformed(format!("unknown action {}", op.action)))?;
                let record = match (&index, op.cid) {
                    (Some(index), Some(cid)) => index
                        .read(&cid)
                        .ok()
                        .flatten()
                        .and_then(|bytes| data::decode(bytes).ok()),
                    _ => None,
                };
                Ok(RepoOp {
                    action,
                    rkey: op.path[prefix.len()..].to_owned(),
                    record,
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(Some(FirehoseItem::Commit {
            seq: body.seq,
            repo: Did::parse(&body.repo).map_err(malformed)?,
            ops,
        }))
    }
}
