//! The one table from library failures to XRPC answers: domain rules, use cases,
//! authentication. Apps never pick statuses for these.

use stratos_domain::Error as DomainError;
use stratos_domain::auth::TokenError;

use super::XrpcError;
use crate::auth::{AuthError, DpopError};
use crate::usecases::UseCaseError;
use crate::usecases::appview::AppViewError;
use crate::usecases::oauth::OAuthFlowError;

fn bad(name: &'static str, e: &DomainError) -> XrpcError {
    XrpcError::new(400, name, e.to_string())
}

impl From<DomainError> for XrpcError {
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
            E::RecordNotFound(_) => XrpcError::record_not_found(),
            E::CarHeader(_)
            | E::CarTruncated(_)
            | E::CarBlockTooLarge { .. }
            | E::CarHashMismatch(_)
            | E::CarSection(_) => bad("InvalidCar", &e),
            E::InvalidRepo(_) => bad("InvalidRepo", &e),
            E::DuplicateWrite(_) => bad("InvalidRequest", &e),
            E::TooManyRecords { .. } | E::CarTooLarge { .. } => {
                XrpcError::new(413, "PayloadTooLarge", e.to_string())
            }
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
            E::EnrollmentDenied(reason) => XrpcError::new(403, reason.code(), e.to_string()),
            E::RateLimited { retry_after_ms } => {
                let ms = u64::try_from(*retry_after_ms).unwrap_or(0);
                XrpcError::rate_limited(e.to_string(), ms.div_ceil(1000).max(1))
            }
            E::Token(t) => XrpcError::new(401, t.code(), e.to_string()),
            _ => XrpcError::internal(&e.to_string()),
        }
    }
}

impl From<OAuthFlowError> for XrpcError {
    fn from(e: OAuthFlowError) -> Self {
        match e {
            OAuthFlowError::InvalidRequest(m) => XrpcError::invalid(m),
            OAuthFlowError::Resolution(cause) => XrpcError::new(
                400,
                "AuthorizationError",
                format!("Failed to start authorization flow: {cause}"),
            ),
            OAuthFlowError::Callback(m) => XrpcError::new(400, "CallbackError", m),
            OAuthFlowError::Denied(reason) => {
                XrpcError::new(403, "EnrollmentDenied", reason.message())
            }
            OAuthFlowError::ReauthorizationRequired(did) => XrpcError::new(
                401,
                "ReauthorizationRequired",
                format!("{did} must sign in again"),
            ),
            OAuthFlowError::Upstream(cause) => {
                tracing::warn!(error = %cause, "OAuth upstream failure");
                XrpcError::new(
                    502,
                    "UpstreamFailure",
                    "the authorization server or PDS failed; try again",
                )
            }
            OAuthFlowError::Unavailable(cause) => {
                tracing::error!(error = %cause, "OAuth storage unavailable");
                XrpcError::new(503, "ServiceUnavailable", "storage is unavailable")
            }
            OAuthFlowError::Enrollment(e) => (*e).into(),
        }
    }
}

impl From<UseCaseError> for XrpcError {
    fn from(e: UseCaseError) -> Self {
        match e {
            UseCaseError::Rule(d) => d.into(),
            UseCaseError::InvalidRequest(m) => XrpcError::invalid(m),
            UseCaseError::NotEnrolled(did) => XrpcError::new(
                400,
                "NotEnrolled",
                format!("{did} is not enrolled in this Stratos service"),
            ),
            UseCaseError::Forbidden(m) => XrpcError::forbidden(m),
            UseCaseError::RepoAlreadyExists(did) => XrpcError::new(
                409,
                "RepoNotEmpty",
                format!("the repository of {did} already holds records"),
            ),
            UseCaseError::BlobNotFound(m) => XrpcError::new(400, "BlobNotFound", m),
            UseCaseError::NotFound(m) => XrpcError::new(400, "NotFound", m),
            UseCaseError::InvalidSwap(m) => XrpcError::new(400, "InvalidSwap", m),
            UseCaseError::Conflict(_) => XrpcError::new(
                503,
                "WriteConflict",
                "concurrent writes to this repository; retry",
            )
            .with_retry_after(1),
            UseCaseError::Unavailable(m) => {
                tracing::error!(error = %m, "storage unavailable");
                XrpcError::new(503, "ServiceUnavailable", "storage is unavailable")
            }
            UseCaseError::Internal(m) => XrpcError::internal(&m),
        }
    }
}

/// The challenge of an endpoint that needs a credential (RFC 9449 §7.1).
const REALM: &str = "DPoP realm=\"stratos\"";

/// A header value in quotes, with what cannot appear in a quoted-string removed.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c))
        .collect()
}

/// 401 `InvalidToken` with the DPoP `invalid_token` challenge.
fn dpop_invalid_token(message: impl Into<String>) -> XrpcError {
    XrpcError::invalid_token(message)
        .with_www_authenticate("DPoP realm=\"stratos\", error=\"invalid_token\"")
}

/// 401 `AuthenticationRequired` with the `invalid_dpop_proof` challenge, describing why.
fn invalid_proof(message: &str) -> XrpcError {
    XrpcError::auth_required(message).with_www_authenticate(format!(
        "DPoP realm=\"stratos\", error=\"invalid_dpop_proof\", error_description=\"{}\"",
        quoted(message)
    ))
}

/// A failed service-auth JWT as atproto names it (`@atproto/xrpc-server`), so clients written
/// against a PDS recognise the failure: 401 with `JwtExpired`, `BadJwtAudience`,
/// `BadJwtLexiconMethod`, `BadJwtSignature`, or `BadJwt` for everything else.
fn service_jwt_error(e: &DomainError) -> XrpcError {
    let name = match e {
        DomainError::Token(t) => match t {
            TokenError::Expired { .. } => "JwtExpired",
            TokenError::InvalidAudience { .. } => "BadJwtAudience",
            TokenError::InvalidLxm { .. } => "BadJwtLexiconMethod",
            TokenError::InvalidSignature | TokenError::UnknownKey(_) => "BadJwtSignature",
            _ => "BadJwt",
        },
        _ => "BadJwt",
    };
    XrpcError::new(401, name, e.to_string())
}

/// A failed access token: a key-binding mismatch is the proof's fault, a missing scope 403.
fn access_token_error(e: &DomainError) -> XrpcError {
    match e {
        DomainError::Token(TokenError::KeyBindingMismatch) => invalid_proof(&e.to_string()),
        DomainError::Token(TokenError::Expired { .. }) => dpop_invalid_token("token expired"),
        DomainError::Token(TokenError::InsufficientScope { .. }) => {
            XrpcError::new(403, "InsufficientScope", e.to_string())
                .with_www_authenticate("DPoP realm=\"stratos\", error=\"insufficient_scope\"")
        }
        other => dpop_invalid_token(other.to_string()),
    }
}

fn dpop_error(e: &DpopError) -> XrpcError {
    match e {
        DpopError::ProofMissing | DpopError::SeveralProofs | DpopError::ProofNotText => {
            invalid_proof(&e.to_string())
        }
        DpopError::UseNonce { nonce } => {
            let mut err = XrpcError::auth_required("DPoP nonce required").with_www_authenticate(
                "DPoP error=\"use_dpop_nonce\", error_description=\"DPoP nonce required\"",
            );
            err.dpop_nonce = Some(nonce.clone());
            err
        }
        DpopError::Proof(source) => invalid_proof(&source.to_string()),
        DpopError::Token(source) => access_token_error(source),
        // The token's account, PDS or authorization server cannot vouch for it: whatever the
        // reason (including the address guard of the network adapter), the token is invalid.
        DpopError::EmptyToken
        | DpopError::AccountUnresolved(_)
        | DpopError::AccountNotFound
        | DpopError::NoPds
        | DpopError::KeysUnavailable(_)
        | DpopError::NotAuthorizationServer
        | DpopError::NoAuthorizationServers => dpop_invalid_token(e.to_string()),
    }
}

impl From<&AuthError> for XrpcError {
    fn from(e: &AuthError) -> Self {
        match e {
            AuthError::Required => {
                XrpcError::auth_required(e.to_string()).with_www_authenticate(REALM)
            }
            AuthError::NotAJwt { dev_mode: true } => XrpcError::invalid_token(
                "the bearer token is neither a DID nor a JWT: dev mode expects \
                 `Authorization: Bearer <did>` (e.g. did:plc:…), otherwise a service-auth JWT",
            ),
            AuthError::ServiceJwt(source) => service_jwt_error(source),
            AuthError::Dpop(d) => dpop_error(d),
            AuthError::AdminDisabled { .. }
            | AuthError::AdminRequired
            | AuthError::WrongAdminPassword => XrpcError::auth_required(e.to_string()),
            // The header, the scheme, the bearer or the issuer's identity is unusable: the
            // message says which.
            AuthError::MalformedHeader
            | AuthError::UnsupportedScheme(_)
            | AuthError::BadDevDid(_)
            | AuthError::NotAJwt { dev_mode: false }
            | AuthError::IssuerUnresolved(_)
            | AuthError::IssuerNotFound
            | AuthError::IssuerHasNoKey
            | AuthError::IssuerKeyUnusable(_) => XrpcError::invalid_token(e.to_string()),
        }
    }
}

impl From<AuthError> for XrpcError {
    fn from(e: AuthError) -> Self {
        XrpcError::from(&e)
    }
}

impl AuthError {
    /// The XRPC answer: status, error name, message, `WWW-Authenticate` and `DPoP-Nonce`.
    pub fn to_xrpc(&self) -> XrpcError {
        self.into()
    }
}

impl From<AppViewError> for XrpcError {
    fn from(e: AppViewError) -> Self {
        match &e {
            AppViewError::AuthRequired => XrpcError::new(401, "AuthRequired", e.to_string()),
            AppViewError::InvalidRequest(_) => XrpcError::new(400, "InvalidRequest", e.to_string()),
            AppViewError::BoundaryMismatch => {
                XrpcError::new(400, "BoundaryMismatch", e.to_string())
            }
            AppViewError::Store(_) | AppViewError::Resolver(_) => {
                XrpcError::internal(&e.to_string())
            }
        }
    }
}
