//! Authentication as a library service, framework-free: who is calling, from a neutral
//! [`RequestView`] of the request (method, path, query, headers).
//!
//! The [`Authenticator`] holds every check the Stratos service makes, so an app on any HTTP
//! framework gets the same answers:
//! - `Authorization: DPoP <token>` with a `DPoP` proof: a DPoP-bound OAuth access token of the
//!   account's PDS authorization server ([`dpop`], the [`AuthorizationServers`] port);
//! - `Authorization: Bearer <jwt>`: an atproto service-auth JWT (`aud` = the service DID,
//!   `lxm` = the called method, signed with the issuer's `#atproto` key, found through the
//!   [`IdentityResolver`] port);
//! - `Authorization: Bearer <did>`: the development bearer, only with
//!   [`AuthSettings::dev_mode`];
//! - the operator's admin password ([`Authenticator::require_admin`]), compared in constant
//!   time.
//!
//! Token times come from the injected [`Clock`] (tests move a manual one). Failures are
//! [`AuthError`]s; [`crate::xrpc::XrpcError`] turns them into the XRPC answers (status, error
//! name, `WWW-Authenticate`, `DPoP-Nonce`). docs/auth.md has the rules and the answers.
//!
//! [`Stratos::builder`](crate::Stratos::builder) composes one from the service's identity and
//! [`AuthSettings`]; [`Stratos::auth`](crate::Stratos::auth) hands it out.

pub mod dpop;
mod request;

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine as _;
use stratos_domain::Error as DomainError;
use stratos_domain::auth::{
    DEFAULT_MAX_LIFETIME_SECS, ServiceJwtExpectation, unverified_issuer, verify_service_jwt,
};
use stratos_domain::crypto::Keypair;
use stratos_domain::syntax::Did;

pub use self::dpop::{DPOP_HEADER, DPOP_NONCE_HEADER, DpopError};
pub use self::request::{NotText, RequestView};
use crate::env::{AuthorizationServers, Clock, EnvError, IdentityResolver};

/// The `Authorization` request header.
pub const AUTHORIZATION_HEADER: &str = "authorization";

/// Every request header the library reads (lower case). A [`RequestView`] needs only these: an
/// app may copy just them from its framework's request instead of every header, which is what
/// the Stratos service does on its hot read path (`ports/tests/layout.rs` fails if a library
/// module reads a header not listed here).
pub const READ_HEADERS: &[&str] = &[AUTHORIZATION_HEADER, DPOP_HEADER];

/// A secret (a password, a static token) that never prints: `Debug` shows `<redacted>`, and
/// there is no `Display`. [`Secret::expose`] is for the one place that compares it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when `given` is the secret, in time that depends only on the lengths.
    pub fn matches(&self, given: &str) -> bool {
        constant_time_eq(given.as_bytes(), self.0.as_bytes())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Equality whose time depends only on the lengths, not on where the inputs differ (`subtle`,
/// whose comparison the optimiser cannot turn into an early exit).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

/// The default of [`AuthSettings::admin_disabled_hint`].
pub const DEFAULT_ADMIN_DISABLED_HINT: &str = "no admin password is configured";

/// How the [`Authenticator`] decides. [`AuthSettings::default`] is the production stance: no
/// dev bearer, no admin password (admin checks always fail), DPoP nonces required, service-auth
/// JWTs living at most an hour.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuthSettings {
    /// Accept `Authorization: Bearer <did>` as that account, with no cryptography at all. For
    /// local development only: the service allows it on loopback binds only.
    pub dev_mode: bool,
    /// The operator's password for admin endpoints; `None` disables them.
    pub admin_password: Option<Secret>,
    /// Why admin endpoints are disabled when `admin_password` is `None`, in the answer (the
    /// service names its variable, `STRATOS_ADMIN_PASSWORD is not set`).
    pub admin_disabled_hint: Cow<'static, str>,
    /// A static token for service-level stream subscriptions, if any
    /// ([`Authenticator::is_sync_token`]).
    pub sync_token: Option<Secret>,
    /// Require a server nonce in DPoP proofs (RFC 9449 §8; default true).
    pub dpop_require_nonce: bool,
    /// The longest a service-auth JWT may live: `exp` past `iat` (past now without `iat`).
    pub service_auth_max_lifetime_secs: i64,
    /// The public base URL requests are made to (DPoP proofs name it in `htu`); `None`: the
    /// Stratos instance's public URL.
    pub public_url: Option<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            dev_mode: false,
            admin_password: None,
            admin_disabled_hint: Cow::Borrowed(DEFAULT_ADMIN_DISABLED_HINT),
            sync_token: None,
            dpop_require_nonce: true,
            service_auth_max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
            public_url: None,
        }
    }
}

impl AuthSettings {
    /// The same settings with the dev bearer on or off.
    #[must_use]
    pub fn dev_mode(mut self, on: bool) -> Self {
        self.dev_mode = on;
        self
    }

    /// The same settings with an admin password.
    #[must_use]
    pub fn admin_password(mut self, password: Secret) -> Self {
        self.admin_password = Some(password);
        self
    }
}

/// Why a request was not authenticated. [`crate::xrpc::XrpcError::from`] gives the answer for
/// each (status, XRPC error name, challenge headers).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credential on a request that needs one.
    #[error("authentication required")]
    Required,
    /// `Authorization` is not `<scheme> <value>` in visible ASCII.
    #[error("malformed Authorization header")]
    MalformedHeader,
    /// An `Authorization` scheme other than `Bearer` and `DPoP`.
    #[error("unsupported authorization scheme {0}")]
    UnsupportedScheme(String),
    /// A dev bearer that starts like a DID but is none.
    #[error("the bearer DID is not a valid DID")]
    BadDevDid(#[source] Box<DomainError>),
    /// A bearer that is neither a JWT nor (in dev mode) a DID.
    #[error("the bearer token is not a JWT")]
    NotAJwt {
        /// Whether the dev bearer was on (the answer then says what dev mode expects).
        dev_mode: bool,
    },
    /// The service-auth JWT failed a check (shape, signature, `aud`, `lxm`, times).
    #[error("invalid service-auth JWT")]
    ServiceJwt(#[source] Box<DomainError>),
    /// The JWT's issuer could not be resolved (the identity port failed).
    #[error("the token's issuer could not be resolved")]
    IssuerUnresolved(#[source] EnvError),
    /// The JWT's issuer has no DID document.
    #[error("the token's issuer does not exist")]
    IssuerNotFound,
    /// The issuer's DID document has no `#atproto` key.
    #[error("the token's issuer has no #atproto key")]
    IssuerHasNoKey,
    /// The issuer's `#atproto` key cannot be read.
    #[error("the issuer's #atproto key is unusable")]
    IssuerKeyUnusable(#[source] Box<DomainError>),
    /// A DPoP-bound access token was not accepted.
    #[error(transparent)]
    Dpop(#[from] DpopError),
    /// Admin endpoints are off: no admin password is configured.
    #[error("admin endpoints are disabled ({hint})")]
    AdminDisabled {
        /// Why ([`AuthSettings::admin_disabled_hint`]).
        hint: String,
    },
    /// No admin credential.
    #[error("admin authentication required")]
    AdminRequired,
    /// A wrong admin password.
    #[error("wrong admin password")]
    WrongAdminPassword,
}

impl AuthError {
    /// True for the DPoP nonce handshake: the client retries with the nonce it was just given.
    /// Optional-auth endpoints answer it instead of reading as anonymous.
    pub fn is_nonce_challenge(&self) -> bool {
        matches!(self, AuthError::Dpop(DpopError::UseNonce { .. }))
    }
}

/// What the [`Authenticator`] needs from the composed instance.
pub(crate) struct AuthContext<'a> {
    pub(crate) service_did: Did,
    pub(crate) public_url: &'a str,
    pub(crate) service_key: &'a Keypair,
    pub(crate) identity: Arc<dyn IdentityResolver>,
    pub(crate) servers: Option<Arc<dyn AuthorizationServers>>,
    pub(crate) clock: Arc<dyn Clock>,
}

/// Every authentication check of Stratos over a [`RequestView`]; see the module docs. One per
/// [`Stratos`](crate::Stratos) (its DPoP replay cache is shared by every request).
pub struct Authenticator {
    settings: AuthSettings,
    service_did: Did,
    identity: Arc<dyn IdentityResolver>,
    servers: Option<Arc<dyn AuthorizationServers>>,
    clock: Arc<dyn Clock>,
    dpop: dpop::DpopVerifier,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("service_did", &self.service_did)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub(crate) fn new(cx: AuthContext<'_>, settings: AuthSettings) -> Self {
        let public_url = settings.public_url.as_deref().unwrap_or(cx.public_url);
        let dpop = dpop::DpopVerifier::new(
            cx.service_key,
            settings.dpop_require_nonce,
            public_url,
            cx.clock.clone(),
        );
        Self {
            settings,
            service_did: cx.service_did,
            identity: cx.identity,
            servers: cx.servers,
            clock: cx.clock,
            dpop,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// The authenticated account, `None` for an anonymous request (no `Authorization`).
    ///
    /// A service-auth JWT must name the called method in `lxm` when the path has an `/xrpc/`
    /// segment (the NSID is what follows the last one); other paths take any `lxm`.
    pub async fn caller(&self, req: &RequestView) -> Result<Option<Did>, AuthError> {
        let Some(header) = req.header_text(AUTHORIZATION_HEADER) else {
            return Ok(None);
        };
        let header = header.map_err(|_| AuthError::MalformedHeader)?;
        let (scheme, value) = header.split_once(' ').ok_or(AuthError::MalformedHeader)?;
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            if self.settings.dev_mode && value.starts_with("did:") {
                // Development auth: the bearer token is the DID itself, unverified.
                return Did::parse(value)
                    .map(Some)
                    .map_err(|e| AuthError::BadDevDid(Box::new(e)));
            }
            if value.split('.').count() == 3 {
                let lxm = req
                    .path()
                    .rfind("/xrpc/")
                    .map(|i| &req.path()[i + "/xrpc/".len()..]);
                return self.verify_service_token(value, lxm).await.map(Some);
            }
            return Err(AuthError::NotAJwt {
                dev_mode: self.settings.dev_mode,
            });
        }
        if scheme.eq_ignore_ascii_case("dpop") {
            let servers = self.servers.as_deref();
            return Ok(Some(
                self.dpop
                    .verify(req, value, self.identity.as_ref(), servers)
                    .await?,
            ));
        }
        Err(AuthError::UnsupportedScheme(scheme.to_owned()))
    }

    /// The caller, required: an anonymous request is [`AuthError::Required`].
    pub async fn require_caller(&self, req: &RequestView) -> Result<Did, AuthError> {
        self.caller(req).await?.ok_or(AuthError::Required)
    }

    /// The caller for endpoints whose authentication is optional: a failed check degrades to
    /// anonymous, as the reference does for reads. The one exception is a DPoP proof without
    /// a current nonce: that answer is the nonce handshake (the client retries with the nonce
    /// it was just given), and swallowing it would silently turn the account into an anonymous
    /// reader.
    pub async fn optional_caller(&self, req: &RequestView) -> Result<Option<Did>, AuthError> {
        match self.caller(req).await {
            Ok(caller) => Ok(caller),
            Err(e) if e.is_nonce_challenge() => Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "credential refused; reading as anonymous");
                Ok(None)
            }
        }
    }

    /// Verifies a service-auth JWT for method `lxm` (`None`: any or no `lxm`) against its
    /// issuer's `#atproto` key, resolved through the identity port; the issuer on success.
    pub async fn verify_service_token(
        &self,
        token: &str,
        lxm: Option<&str>,
    ) -> Result<Did, AuthError> {
        let iss = unverified_issuer(token).map_err(|e| AuthError::ServiceJwt(Box::new(e)))?;
        let doc = self
            .identity
            .resolve_did(&iss)
            .await
            .map_err(AuthError::IssuerUnresolved)?
            .ok_or(AuthError::IssuerNotFound)?;
        let key = stratos_domain::did_doc::signing_public_key(&doc)
            .ok_or(AuthError::IssuerHasNoKey)?
            .map_err(|e| AuthError::IssuerKeyUnusable(Box::new(e)))?;
        let now = self.clock.now_ms() / 1000;
        let mut expect = ServiceJwtExpectation::new(self.service_did.as_str(), lxm, now);
        expect.max_lifetime_secs = self.settings.service_auth_max_lifetime_secs;
        Ok(verify_service_jwt(token, &expect, &[key])
            .map_err(|e| AuthError::ServiceJwt(Box::new(e)))?
            .iss)
    }

    /// Checks the operator's password: `Authorization: Basic base64(user:password)` (any user
    /// name) or `Authorization: Bearer <password>`, compared in constant time.
    pub fn require_admin(&self, req: &RequestView) -> Result<(), AuthError> {
        let Some(expected) = &self.settings.admin_password else {
            // Refused like a wrong password: no credential can succeed until one is set.
            return Err(AuthError::AdminDisabled {
                hint: self.settings.admin_disabled_hint.to_string(),
            });
        };
        let given = req
            .header_text(AUTHORIZATION_HEADER)
            .and_then(Result::ok)
            .and_then(|h| h.split_once(' '))
            .and_then(|(scheme, value)| {
                let value = value.trim();
                if scheme.eq_ignore_ascii_case("basic") {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(value)
                        .ok()?;
                    let text = String::from_utf8(decoded).ok()?;
                    text.split_once(':').map(|(_, pw)| pw.to_owned())
                } else if scheme.eq_ignore_ascii_case("bearer") {
                    Some(value.to_owned())
                } else {
                    None
                }
            })
            .ok_or(AuthError::AdminRequired)?;
        if expected.matches(&given) {
            Ok(())
        } else {
            Err(AuthError::WrongAdminPassword)
        }
    }

    /// True when `token` is the configured static sync token (constant time); false when none
    /// is configured.
    pub fn is_sync_token(&self, token: &str) -> bool {
        self.settings
            .sync_token
            .as_ref()
            .is_some_and(|secret| secret.matches(token))
    }

    /// The DPoP nonce to hand out now (send it in `DPoP-Nonce`).
    pub fn current_nonce(&self) -> String {
        self.dpop.current_nonce()
    }

    /// The `DPoP-Nonce` value for the response to `req`: the current nonce when the request
    /// carries a DPoP proof (every such response gets one, so clients keep a fresh nonce).
    pub fn response_nonce(&self, req: &RequestView) -> Option<String> {
        req.has_header(DPOP_HEADER).then(|| self.current_nonce())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        let settings = AuthSettings::default().admin_password(s);
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
