//! XRPC errors: `{"error": Name, "message": …}` with the atproto status conventions.
//!
//! [`ApiError::from`] for [`UseCaseError`] is the one place where port and domain failures
//! become HTTP answers; handlers never pick statuses for them.

use actix_web::http::StatusCode;
use actix_web::http::header::{CONNECTION, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;
use stratos_domain::Error as DomainError;
use stratos_ports::usecases::UseCaseError;

/// An XRPC error answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {name}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The XRPC error name.
    pub name: &'static str,
    /// A human-readable message (never internal details).
    pub message: String,
    /// Seconds for `Retry-After` (rate limits).
    pub retry_after_s: Option<u64>,
    /// `WWW-Authenticate` challenge (DPoP failures, RFC 9449 §7.1).
    pub www_authenticate: Option<String>,
    /// Answer with `Connection: close`: the request body was not (wholly) read, so the
    /// connection cannot carry another request.
    pub close: bool,
}

impl ApiError {
    /// An error with `status`, `name` and `message`.
    pub fn new(status: StatusCode, name: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            name,
            message: message.into(),
            retry_after_s: None,
            www_authenticate: None,
            close: false,
        }
    }

    /// The same error answered with `Connection: close`.
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// The same error with a `WWW-Authenticate` challenge.
    pub fn with_www_authenticate(mut self, challenge: String) -> Self {
        self.www_authenticate = Some(challenge);
        self
    }

    /// 400 `InvalidRequest`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
    }

    /// 401 `AuthenticationRequired`.
    pub fn auth_required(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AuthenticationRequired", message)
    }

    /// 401 `InvalidToken`.
    pub fn invalid_token(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "InvalidToken", message)
    }

    /// 429 `RateLimitExceeded` with `Retry-After: retry_after_s`.
    pub fn rate_limited(message: impl Into<String>, retry_after_s: u64) -> Self {
        let mut err = Self::new(StatusCode::TOO_MANY_REQUESTS, "RateLimitExceeded", message);
        err.retry_after_s = Some(retry_after_s);
        err
    }

    /// 403 `Forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// 400 `RecordNotFound`: also the answer for a record the viewer may not read, so that
    /// existence never leaks.
    pub fn record_not_found() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "RecordNotFound",
            "Could not locate record",
        )
    }

    /// 400 `BlobNotFound`, with one fixed message: also the answer for a blob the viewer may
    /// not read, so that existence never leaks (400 like `RecordNotFound`; a 404 means "no
    /// XRPC here" to atproto clients).
    pub fn blob_not_found() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BlobNotFound", "Blob not found")
    }

    /// 400 `RepoNotFound`.
    pub fn repo_not_found(did: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "RepoNotFound",
            format!("Could not find repo: {did}"),
        )
    }

    /// 413 `PayloadTooLarge`.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("request body exceeds {limit} bytes"),
        )
    }

    /// 501 `MethodNotImplemented`.
    pub fn not_implemented(nsid: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "MethodNotImplemented",
            format!("method not implemented: {nsid}"),
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if let Some(s) = self.retry_after_s
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            res.insert_header((RETRY_AFTER, v));
        }
        if let Some(challenge) = &self.www_authenticate
            && let Ok(v) = HeaderValue::from_str(challenge)
        {
            res.insert_header((WWW_AUTHENTICATE, v));
        }
        if self.close {
            res.insert_header((CONNECTION, HeaderValue::from_static("close")));
        }
        res.json(json!({ "error": self.name, "message": self.message }))
    }
}

fn bad(name: &'static str, e: &DomainError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, name, e.to_string())
}

fn internal(what: &str) -> ApiError {
    // The detail goes to the log only: it may name files, hosts or queries.
    tracing::error!(error = what, "internal error");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        "Internal server error",
    )
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        use DomainError as E;
        match &e {
            E::Syntax { .. } | E::Data(_) | E::CborDecode(_) | E::Cid(_) | E::MstKey { .. } => {
                bad("InvalidRequest", &e)
            }
            E::Lexicon(_) | E::Validation { .. } => bad("InvalidRecord", &e),
            E::BlobTypeNotAccepted(_) => bad("BlobTypeNotAccepted", &e),
            E::BlobTooLarge(_) => bad("BlobTooLarge", &e),
            E::RecordExists(_) => bad("RecordExists", &e),
            E::RecordNotFound(_) => ApiError::record_not_found(),
            E::CarHeader(_)
            | E::CarTruncated(_)
            | E::CarBlockTooLarge { .. }
            | E::CarHashMismatch(_)
            | E::CarSection(_) => bad("InvalidCar", &e),
            E::InvalidRepo(_) => bad("InvalidRepo", &e),
            E::DuplicateWrite(_) => bad("InvalidRequest", &e),
            E::TooManyRecords { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                e.to_string(),
            ),
            E::CarTooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                e.to_string(),
            ),
            E::BoundaryFormat { .. } | E::BoundaryUnqualified { .. } => bad("InvalidBoundary", &e),
            E::BoundaryServiceMismatch { .. } => bad("BoundaryServiceMismatch", &e),
            E::BoundaryNotAllowed { .. } => bad("BoundaryNotAllowed", &e),
            E::BoundaryNotHeld { .. } => bad("BoundaryNotHeld", &e),
            E::MissingBoundary => bad("MissingBoundary", &e),
            E::NamespaceDisabled => bad("NamespaceDisabled", &e),
            E::CollectionNotWritable { .. } => bad("InvalidCollection", &e),
            E::CrossNamespaceReply { .. } => bad("CrossNamespaceReply", &e),
            E::ReplyBoundaryEscalation { .. } => bad("ReplyBoundaryEscalation", &e),
            E::CrossNamespaceEmbed { .. } => bad("CrossNamespaceEmbed", &e),
            E::EnrollmentDenied(reason) => {
                ApiError::new(StatusCode::FORBIDDEN, reason.code(), e.to_string())
            }
            E::RateLimited { retry_after_ms } => {
                let ms = u64::try_from(*retry_after_ms).unwrap_or(0);
                let mut err = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RateLimitExceeded",
                    e.to_string(),
                );
                err.retry_after_s = Some(ms.div_ceil(1000).max(1));
                err
            }
            E::Token(t) => ApiError::new(StatusCode::UNAUTHORIZED, t.code(), e.to_string()),
            _ => internal(&e.to_string()),
        }
    }
}

impl From<UseCaseError> for ApiError {
    fn from(e: UseCaseError) -> Self {
        match e {
            UseCaseError::Rule(d) => d.into(),
            UseCaseError::InvalidRequest(m) => ApiError::invalid(m),
            UseCaseError::NotEnrolled(did) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "NotEnrolled",
                format!("{did} is not enrolled in this Stratos service"),
            ),
            UseCaseError::Forbidden(m) => ApiError::forbidden(m),
            UseCaseError::RepoAlreadyExists(did) => ApiError::new(
                StatusCode::CONFLICT,
                "RepoNotEmpty",
                format!("the repository of {did} already holds records"),
            ),
            UseCaseError::BlobNotFound(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, "BlobNotFound", m)
            }
            UseCaseError::InvalidSwap(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, "InvalidSwap", m)
            }
            UseCaseError::Conflict(_) => {
                let mut err = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "WriteConflict",
                    "concurrent writes to this repository; retry",
                );
                err.retry_after_s = Some(1);
                err
            }
            UseCaseError::Unavailable(m) => {
                tracing::error!(error = %m, "storage unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "storage is unavailable",
                )
            }
            UseCaseError::Internal(m) => internal(&m),
            other => internal(&other.to_string()),
        }
    }
}
