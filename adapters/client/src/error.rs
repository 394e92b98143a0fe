use stratos_domain::Cid;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A frame that is not a valid event-stream message.
    #[error("malformed frame: {0}")]
    Frame(String),
    /// An HTTP answer larger than the client reads (bytes).
    #[error("answer larger than {0} bytes")]
    ResponseTooLarge(usize),
    /// A frame too large to be read.
    #[error("frame of {0} bytes is over the limit")]
    FrameTooLarge(usize),
    /// A commit frame that failed verification (signature, blocks or inversion).
    #[error("commit {seq} does not verify: {source}")]
    Unverified {
        /// The frame's sequence number.
        seq: u64,
        /// Why.
        #[source]
        source: Box<stratos_domain::Error>,
    },
    /// An enrollment that could not be discovered or did not pass its checks.
    #[error("discovery: {0}")]
    Discovery(String),
    /// A proof, export or enrollment record that does not verify.
    #[error("verification failed: {0}")]
    Verification(#[source] Box<stratos_domain::Error>),
    /// A commit frame without the proof verification needs (an event stored before events
    /// carried one, or a filtered stream).
    #[error("commit {0} carries no proof")]
    NoProof(u64),
    /// A commit whose previous root is not the root the frame before it reached: a frame was
    /// dropped, reordered or forged.
    #[error("commit {} follows {}, but the previous frame reached {}", .0.seq, .0.got, .0.expected)]
    BrokenChain(Box<ChainBreak>),
    /// The service ended the stream with an error frame it does not retry after
    /// (`AuthRequired`, `NotFound`, `FutureCursor`, `InvalidRequest`).
    #[error("the service refused the stream: {error}: {message}")]
    Refused {
        /// The error name.
        error: String,
        /// Its message.
        message: String,
    },
    /// The service answered with an XRPC error.
    #[error("{status} {error}: {message}")]
    Xrpc {
        /// HTTP status.
        status: u16,
        /// The error name (`InvalidRequest`, `RecordNotFound`, `AuthRequired`, …).
        error: String,
        /// Its message.
        message: String,
    },
    /// Credentials could not be made (a token could not be signed).
    #[error("authentication: {0}")]
    Auth(String),
    /// Connecting failed (retried by the stream; returned only by one-shot calls).
    #[error("connect: {0}")]
    Connect(String),
    /// The stream's URL could not be built.
    #[error("invalid stream URL: {0}")]
    Url(String),
}

/// Where the chain of commits broke ([`ClientError::BrokenChain`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The frame's sequence number.
    pub seq: u64,
    /// The root the previous frame reached.
    pub expected: Cid,
    /// The frame's `prevData` (the empty tree's root for `None`).
    pub got: Cid,
}
