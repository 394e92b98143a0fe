//! The value types of the configuration (secrets, connection URLs, http(s) URLs) and its error.

use std::fmt;

use url::{Host, Url};

/// What redacted values render as.
pub(super) const REDACTED: &str = "<redacted>";

// ---- errors --------------------------------------------------------------------------------------

/// One invalid variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The variable at fault.
    pub variable: String,
    /// What is wrong with it. Never contains a secret value.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// One or more variables are invalid; all of them are listed.
    #[error("invalid configuration:{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// Every problem found.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid(problems) => problems,
        }
    }
}

fn render_problems(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("\n  {p}")).collect()
}

// ---- secrets -------------------------------------------------------------------------------------

/// A secret value: the library's type (`Debug` prints `<redacted>`, no `Display`), so a value read
/// from the configuration goes to the authenticator as it is.
pub use stratos_ports::auth::Secret;

/// A connection URL (Postgres, Valkey) that may carry a password. `Debug` and
/// [`ConnectionUrl::redacted`] mask the password of the user part and any `…password=` query
/// parameter.
#[derive(Clone)]
pub struct ConnectionUrl(pub(super) String);

impl ConnectionUrl {
    /// The full URL, password included, for the connection set-up.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with every password replaced by `<redacted>`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConnectionUrl")
            .field(&self.redacted())
            .finish()
    }
}

/// Masks passwords in a URL. Deliberately not the `url` crate's parser: this runs on values that
/// may be malformed, and it errs on the side of hiding too much. Everything before the *last* `@`
/// counts as user information, because passwords are often pasted without percent-encoding and
/// may themselves contain `/`, `?`, `#` or `@` (where a URL parser would end the user part early
/// and print the rest of the password as the host or path).
pub(super) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return REDACTED.to_owned();
    };
    let mut out = format!("{scheme}://");
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, after)) => {
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            after
        }
        None => rest,
    };
    match rest.split_once('?') {
        Some((before, query)) => {
            out.push_str(before);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    // Covers libpq's `password` and `sslpassword`.
                    Some((key, _)) if key.to_ascii_lowercase().ends_with("password") => {
                        format!("{key}={REDACTED}")
                    }
                    _ => param.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(rest),
    }
    out
}

/// Checks a connection URL (`postgres://…`, `redis://…`) with the parser the drivers themselves
/// use (sqlx and redis-rs both read it with the `url` crate), so a value they would refuse stops
/// start-up with the variable named. The value is never echoed: it may hold a password.
pub(super) fn check_connection_url(value: &str, schemes: &[&str]) -> Result<(), String> {
    let spelled: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
    let wrong_scheme = || format!("must be a URL starting with {}", spelled.join(" or "));
    // The URL parser would drop tabs and newlines and trim spaces; the operator's value would then
    // differ from the one connected with.
    if value.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace".to_owned());
    }
    // The URL standard forgives `redis:host`; an operator's URL spells `://`.
    if !value.split_once("://").is_some_and(|(scheme, rest)| {
        !rest.is_empty() && schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme))
    }) {
        return Err(wrong_scheme());
    }
    let url = Url::parse(value).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !schemes.contains(&url.scheme()) {
        return Err(wrong_scheme());
    }
    Ok(())
}

// ---- http(s) URLs --------------------------------------------------------------------------------

/// An absolute `http` or `https` URL, parsed and normalised by the WHATWG URL rules (the `url`
/// crate): ASCII, no credentials, lower-case scheme and host, and no explicit default port
/// (`https://x:443` is stored as `https://x`, so derived `did:web`s match).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl {
    value: String,
    https: bool,
    host: String,
    port: Option<u16>,
    /// No path (beyond `/`), query or fragment: what a `did:web` can be derived from.
    origin_only: bool,
}

impl HttpUrl {
    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// True for `https`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host, lower-case; IPv6 literals keep their brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, when it is not the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// True when the URL is a bare origin (no path, query or fragment).
    pub(super) fn is_origin(&self) -> bool {
        self.origin_only
    }

    /// Parses any http(s) URL. Its serialisation is the `url` crate's (an empty path is `/`).
    pub(super) fn parse(input: &str) -> Result<Self, String> {
        let url = parse_http(input)?;
        Ok(Self::from_url(url.as_str().to_owned(), &url))
    }

    /// Parses a base URL that paths are appended to: no query or fragment, trailing `/` removed.
    pub(super) fn parse_base(input: &str) -> Result<Self, String> {
        let url = parse_http(input)?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must not have a query or fragment".to_owned());
        }
        let value = url.as_str().trim_end_matches('/').to_owned();
        Ok(Self::from_url(value, &url))
    }

    fn from_url(value: String, url: &Url) -> Self {
        Self {
            value,
            https: url.scheme() == "https",
            host: url.host_str().unwrap_or_default().to_owned(),
            port: url.port(),
            origin_only: url.path().trim_end_matches('/').is_empty()
                && url.query().is_none()
                && url.fragment().is_none(),
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

/// The `url` crate's parse with the service's stricter rules on top: the URL standard forgives
/// spaces, `http:host`, credentials and odd host labels, and a configuration value should not
/// mean something other than what it says.
fn parse_http(input: &str) -> Result<Url, String> {
    if !input.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "must be ASCII without spaces (write international domain names in punycode)"
                .to_owned(),
        );
    }
    // The URL standard reads `\` as `/` in http(s) URLs.
    if input.contains('\\') {
        return Err("must not contain `\\` (write `/`)".to_owned());
    }
    let scheme_ok = input.split_once("://").is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
    });
    if !scheme_ok {
        return Err("must start with http:// or https://".to_owned());
    }
    let url = Url::parse(input).map_err(|e| match e {
        url::ParseError::InvalidPort => "has an invalid port (expected 1 to 65535)".to_owned(),
        url::ParseError::InvalidIpv6Address => {
            "has an invalid IPv6 address or an unclosed `[` in the host".to_owned()
        }
        url::ParseError::EmptyHost
        | url::ParseError::IdnaError
        | url::ParseError::InvalidDomainCharacter
        | url::ParseError::InvalidIpv4Address => "has an invalid host name".to_owned(),
        other => format!("is not a valid URL ({other})"),
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials".to_owned());
    }
    match url.host() {
        Some(Host::Domain(name)) => check_hostname(name)?,
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => {}
        None => return Err("has an invalid host name".to_owned()),
    }
    // Port 0 is a valid URL but nothing listens there.
    if url.port() == Some(0) {
        return Err("has an invalid port (expected 1 to 65535)".to_owned());
    }
    Ok(url)
}

/// DNS names and IPv4 literals: labels of letters, digits, `-` and `_`, not starting or ending
/// with `-`. Stricter than the URL standard (which accepts `-bad-.example`); `_` is tolerated
/// because container networks hand out such names.
pub(super) fn check_hostname(host: &str) -> Result<(), String> {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err("has an invalid host name".to_owned());
    }
    Ok(())
}
