//! [`RequestView`]: what authentication and the XRPC handlers read of an HTTP request, with no
//! HTTP framework in sight.

use std::borrow::Cow;

/// The parts of an HTTP request that authentication and the framework-free XRPC handlers read:
/// the method, the path (as the client called it, below the public URL), the query string and
/// the headers. An app builds one per request from its framework's request type; the body is
/// passed separately to the handlers that read one.
///
/// Header names are matched case-insensitively; a header may repeat (several values, kept in
/// order). Values are bytes, as on the wire: a value that is not visible ASCII is treated as
/// malformed by the checks that read it, the rule of the `http` crate that actix-web and hyper
/// share, so every framework gets the same answer.
///
/// ```
/// use stratos_ports::auth::RequestView;
///
/// let req = RequestView::new("GET", "/xrpc/com.atproto.repo.getRecord?repo=did:plc:rei")
///     .with_header("Authorization", "Bearer did:plc:rei");
/// assert_eq!(req.path(), "/xrpc/com.atproto.repo.getRecord");
/// assert_eq!(req.query(), "repo=did:plc:rei");
/// assert_eq!(req.header_text("authorization"), Some(Ok("Bearer did:plc:rei")));
/// ```
#[derive(Clone, Default)]
pub struct RequestView {
    method: Cow<'static, str>,
    /// The path followed by the query (without the `?`): `target[..path_end]` and
    /// `target[path_end..]`. One buffer, and one for all headers below, because a view is
    /// built for every request on the read path (each allocation there shows in the profile).
    target: String,
    path_end: usize,
    /// Every header's lower-cased name, back to back.
    header_names: String,
    /// Every header's value, back to back.
    header_values: Vec<u8>,
    /// Per header, in arrival order: where its name ends in `header_names` and where its value
    /// ends in `header_values` (each starts where the previous header's ends).
    headers: Vec<(usize, usize)>,
}

/// A header value that is not visible ASCII text (see [`RequestView::header_text`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the header value is not visible ASCII text")]
pub struct NotText;

impl std::fmt::Debug for RequestView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values carry credentials (Authorization, DPoP): names only.
        let names: Vec<&str> = self.entries().map(|(n, _)| n).collect();
        f.debug_struct("RequestView")
            .field("method", &self.method)
            .field("path", &self.path())
            .field("query", &self.query())
            .field("headers", &names)
            .finish()
    }
}

/// The standard methods, kept without an allocation.
const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

impl RequestView {
    /// A request with `method` (as sent: `GET`, `POST`, …) for `target`: the request target
    /// as on the request line, origin form (`/xrpc/nsid?a=b`) or absolute form
    /// (`http://host/xrpc/nsid?a=b`, of which only the path and query are kept). A fragment is
    /// dropped.
    pub fn new(method: &str, target: &str) -> Self {
        let target = target.split_once('#').map_or(target, |(t, _)| t);
        let target = strip_origin(target);
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let path = if path.is_empty() { "/" } else { path };
        let mut joined = String::with_capacity(path.len() + query.len());
        joined.push_str(path);
        joined.push_str(query);
        Self {
            method: METHODS
                .iter()
                .find(|m| **m == method)
                .map_or_else(|| Cow::Owned(method.to_owned()), |m| Cow::Borrowed(*m)),
            target: joined,
            path_end: path.len(),
            header_names: String::new(),
            header_values: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Makes room for `count` more headers of `bytes` bytes in all (names and values), so an
    /// app that knows them (its framework's header map) fills the view without reallocating.
    pub fn reserve_headers(&mut self, count: usize, bytes: usize) {
        self.headers.reserve(count);
        // Names are short; values take most of the bytes.
        self.header_names
            .reserve(count.saturating_mul(16).min(bytes));
        self.header_values.reserve(bytes);
    }

    /// The same request with one more header value.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.push_header(name, value);
        self
    }

    /// Adds a header value (after any earlier values of the same name).
    pub fn push_header(&mut self, name: &str, value: impl AsRef<[u8]>) {
        let start = self.header_names.len();
        self.header_names.push_str(name);
        if let Some(added) = self.header_names.get_mut(start..) {
            added.make_ascii_lowercase();
        }
        self.header_values.extend_from_slice(value.as_ref());
        self.headers
            .push((self.header_names.len(), self.header_values.len()));
    }

    /// Every header as (lower-cased name, value), in arrival order.
    fn entries(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        let mut name_start = 0;
        let mut value_start = 0;
        self.headers.iter().map(move |&(name_end, value_end)| {
            let name = self.header_names.get(name_start..name_end).unwrap_or("");
            let value = self
                .header_values
                .get(value_start..value_end)
                .unwrap_or_default();
            (name_start, value_start) = (name_end, value_end);
            (name, value)
        })
    }

    /// The request method, as sent.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path, without the query (`/xrpc/com.atproto.repo.getRecord`).
    pub fn path(&self) -> &str {
        &self.target[..self.path_end]
    }

    /// The query string without the `?` (empty when there is none).
    pub fn query(&self) -> &str {
        &self.target[self.path_end..]
    }

    /// Every value of the header `name` (any case), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.entries()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The first value of the header `name`, if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.entries()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// True when the request carries the header `name`.
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// The first value of the header `name` as text: `None` when absent, `Err` when it is not
    /// visible ASCII (tab and space allowed, as `http::HeaderValue::to_str`).
    pub fn header_text(&self, name: &str) -> Option<Result<&str, NotText>> {
        self.header(name).map(as_text)
    }
}

/// A header value as text, under the `http` crate's rule.
pub(crate) fn as_text(value: &[u8]) -> Result<&str, NotText> {
    if value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        // Visible ASCII is UTF-8.
        std::str::from_utf8(value).map_err(|_| NotText)
    } else {
        Err(NotText)
    }
}

/// `/path?query` of an absolute-form target (`scheme://authority/path?query`); other targets
/// unchanged.
fn strip_origin(target: &str) -> &str {
    // Origin form, what every client sends to a server (not a proxy): nothing to strip.
    if target.starts_with('/') {
        return target;
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return target;
    };
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+')
    {
        return target;
    }
    match rest.find(['/', '?']) {
        Some(i) => &rest[i..],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_path_and_query() {
        let r = RequestView::new("GET", "/a/b?x=1&y=2#frag");
        assert_eq!((r.path(), r.query()), ("/a/b", "x=1&y=2"));
        let r = RequestView::new("GET", "https://Host.example:8443/xrpc/n?q=1");
        assert_eq!((r.path(), r.query()), ("/xrpc/n", "q=1"));
        let r = RequestView::new("GET", "http://host.example?q=1");
        assert_eq!((r.path(), r.query()), ("/", "q=1"));
        let r = RequestView::new("GET", "");
        assert_eq!((r.path(), r.query()), ("/", ""));
    }

    #[test]
    fn headers_are_case_insensitive_repeatable_and_checked_as_text() {
        let r = RequestView::new("GET", "/")
            .with_header("DPoP", "one")
            .with_header("dpop", "two")
            .with_header("X-Bin", vec![0xff, b'a']);
        assert_eq!(r.header_values("dPoP").count(), 2);
        assert_eq!(r.header_text("DPOP"), Some(Ok("one")));
        assert_eq!(r.header_text("x-bin"), Some(Err(NotText)));
        assert_eq!(r.header_text("authorization"), None);
        assert!(!format!("{r:?}").contains("one"), "values are not printed");
    }
}
