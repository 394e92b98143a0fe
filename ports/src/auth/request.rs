//! [`RequestView`]: what authentication and the XRPC handlers read of an HTTP request, with no
//! HTTP framework in sight.

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
    method: String,
    path: String,
    query: String,
    /// Lower-cased names, values as received, in arrival order.
    headers: Vec<(String, Vec<u8>)>,
}

/// A header value that is not visible ASCII text (see [`RequestView::header_text`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the header value is not visible ASCII text")]
pub struct NotText;

impl std::fmt::Debug for RequestView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values carry credentials (Authorization, DPoP): names only.
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("RequestView")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &names)
            .finish()
    }
}

impl RequestView {
    /// A request with `method` (as sent: `GET`, `POST`, …) for `target`: the request target
    /// as on the request line, origin form (`/xrpc/nsid?a=b`) or absolute form
    /// (`http://host/xrpc/nsid?a=b`, of which only the path and query are kept). A fragment is
    /// dropped.
    pub fn new(method: impl Into<String>, target: &str) -> Self {
        let target = target.split_once('#').map_or(target, |(t, _)| t);
        let target = strip_origin(target);
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Self {
            method: method.into(),
            path: if path.is_empty() { "/" } else { path }.to_owned(),
            query: query.to_owned(),
            headers: Vec::new(),
        }
    }

    /// The same request with one more header value.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.push_header(name, value);
        self
    }

    /// Adds a header value (after any earlier values of the same name).
    pub fn push_header(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
    }

    /// The request method, as sent.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path, without the query (`/xrpc/com.atproto.repo.getRecord`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query string without the `?` (empty when there is none).
    pub fn query(&self) -> &str {
        &self.query
    }

    /// Every value of the header `name` (any case), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of the header `name`, if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
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
