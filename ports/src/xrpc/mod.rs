//! XRPC over any HTTP framework: the one mapping from library failures to XRPC errors
//! ([`XrpcError`]), a neutral response ([`XrpcResponse`]), and framework-free handlers for the
//! record reads ([`reads`]).
//!
//! Every failure an app can meet becomes an answer here and only here: [`UseCaseError`] and
//! domain errors (`From<UseCaseError>`, `From<stratos_domain::Error>`) and authentication
//! failures (`From<AuthError>`), with the atproto status conventions (`{"error": Name,
//! "message": …}`). The Stratos service wraps [`XrpcError`] for actix-web; an app on another
//! framework sends [`XrpcResponse`]'s status, headers and body as they are.
//!
//! [`UseCaseError`]: crate::usecases::UseCaseError
//! [`AuthError`]: crate::auth::AuthError

mod mapping;
pub mod reads;

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use stratos_domain::syntax::{AtUri, Did, Nsid, RecordKey};

use crate::usecases::records::RecordView;

/// An XRPC error answer: HTTP status, error name, message, and the headers that go with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {error}: {message}")]
#[non_exhaustive]
pub struct XrpcError {
    /// HTTP status.
    pub status: u16,
    /// The XRPC error name (`InvalidRequest`, `RecordNotFound`, …).
    pub error: &'static str,
    /// A human-readable message (never internal details).
    pub message: String,
    /// Seconds for `Retry-After` (rate limits, write conflicts).
    pub retry_after_s: Option<u64>,
    /// `WWW-Authenticate` challenge (authentication failures, RFC 9449 §7.1).
    pub www_authenticate: Option<String>,
    /// `DPoP-Nonce`: the nonce a DPoP client must retry with.
    pub dpop_nonce: Option<String>,
}

impl XrpcError {
    /// An error with `status`, `error` name and `message`, and no headers.
    pub fn new(status: u16, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            message: message.into(),
            retry_after_s: None,
            www_authenticate: None,
            dpop_nonce: None,
        }
    }

    /// The same error with a `WWW-Authenticate` challenge.
    #[must_use]
    pub fn with_www_authenticate(mut self, challenge: impl Into<String>) -> Self {
        self.www_authenticate = Some(challenge.into());
        self
    }

    /// The same error with `Retry-After: seconds`.
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    /// 400 `InvalidRequest`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidRequest", message)
    }

    /// 401 `AuthenticationRequired`.
    pub fn auth_required(message: impl Into<String>) -> Self {
        Self::new(401, "AuthenticationRequired", message)
    }

    /// 401 `InvalidToken`.
    pub fn invalid_token(message: impl Into<String>) -> Self {
        Self::new(401, "InvalidToken", message)
    }

    /// 403 `Forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 429 `RateLimitExceeded` with `Retry-After: retry_after_s`.
    pub fn rate_limited(message: impl Into<String>, retry_after_s: u64) -> Self {
        Self::new(429, "RateLimitExceeded", message).with_retry_after(retry_after_s)
    }

    /// 400 `RecordNotFound`: also the answer for a record the viewer may not read, so that
    /// existence never leaks.
    pub fn record_not_found() -> Self {
        Self::new(400, "RecordNotFound", "Could not locate record")
    }

    /// 400 `BlobNotFound`, with one fixed message: also the answer for a blob the viewer may
    /// not read, so that existence never leaks (400 like `RecordNotFound`; a 404 means "no
    /// XRPC here" to atproto clients).
    pub fn blob_not_found() -> Self {
        Self::new(400, "BlobNotFound", "Blob not found")
    }

    /// 400 `RepoNotFound`.
    pub fn repo_not_found(did: &str) -> Self {
        Self::new(400, "RepoNotFound", format!("Could not find repo: {did}"))
    }

    /// 413 `PayloadTooLarge`.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "PayloadTooLarge",
            format!("request body exceeds {limit} bytes"),
        )
    }

    /// 501 `MethodNotImplemented`.
    pub fn not_implemented(nsid: &str) -> Self {
        Self::new(
            501,
            "MethodNotImplemented",
            format!("method not implemented: {nsid}"),
        )
    }

    /// 400 `InvalidRequest` for an XRPC method called with the wrong HTTP method.
    pub fn wrong_method(got: &str, expected: &str) -> Self {
        Self::invalid(format!("Incorrect HTTP method ({got}) expected {expected}"))
    }

    /// 500 `InternalServerError`; `what` goes to the log only (it may name files, hosts or
    /// queries).
    pub fn internal(what: &str) -> Self {
        tracing::error!(error = what, "internal error");
        Self::new(500, "InternalServerError", "Internal server error")
    }

    /// The JSON body: `{"error": …, "message": …}`.
    pub fn body(&self) -> Value {
        json!({ "error": self.error, "message": self.message })
    }

    /// The headers of the answer besides `Content-Type` (lower-case names).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(s) = self.retry_after_s {
            out.push(("retry-after", s.to_string()));
        }
        if let Some(c) = &self.www_authenticate {
            out.push(("www-authenticate", c.clone()));
        }
        if let Some(n) = &self.dpop_nonce {
            out.push(("dpop-nonce", n.clone()));
        }
        out
    }
}

/// A neutral XRPC answer: what an app sends, on any framework.
#[derive(Debug, Clone, PartialEq)]
pub struct XrpcResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers, lower-case names, `content-type` included.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Value,
}

/// The `Content-Type` of every XRPC JSON answer.
pub const JSON_CONTENT_TYPE: &str = "application/json";

impl XrpcResponse {
    /// 200 with a JSON body.
    pub fn ok(body: Value) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type", JSON_CONTENT_TYPE.to_owned())],
            body,
        }
    }

    /// The first value of the header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body, serialised.
    pub fn body_bytes(&self) -> Vec<u8> {
        self.body.to_string().into_bytes()
    }
}

impl From<XrpcError> for XrpcResponse {
    fn from(e: XrpcError) -> Self {
        let mut headers = vec![("content-type", JSON_CONTENT_TYPE.to_owned())];
        headers.extend(e.headers());
        Self {
            status: e.status,
            headers,
            body: e.body(),
        }
    }
}

impl From<Result<Value, XrpcError>> for XrpcResponse {
    fn from(result: Result<Value, XrpcError>) -> Self {
        match result {
            Ok(body) => Self::ok(body),
            Err(e) => e.into(),
        }
    }
}

/// Query parameters into `T` (`application/x-www-form-urlencoded`), as 400 `InvalidRequest`
/// when they do not fit.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, XrpcError> {
    serde_urlencoded::from_str(query)
        .map_err(|e| XrpcError::invalid(format!("invalid query parameters: {e}")))
}

/// The values of the query parameters `names` (`application/x-www-form-urlencoded`), in the
/// order of `names`, for the hot read handlers: borrowed from the query unless percent- or
/// `+`-encoded, so a plain getRecord query costs no allocation. A parameter not in `names` is
/// ignored and a repeated one is 400 `InvalidRequest`, as [`parse_query`] answers for a struct.
///
/// ```
/// use stratos_ports::xrpc::query_params;
///
/// let [repo, cid] = query_params("repo=did%3Aplc%3Arei&x=1", ["repo", "cid"])?;
/// assert_eq!((repo.as_deref(), cid), (Some("did:plc:rei"), None));
/// assert_eq!(query_params("a=1&a=2", ["a"]).unwrap_err().status, 400);
/// # Ok::<(), stratos_ports::xrpc::XrpcError>(())
/// ```
pub fn query_params<'q, const N: usize>(
    query: &'q str,
    names: [&str; N],
) -> Result<[Option<Cow<'q, str>>; N], XrpcError> {
    let mut out = [const { None }; N];
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if let Some(i) = names.iter().position(|n| *n == name) {
            if out[i].is_some() {
                return Err(XrpcError::invalid(format!(
                    "invalid query parameters: duplicate field `{name}`"
                )));
            }
            out[i] = Some(value);
        }
    }
    Ok(out)
}

/// A `limit` parameter: `default` when absent, else an integer from 1 to `max` (400
/// `InvalidRequest` otherwise).
pub fn parse_limit(s: Option<&str>, default: usize, max: usize) -> Result<usize, XrpcError> {
    match s {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                XrpcError::invalid(format!("`limit` must be an integer from 1 to {max}"))
            }),
    }
}

/// A required query parameter from [`query_params`]: 400 `InvalidRequest` naming it when absent.
pub fn required<'q>(value: Option<Cow<'q, str>>, name: &str) -> Result<Cow<'q, str>, XrpcError> {
    value.ok_or_else(|| {
        XrpcError::invalid(format!("invalid query parameters: missing field `{name}`"))
    })
}

/// A JSON request body into `T`, as 400 `InvalidRequest` when it is empty or does not fit.
pub fn parse_json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, XrpcError> {
    if body.is_empty() {
        return Err(XrpcError::invalid(
            "A request body is expected but none was provided",
        ));
    }
    serde_json::from_slice(body).map_err(|e| XrpcError::invalid(format!("invalid JSON body: {e}")))
}

/// A DID parameter; 400 `InvalidRequest` naming `field` otherwise.
pub fn parse_did(s: &str, field: &str) -> Result<Did, XrpcError> {
    Did::parse(s).map_err(|_| XrpcError::invalid(format!("`{field}` must be a DID")))
}

/// An NSID parameter, as 400 `InvalidRequest` naming the field.
pub fn parse_nsid(s: &str, field: &str) -> Result<Nsid, XrpcError> {
    Nsid::parse(s).map_err(|_| XrpcError::invalid(format!("`{field}` must be an NSID")))
}

/// A record-key parameter, as 400 `InvalidRequest` naming the field.
pub fn parse_rkey(s: &str, field: &str) -> Result<RecordKey, XrpcError> {
    RecordKey::parse(s).map_err(|_| XrpcError::invalid(format!("`{field}` is not a record key")))
}

/// An AT-URI, with the same answer as the use cases give to a malformed one.
pub fn parse_at_uri(s: &str) -> Result<AtUri, XrpcError> {
    AtUri::parse(s).map_err(XrpcError::from)
}

/// A strict boolean parameter (the reference read `reverse=false` as true).
pub fn parse_bool(s: &str, field: &str) -> Result<bool, XrpcError> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(XrpcError::invalid(format!(
            "`{field}` must be true or false"
        ))),
    }
}

/// A record as the XRPC reads show it: `{"uri", "cid", "value"}`.
pub fn record_json(v: &RecordView) -> Value {
    json!({ "uri": v.uri, "cid": v.cid.to_string(), "value": v.value })
}

/// [`record_json`] of a view the caller no longer needs: the record's JSON is moved, not copied.
pub fn into_record_json(v: RecordView) -> Value {
    let mut out = serde_json::Map::with_capacity(3);
    out.insert("uri".into(), Value::String(v.uri.to_string()));
    out.insert("cid".into(), Value::String(v.cid.to_string()));
    out.insert("value".into(), v.value);
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Params {
        repo: Option<String>,
        rkey: Option<String>,
    }

    proptest! {
        /// The fast parser of the hot reads answers every query exactly as the serde one the
        /// other handlers use: the same values (decoded), the same refusal of a repeated
        /// parameter, unknown parameters ignored.
        #[test]
        fn query_params_agree_with_parse_query(
            pairs in proptest::collection::vec(
                (prop::sample::select(vec!["repo", "rkey", "x", "re%70o", ""]),
                 "[a-z:%+2A=]{0,6}"),
                0..5,
            ),
        ) {
            let query = pairs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&");
            let fast = query_params(&query, ["repo", "rkey"]).map(|[repo, rkey]| Params {
                repo: repo.map(Cow::into_owned),
                rkey: rkey.map(Cow::into_owned),
            });
            let slow = parse_query::<Params>(&query);
            match (fast, slow) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(a), Err(b)) => prop_assert_eq!(a.status, b.status),
                (a, b) => prop_assert!(false, "{query}: fast {a:?} slow {b:?}"),
            }
        }
    }

    #[test]
    fn a_missing_required_parameter_is_named() {
        let err = required(None, "rkey").unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("`rkey`"), "{}", err.message);
    }
}
