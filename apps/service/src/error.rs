//! XRPC errors as actix-web answers.
//!
//! Which failure becomes which answer is decided in one place, the library's
//! `stratos_ports::xrpc` ([`XrpcError`]: `From<UseCaseError>`, `From<stratos_domain::Error>`,
//! `From<AuthError>`). [`ApiError`] only carries an [`XrpcError`] into actix (plus
//! `Connection: close` for bodies left unread); handlers never pick statuses for library
//! failures.

use actix_web::http::StatusCode;
use actix_web::http::header::{CONNECTION, HeaderName, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use stratos_domain::Error as DomainError;
use stratos_ports::auth::AuthError;
use stratos_ports::usecases::UseCaseError;
use stratos_ports::xrpc::XrpcError;

/// An XRPC error answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{xrpc}")]
pub struct ApiError {
    /// The answer: status, name, message, `Retry-After`, `WWW-Authenticate`, `DPoP-Nonce`.
    pub xrpc: XrpcError,
    /// Answer with `Connection: close`: the request body was not (wholly) read, so the
    /// connection cannot carry another request.
    pub close: bool,
}

impl From<XrpcError> for ApiError {
    fn from(xrpc: XrpcError) -> Self {
        Self { xrpc, close: false }
    }
}

impl From<UseCaseError> for ApiError {
    fn from(e: UseCaseError) -> Self {
        XrpcError::from(e).into()
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        XrpcError::from(e).into()
    }
}

impl From<stratos_ports::usecases::oauth::OAuthFlowError> for ApiError {
    fn from(e: stratos_ports::usecases::oauth::OAuthFlowError) -> Self {
        XrpcError::from(e).into()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        XrpcError::from(e).into()
    }
}

impl ApiError {
    /// An error with `status`, `name` and `message` (service-only failures: body limits,
    /// timeouts).
    pub fn new(status: StatusCode, name: &'static str, message: impl Into<String>) -> Self {
        XrpcError::new(status.as_u16(), name, message).into()
    }

    /// The same error answered with `Connection: close`.
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// The message of the answer.
    pub fn message(&self) -> &str {
        &self.xrpc.message
    }

    /// 400 `InvalidRequest`.
    pub fn invalid(message: impl Into<String>) -> Self {
        XrpcError::invalid(message).into()
    }

    /// 429 `RateLimitExceeded` with `Retry-After: retry_after_s`.
    pub fn rate_limited(message: impl Into<String>, retry_after_s: u64) -> Self {
        XrpcError::rate_limited(message, retry_after_s).into()
    }

    /// 400 `RecordNotFound` (also for records the viewer may not read).
    pub fn record_not_found() -> Self {
        XrpcError::record_not_found().into()
    }

    /// 400 `BlobNotFound` (also for blobs the viewer may not read).
    pub fn blob_not_found() -> Self {
        XrpcError::blob_not_found().into()
    }

    /// 400 `RepoNotFound`.
    pub fn repo_not_found(did: &str) -> Self {
        XrpcError::repo_not_found(did).into()
    }

    /// 413 `PayloadTooLarge`.
    pub fn too_large(limit: usize) -> Self {
        XrpcError::too_large(limit).into()
    }

    /// 501 `MethodNotImplemented`.
    pub fn not_implemented(nsid: &str) -> Self {
        XrpcError::not_implemented(nsid).into()
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.xrpc.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        for (name, value) in self.xrpc.headers() {
            if let Ok(v) = HeaderValue::from_str(&value) {
                res.insert_header((HeaderName::from_static(name), v));
            }
        }
        if self.close {
            res.insert_header((CONNECTION, HeaderValue::from_static("close")));
        }
        res.json(self.xrpc.body())
    }
}
