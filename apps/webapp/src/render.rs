//! The pages, rendered on the server as plain HTML forms: no script and no front-end build, so
//! every control is a real link or button, usable from the keyboard and by assistive technology.
//! Every value from outside (posts, handles, boundaries, errors) goes through [`esc`].

use std::collections::HashMap;
use std::fmt::Write as _;

use stratos_domain::syntax::Did;

use crate::feed::{self, FeedItem, Visibility};

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A query-string component.
pub fn query_escape(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/style.css\"></head>\
         <body><a class=\"skip\" href=\"#main\">Skip to content</a>{body}</body></html>\n",
        esc(title)
    )
}

/// A short message after an action (fixed texts: nothing from the query string is echoed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A post was written.
    Posted,
    /// A post was deleted.
    Deleted,
    /// Back from the service's enrollment.
    Enrolled,
    /// The account left the service.
    Unenrolled,
}

impl Notice {
    /// From the `notice` query parameter.
    pub fn parse(code: &str) -> Option<Self> {
        Some(match code {
            "posted" => Self::Posted,
            "deleted" => Self::Deleted,
            "enrolled" => Self::Enrolled,
            "unenrolled" => Self::Unenrolled,
            _ => return None,
        })
    }

    /// Its query value.
    pub fn code(self) -> &'static str {
        match self {
            Self::Posted => "posted",
            Self::Deleted => "deleted",
            Self::Enrolled => "enrolled",
            Self::Unenrolled => "unenrolled",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::Posted => "Posted.",
            Self::Deleted => "Deleted.",
            Self::Enrolled => "Enrollment finished.",
            Self::Unenrolled => "You left the Stratos service.",
        }
    }
}

/// The sign-in page.
pub fn login_page(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    layout(
        "Sign in — Stratos",
        &format!(
            "<main id=\"main\" class=\"login\"><h1>Stratos</h1>\
             <p class=\"sub\">Private data for ATProto</p>{error}\
             <form method=\"post\" action=\"/login\">\
             <label for=\"handle\">Handle, DID or PDS address</label>\
             <input id=\"handle\" name=\"handle\" required autocomplete=\"username\" \
             placeholder=\"alice.bsky.social\" autofocus>\
             <button type=\"submit\">Sign in</button></form></main>"
        ),
    )
}

/// The account's enrollment as the service reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceStatus {
    /// Enrolled with these boundaries.
    Enrolled {
        /// Qualified boundaries.
        boundaries: Vec<String>,
        /// The service's session with the PDS is gone (stubs wait until the user signs in
        /// through the service again).
        needs_authorization: bool,
    },
    /// Not enrolled.
    NotEnrolled,
    /// The service did not answer.
    Unknown(String),
}

/// The enrollment record on the account's PDS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PdsRecordStatus {
    /// Present and signed by a key of the service's DID document.
    Verified,
    /// Present, but its attestation does not verify.
    Unverified(String),
    /// No record for this service.
    Missing,
    /// The PDS did not answer.
    Unknown(String),
}

/// Where a reply goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTarget {
    /// The parent post.
    pub uri: String,
    /// Its author, as shown.
    pub author: String,
    /// A reply to a private post is private.
    pub private: bool,
}

/// Everything the main page shows.
#[derive(Debug)]
pub struct MainView {
    /// The signed-in account.
    pub did: Did,
    /// Its handle ('' when unknown).
    pub handle: String,
    /// The form token.
    pub csrf: String,
    /// `{stratos}/oauth/authorize?…` for this account.
    pub enroll_url: String,
    /// The service's answer.
    pub status: ServiceStatus,
    /// The PDS's enrollment record.
    pub pds_record: PdsRecordStatus,
    /// `zone.stratos.server.listDomains`.
    pub domains: Vec<String>,
    /// The selected tab (a qualified boundary), `None` for "All".
    pub tab: Option<String>,
    /// The feed in display order with depths.
    pub feed: Vec<(FeedItem, usize)>,
    /// Handles of the authors shown.
    pub handles: HashMap<Did, String>,
    /// Reply mode.
    pub reply_to: Option<ReplyTarget>,
    /// A message after an action.
    pub notice: Option<Notice>,
    /// An error to show.
    pub error: Option<String>,
    /// A part of the feed could not be read.
    pub feed_warning: Option<String>,
    /// Now, in Unix milliseconds.
    pub now_ms: i64,
}

impl MainView {
    fn author_label(&self, did: &Did) -> String {
        match self.handles.get(did) {
            Some(h) if !h.is_empty() => format!("@{h}"),
            _ => feed::short_did(did.as_str()),
        }
    }

    fn held(&self) -> &[String] {
        match &self.status {
            ServiceStatus::Enrolled { boundaries, .. } => boundaries,
            _ => &[],
        }
    }
}

fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

fn sidebar(v: &MainView, out: &mut String) {
    out.push_str(
        "<aside class=\"side\" aria-labelledby=\"status-h\"><h2 id=\"status-h\">Stratos</h2>",
    );
    out.push_str("<dl class=\"status\"><dt>Service status</dt><dd id=\"service-status\">");
    match &v.status {
        ServiceStatus::Enrolled {
            needs_authorization,
            ..
        } => {
            out.push_str("Enrolled");
            if *needs_authorization {
                out.push_str(" <span class=\"badge warn\">needs your authorization again</span>");
            }
        }
        ServiceStatus::NotEnrolled => out.push_str("Not enrolled"),
        ServiceStatus::Unknown(e) => {
            let _ = write!(out, "Unavailable <span class=\"muted\">({})</span>", esc(e));
        }
    }
    out.push_str("</dd><dt>PDS record</dt><dd id=\"pds-record\">");
    match &v.pds_record {
        PdsRecordStatus::Verified => {
            out.push_str("Present <span class=\"ok\">✓ attestation signature verified</span>")
        }
        PdsRecordStatus::Unverified(why) => {
            let _ = write!(
                out,
                "Present <span class=\"warn\">⚠ attestation could not be verified: {}</span>",
                esc(why)
            );
        }
        PdsRecordStatus::Missing => out.push_str("None"),
        PdsRecordStatus::Unknown(e) => {
            let _ = write!(out, "Unavailable <span class=\"muted\">({})</span>", esc(e));
        }
    }
    out.push_str("</dd></dl>");
    if matches!(v.status, ServiceStatus::Enrolled { .. })
        && matches!(v.pds_record, PdsRecordStatus::Missing)
    {
        out.push_str(
            "<p class=\"warn\">The service knows this account, but the PDS has no enrollment \
             record for it yet.</p>",
        );
    }
    match &v.status {
        ServiceStatus::Enrolled {
            needs_authorization,
            ..
        } => {
            if *needs_authorization {
                let _ = write!(
                    out,
                    "<p><a class=\"button\" href=\"{}\">Authorize Stratos again</a></p>",
                    esc(&v.enroll_url)
                );
            }
            let _ = write!(
                out,
                "<form method=\"post\" action=\"/unenroll\">{}\
                 <button type=\"submit\" class=\"danger\">Leave Stratos</button></form>",
                csrf_field(&v.csrf)
            );
        }
        _ => {
            let _ = write!(
                out,
                "<p><a class=\"button\" id=\"enroll\" href=\"{}\">Enroll in Stratos</a></p>",
                esc(&v.enroll_url)
            );
        }
    }
    out.push_str("<h3>Your boundaries</h3><ul id=\"your-boundaries\">");
    if v.held().is_empty() {
        out.push_str("<li class=\"muted\">None</li>");
    }
    for b in v.held() {
        let _ = write!(
            out,
            "<li><span class=\"badge\" title=\"{}\">{}</span></li>",
            esc(b),
            esc(feed::display_boundary(b))
        );
    }
    out.push_str("</ul><h3>Domains on this service</h3><ul>");
    if v.domains.is_empty() {
        out.push_str("<li class=\"muted\">No domains discovered</li>");
    }
    for d in &v.domains {
        let held = v
            .held()
            .iter()
            .any(|b| feed::display_boundary(b) == d || b == d);
        let _ = write!(
            out,
            "<li>{}{}</li>",
            esc(feed::display_boundary(d)),
            if held { " ✓" } else { "" }
        );
    }
    out.push_str("</ul></aside>");
}

fn composer(v: &MainView, out: &mut String) {
    let held = v.held();
    let enrolled = !held.is_empty();
    out.push_str("<section class=\"compose\" aria-labelledby=\"compose-h\"><h2 id=\"compose-h\">New post</h2>");
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/post\">{}",
        csrf_field(&v.csrf)
    );
    if let Some(r) = &v.reply_to {
        let _ = write!(
            out,
            "<p class=\"replying\" id=\"replying\">Replying to {} — <a href=\"/\">cancel</a></p>\
             <input type=\"hidden\" name=\"reply_to\" value=\"{}\">",
            esc(&r.author),
            esc(&r.uri)
        );
    }
    let forced_private = v.reply_to.as_ref().is_some_and(|r| r.private);
    out.push_str(
        "<label for=\"text\">Text</label>\
         <textarea id=\"text\" name=\"text\" rows=\"3\" maxlength=\"3000\" required></textarea>\
         <div class=\"row\">",
    );
    if enrolled {
        let _ = write!(
            out,
            "<label class=\"check\"><input type=\"checkbox\" id=\"private\" name=\"private\" \
             value=\"on\" checked{}> Private</label>",
            if forced_private {
                " disabled aria-describedby=\"forced\""
            } else {
                ""
            }
        );
        if forced_private {
            out.push_str(
                "<input type=\"hidden\" name=\"private\" value=\"on\">\
                 <span id=\"forced\" class=\"muted\">A reply to a private post is private.</span>",
            );
        }
        out.push_str(
            "<label for=\"boundary\">Boundary</label><select id=\"boundary\" name=\"boundary\">",
        );
        let preferred = v.tab.as_deref();
        for b in held {
            let _ = write!(
                out,
                "<option value=\"{}\"{}>{}</option>",
                esc(b),
                if Some(b.as_str()) == preferred {
                    " selected"
                } else {
                    ""
                },
                esc(feed::display_boundary(b))
            );
        }
        out.push_str("</select>");
    } else {
        out.push_str(
            "<span class=\"muted\" id=\"public-only\">Enroll in Stratos to post privately; \
             posts go public to your PDS.</span>",
        );
    }
    out.push_str("<button type=\"submit\">Post</button></div></form></section>");
}

fn tabs(v: &MainView, out: &mut String) {
    out.push_str("<nav class=\"tabs\" aria-label=\"Feeds\"><ul>");
    let current = |on: bool| if on { " aria-current=\"page\"" } else { "" };
    let _ = write!(
        out,
        "<li><a href=\"/\"{}>All</a></li>",
        current(v.tab.is_none())
    );
    for b in v.held() {
        let _ = write!(
            out,
            "<li><a href=\"/?tab={}\"{}>{}</a></li>",
            query_escape(b),
            current(v.tab.as_deref() == Some(b)),
            esc(feed::display_boundary(b))
        );
    }
    out.push_str("</ul></nav>");
}

fn post_card(v: &MainView, item: &FeedItem, depth: usize, out: &mut String) {
    let (kind, badge) = match &item.visibility {
        Visibility::Public => ("public", String::new()),
        Visibility::Private { boundaries } => (
            "private",
            format!(
                "<span class=\"badge private\">Private</span>{}",
                boundaries
                    .iter()
                    .map(|b| format!(
                        " <span class=\"badge boundary\" title=\"{}\">{}</span>",
                        esc(b),
                        esc(feed::display_boundary(b))
                    ))
                    .collect::<String>()
            ),
        ),
        Visibility::Hidden => (
            "hidden",
            "<span class=\"badge private\">Private</span>".into(),
        ),
    };
    let _ = write!(
        out,
        "<article class=\"post depth-{depth}\" data-uri=\"{}\" data-visibility=\"{kind}\">\
         <header><span class=\"author\">{}</span> <time datetime=\"{}\">{}</time> {badge}</header>",
        esc(&item.uri),
        esc(&v.author_label(&item.author)),
        esc(&item.created_at),
        esc(&feed::relative_time(
            v.now_ms,
            item.sort_ms,
            &item.created_at
        )),
    );
    if let Some(r) = &item.reply {
        let parent_author = r
            .parent_uri
            .strip_prefix("at://")
            .and_then(|rest| rest.split('/').next())
            .and_then(|d| Did::parse(d).ok())
            .map(|d| v.author_label(&d))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<p class=\"context\">↩ replying to {}</p>",
            esc(&parent_author)
        );
    }
    match item.visibility {
        Visibility::Hidden => out.push_str(
            "<p class=\"text hidden\">A private post. Its content is only for members of its \
             boundary.</p>",
        ),
        _ => {
            let _ = write!(out, "<p class=\"text\">{}</p>", esc(&item.text));
        }
    }
    out.push_str("<footer>");
    if !matches!(item.visibility, Visibility::Hidden) {
        let _ = write!(
            out,
            "<a href=\"/?reply={}\">Reply<span class=\"sr\"> to this post</span></a>",
            query_escape(&item.uri)
        );
    }
    if item.author == v.did {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/delete\" class=\"inline\">{}\
             <input type=\"hidden\" name=\"uri\" value=\"{}\">\
             <button type=\"submit\" class=\"link danger\">Delete<span class=\"sr\"> this post</span></button></form>",
            csrf_field(&v.csrf),
            esc(&item.uri)
        );
    }
    out.push_str("</footer></article>");
}

/// The signed-in page.
pub fn main_page(v: &MainView) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<header class=\"top\"><h1>Stratos</h1><div class=\"who\"><span id=\"me\">{}</span> \
         <form method=\"post\" action=\"/logout\" class=\"inline\">{}\
         <button type=\"submit\" class=\"link\">Sign out</button></form></div></header>",
        esc(&if v.handle.is_empty() {
            v.did.to_string()
        } else {
            format!("@{}", v.handle)
        }),
        csrf_field(&v.csrf)
    );
    out.push_str("<div class=\"columns\">");
    sidebar(v, &mut out);
    out.push_str("<main id=\"main\">");
    if let Some(n) = v.notice {
        let _ = write!(out, "<p class=\"notice\" role=\"status\">{}</p>", n.text());
    }
    if let Some(e) = &v.error {
        let _ = write!(out, "<p class=\"error\" role=\"alert\">{}</p>", esc(e));
    }
    composer(v, &mut out);
    out.push_str("<section aria-labelledby=\"feed-h\"><h2 id=\"feed-h\">Feed</h2>");
    tabs(v, &mut out);
    if let Some(w) = &v.feed_warning {
        let _ = write!(out, "<p class=\"warn\" role=\"status\">{}</p>", esc(w));
    }
    let authors: std::collections::HashSet<&Did> = v.feed.iter().map(|(p, _)| &p.author).collect();
    let _ = write!(
        out,
        "<p class=\"muted\" id=\"feed-stats\">{} posts from {} accounts</p><div id=\"feed\">",
        v.feed.len(),
        authors.len()
    );
    if v.feed.is_empty() {
        out.push_str("<p class=\"muted\">No posts yet. Write the first one above.</p>");
    }
    for (item, depth) in &v.feed {
        post_card(v, item, *depth, &mut out);
    }
    out.push_str("</div></section></main></div>");
    layout("Stratos", &out)
}

/// A page for a failure outside the signed-in page (a refused sign-in, say).
pub fn error_page(title: &str, message: &str) -> String {
    layout(
        title,
        &format!(
            "<main id=\"main\" class=\"login\"><h1>{}</h1><p class=\"error\" role=\"alert\">{}</p>\
             <p><a href=\"/\">Back</a></p></main>",
            esc(title),
            esc(message)
        ),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod tests {
    use super::*;

    #[test]
    fn text_from_outside_is_escaped() {
        assert_eq!(
            esc("<script>alert(\"x\")</script>&'"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
        let page = login_page(Some("<b>no</b>"));
        assert!(page.contains("&lt;b&gt;no&lt;/b&gt;"));
        assert!(!page.contains("<b>no</b>"));
    }

    #[test]
    fn notices_are_fixed_texts() {
        for n in [
            Notice::Posted,
            Notice::Deleted,
            Notice::Enrolled,
            Notice::Unenrolled,
        ] {
            assert_eq!(Notice::parse(n.code()), Some(n));
        }
        assert_eq!(Notice::parse("<script>"), None);
    }
}
